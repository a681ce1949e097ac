"""Parameters in a request body are taken with their types checked or refused naming the field,
never dropped: the v2 request, its outputs and inputs, the classification count, and MLflow's
`params` on `/invocations`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tritonclient.http as triton
from _serving import register
from fastapi.testclient import TestClient
from sklearn.datasets import load_iris
from tritonclient.utils import InferenceServerException

from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.serve._protocol import encode_infer, parse_infer
from trustforge.serve._signature import RequestError, Signature

_INFER = "/v2/models/iris-serve/infer"


@pytest.fixture
def iris(packages, registry, tmp_path):
    """(test client, service, four iris rows)."""
    register(registry, packages["iris"], tmp_path)
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=0, auth="none"), registry=registry).start()
    rows = load_iris(as_frame=True).frame.drop(columns="target").head(4)
    with TestClient(create_app(svc)) as client:
        yield client, svc, rows
    svc.close()


def _v2(rows, **extra) -> dict:
    return {"inputs": [{"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()} for c in rows.columns], **extra}


def _refused(r, *parts: str, key: str = "error") -> None:
    assert r.status_code == 400, r.text
    assert set(r.json()) == ({"error"} if key == "error" else {"error_code", "message"}), r.json()
    for part in parts:
        assert part in r.json()[key], r.json()[key]


def test_v2_request_parameters_are_binary_data_output_or_a_400_naming_the_field(iris, live):
    client, svc, rows = iris
    for params in (None, {}, {"binary_data_output": False}):
        r = client.post(_INFER, json=_v2(rows, parameters=params))
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    r = client.post(_INFER, json=_v2(rows, parameters={"binary_data_output": True}))
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    for params, parts in [
        ({"foo": 1}, ["parameters.foo is not a known parameter; expected one of binary_data_output"]),
        ({"binary_data_output": True, "top_k": 3}, ["parameters.top_k is not a known parameter"]),
        ({"binary_data_output": "yes"}, ['parameters.binary_data_output must be true or false; got "yes"']),
        ({"binary_data_output": 1}, ["parameters.binary_data_output must be true or false; got 1"]),
        ({"binary_data_output": None}, ["parameters.binary_data_output must be true or false; got null"]),
        ({"priority": 1}, ["parameters.priority is not supported here (Triton's schedule policy extension)", "binary_data_output"]),
        ({"timeout": 1000}, ["parameters.timeout is not supported here"]),
        ({"sequence_id": 7, "sequence_start": True, "sequence_end": False}, ["parameters.sequence_end is not supported here"]),
        ({"triton_enable_empty_final_response": True}, ["parameters.triton_enable_empty_final_response is not supported here"]),
        ({"binary_data": True}, ["parameters.binary_data is not supported here (an output parameter)"]),
        ({"not an identifier": 1}, ["parameters['not an identifier'] is not a known parameter"]),
    ]:
        _refused(client.post(_INFER, json=_v2(rows, parameters=params)), *parts)
    # tritonclient as clients use it: its default request (binary_data_output) works; parameters it may add are refused
    with live(create_app(svc)) as server:
        triton_client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        inputs = []
        for col in rows.columns:
            inp = triton.InferInput(col, [len(rows)], "FP64")
            inp.set_data_from_numpy(rows[col].to_numpy(np.float64))
            inputs.append(inp)
        assert triton_client.infer("iris-serve", inputs).as_numpy("probabilities").shape == (4, 3)
        for options, message in [
            ({"priority": 2}, "parameters.priority is not supported here"),
            ({"timeout": 5000}, "parameters.timeout is not supported here"),
            ({"parameters": {"temperature": 0.5}}, "parameters.temperature is not a known parameter"),
        ]:
            with pytest.raises(InferenceServerException, match=re.escape(f"[400] {message}")):
                triton_client.infer("iris-serve", inputs, **options)


def test_v2_output_and_input_parameters_of_the_wrong_type_or_level_get_400(iris):
    client, _, rows = iris
    for params, parts in [
        ({"classification": None}, ["parameters.classification must be a positive integer", "got null"]),  # was: ignored
        ({"binary_data": "true"}, ["outputs[0] ('probabilities'): parameters.binary_data must be true or false; got \"true\""]),
        ({"binary_data_output": True}, ["parameters.binary_data_output is not supported here (a request parameter"]),
    ]:
        _refused(client.post(_INFER, json=_v2(rows, outputs=[{"name": "probabilities", "parameters": params}])), *parts)
    for params, parts in [
        (
            {"binary_data_size": None},
            ["inputs[0] ('sepal length (cm)'): parameters.binary_data_size must be a non-negative integer; got null"],
        ),
        ({"binary_data_size": "32"}, ['parameters.binary_data_size must be a non-negative integer; got "32"']),
        (
            {"content_type": "np"},
            ["parameters.content_type is not supported here (MLServer's content types); expected one of binary_data_size"],
        ),
    ]:
        body = _v2(rows)
        body["inputs"][0]["parameters"] = params
        _refused(client.post(_INFER, json=body), *parts)


def test_classification_above_the_class_count_is_a_400_naming_both_numbers(iris):
    client, _, rows = iris
    for k in (1, 3):
        r = client.post(_INFER, json=_v2(rows, outputs=[{"name": "probabilities", "parameters": {"classification": k}}]))
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [4, k]
    for k, parts in [
        (4, ["outputs[0] ('probabilities'): parameters.classification must be at most the output's 3 classes; got 4"]),  # was: cut to 3
        (10**6, ["at most the output's 3 classes; got 1000000"]),
        (True, ["parameters.classification must be a positive integer", "got true"]),
        (2.0, ["parameters.classification must be a positive integer", "got 2.0"]),
        (-1, ["parameters.classification must be a positive integer", "got -1"]),
    ]:
        r = client.post(_INFER, json=_v2(rows, outputs=[{"name": "probabilities", "parameters": {"classification": k}}]))
        _refused(r, *parts)


def test_an_output_requested_twice_is_a_400_not_one_answer_given_for_both(iris):
    client, _, rows = iris
    twice = [{"name": "probabilities"}, {"name": "probabilities", "parameters": {"classification": 2}}]
    _refused(client.post(_INFER, json=_v2(rows, outputs=twice)), "outputs[1] ('probabilities'): the output is requested twice")


def test_classification_of_an_undeclared_output_is_checked_against_its_columns():
    """An output the package's signature does not declare has no class count before the model
    answers: the count is checked against the answer (400, not a shorter answer)."""
    signature = Signature.from_manifest({"signature": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1]}]}})
    body = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]}],'
    scores = np.array([[0.1, 0.9], [0.7, 0.3]])
    ok = parse_infer(body + b' "outputs": [{"name": "scores", "parameters": {"classification": 2}}]}', None, signature)
    content, _ = encode_infer([("scores", "FP64", scores)], ok, "m", "1")
    assert b'"shape":[2,2]' in content and b"0.900000:1" in content
    req = parse_infer(body + b' "outputs": [{"name": "scores", "parameters": {"classification": 5}}]}', None, signature)
    with pytest.raises(RequestError, match=r"output 'scores': parameters\.classification must be at most the output's 2 classes; got 5"):
        encode_infer([("scores", "FP64", scores)], req, "m", "1")


def test_mlflow_params_are_refused_unless_empty_in_every_json_format(iris):
    client, _, rows = iris
    formats = {
        "dataframe_split": rows.to_dict(orient="split"),  # with its index: the plain (fast) parse
        "dataframe_records": rows.to_dict(orient="records"),
        "instances": rows.to_dict(orient="records"),
        "inputs": {c: rows[c].tolist() for c in rows.columns},
    }
    for fmt, data in formats.items():
        for params in (None, {}):
            r = client.post("/invocations", json={fmt: data, "params": params})
            assert r.status_code == 200 and len(r.json()["predictions"]) == 4, (fmt, r.text)
        r = client.post("/invocations", json={fmt: data, "params": {"temperature": 0.5}})  # was: 200, params dropped
        _refused(r, "params.temperature is not a known parameter; this model takes no inference parameters", key="message")
        assert r.json()["error_code"] == "BAD_REQUEST"
    r = client.post("/invocations", json={"dataframe_split": formats["dataframe_split"], "params": {"a b": 1, "z": 2}})
    _refused(r, "params['a b'] is not a known parameter", key="message")
    # a body without a content type is still read as JSON, params included
    raw = b'{"inputs": {"sepal length (cm)": [5.1]}, "params": {"k": 1}}'
    r = client.post("/invocations", content=raw)
    assert "content-type" not in r.request.headers
    _refused(r, "params.k is not a known parameter", key="message")
