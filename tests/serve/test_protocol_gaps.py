"""The protocol gaps of issue 13, one test each: missing and non-finite values, Triton's config
dims, the `[N, F]` matrix input, the classification extension, CSV and Parquet bodies, and
`--public-metadata`."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from _serving import register
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from tritonclient.utils import InferenceServerException
from typer.testing import CliRunner

from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.serve._protocol import parse_scoring
from trustforge.serve._signature import RequestError, Signature


def _serve(registry, alias: str, **options) -> ModelService:
    options.setdefault("auth", "none")
    return ModelService(alias, ServeConfig(workers=0, **options), registry=registry).start()


@pytest.fixture
def iris(packages, registry, tmp_path):
    """(test client, service, the model, iris rows)."""
    uri = register(registry, packages["iris"], tmp_path)
    svc = _serve(registry, "models:/iris-serve@champion", max_request_bytes=64 * 1024)
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    with TestClient(create_app(svc)) as client:
        yield client, svc, registry.load_model(uri), frame
    svc.close()


@pytest.fixture
def digits(packages, registry, tmp_path):
    register(registry, packages["digits"], tmp_path)
    svc = _serve(registry, "models:/digits-serve@champion")
    with TestClient(create_app(svc)) as client:
        yield client
    svc.close()


def _v2_columns(frame: pd.DataFrame, datatype: str = "FP64") -> dict:
    return {"inputs": [{"name": c, "shape": [len(frame)], "datatype": datatype, "data": frame[c].tolist()} for c in frame.columns]}


# ---------------------------------------------------------------------------- (1) missing and non-finite values


def test_a_null_or_non_finite_pixel_is_refused_naming_input_and_position_on_every_path(digits):
    x = np.zeros((2, 1, 8, 8), dtype=np.float32)
    nested = x.tolist()
    nested[1][0][3][4] = None  # was: 200 with prediction "0"
    flat = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 1, 8, 8], "data": x.reshape(-1).tolist()}]}
    flat["inputs"][0]["data"][64 + 3 * 8 + 4] = None
    for path, body, key in [
        ("/v2/models/digits-serve/infer", flat, "error"),
        ("/v2/models/digits-serve/infer", {"inputs": [{**flat["inputs"][0], "data": nested}]}, "error"),
        ("/invocations", {"inputs": nested}, "message"),
        ("/invocations", {"instances": [{"image": im} for im in nested]}, "message"),
    ]:
        r = digits.post(path, json=body)
        assert r.status_code == 400, (path, r.text[:300])
        assert "'image'" in r.json()[key] and "null at element [1, 0, 3, 4]" in r.json()[key], r.json()[key]
        assert "tensor takes no missing values" in r.json()[key]
    # NaN and infinity in JSON (Python's json writes them), and in binary tensor data.
    raw = json.dumps(
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 10 + [float("nan")] + [0.0] * 53}]}
    )
    r = digits.post("/v2/models/digits-serve/infer", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nan at element [0, 0, 1, 2]" in r.json()["error"], r.text
    x[0, 0, 2, 2] = np.inf
    head = json.dumps(
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 1, 8, 8], "parameters": {"binary_data_size": x.nbytes}}]}
    )
    r = digits.post(
        "/v2/models/digits-serve/infer",
        content=head.encode() + x.tobytes(),
        headers={"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"},
    )
    assert r.status_code == 400 and "'image'" in r.json()["error"] and "inf at element [0, 0, 2, 2]" in r.json()["error"], r.text


def test_table_nulls_are_imputed_and_counted_and_nan_is_refused_with_its_row(iris):
    client, _, model, frame = iris
    rows = frame.head(3).copy()
    body = _v2_columns(rows)
    body["inputs"][1]["data"][1] = None
    body["inputs"][2]["data"][2] = None
    r = client.post("/v2/models/iris-serve/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["trustforge-imputed-values"] == "2"
    assert r.json()["parameters"]["imputed_values"] == {"sepal width (cm)": 1, "petal length (cm)": 1}
    holes = rows.copy()
    holes.iloc[1, 1] = np.nan
    holes.iloc[2, 2] = np.nan
    expected = model.predict(holes)  # Model.predict imputes the same way
    assert r.json()["outputs"][0]["data"] == expected["prediction"].tolist()
    clean = client.post("/v2/models/iris-serve/infer", json=_v2_columns(rows))
    assert "trustforge-imputed-values" not in clean.headers and "imputed_values" not in (clean.json().get("parameters") or {})

    records = rows.to_dict(orient="records")
    records[0]["petal width (cm)"] = None
    r = client.post("/invocations", json={"dataframe_records": records})
    assert r.status_code == 200 and r.headers["trustforge-imputed-values"] == "1"
    text = client.get("/metrics").text  # and counted per column for the operator
    for column in ("sepal width (cm)", "petal length (cm)", "petal width (cm)"):
        assert f'trustforge_imputed_values_total{{column="{column}",model="iris-serve"}} 1.0' in text, column
    assert 'column="sepal length (cm)"' not in text

    # NaN is not a missing value: refused with the column and the row, in JSON and binary data.
    raw = json.dumps(_v2_columns(rows)).replace("5.1", "NaN", 1)
    r = client.post("/v2/models/iris-serve/infer", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "'sepal length (cm)'" in r.json()["error"] and "nan at row 1" in r.json()["error"]
    values = rows["petal width (cm)"].to_numpy(np.float64).copy()
    values[1] = np.nan
    head = _v2_columns(rows.drop(columns="petal width (cm)"))
    head["inputs"].append({"name": "petal width (cm)", "shape": [3], "datatype": "FP64", "parameters": {"binary_data_size": 24}})
    text = json.dumps(head).encode()
    r = client.post(
        "/v2/models/iris-serve/infer", content=text + values.tobytes(), headers={"inference-header-content-length": str(len(text))}
    )
    assert r.status_code == 400 and "'petal width (cm)'" in r.json()["error"] and "nan at row 2" in r.json()["error"], r.text


def test_a_column_whose_policy_refuses_missing_values_refuses_null_before_the_model():
    manifest = {
        "signature": {
            "inputs": [
                {"name": "age", "kind": "numeric", "datatype": "FP64", "shape": [-1]},
                {"name": "color", "kind": "categorical", "datatype": "BYTES", "shape": [-1]},
            ]
        },
        "preprocessing": {
            "features": {
                "age": {"type": "numeric", "state": {"on_missing": "error"}},
                "color": {"type": "categorical", "state": {"on_missing": "fill"}},
            }
        },
    }
    sig = Signature.from_manifest(manifest)
    assert [s.imputes for s in sig.inputs] == [False, True]
    ok = parse_scoring(json.dumps({"dataframe_records": [{"age": 1.0, "color": None}]}).encode(), sig)
    assert ok["color"].tolist() == [None]
    with pytest.raises(RequestError, match=r"field 'age' holds null at row 2; this column's missing-value policy is error"):
        parse_scoring(json.dumps({"dataframe_records": [{"age": 1.0, "color": "a"}, {"age": None, "color": "b"}]}).encode(), sig)


def test_every_body_format_counts_the_same_imputed_values():
    from trustforge.serve._formats import parse_csv
    from trustforge.serve._protocol import parse_infer, parse_invocation

    sig = Signature.from_manifest({"signature": {"inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in ("a", "b")]}})
    rows = [{"a": 1.0, "b": None}, {"a": None, "b": None}, {"a": 2.0, "b": 3.0}]
    want = {"a": 1, "b": 2}
    bodies = [
        {"dataframe_split": {"columns": ["a", "b"], "data": [[r["a"], r["b"]] for r in rows]}},
        {"dataframe_records": rows},
        {"instances": rows},
        {"inputs": {"a": [r["a"] for r in rows], "b": [r["b"] for r in rows]}},
        {"inputs": [[r["a"], r["b"]] for r in rows]},  # the [N, F] matrix form
    ]
    for body in bodies:
        got = parse_invocation(json.dumps(body).encode(), "application/json", sig, 1 << 20)
        assert got.imputed == want, body
        assert np.isnan(got.payload["b"][:2]).all() and got.payload["b"][2] == 3.0
    imputed: dict = {}
    parse_csv(b"a,b\n1.0,\n,\n2.0,3.0\n", sig, imputed)
    assert imputed == want
    v2 = {"inputs": [{"name": "input", "shape": [3, 2], "datatype": "FP64", "data": [[r["a"], r["b"]] for r in rows]}]}
    assert parse_infer(json.dumps(v2).encode(), None, sig).imputed == want
    assert parse_invocation(b'{"inputs": [[1.0, 2.0]]}', None, sig, 1 << 20).imputed == {}


# ---------------------------------------------------------------------------- (2) Triton's model configuration


def test_config_dims_are_what_triton_expects(iris, digits):
    client = iris[0]
    config = client.get("/v2/models/iris-serve/config").json()
    columns = [c for c in config["input"] if c["name"] != "input"]
    assert len(columns) == 4
    for entry in columns:  # a column: one value per row, dims [1] reshaped to [] (Triton's rule for [batch] inputs)
        assert entry["dims"] == [1] and entry["reshape"] == {"shape": []} and entry["data_type"] == "TYPE_FP64"
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["prediction"]["dims"] == [1] and outputs["prediction"]["data_type"] == "TYPE_STRING"
    assert outputs["probabilities"]["dims"] == [3] and "reshape" not in outputs["probabilities"]
    assert all(entry["dims"] and all(d == -1 or d > 0 for d in entry["dims"]) for entry in config["input"] + config["output"])
    image = digits.get("/v2/models/digits-serve/config").json()["input"]
    assert image == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}]
    version = iris[1].current.version  # the versioned route, as the README lists it
    assert client.get(f"/v2/models/iris-serve/versions/{version}/config").json() == config
    assert client.get("/v2/models/iris-serve/versions/999/config").status_code == 404


# ---------------------------------------------------------------------------- (3) one [N, F] tensor for a table


def test_an_all_numeric_table_takes_one_n_by_f_tensor_beside_its_columns(packages, registry, tmp_path, live):
    uri = register(registry, packages["cancer"], tmp_path)
    model = registry.load_model(uri)
    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(12)
    expected = model.predict(frame)["prediction"].tolist()
    svc = _serve(registry, "models:/cancer-serve@champion")
    try:
        with live(create_app(svc)) as server:
            client = triton.InferenceServerClient(server.url.removeprefix("http://"))
            meta = client.get_model_metadata("cancer-serve")["inputs"]
            assert meta[-1] == {"name": "input", "datatype": "FP64", "shape": [-1, 30]}
            assert [m["name"] for m in meta[:-1]] == list(frame.columns)
            config = client.get_model_config("cancer-serve")
            assert {"name": "input", "data_type": "TYPE_FP64", "dims": [30], "optional": True} in config["input"]
            for binary in (True, False):
                inp = triton.InferInput("input", [12, 30], "FP32")
                inp.set_data_from_numpy(frame.to_numpy(np.float32), binary_data=binary)
                got = client.infer("cancer-serve", [inp]).as_numpy("prediction")
                assert [v.decode() for v in got] == model.predict(frame.astype(np.float32).astype(np.float64))["prediction"].tolist()
            inp = triton.InferInput("input", [12, 30], "FP64")
            inp.set_data_from_numpy(frame.to_numpy(np.float64))
            assert [v.decode() for v in client.infer("cancer-serve", [inp]).as_numpy("prediction")] == expected
            r = httpx.post(f"{server.url}/invocations", json={"instances": frame.to_numpy().tolist()})
            assert [p["prediction"] for p in r.json()["predictions"]] == expected
            r = httpx.post(f"{server.url}/invocations", json={"inputs": frame.to_numpy().tolist()})
            assert [p["prediction"] for p in r.json()["predictions"]] == expected

            wrong = triton.InferInput("input", [12, 29], "FP32")
            wrong.set_data_from_numpy(frame.to_numpy(np.float32)[:, :29])
            with pytest.raises(InferenceServerException, match=r"'input'.*\[-1, 30\]"):
                client.infer("cancer-serve", [wrong])
            both = _v2_columns(frame.head(1))
            both["inputs"].append({"name": "input", "shape": [1, 30], "datatype": "FP64", "data": frame.head(1).to_numpy().tolist()})
            r = httpx.post(f"{server.url}/v2/models/cancer-serve/infer", json=both)
            assert r.status_code == 400 and "not both" in r.json()["error"]
    finally:
        svc.close()


def test_tables_with_text_columns_offer_no_matrix(packages, registry, tmp_path):
    register(registry, packages["mixed"], tmp_path)
    svc = _serve(registry, "models:/mixed-serve@champion")
    try:
        with TestClient(create_app(svc)) as client:
            assert [i["name"] for i in client.get("/v2/models/mixed-serve").json()["inputs"]] == ["age", "color", "smoker"]
            r = client.post(
                "/v2/models/mixed-serve/infer", json={"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
            )
            assert r.status_code == 400 and "input 'age' is missing" in r.json()["error"]
    finally:
        svc.close()


# ---------------------------------------------------------------------------- (4) classification extension


def test_triton_classification_returns_top_k_and_other_output_parameters_get_400(iris, live):
    client_, svc, model, frame = iris
    rows = frame.sample(6, random_state=1)
    proba = model.predict_proba(rows)
    with live(create_app(svc)) as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert "classification" in client.get_server_metadata()["extensions"]
        inputs = []
        for col in rows.columns:
            inp = triton.InferInput(col, [len(rows)], "FP64")
            inp.set_data_from_numpy(rows[col].to_numpy(np.float64))
            inputs.append(inp)
        for binary in (True, False):
            out = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=2)
            got = client.infer("iris-serve", inputs, outputs=[out]).as_numpy("probabilities")
            assert got.shape == (6, 2)
            for r in range(6):
                top = np.argsort(-proba[r], kind="stable")[:2]
                want = [f"{proba[r, j]:f}:{j}:{model.classes[j]}" for j in top]
                assert [v.decode() if isinstance(v, bytes) else v for v in got[r]] == want
        every = client.infer("iris-serve", inputs, outputs=[triton.InferRequestedOutput("probabilities", class_count=3)])
        assert every.as_numpy("probabilities").shape == (6, 3)
        with pytest.raises(InferenceServerException, match=r"classification must be at most the output's 3 classes; got 10"):
            client.infer("iris-serve", inputs, outputs=[triton.InferRequestedOutput("probabilities", class_count=10)])

    body = _v2_columns(rows)
    for params, message in [
        ({"classification": 2}, None),
        ({"classification": 0}, "classification must be a positive integer"),
        ({"classification": "2"}, "classification must be a positive integer"),
        ({"shared_memory_region": "shm0"}, "parameters.shared_memory_region is not supported here (the shared memory extension)"),
        ({"binary_data": False, "top_k": 3}, "parameters.top_k is not a known parameter; expected one of binary_data, classification"),
    ]:
        r = client_.post("/v2/models/iris-serve/infer", json={**body, "outputs": [{"name": "probabilities", "parameters": params}]})
        if message is None:
            assert r.status_code == 200 and r.json()["outputs"][0]["datatype"] == "BYTES"
        else:
            assert r.status_code == 400 and message in r.json()["error"], r.text
    r = client_.post("/v2/models/iris-serve/infer", json={**body, "outputs": [{"name": "prediction", "parameters": {"classification": 1}}]})
    assert r.status_code == 400 and "numeric output" in r.json()["error"]
    body["inputs"][0]["parameters"] = {"shared_memory_region": "x"}
    r = client_.post("/v2/models/iris-serve/infer", json=body)
    assert r.status_code == 400 and "parameters.shared_memory_region" in r.json()["error"]


# ---------------------------------------------------------------------------- (5) CSV and Parquet on /invocations


def _parquet(frame: pd.DataFrame, **options) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, **options)
    return buf.getvalue()


def test_invocations_reads_csv_and_parquet_like_json(iris):
    client, _, model, frame = iris
    rows = frame.sample(10, random_state=2).reset_index(drop=True)
    expected = client.post("/invocations", json={"dataframe_records": rows.to_dict(orient="records")}).json()["predictions"]
    assert [p["prediction"] for p in expected] == model.predict(rows)["prediction"].tolist()
    bodies = [
        (rows.to_csv(), "text/csv", True),  # pandas' default: the index as an unnamed first column (ignored)
        (rows.to_csv(index=False), "text/csv; charset=utf-8", True),
        (rows[rows.columns[::-1]].assign(note="x").to_csv(index=False), "text/csv", True),  # any order, extra columns ignored
        (_parquet(rows), "application/x-parquet", True),
        (_parquet(rows.astype(np.float32)), "application/vnd.apache.parquet", False),  # float32 values: close, not equal
        (_parquet(rows, compression="zstd"), "application/parquet", True),
    ]
    for content, kind, exact in bodies:
        r = client.post("/invocations", content=content, headers={"content-type": kind})
        assert r.status_code == 200, (kind, r.text[:300])
        got = r.json()["predictions"]
        assert [g["prediction"] for g in got] == [e["prediction"] for e in expected], kind
        for g, e in zip(got, expected):
            assert g == pytest.approx(e, abs=1e-12 if exact else 1e-5), kind
    holes = rows.copy()
    holes.iloc[3, 2] = np.nan  # an empty field / a Parquet null: missing, imputed and counted
    for content, kind in [(holes.to_csv(index=False), "text/csv"), (_parquet(holes), "application/x-parquet")]:
        r = client.post("/invocations", content=content, headers={"content-type": kind})
        assert r.status_code == 200 and r.headers["trustforge-imputed-values"] == "1", (kind, r.text[:300])


def test_bad_csv_and_parquet_bodies_get_a_clear_400_and_other_types_415(iris, digits):
    client, _, _, frame = iris
    rows = frame.head(3)
    csv = rows.to_csv(index=False)
    lines = csv.splitlines()
    for content, kind, message in [
        ("", "text/csv", "text/csv body is empty"),
        (lines[0] + "\n", "text/csv", "header but no rows"),
        ("\n".join([lines[0], lines[1], "1.0,2.0,3.0"]), "text/csv", "text/csv line 3 has 3 fields; the header has 4"),
        (csv.replace("sepal width (cm)", "sepal length (cm)"), "text/csv", "repeats column 'sepal length (cm)'"),
        (rows.drop(columns="petal width (cm)").to_csv(index=False), "text/csv", "header lacks 'petal width (cm)'"),
        (csv.replace(lines[2].split(",")[1], "wide", 1), "text/csv", "column 'sepal width (cm)' must hold numbers; got 'wide' at row 2"),
        (
            csv.replace(lines[2].split(",")[1], "1_000", 1),
            "text/csv",
            "must hold numbers; got '1_000' at row 2",
        ),  # Python's syntax, not CSV's
        (csv.replace(lines[1].split(",")[0], "inf", 1), "text/csv", "column 'sepal length (cm)' holds inf at row 1"),
        (b"\xff\xfe" + csv.encode(), "text/csv", "not UTF-8"),
        (b"PAR1 this is not parquet", "application/x-parquet", "not a readable Parquet file"),
        (_parquet(rows.drop(columns="sepal length (cm)")), "application/x-parquet", "lacks column 'sepal length (cm)'"),
        (
            _parquet(rows.assign(**{"sepal length (cm)": ["a", "b", "c"]})),
            "application/x-parquet",
            "must hold numbers; got text 'a' at row 1",
        ),
    ]:
        r = client.post("/invocations", content=content, headers={"content-type": kind})
        assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST", (message, r.text[:300])
        assert message in r.json()["message"], r.json()["message"]
    for kind in ("application/xml", "text/csv; charset=latin-1", "text/csv; header=absent"):
        r = client.post("/invocations", content=csv, headers={"content-type": kind})
        assert r.status_code == 415 and r.json()["error_code"] == "BAD_REQUEST", (kind, r.text[:300])
    for method in ("PUT", "DELETE", "PATCH"):  # a client's mistake, never INTERNAL_ERROR (a probe saw it)
        r = client.request(method, "/invocations", content=csv, headers={"content-type": "text/csv"})
        assert r.status_code == 405 and r.json()["error_code"] == "BAD_REQUEST", (method, r.text[:300])
    # Size limits hold: the body (413 before parsing) and what a compressed Parquet body decodes to.
    big = pd.DataFrame({c: np.zeros(5000) for c in frame.columns})
    assert client.post("/invocations", content=big.to_csv(index=False), headers={"content-type": "text/csv"}).status_code == 413
    bomb = _parquet(big, compression="zstd")
    assert len(bomb) < 64 * 1024
    r = client.post("/invocations", content=bomb, headers={"content-type": "application/x-parquet"})
    assert r.status_code == 400 and "at most 65536" in r.json()["message"], r.text
    r = digits.post("/invocations", content="image\n1\n", headers={"content-type": "text/csv"})
    assert r.status_code == 400 and "send it as JSON" in r.json()["message"]


_TABLE = {
    "signature": {
        "inputs": [
            {"name": "a", "datatype": "FP64", "shape": [-1]},
            {"name": "b", "datatype": "BYTES", "shape": [-1]},
            {"name": "c", "datatype": "INT64", "shape": [-1]},
        ]
    }
}


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=64),
        st.lists(
            st.lists(st.sampled_from(["a", "b", "c", "", "1", "-2.5", "nan", "x,y", '"q"', "1e400", " 7 "]), max_size=4), max_size=5
        ).map(lambda rows: "\n".join(",".join(r) for r in rows).encode()),
    )
)
def test_csv_and_parquet_readers_answer_any_body_with_columns_or_a_request_error(body):
    from trustforge.serve._formats import parse_csv, parse_parquet

    sig = Signature.from_manifest(_TABLE)
    for parse in (lambda b: parse_csv(b, sig), lambda b: parse_parquet(b, sig, 1 << 20)):
        try:
            cols = parse(body)
        except RequestError as exc:
            assert str(exc)
            continue
        assert set(cols) == {"a", "b", "c"} and len({len(v) for v in cols.values()}) == 1
        assert not np.isinf(cols["a"]).any() and all(v is None or isinstance(v, str) for v in cols["b"])


def test_parquet_columns_of_kinds_a_request_cannot_carry_are_refused_by_name():
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trustforge.serve._formats import parse_parquet

    sig = Signature.from_manifest(_TABLE)

    def file(**columns) -> bytes:
        buf = io.BytesIO()
        pq.write_table(pa.table({"a": [1.5, None], "b": ["x", None], "c": [1, 2], **columns}), buf)
        return buf.getvalue()

    imputed: dict = {}
    cols = parse_parquet(file(), sig, 1 << 20, imputed)
    assert cols["b"].tolist() == ["x", None] and np.isnan(cols["a"][1]) and imputed == {"a": 1, "b": 1}
    assert parse_parquet(file(b=pa.array([pd.Timestamp("2024-01-02 03:04:05")] * 2)), sig, 1 << 20)["b"][0] == "2024-01-02T03:04:05"
    for column, message in [
        ({"a": pa.array([[1.0], [2.0]])}, "Parquet column 'a' is of Parquet type list"),
        ({"b": pa.array([b"x", b"y"])}, "Parquet column 'b' is of Parquet type binary"),
        ({"c": pa.array([1.5, 2.0])}, "Parquet column 'c' must hold integers"),
    ]:
        with pytest.raises(RequestError, match=message):
            parse_parquet(file(**column), sig, 1 << 20)


# ---------------------------------------------------------------------------- (6) --public-metadata


PUBLIC = [
    "/v2",
    "/v2/models/iris-serve",
    "/v2/models/iris-serve/versions/1",
    "/v2/models/iris-serve/ready",
    "/v2/models/iris-serve/config",
    "/v2/models/iris-serve/versions/1/config",
    "/health",
    "/version",
]


@pytest.mark.parametrize("public", [False, True], ids=["default", "public-metadata"])
def test_public_metadata_opens_metadata_and_readiness_only(packages, registry, tmp_path, public):
    register(registry, packages["iris"], tmp_path)
    svc = _serve(registry, "models:/iris-serve@champion", auth="token", public_metadata=public)
    registry.access.add_user("app", "viewer")
    token = registry.access.issue_token("app")
    try:
        with TestClient(create_app(svc)) as client:
            for path in PUBLIC:
                r = client.get(path)
                assert r.status_code == (200 if public else 401), (path, r.text[:300])
                assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
            body = _v2_columns(load_iris(as_frame=True).frame.drop(columns="target").head(1))
            for method, path in [("GET", "/metrics"), ("GET", "/v2/models/iris-serve/drift"), ("POST", "/v2/models/iris-serve/infer")]:
                assert client.request(method, path, json=body if method == "POST" else None).status_code == 401, path
            assert client.post("/invocations", json={"inputs": body["inputs"][0]["data"]}).status_code == 401
            schema = client.get("/openapi.json").json()
            secured = bool(schema["paths"]["/v2/models/{model_name}/ready"]["get"].get("security"))
            assert secured is not public
    finally:
        svc.close()


def test_serve_takes_public_metadata_on_the_command_line():
    from trustforge.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--public-metadata" in result.output
    assert ServeConfig().public_metadata is False


def test_a_digits_row_is_still_served(digits):
    images = (load_digits().images[:2] / 16.0).astype(np.float32)[:, None]
    r = digits.post("/invocations", json={"inputs": images.tolist()})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2


def test_a_missing_renamed_personal_header_says_how_to_name_it():
    """`data.protect` renames a header holding personal data (`<column 2: EMAIL>`); a request that
    sends the original header is told, whatever its format, that the column goes by that name."""
    from trustforge.serve._protocol import parse_invocation

    sig = Signature.from_manifest(
        {"signature": {"inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in ("age", "<column 2: EMAIL>")]}}
    )
    body = {"dataframe_split": {"columns": ["age", "jane.doe@example.com"], "data": [[1.0, 2.0]]}}
    with pytest.raises(RequestError, match=r"lacks '<column 2: EMAIL>'.*sent under the name `trustforge scan` shows for it"):
        parse_invocation(json.dumps(body).encode(), "application/json", sig, 1 << 20)
    plain = Signature.from_manifest({"signature": {"inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in ("a", "b")]}})
    assert "personal" not in plain.describe()
