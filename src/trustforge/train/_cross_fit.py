"""Out-of-fold class probabilities of the training split, and the label-issue pass built on them.

Confident learning (`data.find_label_issues`) needs, for every training row, class
probabilities from a model that did not see that row. `cross_fit` trains `folds` copies of the
run's own model kind, each on the other folds (stratified by the given label, seeded) for a few
epochs, and keeps each row's prediction from the copy that held it out. The data stage may not
train models, so this lives here; the pipeline calls `clean_labels` once, before the run's
own training.

Why the run's model kind and not a linear model on the encoded inputs: with 5 % of the labels
flipped (5 seeds, a prototype beside the benchmark), logistic regression on digits' standardised
pixels (`evaluate`'s `LogisticModel`, C from 1 to 0.03, 5 or 10 folds) flagged the flips at
precision 0.57-0.89 and recall 0.79-0.94, under the issue's 0.8 on some seeds at every C; 5 folds
of the example's CNN for 20 epochs reach precision 0.93-1.00 and recall 0.84-0.97
(`bench/label_issues.py`). On breast cancer the MLP and a tuned logistic regression were on a
par. A network also covers every input kind (text, audio) with no second feature pipeline.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from trustforge.data import Prepared, TensorData, clean_training, find_label_issues, label_issues_refusal, report_label_issues, row_names
from trustforge.models import build_model
from trustforge.train._trainer import Trainer, seeded

__all__ = ["cross_fit", "clean_labels", "stratified_folds", "DEFAULT_MAX_EPOCHS"]

DEFAULT_MAX_EPOCHS = 20  # each fold's model trains train.max_epochs, at most this many, unless data.clean.epochs says


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of each row: each class's rows shuffled (seeded) and dealt round the folds."""
    rng = np.random.default_rng([seed, 0x1AB])
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        rng.shuffle(rows)
        fold[rows] = (np.arange(len(rows)) + start) % folds  # classes continue where the last left off: even fold sizes
        start += len(rows)
    return fold


def _to_proba(out: torch.Tensor, k: int) -> np.ndarray:
    out = out.float()
    if out.shape[-1] == 1 and k == 2:  # one logit: binary cross-entropy
        p = torch.sigmoid(out)
        return torch.cat([1 - p, p], dim=-1).numpy().astype(np.float64)
    return torch.softmax(out, dim=-1).numpy().astype(np.float64)


def cross_fit(spec: Any, data: Prepared, task: Any, rows: TensorData, *, folds: int, epochs: int) -> np.ndarray:
    """(N, K) out-of-fold class probabilities of `rows` (the training rows, one per row read).

    Each fold's model is the spec's model kind, trained plainly (no early stopping, privacy or
    adversarial steps, which would change what the probabilities describe, and no validation
    split) for `epochs` epochs with the spec's seed.
    """
    k = len(data.schema.classes or [])
    labels = rows.target.numpy()
    fold = stratified_folds(labels, folds, spec.train.seed)
    plain = spec.model_copy(deep=True)
    plain.train.max_epochs = epochs
    plain.train.early_stopping = None
    plain.train.privacy = None
    plain.train.adversarial = None
    proba = np.zeros((len(labels), k))
    for f in range(folds):
        train_idx, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        if not len(held):
            continue
        part = TensorData(tuple(t[train_idx] for t in rows.inputs), rows.target[train_idx])
        with seeded(plain.train.seed + f):
            model = build_model(plain, data.schema)
        trainer = Trainer.from_spec(plain, dataclasses.replace(data, train=part, validation=None), task)
        trainer.fit(model, part, None)
        proba[held] = _to_proba(trainer.predict(tuple(t[held] for t in rows.inputs), mixed_precision=False), k)
    return proba


def clean_labels(spec: Any, data: Prepared, task: Any) -> tuple[Prepared, dict[str, Any] | None]:
    """Find the training split's likely label errors and apply `data.clean.label_issues`.

    Returns:
        The prepared data (its training split without, or with relabelled, flagged rows under
        `drop` or `relabel`) and what `label_issues.json` holds, or (data, None) when off.

    Raises:
        SpecError: the task has no class labels to clean (regression, forecasting, ...), or the
            spec trains privately (`train.privacy`).
        DataError: the training rows as read are not at hand.
    """
    clean = spec.data.clean
    if clean.label_issues == "off":
        return data, None
    label_issues_refusal(
        spec,
        probabilities=task.probabilities,
        classes=data.schema.classes,
        modality=data.schema.modality,
        has_rows=data.train_raw is not None,
    )
    raw = data.train_raw
    t0 = time.perf_counter()
    if len(data.train) == len(raw):
        rows = data.train
    else:  # the kind trains on copies of its rows (augmented clips): check the rows as read
        rows = TensorData(data.preprocessor.encode_inputs(raw), data.preprocessor.encode_target(raw))
    epochs = clean.epochs or min(spec.train.max_epochs, DEFAULT_MAX_EPOCHS)
    proba = cross_fit(spec, data, task, rows, folds=clean.folds, epochs=epochs)
    issues = find_label_issues(rows.target.numpy(), proba)
    cleaned = clean_training(spec, data, issues, clean.label_issues)
    found = issues.to_json(
        [str(c) for c in data.schema.classes],
        row_names(raw),
        policy=clean.label_issues,
        listed=clean.max_listed,
        extra={
            "folds": clean.folds,
            "epochs": epochs,
            "model": spec.model.kind,
            "out_of_fold_accuracy": round(float((proba.argmax(axis=1) == rows.target.numpy()).mean()), 4),
            "train_rows_before": len(raw),
            "train_rows_after": len(cleaned.train_raw) if cleaned.train_raw is not None else len(raw),
            "relabelled": len(issues) if clean.label_issues == "relabel" else 0,
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    return report_label_issues(cleaned, found), found  # the summary line and warnings; the counts in metrics.json
