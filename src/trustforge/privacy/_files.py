"""Scan and mask files: CSV, Parquet, JSON Lines and plain text (what `trustforge scan/mask` read).

CSV cells are read as text, exactly as written (leading zeros, an ID's trailing X), so a masked
file differs from its source only where something was masked. CSV and Parquet headers are
scanned and masked too (a masked header is kept unique with a `#2` suffix). JSON Lines: every
string value and every object key, at any depth, is masked (keys kept unique the same way);
other values stay. Plain text is masked as one string. Line endings (CRLF or LF) are kept; a
Parquet number column keeps its dtype when its masked values still parse as it (else the report
says it became text). The output is written to a temporary file beside the target and renamed
over it, so no reader sees half a file and a failure leaves no partial output.

Scan results never hold a detected value: a header or key that holds one is shown as
`<column 3: EMAIL>` or `<key: EMAIL>`.

A keyed mask (``hash`` or ``fake``) also writes `OUT.tfmask.json` beside the output: the
policy of each entity type the mask looked for (only those: a mask limited with `entities`
lists only its types), a fingerprint of the key, the SHA-256 of the output, all under an HMAC
made with the masking key. `unmask_file` refuses a file without a sidecar that verifies under
its key, that does not match the file, or that was not made with ``fake``, and turns back only
the types the sidecar lists as ``fake``, so original data is never "unmasked" into other
plausible values. Sidecars of the first format (`trustforge.mask.v1`) listed every type whatever
the mask looked for, so they cannot say which values are fakes (and the fakes of phone numbers, emails,
cards and addresses have changed since): they are refused. Files with a `trustforge.mask.v2` sidecar
were masked when the fake of a Chinese resident ID permuted its region, birth date and serial each
under a tweak of its own (IDs with one birth date shared one fake date); they still unmask, with
those fakes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trustforge._header import refuse_repeated_csv_header
from trustforge.errors import DataError, IntegrityError
from trustforge.privacy._columns import classify_columns
from trustforge.privacy._mask import Masker, MaskReport
from trustforge.privacy._scan import scan_spans

__all__ = [
    "file_kind",
    "column_names",
    "scan_file",
    "mask_file",
    "unmask_file",
    "FILE_KINDS",
    "FileMaskReport",
    "sidecar_path",
    "SIDECAR_SUFFIX",
]

SIDECAR_SUFFIX = ".tfmask.json"
# v2: `policies` holds only the types the mask looked for; v3: Chinese resident ID fakes permute each
# part under a tweak of the others; v4: their birth dates after 2025 are permuted within their year
# (v2 and v3 kept them). v2 and v3 files still unmask, with the fakes of their time.
_SIDECAR_FORMAT = "trustforge.mask.v4"
_V2 = "trustforge.mask.v2"
_V3 = "trustforge.mask.v3"
_OLD_FORMATS = (_V3, _V2, "trustforge.mask.v1")

FILE_KINDS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "text",
    ".log": "text",
    ".md": "text",
}


def _as_path(value: Any, name: str, where: str) -> Path:
    """`value` as a Path, or a DataError naming the argument (a Python caller's mistake)."""
    if not isinstance(value, (str, os.PathLike)):
        raise DataError(f"{where}: {name} must be a file path (str or pathlib.Path); got {type(value).__name__}")
    return Path(value)


def file_kind(path: Path) -> str:
    """The kind of file by its suffix.

    Raises:
        DataError: an unsupported suffix (the message lists the supported ones).
    """
    kind = FILE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {Path(path).suffix or '(no suffix)'!r}; expected one of {', '.join(FILE_KINDS)}")
    return kind


def _newline(path: Path) -> str:
    """The file's line ending: CRLF when its first line ends so, else LF."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    i = head.find(b"\n")
    return "\r\n" if i > 0 and head[i - 1 : i] == b"\r" else "\n"


def _read(path: Path) -> tuple[str, Any]:
    path = Path(path)
    kind = file_kind(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        if kind == "csv":
            import pandas as pd

            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            refuse_repeated_csv_header(path, frame.columns)  # the masked copy would name a column `a.1`
            return kind, frame
        if kind == "parquet":
            import pandas as pd

            return kind, pd.read_parquet(path)
        text = path.read_bytes().decode("utf-8")  # not read_text: it would turn CRLF into LF
        if kind == "text":
            return kind, text
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}: line {n} is not JSON ({exc.msg})") from None
        return kind, rows
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    except Exception as exc:  # a parser's own error (pandas, pyarrow): a malformed file
        raise DataError(f"{path}: cannot be read as {kind} ({exc.__class__.__name__}: {str(exc)[:150]})") from None


def _unique(name: str, taken: set) -> str:
    """`name`, or `name#2`, `name#3`, ... : the first not in `taken` (which it joins)."""
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}#{n}"
    taken.add(out)
    return out


def _safe_key(key: str, types) -> str:
    """A key as scan output may show it: `<key: EMAIL>` when it holds a detected value."""
    kinds = sorted({k for k, _, _, _ in scan_spans(key, types)})
    return f"<key: {', '.join(kinds)}>" if kinds else key


def _walk(value: Any, fn: Callable[[str, str], str], where: str, key_fn: Callable[[str, str], str], name_fn: Callable[[str], str]) -> Any:
    """`value` with `fn` applied to every string and `key_fn` to every object key, at any depth.

    `where` is the path shown for a value (keys through `name_fn`, so never a detected value).
    Masked keys are kept unique within their object.
    """
    if isinstance(value, str):
        return fn(value, where)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        taken: set[str] = set()
        for k, v in value.items():
            inner = f"{where}.{name_fn(k)}" if where else name_fn(k)
            out[_unique(key_fn(k, inner), taken)] = _walk(v, fn, inner, key_fn, name_fn)
        return out
    if isinstance(value, list):
        return [_walk(v, fn, where, key_fn, name_fn) for v in value]
    return value


def column_names(df, types=None) -> dict[Any, str]:
    """Column -> the name scan output shows: `<column 3: EMAIL>` (its position from 1 and the types
    found) for a header holding a detected value of `types` (a set of entity types; None: all)."""
    names = {}
    for i, col in enumerate(df.columns, 1):
        kinds = sorted({k for k, _, _, _ in scan_spans(col, types)}) if isinstance(col, str) else []
        names[col] = f"<column {i}: {', '.join(kinds)}>" if kinds else str(col)
    return names


def scan_file(path: Path, entities=None) -> dict[str, Any]:
    """Entity counts in a file, per column (per field for JSON Lines), and the personal columns.

    Returns:
        {"file", "kind", "rows", "entities": {type: n}, "columns": {column: {type: n}}, "personal": {column: type}}
        (never a detected value).

    Raises:
        DataError: the file is missing, unreadable, malformed or of an unsupported type.
    """
    from trustforge.privacy._scan import check_types

    path = _as_path(path, "path", "scan_file")
    types = check_types(entities)
    kind, data = _read(path)
    columns: dict[str, Counter[str]] = {}
    personal: dict[str, str] = {}

    def count(text: str, where: str) -> str:
        for k, _, _, _ in scan_spans(text, types):
            columns.setdefault(where, Counter())[k] += 1
        return text

    if kind in ("csv", "parquet"):
        from trustforge.privacy._columns import text_values

        names = column_names(data, types)
        found = {c: t for c, t in classify_columns(data).items() if types is None or t in types}
        personal = {names[c]: t for c in data.columns for n, t in found.items() if str(c) == n}
        rows = len(data)
        for col in data.columns:
            if isinstance(col, str):
                count(col, names[col])  # the header itself
            values = text_values(data[col], personal=str(col) in found)
            if values is None:
                continue
            for value, n in values.value_counts(dropna=True).items():
                for k, _, _, _ in scan_spans(value, types):
                    columns.setdefault(names[col], Counter())[k] += int(n)
    elif kind == "jsonl":
        rows = len(data)
        for row in data:
            _walk(row, count, "", count, lambda k: _safe_key(k, types))
    else:
        rows = data.count("\n") + (1 if data and not data.endswith("\n") else 0)
        count(data, "text")
    total: Counter[str] = Counter()
    for c in columns.values():
        total.update(c)
    return {
        "file": Path(path).name,
        "kind": kind,
        "rows": rows,
        "entities": dict(sorted(total.items())),
        "columns": {c: dict(sorted(v.items())) for c, v in columns.items()},
        "personal": personal,
    }


def _write_atomic(out: Path, write: Callable[[Path], None]) -> None:
    out = Path(out)
    if not out.parent.is_dir():
        raise DataError(f"{out.parent}: folder not found (for {out.name})")
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}{out.suffix}")
    try:
        write(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _headers(df, key_fn: Callable[[str, str], str], names: dict[Any, str]):
    """`df` with `key_fn` applied to its text headers, kept unique (`#2`, `#3`, ...)."""
    taken: set = set()
    new = [_unique(key_fn(c, names[c]), taken) if isinstance(c, str) else c for c in df.columns]
    if new != list(df.columns):
        df = df.copy()
        df.columns = new
    return df


def _keep_dtypes(before, after, names: dict[Any, str]) -> tuple[Any, list[str]]:
    """Number columns of `before` turned into text in `after` cast back where every value still parses.

    Returns the frame and a note per column that stays text.
    """
    import pandas as pd

    notes = []
    for i, (old, new) in enumerate(zip(before.columns, after.columns)):
        dtype = before[old].dtype
        if dtype.kind not in "iuf" or after[new].dtype == dtype:
            continue
        col = after.iloc[:, i]
        parsed = pd.to_numeric(col, errors="coerce")
        ok = parsed.notna() | col.isna()
        if ok.all() and (dtype.kind == "f" or not col.isna().any()):
            try:
                cast = parsed.astype(dtype)
                if (cast.astype(str) == col.astype(str)).all() or dtype.kind == "f":
                    after.isetitem(i, cast)
                    continue
            except (TypeError, ValueError, OverflowError):
                pass
        notes.append(f"column {names[old]} became text ({dtype} before): its masked values are not numbers")
    return after, notes


def _transform(
    path: Path,
    out: Path,
    text_fn: Callable[[str, str], str],
    frame_fn: Callable[[Any], Any],
    key_fn: Callable[[str, str], str],
    types=None,
) -> tuple[str, int, list[str]]:
    path, out = Path(path), Path(out)
    kind = file_kind(path)
    if file_kind(out) != kind:
        raise DataError(f"{out}: the output must be the same kind of file as {path.name} ({kind})")
    if out.exists() and path.exists() and out.resolve() == path.resolve():
        raise DataError(f"{out}: the output must not be the input file")
    _, data = _read(path)
    nl = _newline(path) if kind != "parquet" else "\n"
    notes: list[str] = []
    if kind in ("csv", "parquet"):
        names = column_names(data, types)
        masked = frame_fn(data)
        if kind == "parquet":
            masked, notes = _keep_dtypes(data, masked, names)
        masked = _headers(masked, key_fn, names)
        rows = len(masked)
        if kind == "csv":
            _write_atomic(out, lambda p: masked.to_csv(p, index=False, lineterminator=nl))
        else:
            _write_atomic(out, lambda p: masked.to_parquet(p, index=False))
    elif kind == "jsonl":
        rows = len(data)
        lines = "".join(json.dumps(_walk(r, text_fn, "", key_fn, lambda k: _safe_key(k, types)), ensure_ascii=False) + nl for r in data)
        _write_atomic(out, lambda p: p.write_bytes(lines.encode("utf-8")))
    else:
        masked_text = text_fn(data, "text")
        rows = data.count("\n")
        _write_atomic(out, lambda p: p.write_bytes(masked_text.encode("utf-8")))
    return kind, rows, notes


# ---------------------------------------------------------------- the sidecar of a keyed mask


def sidecar_path(out: Path) -> Path:
    """Where the sidecar of a keyed mask of `out` lives: `OUT.tfmask.json` beside it."""
    out = Path(out)
    return out.with_name(out.name + SIDECAR_SUFFIX)


def _fingerprint(key: bytes) -> str:
    return hmac.new(key, b"tf-mask-key-fingerprint", hashlib.sha256).hexdigest()[:16]


def _mac(key: bytes, body: dict) -> str:
    sub = hmac.digest(key, b"tf-mask-sidecar", hashlib.sha256)
    return hmac.new(sub, json.dumps(body, sort_keys=True, separators=(",", ":")).encode(), hashlib.sha256).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_sidecar(out: Path, policies: dict[str, str], key: bytes) -> None:
    body = {"format": _SIDECAR_FORMAT, "policies": dict(sorted(policies.items())), "key": _fingerprint(key), "sha256": _sha256(out)}
    text = json.dumps({**body, "mac": _mac(key, body)}, sort_keys=True, indent=1) + "\n"
    _write_atomic(sidecar_path(out), lambda p: p.write_text(text, encoding="utf-8"))


def _check_sidecar(path: Path, key: bytes) -> tuple[dict[str, str], str]:
    """Refuse `path` unless its sidecar says (under `key`) it is this file as `mask --policy fake` wrote it.

    Returns:
        The policy of each entity type the mask looked for (the others were left as they were),
        and the sidecar's format.

    Raises:
        IntegrityError: no sidecar, a sidecar that does not verify (another workspace's key or
            edited), of the first format (it cannot say which types were masked), a file changed
            since it was masked, or a mask without ``fake``.
    """
    side = sidecar_path(path)
    what = f"{Path(path).name}: refusing to unmask"
    if not side.is_file():
        raise IntegrityError(
            f"{what}: no {side.name} beside it, so nothing shows it was written by `trustforge mask --policy fake` in this "
            "workspace (unmasking original data would replace its real values)"
        )
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
        body = {k: doc[k] for k in ("format", "policies", "key", "sha256")}
        mac = doc["mac"]
    except (ValueError, KeyError, TypeError, OSError):
        raise IntegrityError(f"{what}: {side.name} is not a TrustForge mask sidecar") from None
    known = body["format"] == _SIDECAR_FORMAT or body["format"] in _OLD_FORMATS
    if not known or not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, body)):
        raise IntegrityError(f"{what}: {side.name} does not verify under this workspace's masking key (another workspace's, or edited)")
    if body["format"] not in (_SIDECAR_FORMAT, _V3, _V2):
        # v1 listed every entity type whatever `--entities` limited the mask to, so it cannot say which values are fakes.
        raise IntegrityError(
            f"{what}: {side.name} is of an earlier format that does not record which entity types the mask changed "
            "(unmasking every type could replace real values it never masked): mask the original again"
        )
    policies = body["policies"]
    if not isinstance(policies, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in policies.items()):
        raise IntegrityError(f"{what}: {side.name} is not a TrustForge mask sidecar")
    if _sha256(Path(path)) != body["sha256"]:
        raise IntegrityError(f"{what}: the file changed since `trustforge mask` wrote it (its SHA-256 differs from {side.name})")
    if "fake" not in policies.values():
        raise IntegrityError(f"{what}: it was masked without --policy fake, so there is nothing to turn back")
    return dict(policies), body["format"]


@dataclass
class FileMaskReport(MaskReport):
    """`MaskReport` of a file, with `notes`: one line per change of format (a number column now text)."""

    notes: list[str] = field(default_factory=list)


def mask_file(path: Path, out: Path, masker: Masker) -> FileMaskReport:
    """Mask `path` into `out` (same kind of file), atomically; returns what was masked.

    With a keyed masker (``hash``/``fake``) also writes `sidecar_path(out)`, which `unmask_file`
    needs; otherwise removes a stale one.

    Raises:
        DataError: the input is missing, unreadable or unsupported; `out` is of another kind,
            is the input itself, or its folder does not exist; an argument of the wrong kind.
    """
    path, out = _as_path(path, "path", "mask_file"), _as_path(out, "out", "mask_file")
    if not isinstance(masker, Masker):
        raise DataError(f"mask_file: masker must be a Masker (e.g. Masker('tag')); got {type(masker).__name__}")
    report = FileMaskReport()

    def text_fn(text: str, where: str) -> str:
        masked, kinds = masker._mask(text)
        if kinds:
            col = report.columns.setdefault(where, {})
            for k in kinds:
                col[k] = col.get(k, 0) + 1
        return masked

    names: dict[Any, str] = {}

    def frame_fn(df):
        names.update(column_names(df, masker.types))
        masked, rep = masker.mask_frame(df)
        shown = {str(c): names[c] for c in df.columns}
        report.columns = {shown.get(c, c): v for c, v in rep.columns.items()}
        report.personal = {shown.get(c, c): v for c, v in rep.personal.items()}
        return masked

    _, report.rows, report.notes = _transform(path, out, text_fn, frame_fn, text_fn, masker.types)
    side = sidecar_path(out)
    if masker._key is not None:
        # only the types the mask looked for: a type it left alone holds real values, never fakes
        looked = {k: p for k, p in masker.policies.items() if masker.types is None or k in masker.types}
        _write_sidecar(Path(out), looked, masker._key)
    else:
        side.unlink(missing_ok=True)  # a sidecar of an earlier keyed mask no longer describes this file
    return report


def unmask_file(path: Path, out: Path, key: bytes) -> int:
    """Turn ``fake`` values in `path` back into the originals with `key`, into `out`; returns rows.

    Only the entity types the sidecar lists as ``fake`` are turned back, found as the mask found
    them (among the types it looked for); every other value stays as it is. The caller checks
    who may (the CLI requires the ``unmask`` action).

    Raises:
        IntegrityError: `path` has no sidecar showing, under `key`, that `mask_file` wrote it
            with ``fake`` (see `_check_sidecar`); nothing is written then.
        SecurityError: `key` is not bytes of at least 16.
        DataError: as `mask_file`.
    """
    from trustforge.privacy._mask import _check_key, unmask_spans

    path, out = _as_path(path, "path", "unmask_file"), _as_path(out, "out", "unmask_file")
    key = _check_key(key, "fake")
    policies, form = _check_sidecar(path, key)
    era = form.rsplit(".", 1)[-1]  # v2, v3, v4: the Chinese resident ID fakes of the file's time
    looked = frozenset(policies)  # scanned as the mask scanned, so spans overlap and resolve as they did
    faked = frozenset(k for k, p in policies.items() if p == "fake")

    def text_fn(text: str, where: str) -> str:
        return unmask_spans(text, key, looked, faked, era)

    def frame_fn(df):
        from trustforge.privacy._columns import text_values
        from trustforge.privacy._mask import FREE_FORM, unmask_value

        # Columns of names or addresses were masked cell by cell, whole (`Masker.mask_frame`): undone the same way.
        personal = {c: t for c, t in classify_columns(df).items() if t in looked}
        whole = {c: t for c, t in personal.items() if t in FREE_FORM and t in faked}
        out = df.copy()
        for col in df.columns:
            values = text_values(df[col], personal=str(col) in personal)
            if values is not None:
                kind = whole.get(str(col))
                undo = (
                    (lambda v: unmask_value(kind, v, key) if v.strip() else v)
                    if kind
                    else (lambda v: unmask_spans(v, key, looked, faked, era))
                )
                mapping = {v: undo(v) for v in values.dropna().unique()}
                out[col] = values.map(lambda v: mapping.get(v, v) if isinstance(v, str) else v)
        return out  # `_transform` casts Parquet number columns back

    return _transform(path, out, text_fn, frame_fn, text_fn)[1]
