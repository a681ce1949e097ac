"""The evidence a run gathers beside its test metrics, wired from the evaluate stage's parts.

The pipeline calls `calibrate` before packaging, because the fitted temperature travels in the
package, and `gather` after: everything else is measured on the model loaded back from its
verified package, so the evidence describes what will be served. What depends on the kind of
input (corruptions, shift sets, explanations, what does not apply) is asked of the kind's class
in `KIND_EVIDENCE`; what depends on the task, of the task.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustforge._extras import missing
from trustforge._fs import atomic_write_text
from trustforge.data import Prepared, redact_source
from trustforge.evaluate._baselines import yardstick
from trustforge.evaluate._calibration import apply_temperature, calibration, choose_threshold, curves, guarded_temperature
from trustforge.evaluate._kind_evidence import EXPLANATIONS, KIND_EVIDENCE
from trustforge.evaluate._metrics import classification_metrics
from trustforge.evaluate._privacy_audit import privacy_audit
from trustforge.evaluate._shift import shift_evaluation
from trustforge.evaluate._speed import measure_speed, one_row_request
from trustforge.evaluate._tasks import outputs_to_proba, task_of
from trustforge.spec import TaskSpec

__all__ = ["calibrate", "decide", "gather", "evaluate_test", "Evaluation", "EVIDENCE", "EXPLANATIONS"]

EVIDENCE = "evidence.json"


def calibrate(spec: TaskSpec, data: Prepared, val_logits: torch.Tensor | None, test_logits: torch.Tensor) -> dict[str, Any] | None:
    """The calibration the package serves, and the test split's ECE and log loss before and after.

    With `evaluate.calibrate: temperature` a temperature is fitted on the validation split
    (never on test) and served only when the split identifies it (`guarded_temperature`);
    otherwise T = 1 is kept and `reason` says why. The `_after` figures exist only for a
    served temperature.

    Returns:
        None for tasks without class probabilities, else ``{"method", "served", "temperature",
        "reason", "ece_before", "ece_after", "log_loss_before", "log_loss_after", "bins_before",
        "bins_after"}`` (see the issue 12 contract).
    """
    if not task_of(spec).probabilities:  # only class probabilities have a calibration
        return None
    k = len(data.schema.classes)
    y = data.test.target.numpy()
    proba = outputs_to_proba(test_logits, k)
    before = calibration(proba, y)
    method = spec.evaluate.calibrate
    t, reason = None, None
    if method == "none":
        reason = "evaluate.calibrate is none"
    elif val_logits is None or not len(val_logits):
        reason = "no validation split to fit a temperature on"
    else:
        t, reason = guarded_temperature(val_logits, data.validation.target)
    result: dict[str, Any] = {
        "method": method,
        "served": "raw" if t is None else "temperature",
        "temperature": t,
        "reason": reason,
        "ece_before": before["ece"],
        "ece_after": None,
        "log_loss_before": _log_loss(y, proba),
        "log_loss_after": None,
        "bins_before": before["bins"],
        "bins_after": None,
    }
    if t is not None:
        scaled = outputs_to_proba(apply_temperature(test_logits, t), k)
        after = calibration(scaled, y)
        result.update(ece_after=after["ece"], log_loss_after=_log_loss(y, scaled), bins_after=after["bins"])
    return result


def decide(spec: TaskSpec, data: Prepared, val_out: torch.Tensor | None) -> dict[str, Any] | None:
    """The binary decision the package predicts by: the positive class and the threshold chosen
    on the validation outputs as served (`val_out` with the served temperature applied).

    Returns:
        None unless the task is binary classification, else ``{"positive_class": name,
        "threshold": {"value", "rule", "chosen_on", "note"}}``.
    """
    task = task_of(spec)
    classes = data.schema.classes or []
    if not task.probabilities or len(classes) != 2:
        return None
    pos = task.positive_index(spec, classes, data.train.target)
    score = positive = None
    if val_out is not None and len(val_out):
        score = outputs_to_proba(val_out, 2)[:, pos]
        positive = data.validation.target.numpy() == pos
    return {"positive_class": str(classes[pos]), "threshold": choose_threshold(score, positive, spec.evaluate.threshold)}


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    return float(classification_metrics(y.astype(np.int64), proba, range(proba.shape[1]))["log_loss"])


@dataclass
class Evaluation:
    """The test split's metrics as the package will predict, and the calibration behind them.

    Attributes:
        metrics: the task's full metric set on the test split.
        calibration: `calibrate`'s result (None for tasks without class probabilities).
        held_out: the outputs on the validation and test splits (the test ones as scored), the
            drift reference's predictions.
        decision: `decide`'s result (None but for binary classification).
    """

    metrics: dict[str, Any]
    calibration: dict[str, Any] | None
    held_out: list[torch.Tensor | None]
    decision: dict[str, Any] | None = None

    @property
    def temperature(self) -> float | None:
        """The served temperature (None when the package serves raw probabilities)."""
        return self.calibration["temperature"] if self.calibration is not None else None

    def manifest_entry(self) -> dict[str, Any] | None:
        """What the package records of the calibration it predicts with, or None when it serves raw outputs."""
        if self.temperature is None:
            return None
        c = self.calibration
        return {"temperature": c["temperature"], "ece_before": c["ece_before"], "ece_after": c["ece_after"]}

    def with_evidence(self, metrics: dict[str, Any], evidence: dict[str, Any]) -> dict[str, Any]:
        """`metrics` with the headline evidence after them (speed, the served calibration error), for metrics.json."""
        out = dict(metrics)
        if evidence.get("speed"):
            out["speed"] = evidence["speed"]
        for key in ("baseline", "intervals"):
            if evidence.get(key):
                out[key] = evidence[key]
        if self.calibration is not None:
            c = self.calibration
            out["ece"] = c["ece_after"] if c["served"] == "temperature" else c["ece_before"]
        return out


def evaluate_test(
    spec: TaskSpec, data: Prepared, module: torch.nn.Module, test_out: torch.Tensor, val_out: torch.Tensor | None
) -> Evaluation:
    """Calibrate on the validation split, choose the binary decision on it, then score the test
    split as the package predicts.

    `test_out` and `val_out` are float32 outputs even after mixed-precision training: the package
    predicts in float32, and its metrics must describe what it predicts. With a served
    temperature both are divided by it before the threshold is chosen and the test is scored,
    so `log_loss` is the served model's.
    """
    calib = calibrate(spec, data, val_out, test_out)
    t = calib["temperature"] if calib is not None else None
    scored = test_out / t if t is not None else test_out
    val_scored = val_out / t if t is not None and val_out is not None else val_out
    decision = decide(spec, data, val_scored)
    task = task_of(spec)
    metrics = (
        task.test_metrics(data, scored, module, decision=decision) if decision is not None else task.test_metrics(data, scored, module)
    )
    return Evaluation(metrics, calib, [val_scored, scored], decision)


def gather(
    spec: TaskSpec,
    data: Prepared,
    model: Any,
    *,
    run_dir: Path,
    package: Path,
    calib: dict[str, Any] | None,
    fit_seconds: float,
    epochs: int,
    metric: str,
    baseline_module: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Measure and write `evidence.json` (and `explanations.safetensors`) into the run folder.

    Args:
        model: the `trustforge.Model` loaded back from the verified package.
        metric: the headline metric (for the corruption table; the task's `headline_metric`).
        baseline_module: the network of a plain twin trained on the same data: adversarial
            training's (the robustness evidence adds its curves as "before hardening") or
            private training's (the membership-inference audit attacks it beside the model).
    """
    ev = spec.evaluate
    kind = KIND_EVIDENCE[data.schema.modality]
    evidence: dict[str, Any] = {"data": _describe(spec, data), "calibration": calib}
    if task_of(spec).probabilities:
        proba = model.predict_proba(data.test_raw)
        classes = list(data.schema.classes)
        decision = model.decision
        positive = classes.index(decision["positive_class"]) if decision is not None else None
        evidence["curves"] = curves(data.test.target.numpy(), proba, classes, positive=positive)
    baseline, intervals = yardstick(spec, data, model, task_of(spec))
    if baseline is not None:  # the yardstick, and how sure the test split lets us be
        evidence["baseline"], evidence["intervals"] = baseline, intervals
    if ev.speed:
        # Model.predict on one raw test row (what users call) and the forward pass, each at
        # least MIN_CALLS times: a figure from one call on a busy machine is no figure. Beyond
        # those, half a second: on small data this is the largest fixed cost of the evidence.
        request = one_row_request(model, data.test_raw)
        evidence["speed"] = measure_speed(
            model.module,
            data.test.inputs,
            fit_seconds=fit_seconds,
            train_samples=len(data.train),
            epochs=epochs,
            package_dir=package,
            request=request[0] if request else None,
            request_input=request[1] if request else None,
            seconds_budget=0.5,
        )
    if ev.corruptions:
        table = kind.corruptions(spec, model, data.test_raw, metric)
        if table is not None:
            evidence["corruptions"] = table
    if ev.shift:
        evidence["shift"] = shift_evaluation(model.evaluate, kind.read_shift(spec, model), data.test_raw, model.schema)
    # A tree ensemble (model.kind hist_gradient_boosting) is piecewise constant: no gradient for
    # integrated gradients or an attack to follow; the evidence says so instead of a zero map.
    gradient_free = getattr(model.module, "gradient_free", False)
    no_captum = missing("explain", "evaluate.explain (explanations)") if ev.explain and not gradient_free else None
    if ev.explain and gradient_free:
        evidence.setdefault("skipped_gradient", {})["explanations"] = _GRADIENT_FREE
    elif ev.explain and no_captum is None:
        # Captum notes that it switched requires_grad on for the inputs: expected, not news.
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients", module="captum")
        evidence["explanations"] = kind.explain(spec, data, model, run_dir)
    ood = (model.manifest.get("monitor") or {}).get("ood")
    if ood is not None:  # the out-of-distribution detector as its package holds it (thresholds, false alarms, AUROC)
        evidence["ood"] = {**ood, "false_alarm_rate": spec.monitor.ood.false_alarm_rate} if "thresholds" in ood else ood
    skipped = {**kind.not_applicable(spec), **evidence.pop("skipped_gradient", {})}
    if no_captum is not None:  # a core install: the run completes, the report says which extra explains it
        skipped = {"explanations": no_captum, **skipped}  # a kind with no attribution method says so instead
    if ev.robustness is not None and gradient_free:
        skipped = {**skipped, "robustness": _GRADIENT_FREE}
    elif ev.robustness is not None:  # attacks on the packaged network, where its inputs have a gradient path
        from trustforge.evaluate import robustness  # lazily: see the package's _LAZY

        before = baseline_module if spec.train.privacy is None else None  # a private run's twin is no "before hardening"
        attacked = robustness(model, data.test_raw, ev.robustness, seed=spec.train.seed, baseline_module=before)
        if "skipped" in attacked:
            skipped = {**skipped, "robustness": attacked["skipped"]}
        else:
            evidence["robustness"] = attacked
    if ev.privacy_audit is not None:  # membership inference: training rows against test rows, by the model's outputs
        twin = baseline_module if spec.train.privacy is not None else None  # a private run's non-private twin, side by side
        audit = privacy_audit(model, data, ev.privacy_audit, seed=spec.train.seed, plain_twin=twin, metric=metric)
        if "skipped" in audit:
            skipped = {**skipped, "privacy_audit": audit["skipped"]}
        else:
            evidence["privacy_audit"] = audit
    if baseline is None:
        skipped = {**skipped, "baseline": f"task {task_of(spec).name} names no baseline to measure the model against"}
    if skipped:  # say why a part of the evidence is absent, rather than leave a silent gap
        evidence["skipped"] = skipped
    atomic_write_text(run_dir / EVIDENCE, json.dumps(evidence, indent=1, default=_plain))
    return evidence


_GRADIENT_FREE = "the model is a tree ensemble: its output is piecewise constant, with no input gradient to attack or attribute along"


def _describe(spec: TaskSpec, data: Prepared) -> dict[str, Any]:
    s = data.schema
    return {
        "source": redact_source(spec.data.source),  # the file's name, never its path here
        "modality": s.modality,
        "rows": s.rows,
        "dropped_rows": s.dropped_rows,
        "classes": s.classes,
        "columns": [{"name": c.name, "kind": c.kind, "missing": c.missing} for c in s.columns],
        "image_shape": list(s.image_shape) if s.image_shape else None,
        # The training split's own rows; augmented copies (which the model also trains on) apart.
        "split_sizes": {
            "train": len(data.train) - data.augmented_copies,
            "validation": len(data.validation) if data.validation is not None else 0,
            "test": len(data.test),
        },
        **({"augmented_copies": data.augmented_copies} if data.augmented_copies else {}),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
