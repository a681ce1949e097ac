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

from trustforge._fs import atomic_write_text
from trustforge.data import Prepared, redact_source
from trustforge.evaluate._baselines import yardstick
from trustforge.evaluate._calibration import apply_temperature, calibration, curves, fit_temperature
from trustforge.evaluate._kind_evidence import EXPLANATIONS, KIND_EVIDENCE
from trustforge.evaluate._shift import shift_evaluation
from trustforge.evaluate._speed import measure_speed
from trustforge.evaluate._tasks import outputs_to_proba, task_of
from trustforge.spec import TaskSpec

__all__ = ["calibrate", "gather", "EVIDENCE", "EXPLANATIONS"]

EVIDENCE = "evidence.json"


def calibrate(spec: TaskSpec, data: Prepared, val_logits: torch.Tensor | None, test_logits: torch.Tensor) -> dict[str, Any] | None:
    """Expected calibration error on the test split, before and after temperature scaling.

    The temperature is fitted on the validation split only (never on test), and only when the
    spec asks for it and there is a validation split.
    """
    if not task_of(spec).probabilities:  # only class probabilities have a calibration
        return None
    k = len(data.schema.classes)
    y = data.test.target.numpy()
    before = calibration(outputs_to_proba(test_logits, k), y)
    result: dict[str, Any] = {"ece": before["ece"], "bins": before["bins"], "temperature": None, "ece_after": None, "bins_after": None}
    if spec.evaluate.calibrate and val_logits is not None and len(val_logits):
        t = fit_temperature(val_logits, data.validation.target)
        after = calibration(outputs_to_proba(apply_temperature(test_logits, t), k), y)
        result.update(temperature=t, ece_after=after["ece"], bins_after=after["bins"])
    return result


@dataclass
class Evaluation:
    """The test split's metrics as the package will predict, and the calibration behind them.

    Attributes:
        metrics: the task's full metric set on the test split.
        calibration: `calibrate`'s result (None for tasks without class probabilities).
        held_out: the outputs on the validation and test splits (the test ones as scored), the
            drift reference's predictions.
    """

    metrics: dict[str, Any]
    calibration: dict[str, Any] | None
    held_out: list[torch.Tensor | None]

    @property
    def temperature(self) -> float | None:
        return self.calibration["temperature"] if self.calibration is not None else None

    def manifest_entry(self) -> dict[str, Any] | None:
        """What the package records of the calibration it predicts with, or None."""
        if self.temperature is None:
            return None
        c = self.calibration
        return {"temperature": c["temperature"], "ece": c["ece"], "ece_after": c["ece_after"]}

    def with_evidence(self, metrics: dict[str, Any], evidence: dict[str, Any]) -> dict[str, Any]:
        """`metrics` with the headline evidence after them (speed, calibration error), for metrics.json."""
        out = dict(metrics)
        if evidence.get("speed"):
            out["speed"] = evidence["speed"]
        for key in ("baseline", "intervals"):
            if evidence.get(key):
                out[key] = evidence[key]
        if self.calibration is not None:
            out["ece"] = self.calibration["ece"]
            out["ece_after_temperature"] = self.calibration["ece_after"]
        return out


def evaluate_test(
    spec: TaskSpec, data: Prepared, module: torch.nn.Module, test_out: torch.Tensor, val_out: torch.Tensor | None
) -> Evaluation:
    """Calibrate on the validation split, then score the test split as the package predicts.

    `test_out` and `val_out` are float32 outputs even after mixed-precision training: the package
    predicts in float32, and its metrics must describe what it predicts. With a fitted
    temperature the test outputs are divided by it before scoring.
    """
    calib = calibrate(spec, data, val_out, test_out)
    scored = test_out / calib["temperature"] if calib is not None and calib["temperature"] is not None else test_out
    return Evaluation(task_of(spec).test_metrics(data, scored, module), calib, [val_out, scored])


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
) -> dict[str, Any]:
    """Measure and write `evidence.json` (and `explanations.safetensors`) into the run folder.

    Args:
        model: the `trustforge.Model` loaded back from the verified package.
        metric: the headline metric (for the corruption table; the task's `headline_metric`).
    """
    ev = spec.evaluate
    kind = KIND_EVIDENCE[data.schema.modality]
    evidence: dict[str, Any] = {"data": _describe(spec, data), "calibration": calib}
    if task_of(spec).probabilities:
        proba = model.predict_proba(data.test_raw)
        evidence["curves"] = curves(data.test.target.numpy(), proba, list(data.schema.classes))
    baseline, intervals = yardstick(spec, data, model, task_of(spec))
    if baseline is not None:  # the yardstick, and how sure the test split lets us be
        evidence["baseline"], evidence["intervals"] = baseline, intervals
    if ev.speed:
        evidence["speed"] = measure_speed(
            model.module,
            data.test.inputs,
            fit_seconds=fit_seconds,
            train_samples=len(data.train),
            epochs=epochs,
            package_dir=package,
            seconds_budget=1.0,
        )
    if ev.corruptions:
        table = kind.corruptions(spec, model, data.test_raw, metric)
        if table is not None:
            evidence["corruptions"] = table
    if ev.shift:
        evidence["shift"] = shift_evaluation(model.evaluate, kind.read_shift(spec, model), data.test_raw, model.schema)
    if ev.explain:
        # Captum notes that it switched requires_grad on for the inputs: expected, not news.
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients", module="captum")
        evidence["explanations"] = kind.explain(spec, data, model, run_dir)
    skipped = kind.not_applicable(spec)
    if baseline is None:
        skipped = {**skipped, "baseline": f"task {task_of(spec).name} names no baseline to measure the model against"}
    if skipped:  # say why a part of the evidence is absent, rather than leave a silent gap
        evidence["skipped"] = skipped
    atomic_write_text(run_dir / EVIDENCE, json.dumps(evidence, indent=1, default=_plain))
    return evidence


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
        "split_sizes": {
            "train": len(data.train),
            "validation": len(data.validation) if data.validation is not None else 0,
            "test": len(data.test),
        },
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
