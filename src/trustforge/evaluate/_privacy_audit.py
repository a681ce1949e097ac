"""Membership-inference audit: how well a model's outputs tell its training rows from unseen ones.

Two black-box attacks score each row; a higher score says "member". Both are run on a balanced,
seeded sample: training rows (members) against rows of the test split (never trained on).

- `loss`: the loss-threshold attack of Yeom et al. (2018). The score is minus the row's loss
  under the task's own loss (cross-entropy, or binary cross-entropy on one logit; squared
  error for regression), on the outputs as served (the calibration temperature applied).
  Besides the ROC, Yeom's own decision rule (member when the loss is below the mean training
  loss) gives the membership advantage TPR - FPR.
- `confidence` (classification): the logit-scaled confidence of the true class,
  log(p / (1 - p)), which Carlini et al. (2022, LiRA) show to be near-Gaussian per example,
  standardised per class by its mean and spread on the validation split (rows the attacker
  holds but the model never trained on). LiRA proper standardises per example against shadow
  models trained with and without it: dozens of trainings, not affordable in every CPU run.
  The per-class calibration (an "offline" LiRA whose reference is the class, not the example)
  costs one forward pass of the validation split and removes the attack's confusion between a
  hard class and a member; without a validation split the score is left uncalibrated.

Figures per attack: the AUC (with the Hanley-McNeil 95 % interval), the true-positive rate at
1 % and 0.1 % false positives where the held-out sample resolves that rate (at least 1/FPR
rows, so that one false positive is allowed), each with a Wilson 95 % interval over the
members, and the ROC on a fixed grid of false-positive rates for the report. The cost is the
forward passes: a fraction of a second on small data.

A private model (`train.privacy`) is audited beside its non-private twin (the pipeline trains
the same network without DP-SGD; `train.privacy.compare`): the twin is attacked on the same
rows, and both models' headline test metric is recorded, so the evidence holds what the
guarantee bought and what it cost side by side.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["privacy_audit", "audit_refusal", "roc", "roc_auc", "tpr_at_fpr", "training_privacy"]

_FPRS = (0.01, 0.001)
_Z = 1.959963984540054  # the 97.5 % quantile of the standard normal: 95 % intervals
_MIN_PER_CLASS = 5  # validation rows a class needs before its own mean and spread are trusted
_BATCH = 512


def audit_refusal(model: Any) -> str | None:
    """Why the audit cannot run on `model` (its task has no per-row loss on independent rows), else None.

    `model` is a model (its `task` is read) or a task itself (the pipeline asks before it trains a twin)."""
    name = getattr(model, "task", model).name
    if name not in ("classification", "regression"):
        return (
            f"task {name} has no per-row loss on independent training rows (a {name} row is a window or an interaction "
            "that shares its parts with its neighbours), so a row-level membership attack does not apply"
        )
    return None


def training_privacy(spec: Any, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the model was trained with, privacy-wise: ``{"private": False}`` or ``{"private":
    True, <train.privacy's fields>, "spent": <the package's privacy record>?}``, read
    defensively (specs before `train.privacy` have no such field)."""
    p = getattr(getattr(spec, "train", None), "privacy", None)
    if not p:
        return {"private": False}
    out: dict[str, Any] = {"private": True}
    fields = p.model_dump() if hasattr(p, "model_dump") else dict(p) if isinstance(p, dict) else {}
    out.update({k: v for k, v in fields.items() if isinstance(v, (int, float, str, bool)) and v is not None and k != "compare"})
    spent = (manifest or {}).get("privacy")
    if isinstance(spent, dict):
        out["spent"] = spent
    return out


def privacy_audit(
    model: Any,
    data: Any,
    settings: Any,
    *,
    seed: int,
    plain_twin: torch.nn.Module | None = None,
    metric: str | None = None,
) -> dict[str, Any]:
    """Attack `model` on its training rows against held-out test rows and measure what leaks.

    Callable on any packaged model trained on `data`. With `plain_twin` (a private model's
    non-private twin: the same network trained on the same rows without DP-SGD) the twin is
    attacked on the very same rows, and both models' test `metric` is recorded, so the report
    shows the two side by side: what the guarantee bought (the attacks' AUC) and what it cost
    (the metric).

    Args:
        model: a `trustforge.Model` (its `forward`, `task`, `spec`, `manifest`, `classes`).
        data: the `Prepared` splits the model was trained on: `train` (members), `test`
            (non-members) and, for the calibrated attack, `validation`.
        settings: a `spec.PrivacyAuditSpec` (`attacks`, `rows`).
        seed: draws the balanced samples.
        plain_twin: the non-private twin's network (its outputs are used raw: no temperature).
        metric: the headline test metric recorded for each model (with `plain_twin`); default
            the task's own.

    Returns:
        ``{"skipped": reason}`` where no attack applies, else ``{"members", "non_members",
        "of_train", "of_test", "training", "attacks": {name: {"auc", "auc_interval",
        "tpr_at_fpr": {"0.01": {"tpr", "interval"} | None, "0.001": ...}, "roc": {"fpr", "tpr"},
        "note", ...}}, "seconds"}``; with `plain_twin` also ``"metric": {"name", "value"}`` and
        ``"plain_twin": {"training", "attacks", "metric", "seconds"}``, the twin's figures in the
        same shape.
    """
    reason = audit_refusal(model)
    if reason is not None:
        return {"skipped": reason}
    start = time.perf_counter()
    n = min(len(data.train), len(data.test), settings.rows)
    if n < 10:
        return {"skipped": f"too few rows for a membership audit ({len(data.train)} training, {len(data.test)} test; at least 10 each)"}
    out = {
        "members": n,
        "non_members": n,
        "of_train": len(data.train),
        "of_test": len(data.test),
        "training": training_privacy(model.spec, model.manifest),
        "attacks": _attacks(model, data, settings, n, seed),
    }
    if plain_twin is not None:
        twin = _Twin(model, plain_twin)
        name = metric or model.task.headline_metric(model.spec)
        out["metric"] = {"name": name, "value": _test_metric(model, data, name, model.decision)}
        tick = time.perf_counter()
        out["plain_twin"] = {
            "training": {"private": False},
            "attacks": _attacks(twin, data, settings, n, seed),  # the same seed: the same rows attacked
            "metric": {"name": name, "value": _test_metric(twin, data, name, None)},
        }
        out["plain_twin"]["seconds"] = time.perf_counter() - tick
    out["seconds"] = time.perf_counter() - start
    return out


def _attacks(model: Any, data: Any, settings: Any, n: int, seed: int) -> dict[str, Any]:
    """The attacks of `settings` on `n` training rows against `n` test rows drawn by `seed`."""
    rng = np.random.default_rng(seed)
    members = _rows(data.train, rng.choice(len(data.train), n, replace=False))
    outsiders = _rows(data.test, rng.choice(len(data.test), n, replace=False))
    out_in = _outputs(model, members[0])
    out_out = _outputs(model, outsiders[0])
    classification = model.task.probabilities
    attacks: dict[str, Any] = {}
    if "loss" in settings.attacks:
        loss_in, loss_out = _row_loss(out_in, members[1], classification), _row_loss(out_out, outsiders[1], classification)
        a = _figures(-loss_in, -loss_out)
        # Yeom's rule: a member when the loss is below the mean training loss (which an attacker can estimate).
        cut = float(loss_in.mean())
        tpr, fpr = float((loss_in < cut).mean()), float((loss_out < cut).mean())
        a["yeom"] = {"threshold": cut, "tpr": tpr, "fpr": fpr, "advantage": tpr - fpr}
        a["note"] = "minus the row's loss as served (Yeom et al., 2018)"
        attacks["loss"] = a
    if "confidence" in settings.attacks and classification:
        conf_in, conf_out = _logit_confidence(out_in, members[1]), _logit_confidence(out_out, outsiders[1])
        mean, std, how = _calibration(model, data.validation, settings.rows, rng)
        score_in = (conf_in - mean[members[1].numpy()]) / std[members[1].numpy()]
        score_out = (conf_out - mean[outsiders[1].numpy()]) / std[outsiders[1].numpy()]
        a = _figures(score_in, score_out)
        a["note"] = f"logit-scaled confidence of the true class (Carlini et al., 2022), {how}"
        attacks["confidence"] = a
    return attacks


class _Twin:
    """A private model's non-private twin network, dressed as the model for the attacks: the
    model's task, classes and inputs, the twin's raw outputs, trained without privacy."""

    def __init__(self, model: Any, module: torch.nn.Module):
        self.task, self.classes, self.module = model.task, model.classes, module.eval()
        self.spec, self.manifest, self.decision = None, {}, None

    @torch.no_grad()
    def forward(self, inputs: tuple[torch.Tensor, ...], batch_size: int = _BATCH) -> torch.Tensor:
        n = len(inputs[0])
        outs = [self.module(*(t[i : i + batch_size] for t in inputs)).float() for i in range(0, n, batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, 1)


def _test_metric(model: Any, data: Any, name: str, decision: Any) -> float | None:
    """`name` of the task's test metrics for `model`'s outputs on the test split (None if the task has no such metric)."""
    out = _outputs(model, data.test.inputs)
    task = model.task
    m = (
        task.test_metrics(data, out, model.module, decision=decision)
        if decision is not None
        else task.test_metrics(data, out, model.module)
    )
    v = m.get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ---------------------------------------------------------------------------- scores


def _rows(split: Any, idx: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    i = torch.as_tensor(np.sort(idx))
    return tuple(t[i] for t in split.inputs), split.target[i]


def _outputs(model: Any, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return model.forward(inputs, batch_size=_BATCH).float()


def _row_loss(out: torch.Tensor, y: torch.Tensor, classification: bool) -> np.ndarray:
    """The task's loss per row, unweighted (class weights and label smoothing shape training, not what a row costs)."""
    if not classification:
        return ((out.squeeze(-1) - y.float()) ** 2).numpy().astype(np.float64)
    if out.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(out.squeeze(-1), y.float(), reduction="none").numpy().astype(np.float64)
    return F.cross_entropy(out, y.long(), reduction="none").numpy().astype(np.float64)


def _logit_confidence(out: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """log(p_y / (1 - p_y)) computed on the logits (z_y - logsumexp of the others), finite where p_y rounds to 1."""
    if out.shape[-1] == 1:  # one logit: p = sigmoid(z), so the logit-scaled confidence is z or -z
        z = out.squeeze(-1)
        return torch.where(y.bool(), z, -z).numpy().astype(np.float64)
    y = y.long()
    true = out.gather(1, y[:, None]).squeeze(1)
    others = out.scatter(1, y[:, None], float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy().astype(np.float64)


def _calibration(model: Any, val: Any, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-class mean and spread of the logit-scaled confidence on (a seeded sample of at most
    `rows` of) the validation split, one forward pass; classes with fewer than `_MIN_PER_CLASS`
    rows take the pooled figures."""
    k = max(len(model.classes or []), 2)
    if val is None or len(val) < 2 * _MIN_PER_CLASS:
        return np.zeros(k), np.ones(k), "uncalibrated (no validation split to calibrate on)"
    inputs, y = _rows(val, rng.choice(len(val), min(rows, len(val)), replace=False))
    y = y.long()
    conf = _logit_confidence(_outputs(model, inputs), y)
    pooled_mean, pooled_std = float(conf.mean()), float(conf.std()) or 1.0
    mean, std = np.full(k, pooled_mean), np.full(k, pooled_std)
    labels = y.numpy()
    own = 0
    for c in range(k):
        v = conf[labels == c]
        if len(v) >= _MIN_PER_CLASS and v.std() > 0:
            mean[c], std[c] = v.mean(), v.std()
            own += 1
    return mean, std, f"standardised per class on {len(y)} validation rows ({own} of {k} classes with their own mean and spread)"


# ---------------------------------------------------------------------------- figures


def roc(member_scores: np.ndarray, outsider_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1): a row
    is called a member when its score is >= the threshold (tied scores move together)."""
    s = np.concatenate([member_scores, outsider_scores]).astype(np.float64)
    y = np.concatenate([np.ones(len(member_scores)), np.zeros(len(outsider_scores))])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each run of equal scores
    tp, fp = np.cumsum(y)[last], np.cumsum(1 - y)[last]
    return np.r_[0.0, fp / max(len(outsider_scores), 1)], np.r_[0.0, tp / max(len(member_scores), 1)]


def roc_auc(member_scores: np.ndarray, outsider_scores: np.ndarray) -> float:
    """The area under `roc` (trapezoids: a tie counts one half), the chance that a member outscores an outsider."""
    fpr, tpr = roc(member_scores, outsider_scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The highest true-positive rate among thresholds whose false-positive rate is <= `target`."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def _figures(member_scores: np.ndarray, outsider_scores: np.ndarray) -> dict[str, Any]:
    fpr, tpr = roc(member_scores, outsider_scores)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    n_in, n_out = len(member_scores), len(outsider_scores)
    at: dict[str, Any] = {}
    for f in _FPRS:
        if n_out * f < 1:  # fewer than 1/f outsiders: FPR f allows no false positive; the rate is not resolved
            at[str(f)] = None
            continue
        t = tpr_at_fpr(fpr, tpr, f)
        at[str(f)] = {"tpr": t, "interval": _wilson(t, n_in), "false_positives_allowed": int(n_out * f)}
    grid = np.unique(np.r_[0.0, np.geomspace(1.0 / n_out, 1.0, 40), np.linspace(0, 1, 21)])
    return {
        "auc": auc,
        "auc_interval": _hanley_mcneil(auc, n_in, n_out),
        "tpr_at_fpr": at,
        "roc": {"fpr": [round(float(g), 6) for g in grid], "tpr": [round(tpr_at_fpr(fpr, tpr, g), 6) for g in grid]},
    }


def _hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> list[float]:
    """95 % interval of an AUC by Hanley and McNeil's (1982) standard error."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    return [max(0.0, auc - _Z * se), min(1.0, auc + _Z * se)]


def _wilson(p: float, n: int) -> list[float]:
    """Wilson's 95 % interval of a proportion p observed on n trials."""
    d = 1 + _Z * _Z / n
    centre = (p + _Z * _Z / (2 * n)) / d
    half = _Z * math.sqrt(p * (1 - p) / n + _Z * _Z / (4 * n * n)) / d
    return [max(0.0, centre - half), min(1.0, centre + half)]
