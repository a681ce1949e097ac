"""A 400 of a model trained with `data.protect` quotes no personal value, however long the value.

The signature quotes the value at fault cut to 40 characters; cut first, an email is no longer
one the detector recognises (`'Please write to jonathan.private.per...`), so the value is masked
whole and then cut. No trained model is needed: the app's message is built from the manifest's
`pii` entry.
"""

from __future__ import annotations

import pytest

from trustforge.serve._app import request_message
from trustforge.serve._formats import parse_csv
from trustforge.serve._protocol import parse_infer, parse_scoring
from trustforge.serve._signature import RequestError, Signature

EMAIL = "jonathan.private.person@gmail.com"
LONG = f"Please write to {EMAIL}"
MASKED = {"pii": {"policy": "mask", "scanned": ["age", "note"]}}
SIGNATURE = Signature.from_manifest(
    {
        "signature": {
            "inputs": [
                {"name": "age", "kind": "numeric", "datatype": "FP64", "shape": [-1]},
                {"name": "note", "kind": "text", "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [{"name": "prediction", "datatype": "BYTES", "shape": [-1]}],
        }
    }
)


def _refusal(parse, *args) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse(*args)
    return info.value


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: _refusal(parse_scoring, _records(LONG), SIGNATURE), id="dataframe_records"),
        pytest.param(lambda: _refusal(parse_csv, f"age,note\n1,hi\n{LONG},hi\n".encode(), SIGNATURE), id="csv"),
        pytest.param(lambda: _refusal(parse_scoring, _records(["x", 1, LONG]), SIGNATURE), id="a list cell"),
    ],
)
def test_a_protected_models_400_masks_a_long_value_before_cutting_it(body):
    exc = body()
    assert "jonathan" in str(exc)  # unmasked, the value is only cut (a model without data.protect)
    message = request_message(exc, MASKED)
    assert "<EMAIL>" in message and "age" in message and "row 2" in message, message
    assert "jonathan" not in message and "private" not in message, message
    assert request_message(exc, {"pii": None}) == str(exc)  # trained without data.protect: as it was


def test_quoted_values_are_still_cut_short_after_masking():
    exc = _refusal(parse_scoring, _records("x" * 100 + " " + EMAIL), SIGNATURE)
    assert str(exc).count("x") < 45 and str(exc).endswith("... at row 2")
    message = request_message(exc, MASKED)
    assert "..." in message and "jonathan" not in message and len(message) < 120, message


def test_a_v2_parameter_value_is_masked_before_it_is_cut():
    import json

    inputs = [
        {"name": "age", "datatype": "FP64", "shape": [1], "data": [1]},
        {"name": "note", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
    ]
    body = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": LONG}}).encode()
    exc = _refusal(parse_infer, body, None, SIGNATURE)
    assert "binary_data_output" in str(exc) and "jonathan" in str(exc)
    message = request_message(exc, MASKED)
    assert "<EMAIL>" in message and "jonathan" not in message, message


def _records(age) -> bytes:
    import json

    return json.dumps({"dataframe_records": [{"age": 31, "note": "hi"}, {"age": age, "note": "hi"}]}).encode()


def test_a_data_expectation_refusal_masks_the_value_before_cutting_it():
    """`data.expect` refusals quote the value too (cut to 40 characters in the data layer)."""
    import numpy as np
    from prometheus_client import CollectorRegistry

    from trustforge.serve._expect import check_request, expect_counter

    manifest = {
        "expect": {"rules": [{"column": "city", "allowed": ["east", "west"]}], "policy": {"allowed": "fail"}},
        "signature": {"inputs": [{"name": "city", "datatype": "BYTES", "shape": [-1]}]},
    }
    model = type("Model", (), {"manifest": manifest})()  # weak-referenceable, as a loaded model
    payload = {"city": np.array(["east", LONG], dtype=object)}
    with pytest.raises(RequestError) as info:
        check_request(expect_counter(CollectorRegistry()), model, "m", payload)
    assert "jonathan" in str(info.value) and "city" in str(info.value)  # a model without data.protect: only cut
    message = request_message(info.value, MASKED)
    assert "'Please write to <EMAIL>'" in message and "jonathan" not in message and "row 2" in message, message
