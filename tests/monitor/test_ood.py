"""The out-of-distribution detector: fitted at training time, saved in the package, and able to
tell digits from noise, drawn shapes and inverted digits, and a table's rows from rows shifted
far outside the training ranges (AUROC >= 0.95 each), at the false-alarm rate it states."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

import trustforge
from trustforge.data import prepare
from trustforge.errors import IntegrityError
from trustforge.monitor import OodDetector, OodResult, fit_ood, head_layer
from trustforge.package import Model
from trustforge.settings import Settings
from trustforge.testing import foreign_images, shifted_rows

QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
DIGITS = {
    "name": "digits-ood",
    "data": {"source": "builtin:digits", "split": {"test": 0.2, "validation": 0.1, "stratify": True}},
    "model": {"kind": "cnn", "channels": [16, 32], "hidden": [64]},
    "train": {"max_epochs": 8, "batch_size": 64, "optimizer": {"name": "adamw", "lr": 0.003}, "seed": 7},
    "evaluate": QUIET,
}
CANCER = {
    "name": "cancer-ood",
    "data": {"source": "builtin:breast_cancer", "split": {"test": 0.2, "validation": 0.2}},
    "model": {"kind": "mlp", "hidden": [32]},
    "train": {"max_epochs": 20, "batch_size": 32},
    "evaluate": QUIET,
}


def _scores(model: Model, detector: OodDetector, source) -> OodResult:
    inputs = model.preprocessor.encode_inputs(model.read_input(source))
    return detector.judge(model.module, inputs)


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    return roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood-digits")
    result = trustforge.run(DIGITS, settings=Settings.from_env(root / "ws"), progress=False, register=False)
    model = result.load_model()
    return model, OodDetector.for_model(model), prepare(model.spec).test_raw.images


def test_digits_are_told_from_noise_shapes_and_inverted_digits(digits):
    model, detector, test = digits
    entry = model.manifest["monitor"]["ood"]
    assert entry["threshold_from"] == "validation" and model.spec.monitor.ood.false_alarm_rate == 0.05 and entry["classes"] == 10
    inside = _scores(model, detector, test)
    for name, images in foreign_images(test, seed=1).items():
        outside = _scores(model, detector, images)
        # the detector as served (its largest score over its threshold), and the feature score alone
        assert _auroc(inside.combined, outside.combined) >= 0.95, name
        assert _auroc(inside.scores["mahalanobis"], outside.scores["mahalanobis"]) >= 0.95, name
        assert outside.flagged.mean() >= 0.9, (name, outside.flagged.mean())  # caught at the stated threshold, too
    # the false-alarm rate on unseen digits (359 test images) is near the 5 % asked for, never far above it
    assert inside.flagged.mean() <= 0.09, inside.flagged.mean()
    held = entry["validation_false_alarms"]
    assert held["flagged"] <= 0.05 * held["rows"]
    # the test-split figures the evidence shows: false alarms, and AUROC against inputs made within the declared ranges
    assert entry["test"]["rows"] == len(test) and min(entry["test"]["auroc"].values()) >= 0.95


def test_a_table_is_told_from_rows_shifted_far_outside_the_training_ranges(tmp_path):
    result = trustforge.run(CANCER, settings=Settings.from_env(tmp_path / "ws"), progress=False, register=False)
    model = result.load_model()
    detector = OodDetector.for_model(model)
    assert detector is not None and set(detector.thresholds) == {"mahalanobis", "input", "range"}
    data = prepare(model.spec)
    test = data.test_raw.frame.drop(columns=[model.schema.target])
    train = data.train_raw.frame
    shifted = shifted_rows(test, train, std=5.0, columns=3, seed=0)  # +5 std on three random columns of each row
    inside, outside = _scores(model, detector, test), _scores(model, detector, shifted)
    assert _auroc(inside.combined, outside.combined) >= 0.95
    assert _auroc(inside.scores["mahalanobis"], outside.scores["mahalanobis"]) >= 0.95
    assert outside.flagged.mean() >= 0.9 and inside.flagged.mean() <= 0.1
    assert all(r is None for r, f in zip(inside.reasons, inside.flagged) if not f)
    assert "threshold" in next(r for r in outside.reasons if r)


def test_the_detector_is_in_the_signed_package_as_tensors(tmp_path):
    spec = {**CANCER, "train": {"max_epochs": 2}, "monitor": {"ood": {"false_alarm_rate": 0.1}}}
    result = trustforge.run(spec, settings=Settings.from_env(tmp_path / "ws"), progress=False, register=False)
    manifest = json.loads((result.package / "manifest.json").read_text())
    assert "ood.safetensors" in manifest["files"] and manifest["spec"]["monitor"]["ood"]["false_alarm_rate"] == 0.1
    evidence = json.loads((result.run_dir / "evidence.json").read_text())["ood"]
    assert evidence["false_alarm_rate"] == 0.1 and evidence["thresholds"] == manifest["monitor"]["ood"]["thresholds"]
    assert manifest["monitor"]["ood"]["thresholds"]["mahalanobis"] > 0
    blob = (result.package / "ood.safetensors").read_bytes()
    (result.package / "ood.safetensors").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="ood.safetensors"):
        Model.load(result.package, keyring=result.keyring)


def test_the_head_is_found_whatever_the_network():
    class Wrapped(nn.Module):  # the output layer inside a container, reshaped after (a regression head)
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.out = nn.Sequential(nn.Dropout(0.0), nn.Linear(8, 1))

        def forward(self, x):
            return self.out(self.body(x)).squeeze(-1)

    class Dot(nn.Module):  # no linear layer makes the output (a recommender's dot product)
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Embedding(5, 3), nn.Embedding(5, 3)

        def forward(self, u, i):
            return (self.a(u) * self.b(i)).sum(-1)

    x = torch.randn(50, 4)
    assert head_layer(Wrapped(), (x,)) == "out.1"
    ids = torch.randint(0, 5, (50,))
    entry, tensors = fit_ood(Dot(), ((ids, ids), torch.rand(50)), None, None, classes=None)
    assert tensors is None and "linear layer" in entry["skipped"]
    # a model without classes: one Gaussian; thresholds from the training split, which the entry says
    entry, tensors = fit_ood(Wrapped(), ((x,), torch.randn(50)), None, None, classes=None, false_alarm_rate=0.1)
    assert tensors["means"].shape == (1, 8) and entry["classes"] is None and entry["threshold_from"] == "train"
    assert entry["train_false_alarms"]["flagged"] <= 0.1 * 50


def test_a_bad_false_alarm_rate_is_one_clear_error():
    from trustforge.errors import SpecError
    from trustforge.spec import load_spec

    with pytest.raises(SpecError, match=r"monitor.ood.false_alarm_rate must be a number in \(0, 0.5\]; got 1.5"):
        load_spec({"monitor": {"ood": {"false_alarm_rate": 1.5}}})


@pytest.mark.parametrize(
    "case, expect",
    [
        ("rnn-series", {"classes": None, "scores": {"mahalanobis"}}),  # forecasting: one Gaussian, no declared input range
        ("transformer-text", {"classes": 2, "scores": {"mahalanobis"}}),  # token ids: the feature score only
        ("mlp-mixed", {"classes": 2, "scores": {"mahalanobis", "input", "range"}}),
        ("mf", {"skipped": "linear layer"}),  # a recommender's dot product: skipped, with the reason
    ],
)
def test_every_kind_of_model_gets_a_detector_or_a_reason(case, expect):
    from trustforge.models import build_model
    from trustforge.monitor import run_ood
    from trustforge.spec import load_spec
    from trustforge.testing import CASES

    spec = load_spec(CASES[case])
    data = prepare(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        entry, tensors = run_ood(spec, data, build_model(spec, data.schema))  # untrained: the mechanics, not the quality
    if "skipped" in expect:
        assert tensors is None and expect["skipped"] in entry["skipped"]
        return
    assert entry["classes"] == expect["classes"] and set(entry["thresholds"]) == expect["scores"]
    held = entry["validation_false_alarms"]
    assert held["flagged"] <= 0.05 * held["rows"] and entry["test"]["rows"] == len(data.test)
