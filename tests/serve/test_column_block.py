"""A request of plain numbers parses to a `ColumnBlock` (its columns are the rows of one array):
the same payload, column for column, as the column-by-column parse; and the code that reads it
whole (the expectations' range check, batching, the probing detector) answers as it does for
the same columns one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustforge.serve import _protocol
from trustforge.serve._codec import CodecError, pack, unpack
from trustforge.serve._expect import _plainly_fine
from trustforge.serve._protocol import parse_scoring
from trustforge.serve._quota import _joined, feature_rows
from trustforge.serve._signature import ColumnBlock, RequestError, Signature, concat_payloads


def _signature(*inputs: tuple) -> Signature:
    entries = [{"name": n, "datatype": t, "shape": [-1], **({"optional": True} if rest else {})} for n, t, *rest in inputs]
    return Signature.from_manifest({"signature": {"inputs": entries, "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}]}})


def _split(columns: list, data: list) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()


def _parse_column_by_column(body: bytes, signature: Signature, monkeypatch) -> object:
    with monkeypatch.context() as m:
        m.setattr(_protocol, "block_payload", lambda *args: None)
        try:
            return parse_scoring(body, signature)
        except RequestError as exc:
            return str(exc)


FP32 = _signature(("a", "FP32"), ("b", "FP32"), ("c", "FP32"))
FP64 = _signature(("a", "FP64"), ("b", "FP64"), ("c", "FP64"))
FP16 = _signature(("a", "FP16"), ("b", "FP16"))
OPTIONAL = _signature(("a", "FP32"), ("b", "FP32"), ("c", "FP32", "optional"))
MIXED = _signature(("a", "FP32"), ("b", "FP64"))
INTS = _signature(("a", "FP32"), ("n", "INT64"))

CASES = [
    (FP32, ["a", "b", "c"], [[1.5, -2, 3e5]]),
    (FP32, ["a", "b", "c"], [[1.5, 2, 3], [4, 5, 6.25], [0, 0, 0]]),
    (FP32, ["c", "a", "b"], [[1.5, 2, 3]]),  # another order
    (FP32, ["a", "x", "b", "c"], [[1, 99, 2, 3]]),  # a column the model does not take
    (FP32, ["a", "b"], [[1, 2]]),  # a column missing: 400 naming it
    (FP32, ["a", "b", "a"], [[1, 2, 3]]),  # names repeat: 400
    (FP32, ["a", "b", "c"], [[1, 2, 1e39]]),  # beyond FP32: 400
    (FP32, ["a", "b", "c"], [[1, 2, True]]),  # a boolean: 400
    (FP32, ["a", "b", "c"], [[1, 2, None]]),  # a null: 400 (no imputation declared)
    (FP32, ["a", "b", "c"], [[2**60, 2, 3]]),
    (FP64, ["a", "b", "c"], [[0.1, 0.2, 0.3]]),
    (FP16, ["a", "b"], [[1.5, 70000]]),  # beyond FP16: 400
    (FP16, ["a", "b"], [[1.5, 600]]),
    (OPTIONAL, ["a", "b"], [[1, 2]]),  # the optional column absent
    (OPTIONAL, ["b", "a", "c"], [[1, 2, 3]]),
    (MIXED, ["a", "b"], [[1, 2]]),  # two float types: column by column
    (INTS, ["a", "n"], [[1, 2]]),  # an integer input: column by column
]


@pytest.mark.parametrize("signature, columns, data", CASES)
def test_a_block_is_the_payload_column_by_column(signature, columns, data, monkeypatch):
    body = _split(columns, data)
    want = _parse_column_by_column(body, signature, monkeypatch)
    try:
        got = parse_scoring(body, signature)
    except RequestError as exc:
        got = str(exc)
    if isinstance(want, str):
        assert got == want
        return
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        assert np.array_equal(got[name], want[name], equal_nan=True)
    plain = all(type(v) in (int, float) for row in data for v in row)
    if plain and signature is not MIXED and signature is not INTS:
        assert type(got) is ColumnBlock and got.block is not None
        assert all(np.shares_memory(got.block, v) for v in got.values())


def test_a_changed_block_is_an_ordinary_payload():
    base = parse_scoring(_split(["a", "b", "c"], [[1, 2, 3]]), FP32)
    for change in (
        lambda p: p.__setitem__("a", np.array([9.0], np.float32)),
        lambda p: p.pop("c"),
        lambda p: p.update(d=np.array([1.0])),
        lambda p: p.setdefault("d", np.array([1.0])),
        lambda p: p.__delitem__("b"),
        lambda p: p.__ior__({"d": np.array([1.0])}),
        lambda p: p.popitem(),
        lambda p: p.clear(),
    ):
        payload = ColumnBlock(base.names, base.block.copy())
        change(payload)
        assert payload.block is None


_QUICK = (("a", "c"), np.array([[0.0], [-1.0]]), np.array([[10.0], [1.0]]))  # a in [0, 10], c in [-1, 1]


@pytest.mark.parametrize(
    "rows",
    [[[1, 5, 0.5]], [[11, 5, 0.5]], [[1, 5, -1.5]], [[0, 5, -1], [10, 5, 1]], [[np.nan, 5, 0]], [[1, 5, np.inf]]],
)
def test_the_range_check_reads_a_block_as_its_columns(rows):
    block = np.array(rows, dtype=np.float32).T.copy()  # (columns, rows)
    payload = ColumnBlock(("a", "b", "c"), block)
    assert _plainly_fine(_QUICK, payload) == _plainly_fine(_QUICK, dict(payload))
    assert _plainly_fine((("a", "z"), _QUICK[1], _QUICK[2]), payload) is False  # a rule's column absent


def test_blocks_join_as_their_columns():
    parts = [parse_scoring(_split(["b", "a", "c"], [[i, i + 0.5, -i]] * (i + 1)), FP32) for i in range(3)]
    joined = concat_payloads(parts)
    plain = concat_payloads([dict(p) for p in parts])
    assert type(joined) is ColumnBlock and list(joined) == list(plain)
    assert all(np.array_equal(joined[k], plain[k]) and joined[k].dtype == plain[k].dtype for k in plain)
    (detector_joined,) = _joined(parts)
    assert np.array_equal(feature_rows(detector_joined), feature_rows(_joined([dict(p) for p in parts])[0]))
    assert np.array_equal(feature_rows(parts[2], 2), feature_rows(dict(parts[2]), 2))
    other = parse_scoring(_split(["a", "b"], [[1, 2]]), OPTIONAL)  # other columns: not one block
    assert len(_joined([parts[0], other])) == 2


def test_a_block_crosses_to_a_worker_as_one_array_and_arrives_a_block():
    payload = parse_scoring(_split(["c", "a", "b"], [[1, 2, 3], [4, 5, 6]]), FP32)
    meta, got = unpack(pack({"type": "batch"}, payload))
    assert meta == {"type": "batch"} and type(got) is ColumnBlock and list(got) == list(payload)
    assert all(np.array_equal(got[k], payload[k]) and got[k].dtype == payload[k].dtype for k in payload)
    got["a"][0] = 7.0  # a writable copy
    plain = unpack(pack({}, dict(payload)))[1]  # the same columns one by one
    assert type(plain) is dict and all(np.array_equal(plain[k], payload[k]) for k in payload)
    message = pack({}, payload)
    header_len = int.from_bytes(message[4:8], "big")
    header = json.loads(message[8 : 8 + header_len])
    for bad in (
        {**header["block"], "columns": ["a", "a", "b"]},
        {**header["block"], "columns": ["a", "b"]},
        {**header["block"], "dtype": "|O"},
        {**header["block"], "nbytes": 4},
        {**header["block"], "shape": [3]},
    ):
        text = json.dumps({**header, "block": bad}).encode()
        with pytest.raises(CodecError):
            unpack(message[:4] + len(text).to_bytes(4, "big") + text + message[8 + header_len :])
    with pytest.raises(CodecError):
        unpack(message + b"x")


def _fresh() -> ColumnBlock:
    return ColumnBlock(("a", "b", "c"), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))


def _same_columns(got: object) -> bool:
    want = {"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}
    return type(got) is dict and list(got) == list(want) and all(np.asarray(got[k]).tolist() == v for k, v in want.items())


def _call(**columns: object) -> dict:
    return columns


@pytest.mark.parametrize(
    "read",
    [
        dict,
        lambda p: {**p},
        lambda p: _call(**p),
        lambda p: {k: v for k, v in p.items()},
        lambda p: dict(zip(p.keys(), p.values())),
        lambda p: {k: p[k] for k in p},
        lambda p: {k: p.get(k) for k in ("a", "b", "c")},
        lambda p: p.copy(),
        lambda p: p | {},
        lambda p: {} | p,
        lambda p: {**__import__("pickle").loads(__import__("pickle").dumps(p))},
        lambda p: dict(__import__("copy").deepcopy(p)),
        lambda p: {k: v.to_numpy() for k, v in __import__("pandas").DataFrame(p).items()},
    ],
)
def test_a_block_reads_as_its_columns_whichever_way_it_is_read(read):
    """Its columns are made when first read (not on the request path); every way of reading a
    dict, the ones in C included, sees all of them."""
    assert _same_columns(read(_fresh()))


def test_a_block_on_the_request_path_never_makes_its_columns():
    """Parsing, the range check, the queue's row count and key, joining and the probing
    detector's row count read the block, not a view per column (which cost 7 us per request)."""
    from trustforge.serve._quota import _rows
    from trustforge.serve._signature import payload_key, payload_rows

    parts = [parse_scoring(_split(["a", "b", "c"], [[1, 2, 0.5], [3, 4, 0.25]]), FP32) for _ in range(2)]
    payload = parts[0]
    assert _plainly_fine(_QUICK, payload) and payload_rows(payload) == 2 and _rows(payload) == 2
    assert payload_key(payload) == ("a", "b", "c") and len(payload) == 3 and bool(payload)
    joined = concat_payloads(parts)
    assert payload_rows(joined) == 4 and feature_rows(joined).shape == (4, 3)
    unpack(pack({}, joined))
    assert not any(p._made for p in (*parts, joined))
    assert "a" in payload and payload._made  # any read of an entry makes them
    other = _fresh()
    other["d"] = np.array([0.0, 0.0])  # a change keeps the columns it had
    assert other.block is None and list(other) == ["a", "b", "c", "d"] and other["a"].tolist() == [1.0, 2.0]
