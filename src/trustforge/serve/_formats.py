"""Table bodies of `/invocations` besides JSON: CSV (as MLflow's scoring server takes it) and Parquet.

MLflow's scoring server reads `text/csv` with `pandas.read_csv`: a header row of column names,
then one line per record, what `DataFrame.to_csv()` writes (its unnamed index column is an
extra column, ignored like any column the model does not take). Here the CSV is read strictly
with the standard `csv` module: every line must have as many fields as the header (pandas
would silently fill a short line with missing values), and an empty field is a missing value.
Parquet (`application/x-parquet`, `application/vnd.apache.parquet` or `application/parquet`)
is read with pyarrow, only the columns the model takes, never its pandas metadata; its
decoded size is bounded before anything is decompressed.

Both become the JSON lists of `column_from_json`, so every rule of `_signature` applies to
them alike (types, finite numbers, missing values, the row named in each error).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from trustforge.serve._signature import Payload, RequestError, Signature, TensorSpec, column_from_json, quote

__all__ = ["UnsupportedMediaType", "media_type", "parse_csv", "parse_parquet", "CONTENT_TYPES"]

_PARQUET = ("application/x-parquet", "application/vnd.apache.parquet", "application/parquet")
CONTENT_TYPES = ("application/json", "text/csv", *_PARQUET)


class UnsupportedMediaType(RequestError):
    """A content type `/invocations` does not read (HTTP 415)."""

    status = 415


def media_type(content_type: str | None) -> str:
    """ "json", "csv" or "parquet" for a Content-Type header (none: JSON, as before).

    Raises:
        UnsupportedMediaType: another type, a charset other than UTF-8, or unknown parameters.
    """
    parts = [p.strip() for p in (content_type or "").split(";")]
    kind = parts[0].lower()
    for param in parts[1:]:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"').lower()
        if key != "charset":
            raise UnsupportedMediaType(f"content type parameter {key[:40]!r} is not supported (only charset=utf-8)")
        if value not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {value[:40]!r} is not supported; send UTF-8")
    if kind in ("application/json", ""):
        return "json"
    if kind == "text/csv":
        return "csv"
    if kind in _PARQUET:
        return "parquet"
    raise UnsupportedMediaType(f"content type {kind[:60]!r} is not supported; send one of {', '.join(CONTENT_TYPES)}")


def _table_only(signature: Signature, fmt: str) -> None:
    if signature.layout == "tensor":
        raise RequestError(f"{fmt} carries table columns; this model takes {signature.describe()}: send it as JSON")


# ---------------------------------------------------------------------------- CSV


def parse_csv(body: bytes, signature: Signature, imputed: dict[str, int] | None = None) -> Payload:
    """The columns of a CSV body (header row, then records).

    Raises:
        RequestError: not UTF-8, no header or no rows, repeated names, a line whose field count
            differs from the header's, a missing column, or a value its column refuses.
    """
    _table_only(signature, "text/csv")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"text/csv body is not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise RequestError("text/csv body is empty; send a header row of column names, then one row per record")
        width = len(header)
        index = {name: j for j, name in enumerate(header)}
        if len(index) != width:
            repeated = sorted({n for n in header if header.count(n) > 1})
            raise RequestError(f"text/csv header repeats column {', '.join(map(repr, repeated[:5]))}")
        rows = []
        for row in reader:
            if not row:
                continue  # a blank line, as pandas skips it
            if len(row) != width:
                raise RequestError(f"text/csv line {reader.line_num} has {len(row)} fields; the header has {width}")
            rows.append(row)
    except csv.Error as exc:
        raise RequestError(f"text/csv line {reader.line_num} is not valid CSV: {exc}") from None
    if not rows:
        raise RequestError("text/csv body has a header but no rows")
    columns = {}
    for spec in signature.inputs:
        if spec.name not in index:
            if spec.optional:
                continue
            raise RequestError(f"text/csv header lacks {spec.name!r}; the model takes {signature.describe()}")
        j = index[spec.name]
        where = f"text/csv column {spec.name!r}"
        values = [_csv_value(row[j], spec, where, r) for r, row in enumerate(rows)]
        columns[spec.name] = column_from_json(values, spec, where, imputed=imputed)
    return columns


def _csv_value(text: str, spec: TensorSpec, where: str, r: int) -> Any:
    """One CSV field as the JSON value it stands for: empty is missing (null), numbers for number inputs."""
    if text == "":
        return None
    if spec.datatype == "BYTES":
        return text
    if spec.datatype == "BOOL" and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    if "_" not in text:  # Python reads 1_000 as a number; a CSV reader (pandas, predict's) does not
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                pass
    if spec.lenient:  # kept for data.expect, which reads it as missing (type policy warn)
        return text
    raise RequestError(f"{where} must hold numbers; got {quote(text)} at row {r + 1}")


# ---------------------------------------------------------------------------- Parquet


def parse_parquet(body: bytes, signature: Signature, max_bytes: int, imputed: dict[str, int] | None = None) -> Payload:
    """The columns of a Parquet body; only the model's columns are read.

    Args:
        max_bytes: the most the columns read may take once decoded, estimated from the file's
            metadata before anything is read (its uncompressed size, and 8 bytes a value).

    Raises:
        RequestError: not a Parquet file, repeated or missing columns, more decoded data than
            `max_bytes`, a column of a kind a request cannot carry, or a refused value.
    """
    _table_only(signature, "Parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(pa.BufferReader(body))
        names = pf.schema_arrow.names
        meta = pf.metadata
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise RequestError(f"the body is not a readable Parquet file: {str(exc)[:200]}") from None
    if len(set(names)) != len(names):
        raise RequestError("the Parquet file repeats a column name")
    wanted = []
    for spec in signature.inputs:
        if spec.name in names:
            wanted.append(spec.name)
        elif not spec.optional:
            raise RequestError(f"the Parquet file lacks column {spec.name!r}; the model takes {signature.describe()}")
    if meta.num_rows < 1:
        raise RequestError("the Parquet file has no rows")
    positions = {name: j for j, name in enumerate(pf.schema_arrow.names)}
    decoded = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for name in wanted:
            decoded += group.column(positions[name]).total_uncompressed_size
    decoded = max(decoded, meta.num_rows * max(1, len(wanted)) * 8)  # a value takes at least 8 bytes once read
    if decoded > max_bytes:
        raise RequestError(f"the Parquet file's columns decode to {decoded} bytes; this server accepts at most {max_bytes}")
    try:
        table = pf.read(columns=wanted, use_threads=False, use_pandas_metadata=False)
    except Exception as exc:  # noqa: BLE001
        raise RequestError(f"the Parquet file cannot be read: {str(exc)[:200]}") from None
    columns = {}
    for spec in signature.inputs:
        if spec.name not in wanted:
            continue
        where = f"Parquet column {spec.name!r}"
        col = table.column(spec.name)
        kind = col.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_dictionary(kind):
            raise RequestError(f"{where} is of Parquet type {kind}; send numbers or text (BYTES inputs take UTF-8 strings)")
        if (pa.types.is_floating(kind) or pa.types.is_integer(kind)) and col.null_count == 0 and spec.datatype != "BYTES":
            values: list = col.to_numpy().tolist()  # no nulls: plain numbers, fast
        else:
            values = [_parquet_value(v) for v in col.to_pylist()]
        columns[spec.name] = column_from_json(values, spec, where, imputed=imputed)
    return columns


def _parquet_value(v: Any) -> Any:
    """A Parquet value as the JSON value it stands for: dates and times as ISO 8601 text."""
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    return v
