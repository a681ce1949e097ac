"""Loading a spec from YAML (or a dict) into a `TaskSpec`, with errors that name the field.

Every error is one line: the file and line (when the spec came from a file), the dotted field
path, what was expected and the value given:

    spec.yaml:12: train.optimizer.lr must be a number in (0, 10]; got -3
    spec.yaml:4: train.optimzer is not a field of train; did you mean optimizer? (allowed: ...)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Mapping, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from trustforge.errors import SpecError
from trustforge.spec._model import ParamSpec, SpecProblem, TaskSpec

__all__ = ["load_spec", "located", "spec_to_dict", "spec_to_yaml", "spec_digest", "redact_spec", "written_spec"]

_MAX_SPEC_BYTES = 1 << 20


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's scalars where 1.1 surprises: `1e-3` is a number (1.1
    wants `1.0e-3`), and only true/false are booleans. YAML 1.1 also reads yes, no, on, off, y
    and n as booleans, so `pii: off`, a value the field lists, arrived as `false`, and an
    expectation `allowed: [yes, no]` as `[true, false]`; in a spec they are the words written.
    A field that wants a boolean still takes `yes` or `off` (the validation reads them)."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in _SpecLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_spec(source: str | Path | Mapping[str, Any] | TaskSpec) -> TaskSpec:
    """Read and validate a spec.

    Args:
        source: a path to a YAML file, a mapping (already parsed), or a `TaskSpec`.

    Returns:
        The validated spec. Relative data paths are resolved against the spec file's folder.

    Raises:
        SpecError: the file is missing or unreadable, the YAML is malformed, or a field is
            invalid; the message is one line that names the file, line and field.
    """
    if isinstance(source, TaskSpec):
        return source
    if isinstance(source, Mapping):
        return _validate(dict(source), where=None, lines={}, base=None)
    if not isinstance(source, (str, os.PathLike)):
        shown = repr(source) if len(repr(source)) <= 40 else ""
        raise SpecError(
            f"the spec must be a TaskSpec, a mapping or the path of a YAML file (a str or os.PathLike); "
            f"got {type(source).__name__} {shown}".rstrip()
        )
    path = Path(source)
    if path.is_dir():
        raise SpecError(f"{path}: is a folder, not a spec file")
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    if path.stat().st_size > _MAX_SPEC_BYTES:
        raise SpecError(f"{path}: spec file is larger than 1 MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read spec ({exc.__class__.__name__})") from None
    node, raw = _parse_yaml(text, path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}:1: a spec must be a mapping of sections (name:, data:, model:, ...); got {_kind_of(raw)}")
    return _validate(raw, where=str(path), lines=_line_index(node, path), base=path.parent)


# A message that starts with the dotted field it names: `train.privacy.delta must be ...`.
_FIELD_FIRST = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)[ :]")


@contextmanager
def located(source: Any) -> Iterator[None]:
    """Give a `SpecError` raised inside the file and line of the field it names, as `load_spec`'s
    own errors have them, where the spec came from a file (`source` a path) and the message
    starts with the dotted field: the checks that need the data (train.privacy.delta against
    the training rows) run after the spec is loaded.
    """
    try:
        yield
    except SpecError as exc:
        message = str(exc)
        field = _FIELD_FIRST.match(message)
        if not isinstance(source, (str, os.PathLike)) or field is None:
            raise
        path = Path(source)
        try:
            node, _ = _parse_yaml(path.read_text(encoding="utf-8"), path)
            line = _find_line(field.group(1).split("."), _line_index(node, path))
        except (OSError, UnicodeDecodeError, SpecError):
            raise exc from None
        if line is None:
            raise
        raise type(exc)(f"{source}:{line}: {message}") from None


def spec_to_dict(spec: TaskSpec) -> dict[str, Any]:
    """The normalised spec as plain JSON-compatible data (every default filled in)."""
    return json.loads(spec.model_dump_json())


def spec_to_yaml(spec: TaskSpec) -> str:
    """The normalised spec as YAML, sections in the order of the flow."""
    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False, default_flow_style=None, allow_unicode=True, width=1 << 16)


def spec_digest(spec: TaskSpec) -> str:
    """SHA-256 of the normalised spec; equal specs give equal digests."""
    blob = json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------- YAML


def _parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for line numbers) and the data built from it."""
    loader = _SpecLoader(text)
    try:
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}{_yaml_problem(exc)}") from None
    except RecursionError:
        raise SpecError(f"{path}: malformed YAML: nested too deeply") from None
    finally:
        loader.dispose()
    return node, raw


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """`:LINE: malformed YAML: <problem> (<context> at line N)` on one line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    cmark = getattr(exc, "context_mark", None)
    if context and cmark is not None and (mark is None or cmark.line != mark.line):
        problem += f" ({context} at line {cmark.line + 1})"
    elif context:
        problem += f" ({context})"
    return f"{line}: malformed YAML: {_one_line(problem)}"


def _line_index(node: yaml.Node | None, path: Path) -> dict[tuple, int]:
    """Map every key path of the YAML document to its 1-based line; refuse duplicate keys."""
    index: dict[tuple, int] = {}
    seen: set[int] = set()

    def walk(n: yaml.Node, at: tuple) -> None:
        if id(n) in seen:  # an alias: its lines are those of its anchor (and no exponential walk)
            return
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key, value in n.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    continue
                name = key.value if isinstance(key, yaml.ScalarNode) else None
                line = key.start_mark.line + 1
                if name is not None and name in first:
                    dotted = _dotted(list(at) + [name])
                    raise SpecError(f"{path}:{line}: {dotted} is given twice (first at line {first[name]}); keep one")
                if name is not None:
                    first[name] = line
                    index.setdefault(at + (name,), line)
                walk(value, at + (name,))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                index.setdefault(at + (i,), item.start_mark.line + 1)
                walk(item, at + (i,))

    if node is not None:
        walk(node, ())
    return index


# ---------------------------------------------------------------------------- validation


def _validate(raw: dict[Any, Any], *, where: str | None, lines: dict[tuple, int], base: Path | None) -> TaskSpec:
    raw = _string_keys(raw)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        nowhere = float("inf")  # errors without a line sort last
        found: list[tuple[float, str]] = []
        for err in exc.errors(include_url=False):
            path, text = _describe(err, raw)
            line = _find_line(path, lines)
            entry = (line if line is not None else nowhere, text)
            if entry not in found:
                found.append(entry)
        found.sort(key=lambda f: f[0])  # first in the file first
        (line, first), rest = found[0], found[1:]
        prefix = f"{where}:{line}: " if where and line != nowhere else (f"{where}: " if where else "")
        more = ""
        if rest:
            shown = "; ".join((f"line {ln}: " if where and ln != nowhere else "") + _ALLOWED.sub("", t) for ln, t in rest[:2])
            more = f" (and {len(rest)} more: {shown}{'; ...' if len(rest) > 2 else ''})"
        raise SpecError(prefix + first + more) from None
    if base is not None:
        _resolve_paths(spec, base)
    return spec


# The fields that name a data source (a path for the path schemes of data's `SOURCES`).
_SOURCE_FIELDS = (("data", "source"), ("evaluate", "shift"))


def _resolve_paths(spec: TaskSpec, base: Path) -> None:
    """Make the spec's relative data paths absolute against `base`, the spec's folder; messages
    still name each as the spec wrote it (`_shown.remember_written`)."""
    from trustforge._shown import remember_written
    from trustforge.data import resolve_source  # here, not at the top: see spec._model._check_source

    for section, name in _SOURCE_FIELDS:
        part = getattr(spec, section)
        written = getattr(part, name)
        if written:
            resolved = resolve_source(written, base)
            setattr(part, name, resolved)
            remember_written(resolved.partition(":")[2], written.partition(":")[2].strip())


def redact_spec(spec: TaskSpec) -> TaskSpec:
    """A copy of `spec` fit to leave this machine (in a package, evidence or a report): every
    data source path cut to its file or folder name (`csv:/home/x/data.csv` -> `csv:data.csv`).

    The copy still validates, so a package's spec loads anywhere; it does not name a file here.
    """
    from trustforge.data import redact_source  # here, not at the top: see spec._model._check_source

    out = spec.model_copy(deep=True)
    for section, name in _SOURCE_FIELDS:
        part = getattr(out, section)
        if getattr(part, name):
            setattr(part, name, redact_source(getattr(part, name)))
    return out


def written_spec(spec: TaskSpec, folder: str | os.PathLike[str] | None = None) -> TaskSpec:
    """A copy of `spec` with every data source path as the user wrote it, for a copy saved in
    `folder` (a run folder's spec.yaml) or, with None, shown (`trustforge validate`).

    A relative path is made relative to `folder`, so that loading the saved copy as a spec file
    (which resolves it against its own folder) reads the same file; an absolute one stays as
    written (`data.written_source`). The digest is the resolved spec's (`spec_digest`), not this copy's.
    """
    from trustforge.data import written_source  # here, not at the top: see spec._model._check_source

    out = spec.model_copy(deep=True)
    for section, name in _SOURCE_FIELDS:
        part = getattr(out, section)
        if getattr(part, name):
            setattr(part, name, written_source(getattr(part, name), None if folder is None else Path(folder)))
    return out


def _string_keys(value: Any) -> Any:
    """A copy with every mapping key as text: YAML reads `1:` as an int key, and a field name is text.

    Shared (aliased) values are copied once, so a YAML alias bomb stays linear.
    """
    memo: dict[int, Any] = {}

    def fix(v: Any) -> Any:
        if not isinstance(v, (dict, list)):
            return v
        if id(v) in memo:
            return memo[id(v)]
        if isinstance(v, dict):
            d: dict[str, Any] = {}
            memo[id(v)] = d
            for k, x in v.items():
                d[k if isinstance(k, str) else _key_text(k)] = fix(x)
            return d
        items: list[Any] = []
        memo[id(v)] = items
        items.extend(fix(x) for x in v)
        return items

    return fix(value)


def _key_text(k: Any) -> str:
    if isinstance(k, bool):
        return str(k).lower()
    return str(k)


def _describe(err: Mapping[str, Any], raw: Any) -> tuple[list[Any], str]:
    """The user's path to the field at fault and the message for it (without file:line)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    path = _user_path(err["loc"], raw)
    problem = ctx.get("error")
    if isinstance(problem, SpecProblem):
        path = path + list(problem.path)
        return path, f"{_dotted(path)} {problem.message}"
    given, known = _value_at(raw, path)
    if not known:
        given = err.get("input")
    dotted = _dotted(path)
    field = _field_at(path, raw)

    if kind == "extra_forbidden":
        return path, _unknown_field(path, raw)
    if kind == "missing":
        if path and isinstance(path[-1], int):  # a tuple too short, e.g. image.size: [32]
            parent = path[:-1]
            value, _ = _value_at(raw, parent)
            return parent, f"{_dotted(parent)} {_expected(_field_at(parent, raw), 'must have more items')}; got {_short(value)}"
        return path, f"{dotted} is required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        disc = str(ctx.get("discriminator", "")).strip("'\"") or "kind"
        tags = _union_tags(_field_at(path, raw)) or str(ctx.get("expected_tags", ""))
        if not tags and path[:2] == ["tune", "space"]:  # a union inside a dict, which the field walk does not reach
            tags = ", ".join(repr(get_args(m.model_fields["type"].annotation)[0]) for m in _members(ParamSpec))
        if kind == "union_tag_invalid":
            tag_path = path + [disc]
            tag, _ = _value_at(raw, tag_path)
            return tag_path, f"{_dotted(tag_path)} must be one of {tags}; got {_short(tag)}"
        return path, f"{dotted} needs {disc}: one of {tags}; got {_short(given)}"
    if kind == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
        if "got " not in msg:
            msg += f"; got {_short(given)}"
        return path, f"{dotted} {msg}".strip()
    return path, f"{dotted} {_expectation(kind, ctx, err, field)}; got {_short(given)}".strip()


def _expectation(kind: str, ctx: Mapping[str, Any], err: Mapping[str, Any], field: "_Field | None") -> str:
    """What the value should have been, as 'must be ...'."""
    number = field.number if field else None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        if field is not None and field.bounds:
            return f"must be {_range_text(number, field.bounds)}"
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {_a(number)} {op} {bound}".replace("  ", " ")
    if kind in ("int_type", "int_parsing", "int_from_float", "int_parsing_size"):
        return f"must be {_range_text(int, field.bounds) if field and field.bounds else 'an integer'}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        text = _range_text(float, field.bounds) if field and field.bounds else "a number"
        return f"must be {text.replace('a number', 'a finite number', 1) if kind == 'finite_number' else text}"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("string_type", "string_unicode"):
        return "must be text"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind in ("list_type", "tuple_type", "iterable_type"):
        n = field.length if field else None
        return f"must be a list of {n} items" if n else "must be a list"
    if kind in ("too_short", "too_long"):
        n = field.length if field else None
        if n:
            return f"must have exactly {n} items"
        if kind == "too_short":
            return f"must have at least {ctx.get('min_length')} item{'s' if ctx.get('min_length') != 1 else ''}"
        return f"must have at most {ctx.get('max_length')} items"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        nullable = " or null" if field and field.nullable else ""
        return f"must be a mapping of fields (key: value lines){nullable}"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}"
    if kind == "invalid_key":
        return "must be a field name (text)"
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Input ").removeprefix("input ")
    return msg[0].lower() + msg[1:] if msg else "is invalid"


_ALLOWED = re.compile(r" \(allowed: [^()]*\)$")  # dropped from the second and later errors


def _unknown_field(path: list[Any], raw: Any) -> str:
    dotted = _dotted(path[:-1] + [_short(path[-1], 40).strip("'")]) if path else ""
    parent = path[:-1]
    owner = _model_for(parent, raw)
    if owner is None:
        return f"{dotted} is not a known field"
    allowed = list(owner.model_fields)
    section = _dotted(parent) or "the spec"
    kind = _discriminated_by(owner)
    if kind is not None:
        section += f" ({kind[0]}: {kind[1]})"
    text = f"{dotted} is not a field of {section}"
    close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
    if close:
        text += f"; did you mean {close[0]}?"
    elif kind is not None:
        others = [c for c in _members(_field_at(parent, raw).annotation) if path[-1] in c.model_fields]
        if others:
            tags = " or ".join(str(_discriminated_by(c)[1]) for c in others)
            text += f"; only {kind[0]}: {tags} has it"
    return text + f" (allowed: {', '.join(allowed)})"


# ---------------------------------------------------------------------------- paths


def _user_path(loc: tuple, raw: Any) -> list[Any]:
    """The location as the user wrote it: without the union tags and type labels pydantic inserts.

    `('model', 'cnn', 'channels', 1)` becomes `['model', 'channels', 1]`.
    """
    out: list[Any] = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(part, str) and (part in _TAGS or re.fullmatch(r"[\w-]+\[.*\]", part)):
            continue  # a union tag or a type label, not in the user's data
        else:
            out.append(part)
            node = None
    return out


def _dotted(path: list[Any]) -> str:
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else f".{p}"
    return text.lstrip(".")


def _value_at(raw: Any, path: list[Any]) -> tuple[Any, bool]:
    node = raw
    for p in path:
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        else:
            return None, False
    return node, True


def _find_line(path: list[Any], lines: dict[tuple, int]) -> int | None:
    for k in range(len(path), 0, -1):
        line = lines.get(tuple(path[:k]))
        if line is not None:
            return line
    return None


# ---------------------------------------------------------------------------- the schema


class _Field:
    """What the messages need to know about the field at a path."""

    def __init__(self, annotation: Any, metadata: list[Any]):
        base, meta = _unwrap(annotation)
        meta = list(metadata) + meta
        self.nullable = False
        if get_origin(base) in (Union, types.UnionType) and type(None) in get_args(base):
            rest = [a for a in get_args(base) if a is not type(None)]
            self.nullable = True
            base = rest[0] if len(rest) == 1 else Union[tuple(rest)]
            base, more = _unwrap(base)
            meta += more
        self.annotation = base
        self.number = base if base in (int, float) else None
        self.bounds = [m for m in meta if isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le))]
        self.length = len(get_args(base)) if get_origin(base) is tuple and Ellipsis not in get_args(base) else None


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """`Annotated[int, Field(gt=0)]` → (int, [Gt(0)])."""
    meta: list[Any] = []
    while get_origin(annotation) is Annotated:
        args = get_args(annotation)
        annotation = args[0]
        for m in args[1:]:
            meta.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return annotation, meta


def _members(annotation: Any) -> list[type[BaseModel]]:
    base, _ = _unwrap(annotation)
    args = get_args(base) if get_origin(base) in (Union, types.UnionType) else (base,)
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _discriminated_by(cls: type[BaseModel]) -> tuple[str, str] | None:
    """(`kind`, `cnn`) for a union member, else None."""
    for name in ("kind", "name"):
        f = cls.model_fields.get(name)
        if f is not None and get_origin(f.annotation) is Literal:
            return name, get_args(f.annotation)[0]
    return None


def _pick(annotation: Any, default: Any, node: Any) -> type[BaseModel] | None:
    """The model class a value at a field of this annotation is validated as."""
    members = _members(annotation)
    if len(members) == 1:
        return members[0]
    if not members:
        return None
    for cls in members:
        tag = _discriminated_by(cls)
        if tag and isinstance(node, dict) and node.get(tag[0]) == tag[1]:
            return cls
    if isinstance(node, dict) and not any(_discriminated_by(c)[0] in node for c in members if _discriminated_by(c)):
        # No tag given: the field's default decides (train.optimizer defaults to adamw).
        if isinstance(default, BaseModel):
            return type(default)
    return None


def _walk(path: list[Any], raw: Any) -> Iterator[tuple[type[BaseModel] | None, _Field | None]]:
    """For each prefix of `path`: the model owning the next part, and the field found there."""
    cls: type[BaseModel] | None = TaskSpec
    node = raw
    ann: Any = None
    for part in path:
        field: _Field | None = None
        if cls is not None and isinstance(part, str) and part in cls.model_fields:
            info = cls.model_fields[part]
            ann = info.annotation
            field = _Field(info.annotation, info.metadata)
            node = node.get(part) if isinstance(node, dict) else None
            cls = _pick(info.annotation, info.get_default(call_default_factory=True), node)
        elif isinstance(part, int) and ann is not None:
            base = _Field(ann, []).annotation
            args = get_args(base)
            item = args[0] if get_origin(base) is list else (args[part] if get_origin(base) is tuple and part < len(args) else None)
            field = _Field(item, []) if item is not None else None
            ann = item
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            cls = _pick(item, None, node) if item is not None else None
        else:
            cls, ann = None, None
        yield cls, field


def _field_at(path: list[Any], raw: Any) -> _Field | None:
    field = None
    for _, field in _walk(path, raw):
        pass
    return field if path else None


def _model_for(path: list[Any], raw: Any) -> type[BaseModel] | None:
    """The spec model whose fields sit at `path` (TaskSpec for the top level)."""
    cls: type[BaseModel] | None = TaskSpec
    for cls, _ in _walk(path, raw):
        pass
    return cls


def _union_tags(field: _Field | None) -> str:
    if field is None:
        return ""
    tags = [_discriminated_by(c) for c in _members(field.annotation)]
    return ", ".join(repr(t[1]) for t in tags if t)


def _all_tags() -> set[str]:
    tags: set[str] = set()
    todo = [TaskSpec]
    while todo:
        cls = todo.pop()
        for info in cls.model_fields.values():
            base, _ = _unwrap(info.annotation)
            for inner in [base, *get_args(base)]:
                for m in _members(inner):
                    tag = _discriminated_by(m)
                    if tag:
                        tags.add(tag[1])
                    todo.append(m)
    return tags


# tune.space's parameter types: a union inside a dict, which the walk above does not reach.
_TAGS = _all_tags() | {"float", "int", "categorical"}


# ---------------------------------------------------------------------------- text


def _range_text(number: type | None, bounds: list[Any]) -> str:
    """`a number in (0, 10]`, `an integer > 0`, `a number < 1`."""
    lo = hi = None
    for b in bounds:
        if isinstance(b, at.Gt):
            lo = ("(", ">", b.gt)
        elif isinstance(b, at.Ge):
            lo = ("[", ">=", b.ge)
        elif isinstance(b, at.Lt):
            hi = (")", "<", b.lt)
        elif isinstance(b, at.Le):
            hi = ("]", "<=", b.le)
    what = _a(number)
    if lo and hi:
        return f"{what} in {lo[0]}{_num(lo[2])}, {_num(hi[2])}{hi[0]}"
    if lo:
        return f"{what} {lo[1]} {_num(lo[2])}"
    if hi:
        return f"{what} {hi[1]} {_num(hi[2])}"
    return what


def _a(number: type | None) -> str:
    return "an integer" if number is int else "a number"


def _num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _expected(field: _Field | None, fallback: str) -> str:
    return f"must have exactly {field.length} items" if field and field.length else fallback


def _kind_of(value: Any) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}.get(type(value), type(value).__name__)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _short(value: Any, limit: int = 60) -> str:
    """A value as the user would write it, cut to `limit` characters (never walks a huge value)."""
    text = _render(value, budget=[limit + 20], depth=0)
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(value: Any, budget: list[int], depth: int) -> str:
    if budget[0] <= 0 or depth > 6:
        return "..."
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value[: budget[0]])
    elif isinstance(value, (int, float)):
        text = _num(value) if isinstance(value, float) else str(value)
    elif isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if budget[0] <= 0:
                parts.append("...")
                break
            parts.append(f"{k}: {_render(v, budget, depth + 1)}")
        text = "{" + ", ".join(parts) + "}"
    elif isinstance(value, (list, tuple)):
        parts = []
        for v in value:
            if budget[0] <= 0:
                parts.append("...")
                break
            parts.append(_render(v, budget, depth + 1))
        text = "[" + ", ".join(parts) + "]"
    else:
        text = repr(value)[: budget[0]]
    budget[0] -= len(text)
    return text
