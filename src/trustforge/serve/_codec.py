"""The message format between the server and its model worker processes: JSON and raw arrays.

Batches and predictions cross a pipe as one byte string:

    b"TFW1" | header length (4 bytes, big-endian) | header (JSON) | array buffers, in order

The header holds `meta` (any JSON) and, per array, its name with either a numeric dtype,
shape and byte count, or its values as a JSON list (text and other object columns); columns
that are the rows of one numeric array (a `ColumnBlock`: a request of plain numbers) travel as
that one array with their names, and arrive as a `ColumnBlock` again. No
pickle: a worker that has been compromised or has crashed midway can send nothing that runs
code in the server, and the server sends nothing that runs code in a worker.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Mapping

import numpy as np

from trustforge.serve._signature import ColumnBlock

__all__ = ["pack", "unpack", "CodecError"]

_MAGIC = b"TFW1"
_NUMERIC_KINDS = "biuf"


class CodecError(ValueError):
    """A message that is not in this format."""


def pack(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | np.ndarray | None = None) -> bytes:
    """One message: `meta` plus named arrays (a dict) or one unnamed tensor."""
    if type(arrays) is ColumnBlock and arrays.block is not None and arrays.block.dtype.kind in _NUMERIC_KINDS:
        data = np.ascontiguousarray(arrays.block).tobytes()
        block = {"columns": list(arrays.names), "dtype": arrays.block.dtype.str, "shape": list(arrays.block.shape), "nbytes": len(data)}
        header = json.dumps({"meta": dict(meta), "tensor": False, "arrays": [], "block": block}, separators=(",", ":"), allow_nan=True)
        return b"".join([_MAGIC, struct.pack(">I", len(header)), header.encode("utf-8"), data])
    entries: list[dict[str, Any]] = []
    buffers: list[bytes] = []
    tensor = isinstance(arrays, np.ndarray)
    items = [("", arrays)] if tensor else list((arrays or {}).items())
    for name, arr in items:
        arr = np.asarray(arr)
        if arr.dtype.kind in _NUMERIC_KINDS:
            data = np.ascontiguousarray(arr).tobytes()
            entries.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "nbytes": len(data)})
            buffers.append(data)
        else:
            entries.append({"name": name, "shape": list(arr.shape), "values": [_plain(v) for v in arr.reshape(-1).tolist()]})
    header = json.dumps({"meta": dict(meta), "tensor": tensor, "arrays": entries}, separators=(",", ":"), allow_nan=True).encode("utf-8")
    return b"".join([_MAGIC, struct.pack(">I", len(header)), header, *buffers])


def unpack(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], dict[str, np.ndarray] | np.ndarray | None]:
    """The (meta, arrays) of a message made by `pack`; arrays are writable copies.

    Raises:
        CodecError: the bytes are not a well-formed message.
    """
    view = memoryview(data)
    if len(view) < 8 or bytes(view[:4]) != _MAGIC:
        raise CodecError("not a worker message")
    (n,) = struct.unpack(">I", view[4:8])
    try:
        header = json.loads(bytes(view[8 : 8 + n]))
    except (ValueError, UnicodeDecodeError):
        raise CodecError("unreadable worker message header") from None
    offset = 8 + n
    if "block" in header:
        return header["meta"], _block(header["block"], view, offset)
    arrays: dict[str, np.ndarray] = {}
    for entry in header.get("arrays", []):
        shape = tuple(int(d) for d in entry["shape"])
        if "dtype" in entry:
            dtype = np.dtype(entry["dtype"])
            if dtype.kind not in _NUMERIC_KINDS:
                raise CodecError(f"array {entry['name']!r}: dtype {entry['dtype']!r} is not numeric")
            nbytes = int(entry["nbytes"])
            if offset + nbytes > len(view):
                raise CodecError(f"array {entry['name']!r} runs past the end of the message")
            arr = np.frombuffer(bytearray(view[offset : offset + nbytes]), dtype=dtype).reshape(shape)
            offset += nbytes
        else:
            values = entry["values"]
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            arr = arr.reshape(shape)
        arrays[entry["name"]] = arr
    if offset != len(view):
        raise CodecError("trailing bytes after the last array")
    if header.get("tensor"):
        return header["meta"], arrays.get("")
    return header["meta"], (arrays if header.get("arrays") else None)


def _block(entry: Any, view: memoryview, offset: int) -> ColumnBlock:
    """The `ColumnBlock` of a message's block entry: (columns, rows) numbers, one name per row."""
    try:
        columns, dtype, shape, nbytes = (
            entry["columns"],
            np.dtype(entry["dtype"]),
            tuple(int(d) for d in entry["shape"]),
            int(entry["nbytes"]),
        )
    except (KeyError, TypeError, ValueError):
        raise CodecError("malformed block entry") from None
    if dtype.kind not in _NUMERIC_KINDS:
        raise CodecError(f"block: dtype {entry['dtype']!r} is not numeric")
    if (
        not isinstance(columns, list)
        or not all(isinstance(c, str) for c in columns)
        or len(set(columns)) != len(columns)
        or len(shape) != 2
        or shape[0] != len(columns)
    ):
        raise CodecError("block: its columns do not name its rows, once each")
    if min(shape) < 0 or nbytes != shape[0] * shape[1] * dtype.itemsize or offset + nbytes != len(view):
        raise CodecError("block: its size does not match the message")
    arr = np.frombuffer(bytearray(view[offset : offset + nbytes]), dtype=dtype).reshape(shape)
    return ColumnBlock(tuple(columns), arr)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
