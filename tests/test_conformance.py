"""The conformance suite over every model kind (see trustforge.testing)."""

from __future__ import annotations

import pytest

from trustforge.testing import CASES, check_model_kind, model_kinds


def test_every_model_kind_has_a_conformance_case():
    covered = {case["model"]["kind"] for case in CASES.values()}
    assert set(model_kinds()) <= covered, f"model kinds without a case in trustforge.testing.CASES: {set(model_kinds()) - covered}"


@pytest.mark.parametrize("name", sorted(CASES), ids=str)
def test_model_kind_conforms(name, tmp_path):
    result = check_model_kind(CASES[name], tmp_path)
    assert result.loss_after < result.loss_before
    assert result.max_abs_diff <= 1e-5


def test_a_model_that_does_not_learn_fails_the_suite(tmp_path):
    """The suite can fail: a learning rate of ~0 leaves the loss where it was."""
    spec = {**CASES["mlp-table"], "train": {**CASES["mlp-table"]["train"], "optimizer": {"name": "sgd", "lr": 1e-12}}}
    with pytest.raises(AssertionError, match="did not lower the loss"):
        check_model_kind(spec, tmp_path)


def test_every_feature_type_has_a_conformance_case():
    from trustforge.data.features import FEATURE_TYPES
    from trustforge.testing import FEATURE_CASES

    assert set(FEATURE_TYPES) == set(FEATURE_CASES), f"feature types without a case: {set(FEATURE_TYPES) - set(FEATURE_CASES)}"


@pytest.mark.parametrize("name", sorted(__import__("trustforge.testing", fromlist=["FEATURE_CASES"]).FEATURE_CASES), ids=str)
def test_feature_type_conforms(name, tmp_path):
    from trustforge.testing import FEATURE_CASES, check_feature_type

    check_feature_type(name, FEATURE_CASES[name], tmp_path)


def test_a_feature_type_that_loses_its_state_fails_the_suite(tmp_path, monkeypatch):
    """The suite can fail: a numeric state that forgets its scaler on the way back encodes differently."""
    from trustforge.data.features.numeric import NumericState
    from trustforge.testing import FEATURE_CASES, check_feature_type

    real = NumericState.from_json.__func__

    def lossy(cls, d):
        return real(cls, {**d, "std": 1.0})

    monkeypatch.setattr(NumericState, "from_json", classmethod(lossy))
    with pytest.raises(AssertionError, match="numeric: state does not round-trip"):
        check_feature_type("numeric", FEATURE_CASES["numeric"], tmp_path)
