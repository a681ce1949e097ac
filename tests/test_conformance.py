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
