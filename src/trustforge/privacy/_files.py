"""Scan and mask files: CSV, Parquet, JSON Lines and plain text (what `trustforge scan/mask` read).

CSV cells are read as text, exactly as written (leading zeros, an ID's trailing X), so a masked
file differs from its source only where something was masked. JSON Lines: every string value,
at any depth, is masked; keys and other values stay. Plain text is masked as one string. The
output is written to a temporary file beside the target and renamed over it, so no reader sees
half a file and a failure leaves no partial output.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from trustforge.errors import DataError
from trustforge.privacy._columns import classify_columns
from trustforge.privacy._mask import Masker, MaskReport
from trustforge.privacy._scan import scan_spans

__all__ = ["file_kind", "scan_file", "mask_file", "unmask_file", "FILE_KINDS"]

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


def file_kind(path: Path) -> str:
    """The kind of file by its suffix.

    Raises:
        DataError: an unsupported suffix (the message lists the supported ones).
    """
    kind = FILE_KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {Path(path).suffix or '(no suffix)'!r}; expected one of {', '.join(FILE_KINDS)}")
    return kind


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

            return kind, pd.read_csv(path, dtype=str, keep_default_na=False)
        if kind == "parquet":
            import pandas as pd

            return kind, pd.read_parquet(path)
        text = path.read_text(encoding="utf-8")
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


def _walk(value: Any, fn: Callable[[str, str], str], where: str) -> Any:
    if isinstance(value, str):
        return fn(value, where)
    if isinstance(value, dict):
        return {k: _walk(v, fn, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fn, where) for v in value]
    return value


def scan_file(path: Path, entities=None) -> dict[str, Any]:
    """Entity counts in a file, per column (per field for JSON Lines), and the personal columns.

    Returns:
        {"file", "kind", "rows", "entities": {type: n}, "columns": {column: {type: n}}, "personal": {column: type}}
        (never a detected value).

    Raises:
        DataError: the file is missing, unreadable, malformed or of an unsupported type.
    """
    from trustforge.privacy._scan import check_types

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

        personal = {c: t for c, t in classify_columns(data).items() if types is None or t in types}
        rows = len(data)
        for col in data.columns:
            values = text_values(data[col], personal=str(col) in personal)
            if values is None:
                continue
            for value, n in values.value_counts(dropna=True).items():
                for k, _, _, _ in scan_spans(value, types):
                    columns.setdefault(str(col), Counter())[k] += int(n)
    elif kind == "jsonl":
        rows = len(data)
        for row in data:
            _walk(row, count, "")
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


def _transform(path: Path, out: Path, text_fn: Callable[[str, str], str], frame_fn: Callable[[Any], Any]) -> tuple[str, int]:
    path, out = Path(path), Path(out)
    kind = file_kind(path)
    if file_kind(out) != kind:
        raise DataError(f"{out}: the output must be the same kind of file as {path.name} ({kind})")
    if out.exists() and path.exists() and out.resolve() == path.resolve():
        raise DataError(f"{out}: the output must not be the input file")
    _, data = _read(path)
    if kind in ("csv", "parquet"):
        masked = frame_fn(data)
        rows = len(masked)
        if kind == "csv":
            _write_atomic(out, lambda p: masked.to_csv(p, index=False))
        else:
            _write_atomic(out, lambda p: masked.to_parquet(p, index=False))
    elif kind == "jsonl":
        rows = len(data)
        lines = "".join(json.dumps(_walk(r, text_fn, ""), ensure_ascii=False) + "\n" for r in data)
        _write_atomic(out, lambda p: p.write_text(lines, encoding="utf-8"))
    else:
        masked_text = text_fn(data, "text")
        rows = data.count("\n")
        _write_atomic(out, lambda p: p.write_text(masked_text, encoding="utf-8"))
    return kind, rows


def mask_file(path: Path, out: Path, masker: Masker) -> MaskReport:
    """Mask `path` into `out` (same kind of file), atomically; returns what was masked.

    Raises:
        DataError: the input is missing, unreadable or unsupported; `out` is of another kind,
            is the input itself, or its folder does not exist.
    """
    report = MaskReport()

    def text_fn(text: str, where: str) -> str:
        masked, kinds = masker._mask(text)
        if kinds:
            col = report.columns.setdefault(where, {})
            for k in kinds:
                col[k] = col.get(k, 0) + 1
        return masked

    def frame_fn(df):
        masked, rep = masker.mask_frame(df)
        report.columns, report.personal = rep.columns, rep.personal
        return masked

    _, report.rows = _transform(path, out, text_fn, frame_fn)
    return report


def unmask_file(path: Path, out: Path, key: bytes) -> int:
    """Turn ``fake`` values in `path` back into the originals with `key`, into `out`; returns rows.

    The caller checks who may (the CLI requires the ``unmask`` action).
    """
    from trustforge.privacy._mask import unmask

    def text_fn(text: str, where: str) -> str:
        return unmask(text, key)

    def frame_fn(df):
        from trustforge.privacy._columns import text_values
        from trustforge.privacy._mask import FREE_FORM, unmask_value

        # Columns of names or addresses were masked cell by cell, whole (`Masker.mask_frame`): undone the same way.
        whole = {c: t for c, t in classify_columns(df).items() if t in FREE_FORM}
        out = df.copy()
        for col in df.columns:
            values = text_values(df[col])
            if values is not None:
                kind = whole.get(str(col))
                undo = (lambda v: unmask_value(kind, v, key) if v.strip() else v) if kind else (lambda v: unmask(v, key))
                mapping = {v: undo(v) for v in values.dropna().unique()}
                out[col] = values.map(lambda v: mapping.get(v, v) if isinstance(v, str) else v)
        return out

    return _transform(path, out, text_fn, frame_fn)[1]
