"""Tasks are objects: every registered task answers every question the stages ask of it, from
the one metrics table, and the spec's validators take their answers from there."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import trustforge.spec._model as spec_model
from trustforge.errors import SpecError
from trustforge.evaluate import METRICS, TASKS, Task, task_named, task_of
from trustforge.evaluate._metrics import classification_metrics, ranking_metrics, regression_metrics
from trustforge.spec import load_spec

SPECS = {
    "classification": {"task": "classification", "data": {"source": "builtin:iris"}, "model": {"kind": "mlp"}},
    "regression": {"task": "regression", "data": {"source": "builtin:diabetes"}, "model": {"kind": "mlp"}},
    "forecasting": {"task": "forecasting", "data": {"source": "builtin:air_passengers"}, "model": {"kind": "mlp"}},
    "recommendation": {"task": "recommendation", "data": {"source": "builtin:movielens_small"}},
    "recommendation-implicit": {
        "task": "recommendation",
        "data": {"source": "builtin:movielens_small", "interactions": {"feedback": "implicit"}},
    },
}
REQUIRED = (
    "metric_names",
    "default_metrics",
    "headline_metric",
    "default_monitor",
    "output_size",
    "loss",
    "validation_metrics",
    "output_signature",
    "compute_metrics",
    "test_metrics",
    "predict",
    "evaluate",
)


def _baseline_of(name: str) -> str | None:
    """`baseline_<who>_<metric>` → `<metric>` (the who may hold underscores)."""
    if not name.startswith("baseline_"):
        return None
    return next((m for m in METRICS if name.endswith("_" + m)), None)


def test_every_spec_task_is_registered():
    assert set(TASKS) == set(spec_model.TaskSpec.model_fields["task"].annotation.__args__)
    for name, task in TASKS.items():
        assert task.name == name and task_named(name) is task and task_named(task) is task
    with pytest.raises(ValueError, match="unknown task 'clustering'"):
        task_named("clustering")


@pytest.mark.parametrize("name", list(TASKS))
def test_every_registered_task_implements_every_method(name):
    assert set(Task.__abstractmethods__) == set(REQUIRED)
    task = TASKS[name]
    missing = [m for m in REQUIRED if getattr(type(task), m) is getattr(Task, m)]
    assert not missing, f"task {name} does not implement {missing}"


def test_a_task_missing_a_method_cannot_be_built():
    class Clustering(Task):
        name = "clustering"

        def metric_names(self, spec):
            return ("silhouette",)

    with pytest.raises(TypeError, match="abstract"):
        Clustering()


@pytest.mark.parametrize("key", list(SPECS))
def test_every_task_answers_from_the_metrics_table(key):
    spec = load_spec(SPECS[key])
    task = task_of(spec)
    names = task.metric_names(spec)
    assert names and len(set(names)) == len(names)
    for n in names:  # a metric of the table, or a baseline's figure of one
        assert n in METRICS or _baseline_of(n) in METRICS, n
    monitors = task.monitor_names(spec)
    assert monitors and set(monitors) <= set(names)
    assert all(METRICS[m].validation for m in monitors)
    assert task.headline_metric(spec) in names
    assert task.default_monitor(spec).removeprefix("val_") in monitors
    for n in task.default_metrics(spec):
        assert n in names or _baseline_of(n) in names or _baseline_of(n) in METRICS, n
    assert spec.default_metrics() == task.default_metrics(spec)


def test_the_spec_keeps_no_copy_of_the_metric_lists():
    for copy in (
        "CLASSIFICATION_METRICS",
        "REGRESSION_METRICS",
        "FORECASTING_METRICS",
        "EXPLICIT_METRICS",
        "IMPLICIT_METRICS",
        "RECOMMENDATION_METRICS",
    ):
        assert not hasattr(spec_model, copy)


@pytest.mark.parametrize("key", list(SPECS))
def test_the_spec_validators_accept_exactly_the_tasks_metrics(key):
    raw = SPECS[key]
    spec = load_spec(raw)
    task = task_of(spec)
    load_spec({**raw, "evaluate": {"metrics": list(task.metric_names(spec))}})
    with pytest.raises(SpecError, match=f"must be a {spec.task} metric \\({', '.join(task.metric_names(spec))}\\)"):
        load_spec({**raw, "evaluate": {"metrics": ["no_such_metric"]}})
    for m in task.monitor_names(spec):
        load_spec({**raw, "train": {"early_stopping": {"monitor": f"val_{m}"}}})
    refused = [m for m in task.metric_names(spec) if m not in task.monitor_names(spec)]
    for m in refused[:2]:
        with pytest.raises(SpecError, match="train.early_stopping.monitor"):
            load_spec({**raw, "train": {"early_stopping": {"monitor": f"val_{m}"}}})


def test_higher_is_better_follows_the_table():
    task = TASKS["classification"]
    assert task.higher_is_better("val_accuracy") and task.higher_is_better("val_roc_auc")
    assert not task.higher_is_better("val_log_loss") and not task.higher_is_better("val_loss")
    assert not TASKS["regression"].higher_is_better("val_mae") and TASKS["regression"].higher_is_better("val_r2")


def test_each_table_function_gives_the_figure_of_the_full_set():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60)
    full = classification_metrics(y, proba, ["a", "b", "c"])
    t, p = rng.normal(size=40), rng.normal(size=40)
    errors = regression_metrics(t, p)
    higher = rng.integers(0, 30, 25)
    ties = np.zeros(25, dtype=np.int64)
    ranks = ranking_metrics(higher, ties, np.full(25, 50), ks=(5, 10, 20))
    for name, metric in METRICS.items():
        assert metric.name == name
        if metric.family == "class":
            assert metric.fn(y, proba) == full.get(name), name
        elif metric.family == "error" and name in errors:
            assert metric.fn(t, p) == pytest.approx(errors[name]), name
        elif metric.family == "ranking":
            assert metric.fn(higher, ties, np.full(25, 50)) == pytest.approx(ranks[name]), name
    assert METRICS["mape"].fn(np.array([1.0, 2.0]), np.array([1.1, 1.8])) == pytest.approx(0.1)


def test_output_sizes_and_default_losses():
    schema = type("S", (), {"classes": ["a", "b", "c"], "series": SimpleNamespace(horizon=4)})()
    specs = {k: load_spec(v) for k, v in SPECS.items()}
    assert task_of(specs["classification"]).output_size(specs["classification"], schema) == 3
    assert task_of(specs["regression"]).output_size(specs["regression"], schema) == 1
    assert task_of(specs["forecasting"]).output_size(specs["forecasting"], schema) == 4
    assert task_of(specs["recommendation"]).output_size(specs["recommendation"], schema) == 1
    out, y = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    ce = task_of(specs["classification"]).loss(specs["classification"], 3, y)
    assert float(ce(out, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)))
    bpr = task_of(specs["recommendation-implicit"]).loss(specs["recommendation-implicit"], 0, y)
    diff = torch.tensor([[0.5], [-1.0]])
    assert float(bpr(diff, y)) == pytest.approx(float(-torch.nn.functional.logsigmoid(diff).mean()))


def test_only_classification_calibrates_its_outputs():
    out = torch.tensor([[2.0, -2.0]])
    assert torch.equal(TASKS["classification"].calibrate(out, 2.0), out / 2.0)
    for name in ("regression", "forecasting", "recommendation"):
        assert TASKS[name].calibrate(out, 2.0) is out
    assert [n for n, t in TASKS.items() if t.probabilities] == ["classification"]


def test_a_decision_needs_two_classes_and_one_of_them():
    check = TASKS["classification"].check_decision
    three = ["setosa", "versicolor", "virginica"]
    with pytest.raises(SpecError, match=r"evaluate\.positive_class applies to binary classification; the data has 3 classes"):
        check(load_spec({"evaluate": {"positive_class": "setosa"}}), three)
    with pytest.raises(SpecError, match=r"evaluate\.threshold applies to binary classification"):
        check(load_spec({"evaluate": {"threshold": "f1"}}), three)
    with pytest.raises(SpecError, match=r"evaluate\.positive_class must be one of the classes \(no, yes\); got 'maybe'"):
        check(load_spec({"evaluate": {"positive_class": "maybe"}}), ["no", "yes"])
    check(load_spec({"evaluate": {"positive_class": "no", "threshold": 0.3}}), ["no", "yes"])
    check(load_spec({}), three)  # nothing asked, nothing refused


def test_a_positive_class_on_ten_digits_fails_before_training():
    with pytest.raises(SpecError, match="evaluate.positive_class applies to binary classification; the data has 10 classes"):
        trustforge_run({"data": {"source": "builtin:digits"}, "evaluate": {"positive_class": "3"}, "train": {"max_epochs": 1}})


def trustforge_run(spec):
    from trustforge.pipeline import run

    return run(spec, progress=False, register=False)


def test_the_positive_class_defaults_to_the_training_minority():
    pos = TASKS["classification"].positive_index
    spec = load_spec({})
    assert pos(spec, ["malignant", "benign"], torch.tensor([0, 1, 1, 1])) == 0
    assert pos(spec, ["no", "yes"], torch.tensor([0, 0, 0, 1])) == 1
    assert pos(spec, ["a", "b"], torch.tensor([0, 1])) == 1  # a tie keeps class 1, the old headline
    assert pos(load_spec({"evaluate": {"positive_class": "benign"}}), ["malignant", "benign"], torch.tensor([0, 1, 1])) == 1
    assert pos(spec, ["a", "b", "c"], torch.tensor([0, 1, 2])) is None


def test_binary_predictions_follow_the_decision():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    decide = TASKS["classification"].decide
    classes = ["benign", "malignant"]
    assert decide(proba, classes, None).tolist() == [0, 0, 1]  # no decision: the argmax, as older packages predict
    decision = {"positive_class": "malignant", "threshold": {"value": 0.35}}
    assert decide(proba, classes, decision).tolist() == [0, 1, 1]
    m = TASKS["classification"].compute_metrics(np.array([0, 1, 1]), proba=proba, classes=classes, decision=decision)
    assert m["positive_class"] == "malignant" and m["recall"] == 1.0 and m["threshold"] == {"value": 0.35}


def test_the_metrics_table_names_the_positive_class_and_the_threshold():
    from rich.console import Console

    from trustforge.evaluate import metrics_table

    console = Console(width=120, record=True)
    metrics = {"accuracy": 0.9, "recall": 1.0, "positive_class": "malignant", "threshold": {"value": 0.0335, "rule": "f1"}}
    console.print(metrics_table(metrics, ["accuracy", "recall"]))
    text = console.export_text()
    assert "recall (malignant)" in text and "threshold (f1)" in text and "0.0335" in text
    console.print(metrics_table({"accuracy": 0.9}, ["accuracy"]))
    assert "threshold" not in console.export_text()


def test_the_metrics_table_gives_the_reason_of_an_undefined_figure():
    """Labelled rows with no positive row: recall and F1 read n/a in the table, with the reason
    under it, as in the JSON (None and notes)."""
    from rich.console import Console

    from trustforge.evaluate import metrics_table

    classes = ["malignant", "benign"]
    proba = np.array([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    metrics = TASKS["classification"].compute_metrics(
        np.array([1, 1, 1]),
        proba=proba,
        classes=classes,
        decision={"positive_class": "malignant", "threshold": {"value": 0.5, "rule": "0.5"}},
    )
    assert metrics["recall"] is None and metrics["f1"] is None and metrics["precision"] == 0.0
    console = Console(width=200, record=True)
    console.print(metrics_table(metrics, ["accuracy", "precision", "recall", "f1", "recall_macro", "roc_auc"]))
    text = console.export_text()
    assert re.search(r"recall \(malignant\)\s+│\s+n/a", text) and re.search(r"f1 \(malignant\)\s+│\s+n/a", text), text
    assert "recall: undefined: none of the 3 labelled rows is of the positive class malignant" in text
    assert "roc_auc: undefined: the labels hold one class only" in text
    assert "the macro averages are over the 1 of 2 classes the labels hold (no row of malignant)" in text


def test_probabilities_sum_to_one_in_float64_so_sklearn_metrics_take_them_without_a_warning():
    import warnings

    import sklearn.metrics as skm

    from trustforge.evaluate._tasks import outputs_to_proba

    logits = torch.randn(2000, 10, generator=torch.Generator().manual_seed(0)) * 8
    proba = outputs_to_proba(logits, 10)
    assert proba.dtype == np.float64 and np.abs(proba.sum(1) - 1).max() < 1e-12
    binary = outputs_to_proba(logits[:, :1], 2)
    assert np.abs(binary.sum(1) - 1).max() < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "y_prob values do not sum to one" from float32 probabilities cast up
        skm.log_loss(np.arange(2000) % 10, proba, labels=range(10))


def test_classification_metrics_record_the_majority_class_rate():
    """On an imbalanced test split accuracy must be read against always predicting the commonest class."""
    y = np.array([0] * 97 + [1] * 3)
    proba = np.tile([0.4, 0.6], (100, 1))  # always calls the rare class
    m = task_named("classification").compute_metrics(y, proba=proba, classes=["legit", "fraud"])
    assert m["majority_class"] == "legit" and m["majority_class_accuracy"] == pytest.approx(0.97)
    assert m["accuracy"] == pytest.approx(0.03)
