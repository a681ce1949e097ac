"""The request signature of a package, and request data → `Model.predict` input, strictly.

A package's manifest lists its inputs and outputs (`manifest["signature"]`), each as
`{"name", "datatype", "shape"}` with `-1` for a free dimension. Two layouts follow from it,
for every modality alike (tables, text, interactions, series, images, audio):

- **frame**: every input has shape `[-1]` (one value per row). The model takes a
  `pandas.DataFrame` with one column per input; a request carries one column (v2) or one
  field per record (MLflow) for each.
- **tensor**: exactly one input, of rank 2 or more (`[-1, C, H, W]`, `[-1, T]`). The model
  takes one `numpy.ndarray` whose first axis is the row.

What a request may send (the rules behind every 400, each naming the field):
- every input the signature lists must be present (unless it is marked `optional`); inputs it
  does not list are ignored;
- values convert only by numpy's *safe* casts (`np.can_cast(..., "safe")`): INT32 data into
  an FP64 column, never FP64 into FP32 or text into a number column; JSON numbers have no
  width, so they fit any float input, and integer inputs need integral values; a text (BYTES)
  input takes JSON integers as their decimal text (ids, codes), never fractions, and a yes/no
  column also takes JSON booleans;
- numbers are checked as the Open Inference Protocol types them: every value must be finite
  (no NaN or infinity), fit the range of the datatype the request states (v2) and of the
  declared one (an INT64 beyond 2^63, an FP32 beyond 3.4e38 are refused, never rounded to
  infinity), and JSON booleans are not numbers (only a BOOL or yes/no input takes them);
- JSON `null` (an empty CSV cell, a Parquet null) is a missing value: a table column whose
  fitted policy imputes missing values takes it (the training median, mode, ...; the count is
  reported with the response), any other input refuses it with a 400 naming the input and
  the position: a column whose policy is `error`, and every tensor (an image cannot be
  imputed pixel by pixel). NaN and infinities are refused everywhere, binary data included;
- shapes must match the signature's fixed dimensions, and all columns of a request must have
  the same number of rows (at least one).

Between here and the model, data travel as a *payload*: for the frame layout a dict of 1-D
numpy arrays (column name → values, in signature order), for the tensor layout one ndarray.
Payloads of several requests concatenate into one batch without pandas. A model whose input
declares `min_rows` (a forecasting series: one request is one series) is never batched.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from trustforge.data import expectations_of
from trustforge.errors import DataError, ModelError
from trustforge.serve._schemas import json_kind

__all__ = [
    "TensorSpec",
    "Signature",
    "Payload",
    "RequestError",
    "quote",
    "NP_TYPES",
    "payload_rows",
    "payload_key",
    "concat_payloads",
    "slice_columns",
    "to_model_input",
    "column_from_json",
    "numeric_rows",
    "block_column",
    "ColumnBlock",
    "block_payload",
    "join_blocks",
    "tensor_from_json",
    "tensor_from_binary",
    "encode_bytes_tensor",
    "frame_to_columns",
    "columns_from_matrix",
    "MATRIX_INPUT",
]

MATRIX_INPUT = "input"  # the one [N, F] tensor an all-numeric table model also takes (see `Signature.matrix`)

# The Open Inference Protocol's tensor data types and their numpy equivalents (BF16 has none).
NP_TYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_V2_OF_NUMPY = {v: k for k, v in NP_TYPES.items() if k != "BYTES"}

Columns = dict[str, np.ndarray]
Payload = Union[Columns, np.ndarray]


# A value a message quotes (`quote`) is kept whole between these two marks until the message
# is shown: a model trained with `data.protect` masks it first, then it is cut to its short form.
# Cut first, a personal value is no longer one the detector recognises (`jonathan.private.per...`).
# `repr` escapes control characters, so the marks never occur inside a quoted value.
_QUOTE_OPEN, _QUOTE_CLOSE = "\x02", "\x03"
_QUOTED = re.compile(f"{_QUOTE_OPEN}(.*?){_QUOTE_CLOSE}", re.DOTALL)
_SHORT = 40
_KEEP = 400
# A column whose header held personal data, as `data.protect` renamed it (`privacy.column_names`).
_RENAMED_HEADER = re.compile(r"<column \d+: [A-Z_, ]+>")


class RequestError(DataError):
    """A request the signature refuses (HTTP 400); the message names the field at fault.

    `str(exc)` quotes values in their short form (40 characters at most); `shown(mask)` has each
    quoted value masked whole before it is cut, which is what a server of a model trained with
    `data.protect` answers.
    """

    status = 400

    def __init__(self, message: str) -> None:
        self.template = str(message)  # quoted values whole, between marks
        super().__init__(_resolve(self.template, None))

    def shown(self, mask: Callable[[str], str] | None = None) -> str:
        """The message, each quoted value passed through `mask` (e.g. the PII masker) and then cut."""
        return _resolve(self.template, mask)


def quote(v: Any, rendered: str | None = None) -> str:
    """`v` quoted in a `RequestError` message: its repr (or `rendered`, another written form of
    it, such as its JSON), shown cut to 40 characters."""
    text = repr(v) if rendered is None else rendered.replace(_QUOTE_OPEN, "").replace(_QUOTE_CLOSE, "")
    # Kept whole only as far as a personal value in the shown part could reach (an email has at
    # most 254 characters): the masker never scans a megabyte cell.
    return _QUOTE_OPEN + text[:_KEEP] + _QUOTE_CLOSE


def _resolve(template: str, mask: Callable[[str], str] | None) -> str:
    def one(m: re.Match) -> str:
        text = mask(m.group(1)) if mask is not None else m.group(1)
        return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."

    return _QUOTED.sub(one, template) if _QUOTE_OPEN in template else template


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the signature."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    kind: str | None = None
    labels: tuple[str, ...] | None = None
    optional: bool = False
    min_rows: int | None = None
    imputes: bool = False  # a missing value (null) is filled in by the model's fitted policy
    # A text value in a number column is kept for data.expect, which reads it as missing: the
    # package's type check of this column has policy warn (and the column imputes).
    lenient: bool = False

    def metadata(self) -> dict[str, Any]:
        """The v2 metadata form: `{"name", "datatype", "shape"}`."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs a served model declares, and how requests map onto them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    layout: Literal["frame", "tensor"]

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "Signature":
        """Read `manifest["signature"]`.

        Binary table columns whose two values are not numbers (`"yes"`/`"no"`) are declared
        FP64 by packages of format 1; the preprocessor compares them as text, so they are
        served as BYTES, which is what the model accepts.

        Raises:
            ModelError: the manifest has no usable signature (named in the message).
        """
        sig = manifest.get("signature")
        if not isinstance(sig, Mapping) or not isinstance(sig.get("inputs"), list) or not sig["inputs"]:
            raise ModelError("the package's manifest has no signature.inputs; it cannot be served")
        binary = (manifest.get("preprocessing") or {}).get("binary_values") or {}
        inputs = tuple(_spec(entry, "signature.inputs", i, binary) for i, entry in enumerate(sig["inputs"]))
        outputs = tuple(_spec(entry, "signature.outputs", i, {}) for i, entry in enumerate(sig.get("outputs") or []))
        names = [s.name for s in inputs]
        if len(set(names)) != len(names):
            raise ModelError(f"signature.inputs: names repeat ({names})")
        if all(len(s.shape) == 1 for s in inputs):
            layout: Literal["frame", "tensor"] = "frame"
            features = (manifest.get("preprocessing") or {}).get("features") or {}
            warned = _type_warned(manifest)
            inputs = tuple(replace(s, imputes=_imputes(features.get(s.name))) for s in inputs)
            inputs = tuple(replace(s, lenient=s.imputes and s.name in warned) for s in inputs)
        elif len(inputs) == 1:
            layout = "tensor"
        else:
            raise ModelError(
                f"signature.inputs: {len(inputs)} inputs of which some are tensors; a served model takes "
                "either columns of shape [-1] or exactly one tensor"
            )
        return cls(inputs, outputs, layout)

    @cached_property
    def batchable(self) -> bool:
        """False when one request's rows form one unit (a series) that must not mix with others
        (read several times per request: worked out once)."""
        return not any(s.min_rows for s in self.inputs)

    @property
    def tensor(self) -> TensorSpec:
        """The one input of a tensor-layout signature."""
        return self.inputs[0]

    @cached_property
    def matrix(self) -> TensorSpec | None:
        """The one `[N, F]` tensor a table model whose inputs are all numbers also takes, its
        columns in signature order (the generic form of sklearn-style clients and MLServer):
        named `input` (`input_matrix` if a column has that name), of the narrowest float type
        among the columns so that every column takes its values by a safe cast. None for other
        models (text or integer columns, optional inputs, a series)."""
        if self.layout != "frame" or not self.batchable:
            return None
        if any(s.optional or NP_TYPES[s.datatype].kind != "f" for s in self.inputs):
            return None
        names = {s.name for s in self.inputs}
        name = MATRIX_INPUT if MATRIX_INPUT not in names else f"{MATRIX_INPUT}_matrix"
        if name in names:
            return None
        narrowest = min((s.datatype for s in self.inputs), key=lambda d: NP_TYPES[d].itemsize)
        return TensorSpec(name, narrowest, (-1, len(self.inputs)), imputes=True)

    def metadata_inputs(self) -> list[dict[str, Any]]:
        """The inputs of the v2 model metadata: every declared input, then the matrix form if any."""
        out = [s.metadata() for s in self.inputs]
        if self.matrix is not None:
            out.append(self.matrix.metadata())
        return out

    @cached_property
    def block_plans(self) -> dict[tuple[str, ...], Any]:
        """`block_payload`'s plans, by the column names of a request (filled as requests come)."""
        return {}

    def describe(self) -> str:
        """A short human description of what a request must carry, for error messages."""
        if self.layout == "tensor":
            t = self.tensor
            return f"one tensor {t.name!r} of shape {list(t.shape)} ({t.datatype})"
        text = "columns " + ", ".join(f"{s.name!r} ({s.datatype}{', optional' if s.optional else ''})" for s in self.inputs)
        m = self.matrix
        if m is not None:
            text += f"; or one tensor {m.name!r} of shape {list(m.shape)} ({m.datatype}) holding them in this order"
        if any(_RENAMED_HEADER.fullmatch(s.name) for s in self.inputs):  # data.protect renamed a personal header
            text += (
                "; a column whose header held personal data is sent under the name `trustforge scan` shows for it "
                "(its position and type, as above), not under its header"
            )
        return text


def _spec(entry: Any, where: str, i: int, binary: Mapping[str, Any]) -> TensorSpec:
    if not isinstance(entry, Mapping):
        raise ModelError(f"{where}[{i}] must be an object")
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not isinstance(name, str) or not name:
        raise ModelError(f"{where}[{i}].name must be a non-empty string")
    if datatype not in NP_TYPES:
        raise ModelError(f"{where}[{i}].datatype {datatype!r} is not one of {', '.join(NP_TYPES)}")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and (d == -1 or d > 0) for d in shape) or shape[0] != -1:
        raise ModelError(f"{where}[{i}].shape must start with -1 (rows) and hold positive sizes or -1; got {shape!r}")
    kind = entry.get("kind")
    if kind == "binary" and name in binary and not all(_is_number_text(v) for v in binary[name]):
        datatype = "BYTES"
    labels = entry.get("labels")
    min_rows = entry.get("min_rows")
    return TensorSpec(
        name,
        datatype,
        tuple(shape),
        kind if isinstance(kind, str) else None,
        tuple(str(label) for label in labels) if isinstance(labels, list) else None,
        optional=entry.get("optional") is True,
        min_rows=min_rows if isinstance(min_rows, int) and not isinstance(min_rows, bool) else None,
    )


def _type_warned(manifest: Mapping[str, Any]) -> set[str]:
    """The columns whose type check in the package's `data.expect` has policy warn: a value of
    the wrong type is read as missing (as `predict` reads it), not refused. An inferred rule
    whose type check is left to the feature type (`model_types`) refuses as before."""
    ex = expectations_of(manifest)
    if ex is None:
        return set()
    return {
        r.column
        for r in ex.rules
        if r.type is not None and not (r.origin == "inferred" and ex.model_types) and ex.policy_of("type", r) == "warn"
    }


def _imputes(feature: Any) -> bool:
    """Whether a table column's fitted state fills in missing values (every feature type does
    unless its `on_missing` policy is "error"; a column without a state leaves it to the model)."""
    state = feature.get("state") if isinstance(feature, Mapping) else None
    return not (isinstance(state, Mapping) and state.get("on_missing") == "error")


def _is_number_text(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------- payloads


def payload_rows(payload: Payload) -> int:
    """Number of rows of a payload."""
    if isinstance(payload, np.ndarray):
        return int(payload.shape[0])
    if type(payload) is ColumnBlock and payload.block is not None:
        return int(payload.block.shape[1])
    return len(next(iter(payload.values()))) if payload else 0


def payload_key(payload: Payload) -> tuple:
    """Payloads with equal keys concatenate: tensors need equal trailing shapes, tables the
    same columns (optional inputs may be absent)."""
    return tuple(payload.shape[1:]) if isinstance(payload, np.ndarray) else tuple(payload)


def concat_payloads(payloads: Sequence[Payload]) -> Payload:
    """One payload of the rows of all `payloads` (which share a key), in order."""
    if len(payloads) == 1:
        return payloads[0]
    if isinstance(payloads[0], np.ndarray):
        return np.concatenate(payloads, axis=0)
    joined = join_blocks(payloads)  # one concatenate of the blocks, not one per column
    if joined is not None:
        return joined
    first = payloads[0]
    return {name: _concat_column([p[name] for p in payloads]) for name in first}


class ColumnBlock(dict):
    """A frame payload (column name -> 1-D array) whose columns are the rows of one array
    `block` (columns, rows), in the dict's order: what a request of plain numbers parses to.

    Code that reads every column at once (the expectations' range check, batching, the probing
    detector, the message to a worker) takes `block` in one numpy call instead of one call per
    column, which cost several microseconds per column and request. Anything that changes the
    dict sets `block` to None: it is then an ordinary payload, read column by column.

    The columns (one numpy view per row of `block`) are made when something first reads them
    as a dict, not when the block is made: on the server's request path only `block`, the
    names and the length are read, and the views cost 7 us per request of 30 columns. Every
    method of dict that reads or changes entries makes them first; `__iter__` and `__len__`
    are overridden too, so code in C that merges a dict subclass (`dict(p)`, `{**p}`) goes
    through `keys` and `__getitem__`, which make them. What reads a dict's storage without its
    methods (`orjson.dumps(p)`, `dict.items(p)` called unbound) sees no columns before they
    are made: nothing here hands a block to such code (`predict_payload` copies the columns
    into a plain dict for the model, the drift feed reads `items()`).
    """

    __slots__ = ("block", "names", "_made")

    def __init__(self, names: tuple[str, ...], block: np.ndarray):
        super().__init__()
        self.block: np.ndarray | None = block
        self.names = names
        self._made = False

    def _make(self) -> None:
        if not self._made:
            self._made = True
            super().update(zip(self.names, self.block))

    # reading (no change to `block`)
    def __len__(self) -> int:
        return len(self.names) if not self._made else super().__len__()

    def __iter__(self) -> Any:
        return iter(self.names) if not self._made else super().__iter__()

    def __contains__(self, key: object) -> bool:
        self._make()
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self._make()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._make()
        return super().get(key, default)

    def keys(self) -> Any:
        self._make()
        return super().keys()

    def values(self) -> Any:
        self._make()
        return super().values()

    def items(self) -> Any:
        self._make()
        return super().items()

    def copy(self) -> dict:
        self._make()
        return dict(super().items())

    def __reversed__(self) -> Any:
        self._make()
        return super().__reversed__()

    def __eq__(self, other: object) -> bool:
        self._make()
        if isinstance(other, ColumnBlock):
            other._make()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __or__(self, other: Any) -> Any:
        self._make()
        return dict(super().items()) | other

    def __ror__(self, other: Any) -> Any:
        self._make()
        return other | dict(super().items())

    def __repr__(self) -> str:
        self._make()
        return super().__repr__()

    def __reduce__(self) -> Any:
        self._make()
        return (dict, (dict(super().items()),))

    # changing (the dict is then an ordinary payload)
    def __setitem__(self, key: str, value: Any) -> None:
        self._make()
        self.block = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._make()
        self.block = None
        super().__delitem__(key)

    def __ior__(self, other: Any) -> "ColumnBlock":
        self._make()
        self.block = None
        return super().__ior__(other)

    def pop(self, *args: Any) -> Any:
        self._make()
        self.block = None
        return super().pop(*args)

    def popitem(self) -> Any:
        self._make()
        self.block = None
        return super().popitem()

    def clear(self) -> None:
        self._make()
        self.block = None
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._make()
        self.block = None
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._make()
        self.block = None
        return super().setdefault(key, default)


def _same_blocks(payloads: Sequence[Any]) -> bool:
    """True when every payload is a `ColumnBlock` with its block, the same columns and dtype."""
    first = payloads[0]
    if type(first) is not ColumnBlock or first.block is None:
        return False
    names, dtype = first.names, first.block.dtype
    for p in payloads:
        if type(p) is not ColumnBlock or p.block is None or p.names != names or p.block.dtype != dtype:
            return False
    return True


def join_blocks(payloads: Sequence[Any]) -> "ColumnBlock | None":
    """The rows of `payloads` as one `ColumnBlock` when they are blocks of the same columns, else None."""
    if not payloads or not _same_blocks(payloads):
        return None
    if len(payloads) == 1:
        return payloads[0]
    return ColumnBlock(payloads[0].names, np.concatenate([p.block for p in payloads], axis=1))


def _concat_column(parts: list[np.ndarray]) -> np.ndarray:
    kinds = {p.dtype.kind for p in parts}
    if "O" in kinds and len(kinds) > 1:  # text beside an all-missing float column (None → NaN)
        parts = [p.astype(object) for p in parts]
    return np.concatenate(parts)


def slice_columns(columns: Columns, start: int, stop: int) -> Columns:
    """Rows [start, stop) of every column (views, no copies)."""
    return {k: v[start:stop] for k, v in columns.items()}


def to_model_input(payload: Payload, signature: Signature) -> pd.DataFrame | np.ndarray:
    """What `Model.predict` takes: a DataFrame with the signature's columns, or the tensor."""
    if isinstance(payload, np.ndarray):
        return payload
    return pd.DataFrame({s.name: payload[s.name] for s in signature.inputs if s.name in payload}, copy=False)


def columns_from_matrix(matrix: np.ndarray, signature: Signature, where: str, imputed: dict[str, int] | None = None) -> Columns:
    """The columns of an `[N, F]` matrix (see `Signature.matrix`), column j for input j.

    Raises:
        RequestError: a null (NaN here) in a column whose missing-value policy is `error`.
    """
    columns: Columns = {}
    holes = np.isnan(matrix).any(axis=0)  # NaN here stands for a null: NaN itself was refused
    for j, spec in enumerate(signature.inputs):
        col = np.ascontiguousarray(matrix[:, j], dtype=NP_TYPES[spec.datatype])
        if holes[j]:
            nan = np.isnan(col)
            if not spec.imputes:
                r = int(np.flatnonzero(nan)[0])
                raise RequestError(f"{where} holds null at element [{r}, {j}] (column {spec.name!r}); {_no_missing_reason(spec)}")
            if imputed is not None:
                imputed[spec.name] = int(np.count_nonzero(nan))
        columns[spec.name] = col
    return columns


def frame_to_columns(frame: pd.DataFrame) -> Columns:
    """A predictions DataFrame as column name → numpy array (text columns as object arrays)."""
    return {str(c): frame[c].to_numpy() for c in frame.columns}


# ---------------------------------------------------------------------------- JSON data


def _flat_count(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def column_from_json(
    values: Any, spec: TensorSpec, where: str, claimed: str | None = None, *, imputed: dict[str, int] | None = None
) -> np.ndarray:
    """One column (1-D array) from a JSON list, checked against the input's declared type.

    Args:
        values: the JSON list (flat).
        spec: the declared input.
        where: the field, for messages (e.g. `inputs['age']`).
        claimed: the datatype the request states for these values (v2), or None (MLflow JSON).
        imputed: where to count the column's missing values the model will fill in (by name).

    Raises:
        RequestError: naming `where`, the expected type and the first bad value and its row.
    """
    if not isinstance(values, list):
        raise RequestError(f"{where} must be a list of values; got {json_kind(values)}")
    if not values:
        raise RequestError(f"{where} is empty; send at least one row")
    arr = _convert(values, spec, where, claimed, row_based=True)
    if imputed is not None and spec.imputes and None in values:  # nulls got past _convert: the column imputes them
        imputed[spec.name] = imputed.get(spec.name, 0) + values.count(None)
    return arr


def numeric_rows(rows: list[list[Any]]) -> np.ndarray | None:
    """Rows of JSON values (of equal length) as one (rows, width) array when they hold only
    numbers that convert exactly (no null, text, boolean, non-finite value or integer beyond
    2**53): then `block_column` takes each float input's column from it at once, instead of one
    `column_from_json` per column (which cost 8 us per column and request, a third of a one-row
    request's time in the server at 32 clients). None otherwise: every column then goes through
    `column_from_json`, which finds and names whatever is wrong."""
    if not rows or not rows[0]:
        return None
    for row in rows:  # numpy would read true as 1.0: such a request takes the checked path
        for v in row:
            if v is True or v is False:
                return None
    try:
        block = np.asarray(rows)
    except (ValueError, OverflowError):
        return None
    if block.ndim != 2 or block.dtype.kind not in "if":
        return None
    if block.dtype.kind == "f":
        magnitude = np.abs(block)
        # Non-finite: refused by the checked path. Beyond 2**53 an integer is not exact as float64
        # (the checked path converts a column of integers from int64 straight to its type).
        if not (magnitude < 2.0**53).all():
            return None
    return block


def block_column(block: np.ndarray, j: int, spec: TensorSpec, cache: dict[Any, np.ndarray]) -> np.ndarray | None:
    """Column `j` of a `numeric_rows` block as `column_from_json` returns it for `spec` (MLflow
    JSON, no claimed datatype), when `spec` takes floats and every value fits its type; else None
    (the caller takes `column_from_json`). `cache` (one dict per block) holds the block converted
    once per type, transposed, so that each column is a contiguous row of it."""
    target = NP_TYPES[spec.datatype]
    if spec.datatype == "BYTES" or target.kind != "f":
        return None
    if target.itemsize < 8:
        fits = cache.get(("fits", target))
        if fits is None:
            fits = cache[("fits", target)] = (np.abs(block) <= np.finfo(target).max).all(axis=0)
        if not fits[j]:
            return None
    converted = cache.get(target)
    if converted is None:
        with np.errstate(over="ignore"):  # a column beyond the type's range overflows here, but `fits` never hands it out
            converted = cache[target] = block.T.astype(target, order="C")
    return converted[j]


_NO_PLAN = object()
_MAX_PLANS = 64  # column lists remembered per signature (clients send one or a few)


def block_payload(block: np.ndarray, columns: Sequence[str], signature: Signature) -> ColumnBlock | None:
    """A `numeric_rows` block (rows, width) of a request whose column names are `columns`, as
    the payload that `block_column` (or `column_from_json`) makes of it column by column, when
    every input the request carries takes floats of one type and every value fits it: a
    `ColumnBlock` of the signature's inputs, in signature order, with the same values and
    dtype. None otherwise (names that repeat, a required input missing, an input of another
    type, a value beyond the type's range): the caller then goes column by column, which
    finds and names whatever is wrong."""
    key = tuple(columns)
    plans = signature.block_plans
    plan = plans.get(key, _NO_PLAN)
    if plan is _NO_PLAN:
        plan = _block_plan(key, signature)
        if len(plans) >= _MAX_PLANS:
            plans.clear()
        plans[key] = plan
    if plan is None:
        return None
    names, index, target, limit = plan
    part = block if index is None else block[:, index]  # (rows, inputs)
    if limit is not None and not (np.abs(part) <= limit).all():
        return None
    return ColumnBlock(names, part.T.astype(target, order="C"))  # (inputs, rows): each column contiguous


def _block_plan(columns: tuple[str, ...], signature: Signature) -> tuple[tuple[str, ...], np.ndarray | None, np.dtype, float | None] | None:
    """(input names, the request column of each or None when they are the request's columns in
    order, the float type they share, the bound to check values against or None) for
    `block_payload`; None when it does not apply."""
    if signature.layout != "frame":
        return None
    index = {c: j for j, c in enumerate(columns)}
    if len(index) != len(columns):
        return None
    names, at, target = [], [], None
    for spec in signature.inputs:
        if spec.name not in index:
            if spec.optional:
                continue
            return None
        t = NP_TYPES[spec.datatype]
        if spec.datatype == "BYTES" or t.kind != "f" or (target is not None and t != target):
            return None
        target = t
        names.append(spec.name)
        at.append(index[spec.name])
    if target is None:
        return None
    # `numeric_rows` holds every value below 2**53 (floats) or 2**63 (integers): FP32 and FP64 hold
    # them all, so only a narrower type (FP16) needs its range checked on each request.
    limit = float(np.finfo(target).max)
    return (
        tuple(names),
        (None if at == list(range(len(columns))) else np.array(at, dtype=np.intp)),
        target,
        limit if limit < 2.0**64 else None,
    )


def tensor_from_json(data: Any, spec: TensorSpec, where: str, claimed: str | None = None, shape: Sequence[int] | None = None) -> np.ndarray:
    """A tensor from (nested or, with `shape`, flat) JSON lists, checked against `spec`.

    Raises:
        RequestError: ragged lists, a shape the signature does not allow, or a bad value.
    """
    if not isinstance(data, list) or not data:
        raise RequestError(f"{where} must be a non-empty (nested) list of numbers; got {json_kind(data)}")
    if shape is not None:
        flat = _flatten(data, where)
        if len(flat) != _flat_count(shape):
            raise RequestError(f"{where} holds {len(flat)} values; shape {list(shape)} needs {_flat_count(shape)}")
        arr = _convert(flat, spec, where, claimed, row_based=tuple(int(d) for d in shape)).reshape(tuple(shape))
    else:
        try:
            nested = np.asarray(data)
        except (ValueError, OverflowError):
            raise RequestError(f"{where} is ragged: every row must have the same shape") from None
        if nested.ndim != len(spec.shape):
            raise RequestError(f"{where} has {nested.ndim} dimensions; the model takes shape {list(spec.shape)}")
        flat = nested.reshape(-1)
        arr = _convert(flat if flat.dtype.kind in "iufb" else flat.tolist(), spec, where, claimed, row_based=nested.shape)
        arr = arr.reshape(nested.shape)
    check_tensor_shape(arr.shape, spec, where)
    return arr


def check_tensor_shape(shape: Sequence[int], spec: TensorSpec, where: str) -> None:
    """Refuse a shape whose rank or fixed sizes differ from the signature's, or with no rows."""
    if len(shape) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, shape)):
        raise RequestError(f"{where} has shape {list(shape)}; the model takes {list(spec.shape)} (-1: any size)")
    if shape[0] < 1:
        raise RequestError(f"{where} has no rows; send at least one")


def _flatten(data: list, where: str) -> list:
    out: list = []
    stack = [iter(data)]
    depth = 0
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                depth += 1
                if depth > 32:
                    raise RequestError(f"{where} is nested too deeply")
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
            depth -= 1
    return out


def _convert(
    values: list | np.ndarray, spec: TensorSpec, where: str, claimed: str | None, *, row_based: bool | tuple[int, ...]
) -> np.ndarray:
    """A flat list of JSON scalars as a numpy array of the declared type (or a RequestError)."""
    declared = spec.datatype
    if claimed is not None:
        _check_claim(claimed, spec, where)
    if declared == "BYTES":
        return _text_column(values.tolist() if isinstance(values, np.ndarray) else values, spec, where, row_based)
    target = NP_TYPES[declared]
    takes_bool = target.kind == "b" or spec.kind == "binary" or claimed == "BOOL"
    if not takes_bool:
        _refuse_booleans(values, target, where, row_based)
    if isinstance(values, np.ndarray):
        arr: np.ndarray | None = values
    else:
        try:
            arr = np.asarray(values)
        except (ValueError, OverflowError):
            arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iufb":
        # The fast path: JSON numbers only. Values must fit the type the request claims, then
        # the declared one; float → int is not a safe cast, and nothing may become infinite.
        if arr.dtype.kind == "f":
            _check_finite(arr, where, row_based)
        if claimed is not None:
            _check_range(arr, NP_TYPES[claimed], where, row_based)
        _check_range(arr, target, where, row_based)
        return arr.astype(target)
    # Nulls, text, nested lists or numbers too large for int64: value by value.
    if isinstance(values, np.ndarray):
        values = values.tolist()
    out = np.empty(len(values), dtype=np.float64)
    types = [t for t in (NP_TYPES[claimed] if claimed is not None else None, target) if t is not None]
    kept: dict[int, str] = {}  # text kept for data.expect in a lenient column (it reads it as missing)
    for i, v in enumerate(values):
        if v is None:
            if not spec.imputes:
                _refuse_missing(spec, where, i, row_based)
            out[i] = np.nan  # missing: the model's fitted policy fills it in
        elif isinstance(v, (bool, int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise RequestError(f"{where} holds {v} at {_pos(i, row_based)}; values must be finite")
            for t in types:
                if t.kind in "iub" and (isinstance(v, float) and not float(v).is_integer() or not _fits(v, t)):
                    raise RequestError(f"{where} must hold {_type_word(t)}; got {quote(v)} at {_pos(i, row_based)}")
            try:
                x = float(v)
            except OverflowError:  # an integer of hundreds of digits
                x = math.inf
            for t in types:
                if t.kind == "f" and not abs(x) <= np.finfo(t).max:
                    raise RequestError(f"{where} holds {quote(v)} at {_pos(i, row_based)}, beyond the range of {_v2_name(t)}")
            out[i] = x
        elif isinstance(v, str) and spec.lenient and row_based is True:
            kept[i] = v
            out[i] = np.nan
        else:
            raise RequestError(f"{where} must hold {_type_word(target)}; got {json_kind(v)} {quote(v)} at {_pos(i, row_based)}")
    if kept:  # numbers and the kept text: data.expect flags the text and reads it as missing
        mixed = out.astype(object)
        for i, v in kept.items():
            mixed[i] = v
        return mixed
    if target.kind == "f":
        return out.astype(target)
    if np.isnan(out).any():
        return out  # integers with missing values stay float (NaN), as pandas keeps them
    return out.astype(target)


def _refuse_booleans(values: list | np.ndarray, target: np.dtype, where: str, row_based: bool | tuple[int, ...]) -> None:
    """JSON `true` is not the number 1: refuse booleans in a numeric input (numpy would cast them)."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "b":
            raise RequestError(f"{where} must hold {_type_word(target)}; got a boolean {quote(values[0].item())} at {_pos(0, row_based)}")
        if values.dtype != object:
            return
    for i, v in enumerate(values):
        if v is True or v is False:
            raise RequestError(f"{where} must hold {_type_word(target)}; got a boolean {quote(v)} at {_pos(i, row_based)}")


def _check_range(arr: np.ndarray, target: np.dtype, where: str, row_based: bool | tuple[int, ...]) -> None:
    """Refuse values `target` cannot hold: beyond an integer type's range or not integral, beyond
    a float type's largest finite value (it would become infinity)."""
    if target.kind in "iub":
        _check_integral(arr, target, where, row_based)
        return
    if target.kind != "f" or target.itemsize >= 8 or arr.dtype.kind not in "iuf":
        return
    with np.errstate(invalid="ignore", over="ignore"):
        bad = np.abs(arr.astype(np.float64)) > np.finfo(target).max
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RequestError(f"{where} holds {quote(arr[i].item())} at {_pos(i, row_based)}, beyond the range of {_v2_name(target)}")


def _v2_name(target: np.dtype) -> str:
    return _V2_OF_NUMPY.get(target, target.name)


def _text_column(values: list, spec: TensorSpec, where: str, row_based: bool | tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, str):
            arr[i] = v
        elif v is None:
            if not spec.imputes:
                _refuse_missing(spec, where, i, row_based)
            arr[i] = v
        elif isinstance(v, int) and (not isinstance(v, bool) or spec.kind == "binary"):
            arr[i] = str(v)  # an id or code sent as a number; true/false for a yes/no column
        else:
            raise RequestError(f"{where} must hold text; got {json_kind(v)} {quote(v)} at {_pos(i, row_based)}")
    return arr


def _check_claim(claimed: str, spec: TensorSpec, where: str) -> None:
    if claimed not in NP_TYPES:
        raise RequestError(f"{where}: datatype {claimed!r} is not one of {', '.join(NP_TYPES)}")
    declared = spec.datatype
    if declared == "BYTES" or claimed == "BYTES":
        if declared != claimed:
            raise RequestError(f"{where} is {declared}; {claimed} data cannot be cast to it safely")
        return
    if claimed == "BOOL" and declared != "BOOL" and spec.kind != "binary":
        raise RequestError(f"{where} is {declared}; BOOL data are not numbers (send {declared})")
    if not np.can_cast(NP_TYPES[claimed], NP_TYPES[declared], casting="safe"):
        raise RequestError(f"{where} is {declared}; {claimed} data cannot be cast to it safely (send {declared})")


def _check_integral(arr: np.ndarray, target: np.dtype, where: str, row_based: bool | tuple[int, ...]) -> None:
    """Refuse values that `target` (an integer or boolean type) cannot hold exactly."""
    if target.kind == "b":
        bad = ~np.isin(arr, (0, 1))
    else:
        info = np.iinfo(target)
        with np.errstate(invalid="ignore"):
            bad = (arr < info.min) | (arr > info.max)
            if arr.dtype.kind == "f":
                bad |= ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RequestError(f"{where} must hold {_type_word(target)}; got {quote(arr[i].item())} at {_pos(i, row_based)}")


def _check_finite(arr: np.ndarray, where: str, row_based: bool | tuple[int, ...]) -> None:
    inf = ~np.isfinite(arr)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise RequestError(f"{where} holds {arr[i].item()} at {_pos(i, row_based)}; values must be finite")


def _fits(v: int | float, target: np.dtype) -> bool:
    if target.kind == "b":
        return v in (0, 1)
    info = np.iinfo(target)
    return info.min <= v <= info.max


def _type_word(target: np.dtype) -> str:
    if target.kind == "b":
        return "booleans"
    if target.kind in "iu":
        return f"integers ({_V2_OF_NUMPY.get(target, target.name)})"
    return "numbers"


def _pos(i: int, row_based: bool | tuple[int, ...]) -> str:
    """Where value `i` of a flat list sits: `row 3` in a column, `element [0, 0, 3, 4]` in a
    tensor of known shape (`row_based` is then that shape), else `element i`."""
    if row_based is True:
        return f"row {i + 1}"
    if isinstance(row_based, tuple) and row_based:
        return "element [" + ", ".join(str(int(k)) for k in np.unravel_index(i, row_based)) + "]"
    return f"element {i}"


def _refuse_missing(spec: TensorSpec, where: str, i: int, row_based: bool | tuple[int, ...]) -> None:
    """A missing value where the input takes none: a tensor, or a column whose policy is `error`."""
    raise RequestError(f"{where} holds null at {_pos(i, row_based)}; {_no_missing_reason(spec)}")


def _no_missing_reason(spec: TensorSpec) -> str:
    if len(spec.shape) > 1:
        return "a tensor takes no missing values"
    return "this column's missing-value policy is error (data.missing), so every row needs a value"


# ---------------------------------------------------------------------------- binary data


def tensor_from_binary(buf: memoryview, claimed: str, shape: Sequence[int], spec: TensorSpec, where: str) -> np.ndarray:
    """A tensor from the v2 binary tensor data extension (little-endian, row-major).

    BYTES elements are each a 4-byte little-endian length followed by that many bytes of UTF-8.

    Raises:
        RequestError: the size does not match the shape, bad UTF-8, or an unsafe cast.
    """
    _check_claim(claimed, spec, where)
    count = _flat_count(shape)
    if claimed == "BYTES":
        items = _decode_bytes_tensor(buf, where)
        if len(items) != count:
            raise RequestError(f"{where} holds {len(items)} strings; shape {list(shape)} needs {count}")
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(tuple(shape))
    dtype = NP_TYPES[claimed].newbyteorder("<")
    if len(buf) != count * dtype.itemsize:
        raise RequestError(
            f"{where}: binary_data_size is {len(buf)} bytes; shape {list(shape)} of {claimed} needs {count * dtype.itemsize}"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(tuple(shape))
    if arr.dtype.kind == "f":
        flat = arr.reshape(-1)
        bad = ~np.isfinite(flat)
        if bad.any():  # binary data have no null: NaN is not a missing value here, it is refused
            i = int(np.flatnonzero(bad)[0])
            at: bool | tuple[int, ...] = True if len(spec.shape) == 1 else tuple(int(d) for d in shape)
            raise RequestError(f"{where} holds {flat[i].item()} at {_pos(i, at)}; values must be finite")
    return arr.astype(NP_TYPES[spec.datatype])  # a copy: the request buffer is not kept alive by the batch


def _decode_bytes_tensor(buf: memoryview, where: str) -> list[str]:
    items: list[str] = []
    offset, end = 0, len(buf)
    while offset < end:
        if offset + 4 > end:
            raise RequestError(f"{where}: truncated BYTES element length at byte {offset}")
        (n,) = struct.unpack_from("<I", buf, offset)
        offset += 4
        if offset + n > end:
            raise RequestError(f"{where}: BYTES element of {n} bytes runs past the end of its data")
        try:
            items.append(bytes(buf[offset : offset + n]).decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(f"{where}: element {len(items)} is not UTF-8 text") from None
        offset += n
    return items


def encode_bytes_tensor(values: Sequence[Any]) -> bytes:
    """The v2 binary form of a BYTES tensor (flattened, row-major)."""
    parts = []
    for v in values:
        data = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)
