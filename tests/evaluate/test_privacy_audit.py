"""Membership-inference audit (`evaluate._privacy_audit`): its ROC figures equal scikit-learn's,
the attack finds an overfitted model's training rows and much less of a regularised one's, it
is in the evidence, the report and the card, and it says why it is skipped where it does not apply."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score, roc_curve

import trustforge
from trustforge.evaluate import privacy_audit, training_privacy, write_report
from trustforge.evaluate._privacy_audit import roc, roc_auc, tpr_at_fpr
from trustforge.spec import EvaluateSpec, PrivacyAuditSpec

QUIET = {"speed": False, "explain": False, "corruptions": False, "robustness": False}


def test_auc_and_roc_equal_sklearn_with_ties():
    rng = np.random.default_rng(0)
    members = np.round(rng.normal(0.3, 1, 300), 1)  # rounded: many tied scores across the two groups
    outsiders = np.round(rng.normal(0, 1, 500), 1)
    y = np.r_[np.ones(300), np.zeros(500)]
    s = np.r_[members, outsiders]
    assert roc_auc(members, outsiders) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr = roc(members, outsiders)
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)


def test_tpr_at_one_percent_false_positives_on_a_hand_made_case():
    # 200 outsiders score 0..199; members: 10 above every outsider, 10 between the two highest
    # outsiders and the rest, 180 at the bottom. At FPR <= 1 % (2 of 200 outsiders) the threshold may
    # pass the two highest outsiders, so 20 members are caught: TPR 0.1; at 0 false positives, 0.05.
    outsiders = np.arange(200.0)
    members = np.r_[np.full(10, 500.0), np.full(10, 197.5), np.full(180, -1.0)]
    fpr, tpr = roc(members, outsiders)
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(0.10)
    assert tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(0.05)
    assert tpr_at_fpr(fpr, tpr, 0.004) == pytest.approx(0.05)  # < 1 false positive allowed: the top members only


def _digits_csv(tmp_path: Path, rows: int) -> Path:
    """The first `rows` of sklearn's digits as a table (columns constant in the subset left out)."""
    x, y = load_digits(return_X_y=True, as_frame=True)
    frame = x.iloc[:rows].copy()
    frame = frame[[c for c in frame.columns if frame[c].nunique() > 2]]
    frame["target"] = y.iloc[:rows].astype(str).to_numpy()
    path = tmp_path / "digits.csv"
    frame.to_csv(path, index=False)
    return path


def _audit(result) -> dict:
    return json.loads((result.run_dir / "evidence.json").read_text())["privacy_audit"]


@pytest.fixture(scope="module")
def overfit(tmp_path_factory):
    """An MLP that memorises 110 digits (60 epochs, no early stopping, no weight decay; about 5 s)."""
    tmp = tmp_path_factory.mktemp("overfit")
    spec = {
        "name": "digits-overfit",
        "data": {
            "source": f"csv:{_digits_csv(tmp, 1000)}",
            "target": "target",
            "split": {"test": 0.84, "validation": 0.05, "stratify": True},
        },
        "model": {"kind": "mlp", "hidden": [256]},
        "train": {
            "max_epochs": 60,
            "batch_size": 32,
            "early_stopping": None,
            "seed": 1,
            "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
        },
        "evaluate": QUIET,
    }
    from trustforge.settings import Settings

    return trustforge.run(spec, progress=False, settings=Settings.from_env(home=tmp / "ws"))


def test_the_attack_finds_the_training_rows_of_an_overfitted_model(overfit):
    audit = _audit(overfit)
    assert audit["members"] == audit["non_members"] == audit["of_train"] >= 100  # balanced: every training row
    assert audit["training"] == {"private": False}
    loss, conf = audit["attacks"]["loss"], audit["attacks"]["confidence"]
    # Measured 0.607 (95 % 0.533-0.682) by the loss and 0.631 (0.558-0.705) by the calibrated
    # confidence on this seed: chance (0.5) lies below both intervals.
    assert loss["auc"] == pytest.approx(0.607, abs=0.03) and loss["auc_interval"][0] > 0.5
    assert conf["auc"] == pytest.approx(0.631, abs=0.03) and conf["auc_interval"][0] > 0.5
    assert loss["yeom"]["advantage"] > 0.05  # measured 0.118
    assert loss["tpr_at_fpr"]["0.01"] is not None and loss["tpr_at_fpr"]["0.001"] is None  # ~110 test rows resolve 1 %, not 0.1 %
    assert "standardised per class" in conf["note"]
    assert audit["seconds"] > 0  # its cost is recorded; how long it may take is a bench figure, not a test


def test_a_model_that_memorises_noisy_labels_leaks_clearly(tmp_path, workspace):
    """The issue's must-hold, with a margin: the same 110-row MLP on digits whose labels are 20 % wrong
    (seeded) has to memorise those rows, and the attacks see it far above chance (about 5 s)."""
    path = _digits_csv(tmp_path, 1000)
    frame = pd.read_csv(path)
    rng = np.random.default_rng(0)
    flip = rng.random(len(frame)) < 0.2
    frame.loc[flip, "target"] = (frame.loc[flip, "target"] + rng.integers(1, 10, int(flip.sum()))) % 10
    frame.to_csv(path, index=False)
    spec = {
        "name": "digits-noisy-overfit",
        "data": {"source": f"csv:{path}", "target": "target", "split": {"test": 0.84, "validation": 0.05, "stratify": True}},
        "model": {"kind": "mlp", "hidden": [256]},
        "train": {
            "max_epochs": 60,
            "batch_size": 32,
            "early_stopping": None,
            "seed": 1,
            "optimizer": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
        },
        "evaluate": QUIET,
    }
    audit = _audit(trustforge.run(spec, progress=False, register=False))
    loss, conf = audit["attacks"]["loss"], audit["attacks"]["confidence"]
    # Measured 0.729 (95 % 0.662-0.795) by the loss, 0.719 (0.652-0.786) by the confidence, whose TPR at 1 % FPR is 0.091;
    # Yeom advantage 0.227. Chance lies far below both intervals.
    assert loss["auc"] >= 0.7 and loss["auc_interval"][0] > 0.6 and conf["auc"] >= 0.69 and conf["auc_interval"][0] > 0.6
    assert conf["tpr_at_fpr"]["0.01"]["tpr"] >= 0.05 and loss["yeom"]["advantage"] > 0.15


def test_the_audit_is_callable_on_a_model_and_seeded(overfit):
    model = overfit.load_model()
    from trustforge.data import prepare

    data = prepare(overfit.spec)
    again = privacy_audit(model, data, PrivacyAuditSpec(attacks=["loss"], rows=50), seed=3)
    assert again["members"] == 50 and list(again["attacks"]) == ["loss"]
    assert again["attacks"]["loss"]["tpr_at_fpr"] == {"0.01": None, "0.001": None}  # 50 test rows resolve neither rate
    assert privacy_audit(model, data, PrivacyAuditSpec(attacks=["loss"], rows=50), seed=3)["attacks"] == again["attacks"]


def test_a_regularised_model_leaks_less(tmp_path, workspace):
    """The digits images, half for training, weight decay and early stopping: near chance."""
    spec = {
        "name": "digits-regular",
        "data": {"source": "builtin:digits", "split": {"test": 0.5, "validation": 0.1, "stratify": True}},
        "model": {"kind": "mlp", "hidden": [32], "dropout": 0.3},
        "train": {"max_epochs": 10, "seed": 1, "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.1}},
        "evaluate": QUIET,
    }
    audit = _audit(trustforge.run(spec, progress=False))
    # Measured 0.516 (loss) and 0.522 (confidence) on 719 rows a side.
    for name in ("loss", "confidence"):
        assert abs(audit["attacks"][name]["auc"] - 0.5) < 0.05, (name, audit["attacks"][name]["auc"])
    assert audit["attacks"]["loss"]["tpr_at_fpr"]["0.01"]["tpr"] < 0.05


def test_the_report_draws_the_roc_and_the_card_states_the_auc(overfit):
    write_report(overfit.run_dir)
    html = (overfit.run_dir / "report.html").read_text()
    assert 'data-plot="membership_roc"' in html and "Privacy: membership inference" in html
    card = (overfit.run_dir / "model_card.md").read_text()
    auc = _audit(overfit)["attacks"]["loss"]["auc"]
    assert f"loss threshold (Yeom et al.) AUC {auc:.3g}" in card and "trained without differential privacy" in card


def test_the_spec_switches_and_checks_the_audit():
    assert EvaluateSpec().privacy_audit.attacks == ["loss", "confidence"]
    assert EvaluateSpec.model_validate({"privacy_audit": False}).privacy_audit is None
    assert EvaluateSpec.model_validate({"privacy_audit": True}).privacy_audit.rows == 2000
    for bad, field in (({"rows": 5}, "rows"), ({"attacks": ["shadow"]}, "attacks"), ({"attacks": []}, "attacks"), ({"row": 10}, "row")):
        with pytest.raises(Exception, match=field) as info:
            EvaluateSpec.model_validate({"privacy_audit": bad})
        assert "privacy_audit" in str(info.value)


def test_training_privacy_reads_the_spec_defensively():
    class Privacy:
        def model_dump(self):
            return {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0, "noise_multiplier": None}

    spec = type("S", (), {"train": type("T", (), {"privacy": Privacy()})()})()
    assert training_privacy(spec, {"privacy": {"epsilon_spent": 2.98}}) == {
        "private": True,
        "epsilon": 3.0,
        "delta": 1e-5,
        "max_grad_norm": 1.0,
        "spent": {"epsilon_spent": 2.98},
    }
    assert training_privacy(type("S", (), {"train": object()})()) == {"private": False}


def test_a_recommender_records_why_it_is_not_audited(tmp_path, workspace):
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 1200), rng.integers(0, 30, 1200)
    path = tmp_path / "ratings.csv"
    pd.DataFrame({"user": users, "item": items, "rating": rng.integers(1, 6, 1200), "t": np.arange(1200)}).to_csv(path, index=False)
    spec = {
        "name": "tiny-mf",
        "task": "recommendation",
        "data": {
            "source": f"csv:{path}",
            "interactions": {"user": "user", "item": "item", "rating": "rating", "time": "t", "feedback": "explicit"},
        },
        "model": {"kind": "mf", "factors": 4},
        "train": {"max_epochs": 1, "seed": 0},
        "evaluate": QUIET,
    }
    result = trustforge.run(spec, progress=False)
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    assert "privacy_audit" not in evidence and "no per-row loss" in evidence["skipped"]["privacy_audit"]


def test_logit_confidence_is_the_log_odds_of_the_true_class():
    from trustforge.evaluate._privacy_audit import _logit_confidence

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [40.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    p = torch.softmax(logits.double(), 1)[torch.arange(3), y].numpy()
    got = _logit_confidence(logits, y)
    np.testing.assert_allclose(got[:2], np.log(p[:2] / (1 - p[:2])), rtol=1e-5)
    assert got[2] == pytest.approx(40.0 - np.log(2.0), rel=1e-5)  # finite where p rounds to 1
    one = torch.tensor([[1.5], [1.5]])  # one logit: sigmoid(z) is the positive class's probability
    np.testing.assert_allclose(_logit_confidence(one, torch.tensor([1, 0])), [1.5, -1.5])


def test_a_regression_model_is_audited_by_its_squared_error():
    """A stand-in model that returns its training targets exactly and misses test targets: the loss attack separates them."""
    rng = np.random.default_rng(0)

    class Split(SimpleNamespace):
        def __len__(self):
            return len(self.target)

    def split(n, start):
        x = torch.arange(start, start + n, dtype=torch.float32)[:, None]
        return Split(inputs=(x,), target=torch.as_tensor(rng.normal(size=n), dtype=torch.float32))

    train, test = split(150, 0), split(150, 1000)
    truth = {int(x): float(t) for s in (train, test) for x, t in zip(s.inputs[0][:, 0], s.target)}

    def forward(inputs, batch_size=512):
        x = inputs[0][:, 0]
        return torch.tensor([[truth[int(v)] + (0.0 if v < 1000 else 1.0)] for v in x])

    model = SimpleNamespace(
        task=SimpleNamespace(name="regression", probabilities=False), forward=forward, spec=None, manifest={}, classes=None
    )
    audit = privacy_audit(model, SimpleNamespace(train=train, test=test, validation=None), PrivacyAuditSpec(), seed=0)
    assert list(audit["attacks"]) == ["loss"]  # the calibrated confidence needs class probabilities
    assert audit["attacks"]["loss"]["auc"] == 1.0 and audit["attacks"]["loss"]["tpr_at_fpr"]["0.01"]["tpr"] == 1.0


# ---------------------------------------------------------------------------- a private model beside its non-private twin


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A private MLP on digits (3 epochs at ε 3) and its non-private twin, audited side by side (about 6 s)."""
    from trustforge.settings import Settings

    tmp = tmp_path_factory.mktemp("private")
    spec = {
        "name": "digits-private-tiny",
        "data": {"source": "builtin:digits", "split": {"test": 0.3, "validation": 0.1, "stratify": True}},
        "model": {"kind": "mlp", "hidden": [64]},
        "train": {
            "max_epochs": 3,
            "batch_size": 128,
            "seed": 1,
            "early_stopping": None,
            "optimizer": {"name": "adamw", "lr": 0.01},
            "privacy": {"epsilon": 3},
        },
        "evaluate": QUIET,
    }
    return trustforge.run(spec, progress=False, register=False, settings=Settings.from_env(home=tmp / "ws"))


def test_a_private_run_audits_its_non_private_twin_on_the_same_rows(private):
    audit, m = _audit(private), private.metrics
    twin = audit["plain_twin"]
    assert audit["training"]["private"] and audit["training"]["epsilon"] == 3 and "compare" not in audit["training"]
    assert twin["training"] == {"private": False} and set(twin["attacks"]) == set(audit["attacks"]) == {"loss", "confidence"}
    # both accuracies: the private one is the run's own test accuracy; the twin, the same network without DP-SGD, is better
    assert audit["metric"] == {"name": "accuracy", "value": pytest.approx(m["accuracy"], abs=1e-12)}
    assert twin["metric"]["name"] == "accuracy" and twin["metric"]["value"] > m["accuracy"] + 0.03  # measured 0.937 against 0.865
    # the twin's cost is reported: its fit seconds, and DP-SGD's seconds per epoch over the twin's
    assert m["plain_twin_fit_seconds"] > 0 and m["plain_twin_epochs_trained"] == 3 and m["dp_sgd_cost_ratio"] > 1
    for name in ("loss", "confidence"):  # 3 epochs at ε 3, and a plain 3-epoch MLP: neither leaks measurably
        assert abs(audit["attacks"][name]["auc"] - 0.5) < 0.05 and abs(twin["attacks"][name]["auc"] - 0.5) < 0.05
        assert twin["attacks"][name]["tpr_at_fpr"]["0.01"] is not None and len(twin["attacks"][name]["roc"]["fpr"]) > 20


def test_the_twin_audit_is_the_models_own_audit_when_the_twin_is_the_model(overfit):
    """The twin is attacked on the very rows the model is: handed the model's own network, the
    twin's accuracy is the model's (a temperature does not move the argmax), and where the package
    serves no temperature its attacks' figures are the model's own."""
    from trustforge.data import prepare

    model = overfit.load_model()
    data = prepare(overfit.spec)
    settings = PrivacyAuditSpec()
    alone = privacy_audit(model, data, settings, seed=1)
    both = privacy_audit(model, data, settings, seed=1, plain_twin=model.module)
    assert both["attacks"] == alone["attacks"]  # attacking a twin leaves the model's own figures as they were
    assert both["metric"]["value"] == both["plain_twin"]["metric"]["value"] == pytest.approx(overfit.metrics["accuracy"], abs=1e-12)
    if model.temperature == 1.0:
        assert both["plain_twin"]["attacks"] == alone["attacks"]


def test_the_report_and_the_card_show_both_models_and_name_the_privacy_cost(private):
    write_report(private.run_dir)
    html = (private.run_dir / "report.html").read_text()
    card = (private.run_dir / "model_card.md").read_text()
    audit, m = _audit(private), private.metrics
    twin_acc = audit["plain_twin"]["metric"]["value"]
    assert "Private and non-private side by side" in html and "non-private twin</td>" in html
    assert f"{twin_acc:.4f}" in html and f"{m['accuracy']:.4f}" in html and 'data-plot="membership_roc"' in html
    # the summary no longer calls the private model plainly worse than its (non-private) baseline: it names the cost
    assert "privacy cost: worse than its baseline" in html
    cost = "the same network trained without differential privacy (its non-private twin) reaches accuracy"
    assert "The baseline is trained without privacy; this model was trained with differential privacy (ε" in html and cost in html
    assert cost in card and f"accuracy {m['accuracy']:.4f} private against {twin_acc:.4f} non-private" in card
    assert f"The twin's fit took {m['plain_twin_fit_seconds']:.3g} s" in card


@pytest.mark.parametrize("twin_accuracy, paid", [(0.939, False), (0.947, False), (0.97, True)])
def test_the_privacy_cost_is_told_with_its_sign(twin_accuracy, paid):
    """A probe's private model (0.947) beat its non-private twin (0.939), yet the card called the
    gap to the baseline 'a privacy cost of 0.00877' and the badge 'privacy cost: worse than its
    baseline': a cost is named only where the twin did better (checked on the views, without training)."""
    from trustforge.evaluate._report_summary import _good, _twin_lead, privacy_cost, privacy_view

    attack = {"auc": 0.5, "auc_interval": [0.45, 0.55], "tpr_at_fpr": {"0.01": {"tpr": 0.01}}}
    evidence = {
        "privacy_audit": {
            "training": {"private": True, "epsilon": 3},
            "attacks": {"loss": attack},
            "metric": {"name": "accuracy", "value": 0.947},
            "plain_twin": {
                "training": {"private": False},
                "attacks": {"loss": attack},
                "metric": {"name": "accuracy", "value": twin_accuracy},
            },
        }
    }
    base = {"verdict": "worse", "sentence": "The model is worse than its baseline, logistic regression.", "label": "logistic regression",
            "metric": "accuracy", "model": 0.947, "baseline": 0.98, "difference": {"value": -0.033, "low": -0.06, "high": -0.01,
            "degenerate": False, "note": None}}  # fmt: skip
    ctx = {"privacy": {"epsilon": 3, "delta": 1e-5}, "baseline": base, "privacy_audit": privacy_view(evidence, {})}
    ctx.update(metrics={"accuracy": 0.947, "n": 114}, intervals=None, headline_metric="accuracy", positive_class=None)
    ctx["privacy_cost"] = text = privacy_cost(ctx)
    badge = _good(ctx, {}, None)["badge"]
    if paid:
        # privacy's cost is the gap to the twin, with its unit; the twin's own gap to the baseline is told apart from it
        assert "reaches accuracy 0.97 against this model's 0.947, so privacy costs 0.023 in accuracy;" in text, text
        assert "the twin itself trails the baseline's 0.98 by 0.01 in accuracy, a gap that is not privacy's" in text, text
        assert badge[0] == "privacy cost: worse than its baseline"
    else:
        assert "privacy cost of" not in text and "cost accuracy" not in text, text
        assert f"no measurable cost on this split: the private model scored accuracy 0.947 against {twin_accuracy:g}" in text, text
        assert badge[0] == "worse than its baseline"
    assert _twin_lead("rmse", 1.0, 0.8) == pytest.approx(0.2)  # lower is better: a twin with less error leads


def test_without_a_measured_twin_the_gap_is_not_blamed_on_privacy_alone():
    """No twin measured (train.privacy.compare: false): the summary does not call the whole gap privacy's price."""
    from trustforge.evaluate._report_summary import privacy_cost

    base = {"verdict": "worse", "metric": "accuracy", "model": 0.912, "baseline": 0.991}
    text = privacy_cost({"privacy": {"epsilon": 3, "delta": 1e-5}, "baseline": base, "privacy_audit": None})
    assert "how much of the gap to the baseline is privacy's is not known" in text, text


def test_a_twin_is_trained_only_when_it_is_asked_for_and_read():
    """`train.privacy.compare: false`, or no audit to read the twin: no twin, no cost (checked without training)."""
    from trustforge.pipeline import _plain_twin

    base = {"name": "p", "data": {"source": "builtin:digits"}, "model": {"kind": "mlp"}}
    for train, evaluate in (
        ({"privacy": {"epsilon": 3, "compare": False}}, {}),
        ({"privacy": {"epsilon": 3}}, {"privacy_audit": False}),
        ({}, {}),
    ):
        spec = trustforge.spec.load_spec({**base, "train": train, "evaluate": evaluate})
        assert _plain_twin(spec, None, []) == (None, {})
    assert trustforge.spec.load_spec({**base, "train": {"privacy": {"epsilon": 3}}}).train.privacy.compare is True
