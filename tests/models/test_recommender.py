"""Recommenders (matrix factorisation, two towers): shapes, the unknown-id fallback, the BPR
pair output, the batch penalty, and that they learn on generated latent-factor interactions
(below the bias-only baseline on ratings, above popularity on ranking)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from trustforge.data import prepare
from trustforge.evaluate import task_of
from trustforge.evaluate._recommend import recommendation_metrics
from trustforge.models import MatrixFactorization, TwoTower, build_model
from trustforge.spec import load_spec
from trustforge.train import Trainer, seeded


def latent_interactions(users: int = 150, items: int = 120, per_user: int = 40, seed: int = 0) -> pd.DataFrame:
    """Users × items from 3 latent factors with a popularity skew; ratings 1..5 from the same factors."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=(users, 3)), rng.normal(size=(items, 3))
    popularity = rng.normal(0.0, 1.0, size=items)
    user_bias = rng.normal(0.0, 0.4, size=users)
    rows = []
    for u in range(users):
        affinity = p[u] @ q.T + popularity  # who meets what: taste and popularity
        chosen = rng.choice(items, size=per_user, replace=False, p=np.exp(affinity) / np.exp(affinity).sum())
        for t, i in enumerate(rng.permutation(chosen)):
            rating = np.clip(np.round(3.2 + user_bias[u] + 0.3 * popularity[i] + 0.6 * p[u] @ q[i] + rng.normal(0, 0.5)), 1, 5)
            rows.append((f"u{u}", f"i{i}", float(rating), t))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "time"])


def _spec(path, feedback: str, model: dict, **train) -> object:
    return load_spec(
        {
            "name": "rec",
            "task": "recommendation",
            "data": {
                "source": f"csv:{path}",
                "interactions": {
                    "user": "user",
                    "item": "item",
                    "rating": "rating",
                    "time": "time",
                    "feedback": feedback,
                    "test": 4,
                    "validation": 2,
                },
            },
            "model": model,
            "train": {
                "max_epochs": 15,
                "batch_size": 256,
                "optimizer": {"name": "adam", "lr": 0.01},
                "seed": 3,
                "early_stopping": {"monitor": "val_loss", "patience": 3},
                **train,
            },
        }
    )


def _fit(spec, run_dir):
    run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare(spec)
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    trainer = Trainer.from_spec(spec, data, task_of(spec), run_dir=run_dir, callbacks=(), progress=False, resume_meta=None)
    trainer.fit(model, data.train, data.validation)
    return data, model


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "interactions.csv"
    latent_interactions().to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------- the architectures


@pytest.mark.parametrize(
    "make",
    [
        lambda: MatrixFactorization(7, 11, 4),
        lambda: TwoTower(7, 11, embedding_dim=6, hidden=[5], output_dim=4),
    ],
    ids=["mf", "two_tower"],
)
def test_shapes_pairs_and_score_all_agree(make):
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        model.global_bias.fill_(0.3)
        model.item_bias.weight[1:].normal_()
        model.user_bias.weight[1:].normal_()
    user, item, neg = torch.tensor([1, 2, 6]), torch.tensor([3, 10, 4]), torch.tensor([5, 5, 1])
    with torch.no_grad():
        s = model(user, item)
        assert s.shape == (3,)
        torch.testing.assert_close(model(user, item, neg), s - model(user, neg))  # BPR's pairwise logit
        table = model.score_all(user)
    assert table.shape == (3, 11)
    torch.testing.assert_close(table[torch.arange(3), item], s)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MatrixFactorization(5, 6, 3),
        lambda: TwoTower(5, 6, embedding_dim=4, hidden=[4], output_dim=3),
    ],
    ids=["mf", "two_tower"],
)
def test_an_unknown_id_is_scored_by_the_biases_alone_and_stays_unknown(make):
    torch.manual_seed(1)
    model = make()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(5):  # training touches index 0 too: its row must not move
        out = model(torch.tensor([0, 1, 2, 0]), torch.tensor([1, 0, 2, 3]))
        (out.pow(2).mean() - out.mean() + model.penalty()).backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        for table in [
            t
            for t in (
                getattr(model, n, None)
                for n in ("user_factors", "item_factors", "user_embedding", "item_embedding", "user_bias", "item_bias")
            )
            if t is not None
        ]:
            assert torch.count_nonzero(table.weight[0]) == 0
        g = model.global_bias
        torch.testing.assert_close(model(torch.tensor([0]), torch.tensor([3])), g + model.item_bias.weight[3])
        torch.testing.assert_close(model(torch.tensor([2]), torch.tensor([0])), g + model.user_bias.weight[2])
        torch.testing.assert_close(model(torch.tensor([0]), torch.tensor([0])), g.reshape(1))


def test_the_penalty_is_the_l2_of_the_rows_a_batch_used_and_only_in_training():
    model = MatrixFactorization(4, 5, 2, l2=0.5, bias_l2=0.25)
    with torch.no_grad():
        model.user_bias.weight[1] = 2.0
        model.item_bias.weight[2] = 1.0
    user, item, neg = torch.tensor([1, 1]), torch.tensor([2, 3]), torch.tensor([4, 4])
    model(user, item, neg)
    p, q, q_j = model.user_factors(user), model.item_factors(item), model.item_factors(neg)
    squares = (p.pow(2).sum(-1) + q.pow(2).sum(-1) + q_j.pow(2).sum(-1)).mean()
    biases = torch.tensor([2.0**2 + 1.0**2, 2.0**2]).mean()
    torch.testing.assert_close(model.penalty(), 0.5 * squares + 0.25 * biases)
    assert model.penalty() is None  # handed over once
    model.eval()
    model(user, item)
    assert model.penalty() is None


def test_build_model_refuses_a_recommender_for_other_data_and_the_reverse():
    from trustforge.data import Schema
    from trustforge.data._schema import Column
    from trustforge.errors import ModelError

    spec = load_spec({"task": "recommendation", "data": {"source": "builtin:movielens_small"}})
    table = Schema("table", "regression", "y", columns=[Column("x", "numeric")])
    with pytest.raises(ModelError, match="interactions"):
        build_model(spec, table)
    unfitted = Schema("interactions", "recommendation", "r", columns=[Column("u", "categorical"), Column("i", "categorical")])
    with pytest.raises(ModelError, match="no fitted vocabulary"):
        build_model(spec, unfitted)


# ---------------------------------------------------------------------------- learning


def test_mf_learns_ratings_below_the_bias_only_baseline(csv, tmp_path):
    spec = _spec(csv, "explicit", {"kind": "mf", "factors": 8, "l2": 0.05}, early_stopping={"monitor": "val_rmse", "patience": 3})
    data, model = _fit(spec, tmp_path)
    m = recommendation_metrics(data, model)
    assert m["rmse"] < m["baseline_bias_rmse"] - 0.03, m
    assert m["n"] == 150 * 4  # every user's 4 latest ratings; unknown items rated by the fallback


@pytest.mark.parametrize("kind", ["mf", "two_tower"])
def test_bpr_ranks_held_out_items_above_popularity(csv, tmp_path, kind):
    model = (
        {"kind": "mf", "factors": 16, "l2": 0.01}
        if kind == "mf"
        else {"kind": "two_tower", "embedding_dim": 16, "hidden": [16], "output_dim": 16, "l2": 0.01}
    )
    spec = _spec(csv, "implicit", model)
    data, net = _fit(spec, tmp_path)
    m = recommendation_metrics(data, net)
    assert m["n"] > 500
    assert m["ndcg@10"] > m["baseline_popularity_ndcg@10"] + 0.03, m
    assert m["hr@10"] > m["baseline_popularity_hr@10"] + 0.05, m
    assert m["auc"] > m["baseline_popularity_auc"], m


def test_training_is_reproducible_from_the_seed(csv, tmp_path):
    spec = _spec(csv, "implicit", {"kind": "mf", "factors": 4}, max_epochs=2)
    _, a = _fit(spec, tmp_path / "a")
    _, b = _fit(spec, tmp_path / "b")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
