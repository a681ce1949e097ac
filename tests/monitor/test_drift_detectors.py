"""The drift detectors against scipy and direct computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trustforge.monitor import chi2_test, ks_test, psi, psi_categorical, psi_numeric, wasserstein
from trustforge.monitor._detectors import bin_fractions, ks_test_cuts


def test_ks_test_is_scipys_two_sample_test_and_ignores_missing_values():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 400), rng.normal(0.3, 1, 80)
    expected = stats.ks_2samp(ref, cur)
    with_nan = np.concatenate([cur, [np.nan, np.nan]])
    assert ks_test(ref, with_nan) == pytest.approx((expected.statistic, expected.pvalue))
    # The statistic by hand: the largest gap between the two empirical CDFs.
    grid = np.concatenate([ref, cur])
    gap = np.abs((ref[:, None] <= grid).mean(axis=0) - (cur[:, None] <= grid).mean(axis=0)).max()
    assert ks_test(ref, cur)[0] == pytest.approx(gap)


def test_ks_test_on_a_sketch_matches_the_full_sample_test():
    """A 1,000-point quantile sketch of 20,000 values stands in for them: same statistic (to
    about 1/1000) and the p-value of the true sizes (scipy's asymptotic formula)."""
    rng = np.random.default_rng(1)
    full = rng.gamma(2.0, 1.5, 20_000)
    sketch = np.quantile(full, (np.arange(1000) + 0.5) / 1000, method="inverted_cdf")
    for shift in (0.0, 0.2, 0.5):
        cur = rng.gamma(2.0, 1.5, 300) + shift
        d, p = ks_test(sketch, cur, reference_size=len(full))
        truth = stats.ks_2samp(full, cur, method="asymp")
        assert d == pytest.approx(truth.statistic, abs=2e-3)
        assert p == pytest.approx(truth.pvalue, rel=0.1, abs=1e-4)
    # Treating the sketch as a 1,000-value sample gives a larger (more conservative) p-value.
    cur = rng.gamma(2.0, 1.5, 300) + 0.2
    assert ks_test(sketch, cur)[1] > ks_test(sketch, cur, reference_size=len(full))[1]


def test_chi2_test_is_the_contingency_test_computed_by_hand():
    ref = {"red": 400, "green": 300, "blue": 200, "grey": 100}
    cur = np.array(["red"] * 30 + ["green"] * 40 + ["blue"] * 20 + ["grey"] * 10, dtype=object)
    table = np.array([[400, 300, 200, 100], [30, 40, 20, 10]], dtype=float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    by_hand = ((table - expected) ** 2 / expected).sum()
    stat, p, dof = chi2_test(ref, cur)
    assert stat == pytest.approx(by_hand)
    assert dof == 3
    assert p == pytest.approx(stats.chi2.sf(by_hand, 3))
    assert (stat, p) == pytest.approx(stats.chi2_contingency(table, correction=False)[:2])


def test_chi2_test_pools_rare_categories_and_counts_unseen_values_as_one():
    ref = {"a": 500, "b": 480, "c": 6, "d": 4}
    # A 400-row window: c and d each expect < 5 window rows under the pooled distribution
    # (10 * 400 / 1390 = 2.9), together 5.8: one column. The 30 unseen values are one column.
    cur = np.array(["a"] * 180 + ["b"] * 180 + ["c"] * 4 + ["d"] * 6 + ["new1"] * 15 + ["new2"] * 15, dtype=object)
    pooled = np.array([[10, 0, 480, 500], [10, 30, 180, 180]], dtype=float)
    stat, p, dof = chi2_test(ref, cur)
    assert (stat, p) == pytest.approx(stats.chi2_contingency(pooled, correction=False)[:2])
    assert dof == 3
    # A 100-row window: the pooled column (c, d, unseen) would still expect < 5, so it joins
    # the rarest remaining column (b).
    cur = np.array(["a"] * 50 + ["b"] * 45 + ["c"] * 1 + ["new1"] * 2 + ["new2"] * 2, dtype=object)
    pooled = np.array([[490, 500], [50, 50]], dtype=float)
    assert chi2_test(ref, cur)[:2] == pytest.approx(stats.chi2_contingency(pooled, correction=False)[:2])
    # Many values the reference never saw are drift.
    assert chi2_test(ref, np.array(["a"] * 50 + ["zzz"] * 50, dtype=object))[1] < 1e-10
    # One category only: nothing to compare.
    assert chi2_test({"a": 10}, np.array(["a"] * 5, dtype=object)) == (0.0, 1.0, 0)


def test_psi_is_the_textbook_formula_with_empty_bins_floored():
    e, a = np.array([0.25, 0.25, 0.5]), np.array([0.5, 0.25, 0.25])
    assert psi(e, a) == pytest.approx(sum((a - e) * np.log(a / e)))
    assert psi(e, e) == 0.0
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx((1 - 0.5) * np.log(2) + (1e-4 - 0.5) * np.log(1e-4 / 0.5))


def test_psi_numeric_bins_like_numpy_histogram_and_psi_categorical_counts_categories():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=5000)
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    fractions = bin_fractions(ref, edges)
    assert fractions == pytest.approx(np.full(10, 0.1), abs=1e-3)
    cur = rng.normal(0.5, 1, 700)
    hist = np.histogram(cur, bins=np.concatenate([[-np.inf], edges, [np.inf]]))[0] / len(cur)
    assert psi_numeric(edges, fractions, cur) == pytest.approx(psi(fractions, hist), rel=1e-9)
    assert psi_numeric(edges, fractions, cur) > 0.1 > psi_numeric(edges, fractions, rng.normal(size=5000))

    counts = {"x": 60, "y": 40}
    cur_cat = np.array(["x"] * 30 + ["y"] * 60 + ["w"] * 10, dtype=object)
    assert psi_categorical(counts, cur_cat) == pytest.approx(psi([0.6, 0.4, 0.0], [0.3, 0.6, 0.1]))


def test_wasserstein_is_scipys_distance_over_the_reference_std():
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(5, 2, 1000), rng.normal(6, 2, 200)
    assert wasserstein(ref, cur, ref.std()) == pytest.approx(stats.wasserstein_distance(ref, cur) / ref.std())
    assert wasserstein(ref, cur, ref.std()) == pytest.approx(0.5, abs=0.15)  # a half-std shift
    const = np.full(10, 3.0)
    assert wasserstein(const, np.full(4, 3.0), 0.0) == 0.0
    assert wasserstein(const, np.array([3.0, 4.0]), 0.0) == float("inf")


def test_ks_against_cuts_is_conservative_and_loses_little_power():
    """Against cuts every 20 rows of a 400-value sample: the statistic never exceeds the
    full-sample one (so the p-value never falls below it), is within one block's share (0.05)
    of it, and under no drift the false-alarm rate over 2,000 windows stays below the level."""
    rng = np.random.default_rng(5)
    full = np.sort(rng.gamma(2.0, 1.5, 400))
    ends = np.arange(20, 400, 20)
    cuts = (full[ends - 1] + full[ends]) / 2
    for shift in (0.0, 0.3, 1.0):
        cur = rng.gamma(2.0, 1.5, 100) + shift
        d, p = ks_test_cuts(cuts, ends, len(full), cur)
        truth = stats.ks_2samp(full, cur, method="asymp")
        assert d <= truth.statistic + 1e-12 and d >= truth.statistic - 0.05 - 1e-12
        assert p >= truth.pvalue - 1e-12
    alarms = np.mean([ks_test_cuts(cuts, ends, len(full), rng.gamma(2.0, 1.5, 100))[1] < 0.05 for _ in range(2000)])
    assert alarms <= 0.05, alarms
    assert ks_test_cuts([], [], 400, full[:10]) == (0.0, 1.0)
