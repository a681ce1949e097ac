"""Typed, frozen fitted state of the whole-row kinds of input (`data.inputs`), and of the schema's
sections that say how a kind reads its data.

- `SectionState`: a schema section (`Schema.series`, `.audio`, `.interactions`, `.text`): a
  frozen dataclass of JSON values, written into the schema's JSON by `to_json` and read back by
  `from_json`, which refuses an unknown field, a missing required one and a value of the wrong
  type, naming the field.
- `InputState`: what `InputKind.fit` learns from the training split (image channel statistics,
  the series' scaling, interactions' popularity, ...): a frozen dataclass the preprocessor saves
  as named tensors (and, for kinds with vocabularies, in the manifest's `vocabularies`), under
  the names packages have always used, so the package format does not change.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import numpy as np
import torch

from trustforge.errors import DataError

__all__ = ["InputState", "SectionState"]


class SectionState:
    """A schema section: a frozen dataclass of JSON values (scalars, or tuples that travel as lists).

    It mirrors `data.features.FeatureState` (not imported: the feature types import the modules
    that own these sections), adding checks of missing fields and of types to `from_json`.
    """

    def to_json(self) -> dict[str, Any]:
        """The section as a JSON object, fields in declaration order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, d: Any) -> Any:
        """The section from its JSON object.

        Raises:
            DataError: `d` is not an object, names a field the section does not have, lacks a
                required one or holds a value of the wrong type; the message names the field.
        """
        what = f"schema section {cls.__name__}"
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise DataError(f"{what}: expected a JSON object; got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise DataError(f"{what}: unknown field{'s' if len(unknown) > 1 else ''} {unknown}; it has {list(fields)}")
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise DataError(f"{what}: missing field{'s' if len(missing) > 1 else ''} {missing}")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in d.items():
            value = tuple(value) if isinstance(value, list) else value
            if not _fits(value, hints[name]):
                raise DataError(f"{what}: field {name!r} must be {_describe(hints[name])}; got {value!r}"[:300])
            values[name] = value
        return cls(**values)


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _options(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)


def _fits(value: Any, hint: Any) -> bool:
    for t in _options(hint):
        origin = typing.get_origin(t)
        if t is type(None):
            ok = value is None
        elif origin is Literal:
            ok = any(value == a and type(value) is type(a) for a in typing.get_args(t))
        elif t is bool:
            ok = isinstance(value, bool)
        elif t is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif t is str:
            ok = isinstance(value, str)
        elif origin is tuple:
            (item, *_) = typing.get_args(t) or (Any,)
            ok = isinstance(value, tuple) and (item is Any or all(_fits(v, item) for v in value))
        else:
            ok = t is Any
        if ok:
            return True
    return False


def _describe(hint: Any) -> str:
    names = []
    for t in _options(hint):
        if t is type(None):
            names.append("null")
        elif typing.get_origin(t) is Literal:
            names.append(" or ".join(repr(a) for a in typing.get_args(t)))
        elif typing.get_origin(t) is tuple:
            names.append("a list")
        else:
            names.append({bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(t, str(t)))
    return " or ".join(names)


@dataclass(frozen=True, eq=False)
class InputState:
    """What a kind of input learns from the training split, saved as named tensors.

    Subclasses are frozen dataclasses whose tensor fields are listed in `tensor_names` (field
    -> the tensor's name in the package; a field that is None is not saved, and one absent from
    a package loads as None). Kinds with vocabularies override `vocabularies` and `from_saved`.
    Two states are equal when their fields are, tensors compared by value, dtype and shape.
    """

    tensor_names: ClassVar[dict[str, str]] = {}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state's tensors by their names in the package."""
        out = {}
        for field, name in self.tensor_names.items():
            value = getattr(self, field)
            if value is not None:
                out[name] = value
        return out

    def vocabularies(self, schema: Any) -> dict[str, list[str]]:
        """Vocabularies to save in the manifest's `vocabularies`, by column."""
        return {}

    @classmethod
    def from_saved(cls, schema: Any, vocabularies: dict[str, list[str]], tensors: dict[str, torch.Tensor]) -> Any:
        """The state from a package's vocabularies and tensors (`tensors` holds the others too).

        Raises:
            DataError: a tensor the state needs is missing, naming it.
        """
        return cls(**cls.saved_tensors(tensors))

    @classmethod
    def saved_tensors(cls, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        """The state's tensor fields from a package's tensors (None for an optional one not saved).

        Raises:
            DataError: a tensor the state needs is missing, naming it.
        """
        missing = [name for field, name in cls.tensor_names.items() if name not in tensors and _required(cls, field)]
        if missing:
            raise DataError(f"the package's preprocessing tensors lack {missing} ({cls.__name__})")
        return {field: tensors.get(name) for field, name in cls.tensor_names.items()}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    __hash__ = None  # type: ignore[assignment]


def _required(cls: type, field: str) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == field)
    return f.default is dataclasses.MISSING


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        )
    return bool(a == b)
