"""Both protocols against a live loopback server: `tritonclient.http` unchanged, and MLflow's four shapes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from _serving import mixed_frame, register
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from tritonclient.utils import InferenceServerException

from trustforge.serve import ModelService, ServeConfig, create_app


def _serve(registry, uri_or_alias: str, **options):
    config = ServeConfig(workers=0, auth="none", **options)
    return ModelService(uri_or_alias, config, registry=registry).start()


@pytest.fixture
def iris(packages, registry, tmp_path, live):
    """(server, service, the model as the registry loads it, iris rows as a DataFrame)."""
    uri = register(registry, packages["iris"], tmp_path)
    svc = _serve(registry, "models:/iris-serve@champion")
    model = registry.load_model(uri)
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    with live(create_app(svc)) as server:
        yield server, svc, model, frame, data.target.to_numpy()
    svc.close()


def _triton_inputs(frame: pd.DataFrame, binary: bool) -> list:
    inputs = []
    for col in frame.columns:
        inp = triton.InferInput(col, [len(frame)], "FP64")
        inp.set_data_from_numpy(frame[col].to_numpy(np.float64), binary_data=binary)
        inputs.append(inp)
    return inputs


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_reads_metadata_and_infers_like_model_predict(iris, binary):
    server, svc, model, frame, target = iris
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris-serve") and client.is_model_ready("iris-serve", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("iris-serve")
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [(c, "FP64", [-1]) for c in frame.columns] + [
        ("input", "FP64", [-1, 4])  # the same columns as one [N, F] tensor
    ]
    assert {o["name"] for o in meta["outputs"]} == {"prediction", "probabilities"}
    assert client.get_model_config("iris-serve")["max_batch_size"] == svc.config.max_batch_size

    outputs = [
        triton.InferRequestedOutput("prediction", binary_data=binary),
        triton.InferRequestedOutput("probabilities", binary_data=binary),
    ]
    result = client.infer("iris-serve", _triton_inputs(frame, binary), outputs=outputs, request_id="r-7")
    assert result.get_response()["id"] == "r-7"
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("prediction")]
    proba = result.as_numpy("probabilities")

    expected = model.predict(frame)
    assert labels == expected["prediction"].tolist()
    np.testing.assert_allclose(proba, expected[[f"proba_{c}" for c in model.classes]].to_numpy(), rtol=0, atol=1e-12)
    accuracy = np.mean(np.array(labels) == np.array(model.classes, dtype=object)[target])
    assert accuracy > 0.85  # it is a model that learned, served faithfully

    # No outputs named: every output, as binary data (the client's default), on an explicit version.
    both = client.infer("iris-serve", _triton_inputs(frame.head(5), binary), model_version="1")
    assert [v.decode() for v in both.as_numpy("prediction")] == labels[:5]
    assert both.as_numpy("probabilities").shape == (5, 3)


def test_tritonclient_errors_name_the_field(iris):
    server, _, _, frame, _ = iris
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    with pytest.raises(InferenceServerException, match="petal width") as exc:
        client.infer("iris-serve", _triton_inputs(frame.drop(columns="petal width (cm)"), True))
    assert exc.value.status() == "400"
    with pytest.raises(InferenceServerException, match="not served here") as exc:
        client.infer("other-model", _triton_inputs(frame, True))
    assert exc.value.status() == "404"
    with pytest.raises(InferenceServerException, match="version '9'"):
        client.get_model_metadata("iris-serve", "9")


def test_invocations_takes_all_four_shapes_and_answers_like_model_predict(iris):
    server, _, model, frame, _ = iris
    rows = frame.sample(12, random_state=0).reset_index(drop=True)
    expected = json.loads(model.predict(rows).to_json(orient="records", double_precision=15))
    split = json.loads(rows.to_json(orient="split"))
    records = rows.to_dict(orient="records")
    bodies = {
        "dataframe_split": {"dataframe_split": {"columns": split["columns"], "data": split["data"], "index": split["index"]}},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: rows[c].tolist() for c in rows.columns}},
    }
    for shape, body in bodies.items():
        r = httpx.post(f"{server.url}/invocations", json=body)
        assert r.status_code == 200, (shape, r.text)
        got = r.json()["predictions"]
        assert [g["prediction"] for g in got] == [e["prediction"] for e in expected], shape
        for g, e in zip(got, expected):
            assert g == pytest.approx(e, abs=1e-12), shape


def test_invocations_refuses_what_mlflow_refuses(iris):
    server, _, _, frame, _ = iris
    row = frame.iloc[0].to_dict()
    url = f"{server.url}/invocations"
    both = httpx.post(url, json={"dataframe_records": [row], "inputs": {k: [v] for k, v in row.items()}})
    assert both.status_code == 400 and "exactly one of" in both.json()["message"]
    assert both.json()["error_code"] == "BAD_REQUEST"
    none = httpx.post(url, json={"data": [1, 2]})
    assert none.status_code == 400 and "exactly one of" in none.json()["message"]
    assert "Value error" not in both.json()["message"] + none.json()["message"]  # our words, not pydantic's label
    # a second format given empty is still a second format (it said "instances: List should have at least 1 item")
    empty = httpx.post(url, json={"inputs": {k: [v] for k, v in row.items()}, "instances": []})
    assert empty.status_code == 400 and "exactly one of" in empty.json()["message"], empty.json()
    scalar = httpx.post(url, json={"inputs": 5})  # it said "inputs.dict[str,any]: Input should be an object"
    assert scalar.status_code == 400 and scalar.json()["message"].startswith("inputs must be an object of columns"), scalar.json()
    csv = httpx.post(url, content=b"a,b\n1,2\n", headers={"content-type": "text/csv"})
    assert csv.status_code == 400 and "header lacks" in csv.json()["message"]
    xml = httpx.post(url, content=b"<rows/>", headers={"content-type": "application/xml"})
    assert xml.status_code == 415 and "text/csv" in xml.json()["message"]
    broken = httpx.post(url, content=b'{"dataframe_records": [', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "JSON" in broken.json()["message"]


def test_input_checking_names_the_field_ignores_extras_and_casts_only_safely(iris):
    server, _, model, frame, _ = iris
    url = f"{server.url}/invocations"
    row = frame.iloc[0].to_dict()

    missing = {k: v for k, v in row.items() if k != "sepal width (cm)"}
    r = httpx.post(url, json={"dataframe_records": [missing]})
    assert r.status_code == 400 and "'sepal width (cm)'" in r.json()["message"]

    extra = {**row, "patient_id": "A-17", "note": None}
    r = httpx.post(url, json={"dataframe_records": [extra]})
    assert r.status_code == 200
    assert r.json()["predictions"][0]["prediction"] == model.predict(frame.head(1))["prediction"][0]

    text = {**row, "petal length (cm)": "1.4"}
    r = httpx.post(url, json={"dataframe_records": [text]})
    assert r.status_code == 400 and "'petal length (cm)'" in r.json()["message"] and "row 1" in r.json()["message"]

    v2 = f"{server.url}/v2/models/iris-serve/infer"

    def tensor(name, datatype, data):
        return {"name": name, "shape": [len(data)], "datatype": datatype, "data": data}

    ints = {"inputs": [tensor(c, "INT32", [int(round(v))]) for c, v in row.items()]}
    assert httpx.post(v2, json=ints).status_code == 200  # INT32 → FP64 is a safe cast
    text_claim = {"inputs": [tensor(c, "BYTES", ["1.0"]) for c in row]}
    r = httpx.post(v2, json=text_claim)
    assert r.status_code == 400 and "cannot be cast" in r.json()["error"]
    lying = {"inputs": [tensor(c, "INT64", [1.5]) for c in row]}
    r = httpx.post(v2, json=lying)
    assert r.status_code == 400 and "integers" in r.json()["error"]
    ragged = {"inputs": [tensor(c, "FP64", [1.0, 2.0]) for c in row]}
    ragged["inputs"][0]["shape"] = [3]
    r = httpx.post(v2, json=ragged)
    assert r.status_code == 400 and "shape [3] needs 3" in r.json()["error"]
    unknown_output = {"inputs": [tensor(c, "FP64", [v]) for c, v in row.items()], "outputs": [{"name": "logits"}]}
    r = httpx.post(v2, json=unknown_output)
    assert r.status_code == 400 and "'logits'" in r.json()["error"]
    with_nulls = {"inputs": [tensor(c, "FP64", [None]) for c in row]}  # missing values: the model's fitted median
    assert httpx.post(v2, json=with_nulls).status_code == 200


def test_bodies_over_the_limit_are_refused_before_parsing(packages, registry, tmp_path, live):
    register(registry, packages["iris"], tmp_path)
    svc = _serve(registry, "models:/iris-serve@champion", max_request_bytes=4096)
    try:
        with live(create_app(svc)) as server:
            big = {"dataframe_records": [{"x": "y" * 100}] * 100}
            r = httpx.post(f"{server.url}/invocations", json=big)
            assert r.status_code == 413 and r.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"

            def chunks():  # no Content-Length: counted while read, refused at the limit
                for _ in range(100):
                    yield b" " * 100

            r = httpx.post(f"{server.url}/v2/models/iris-serve/infer", content=chunks())
            assert r.status_code == 413 and "4096" in r.json()["error"]
            assert svc.metrics.batch_size.labels(model="iris-serve")._sum.get() == 0  # nothing reached the model
    finally:
        svc.close()


def test_images_travel_as_one_tensor(packages, registry, tmp_path, live):
    uri = register(registry, packages["digits"], tmp_path)
    model = registry.load_model(uri)
    digits = load_digits()
    images = (digits.images[:40] / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    expected = model.predict(images)
    assert np.mean(expected["prediction"].astype(int).to_numpy() == digits.target[:40]) > 0.7
    svc = _serve(registry, "models:/digits-serve@champion")
    try:
        with live(create_app(svc)) as server:
            client = triton.InferenceServerClient(server.url.removeprefix("http://"))
            meta = client.get_model_metadata("digits-serve")
            assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
            inp = triton.InferInput("image", list(images.shape), "FP32")
            inp.set_data_from_numpy(images)
            result = client.infer("digits-serve", [inp])
            assert [v.decode() for v in result.as_numpy("prediction")] == expected["prediction"].tolist()

            r = httpx.post(f"{server.url}/invocations", json={"inputs": images[:3].tolist()})
            assert [p["prediction"] for p in r.json()["predictions"]] == expected["prediction"][:3].tolist()
            r = httpx.post(f"{server.url}/invocations", json={"instances": [{"image": im.tolist()} for im in images[:2]]})
            assert [p["prediction"] for p in r.json()["predictions"]] == expected["prediction"][:2].tolist()

            wide = triton.InferInput("image", list(images.shape), "FP64")
            wide.set_data_from_numpy(images.astype(np.float64))
            with pytest.raises(InferenceServerException, match="FP64 data cannot be cast to it safely"):
                client.infer("digits-serve", [wide])
            r = httpx.post(f"{server.url}/invocations", json={"inputs": images[:2, :, :4].tolist()})
            assert r.status_code == 400 and "[-1, 1, 8, 8]" in r.json()["message"]
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": [{"image": 1}]})
            assert r.status_code == 400 and "'inputs' or 'instances'" in r.json()["message"]
    finally:
        svc.close()


def test_text_columns_are_bytes_tensors(packages, registry, tmp_path, live):
    uri = register(registry, packages["mixed"], tmp_path)
    model = registry.load_model(uri)
    rows = mixed_frame(30, seed=1).drop(columns="label")
    expected = model.predict(rows)
    svc = _serve(registry, "models:/mixed-serve@champion")
    try:
        with live(create_app(svc)) as server:
            client = triton.InferenceServerClient(server.url.removeprefix("http://"))
            meta = {i["name"]: i["datatype"] for i in client.get_model_metadata("mixed-serve")["inputs"]}
            assert meta == {"age": "FP64", "color": "BYTES", "smoker": "BYTES"}  # yes/no is text, not FP64
            for binary in (False, True):
                inputs = []
                for col, dt in meta.items():
                    inp = triton.InferInput(col, [len(rows)], dt)
                    values = rows[col].to_numpy(np.float64) if dt == "FP64" else rows[col].to_numpy(object)
                    inp.set_data_from_numpy(values, binary_data=binary)
                    inputs.append(inp)
                result = client.infer("mixed-serve", inputs)
                assert [v.decode() for v in result.as_numpy("prediction")] == expected["prediction"].tolist()
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": rows.head(3).to_dict(orient="records")})
            assert [p["prediction"] for p in r.json()["predictions"]] == expected["prediction"][:3].tolist()
            bad = rows.head(1).to_dict(orient="records")
            bad[0]["color"] = 2.5
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": bad})
            assert r.status_code == 400 and "'color' must hold text" in r.json()["message"]
            bad[0]["color"], bad[0]["smoker"] = "red", "maybe"  # the preprocessor's own check, still a 400
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": bad})
            assert r.status_code == 400 and "'smoker'" in r.json()["message"]
    finally:
        svc.close()


def test_a_row_of_every_feature_type_is_served_like_model_predict(packages, registry, tmp_path, live):
    uri = register(registry, packages["strikes"], tmp_path)
    model = registry.load_model(uri)
    rows = pd.read_csv(Path(__file__).resolve().parents[2] / "examples" / "data" / "strikes.csv").drop(columns="disrupted").head(8)
    expected = model.predict(rows)
    svc = _serve(registry, "models:/strikes-serve@champion")
    try:
        with live(create_app(svc)) as server:
            meta = httpx.get(f"{server.url}/v2/models/strikes-serve").json()["inputs"]
            kinds = {i["name"]: i["datatype"] for i in meta}
            assert kinds["date"] == "BYTES" and kinds["remarks"] == "BYTES" and kinds["speed"] == "FP64"
            records = json.loads(rows.to_json(orient="records"))  # missing values travel as null
            assert any(r["remarks"] is None for r in records) or any(r["speed"] is None for r in records)
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records})
            assert r.status_code == 200, r.text
            assert [p["prediction"] for p in r.json()["predictions"]] == expected["prediction"].tolist()
            records[0]["date"] = "last tuesday"
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records})
            assert r.status_code == 400 and "'date'" in r.json()["message"] and "ISO 8601" in r.json()["message"]
    finally:
        svc.close()


def test_image_and_audio_columns_are_served_as_base64_contents_never_paths(packages, registry, tmp_path, live):
    import base64

    uri = register(registry, packages["media"], tmp_path)
    model = registry.load_model(uri)
    table = packages["media"].parent / "media" / "table.csv"
    expected = model.predict(table).head(6)  # paths read next to the table file
    rows = pd.read_csv(table).head(6).drop(columns="label")
    for col in ("photo", "clip"):
        rows[col] = [base64.b64encode((table.parent / p).read_bytes()).decode() for p in rows[col]]
    svc = _serve(registry, "models:/media-serve@champion")
    try:
        with live(create_app(svc)) as server:
            meta = {i["name"]: i for i in httpx.get(f"{server.url}/v2/models/media-serve").json()["inputs"]}
            assert meta["photo"]["datatype"] == "BYTES" and meta["clip"]["datatype"] == "BYTES"
            records = json.loads(rows.to_json(orient="records"))
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records})
            assert r.status_code == 200, r.text
            assert [p["prediction"] for p in r.json()["predictions"]] == expected["prediction"].tolist()
            got = np.array([p["proba_pos"] for p in r.json()["predictions"]])
            assert np.allclose(got, expected["proba_pos"].to_numpy(), atol=1e-5)
            # A path (even one that exists beside the server) is never opened: it is not base64 contents.
            records[0]["photo"] = str(table.parent / "img" / "0.png")
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records})
            assert r.status_code == 400 and "'photo'" in r.json()["message"] and "base64" in r.json()["message"]
            records[0]["photo"] = base64.b64encode(b"not an image").decode()
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": records})
            assert r.status_code == 400 and "'photo'" in r.json()["message"] and "not a readable image" in r.json()["message"]
    finally:
        svc.close()


def test_mlflow_side_routes(iris):
    server, _, _, _, _ = iris
    assert httpx.get(f"{server.url}/ping").status_code == 200
    assert httpx.get(f"{server.url}/health").json() == {"ready": True}
    version = httpx.get(f"{server.url}/version").json()
    assert version["model_name"] == "iris-serve" and version["model_version"] == "1"
    r = httpx.get(f"{server.url}/no/such/route")
    assert r.status_code == 404 and "error" in r.json()


def test_a_binary_models_threshold_decides_on_both_protocols(packages, registry, tmp_path, live):
    """The package's threshold, not the argmax, labels each row on OIP v2 and MLflow alike."""
    uri = register(registry, packages["cancer"], tmp_path)
    model = registry.load_model(uri)
    decision = model.decision
    t = decision["threshold"]["value"]
    assert decision["positive_class"] == "malignant" and decision["threshold"]["chosen_on"] == "validation" and t < 0.5
    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    p = model.predict_proba(frame)[:, 0]
    flips = (p >= t) & (p < 0.5)  # malignant by the threshold, benign by the argmax
    assert flips.any()
    rows = pd.concat([frame[flips].head(4), frame[~flips].head(4)]).reset_index(drop=True)
    expected = np.where(model.predict_proba(rows)[:, 0] >= t, "malignant", "benign").tolist()
    assert expected[:4] == ["malignant"] * 4
    svc = _serve(registry, "models:/cancer-serve@champion")
    try:
        with live(create_app(svc)) as server:
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": rows.to_dict(orient="records")})
            assert r.status_code == 200, r.text
            assert [g["prediction"] for g in r.json()["predictions"]] == expected
            inputs = [{"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()} for c in rows.columns]
            r = httpx.post(f"{server.url}/v2/models/cancer-serve/infer", json={"inputs": inputs})
            assert r.status_code == 200, r.text
            out = {o["name"]: o for o in r.json()["outputs"]}
            assert out["prediction"]["data"] == expected
    finally:
        svc.close()
