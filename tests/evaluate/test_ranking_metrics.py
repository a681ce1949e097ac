"""Ranking metrics (HR@K, NDCG@K, AUC) and the recommendation evaluation, against references:
sklearn's `ndcg_score` and `roc_auc_score`, direct per-user loops, and exact enumeration of tie
orders; the bias-only baseline against a direct ridge solve."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import ndcg_score, roc_auc_score

from trustforge.data import RawData, Schema
from trustforge.data import _interactions as inter
from trustforge.data._encoders import Preprocessor
from trustforge.data._schema import Column
from trustforge.evaluate._metrics import ranking_metrics
from trustforge.evaluate._recommend import fit_biases, interaction_metrics


def _counts(scores: np.ndarray, held: int, competitors: np.ndarray) -> tuple[int, int, int]:
    s = scores[held]
    c = scores[competitors]
    return int((c > s).sum()), int((c == s).sum()), len(c)


def test_ndcg_and_auc_match_sklearn_per_held_out_item():
    rng = np.random.default_rng(0)
    ks = (1, 5, 10, 20)
    higher, ties, cands, ndcg_ref, auc_ref = [], [], [], {k: [] for k in ks}, []
    for _ in range(200):
        n = int(rng.integers(2, 60))
        # Coarse scores, so ties (the held-out item's among them) are common.
        scores = rng.integers(0, 6, size=n).astype(float)
        held = int(rng.integers(n))
        others = np.array([j for j in range(n) if j != held])
        h, t, c = _counts(scores, held, others)
        higher.append(h), ties.append(t), cands.append(c)
        relevance = np.zeros(n)
        relevance[held] = 1
        for k in ks:
            ndcg_ref[k].append(ndcg_score([relevance], [scores], k=k))
        # AUC of the held-out item against its candidates: one positive among n.
        auc_ref.append(roc_auc_score(relevance, scores))
    m = ranking_metrics(np.array(higher), np.array(ties), np.array(cands), ks)
    for k in ks:
        assert m[f"ndcg@{k}"] == pytest.approx(np.mean(ndcg_ref[k]), abs=1e-12)
    assert m["auc"] == pytest.approx(np.mean(auc_ref), abs=1e-12)
    assert m["n"] == 200


def test_hit_rate_is_the_chance_of_a_top_k_place_over_every_order_of_the_ties():
    # Exact enumeration of tie orders: scores [3, 2, 2, 2, 2, 1], the held-out item is one of the 2s.
    scores = np.array([3.0, 2, 2, 2, 2, 1])
    held = 2
    for k in range(1, 7):
        tied = [j for j in range(6) if scores[j] == scores[held]]
        hits = 0
        perms = list(itertools.permutations(tied))
        for perm in perms:
            order = [0, *perm, 5]  # the 3 first, then the tied 2s in this order, then the 1
            hits += order.index(held) < k
        h, t, c = _counts(scores, held, np.array([0, 1, 3, 4, 5]))
        got = ranking_metrics(np.array([h]), np.array([t]), np.array([c]), (k,))[f"hr@{k}"]
        assert got == pytest.approx(hits / len(perms)), k


def test_without_ties_metrics_are_the_plain_rank_formulas():
    rng = np.random.default_rng(1)
    ranks = rng.integers(1, 100, size=500)  # 1-based rank among 100 items
    higher = ranks - 1
    m = ranking_metrics(higher, np.zeros_like(higher), np.full(len(higher), 99), (10,))
    assert m["hr@10"] == pytest.approx(np.mean(ranks <= 10))
    assert m["ndcg@10"] == pytest.approx(np.mean(np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0)))
    assert m["auc"] == pytest.approx(np.mean((99 - higher) / 99))


def test_a_constant_scorer_earns_chance():
    n = 100
    m = ranking_metrics(np.zeros(1000, dtype=int), np.full(1000, n - 1), np.full(1000, n - 1), (10,))
    assert m["hr@10"] == pytest.approx(10 / n)
    assert m["auc"] == pytest.approx(0.5)


def test_ranking_metrics_refuse_bad_counts():
    with pytest.raises(ValueError, match="higher \\+ ties"):
        ranking_metrics(np.array([5]), np.array([1]), np.array([5]))
    with pytest.raises(ValueError, match="one length"):
        ranking_metrics(np.array([1, 2]), np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="cut-offs"):
        ranking_metrics(np.array([1]), np.array([0]), np.array([5]), (0,))
    empty = ranking_metrics(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), (10,))
    assert empty["hr@10"] is None and empty["n"] == 0


# ---------------------------------------------------------------------------- the evaluation over users


def _fitted(train: pd.DataFrame, known_extra: pd.DataFrame | None = None, feedback: str = "implicit") -> Preprocessor:
    r = {"user": "u", "item": "i", "rating": "r" if feedback == "explicit" else None, "time": None, "feedback": feedback}
    schema = Schema(
        "interactions",
        "recommendation",
        "r" if feedback == "explicit" else "i",
        columns=[Column("u", "categorical"), Column("i", "categorical")],
        interactions=r,
    )
    pre = Preprocessor(schema).fit(RawData("interactions", schema.target, "train", frame=train))
    if known_extra is not None:
        inter.remember(pre, RawData("interactions", schema.target, "val", frame=known_extra))
    return pre


class _Table(torch.nn.Module):
    """A fixed score table (users × items) posing as a recommender."""

    def __init__(self, scores: np.ndarray):
        super().__init__()
        self.scores = torch.nn.Parameter(torch.tensor(scores, dtype=torch.float64), requires_grad=False)

    def forward(self, user, item):
        return self.scores[user, item]

    def score_all(self, user):
        return self.scores[user]


def test_each_held_out_item_is_ranked_among_the_items_its_user_has_not_met():
    rng = np.random.default_rng(3)
    users, items = [f"u{j}" for j in range(12)], [f"i{j}" for j in range(40)]
    train = pd.DataFrame([(u, i) for u in users for i in rng.choice(items, size=8, replace=False)], columns=["u", "i"])
    val = pd.DataFrame([(u, i) for u in users for i in rng.choice(items, size=1)], columns=["u", "i"])
    val = val.merge(train, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
    pre = _fitted(train, val)
    # Two held-out items per user where possible, plus one unknown item and one already-known pair.
    rows = []
    for u in users:
        met = set(train.i[train.u == u]) | set(val.i[val.u == u])
        rows += [(u, i) for i in rng.choice(sorted(set(pre.vocabularies["i"][1:]) - met), size=2, replace=False)]
    rows += [("u0", "never-seen"), (train.u[0], train.i[0])]
    test = pd.DataFrame(rows, columns=["u", "i"])
    n_users, n_items = (c.vocabulary for c in pre.schema.columns)
    scores = rng.integers(0, 4, size=(n_users, n_items)).astype(float)  # coarse: many ties
    got = interaction_metrics(pre, _Table(scores), RawData("interactions", "i", "test", frame=test))

    # Reference: a direct loop, sklearn's ndcg_score over each held-out item's candidate list.
    uvoc, ivoc = pre.vocabularies["u"], pre.vocabularies["i"]
    ndcg, hit_probability = [], []
    for u, i in rows[:-2]:
        ui, ii = uvoc.index(u), ivoc.index(i)
        met = set(train.i[train.u == u]) | set(val.i[val.u == u]) | set(test.i[test.u == u])
        cand = [ivoc.index(x) for x in ivoc[1:] if x not in met]
        s = np.array([scores[ui, ii]] + [scores[ui, c] for c in cand])
        rel = np.zeros(len(s))
        rel[0] = 1
        ndcg.append(ndcg_score([rel], [s], k=10))
        above, tied = int((s[1:] > s[0]).sum()), int((s[1:] == s[0]).sum())
        hit_probability.append(min(max(10 - above, 0), tied + 1) / (tied + 1))
    assert got["n"] == len(rows) - 2
    assert got["skipped_unknown"] == 1 and got["skipped_known"] == 1
    assert got["ndcg@10"] == pytest.approx(np.mean(ndcg), abs=1e-12)
    assert got["hr@10"] == pytest.approx(np.mean(hit_probability), abs=1e-12)


def test_explicit_metrics_are_rmse_of_clipped_ratings_with_the_unknown_counted():
    train = pd.DataFrame({"u": ["a", "a", "b", "b"], "i": ["x", "y", "x", "z"], "r": [1.0, 5.0, 4.0, 3.0]})
    pre = _fitted(train, feedback="explicit")
    mean = train.r.mean()
    test = pd.DataFrame({"u": ["a", "b", "c"], "i": ["z", "y", "x"], "r": [2.0, 4.0, 5.0]})
    n_users, n_items = (c.vocabulary for c in pre.schema.columns)
    scores = np.full((n_users, n_items), 10.0)  # far above the range: clipped to the training maximum, 5
    got = interaction_metrics(pre, _Table(scores - mean), RawData("interactions", "r", "test", frame=test))
    assert got["rmse"] == pytest.approx(math.sqrt(((5 - 2) ** 2 + (5 - 4) ** 2 + 0) / 3))
    assert got["unknown_users"] == 1 and got["unknown_items"] == 0 and got["n"] == 3


def test_bias_baseline_solves_the_ridge_problem():
    rng = np.random.default_rng(4)
    n_users, n_items, n = 15, 25, 300
    user, item = rng.integers(1, n_users, n), rng.integers(1, n_items, n)
    residual = rng.normal(size=n)
    ru, ri = 3.0, 7.0
    b_u, b_i = fit_biases(user, item, residual, n_users, n_items, reg_user=ru, reg_item=ri, iterations=2000, tol=0.0)
    # Direct solve of the normal equations of Σ (r - b_u - b_i)² + ru Σ b_u² + ri Σ b_i² (index 0 excluded).
    x = np.zeros((n, n_users - 1 + n_items - 1))
    x[np.arange(n), user - 1] = 1
    x[np.arange(n), n_users - 1 + item - 1] = 1
    reg = np.diag([ru] * (n_users - 1) + [ri] * (n_items - 1))
    solution = np.linalg.solve(x.T @ x + reg, x.T @ residual)
    np.testing.assert_allclose(b_u[1:], solution[: n_users - 1], atol=1e-8)
    np.testing.assert_allclose(b_i[1:], solution[n_users - 1 :], atol=1e-8)
    assert b_u[0] == 0 and b_i[0] == 0
