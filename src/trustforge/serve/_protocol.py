"""Both request protocols onto one payload, and predictions back onto both response forms.

`parse_infer` reads an Open Inference Protocol v2 request (JSON, or JSON followed by binary
tensor data), `parse_scoring` an MLflow scoring request; both return the same payload (see
`_signature`), so one predict path serves both. `encode_infer` and `encode_scoring` turn the
predictions (column name → array, one row per input row) into each protocol's response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import orjson
from pydantic import ValidationError

from trustforge.serve._ood import ood_headers
from trustforge.serve._schemas import InferenceRequest, ScoringRequest
from trustforge.serve._signature import (
    NP_TYPES,
    Payload,
    RequestError,
    Signature,
    TensorSpec,
    _flatten,
    block_column,
    block_payload,
    check_tensor_shape,
    column_from_json,
    columns_from_matrix,
    encode_bytes_tensor,
    numeric_rows,
    quote,
    tensor_from_binary,
    tensor_from_json,
)

__all__ = [
    "InferRequest",
    "imputed_headers",
    "parse_infer",
    "parse_scoring",
    "parse_invocation",
    "ScoringInput",
    "resolve_outputs",
    "encode_infer",
    "encode_scoring",
    "config_inputs",
    "config_outputs",
    "validation_message",
    "dumps",
]

_MAX_ELEMENTS = 1 << 28  # a shape claiming more elements than this is refused before any allocation


_ORJSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes (orjson: 30-140x `json.dumps` on our response shapes; numpy
    arrays and scalars pass as they are). NaN and infinities should already be None; any left
    become `null`, never the invalid `NaN`."""
    return orjson.dumps(obj, option=_ORJSON)


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """The first problem of a pydantic error as `field.path: message` (the input value omitted)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    where = f"{prefix}{'.' if prefix and loc else ''}{loc}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")  # our own validators' text, without pydantic's label
    return f"{where}: {msg}" if where else msg


# ---------------------------------------------------------------------------- v2 requests


@dataclass
class InferRequest:
    """A parsed v2 infer request: the payload, and how the client wants the answer."""

    payload: Payload
    id: str | None
    outputs: list[tuple[str, bool]] | None  # requested outputs and whether each is binary
    binary_default: bool
    classify: dict[str, tuple[int, tuple[str, ...] | None]] = field(default_factory=dict)  # output → (top k, labels)
    imputed: dict[str, int] = field(default_factory=dict)  # column → missing values the model fills in


def parse_infer(body: bytes, header_length: str | None, signature: Signature) -> InferRequest:
    """Parse and check a v2 infer request against the signature.

    Args:
        body: the request body.
        header_length: the `Inference-Header-Content-Length` header (binary data follow the
            JSON header when it is present).
        signature: the served model's signature.

    Raises:
        RequestError: anything the protocol or the signature refuses, naming the field.
    """
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise RequestError(f"Inference-Header-Content-Length must be an integer; got {header_length[:20]!r}") from None
        if not 0 < n <= len(body):
            raise RequestError(f"Inference-Header-Content-Length {n} is outside the body's {len(body)} bytes")
        header, rest = body[:n], memoryview(body)[n:]
    else:
        header, rest = body, memoryview(b"")
    try:
        req = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise RequestError(validation_message(exc)) from None

    binary_default = False
    options = req.parameters
    if options:  # a few dict lookups: this runs on every request
        if len(options) > 1 or "binary_data_output" not in options:
            raise _unknown_parameter(options, _REQUEST_PARAMETERS, "")
        binary_default = options["binary_data_output"]
        if not isinstance(binary_default, bool):
            raise RequestError(f"parameters.binary_data_output must be true or false; got {_got(binary_default)}")
    outputs = None
    classify: dict[str, tuple[int, tuple[str, ...] | None]] = {}
    if req.outputs is not None:
        outputs = []
        declared = {s.name: s for s in signature.outputs}
        for j, out in enumerate(req.outputs):
            where = f"outputs[{j}] ({out.name!r})"
            if any(name == out.name for name, _ in outputs):  # each output is answered once, as it asked
                raise RequestError(f"{where}: the output is requested twice; name each output once")
            options = out.parameters or {}
            if not options.keys() <= _OUTPUT_PARAMETERS:
                raise _unknown_parameter(options, _OUTPUT_PARAMETERS, f"{where}: ")
            flag = options.get("binary_data", binary_default)
            if not isinstance(flag, bool):
                raise RequestError(f"{where}: parameters.binary_data must be true or false; got {_got(flag)}")
            if "classification" in options:
                k = options["classification"]
                classify[out.name] = (
                    _class_count(k, declared.get(out.name), where),
                    declared[out.name].labels if out.name in declared else None,
                )
            outputs.append((out.name, flag))

    given: dict[str, tuple[int, Any, memoryview | None]] = {}
    offset = 0
    for i, inp in enumerate(req.inputs):
        if inp.name in given:
            raise RequestError(f"inputs[{i}]: input {inp.name!r} is given twice")
        if any(d < 0 for d in inp.shape):
            raise RequestError(f"inputs[{i}] ({inp.name!r}): shape {inp.shape} has a negative size")
        params = inp.parameters or {}
        if params and (len(params) > 1 or "binary_data_size" not in params):
            raise _unknown_parameter(params, _INPUT_PARAMETERS, f"inputs[{i}] ({inp.name!r}): ")
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise RequestError(
                    f"inputs[{i}] ({inp.name!r}): parameters.binary_data_size must be a non-negative integer; got {_got(size)}"
                )
            if header_length is None:
                raise RequestError(f"inputs[{i}] ({inp.name!r}): binary data need the Inference-Header-Content-Length header")
            if offset + size > len(rest):
                raise RequestError(f"inputs[{i}] ({inp.name!r}): binary_data_size {size} runs past the end of the body")
            given[inp.name] = (i, inp, rest[offset : offset + size])
            offset += size
        else:
            if inp.data is None:
                raise RequestError(f"inputs[{i}] ({inp.name!r}) has neither data nor parameters.binary_data_size")
            given[inp.name] = (i, inp, None)
    if offset != len(rest):
        raise RequestError(f"the body has {len(rest) - offset} bytes after the JSON header that no input claims")

    matrix = signature.matrix
    imputed: dict[str, int] = {}
    if signature.layout == "tensor":
        payload: Payload = _v2_tensor(signature.tensor, given, signature)
    elif matrix is not None and matrix.name in given:
        if any(s.name in given for s in signature.inputs):
            raise RequestError(
                f"send either the columns or the one tensor {matrix.name!r}, not both; the model takes {signature.describe()}"
            )
        where = f"inputs[{given[matrix.name][0]}] ({matrix.name!r})"
        payload = columns_from_matrix(_v2_tensor(matrix, given, signature), signature, where, imputed)
    else:
        payload = _v2_columns(signature, given, imputed)
    return InferRequest(payload, req.id, outputs, binary_default, classify, imputed)


def _class_count(k: Any, spec: TensorSpec | None, where: str) -> int:
    """The `classification` parameter of a requested output (Triton's classification extension):
    a positive integer, at most the output's classes where its declared shape gives them (an
    output the signature does not declare, or of shape [-1, -1], is checked by `_top_classes`)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RequestError(f"{where}: parameters.classification must be a positive integer (how many classes to return); got {_got(k)}")
    if spec is not None:
        if spec.datatype == "BYTES" or len(spec.shape) > 2:
            raise RequestError(
                f"{where}: classification needs a numeric output of shape [-1] or [-1, K]; {spec.name!r} is {spec.datatype} {list(spec.shape)}"
            )
        classes = spec.shape[1] if len(spec.shape) == 2 else 1
        if k > classes > 0:
            raise _too_many_classes(k, classes, where)
    return k


def _too_many_classes(k: int, classes: int, where: str) -> RequestError:
    # Triton's extension returns [N, k] exactly; cutting k down would answer another shape than asked.
    return RequestError(f"{where}: parameters.classification must be at most the output's {classes} classes; got {k}")


# The parameters this server implements, by where they go (a request, a requested output, an
# input); anything else is refused, never ignored.
_REQUEST_PARAMETERS = frozenset({"binary_data_output"})
_OUTPUT_PARAMETERS = frozenset({"binary_data", "classification"})
_INPUT_PARAMETERS = frozenset({"binary_data_size"})

# Parameters that Triton, KServe or MLServer define and this server does not implement: a client
# may well send them, so the refusal says what they are rather than calling them unknown.
_NOT_IMPLEMENTED = {
    "sequence_id": "Triton's sequence extension",
    "sequence_start": "Triton's sequence extension",
    "sequence_end": "Triton's sequence extension",
    "priority": "Triton's schedule policy extension",
    "timeout": "Triton's schedule policy extension",
    "headers": "Triton's forwarded HTTP headers",
    "shared_memory_region": "the shared memory extension",
    "shared_memory_offset": "the shared memory extension",
    "shared_memory_byte_size": "the shared memory extension",
    "content_type": "MLServer's content types",
    "binary_data_output": "a request parameter, not an output's or an input's",
    "binary_data": "an output parameter",
    "classification": "an output parameter",
    "binary_data_size": "an input parameter",
}


def _unknown_parameter(params: Mapping[str, Any], known: frozenset[str], where: str) -> RequestError:
    """The refusal of the first (in sorted order) of `params` not in `known`, naming it."""
    key = min(k for k in params if k not in known)
    field = _field("parameters", key)
    takes = ", ".join(sorted(known))
    what = _NOT_IMPLEMENTED.get(key) or ("a Triton parameter" if key.startswith("triton_") else None)
    if what is not None:
        return RequestError(f"{where}{field} is not supported here ({what}); expected one of {takes}")
    return RequestError(f"{where}{field} is not a known parameter; expected one of {takes}")


def _field(where: str, key: str) -> str:
    """`where.key`, or `where['key']` for a key that is no identifier (cut short)."""
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{key[:60]!r}]"


def _got(value: Any) -> str:
    """A request's value as JSON writes it, quoted for `...; got VALUE` messages (cut short when shown)."""
    try:
        text = dumps(value).decode()
    except TypeError:
        text = repr(value)
    return quote(value, text)


def _v2_tensor(spec: TensorSpec, given: Mapping[str, tuple[int, Any, memoryview | None]], signature: Signature) -> np.ndarray:
    if spec.name not in given:
        raise RequestError(f"input {spec.name!r} is missing; the model takes {signature.describe()}")
    i, inp, buf = given[spec.name]
    where = f"inputs[{i}] ({spec.name!r})"
    check_tensor_shape(inp.shape, spec, where)
    _check_size(inp.shape, where)
    if buf is not None:
        return tensor_from_binary(buf, inp.datatype, inp.shape, spec, where)
    return tensor_from_json(inp.data, spec, where, claimed=inp.datatype, shape=inp.shape)


def _v2_columns(
    signature: Signature, given: Mapping[str, tuple[int, Any, memoryview | None]], imputed: dict[str, int]
) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    rows: tuple[str, int] | None = None
    for spec in signature.inputs:
        if spec.name not in given:
            if spec.optional:
                continue
            raise RequestError(f"input {spec.name!r} is missing; the model takes {signature.describe()}")
        i, inp, buf = given[spec.name]
        where = f"inputs[{i}] ({spec.name!r})"
        shape = inp.shape
        if not (len(shape) == 1 or len(shape) == 2 and shape[1] == 1):
            raise RequestError(f"{where} has shape {shape}; a column takes [N] or [N, 1]")
        if shape[0] < 1:
            raise RequestError(f"{where} has no rows; send at least one")
        _check_size(shape, where)
        if buf is not None:
            col = tensor_from_binary(buf, inp.datatype, shape, spec, where).reshape(-1)
        else:
            flat = _flatten(inp.data, where)
            if len(flat) != shape[0]:
                raise RequestError(f"{where} holds {len(flat)} values; shape {shape} needs {shape[0]}")
            col = column_from_json(flat, spec, where, claimed=inp.datatype, imputed=imputed)
        if rows is not None and rows[1] != len(col):
            raise RequestError(f"{where} has {len(col)} rows; input {rows[0]!r} has {rows[1]}")
        rows = rows or (spec.name, len(col))
        columns[spec.name] = col
    return columns


def _check_size(shape: Sequence[int], where: str) -> None:
    n = 1
    for d in shape:
        n *= d
    if n > _MAX_ELEMENTS:
        raise RequestError(f"{where}: shape {list(shape)} holds more than {_MAX_ELEMENTS} elements")


# ---------------------------------------------------------------------------- MLflow requests


def parse_scoring(body: bytes, signature: Signature, imputed: dict[str, int] | None = None) -> Payload:
    """Parse and check an MLflow scoring request (one of its four formats); `imputed`, if
    given, receives per column the missing values the model will fill in.

    Raises:
        RequestError: naming the format and the field at fault.
    """
    req = _plain_split(body)
    if req is None:
        try:
            req = ScoringRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RequestError(validation_message(exc)) from None
    if req.params:
        # MLflow hands params only to a model whose signature declares a params schema (and warns
        # and drops them otherwise); no TrustForge package takes any, so they are refused, not dropped.
        raise RequestError(
            f"{_field('params', min(req.params))} is not a known parameter; this model takes no inference parameters "
            "(send no params, or an empty object)"
        )
    fmt = req.format
    if signature.layout == "tensor":
        return _scoring_tensor(req, fmt, signature)
    if fmt == "dataframe_split":
        split = req.dataframe_split
        index = {c: j for j, c in enumerate(split.columns)}
        if len(index) != len(split.columns):
            raise RequestError("dataframe_split.columns: names repeat")
        width = len(split.columns)
        for r, row in enumerate(split.data):
            if len(row) != width:
                raise RequestError(f"dataframe_split.data[{r}] has {len(row)} values; there are {width} columns")
        block, converted = numeric_rows(split.data), {}  # all plain numbers: float columns are cut from one array
        if block is not None:
            whole = block_payload(block, split.columns, signature)  # every input a float column: one conversion
            if whole is not None:
                return whole
        cols = {}
        for spec in signature.inputs:
            if spec.name not in index and spec.optional:
                continue
            if spec.name not in index:
                raise RequestError(f"dataframe_split.columns lacks {spec.name!r}; the model takes {signature.describe()}")
            j = index[spec.name]
            col = block_column(block, j, spec, converted) if block is not None else None
            cols[spec.name] = (
                col
                if col is not None
                else column_from_json([row[j] for row in split.data], spec, f"dataframe_split column {spec.name!r}", imputed=imputed)
            )
        return cols
    if fmt == "dataframe_records":
        return _records(req.dataframe_records, "dataframe_records", signature, imputed)
    if fmt == "instances":
        items = req.instances
        if all(isinstance(item, dict) for item in items):
            return _records(items, "instances", signature, imputed)
        if len(signature.inputs) == 1 and not any(isinstance(item, (dict, list)) for item in items):
            spec = signature.inputs[0]
            return {spec.name: column_from_json(items, spec, f"instances ({spec.name!r})", imputed=imputed)}
        if signature.matrix is not None and all(isinstance(item, list) for item in items):
            return columns_from_matrix(tensor_from_json(items, signature.matrix, "instances"), signature, "instances", imputed)
        raise RequestError(f'instances must be records ({{"column": value, ...}}); the model takes {signature.describe()}')
    inputs = req.inputs
    if isinstance(inputs, list):
        if len(signature.inputs) == 1 and not any(isinstance(item, list) for item in inputs):
            spec = signature.inputs[0]
            return {spec.name: column_from_json(inputs, spec, f"inputs ({spec.name!r})", imputed=imputed)}
        if signature.matrix is not None and inputs and all(isinstance(item, list) for item in inputs):
            return columns_from_matrix(tensor_from_json(inputs, signature.matrix, "inputs"), signature, "inputs", imputed)
        raise RequestError(f'inputs must be columns ({{"column": [values]}}); the model takes {signature.describe()}')
    cols = {}
    rows: tuple[str, int] | None = None
    for spec in signature.inputs:
        if spec.name not in inputs and spec.optional:
            continue
        if spec.name not in inputs:
            raise RequestError(f"inputs lacks {spec.name!r}; the model takes {signature.describe()}")
        values = inputs[spec.name]
        if not isinstance(values, list):
            values = [values]  # one row may give scalars
        col = column_from_json(values, spec, f"inputs[{spec.name!r}]", imputed=imputed)
        if rows is not None and rows[1] != len(col):
            raise RequestError(f"inputs[{spec.name!r}] has {len(col)} rows; {rows[0]!r} has {rows[1]}")
        rows = rows or (spec.name, len(col))
        cols[spec.name] = col
    return cols


class _Split:
    """A `dataframe_split` body as `ScoringRequest` would hold it (its fields that are read)."""

    __slots__ = ("dataframe_split", "columns", "data", "params")
    format = "dataframe_split"

    def __init__(self, columns: list, data: list, params: dict | None):
        self.dataframe_split = self
        self.columns = columns
        self.data = data
        self.params = params


_SPLIT_KEYS = frozenset({"dataframe_split", "params"})


def _plain_split(body: bytes) -> _Split | None:
    """The body when it is a plain `dataframe_split` that `ScoringRequest` accepts as it is: an
    object with `dataframe_split` (and `params`, an object or null) only; the split with
    `columns` (text, at least one), `data` (lists, at least one) and `index` (a list or null)
    only. Anything else (None) goes to `ScoringRequest`, which parses it and words any error
    (a pydantic model costs about 60 us on a one-row request; this about 5)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or not obj.keys() <= _SPLIT_KEYS or obj.get("params") is not None and type(obj["params"]) is not dict:
        return None
    split = obj.get("dataframe_split")
    if type(split) is not dict or not split.keys() <= {"columns", "data", "index"}:
        return None
    columns, data, index = split.get("columns"), split.get("data"), split.get("index")
    if type(columns) is not list or type(data) is not list or not columns or not data or (index is not None and type(index) is not list):
        return None
    if not all(type(c) is str for c in columns) or not all(type(r) is list for r in data):
        return None
    return _Split(columns, data, obj.get("params"))


@dataclass
class ScoringInput:
    """A parsed `/invocations` body: the payload and the missing values the model will fill in."""

    payload: Payload
    imputed: dict[str, int] = field(default_factory=dict)


def parse_invocation(body: bytes, content_type: str | None, signature: Signature, max_bytes: int) -> ScoringInput:
    """Parse an `/invocations` body by its content type, as MLflow's scoring server does:
    `application/json` (the four JSON formats), `text/csv` (a header row of column names,
    then one row per record: `DataFrame.to_csv()`), and Parquet (`application/x-parquet`,
    `application/vnd.apache.parquet`, `application/parquet`); `charset`, if given, must be
    utf-8. `max_bytes` bounds what a compressed (Parquet) body may decode to.

    Raises:
        UnsupportedMediaType: any other content type (415).
        RequestError: a body its content type cannot read, or data the signature refuses.
    """
    from trustforge.serve._formats import media_type, parse_csv, parse_parquet

    kind = media_type(content_type)
    imputed: dict[str, int] = {}
    if kind == "json":
        payload = parse_scoring(body, signature, imputed)
    elif kind == "csv":
        payload = parse_csv(body, signature, imputed)
    else:
        payload = parse_parquet(body, signature, max_bytes, imputed)
    return ScoringInput(payload, imputed)


def _records(items: list[dict], fmt: str, signature: Signature, imputed: dict[str, int] | None) -> dict[str, np.ndarray]:
    cols = {}
    for spec in signature.inputs:
        if spec.optional and not any(spec.name in rec for rec in items):
            continue
        values = []
        for r, rec in enumerate(items):
            if spec.name not in rec:
                raise RequestError(f"{fmt}[{r}] has no field {spec.name!r}; the model takes {signature.describe()}")
            values.append(rec[spec.name])
        cols[spec.name] = column_from_json(values, spec, f"{fmt} field {spec.name!r}", imputed=imputed)
    return cols


def _scoring_tensor(req: ScoringRequest, fmt: str, signature: Signature) -> np.ndarray:
    spec = signature.tensor
    if fmt in ("dataframe_split", "dataframe_records"):
        raise RequestError(f"{fmt}: this model takes {signature.describe()}; send it as 'inputs' or 'instances'")
    data = req.instances if fmt == "instances" else req.inputs
    if isinstance(data, dict):
        if spec.name not in data:
            raise RequestError(f"{fmt} lacks {spec.name!r}; the model takes {signature.describe()}")
        data = data[spec.name]
    elif isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        rows = []
        for r, item in enumerate(data):
            if spec.name not in item:
                raise RequestError(f"{fmt}[{r}] has no field {spec.name!r}; the model takes {signature.describe()}")
            rows.append(item[spec.name])
        data = rows
    return tensor_from_json(data, spec, f"{fmt} ({spec.name!r})")


# ---------------------------------------------------------------------------- responses


def resolve_outputs(columns: Mapping[str, np.ndarray], signature: Signature) -> list[tuple[str, str, np.ndarray]]:
    """The model's outputs as (name, datatype, array with the row first), from its predictions.

    A signature output is the prediction column of its name, or, for an output with labels,
    the columns `proba_<label>` (`probabilities`) or `<name>_<label>` stacked in label order.
    Prediction columns no signature output names are returned as outputs of their own, so a
    model whose package declares fewer outputs loses nothing.
    """
    out: list[tuple[str, str, np.ndarray]] = []
    used: set[str] = set()
    for spec in signature.outputs:
        if spec.name in columns:
            out.append((spec.name, spec.datatype, _as_type(columns[spec.name], spec.datatype)))
            used.add(spec.name)
        elif spec.labels:
            prefix = "proba" if spec.name == "probabilities" else spec.name
            names = [f"{prefix}_{label}" for label in spec.labels]
            if all(n in columns for n in names):
                stacked = np.stack([np.asarray(columns[n], dtype=np.float64) for n in names], axis=1)
                out.append((spec.name, spec.datatype, _as_type(stacked, spec.datatype)))
                used.update(names)
    for name, arr in columns.items():
        if name not in used:
            datatype = "BYTES" if arr.dtype.kind in "OUS" else _v2_type(arr.dtype)
            out.append((name, datatype, _as_type(arr, datatype)))
    return out


def _v2_type(dtype: np.dtype) -> str:
    for name, np_type in NP_TYPES.items():
        if np_type == dtype:
            return name
    return "FP64"


def _as_type(arr: np.ndarray, datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return arr if arr.dtype == object else arr.astype(object)
    return np.asarray(arr, dtype=NP_TYPES[datatype])


def _jsonable(arr: np.ndarray) -> list:
    """A flat list for JSON: NaN becomes null, numpy scalars become Python numbers."""
    flat = arr.reshape(-1)
    if flat.dtype.kind == "f":
        bad = ~np.isfinite(flat)
        if bad.any():
            obj = flat.astype(object)
            obj[bad] = None
            return obj.tolist()
    elif flat.dtype == object:
        return [
            None if v is None or isinstance(v, float) and not np.isfinite(v) else (v.item() if isinstance(v, np.generic) else v)
            for v in flat.tolist()
        ]
    return flat.tolist()


def encode_infer(
    outputs: list[tuple[str, str, np.ndarray]], req: InferRequest, model_name: str, model_version: str, *, ood: dict[str, Any] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A v2 infer response: (body, headers). Binary outputs follow the JSON header; the
    out-of-distribution verdict (`_ood.OodVerdict.body`), if any, goes in `parameters.ood`.

    Raises:
        RequestError: the request asked for an output this model does not have.
    """
    available = {name: (dt, arr) for name, dt, arr in outputs}
    if req.outputs is None:
        chosen = [(name, req.binary_default) for name, _, _ in outputs]
    else:
        chosen = req.outputs
        for name, _ in chosen:
            if name not in available:
                raise RequestError(f"output {name!r} is not an output of this model (outputs: {', '.join(available)})")
    entries, blobs = [], []
    for name, binary in chosen:
        datatype, arr = available[name]
        if name in req.classify:
            datatype, arr = "BYTES", _top_classes(arr, datatype, *req.classify[name], name)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            if datatype == "BYTES":
                blob = encode_bytes_tensor(arr.reshape(-1).tolist())
            else:
                blob = np.ascontiguousarray(arr, dtype=NP_TYPES[datatype].newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _jsonable(arr)
        entries.append(entry)
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if req.id is not None:
        body["id"] = req.id
    if req.imputed:
        body["parameters"] = {"imputed_values": req.imputed}
    if ood is not None:
        body.setdefault("parameters", {})["ood"] = ood
    header = dumps(body)
    extra = {**imputed_headers(req.imputed), **ood_headers(ood)}
    if not blobs:
        return header, {"content-type": "application/json", **extra}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
        **extra,
    }


def imputed_headers(imputed: Mapping[str, int]) -> dict[str, str]:
    """`Trustforge-Imputed-Values: N`, the missing values the model filled in for this request
    (absent when none); the per-column counts are in a v2 response's `parameters.imputed_values`."""
    return {"trustforge-imputed-values": str(sum(imputed.values()))} if imputed else {}


def _top_classes(arr: np.ndarray, datatype: str, k: int, labels: tuple[str, ...] | None, name: str) -> np.ndarray:
    """Triton's classification extension: per row, the `k` highest values of an output as
    `"<value>:<index>[:<label>]"` strings, highest first (BYTES, shape [rows, k]).

    Raises:
        RequestError: the output is not numeric [N] or [N, K], or has fewer than `k` classes.
    """
    if datatype == "BYTES" or arr.ndim > 2:
        raise RequestError(
            f"output {name!r}: classification needs a numeric output of shape [N] or [N, K]; it is {datatype} {list(arr.shape)}"
        )
    scores = arr.reshape(len(arr), -1).astype(np.float64)
    if k > scores.shape[1]:
        raise _too_many_classes(k, scores.shape[1], f"output {name!r}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for r, row in enumerate(order):
        for c, j in enumerate(row.tolist()):
            text = f"{scores[r, j]:f}:{j}"
            out[r, c] = f"{text}:{labels[j]}" if labels is not None and j < len(labels) else text
    return out


def encode_scoring(columns: Mapping[str, np.ndarray], *, ood: dict[str, Any] | None = None) -> bytes:
    """`{"predictions": [{column: value, ...}, ...]}`: one record per input row, as MLflow returns
    a DataFrame; with the out-of-distribution verdict, if any, in an extra `ood` field."""
    names = list(columns)
    values = [_record_values(np.asarray(columns[n])) for n in names]
    records = [dict(zip(names, row)) for row in zip(*values)]
    return dumps({"predictions": records} if ood is None else {"predictions": records, "ood": ood})


def _record_values(arr: np.ndarray) -> Any:
    """A column's values for `encode_scoring`, written by `dumps` as `_jsonable(arr)` would be:
    a float column as float64 (orjson writes each value as the Python float `tolist` gives, and
    NaN and infinities as null, so no finiteness pass is needed); others as `_jsonable` makes them."""
    if arr.ndim == 1 and arr.dtype.kind == "f":
        return arr.astype(np.float64, copy=False)
    return _jsonable(arr)


# ---------------------------------------------------------------------------- model configuration


def config_inputs(signature: Signature) -> list[dict[str, Any]]:
    """The `input` list of Triton's model configuration: every input, then the matrix form.

    With `max_batch_size` > 0 Triton's `dims` leave out the batch dimension and must not be
    empty: a column (`[-1]`, one value per row) is `dims: [1]` with `reshape: {shape: []}`,
    as Triton's model configuration documents for a model that takes `[batch]`. When the
    model also takes the `[N, F]` matrix, every input is `optional` (either form will do)."""
    specs = list(signature.inputs)
    either = signature.matrix is not None
    if either:
        specs.append(signature.matrix)
    return [_config_entry(s, optional=either or s.optional) for s in specs]


def config_outputs(signature: Signature) -> list[dict[str, Any]]:
    """The `output` list of Triton's model configuration (dims as for `config_inputs`)."""
    return [_config_entry(s, optional=False) for s in signature.outputs]


def _config_entry(spec: TensorSpec, *, optional: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": spec.name, "data_type": "TYPE_" + ("STRING" if spec.datatype == "BYTES" else spec.datatype)}
    if len(spec.shape) == 1:
        entry.update(dims=[1], reshape={"shape": []})
    else:
        entry["dims"] = list(spec.shape[1:])
    if optional:
        entry["optional"] = True
    return entry
