"""Baselines fitted inside the run and bootstrap intervals (evaluate._baselines, evaluate._intervals):
the intervals' figures are the metrics' own, the weighted AUC is scikit-learn's, the paired
difference and the verdict say what the test split supports, and on breast cancer a model
that is worse than logistic regression is reported as such."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import trustforge
from trustforge.evaluate import TASKS
from trustforge.evaluate._baselines import Baseline
from trustforge.evaluate._intervals import ClassRows, ErrorRows, RankRows, bootstrap, resample_weights, verdict, weighted_auc
from trustforge.evaluate._metrics import classification_metrics, ranking_metrics, ranking_rows, regression_metrics
from trustforge.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _classes(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("k", [2, 4])
def test_the_point_values_are_the_metrics_own(k):
    y, proba = _classes(k=k)
    rows = ClassRows(y, proba, proba.argmax(1), positive=1 if k == 2 else None)
    point = {name: float(v[0]) for name, v in rows.values(np.ones((1, len(y)))).items()}
    ref = classification_metrics(y, proba, [str(c) for c in range(k)])
    for name in ("accuracy", "f1_macro", "roc_auc", "log_loss", *(("precision", "recall", "f1") if k == 2 else ())):
        assert point[name] == pytest.approx(ref[name], abs=1e-12), name


def test_a_figure_the_rows_leave_undefined_is_undefined_in_the_intervals_too():
    """No positive row: recall and F1 have no value (None, as in the metrics), not 0; macro F1 is
    over the class present; a never-predicted positive leaves precision undefined too."""
    y = np.zeros(30, dtype=np.int64)
    proba = np.tile([0.8, 0.2], (30, 1))
    rows = ClassRows(y, proba, proba.argmax(1), positive=1)
    point = {name: float(v[0]) for name, v in rows.values(np.ones((1, 30))).items()}
    ref = classification_metrics(y, proba, ["0", "1"])
    assert ref["recall"] is None and ref["f1"] is None and ref["precision"] is None
    assert all(np.isnan(point[name]) for name in ("precision", "recall", "f1"))
    assert point["f1_macro"] == ref["f1_macro"] == 1.0
    out = bootstrap(rows, seed=0)["metrics"]
    assert out["recall"]["value"] is None and out["f1"]["value"] is None and out["f1_macro"]["value"] == 1.0


def test_the_weighted_auc_is_scikit_learns_with_sample_weights():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200).astype(bool)
    score = np.round(rng.normal(size=200) + y, 1)  # ties on purpose
    w = resample_weights(200, 5, rng)
    got = weighted_auc(w, y, score)
    for b in range(5):
        assert got[b] == pytest.approx(roc_auc_score(y, score, sample_weight=w[b]), abs=1e-12)


def test_error_and_ranking_rows_match_their_metrics():
    rng = np.random.default_rng(2)
    y, pred = rng.normal(size=80), rng.normal(size=80)
    point = {k: float(v[0]) for k, v in ErrorRows(y, pred).values(np.ones((1, 80))).items()}
    ref = regression_metrics(y, pred)
    assert all(point[k] == pytest.approx(ref[k], abs=1e-12) for k in ("mae", "rmse", "r2"))
    higher, ties = rng.integers(0, 30, 50), rng.integers(0, 3, 50)
    cands = higher + ties + rng.integers(0, 50, 50)
    rows = RankRows(ranking_rows(higher, ties, cands, (10,)))
    point = {k: float(v[0]) for k, v in rows.values(np.ones((1, 50))).items()}
    ref = ranking_metrics(higher, ties, cands, (10,))
    assert all(point[k] == pytest.approx(ref[k], abs=1e-12) for k in ("hr@10", "ndcg@10", "auc"))


@pytest.mark.parametrize("block", [1, 7])
def test_resamples_draw_n_rows_and_are_seeded(block):
    w = resample_weights(50, 20, np.random.default_rng(0), block)
    assert w.shape == (20, 50) and (w.sum(1) == 50).all()
    assert np.array_equal(w, resample_weights(50, 20, np.random.default_rng(0), block))


def test_a_known_interval_comes_out():
    """Accuracy of 1,000 rows with 800 right: the exact binomial interval, about ±0.025 (the normal one)."""
    y = np.zeros(1000, dtype=int)
    pred = np.r_[np.zeros(800, dtype=int), np.ones(200, dtype=int)]
    proba = np.eye(2)[pred] * 0.8 + 0.1
    out = bootstrap(ClassRows(y, proba, pred), seed=0)
    acc = out["metrics"]["accuracy"]
    half = 1.96 * np.sqrt(0.8 * 0.2 / 1000)
    assert acc["value"] == 0.8 and acc["method"] == "clopper_pearson" and acc["count"] == {"successes": 800, "trials": 1000}
    assert acc["low"] == pytest.approx(0.8 - half, abs=0.006) and acc["high"] == pytest.approx(0.8 + half, abs=0.006)
    assert out["metrics"]["log_loss"]["method"] == "percentile_bootstrap"


def _all_right(n_pos=42, n_neg=72, seed=0):
    """A binary model right on every test row, with probabilities that rank every positive first."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)]
    p1 = np.where(y == 1, rng.uniform(0.6, 1.0, len(y)), rng.uniform(0.0, 0.4, len(y)))
    return y, np.c_[1 - p1, p1]


def test_every_row_right_gives_the_exact_binomial_interval_not_one_to_one():
    """42 positives all found: the bootstrap's recall is 1 in every resample ("1 – 1"); the interval
    is Clopper–Pearson's instead, SciPy's exact one, with the count it rests on. ROC AUC and F1
    have no binomial form: they keep their value and are marked degenerate with a note."""
    from scipy.stats import binomtest

    y, proba = _all_right()
    out = bootstrap(ClassRows(y, proba, y, positive=1), seed=0)
    ref = binomtest(42, 42).proportion_ci(confidence_level=0.95, method="exact")
    recall = out["metrics"]["recall"]
    assert recall["value"] == 1.0 and recall["high"] == 1.0
    assert recall["low"] == pytest.approx(ref.low, abs=1e-12) and recall["low"] == pytest.approx(0.916, abs=5e-4)
    assert recall["method"] == "clopper_pearson" and recall["count"] == {"successes": 42, "trials": 42} and "degenerate" not in recall
    assert out["metrics"]["precision"]["count"] == {"successes": 42, "trials": 42}
    acc = out["metrics"]["accuracy"]
    assert acc["low"] == pytest.approx(binomtest(114, 114).proportion_ci(method="exact").low, abs=1e-12) and acc["low"] < 1
    for name in ("roc_auc", "f1", "f1_macro"):
        m = out["metrics"][name]
        assert m["value"] == m["low"] == m["high"] == 1.0, name
        assert m["degenerate"] is True and m["method"] == "percentile_bootstrap", name
        assert m["note"] == "every resample gives the same value: the test split is too small to show the uncertainty", name
    assert "degenerate" not in out["metrics"]["log_loss"]  # the probabilities vary, so log loss does
    # One wrong row: the binomial interval moves down (monotone), no switch of method.
    pred = y.copy()
    pred[0] = 0
    one_off = bootstrap(ClassRows(y, proba, pred, positive=1), seed=0)["metrics"]["recall"]
    assert one_off["method"] == "clopper_pearson" and one_off["low"] < recall["low"] and one_off["high"] < 1


def test_a_zero_difference_in_every_resample_cannot_tell_them_apart():
    """Model and baseline right on the same rows: the paired difference is 0 in every resample; it
    is marked degenerate with a note, the verdict is does_not_beat, and the sentence says the test
    split cannot tell them apart."""
    from types import SimpleNamespace

    from trustforge.evaluate._baselines import Paired, yardstick

    y, proba = _all_right()
    rows = ClassRows(y, proba, y, positive=1)
    out = bootstrap(rows, ClassRows(y, proba[:, ::-1] * 0 + proba, y, positive=1), seed=0)
    d = out["differences"]["roc_auc"]
    assert d["value"] == d["low"] == d["high"] == 0 and d["degenerate"] is True and "cannot tell them apart" in d["note"]
    assert verdict(d, lower_is_better=False) == "does_not_beat"

    class Same(Baseline):
        def paired(self, spec, data, model):
            return Paired("logistic_regression", "logistic regression", "the same rows", rows, ClassRows(y, proba, y, positive=1))

    task = SimpleNamespace(baseline=lambda spec: Same(), headline_metric=lambda spec: "roc_auc")
    spec = SimpleNamespace(train=SimpleNamespace(seed=0))
    data = SimpleNamespace(schema=SimpleNamespace(classes=["benign", "malignant"]))
    base, iv = yardstick(spec, data, SimpleNamespace(decision=None), task, resamples=200)
    assert base["verdict"] == "does_not_beat" and base["difference"]["degenerate"] is True
    assert "cannot tell them apart" in base["sentence"] and "0.000 to" not in base["sentence"]
    assert "too small to show the uncertainty" in base["sentence"]  # the model's own ROC AUC has no interval either
    assert iv["metrics"]["recall"]["method"] == "clopper_pearson" and iv["metrics"]["roc_auc"]["degenerate"] is True


def test_the_paired_difference_cancels_shared_noise():
    """Two models that differ on 10 of 1,000 rows (the model right, the baseline wrong): their
    own intervals overlap almost entirely, but the paired difference excludes 0."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 1000)
    pred = np.where(rng.random(1000) < 0.7, y, 1 - y)
    base = pred.copy()
    right = np.flatnonzero(pred == y)[:10]
    base[right] = 1 - y[right]
    onehot = lambda p: np.eye(2)[p] * 0.9 + 0.05  # noqa: E731
    out = bootstrap(ClassRows(y, onehot(pred), pred), ClassRows(y, onehot(base), base), seed=0)
    d = out["differences"]["accuracy"]
    assert d["value"] == pytest.approx(0.01) and d["low"] > 0
    assert verdict(d, lower_is_better=False) == "beats"
    assert verdict(d, lower_is_better=True) == "worse"
    assert verdict({"value": 0.0, "low": -0.01, "high": 0.02}, lower_is_better=False) == "does_not_beat"


def test_the_bootstrap_is_vectorised_so_cost_follows_the_rows():
    import time

    y, proba = _classes(n=20_000, k=2)
    rows = ClassRows(y, proba, proba.argmax(1), positive=1)
    t0 = time.perf_counter()
    bootstrap(rows, rows, seed=0)
    assert time.perf_counter() - t0 < 30  # 1,000 resamples of 20,000 rows, two models (about 3 s on one core)


def test_every_task_names_its_baseline():
    """Each task object owns its baseline; no stage switches on the task's name to find it."""
    specs = {
        "classification": {"data": {"source": "builtin:iris"}},
        "regression": {"task": "regression", "data": {"source": "builtin:diabetes"}},
        "forecasting": {"task": "forecasting", "data": {"source": "builtin:air_passengers"}, "model": {"kind": "mlp"}},
        "recommendation": {
            "task": "recommendation",
            "data": {"source": "builtin:movielens_small", "interactions": {"feedback": "implicit"}},
        },
    }
    names = {}
    for name, task in TASKS.items():
        b = task.baseline(load_spec(specs[name]))
        assert isinstance(b, Baseline)
        names[name] = type(b).__name__
    assert names == {
        "classification": "LogisticBaseline",
        "regression": "RidgeBaseline",
        "forecasting": "SeasonalNaiveBaseline",
        "recommendation": "PopularityBaseline",
    }
    explicit = load_spec({"task": "recommendation", "data": {"source": "builtin:movielens_small"}})
    assert explicit.data.interactions.feedback == "explicit"
    assert type(TASKS["recommendation"].baseline(explicit)).__name__ == "BiasBaseline"  # popularity predicts no rating


@pytest.fixture(scope="module")
def one_epoch_cancer(tmp_path_factory):
    """examples/breast_cancer_mlp.yaml trained for one epoch: a model logistic regression beats."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TRUSTFORGE_HOME", str(tmp_path_factory.mktemp("ws")))
    mp.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        spec = trustforge.load_spec(EXAMPLES / "breast_cancer_mlp.yaml")
        spec.train.max_epochs = 1
        spec.evaluate.explain = spec.evaluate.corruptions = spec.evaluate.speed = False
        spec.evaluate.robustness = None  # the attacks come after the baseline and its intervals, which this test reads
        r = trustforge.run(spec, progress=False, register=False)
        evidence = json.loads((r.run_dir / "evidence.json").read_text())
        metrics = json.loads((r.run_dir / "metrics.json").read_text())
        data = trustforge.data.prepare(r.spec)
    finally:
        mp.undo()
    return evidence, metrics, data


def test_breast_cancer_says_the_model_does_not_beat_logistic_regression(one_epoch_cancer):
    evidence, metrics, data = one_epoch_cancer
    b = evidence["baseline"]
    assert b["name"] == "logistic_regression" and b["metric"] == "accuracy" and b["lower_is_better"] is False
    assert b["verdict"] != "beats"
    assert b["difference"]["low"] <= b["difference"]["value"] <= b["difference"]["high"]
    assert b["difference"]["value"] == pytest.approx(b["model"] - b["baseline"])
    assert b["model"] == pytest.approx(metrics["accuracy"])  # the headline figure the run reports
    says = "does not beat its baseline" if b["verdict"] == "does_not_beat" else "is worse than its baseline"
    assert says in b["sentence"] and "logistic regression" in b["sentence"] and ". " not in b["sentence"]  # one sentence
    assert metrics["baseline"] == b and metrics["intervals"] == evidence["intervals"]  # metrics.json carries both


def test_the_baseline_is_scikit_learns_logistic_regression_on_the_same_split(one_epoch_cancer):
    """Recomputed independently: sklearn on the standardised training columns, scored on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    evidence, _, data = one_epoch_cancer
    x, y = data.train.inputs[0].double().numpy(), data.train.target.numpy()
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(max_iter=500).fit(scaler.transform(x), y)
    acc = float((lr.predict(scaler.transform(data.test.inputs[0].double().numpy())) == data.test.target.numpy()).mean())
    assert evidence["baseline"]["baseline"] == pytest.approx(acc)
    assert evidence["baseline"]["fit"] == {"fit_rows": len(y), "features": 30, "converged": True}


def test_the_intervals_hold_the_headline_metrics(one_epoch_cancer):
    evidence, metrics, _ = one_epoch_cancer
    iv = evidence["intervals"]
    assert iv["level"] == 0.95 and iv["resamples"] == 1000 and iv["positive_class"] == "malignant"
    for name in ("accuracy", "f1_macro", "roc_auc", "log_loss"):
        m = iv["metrics"][name]
        assert m["low"] <= m["value"] <= m["high"] and m["high"] - m["low"] > 0, name
        assert m["value"] == pytest.approx(metrics[name], abs=1e-9), name


@pytest.fixture(scope="module")
def cancer_by_rule(tmp_path_factory):
    """The breast-cancer example with a validation split and threshold precision@recall=0.98, 4 epochs."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TRUSTFORGE_HOME", str(tmp_path_factory.mktemp("ws")))
    mp.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        spec = trustforge.load_spec(EXAMPLES / "breast_cancer_mlp.yaml")
        spec.data.split.validation = 0.2
        spec.evaluate.threshold = "precision@recall=0.98"
        spec.train.max_epochs = 4
        spec.evaluate.explain = spec.evaluate.corruptions = spec.evaluate.speed = False
        spec.evaluate.robustness = None  # the attacks come after the baseline and its intervals, which this test reads
        r = trustforge.run(spec, progress=False, register=False)
        evidence = json.loads((r.run_dir / "evidence.json").read_text())
        metrics = json.loads((r.run_dir / "metrics.json").read_text())
        data = trustforge.data.prepare(r.spec)
    finally:
        mp.undo()
    return evidence, metrics, data


def test_the_baseline_decides_by_the_models_rule_chosen_on_its_own_validation(cancer_by_rule):
    """The model's threshold is chosen on validation by precision@recall=0.98; the baseline's is
    chosen by the same rule on logistic regression's own validation probabilities (recomputed
    here with scikit-learn), reaches that recall there, and scores the test rows at it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    evidence, metrics, data = cancer_by_rule
    model_t, base_t = metrics["threshold"], evidence["baseline"]["threshold"]
    assert model_t["rule"] == base_t["rule"] == "precision@recall=0.98"
    assert model_t["chosen_on"] == base_t["chosen_on"] == "validation"
    pos = data.schema.classes.index(metrics["positive_class"])
    x = data.train.inputs[0].double().numpy()
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(max_iter=500).fit(scaler.transform(x), data.train.target.numpy())
    p_val = lr.predict_proba(scaler.transform(data.validation.inputs[0].double().numpy()))[:, list(lr.classes_).index(pos)]
    val_pos = data.validation.target.numpy() == pos
    assert (p_val[val_pos] >= base_t["value"]).mean() >= 0.98  # the rule's constraint, on validation
    p_test = lr.predict_proba(scaler.transform(data.test.inputs[0].double().numpy()))[:, list(lr.classes_).index(pos)]
    test_y = data.test.target.numpy()
    pred = np.where(p_test >= base_t["value"], pos, 1 - pos)
    b = evidence["baseline"]
    assert b["baseline"] == pytest.approx(float((pred == test_y).mean()))  # scored at its threshold, not at 0.5
    assert b["metrics"]["recall"] == pytest.approx(float(((pred == pos) & (test_y == pos)).sum() / (test_y == pos).sum()))
    assert "both deciding by the same rule, precision@recall=0.98" in b["sentence"]
    assert f"threshold {model_t['value']:.3g} for the model" in b["sentence"]


# Half a minute or more each, even cut short: these read the session's run as written instead
# (tests/conftest.py's `as_written`, which the README figures' guards train anyway).
SLOW_EXAMPLES = {"speech_digits", "shapes_cnn", "classic_cifar_cnn"}
# MiniLM fine-tunes for about 12 minutes an epoch on 2 cores; its baseline is sentiment_text's
# (a bag of the model's tokens), whose code path the sentiment_text case runs.
TOO_SLOW = {"sentiment_minilm"}


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_EXAMPLES else p
        for p in sorted(EXAMPLES.glob("*.yaml"))
        if p.stem not in TOO_SLOW
    ],
    ids=lambda p: p.stem,
)
def test_every_example_reports_its_baseline_and_intervals(path, tmp_path, monkeypatch, request):
    """Each example, cut to one epoch (or the slow ones' full run that other tests train), writes
    a baseline with its verdict and sentence and the intervals of its headline metric, to
    evidence.json and metrics.json."""
    if path.stem in SLOW_EXAMPLES:
        r = request.getfixturevalue("as_written")(path.name)
    else:
        monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "ws"))
        monkeypatch.chdir(tmp_path)
        spec = trustforge.load_spec(path)
        spec.train.max_epochs = 1
        spec.evaluate.explain = spec.evaluate.corruptions = spec.evaluate.speed = False
        spec.evaluate.robustness = None  # the attacks come after the baseline and its intervals, which this test reads
        r = trustforge.run(spec, progress=False, register=False)
    evidence = json.loads((r.run_dir / "evidence.json").read_text())
    b, iv = evidence["baseline"], evidence["intervals"]
    assert b["verdict"] in ("beats", "does_not_beat", "worse") and b["sentence"].startswith(f"The model's {b['metric']}")
    assert len(b["description"]) > 40 and b["metric"] in iv["metrics"]
    headline = iv["metrics"][b["metric"]]
    assert headline["low"] <= headline["value"] <= headline["high"] and headline["value"] == pytest.approx(b["model"])
    metrics = json.loads((r.run_dir / "metrics.json").read_text())
    assert metrics["baseline"]["verdict"] == b["verdict"] and metrics["intervals"]["metrics"] == iv["metrics"]


def test_the_baseline_sentence_says_when_always_predicting_the_majority_class_scores_more():
    """Fraud: beating logistic regression on accuracy (0.910 against 0.894) says little when always
    predicting 'legit' scores 0.9855; the sentence `train` prints and the report shows says so."""
    from types import SimpleNamespace

    import torch

    from trustforge.evaluate._baselines import _majority_caveat

    data = SimpleNamespace(
        schema=SimpleNamespace(classes=["legit", "fraud"]), test=SimpleNamespace(target=torch.tensor([0] * 9855 + [1] * 145))
    )
    said = _majority_caveat("accuracy", {"value": 0.910, "low": 0.905, "high": 0.916}, data)
    assert said is not None and "always predicting 'legit' scores 0.986" in said and "below it" in said
    assert _majority_caveat("accuracy", {"value": 0.995, "low": 0.99, "high": 0.998}, data) is None  # clearly above
    assert _majority_caveat("rmse", {"value": 0.1}, data) is None
