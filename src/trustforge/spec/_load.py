"""Loading a spec from YAML (or a dict) into a `TaskSpec`, with errors that name the field.

An error reads like `spec.yaml:12: train.optimizer.lr must be greater than 0; got -3`: the
file and line (when the spec came from a file), the dotted field path, what was expected and
the value given.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from trustforge.errors import SpecError
from trustforge.spec._model import TaskSpec

__all__ = ["load_spec", "spec_to_dict", "spec_to_yaml", "spec_digest"]

_MAX_SPEC_BYTES = 1 << 20


def load_spec(source: str | Path | Mapping[str, Any] | TaskSpec) -> TaskSpec:
    """Read and validate a spec.

    Args:
        source: a path to a YAML file, a mapping (already parsed), or a `TaskSpec`.

    Returns:
        The validated spec. Relative data paths are resolved against the spec file's folder.

    Raises:
        SpecError: the file is missing or unreadable, the YAML is malformed, or a field is invalid.
    """
    if isinstance(source, TaskSpec):
        return source
    if isinstance(source, Mapping):
        return _validate(dict(source), where=None, lines={}, base=None)
    path = Path(source)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    if path.stat().st_size > _MAX_SPEC_BYTES:
        raise SpecError(f"{path}: spec file is larger than 1 MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec ({exc.__class__.__name__})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise SpecError(f"{path}{line}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a mapping of sections; got {type(raw).__name__}")
    return _validate(raw, where=str(path), lines=_line_index(node), base=path.parent)


def spec_to_dict(spec: TaskSpec) -> dict[str, Any]:
    """The normalised spec as plain JSON-compatible data (every default filled in)."""
    return json.loads(spec.model_dump_json())


def spec_to_yaml(spec: TaskSpec) -> str:
    """The normalised spec as YAML, sections in the order of the flow."""
    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False, default_flow_style=None)


def spec_digest(spec: TaskSpec) -> str:
    """SHA-256 of the normalised spec; equal specs give equal digests."""
    blob = json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _validate(raw: dict[str, Any], *, where: str | None, lines: dict[tuple, int], base: Path | None) -> TaskSpec:
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        messages = [_describe(err, raw, where, lines) for err in exc.errors()]
        first, rest = messages[0], len(messages) - 1
        more = f" (and {rest} more: {'; '.join(messages[1:3])}{'; ...' if rest > 2 else ''})" if rest else ""
        raise SpecError(first + more) from None
    if base is not None:
        _resolve_paths(spec, base)
    return spec


def _resolve_paths(spec: TaskSpec, base: Path) -> None:
    scheme, _, rest = spec.data.source.partition(":")
    if scheme in ("csv", "parquet", "images") and not Path(rest).expanduser().is_absolute():
        spec.data.source = f"{scheme}:{(base / rest).resolve()}"


def _describe(err: Mapping[str, Any], raw: Any, where: str | None, lines: dict[tuple, int]) -> str:
    path = _user_path(err["loc"], raw)
    dotted = ".".join(str(p) for p in path)
    kind = err["type"]
    if kind == "extra_forbidden":
        text = f"{dotted} is not a known field"
        parent = _model_at(path[:-1])
        if parent is not None:
            text += f"; allowed: {', '.join(parent.model_fields)}"
    elif kind == "missing":
        text = f"{dotted} is required"
    elif kind == "union_tag_invalid":
        text = f"{dotted}: {err['msg'][0].lower() + err['msg'][1:]}"
    else:
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg[0].lower() + msg[1:] if msg else msg
        given = f"; got {_short(err.get('input'))}" if "got " not in msg else ""
        text = f"{dotted} {msg}{given}" if dotted else f"{msg}"
    line = _find_line(path, lines)
    prefix = f"{where}:{line}: " if where and line else (f"{where}: " if where else "")
    return prefix + text


def _user_path(loc: tuple, raw: Any) -> list[Any]:
    """Drop the union tags pydantic inserts into error locations (`model.cnn.channels`).

    A location part that is not a key of the user's data but whose next part is, is a tag.
    """
    out: list[Any] = []
    node = raw
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif i < len(parts) - 1 and isinstance(node, dict):
            continue  # a discriminator tag, not in the user's data
        elif isinstance(part, str) and part.startswith(("function-", "tagged-union", "list[", "tuple[")):
            continue
        else:
            out.append(part)
            node = None
    return out


def _model_at(path: list[Any]) -> type | None:
    """The spec model class that owns the fields at `path`, for 'allowed:' hints."""
    from pydantic import BaseModel

    from trustforge.spec import _model as m

    cls: type[BaseModel] = TaskSpec
    unions = {"model": {"mlp": m.MLPSpec, "cnn": m.CNNSpec, "rnn": m.RNNSpec}}
    for part in path:
        if not isinstance(part, str) or part not in cls.model_fields:
            return None
        ann = cls.model_fields[part].annotation
        candidates = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(candidates) == 1:
            cls = candidates[0]
        elif part in unions:
            return None  # which union member applies depends on the kind; the message suffices
        else:
            return None
    return cls


def _line_index(node: yaml.Node | None) -> dict[tuple, int]:
    """Map every key path of the YAML document to its 1-based line number."""
    index: dict[tuple, int] = {}

    def walk(n: yaml.Node, path: tuple) -> None:
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                p = path + (key.value,)
                index[p] = key.start_mark.line + 1
                walk(value, p)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                index[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if node is not None:
        walk(node, ())
    return index


def _find_line(path: list[Any], lines: dict[tuple, int]) -> int | None:
    for k in range(len(path), 0, -1):
        line = lines.get(tuple(path[:k]))
        if line is not None:
            return line
    return None


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
