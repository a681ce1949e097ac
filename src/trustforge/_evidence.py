"""The evidence a run gathers beside its test metrics, wired from the evaluate stage's parts.

Part of the pipeline (it is the only caller): calibration happens before packaging, because
the fitted temperature travels in the package; everything else is measured on the model
loaded back from its verified package, so the evidence describes what will be served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from trustforge._fs import atomic_write_text
from trustforge.data import Prepared, RawData, as_text, load_source, redact_source
from trustforge.data._interactions import read_interactions
from trustforge.evaluate import outputs_to_proba, task_of
from trustforge.evaluate._calibration import apply_temperature, calibration, curves, fit_temperature
from trustforge.evaluate._sequence_noise import forecast_noise_table, sequence_noise_table
from trustforge.evaluate._shift import corruption_table, shift_evaluation
from trustforge.evaluate._speed import measure_speed
from trustforge.spec import TaskSpec

__all__ = ["calibrate", "gather", "headline_metric", "EVIDENCE", "EXPLANATIONS"]

EVIDENCE = "evidence.json"
EXPLANATIONS = "explanations.safetensors"


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


def gather(spec: TaskSpec, data: Prepared, model: Any, *, run_dir: Path, package: Path, calib: dict[str, Any] | None,
           fit_seconds: float, epochs: int, metric: str) -> dict[str, Any]:
    """Measure and write `evidence.json` (and `explanations.safetensors`) into the run folder.

    Args:
        model: the `trustforge.Model` loaded back from the verified package.
        metric: the headline metric (for the corruption table).
    """
    ev = spec.evaluate
    evidence: dict[str, Any] = {"data": _describe(spec, data), "calibration": calib}
    if task_of(spec).probabilities:
        proba = model.predict_proba(data.test_raw)
        evidence["curves"] = curves(data.test.target.numpy(), proba, list(data.schema.classes))
    if ev.speed:
        evidence["speed"] = measure_speed(model.module, data.test.inputs, fit_seconds=fit_seconds,
                                          train_samples=len(data.train), epochs=epochs, package_dir=package,
                                          seconds_budget=1.0)
    if ev.corruptions and data.schema.modality == "series":  # noise on what the model reads, not on what it is scored on
        evidence["corruptions"] = forecast_noise_table(model.outputs, model.preprocessor, data.test_raw,
                                                       severities=tuple(ev.severities), seed=spec.train.seed)
    elif ev.corruptions and data.schema.modality == "sequence":
        evidence["corruptions"] = sequence_noise_table(model.evaluate, data.test_raw, metric=metric,
                                                       severities=tuple(ev.severities), seed=spec.train.seed)
    elif ev.corruptions and data.schema.modality != "interactions":
        evidence["corruptions"] = corruption_table(model.evaluate, data.test_raw, metric=metric,
                                                   severities=tuple(ev.severities), seed=spec.train.seed,
                                                   features=model.preprocessor.column_features() or None)
    if ev.shift and data.schema.modality == "interactions":  # another interactions table with the same columns
        shifted = read_interactions(ev.shift, spec.data.interactions)
        evidence["shift"] = shift_evaluation(model.evaluate, shifted, data.test_raw, model.schema)
    elif ev.shift:
        d = spec.data
        # A builtin training set names its own target; a shift file must hold the same column.
        shifted = load_source(ev.shift, target=d.target or model.schema.target, image_size=tuple(d.image.size), channels=d.image.channels, seed=spec.train.seed,
                              sample_rate=d.audio.sample_rate, seconds=d.audio.seconds)
        if model.schema.modality == "series" and shifted.modality == "table":  # a CSV/Parquet file holding another series
            shifted = RawData("series", shifted.target, shifted.origin, frame=shifted.frame)
        if model.schema.modality == "text":  # a table holding the model's text column
            shifted = as_text(shifted, model.schema.text["column"])
        evidence["shift"] = shift_evaluation(model.evaluate, shifted, data.test_raw, model.schema)
    if ev.explain:
        evidence["explanations"] = _explain(spec, data, model, run_dir)
    skipped = _not_applicable(spec, data)
    if skipped:  # say why a part of the evidence is absent, rather than leave a silent gap
        evidence["skipped"] = skipped
    atomic_write_text(run_dir / EVIDENCE, json.dumps(evidence, indent=1, default=_plain))
    return evidence


def _explain(spec: TaskSpec, data: Prepared, model: Any, run_dir: Path) -> dict[str, Any] | None:
    import warnings

    from trustforge.evaluate._explain import explain_images, feature_importance

    # Captum notes that it switched requires_grad on for the inputs: expected, not news.
    warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients", module="captum")

    # Audio is explained over its log-mel spectrogram (N, 1, n_mels, frames), the model's input.
    if data.schema.modality in ("image", "audio") and task_of(spec).probabilities:
        info, tensors = explain_images(model.module, data.test.inputs[0], data.test.target,
                                       per_class=spec.evaluate.explain_per_class, seed=spec.train.seed)
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(run_dir / EXPLANATIONS))
        if data.schema.modality == "audio":  # the report draws it with low frequencies at the bottom
            info["input"] = "log-mel spectrogram (mel bands × frames)"
        return info
    if data.schema.modality == "table":
        groups = data.preprocessor.column_groups()  # whole columns, whatever their feature type

        def metric_of_inputs(inputs: tuple[torch.Tensor, ...]) -> float:
            with torch.no_grad():
                out = model.module(*inputs).float()
            if task_of(spec).probabilities:
                # Minus log-loss, not accuracy: accuracy ties on small test sets.
                p = outputs_to_proba(out, len(data.schema.classes))
                picked = p[np.arange(len(p)), data.test.target.numpy()]
                return float(np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
            y = data.test.target.numpy().astype(np.float64)
            return -float(np.sqrt(np.mean((out.squeeze(-1).numpy() - y) ** 2)))  # higher is better

        return {"feature_importance": feature_importance(model.module, data.test.inputs, data.test.target, [g[0] for g in groups],
                                                         metrics_of_inputs=metric_of_inputs, seed=spec.train.seed, groups=groups)}
    if data.schema.modality == "text":  # token attributions along the embedding layer (see evaluate/_text)
        from trustforge.evaluate._text import explain_text_model

        return explain_text_model(model, data.test.inputs[0], data.test.target, per_class=spec.evaluate.explain_per_class,
                                  seed=spec.train.seed)
    return None


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
        "split_sizes": {"train": len(data.train), "validation": len(data.validation) if data.validation is not None else 0,
                        "test": len(data.test)},
    }


def headline_metric(spec: TaskSpec) -> str:
    return task_of(spec).headline_metric(spec)


def _not_applicable(spec: TaskSpec, data: Prepared) -> dict[str, str]:
    """The parts of the evidence that do not apply to this task or input, each with the reason."""
    out = {}
    if data.schema.modality == "series":
        out["calibration"] = "task forecasting predicts values, not class probabilities: there is nothing to calibrate"
        if spec.evaluate.explain:
            out["explanations"] = "no attribution method for forecasting windows yet; the input-noise table shows sensitivity"
    elif data.schema.modality == "sequence" and spec.evaluate.explain:
        out["explanations"] = "no attribution method for numeric sequences yet; the noise table shows sensitivity"
    elif data.schema.modality == "interactions":
        out["calibration"] = "task recommendation scores and ranks items; it predicts no class probabilities to calibrate"
        if spec.evaluate.corruptions:
            out["corruptions"] = "user and item ids have no noise model; the unknown-id fallback is tested instead"
        if spec.evaluate.explain:
            out["explanations"] = "an id embedding has no features to attribute a score to"
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
