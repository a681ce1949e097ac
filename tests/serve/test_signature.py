"""Request data → model input: the signature's rules, both protocols, and a fuzzer over the parsers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustforge.errors import ModelError
from trustforge.serve._protocol import encode_infer, parse_infer, parse_scoring, resolve_outputs
from trustforge.serve._signature import (
    RequestError,
    Signature,
    column_from_json,
    concat_payloads,
    encode_bytes_tensor,
    payload_key,
    tensor_from_binary,
    tensor_from_json,
    to_model_input,
)

TABLE = {
    "signature": {
        "inputs": [
            {"name": "age", "kind": "numeric", "datatype": "FP64", "shape": [-1]},
            {"name": "color", "kind": "categorical", "datatype": "BYTES", "shape": [-1]},
            {"name": "smoker", "kind": "binary", "datatype": "FP64", "shape": [-1]},
            {"name": "visits", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [
            {"name": "prediction", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2], "labels": ["high", "low"]},
        ],
    },
    "preprocessing": {"binary_values": {"smoker": ["no", "yes"]}},
}
IMAGE = {"signature": {"inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 2, 2]}], "outputs": []}}


@pytest.fixture
def table() -> Signature:
    return Signature.from_manifest(TABLE)


def test_the_signature_decides_layout_and_types(table):
    assert table.layout == "frame" and table.batchable
    assert {s.name: s.datatype for s in table.inputs} == {"age": "FP64", "color": "BYTES", "smoker": "BYTES", "visits": "INT64"}
    image = Signature.from_manifest(IMAGE)
    assert image.layout == "tensor" and image.tensor.shape == (-1, 1, 2, 2)
    series = Signature.from_manifest(
        {
            "signature": {
                "inputs": [
                    {"name": "sales", "datatype": "FP64", "shape": [-1], "min_rows": 24},
                    {"name": "date", "datatype": "BYTES", "shape": [-1], "optional": True},
                ]
            }
        }
    )
    assert not series.batchable and series.inputs[1].optional
    with pytest.raises(ModelError, match="signature.inputs"):
        Signature.from_manifest({"signature": {}})
    with pytest.raises(ModelError, match=r"signature.inputs\[0\].datatype"):
        Signature.from_manifest({"signature": {"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [-1]}]}})
    with pytest.raises(ModelError, match="exactly one tensor"):
        Signature.from_manifest({"signature": {"inputs": [IMAGE["signature"]["inputs"][0], TABLE["signature"]["inputs"][0]]}})


def test_json_columns_take_only_safe_values(table):
    age, color, smoker, visits = table.inputs
    np.testing.assert_array_equal(column_from_json([1, 2.5, None], age, "age"), [1.0, 2.5, np.nan])
    assert column_from_json([3, 2.0], visits, "visits").dtype == np.int64  # JSON has one number type
    assert column_from_json(["red", None, 17], color, "color").tolist() == ["red", None, "17"]  # an int code is its text
    assert column_from_json([True, "no"], smoker, "smoker").tolist() == ["True", "no"]
    for values, spec, message in [
        (["7"], age, r"age must hold numbers; got text '7' at row 1"),
        ([1, {"a": 1}], age, "got an object {'a': 1} at row 2"),
        ([1.5], visits, r"visits must hold integers \(INT64\); got 1.5 at row 1"),
        ([2**70], visits, "visits must hold integers"),
        ([1.5], color, "color must hold text; got a number 1.5 at row 1"),
        ([True], color, "color must hold text; got a boolean"),
        ([], age, "age is empty"),
        ("1,2", age, "age must be a list"),
        ([float("inf")], age, "values must be finite"),
        ([float("nan")], age, "values must be finite"),  # null is the missing value, NaN is refused
        ([1, 2.5, None, True], age, "age must hold numbers; got a boolean True at row 4"),  # true is not the number 1
        ([True], visits, "visits must hold integers"),
    ]:
        with pytest.raises(RequestError, match=message):
            column_from_json(values, spec, spec.name)


def test_claimed_datatypes_cast_only_safely(table):
    age, color, _, visits = table.inputs
    assert column_from_json([1, 2], age, "x", claimed="INT32").dtype == np.float64
    assert column_from_json([1, 2], visits, "x", claimed="INT8").dtype == np.int64
    image = Signature.from_manifest(IMAGE).tensor
    for values, spec, claimed, message in [
        ([1.0], visits, "FP64", "INT64; FP64 data cannot be cast to it safely"),
        (["a"], age, "BYTES", "FP64; BYTES data cannot be cast"),
        ([1], color, "INT64", "BYTES; INT64 data cannot be cast"),
        ([1.5], age, "INT64", "must hold integers"),  # data that are not what the request says
        ([1], age, "COMPLEX", "datatype 'COMPLEX' is not one of"),
    ]:
        with pytest.raises(RequestError, match=message):
            column_from_json(values, spec, "x", claimed=claimed)
    with pytest.raises(RequestError, match="FP32; FP64 data cannot be cast to it safely"):
        tensor_from_json([[[[0.0] * 2] * 2]], image, "image", claimed="FP64")


def test_tensors_from_json_and_binary():
    image = Signature.from_manifest(IMAGE).tensor
    data = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    np.testing.assert_array_equal(tensor_from_json(data.tolist(), image, "image"), data)
    np.testing.assert_array_equal(tensor_from_json(data.reshape(-1).tolist(), image, "image", "FP32", shape=[2, 1, 2, 2]), data)
    np.testing.assert_array_equal(tensor_from_binary(memoryview(data.tobytes()), "FP32", [2, 1, 2, 2], image, "image"), data)
    np.testing.assert_array_equal(
        tensor_from_binary(memoryview(data.astype(np.float16).tobytes()), "FP16", [2, 1, 2, 2], image, "image"), data
    )  # FP16 → FP32 is safe
    for bad, message in [
        ([[[[1.0, 2.0], [3.0]]]], "ragged"),
        ([[1.0, 2.0]], "2 dimensions"),
        ([[[[1.0] * 3] * 2]], r"shape \[1, 1, 2, 3\]"),
        ([[[["a", "b"], ["c", "d"]]]], "must hold numbers"),
    ]:
        with pytest.raises(RequestError, match=message):
            tensor_from_json(bad, image, "image")
    with pytest.raises(RequestError, match="needs 32"):
        tensor_from_binary(memoryview(data.tobytes()[:-4]), "FP32", [2, 1, 2, 2], image, "image")
    with pytest.raises(RequestError, match=r"image holds nan at element \[0, 0, 0, 0\]; values must be finite"):
        tensor_from_binary(memoryview(np.full((1, 1, 2, 2), np.nan, np.float32).tobytes()), "FP32", [1, 1, 2, 2], image, "image")


def test_bytes_tensors_round_trip_and_refuse_bad_utf8(table):
    color = table.inputs[1]
    blob = encode_bytes_tensor(["red", "grün", ""])
    assert tensor_from_binary(memoryview(blob), "BYTES", [3], color, "color").tolist() == ["red", "grün", ""]
    with pytest.raises(RequestError, match="not UTF-8"):
        tensor_from_binary(memoryview(struct.pack("<I", 2) + b"\xff\xfe"), "BYTES", [1], color, "color")
    with pytest.raises(RequestError, match="runs past the end"):
        tensor_from_binary(memoryview(struct.pack("<I", 9) + b"ab"), "BYTES", [1], color, "color")


ROWS = [{"age": 40.5, "color": "red", "smoker": "yes", "visits": 2}, {"age": None, "color": "blue", "smoker": "no", "visits": 0}]


def test_the_four_mlflow_shapes_and_v2_give_the_same_payload(table):
    cols = list(ROWS[0])
    bodies = [
        {"dataframe_split": {"columns": cols, "data": [[r[c] for c in cols] for r in ROWS]}},
        {"dataframe_records": ROWS},
        {"instances": [{**r, "ignored": [1, 2]} for r in ROWS]},
        {"inputs": {c: [r[c] for r in ROWS] for c in cols}},
    ]
    payloads = [parse_scoring(json.dumps(b).encode(), table) for b in bodies]
    dt = {"age": "FP64", "color": "BYTES", "smoker": "BYTES", "visits": "INT64"}
    v2 = {
        "inputs": [{"name": c, "shape": [2], "datatype": dt[c], "data": [r[c] for r in ROWS]} for c in cols]
        + [{"name": "extra", "shape": [1], "datatype": "FP32", "data": [0.0]}]
    }
    payloads.append(parse_infer(json.dumps(v2).encode(), None, table).payload)
    frames = [to_model_input(p, table) for p in payloads]
    for frame in frames[1:]:
        assert frame.equals(frames[0])
    assert list(frames[0].columns) == cols and np.isnan(frames[0]["age"][1])


def test_v2_binary_requests_and_responses(table):
    header = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": [["red"], ["blue"]]},
            {
                "name": "smoker",
                "shape": [2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(encode_bytes_tensor(["no", "yes"]))},
            },
            {"name": "visits", "shape": [2], "datatype": "INT32", "data": [1, 2]},
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "prediction"}],
    }
    head = json.dumps(header).encode()
    body = head + np.array([1.5, 2.5], np.float32).tobytes() + encode_bytes_tensor(["no", "yes"])
    req = parse_infer(body, str(len(head)), table)
    assert req.payload["age"].tolist() == [1.5, 2.5] and req.payload["smoker"].tolist() == ["no", "yes"]
    for cut, message in [(body + b"x", "1 bytes after the JSON header"), (body[:-1], "runs past the end")]:
        with pytest.raises(RequestError, match=message):
            parse_infer(cut, str(len(head)), table)
    with pytest.raises(RequestError, match="binary data need the Inference-Header-Content-Length header"):
        parse_infer(head, None, table)

    columns = {
        "prediction": np.array(["high", "low"], dtype=object),
        "proba_high": np.array([0.75, 0.25]),
        "proba_low": np.array([0.25, 0.75]),
    }
    outputs = resolve_outputs(columns, table)
    assert [(n, d, a.shape) for n, d, a in outputs] == [("prediction", "BYTES", (2,)), ("probabilities", "FP64", (2, 2))]
    content, headers = encode_infer(outputs, req, "m", "1")
    n = int(headers["inference-header-content-length"])
    meta = json.loads(content[:n])
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "prediction"]
    assert meta["outputs"][1]["data"] == ["high", "low"]
    assert np.frombuffer(content[n:], "<f8").reshape(2, 2).tolist() == [[0.75, 0.25], [0.25, 0.75]]


def test_payloads_batch_only_with_payloads_of_the_same_key(table):
    a = {"age": np.array([1.0]), "color": np.array(["x"], dtype=object)}
    b = {"age": np.array([2.0, 3.0]), "color": np.array([None, None], dtype=object)}
    merged = concat_payloads([a, b])
    assert merged["age"].tolist() == [1.0, 2.0, 3.0] and merged["color"].tolist() == ["x", None, None]
    assert payload_key(a) == payload_key(b) != payload_key({"age": np.array([1.0])})
    assert payload_key(np.zeros((2, 1, 8))) != payload_key(np.zeros((2, 1, 9)))


# ---------------------------------------------------------------------------- the fuzzer

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5)
)
_json = st.recursive(
    _scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=12
)
_names = st.sampled_from(["age", "color", "smoker", "visits", "image", "other"])
_datatypes = st.sampled_from(["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES", "BF16", "X"])
_v2_input = st.fixed_dictionaries(
    {"name": _names, "datatype": _datatypes, "shape": st.lists(st.integers(-1, 4), min_size=0, max_size=5)},
    optional={"data": _json, "parameters": st.dictionaries(st.just("binary_data_size"), st.integers(-1, 16))},
)
_v2_output = st.fixed_dictionaries(
    {"name": _names},
    optional={"parameters": st.dictionaries(st.sampled_from(["binary_data", "classification", "top_k"]), _scalars, max_size=2)},
)
_v2 = st.fixed_dictionaries(
    {"inputs": st.lists(_v2_input, max_size=5)},
    optional={
        "outputs": st.lists(_v2_output, max_size=2),
        "id": _json,
        "parameters": st.one_of(_json, st.dictionaries(st.sampled_from(["binary_data_output", "priority", "x"]), _scalars, max_size=2)),
    },
)
_mlflow = st.one_of(
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries({"columns": st.lists(_names, max_size=5), "data": _json})}),
    st.fixed_dictionaries({"dataframe_records": st.lists(st.dictionaries(_names, _json, max_size=5), max_size=4)}),
    st.fixed_dictionaries({"instances": _json}),
    st.fixed_dictionaries({"inputs": st.one_of(st.dictionaries(_names, _json, max_size=5), _json)}, optional={"params": _json}),
    st.dictionaries(st.text(max_size=6), _json, max_size=3),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(body=_v2, tail=st.binary(max_size=24), layout=st.sampled_from(["table", "image"]))
def test_v2_parser_answers_any_body_with_a_payload_or_a_request_error(body, tail, layout):
    signature = Signature.from_manifest(TABLE if layout == "table" else IMAGE)
    head = json.dumps(body).encode()
    for raw, header_length in ((head, None), (head + tail, str(len(head)))):
        try:
            req = parse_infer(raw, header_length, signature)
        except RequestError as exc:
            assert str(exc)
            continue
        _check_payload(req.payload, signature)


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(body=_mlflow, layout=st.sampled_from(["table", "image"]))
def test_mlflow_parser_answers_any_body_with_a_payload_or_a_request_error(body, layout):
    signature = Signature.from_manifest(TABLE if layout == "table" else IMAGE)
    try:
        payload = parse_scoring(json.dumps(body).encode(), signature)
    except RequestError as exc:
        assert str(exc)
        return
    _check_payload(payload, signature)


def _check_payload(payload, signature: Signature) -> None:
    """What reaches the model: the declared columns, one length, declared types (text or numbers)."""
    if signature.layout == "tensor":
        assert payload.dtype == np.float32 and payload.shape[1:] == signature.tensor.shape[1:] and payload.shape[0] >= 1
        assert np.isfinite(payload).all()
        return
    assert set(payload) == {s.name for s in signature.inputs}
    assert len({len(v) for v in payload.values()}) == 1 and len(next(iter(payload.values()))) >= 1
    for spec in signature.inputs:
        col = payload[spec.name]
        if spec.datatype == "BYTES":
            assert all(v is None or isinstance(v, str) for v in col)
        else:
            assert col.dtype.kind in "fi" and not np.isinf(col.astype(np.float64)).any()


@pytest.mark.parametrize(
    "rows",
    [
        [[1.5, 2.0, 3]],  # numbers only: cut from one block
        [[1, 2, 3], [4, 5, 6]],  # integers only
        [[0.1, 2**40, -3.25], [1e-300, 7, 2**52]],
        [[3.5e38, 1.0, 2.0]],  # beyond FP32 in the FP32 column: the checked path refuses it
        [[1.0, True, 2.0]],  # a boolean: the checked path refuses it (numpy would read 1.0)
        [[1.0, None, 2.0]],  # a null: the checked path (refused, or imputed and counted)
        [[1.0, float("inf"), 2.0]],
        [[2**53 + 1, 0.5, 1.0]],  # not exact as float64: the checked path
        [[1.0, "2", 3.0]],
    ],
)
def test_dataframe_split_of_plain_numbers_gives_what_the_checked_path_gives(rows):
    """The one-block path for all-number `dataframe_split` rows: the same arrays (values and
    types) as one `column_from_json` per column, and anything else takes that path unchanged."""
    from trustforge.serve._signature import block_column, numeric_rows

    sig = Signature.from_manifest(
        {
            "signature": {
                "inputs": [
                    {"name": "a", "kind": "numeric", "datatype": "FP64", "shape": [-1]},
                    {"name": "b", "kind": "numeric", "datatype": "FP32", "shape": [-1]},
                    {"name": "c", "kind": "numeric", "datatype": "FP32", "shape": [-1]},
                ],
                "outputs": [{"name": "prediction", "datatype": "FP64", "shape": [-1]}],
            }
        }
    )
    names = [s.name for s in sig.inputs]
    body = json.dumps({"dataframe_split": {"columns": names, "data": rows}}).encode()

    def checked() -> dict | str:
        try:
            return {
                s.name: column_from_json([r[j] for r in rows], s, f"dataframe_split column {s.name!r}") for j, s in enumerate(sig.inputs)
            }
        except RequestError as exc:
            return str(exc)

    try:
        got: dict | str = parse_scoring(body, sig)
    except RequestError as exc:
        got = str(exc)
    want = checked()
    if isinstance(want, str):
        assert got == want  # the same one error
    else:
        assert list(got) == names
        for name in names:
            assert got[name].dtype == want[name].dtype and np.array_equal(got[name], want[name], equal_nan=True)
    plain = all(type(v) in (int, float) and abs(v) < 2**53 for r in rows for v in r)
    assert (numeric_rows(rows) is not None) == plain
    if plain:
        block = numeric_rows(rows)
        fits = all(abs(r[j]) <= np.finfo(np.float32).max for r in rows for j in (1, 2))
        cache: dict = {}
        assert all(block_column(block, j, s, cache) is not None for j, s in enumerate(sig.inputs)) == fits
        assert all(block_column(block, 0, sig.inputs[0], cache).flags.c_contiguous for _ in range(2))
