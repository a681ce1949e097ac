"""The server's numeric shortcut of the data expectations: the same verdict as the full check, without a table."""

from __future__ import annotations

import numpy as np
import pytest

from trustforge.data import Expectations
from trustforge.data._expect import Rule
from trustforge.serve import _expect
from trustforge.serve._expect import ExpectGuard


def _ranges() -> Expectations:
    rules = (
        Rule("a", "inferred", "numeric", -1.0, 1.0, None, None, 0.0),
        Rule("b", "inferred", "numeric", 0.0, None, None, None, 0.2),
        Rule("c", "declared", None, None, 10.0, None, None, None, policy="fail"),
    )
    return Expectations(rules, model_types=True)


def _verdict(report) -> list[tuple]:
    return [] if report is None else sorted((v.check, v.column, v.row, v.policy) for v in report.violations)


@pytest.mark.parametrize("seed", range(40))
def test_shortcut_finds_what_the_full_check_finds(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    payload = {
        "a": rng.choice([-1.0, 1.0, 0.3, -1.0000001, 1.5, np.nan], n),
        "b": rng.choice([0.0, 5.0, -0.1, np.nan, np.inf], n).astype(np.float32),
        "c": rng.integers(8, 12, n),  # ints: 11 is out of range
    }
    guard = ExpectGuard(_ranges(), ["a", "b", "c"])
    assert guard._quick is not None
    full = _ranges().check(__import__("pandas").DataFrame(payload), required=["a", "b", "c"], first_row=1)
    assert _verdict(guard.check(payload)) == _verdict(full)


def test_a_fine_request_builds_no_table(monkeypatch):
    guard = ExpectGuard(_ranges(), ["a", "b", "c"])

    def no_table(*args, **kwargs):
        raise AssertionError("the shortcut built a DataFrame")

    monkeypatch.setattr(_expect.pd, "DataFrame", no_table)
    fine = {"a": np.array([-1.0, 1.0]), "b": np.array([0.0, 3.0], np.float32), "c": np.array([10, -5])}
    assert guard.check(fine) is None
    with pytest.raises(AssertionError):  # out of range: the full check words it
        guard.check({**fine, "a": np.array([0.0, 1.01])})
    with pytest.raises(AssertionError):  # missing: the full check weighs it against max_missing
        guard.check({**fine, "b": np.array([np.nan, 1.0])})
    with pytest.raises(AssertionError):  # a column absent, or of text: the full check
        guard.check({"a": fine["a"], "b": fine["b"]})
    with pytest.raises(AssertionError):
        guard.check({**fine, "c": np.array(["x", "y"], dtype=object)})


@pytest.mark.parametrize(
    "rule",
    [
        Rule("k", "declared", "numeric", 0.0, 1.0),  # a type check of its own
        Rule("k", "inferred", "category", None, None, ("x", "y")),
        Rule("k", "declared", None, None, None, None, "[a-z]+"),
        Rule("k", "declared", None, None, None, None, None, None, True),
    ],
)
def test_other_rules_take_the_full_check(rule):
    assert ExpectGuard(Expectations((Rule("a", "inferred", "numeric", 0.0, 1.0), rule), model_types=True), ["a", "k"])._quick is None
    assert ExpectGuard(Expectations((Rule("a", "inferred", "numeric", 0.0, 1.0),), model_types=False), ["a"])._quick is None
    assert ExpectGuard(Expectations((Rule("a", "inferred", "numeric", 0.0, 1.0),), keys=(("a",),), model_types=True), ["a"])._quick is None
