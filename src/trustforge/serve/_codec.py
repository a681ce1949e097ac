"""The message format between the server and its model worker processes: JSON and raw arrays.

Batches and predictions cross a pipe as one byte string:

    b"TFW1" | header length (4 bytes, big-endian) | header (JSON) | array buffers, in order

The header holds `meta` (any JSON) and, per array, its name with either a numeric dtype,
shape and byte count, or its values as a JSON list (text and other object columns). No
pickle: a worker that has been compromised or has crashed midway can send nothing that runs
code in the server, and the server sends nothing that runs code in a worker.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Mapping

import numpy as np

__all__ = ["pack", "unpack", "CodecError"]

_MAGIC = b"TFW1"
_NUMERIC_KINDS = "biuf"


class CodecError(ValueError):
    """A message that is not in this format."""


def pack(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | np.ndarray | None = None) -> bytes:
    """One message: `meta` plus named arrays (a dict) or one unnamed tensor."""
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


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
