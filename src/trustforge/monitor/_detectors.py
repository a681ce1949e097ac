"""Drift detectors: one small function per test, each comparing a window with a reference.

- `ks_test_cuts`: two-sample Kolmogorov-Smirnov of a numeric feature against the reference's
  cut points and the exact count of training values below each (see `_reference`: the
  reference keeps no training value, only cuts that lie strictly between two of them).
  Method: the KS statistic is D = sup_x |F_ref(x) - F_win(x)|. F_ref is known exactly at the
  cuts and nowhere else, so we take the supremum over the cuts only: D_cuts <= D, and the
  p-value of D_cuts under the distribution of D (Smirnov's, for the true sizes n and m, the
  formula scipy's `ks_2samp` uses for large samples) is never smaller than the p-value of D
  itself. The test is therefore valid (conservative: its false-alarm rate is at most the
  level), and it loses little power: between two cuts F_ref rises by one block's share (at
  most about 1/50 of the rows for 1,000 rows, k = 20 rows per block, finer as rows grow),
  which bounds D - D_cuts, since the window's own CDF is evaluated exactly at every cut.
  (Evaluating at the window's points adds nothing: between two cuts F_ref is only known to
  lie between its values at the cuts, and that bound is tightest at the cuts themselves.)
- `ks_test`: the same test against a sample or a quantile sketch of it (scipy's `ks_2samp`);
  used for references written before format 2, which kept a sketch of training values.
- `chi2_test`: chi-square test of homogeneity (scipy's `chi2_contingency`, no continuity
  correction) of a window's category counts against the reference's counts. It is a
  two-sample test, so the reference's own sampling noise is part of the null distribution;
  categories too rare for the chi-square approximation are pooled first (Cochran's rule).
- `psi`: population stability index over shared bins (numeric: the reference's deciles;
  categorical: the categories), with empty bins floored at `PSI_EPS` as Evidently does.
- `wasserstein`: scipy's `wasserstein_distance` divided by the reference's standard
  deviation, so one threshold fits every feature's units (Evidently's "normed" variant). The
  reference is its blocks' means weighted by their row counts (each block >= k rows), which
  is within the blocks' mean spread of the training sample: an effect size, not a p-value.

The tests with p-values (KS, chi-square) control the false alarm rate per test; PSI and
Wasserstein are effect sizes whose value under no drift shrinks as the window grows (PSI of a
10-bin histogram is about 9 / window rows by sampling noise alone, more in small windows,
where an empty bin adds about 0.7); `_null` gives each its no-drift level at a window size.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# scipy.stats is imported where a test runs (0.7 s): a server whose drift monitor runs in a process of
# its own builds one here that never tests a window.

__all__ = [
    "ks_test",
    "ks_test_cuts",
    "chi2_test",
    "psi",
    "psi_numeric",
    "psi_categorical",
    "wasserstein",
    "bin_fractions",
    "compare_numeric",
    "PSI_EPS",
    "MIN_EXPECTED",
]

PSI_EPS = 1e-4  # the fraction an empty bin counts as, so ln(a/e) stays finite
MIN_EXPECTED = 5.0  # Cochran's rule: every cell of a chi-square test should expect >= 5 counts


def ks_test(reference: np.ndarray, current: np.ndarray, reference_size: int | None = None) -> tuple[float, float]:
    """Two-sample KS statistic and p-value of `current` against `reference` (NaNs dropped).

    Args:
        reference: the reference values, or a quantile sketch of them.
        current: the window's values.
        reference_size: how many values the sketch summarises, when that is more than its
            length. The statistic is then the sketch's (within about 1 / len(reference) of
            the full sample's) and the p-value Smirnov's asymptotic one for the true sizes,
            the formula scipy's `ks_2samp` uses for large samples; otherwise both come from
            `ks_2samp` (exact distribution up to 10,000 values). Ties (discrete features)
            make the test conservative, never liberal.
    """
    from scipy import stats

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError("ks_test needs at least one value in each sample")
    if reference_size is None or reference_size <= len(ref):
        r = stats.ks_2samp(ref, cur)
        return float(r.statistic), float(r.pvalue)
    ref, cur = np.sort(ref), np.sort(cur)
    both = np.concatenate([ref, cur])
    d = float(np.max(np.abs(np.searchsorted(ref, both, side="right") / len(ref) - np.searchsorted(cur, both, side="right") / len(cur))))
    en = reference_size * len(cur) / (reference_size + len(cur))
    return d, float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_test_cuts(cuts: Sequence[float], below: Sequence[int], reference_size: int, current: np.ndarray) -> tuple[float, float]:
    """KS statistic over the cuts and its p-value, of `current` against a reference known at cuts.

    Args:
        cuts: increasing values where the reference's CDF is known.
        below: how many reference values are <= each cut (exact counts).
        reference_size: how many reference values there are.
        current: the window's values (NaNs dropped).

    Returns:
        (D over the cuts, p-value for the true sizes); (0, 1) without cuts. See the module
        docstring for why the p-value is valid (conservative).
    """
    from scipy import stats

    cur = np.sort(np.asarray(current, dtype=np.float64))
    cur = cur[~np.isnan(cur)]
    if len(cur) == 0 or reference_size <= 0:
        raise ValueError("ks_test_cuts needs at least one value in each sample")
    c = np.asarray(cuts, dtype=np.float64)
    if len(c) == 0:
        return 0.0, 1.0
    f_ref = np.asarray(below, dtype=np.float64) / reference_size
    f_cur = np.searchsorted(cur, c, side="right") / len(cur)
    d = float(np.max(np.abs(f_ref - f_cur)))
    en = reference_size * len(cur) / (reference_size + len(cur))
    return d, float(np.clip(stats.kstwo.sf(d, max(1, int(np.round(en)))), 0.0, 1.0))


def compare_numeric(ref: Mapping, current: np.ndarray) -> dict[str, object]:
    """PSI, normed Wasserstein and KS (d, p) of a window's values (no NaN) against a numeric reference.

    Reads both reference formats: 2 (cuts, counts and block means; nothing when the column had
    fewer than k rows, then every score is None) and 1 (a quantile sketch of training values).
    """
    bins = ref.get("bins")
    psi_value = psi_numeric(bins["edges"], bins["fractions"], current) if bins else None
    if "cuts" in ref:  # format 2
        counts = np.asarray(ref["counts"], dtype=np.float64)
        w = wasserstein(np.asarray(ref["centres"], dtype=np.float64), current, float(ref["std"]), reference_weights=counts)
        ks = ks_test_cuts(ref["cuts"], np.cumsum(counts)[:-1].astype(np.int64), int(ref["count"]), current) if ref["cuts"] else None
        return {"psi": psi_value, "wasserstein": w, "ks": ks}
    if "quantiles" in ref:  # format 1
        sketch = np.asarray(ref["quantiles"], dtype=np.float64)
        return {
            "psi": psi_value,
            "wasserstein": wasserstein(sketch, current, float(ref["std"])),
            "ks": ks_test(sketch, current, int(ref["count"])),
        }
    return {"psi": None, "wasserstein": None, "ks": None}  # too few training rows to summarise


def missing_share_test(reference_present: int, reference_missing: int, present: int, missing: int) -> float:
    """Two-sided p-value that a window's share of missing values equals the reference's:
    Fisher's exact test on the 2x2 table (reference, window) x (present, missing), exact at
    any count (one missing value in a window of 60 against none in 455 training rows is
    p = 0.12, where a z-test would say 1e-18)."""
    from scipy import stats

    if missing + reference_missing == 0:
        return 1.0  # nothing missing on either side: nothing to compare
    table = [[reference_present, reference_missing], [present, missing]]
    return float(stats.fisher_exact(table, alternative="two-sided").pvalue)


def chi2_test(reference_counts: Mapping[str, int], current: Sequence[str] | np.ndarray) -> tuple[float, float, int]:
    """Chi-square test of homogeneity of `current`'s categories against the reference counts.

    The table has two rows (reference, window) and one column per category; values the
    reference never saw share one `unseen` column. Columns whose smaller row would expect
    fewer than `MIN_EXPECTED` counts under the pooled distribution are merged into one (and
    that one into the next smallest if it is still too small), so the chi-square
    approximation holds.

    Returns:
        (statistic, p_value, degrees of freedom); (0, 1, 0) when fewer than two columns remain
        (nothing to compare: one category, or a window too small to test).
    """
    from scipy import stats

    cur_values, cur_counts = np.unique(np.asarray(current, dtype=object).astype(str), return_counts=True)
    window = dict(zip(cur_values.tolist(), cur_counts.tolist()))
    names = list(reference_counts)
    ref = [int(reference_counts[k]) for k in names]
    cur = [int(window.pop(k, 0)) for k in names]
    if window:  # values the reference never saw: one column, reference count 0
        ref.append(0)
        cur.append(int(sum(window.values())))
    table = np.array([ref, cur], dtype=np.float64)  # (2, K)
    table = table[:, table.sum(axis=0) > 0]
    n_ref, n_cur = table.sum(axis=1)
    if n_ref == 0 or n_cur == 0:
        raise ValueError("chi2_test needs at least one value in each sample")
    table = _pool_sparse(table, min(n_ref, n_cur) / (n_ref + n_cur))
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    statistic, p, dof, _ = stats.chi2_contingency(table, correction=False)
    return float(statistic), float(p), int(dof)


def _pool_sparse(table: np.ndarray, smaller_share: float) -> np.ndarray:
    """Merge the rarest columns of a (2, K) table until each expects >= MIN_EXPECTED in both rows."""
    order = np.argsort(table.sum(axis=0), kind="stable")  # rarest first
    table = table[:, order]
    expected = table.sum(axis=0) * smaller_share  # the smaller row's expected count per column
    small = expected < MIN_EXPECTED
    if not small.any():
        return table
    pooled = table[:, small].sum(axis=1, keepdims=True)
    rest = table[:, ~small]
    # A pooled column that is still too small joins the rarest of the rest.
    if pooled.sum() * smaller_share < MIN_EXPECTED and rest.shape[1] > 0:
        rest = rest.copy()
        rest[:, :1] += pooled
        return rest
    return np.concatenate([pooled, rest], axis=1)


def bin_fractions(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of `values` (NaNs dropped) in the bins (-inf, e1], (e1, e2], ..., (ek, inf)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="left"), minlength=len(edges) + 1)
    return counts / max(len(v), 1)


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = PSI_EPS) -> float:
    """Population stability index sum((a - e) * ln(a / e)) over bins, shares floored at `eps`."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_numeric(edges: Sequence[float], reference_fractions: Sequence[float], current: np.ndarray) -> float:
    """PSI of a numeric window over the reference's bins."""
    return psi(reference_fractions, bin_fractions(current, edges))


def psi_categorical(reference_counts: Mapping[str, int], current: Sequence[str] | np.ndarray) -> float:
    """PSI of a window's categories against the reference's; unseen values share one bin."""
    values, counts = np.unique(np.asarray(current, dtype=object).astype(str), return_counts=True)
    window = dict(zip(values.tolist(), counts.tolist()))
    n_ref, n_cur = sum(reference_counts.values()), max(sum(window.values()), 1)
    e = [reference_counts[k] / n_ref for k in reference_counts]
    a = [window.pop(k, 0) / n_cur for k in reference_counts]
    if window:
        e.append(0.0)
        a.append(sum(window.values()) / n_cur)
    return psi(e, a)


def wasserstein(reference: np.ndarray, current: np.ndarray, scale: float, reference_weights: np.ndarray | None = None) -> float:
    """Wasserstein-1 distance between the samples divided by `scale` (the reference's std).

    `reference_weights`: each reference value's weight (a block mean stands for its rows).
    A constant reference (scale 0) gives 0 when the window matches it and infinity otherwise.
    """
    from scipy import stats

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    keep = ~np.isnan(ref)
    weights = None if reference_weights is None else np.asarray(reference_weights, dtype=np.float64)[keep]
    d = float(stats.wasserstein_distance(ref[keep], cur[~np.isnan(cur)], u_weights=weights))
    if scale > 0:
        return d / scale
    return 0.0 if d == 0 else float("inf")
