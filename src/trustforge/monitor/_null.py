"""No-drift levels: what PSI and Wasserstein reach by sampling noise alone, at a window size.

PSI and the normed Wasserstein distance are effect sizes, and in a small window they are
mostly noise: in 57-row windows of breast-cancer rows with no drift at all, 85 % of feature
windows had PSI >= 0.1 and 98 % had Wasserstein >= 0.1, the usual fixed thresholds. This
module gives each figure the level that means something at the window's size: the value that
a window of n rows drawn from the reference's own distribution exceeds with probability
`level` (the 1 - level quantile of the figure under no drift).

The reference keeps no training value (see `_reference`), so the levels are simulated from
what it keeps:
- PSI: the reference's bin shares (numeric: its decile bins; categorical: the category
  counts). Both sides are redrawn (a parametric bootstrap of the two-sample situation: the
  reference's N rows are a sample too): reference shares ~ Multinomial(N, p) / N, window
  shares ~ Multinomial(n, p) / n, PSI as `_detectors.psi` computes it (empty bins floored at
  `PSI_EPS`, which is what makes small windows so noisy: one empty decile adds about 0.7).
- Wasserstein: windows of n rows are drawn from a distribution rebuilt from the blocks (each
  block's rows spread over the interval between its cuts, keeping the block's mean: two
  uniform pieces meeting at the mean; the outer blocks a uniform piece whose mean is the
  block's), and measured exactly as a served window is (against the block means weighted by
  their counts, over the reference std). That captures the figure's floor (a window from the
  reference's own distribution is not at distance 0 from its block means) and the window's
  sampling noise; the reference's own sampling noise scales the noise part by
  sqrt(1 + n / N), as for two empirical distributions (their difference behaves as one of
  n N / (n + N) rows). Ties spread over their block (a discrete feature) make the level a
  little high: conservative. Format 1 references (a sketch of training values) resample the
  sketch.
Windows beyond `MAX_SIM_ROWS` rows are simulated at that size and the noise part scaled (PSI
by 1 / n, Wasserstein by 1 / sqrt(n), plus the reference's share), which is where both
figures follow their large-sample laws.

Simulations use a fixed seed, so one reference and window size always give the same levels.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from trustforge.monitor._detectors import PSI_EPS

__all__ = ["psi_level", "wasserstein_level", "wasserstein_to_blocks", "SIMULATIONS", "MAX_SIM_ROWS"]

SIMULATIONS = 500  # windows simulated per level at least; more for small levels (20 windows above the quantile)
MAX_SIMULATIONS = 4000
MAX_SIM_ROWS = 500
_SEED = 12
_CHUNK = 2_000_000  # floats per simulated block of windows (memory stays ~ 50 MB)
_TAIL_GRID = np.concatenate([np.linspace(0, 0.99, 991), 1 - np.geomspace(1e-2, 1e-7, 200)[1:]])


def _simulations(level: float) -> int:
    return int(min(MAX_SIMULATIONS, max(SIMULATIONS, np.ceil(20 / level))))


def psi_level(fractions: "list[float] | np.ndarray", reference_rows: int, window: int, level: float) -> float:
    """PSI that a window of `window` rows without drift exceeds with probability `level`.

    Args:
        fractions: the reference's shares per bin (or counts; they are normalised).
        reference_rows: N, how many rows the shares come from.
        window: n, the window's rows.
        level: the false-alarm probability (e.g. 0.05).
    """
    p = np.asarray(fractions, dtype=np.float64)
    p = np.maximum(p, 0) / max(p.sum(), 1e-300)
    if len(p) < 2 or window < 1:
        return 0.0
    rng = np.random.default_rng(_SEED)
    m = min(window, MAX_SIM_ROWS)
    n_ref = max(int(reference_rows), 1)
    sims = _simulations(level)
    # The reference's shares are fixed; the truth they estimate is not: each simulated window
    # comes from bin probabilities drawn around them (Dirichlet of the reference's counts). A
    # bin the reference never saw stays empty.
    seen = p > 0
    truth = np.zeros((sims, len(p)))
    truth[:, seen] = rng.dirichlet(p[seen] * n_ref, size=sims) if seen.sum() > 1 else 1.0
    win = rng.multinomial(m, truth) / m  # (S, B)
    e, a = np.maximum(p, PSI_EPS)[None, :], np.maximum(win, PSI_EPS)
    values = np.sum((a - e) * np.log(a / e), axis=1)
    q = float(np.quantile(values, 1 - level))
    if window > m:  # PSI ~ chi-square / effective rows at this size
        q *= (1 / window + 1 / n_ref) / (1 / m + 1 / n_ref)
    return q


def wasserstein_to_blocks(values: np.ndarray, centres: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """W1 between each row of `values` (S, m), as m equally weighted points, and the weighted `centres`.

    W1 = integral over u in (0, 1) of |Q_window(u) - Q_reference(u)|: both quantile functions
    are steps, the reference's at its cumulative weights and a window's at k / m, so one set
    of breakpoints serves every simulated window. Equals scipy's `wasserstein_distance`.
    """
    x = np.sort(np.asarray(values, dtype=np.float64), axis=1)
    s, m = x.shape
    order = np.argsort(centres, kind="stable")
    c, w = np.asarray(centres, dtype=np.float64)[order], np.asarray(weights, dtype=np.float64)[order]
    cw = np.cumsum(w) / w.sum()
    cw[-1] = 1.0
    breaks = np.unique(np.concatenate([[0.0], cw, np.arange(1, m + 1) / m]))
    mid = (breaks[:-1] + breaks[1:]) / 2
    width = np.diff(breaks)
    j = np.minimum(np.searchsorted(cw, mid), len(c) - 1)  # reference step at each piece
    k = np.minimum((mid * m).astype(np.int64), m - 1)  # window step at each piece
    return np.abs(x[:, k] - c[j][None, :]) @ width


def _block_quantile(ref: Mapping) -> "tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]":
    """The block means, their weights and the inverse CDF of the distribution rebuilt from the blocks.

    Inner blocks: two uniform pieces over the interval between their cuts, meeting at the
    block's mean and weighted to keep it. Outer blocks: the cut plus (or minus) a gamma
    variable with the block's mean, and between them the variance the column's std leaves
    after the blocks' means and the inner blocks' spread (shared in proportion to the squared
    distance of each outer mean from its cut, so a long tail gets the most); a uniform piece
    when there is none left. A heavy tail then keeps its rare large values, which move the
    Wasserstein distance of a small window most.
    """
    from scipy import stats

    counts = np.asarray(ref["counts"], dtype=np.float64)
    centres = np.asarray(ref["centres"], dtype=np.float64)
    cuts = np.asarray(ref["cuts"], dtype=np.float64)
    b = len(centres)
    std = float(ref.get("std") or 0.0)
    if b == 1:  # one block: a uniform with the column's mean and std
        half = np.sqrt(3.0) * std
        lo, hi = np.array([centres[0] - half]), np.array([centres[0] + half])
    else:
        lo = np.concatenate([[2 * centres[0] - cuts[0]], cuts])
        hi = np.concatenate([cuts, [2 * centres[-1] - cuts[-1]]])
    mean = np.clip(centres, lo, hi)
    span = hi - lo
    # Two uniform pieces, [lo, mean] and [mean, hi], weighted so the block's mean is kept.
    left = np.where(span > 0, (hi - mean) / np.where(span > 0, span, 1), 0.5)
    piece_var = (left * (mean - lo) ** 2 + (1 - left) * (hi - mean) ** 2) / 3
    cum = np.cumsum(counts) / counts.sum()
    cum[-1] = 1.0
    start = np.concatenate([[0.0], cum[:-1]])
    tails: dict[int, tuple[float, float, np.ndarray]] = {}  # block -> (cut, sign, gamma quantiles on _TAIL_GRID)
    if b > 2 and std > 0:
        total = counts.sum()
        grand = float(np.sum(counts * centres) / total)
        left_over = total * std**2 - np.sum(counts * (centres - grand) ** 2) - np.sum(counts[1:-1] * piece_var[1:-1])
        gaps = np.array([centres[0] - cuts[0], cuts[-1] - centres[-1]]) ** 2  # squared distance of each outer mean from its cut
        if left_over > 0 and gaps.sum() > 0:
            for end, block, cut, sign in ((0, 0, cuts[0], -1.0), (1, b - 1, cuts[-1], 1.0)):
                var = left_over * gaps[end] / gaps.sum() / counts[block]
                d = abs(centres[block] - cut)
                if var > piece_var[block] and d > 0:  # more spread than a uniform piece: a gamma tail
                    # Its quantiles tabulated once (finer towards the far end), then interpolated.
                    table = stats.gamma.ppf(_TAIL_GRID, d**2 / var, scale=var / d)
                    tails[block] = (float(cut), sign, table)

    # The inverse CDF is piecewise linear (each uniform piece) except in the gamma tails, which
    # are tabulated: one set of knots, then every draw is one np.interp.
    u_knots, x_knots = [np.array([0.0])], [np.array([tails[0][0] - tails[0][2][-1] if 0 in tails else lo[0]])]
    for i in range(b):
        share = cum[i] - start[i]
        if i in tails:
            cut, sign, table = tails[i]
            local = _TAIL_GRID if sign > 0 else 1 - _TAIL_GRID[::-1]
            x = cut + table if sign > 0 else cut - table[::-1]
            u_knots.append(start[i] + local[1:] * share)
            x_knots.append(x[1:])
        else:
            u_knots.append(np.array([start[i] + left[i] * share, cum[i]]))
            x_knots.append(np.array([mean[i], hi[i]]))
    uk, xk = np.concatenate(u_knots), np.concatenate(x_knots)

    def quantile(u: np.ndarray) -> np.ndarray:
        return np.interp(u, uk, xk)

    return centres, counts, quantile


def wasserstein_level(ref: Mapping, window: int, level: float) -> float:
    """Normed Wasserstein distance that a window of `window` rows without drift exceeds with probability `level`.

    `ref` is a numeric reference (format 2: cuts, counts, centres; format 1: a `quantiles`
    sketch). Returns 0 for a constant reference (std 0) or one too small to hold blocks.
    """
    std = float(ref.get("std") or 0.0)
    if std <= 0 or window < 1:
        return 0.0
    n_ref = max(int(ref.get("count", 0)), 1)
    rng = np.random.default_rng(_SEED)
    m = min(window, MAX_SIM_ROWS)
    if "centres" in ref:
        centres, weights, quantile = _block_quantile(ref)
        grid = (np.arange(10_000) + 0.5) / 10_000  # the rebuilt distribution itself, finely
        floor = float(wasserstein_to_blocks(quantile(grid)[None, :], centres, weights)[0]) / std
    elif "quantiles" in ref:
        centres = np.asarray(ref["quantiles"], dtype=np.float64)
        centres = centres[np.isfinite(centres)]
        weights = np.ones(len(centres))

        def quantile(u: np.ndarray) -> np.ndarray:
            return centres[np.minimum((u * len(centres)).astype(np.int64), len(centres) - 1)]

        floor = 0.0
    else:
        return 0.0
    per_chunk, sims = max(1, _CHUNK // (m + len(centres))), _simulations(level)
    values = []
    for at in range(0, sims, per_chunk):
        u = rng.random((min(per_chunk, sims - at), m))
        values.append(wasserstein_to_blocks(quantile(u), centres, weights) / std)
    q = float(np.quantile(np.concatenate(values), 1 - level))
    noise = max(q - floor, 0.0) * np.sqrt(m * (1 / window + 1 / n_ref))  # the reference's rows are a sample too
    return floor + float(noise)
