"""Recommendation: the model's metrics on held-out interactions and the baselines beside it.

- explicit feedback: RMSE and MAE of the predicted ratings (clipped to the training range),
  beside the bias-only model μ + b_u + b_i. The baseline is fitted on the training split by
  alternating ridge updates of the biases (Koren, 2010, §2.1), its two regularisation weights
  chosen on the validation split from a grid: a tuned baseline, not a straw man.
- implicit feedback: each held-out (user, item) is ranked among every item the user has not
  met: all items known from training, less the user's training and validation items and its
  other held-out items (full ranking, no sampled candidates). HR@K, NDCG@K and AUC come from
  `ranking_metrics`; the popularity baseline ranks the same candidates by training counts.
  A held-out item (or user) training never saw cannot be ranked: it is counted
  (`skipped_unknown`) and left out, as is a pair the model already knows (`skipped_known`).

Both baselines are measured in the same run, on the same split. Callers pass the network
(evaluate/ imports neither models/ nor package/): it is called as `module(user, item)` and
has `score_all(user) -> (B, items)`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from trustforge.data import (
    RawData,
    TensorData,
    encode_interactions,
    interaction_popularity,
    interaction_ratings,
    interaction_targets,
    known_interactions,
)
from trustforge.evaluate._metrics import ranking_metrics, regression_metrics

__all__ = [
    "KS",
    "validation_metrics",
    "interaction_metrics",
    "recommendation_metrics",
    "fit_biases",
    "bias_predictions",
    "held_out_ranks",
    "pair_scores",
    "BIAS_GRID",
]

KS = (5, 10, 20)
# Ridge weights tried for the bias-only baseline (user, item), in ratings² units: from nearly
# unregularised to Koren's Netflix values (10, 25) and beyond.
BIAS_GRID = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0)
_CHUNK = 256  # held-out pairs ranked at once: (chunk, items) scores in memory


def validation_metrics(feedback: str) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
    """What the trainer logs on validation each epoch.

    Explicit: RMSE and MAE of the ratings (unclipped; outputs and targets share the offset).
    Implicit: AUC of each held-out item against its one fixed negative (outputs are the score
    differences), ties counting half.
    """

    def fn(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        out = out.reshape(-1).double()
        if feedback == "explicit":
            e = out - target.reshape(-1).double()
            return {"rmse": float(e.pow(2).mean().sqrt()), "mae": float(e.abs().mean())}
        return {"auc": float(((out > 0).double() + 0.5 * (out == 0).double()).mean())}

    return fn


def interaction_metrics(pre: Any, module: torch.nn.Module, raw: RawData) -> dict[str, Any]:
    """The model's metrics on interactions `raw` (what `Model.evaluate` reports).

    Implicit feedback comes with the popularity baseline (`baseline_popularity_*`), which the
    package can rank by itself; the bias-only baseline of explicit feedback is fitted on the
    training split, so only a run reports it (`recommendation_metrics`).

    Raises:
        DataError: a column the model needs (ids; the rating for explicit feedback) is missing.
    """
    user, item = (t.numpy() for t in encode_interactions(pre, raw))
    if pre.schema.interactions.feedback == "explicit":
        y = interaction_targets(pre, raw).numpy().astype(np.float64) + pre.tensors["target.mean"].numpy()
        pred = interaction_ratings(pre, pair_scores(module, user, item))
        m: dict[str, Any] = dict(regression_metrics(y, pred))
        m.update(n=int(len(y)), unknown_users=int((user == 0).sum()), unknown_items=int((item == 0).sum()))
        return m
    device = _device(module)
    m = _ranking(lambda u: module.score_all(u.to(device)).cpu(), pre, user, item)
    popularity = torch.from_numpy(interaction_popularity(pre).astype(np.float64))
    base = _ranking(lambda u: popularity.expand(len(u), -1), pre, user, item)
    m.update({f"baseline_popularity_{k}": v for k, v in base.items() if k not in ("n", "skipped_unknown", "skipped_known")})
    return m


def recommendation_metrics(data: Any, module: torch.nn.Module) -> dict[str, Any]:
    """The test metrics of a run: the model's, and its baseline's beside them (`baseline_*`).

    Args:
        data: the run's `Prepared` data (interactions).
        module: the trained network.
    """
    pre = data.preprocessor
    m = interaction_metrics(pre, module, data.test_raw)
    if pre.schema.interactions.feedback == "explicit":
        user, item = (t.numpy() for t in encode_interactions(pre, data.test_raw))
        base = _bias_baseline(pre, data.train, data.validation, user, item, data.test.target.numpy())
        m.update({f"baseline_bias_{k}": v for k, v in base.items()})
    return m


# ---------------------------------------------------------------------------- explicit


def fit_biases(
    user: np.ndarray,
    item: np.ndarray,
    residual: np.ndarray,
    users: int,
    items: int,
    *,
    reg_user: float,
    reg_item: float,
    iterations: int = 50,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """User and item biases minimising Σ (r - b_u - b_i)² + reg_user Σ b_u² + reg_item Σ b_i².

    Alternating exact updates (each a closed-form ridge solution given the other), from zero;
    the objective is convex, so they converge to its minimum. They stop after `iterations`, or
    once no bias moves by more than `tol` (ratings units). Index 0 (unknown) stays 0.

    Args:
        user, item: indices (N,); residual: rating - global mean (N,).
        users, items: vocabulary sizes.
    """
    n_u = np.bincount(user, minlength=users).astype(np.float64)
    n_i = np.bincount(item, minlength=items).astype(np.float64)
    b_u, b_i = np.zeros(users), np.zeros(items)
    for _ in range(iterations):
        before = b_u
        b_i = np.bincount(item, weights=residual - b_u[user], minlength=items) / (reg_item + n_i)
        b_i[0] = 0.0
        b_u = np.bincount(user, weights=residual - b_i[item], minlength=users) / (reg_user + n_u)
        b_u[0] = 0.0
        if np.max(np.abs(b_u - before)) <= tol:  # b_i follows from b_u, so b_u settling is enough
            break
    return b_u, b_i


def _bias_baseline(
    pre: Any, train: TensorData, validation: TensorData | None, user: np.ndarray, item: np.ndarray, test_residual: np.ndarray
) -> dict[str, Any]:
    pred, ru, ri = bias_predictions(pre, train, validation, user, item)
    y = test_residual.astype(np.float64) + pre.tensors["target.mean"].numpy()
    m = regression_metrics(y, pred)
    return {"rmse": m["rmse"], "mae": m["mae"], "r2": m["r2"], "reg_user": ru, "reg_item": ri}


def bias_predictions(
    pre: Any, train: TensorData, validation: TensorData | None, user: np.ndarray, item: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """The bias-only model's ratings of the pairs (user, item), fitted on `train` with its ridge
    weights chosen on `validation` (the grid's RMSE there; Koren's (10, 25) without one), and
    the weights (reg_user, reg_item)."""
    users, items = (c.vocabulary for c in pre.schema.columns)
    tu, ti = (t.numpy() for t in train.inputs)
    tr = train.target.numpy().astype(np.float64)  # rating - training mean
    grid = [(ru, ri) for ru in BIAS_GRID for ri in BIAS_GRID] if validation is not None else [(10.0, 25.0)]
    best = None
    for ru, ri in grid:
        b_u, b_i = fit_biases(tu, ti, tr, users, items, reg_user=ru, reg_item=ri)
        if validation is None:
            best = (0.0, ru, ri, b_u, b_i)
            break
        vu, vi = (t.numpy() for t in validation.inputs)
        pred = interaction_ratings(pre, b_u[vu] + b_i[vi])
        y = validation.target.numpy().astype(np.float64) + pre.tensors["target.mean"].numpy()
        rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
        if best is None or rmse < best[0]:
            best = (rmse, ru, ri, b_u, b_i)
    _, ru, ri, b_u, b_i = best
    return interaction_ratings(pre, b_u[user] + b_i[item]), ru, ri


@torch.no_grad()
def pair_scores(module: torch.nn.Module, user: np.ndarray, item: np.ndarray, batch: int = 8192) -> np.ndarray:
    module.eval()
    device = _device(module)
    out = [
        module(torch.from_numpy(user[i : i + batch]).to(device), torch.from_numpy(item[i : i + batch]).to(device)).float().cpu()
        for i in range(0, len(user), batch)
    ]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def _device(module: torch.nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---------------------------------------------------------------------------- implicit


def _ranking(score_all: Callable[[torch.Tensor], torch.Tensor], pre: Any, user: np.ndarray, item: np.ndarray) -> dict[str, Any]:
    """Rank each held-out (user, item) among the user's candidates; `ranking_metrics` of the ranks."""
    higher, ties, cands, unknown, already = held_out_ranks(score_all, pre, user, item)
    m: dict[str, Any] = dict(ranking_metrics(higher, ties, cands, KS))
    m.update(skipped_unknown=unknown, skipped_known=already)
    return m


def held_out_ranks(
    score_all: Callable[[torch.Tensor], torch.Tensor], pre: Any, user: np.ndarray, item: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Per rankable held-out (user, item), sorted by user then item: how many candidates score
    higher, how many tie, how many compete; then the counts of pairs skipped as unknown and as
    already known. Any two scorers rank the same pairs in the same order (the bootstrap pairs them)."""
    stride = pre.schema.columns[1].vocabulary
    known = known_interactions(pre)
    keys = user * stride + item
    unknown = (user == 0) | (item == 0)
    already = ~unknown & np.isin(keys, known)
    keep = ~unknown & ~already
    held = np.unique(keys[keep])  # each user's held-out items: they do not compete with each other
    user, item = user[keep], item[keep]
    order = np.lexsort((item, user))
    user, item = user[order], item[order]
    higher, ties, cands = (np.zeros(len(user), dtype=np.int64) for _ in range(3))
    for start in range(0, len(user), _CHUNK):
        u, i = user[start : start + _CHUNK], item[start : start + _CHUNK]
        ids, inverse = np.unique(u, return_inverse=True)
        with torch.no_grad():
            scores = score_all(torch.from_numpy(ids)).double().numpy()[inverse]  # (P, I)
        excluded = np.zeros(scores.shape, dtype=bool)
        excluded[:, 0] = True
        _mark(excluded, known, u, stride)
        _mark(excluded, held, u, stride)
        own = scores[np.arange(len(u)), i][:, None]
        compete = ~excluded
        higher[start : start + len(u)] = ((scores > own) & compete).sum(axis=1)
        ties[start : start + len(u)] = ((scores == own) & compete).sum(axis=1)
        cands[start : start + len(u)] = compete.sum(axis=1)
    return higher, ties, cands, int(unknown.sum()), int(already.sum())


def _mark(mask: np.ndarray, keys: np.ndarray, user: np.ndarray, stride: int) -> None:
    """Set mask[p, item] for every key (user[p], item) in the sorted `keys`."""
    lo, hi = np.searchsorted(keys, user * stride), np.searchsorted(keys, (user + 1) * stride)
    lengths = hi - lo
    rows = np.repeat(np.arange(len(user)), lengths)
    at = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(lengths.sum())
    mask[rows, keys[at] - user[rows] * stride] = True
