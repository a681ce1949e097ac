"""The data profile: what a run's data looks like, written to its folder as `profile.json` and shown in the report.

Per input: for a table, each column's feature type, missing fraction and distinct count and
what its type says of it (`FeatureType.profile`: a range and histogram for numbers, the most
frequent values for categories, lengths for free text, sizes and dimensions for files); for
the other kinds, what one row holds (`InputKind.profile`: an image's shape and brightness, a
clip's length and loudness). Then the target (class balance, or the range of a regression
target), the duplicate findings (`data._duplicates`), and three checks of the columns:

- constant columns (one value) and almost constant ones (one value in at least 99 % of rows);
- ID-like columns: (nearly) every value distinct and not a measurement (short codes, or whole
  numbers that count up row by row or are densely numbered), or named like an id; a model can
  only memorise them;
- leakage: a column that on its own predicts the target suspiciously well. Each column is cut
  into at most 20 bins (quantiles of the training split; a category is its own bin), each bin
  predicts its training majority class (or mean), and the score is measured on the held-out
  rows: the share of the gap between the majority class's accuracy and 1 that the column
  closes (classification), or R² (regression). A quantile bin can straddle the boundary
  between the classes (a noisy copy of a 0/1 target scores 0.90 by bins alone), so a number
  column of a classification target is also scored by two cut-point rules fitted on the
  training split, and keeps the best of the three scores: the best single threshold (a
  decision stump, two classes), and the runs of its sorted training values that share a
  majority class, cut half-way between runs (any number of classes; one cut per class
  boundary for a copy of the target, about a nearest-neighbour rule for a real measurement,
  which scores lower out of sample). At or above `LEAK_SCORE` the column is named.

The profile is computed on the data as training reads it, after any masking of personal data
upstream, and prints no rare value: numeric ranges are means of the `K` lowest and highest
values (as the package's state keeps them), and listed values are cut short and shared by at
least `PROFILE_MIN_COUNT` rows (see `data.features`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trustforge.data._duplicates import Duplicates
from trustforge.data._duplicates import id_like as _id_like
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema, no_target_note
from trustforge.data.features import feature_type, label_strings
from trustforge.data.features._base import short

__all__ = ["LEAK_SCORE", "clip_profile", "grid_profile", "profile_columns", "profile_data", "sequence_profile"]

LEAK_SCORE = 0.95  # a column alone closing this share of the gap to a perfect score is named as a likely leak
BINS = 20  # bins a column is cut into for the leakage check
ALMOST_CONSTANT = 0.99  # share of rows holding one value that makes a column almost constant


def profile_columns(frame: pd.DataFrame, schema: Schema) -> list[dict[str, Any]]:
    """Each input column's profile: its type, missing fraction, distinct count and what its type says."""
    out = []
    n = max(len(frame), 1)
    for c in schema.columns:
        col = frame[c.name]
        t = feature_type(c.kind)
        entry: dict[str, Any] = {"name": c.name, "type": t.name, "missing_fraction": float(col.isna().sum()) / n}
        try:
            entry["distinct"] = int(col.nunique(dropna=True))
        except TypeError:  # unhashable values (lists): counted as text
            entry["distinct"] = int(col.dropna().astype(str).nunique())
        entry.update(t.profile(col))
        out.append(entry)
    return out


def grid_profile(images: np.ndarray) -> dict[str, Any]:
    """Images (N, C, H, W) in [0, 1]: their shape and the spread of each image's mean brightness."""
    brightness = images.reshape(len(images), -1).mean(axis=1) if len(images) else np.zeros(0)
    return {"shape": list(images.shape[1:]), "brightness": _histogram(brightness, 0.0, 1.0)}


def clip_profile(waves: np.ndarray, sample_rate: int | None) -> dict[str, Any]:
    """Clips (N, T): their length in seconds, how much of each is sound, and their loudness."""
    if not len(waves):
        return {}
    rate = float(sample_rate or 1)
    rms = np.sqrt(np.mean(np.square(waves.astype(np.float64)), axis=1))
    db = 20.0 * np.log10(np.maximum(rms, 1e-6))
    # Sound: samples above 1 % of the clip's peak; a clip padded to a fixed length shows it here.
    peak = np.abs(waves).max(axis=1, keepdims=True)
    sounding = (np.abs(waves) > 0.01 * np.maximum(peak, 1e-9)).mean(axis=1)
    silent = int((peak[:, 0] < 1e-4).sum())
    return {
        "seconds": waves.shape[1] / rate,
        "sample_rate": int(rate),
        "sounding_fraction": _histogram(sounding, 0.0, 1.0),
        "loudness_dbfs": _histogram(db, float(db.min()), float(db.max())),
        "silent_clips": silent,
    }


def sequence_profile(sequences: np.ndarray) -> dict[str, Any]:
    """Numeric sequences (N, T, F): their shape and the spread of their values per feature."""
    if not len(sequences):
        return {}
    x = sequences.reshape(-1, sequences.shape[-1]).astype(np.float64)
    return {
        "shape": list(sequences.shape[1:]),
        "mean": [float(v) for v in np.nanmean(x, axis=0)],
        "std": [float(v) for v in np.nanstd(x, axis=0)],
        "missing_fraction": float(np.isnan(x).mean()),
    }


def _histogram(values: np.ndarray, low: float, high: float) -> dict[str, Any]:
    if high <= low:
        high = low + 1.0
    edges = np.linspace(low, high, 11)
    counts = np.histogram(np.clip(values, low, high), bins=edges)[0]
    return {"mean": float(values.mean()) if len(values) else None, "edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


# ---------------------------------------------------------------------------- the whole profile


def profile_data(
    kind: Any,
    raw: RawData,
    schema: Schema,
    splits: dict[str, np.ndarray],
    duplicates: Duplicates,
) -> dict[str, Any]:
    """The profile of `raw` (the data set after the duplicate policies, before augmentation).

    Args:
        kind: the data's `InputKind` (it profiles its own inputs: `InputKind.profile`).
        splits: "train", "validation", "test" -> row positions in `raw`, as finally used.
        duplicates: the findings of `data._duplicates`.
    """
    labels = kind.labels(raw)
    labels = label_strings(pd.Series(labels)) if labels is not None else None
    out: dict[str, Any] = {
        "rows": len(raw),
        "modality": schema.modality,
        "task": schema.task,
        "target": schema.target,
        "splits": {k: int(len(v)) for k, v in splits.items()},
        "inputs": kind.profile(raw, schema),
        "duplicates": duplicates.to_json(),
    }
    notes = ([no_target_note(schema.dropped_rows, schema.target)] if schema.dropped_rows else []) + duplicates.notes
    out["target_profile"] = _target(schema, raw, labels, splits)
    if schema.columns and raw.frame is not None:
        checks = column_checks(raw.frame, schema, labels, splits)
        out.update(checks)
        notes += _check_notes(checks, schema.task)
    else:
        out["column_checks"] = "skipped: the input is one array per row, not columns"
    out["notes"] = notes
    return out


def _target(schema: Schema, raw: RawData, labels: np.ndarray | None, splits: dict[str, np.ndarray]) -> dict[str, Any]:
    if labels is None:
        return {"skipped": "unlabelled"}
    if schema.task == "classification":
        classes = schema.classes or sorted(set(labels.tolist()))
        per_split = {}
        for name, idx in splits.items():
            counts = pd.Series(labels[idx]).value_counts()
            per_split[name] = {short(c): int(counts.get(c, 0)) for c in classes}
        counts = pd.Series(labels).value_counts()
        everywhere = [int(counts.get(c, 0)) for c in classes]
        return {
            "classes": {short(c): k for c, k in zip(classes, everywhere)},
            "per_split": per_split,
            "imbalance": float(max(everywhere) / max(min(everywhere), 1)),
            "majority_fraction": float(max(everywhere) / max(sum(everywhere), 1)),
        }
    values = raw.frame[schema.target] if raw.frame is not None else pd.Series(labels)
    return feature_type("numeric").profile(pd.to_numeric(values, errors="coerce"))


def column_checks(frame: pd.DataFrame, schema: Schema, labels: np.ndarray | None, splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """Constant, ID-like and leaking columns (see the module docstring)."""
    train = splits.get("train", np.arange(len(frame)))
    held = np.concatenate([v for k, v in splits.items() if k != "train"]) if len(splits) > 1 else np.zeros(0, dtype=np.int64)
    constant, almost, id_like, scores = [], [], [], []
    for c in schema.columns:
        col = frame[c.name]
        present = col.dropna()
        n = len(present)
        try:
            counts = present.value_counts()
        except TypeError:
            counts = present.astype(str).value_counts()
        if len(counts) <= 1:
            constant.append(c.name)
            continue
        top = float(counts.iloc[0]) / n
        if top >= ALMOST_CONSTANT:
            almost.append({"column": c.name, "top_fraction": top})
        values = feature_type(c.kind).profile_values(col)
        if values is None:
            continue
        reason = _id_like(c.name, values, len(counts), n)
        if reason:
            id_like.append({"column": c.name, "distinct_fraction": len(counts) / n, "why": reason})
            continue
        if labels is not None and len(held) and len(train):
            score = _leak_score(values, labels, frame[schema.target], schema.task, train, held)
            if score is not None:
                scores.append({"column": c.name, "score": score})
    scores.sort(key=lambda e: -e["score"])
    return {
        "constant": constant,
        "almost_constant": almost,
        "id_like": id_like,
        "leakage": [e for e in scores if e["score"] >= LEAK_SCORE],
        "strongest_columns": scores[:5],
        "leak_measure": "accuracy lift over the majority class" if schema.task == "classification" else "R²",
    }


def _codes(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Each value's bin: quantile bins of the training values for numbers (missing: its own bin), the value itself otherwise."""
    if values.dtype != object:
        present = values[train][~np.isnan(values[train])]
        if not len(present):
            return np.zeros(len(values), dtype=np.int64)
        edges = np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
        codes = np.searchsorted(edges, values, side="right").astype(np.int64)
        return np.where(np.isnan(values), -1, codes)
    return pd.factorize(pd.Series(values).fillna("\x00<missing>").astype(str))[0].astype(np.int64)


def _leak_score(values: np.ndarray, labels: np.ndarray, target: pd.Series, task: str, train: np.ndarray, held: np.ndarray) -> float | None:
    bins, _ = pd.factorize(_codes(values, train))  # (N,) in [0, m)
    m = int(bins.max()) + 1 if len(bins) else 1
    if task == "classification":
        y = pd.factorize(pd.Series(labels, dtype=object))[0]
        counts = np.zeros((m, int(y.max()) + 1))
        np.add.at(counts, (bins[train], y[train]), 1)
        majority = int(np.bincount(y[train]).argmax())
        seen = counts.sum(axis=1) > 0
        guess = np.where(seen, counts.argmax(axis=1), majority)  # each bin's majority class in training
        truth = y[held]
        base = float((truth == majority).mean())
        if base >= 1.0:
            return None
        guesses = [guess[bins[held]]]
        if values.dtype != object:
            guesses += _cut_guesses(values, y, train, held, majority)
        acc = max(float((g == truth).mean()) for g in guesses)
        return float(max(0.0, (acc - base) / (1.0 - base)))
    y = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64)
    ok_train = train[~np.isnan(y[train])]
    ok_held = held[~np.isnan(y[held])]
    if len(ok_train) < 2 or len(ok_held) < 2:
        return None
    sums = np.bincount(bins[ok_train], weights=y[ok_train], minlength=m)
    n = np.bincount(bins[ok_train], minlength=m)
    means = np.where(n > 0, sums / np.maximum(n, 1), float(y[ok_train].mean()))  # each bin's training mean
    predicted, truth = means[bins[ok_held]], y[ok_held]
    total = float(np.square(truth - truth.mean()).sum())
    return float(max(0.0, 1.0 - float(np.square(truth - predicted).sum()) / total)) if total > 0 else None


def _cut_guesses(values: np.ndarray, y: np.ndarray, train: np.ndarray, held: np.ndarray, majority: int) -> list[np.ndarray]:
    """Held-out guesses of two cut-point rules fitted on the training values of a number column (classes `y` in [0, K)).

    Runs: the sorted distinct training values, each labelled by its majority class, merged
    where neighbours share a class and cut half-way between; a held-out value takes its run's
    class. Stump (two classes): the one cut that classifies most training rows right, each side
    taking its majority. A missing value takes the majority class of the missing training rows
    (of all, if none). Cost: one sort of the training values.
    """
    k = int(y.max()) + 1
    x_train, y_train = values[train], y[train]
    ok = ~np.isnan(x_train)
    if ok.sum() < 2:
        return []
    missing = np.bincount(y_train[~ok], minlength=k)
    fill = int(missing.argmax()) if missing.sum() else majority
    uniq, inverse = np.unique(x_train[ok], return_inverse=True)
    counts = np.zeros((len(uniq), k))
    np.add.at(counts, (inverse, y_train[ok]), 1)
    x_held = values[held]
    gone = np.isnan(x_held)

    cls = counts.argmax(axis=1)
    change = np.flatnonzero(cls[1:] != cls[:-1])
    edges = (uniq[change] + uniq[change + 1]) / 2.0
    run_class = cls[np.concatenate([[0], change + 1])]
    runs = np.where(gone, fill, run_class[np.searchsorted(edges, np.nan_to_num(x_held), side="right")])
    out = [runs]
    if k == 2 and len(uniq) > 1:
        left = np.cumsum(counts, axis=0)[:-1]  # rows at or below each candidate cut
        right = counts.sum(axis=0) - left
        best = int((left.max(axis=1) + right.max(axis=1)).argmax())
        cut = (uniq[best] + uniq[best + 1]) / 2.0
        stump = np.where(x_held <= cut, int(left[best].argmax()), int(right[best].argmax()))
        out.append(np.where(gone, fill, stump))
    return out


def _check_notes(checks: dict[str, Any], task: str) -> list[str]:
    notes = []
    if checks["leakage"]:
        named = ", ".join(f"{e['column']!r} ({checks['leak_measure']} {e['score']:.2f})" for e in checks["leakage"])
        notes.append(
            f"possible target leakage: {named} on its own predicts the target of held-out rows almost perfectly; "
            "check that it is known before the target is, or drop it (data.drop)"
        )
    if checks["id_like"]:
        notes.append(
            f"ID-like column(s): {', '.join(repr(e['column']) for e in checks['id_like'])}; a model can only memorise them (data.drop)"
        )
    if checks["constant"]:
        notes.append(f"constant column(s): {', '.join(map(repr, checks['constant']))}; they carry nothing (data.drop)")
    return notes
