"""Monitored features and the reference statistics a package carries for them.

A *featurizer* turns raw inputs into per-row monitored features, one per modality:
- tables: every input column as the model reads it before encoding; numeric columns stay
  numbers, binary and categorical columns are text (missing values are `<missing>`);
- images: per-image summary statistics (`brightness` or `mean_red/green/blue`, `contrast`: the
  pixel standard deviation, `sharpness`: the mean absolute difference of neighbouring pixels),
  which move under lighting, exposure, noise and blur;
- audio: per-clip `loudness_db` (RMS, dBFS), `peak`, `zero_crossing_rate` and `silence` (share
  of near-silent samples), which move with gain, noise, microphones and clipped recordings;
- sequences: each input feature's mean over time (`mean_J`) and the sequence's `std`.
Summary statistics see what changes them and nothing else: a semantic shift that keeps them
(new objects under the same light, other words at the same loudness) is not seen.
Modalities without a featurizer (series, interactions, and any newer one) are skipped with the
reason recorded in the reference; predictions are still monitored when the task has them.

The *reference* is computed once at training time, from the training split's inputs and the
model's predictions, and saved in the manifest (so the package signature covers it). The
predictions never come from rows that monitored data can come from: the validation split's
when there is one, else the training split's (`predictions_from: "train"`, with a note: a
model fits its own training rows better than new ones, so that reference is optimistic); never
the test split's, which users check for drift (a test window compared with itself can never
drift). The reference records where its predictions came from (`predictions_from`). It holds summaries, never rows, raw text or a training value:
- numeric (format 2): count, missing, mean, std; the sorted column cut into blocks of at
  least `MIN_ROWS` (k = 20) consecutive values (more when ties or more than `SKETCH_SIZE`
  blocks ask for it), stored as `cuts` (each the midpoint between the last value of a block
  and the first of the next, so strictly between two training values: never one of them),
  `counts` (rows per block, exact) and `centres` (each block's mean); and decile bins (a
  subset of the cuts) with their shares, for PSI. The rule: every stored number summarises at
  least k training rows, and no stored number equals a training value at the precision it is
  written, unless at least k rows share that value (a mean or a share that happens to hit a
  rarer value is written with more digits, or moved by a unit in the last place). A column
  with fewer than k rows keeps only its count and missing count, and is not tested;
- categorical: the count of each category (the vocabulary is in the manifest already).
The KS test of a window against the cuts is valid (conservative) and keeps its power (see
`_detectors.ks_test_cuts`); PSI uses the bins, Wasserstein the block means weighted by their
counts. Format 1 references (a sketch of up to 1,000 training values, verbatim below 1,000
rows) are still read. A numeric feature's reference takes about 30 bytes of JSON per block
(~30 KB per feature at most).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from trustforge.data import Prepared, RawData, Schema
from trustforge.data.features import feature_type
from trustforge.errors import DataError

__all__ = [
    "featurize",
    "reference_statistics",
    "run_reference",
    "prediction_values",
    "supports",
    "REFERENCE_FORMAT",
    "SKETCH_SIZE",
    "MIN_ROWS",
    "PSI_BINS",
    "MISSING",
    "PREDICTION",
    "TRAIN_PREDICTIONS_NOTE",
]

REFERENCE_FORMAT = 2
SKETCH_SIZE = 1000  # at most this many blocks per numeric feature
MIN_ROWS = 20  # k: every number stored for a numeric feature summarises at least this many rows
PSI_BINS = 10
MISSING = "<missing>"
PREDICTION = "prediction"
TRAIN_PREDICTIONS_NOTE = (
    "the model's predictions on its own training rows (there was no validation split): optimistic, since a model "
    "fits its training rows better than new ones; the test split is never used, as monitored data may come from it"
)


# ---------------------------------------------------------------------------- featurizers


def _table_features(schema: Schema, raw: RawData) -> dict[str, np.ndarray]:
    frame = raw.frame
    absent = [c.name for c in schema.columns if c.name not in frame.columns]
    if absent:
        raise DataError(f"{raw.origin}: missing columns {absent} that the model needs")
    out: dict[str, np.ndarray] = {}
    for c in schema.columns:  # each column as its feature type says drift is watched
        t = feature_type(c.kind)
        if t.drift is None:  # not watched (see unwatched_columns)
            continue
        values = t.monitor_values(frame[c.name])
        if t.drift == "categorical":
            values = np.array([MISSING if v is None else v for v in values], dtype=object)
        out[c.name] = values
    return out


def unwatched_columns(schema: Schema) -> dict[str, str]:
    """The table columns whose feature type the drift monitor leaves alone, each with the reason."""
    return {c.name: t.unwatched for c in schema.columns if (t := feature_type(c.kind)).drift is None}


def _image_features(schema: Schema, raw: RawData) -> dict[str, np.ndarray]:
    images = np.asarray(raw.images)  # (N, C, H, W) in [0, 1]
    if images.ndim != 4 or (schema.image_shape and tuple(images.shape[1:]) != tuple(schema.image_shape)):
        raise DataError(
            f"{raw.origin}: images have shape {tuple(images.shape[1:])}; the model expects {tuple(schema.image_shape or ())} (C, H, W)"
        )
    # In slices, so a large training set is never copied whole to float64.
    parts = [_image_slice(images[i : i + _IMAGE_SLICE]) for i in range(0, len(images), _IMAGE_SLICE)]
    if not parts:
        parts = [_image_slice(images)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


_IMAGE_SLICE = 512


def _image_slice(images: np.ndarray) -> dict[str, np.ndarray]:
    x = images.astype(np.float64)  # (n, C, H, W)
    out: dict[str, np.ndarray] = {}
    if x.shape[1] == 3:
        for c, name in enumerate(("red", "green", "blue")):
            out[f"mean_{name}"] = x[:, c].mean(axis=(1, 2))
    else:
        out["brightness"] = x.mean(axis=(1, 2, 3))
    out["contrast"] = x.std(axis=(1, 2, 3))
    diffs = []
    if x.shape[2] > 1:
        diffs.append(np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3)))
    if x.shape[3] > 1:
        diffs.append(np.abs(np.diff(x, axis=3)).mean(axis=(1, 2, 3)))
    if diffs:
        out["sharpness"] = np.mean(diffs, axis=0)
    return out


def _audio_features(schema: Schema, raw: RawData) -> dict[str, np.ndarray]:
    w = np.asarray(raw.waveforms, dtype=np.float64) if raw.waveforms is not None else None  # (N, T) in [-1, 1]
    if w is None or w.ndim != 2 or w.shape[1] < 2:
        raise DataError(f"{raw.origin}: audio inputs must be waveforms (N, T)")
    rms = np.sqrt(np.mean(w**2, axis=1))
    return {
        "loudness_db": 20 * np.log10(rms + 1e-6),  # dB relative to full scale
        "peak": np.abs(w).max(axis=1),
        # Sign changes per sample: rises with noise and high-pitched content.
        "zero_crossing_rate": np.mean(np.signbit(w[:, 1:]) != np.signbit(w[:, :-1]), axis=1),
        # Near-silent samples (below -60 dBFS): clips cut short and padded, or dead microphones.
        "silence": np.mean(np.abs(w) < 1e-3, axis=1),
    }


def _sequence_features(schema: Schema, raw: RawData) -> dict[str, np.ndarray]:
    x = np.asarray(raw.sequences, dtype=np.float64) if raw.sequences is not None else None  # (N, T, F)
    if x is None or x.ndim != 3:
        raise DataError(f"{raw.origin}: sequence inputs must be an array (N, T, F)")
    out = {f"mean_{j}": x[:, :, j].mean(axis=1) for j in range(x.shape[2])}  # each input feature's level
    out["std"] = x.std(axis=(1, 2))  # how much a sequence moves
    return out


# Series (forecasting) and interactions (recommendation) are served as histories and
# user/item pairs rather than rows of features; they have no featurizer yet.
_FEATURIZERS: dict[str, Callable[[Schema, RawData], dict[str, np.ndarray]]] = {
    "table": _table_features,
    "image": _image_features,
    "audio": _audio_features,
    "sequence": _sequence_features,
}


def supports(modality: str) -> bool:
    """Whether inputs of this modality have monitored features."""
    return _FEATURIZERS.get(modality) is not None


def featurize(schema: Schema, raw: RawData) -> dict[str, np.ndarray]:
    """Per-row monitored features of raw inputs: name → values (float64 numeric, or object text).

    Raises:
        DataError: the inputs lack a column or have another image shape than the schema's.
        ValueError: the modality has no featurizer (check `supports` first).
    """
    fn = _FEATURIZERS.get(schema.modality)
    if fn is None:
        raise ValueError(f"no monitored features for {schema.modality} inputs")
    return fn(schema, raw)


def prediction_values(task: str, predictions: pd.DataFrame) -> np.ndarray | None:
    """The `prediction` column as monitored values (float where the task's predictions are
    numbers, else class text), or None without one."""
    from trustforge.evaluate import task_named

    if PREDICTION not in predictions.columns:
        return None
    col = predictions[PREDICTION]
    if task_named(task).numeric_prediction:
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(col.isna().to_numpy(), MISSING, col.astype(str).to_numpy()).astype(object)


# ---------------------------------------------------------------------------- statistics


def _num(v: float) -> float:
    # 7 significant digits: float32 precision, and about half the JSON of a full float64.
    return float(f"{float(v):.7g}")


def _numeric_stats(values: np.ndarray, guard: "_Guard | None" = None) -> dict[str, Any]:
    v = np.sort(values[np.isfinite(values)])  # NaN (and an infinite prediction) count as missing
    stats: dict[str, Any] = {"kind": "numeric", "count": int(len(v)), "missing": int(len(values) - len(v))}
    if len(v) < MIN_ROWS:
        # Too few rows for any number to summarise k of them: nothing but the counts.
        return stats
    guard = guard or _Guard([v])
    ends = _block_ends(v, max(MIN_ROWS, -(-len(v) // SKETCH_SIZE)))
    cuts = [guard.between(float(v[e - 1]), float(v[e])) for e in ends[:-1]]
    starts = [0, *ends[:-1]]
    counts = [int(e - b) for b, e in zip(starts, ends)]
    centres = [guard.safe(v[b:e].mean()) for b, e in zip(starts, ends)]
    # PSI's decile bins: the cuts nearest to each decile of the rows (ties may merge two).
    below = np.cumsum(counts)[:-1]
    chosen = sorted({int(np.argmin(np.abs(below - p * len(v)))) for p in np.arange(1, PSI_BINS) / PSI_BINS}) if cuts else []
    edges = [cuts[i] for i in chosen]
    bounds = [0, *(int(below[i]) for i in chosen), len(v)]
    fractions = [guard.safe((hi - lo) / len(v)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    stats.update(
        mean=guard.safe(v.mean()),
        std=guard.safe(v.std()),
        cuts=cuts,
        counts=counts,
        centres=centres,
        bins={"edges": edges, "fractions": fractions},
    )
    return stats


def _block_ends(v: np.ndarray, size: int) -> list[int]:
    """End indices (exclusive) of blocks of the sorted `v`: each >= `size` rows, none splitting a tie.

    A boundary falls only between two different values whose midpoint can be written strictly
    between them; a last block that would be smaller than `size` joins the one before.
    """
    n, ends, start = len(v), [], 0
    while True:
        e = start + size
        while e < n and not _separable(v[e - 1], v[e]):
            e += 1
        if e >= n or n - e < size:
            ends.append(n)
            return ends
        ends.append(e)
        start = e


def _separable(a: float, b: float) -> bool:
    return a < b and _between(a, b) is not None


def _between(a: float, b: float) -> float | None:
    """The midpoint of a < b with the fewest digits (7 or more) that keep it strictly between them."""
    mid = a + (b - a) / 2
    for digits in (7, 10, 13, 17):
        c = float(f"{mid:.{digits}g}")
        if a < c < b:
            return c
    return None


class _Guard:
    """Keeps a stored number from equalling, as written, a training value shared by fewer than k rows.

    Built from every numeric feature of the reference at once, so that no feature's summary
    happens to spell another feature's rare value either.
    """

    def __init__(self, columns: Sequence[np.ndarray]):
        rare = []
        for v in columns:
            v = np.asarray(v, dtype=np.float64)
            values, counts = np.unique(v[np.isfinite(v)], return_counts=True)
            rare.append(values[counts < MIN_ROWS])
        r = np.concatenate(rare) if rare else np.empty(0)
        # A value and its 7-digit form (what a format-1 sketch wrote) are both off limits.
        self._rare = np.unique(np.concatenate([r, np.array([_num(x) for x in r], dtype=np.float64)]))

    def _hit(self, x: float) -> bool:
        i = np.searchsorted(self._rare, x)
        return bool(i < len(self._rare) and self._rare[i] == x)

    def safe(self, x: float) -> float:
        """`x` with 7 digits, or more (or nudged by ulps) when that would equal a rare training value."""
        for digits in (7, 10, 13, 17):
            c = float(f"{float(x):.{digits}g}")
            if not self._hit(c):
                return c
        c = float(x)
        while self._hit(c):
            c = float(np.nextafter(c, np.inf))
        return c

    def between(self, a: float, b: float) -> float:
        """A number strictly between a < b (two neighbouring training values) that is no rare value."""
        c = _between(a, b)
        if c is None or not self._hit(c):
            return c  # type: ignore[return-value]  # _block_ends only cuts between separable values
        for digits in (10, 13, 17):  # the midpoint spells another feature's value: more digits
            c = float(f"{a + (b - a) / 2:.{digits}g}")
            if a < c < b and not self._hit(c):
                return c
        c = float(np.nextafter(c, b))
        while self._hit(c) and c < b:
            c = float(np.nextafter(c, b))
        return c


def _categorical_stats(values: np.ndarray, categories: Sequence[str] = ()) -> dict[str, Any]:
    names, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    found = dict(zip(names.tolist(), (int(c) for c in counts)))
    # Categories the model knows but the data lacks (a class never predicted) count 0.
    table = {str(k): 0 for k in categories} | found
    return {"kind": "categorical", "count": int(len(values)), "counts": dict(sorted(table.items()))}


def _stats(values: np.ndarray, categories: Sequence[str] = (), guard: "_Guard | None" = None) -> dict[str, Any]:
    if values.dtype.kind == "f":
        return _numeric_stats(values, guard)
    return _categorical_stats(values, categories)


def reference_statistics(
    schema: Schema, inputs: RawData | None, predictions: pd.DataFrame | None, predictions_from: str | None = None
) -> dict[str, Any]:
    """The reference a monitor compares served data with (JSON-serialisable, no rows, no raw text).

    Args:
        schema: the model's schema (modality, task, columns, classes).
        inputs: the training split as read from its source, before any encoding.
        predictions: the model's predictions on rows monitored data cannot come from (a
            `prediction` column, as `Model.predict` returns), or None.
        predictions_from: which rows those are ("validation", "train", ...); "train" adds the
            note that such a reference is optimistic.

    Returns:
        {"format", "modality", "features": {name: stats}, "prediction": stats | None,
        "predictions_from": str | None, "rows": {"inputs": N, "predictions": M},
        "skipped": {what: reason}} (and "notes": {"prediction": why to read it with care}).
        References written before `predictions_from` existed lack it (their predictions were
        those on the validation and test splits).
    """
    ref: dict[str, Any] = {
        "format": REFERENCE_FORMAT,
        "modality": schema.modality,
        "features": {},
        "prediction": None,
        "predictions_from": None,
        "rows": {"inputs": 0, "predictions": 0},
        "skipped": {},
    }
    if not supports(schema.modality):
        ref["skipped"]["inputs"] = f"no monitored features for {schema.modality} inputs yet"
    elif inputs is None:
        ref["skipped"]["inputs"] = "no training inputs were given"
    else:
        features = featurize(schema, inputs)
        guard = _Guard([v for v in features.values() if v.dtype.kind == "f"])
        ref["features"] = {name: _stats(values, guard=guard) for name, values in features.items()}
        ref["rows"]["inputs"] = len(inputs)
        ref["skipped"].update(unwatched_columns(schema))
    values = prediction_values(schema.task, predictions) if predictions is not None else None
    if predictions is None:
        ref["skipped"][PREDICTION] = "no held-out predictions were given"
    elif values is None:
        ref["skipped"][PREDICTION] = f"the predictions of a {schema.task} model have no single {PREDICTION!r} column"
    else:
        ref["prediction"] = _stats(values, schema.classes or ())
        ref["rows"]["predictions"] = len(values)
        ref["predictions_from"] = predictions_from
        if predictions_from == "train":
            ref["notes"] = {PREDICTION: TRAIN_PREDICTIONS_NOTE}
    return ref


def run_reference(
    data: Prepared,
    validation_outputs: torch.Tensor | None,
    predict_train: Callable[[], torch.Tensor | None] | None = None,
    decision: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The reference of a training run: its training split, and predictions on rows served data cannot hold.

    Args:
        data: the prepared data (its `train_raw` is the training split as read).
        validation_outputs: the model's outputs on the validation split (as the packaged model
            computes them), or None without a validation split.
        predict_train: computes the model's outputs on the training split; called only when
            there is no validation split (those predictions are then optimistic, and the
            reference says so). The test split is never used: monitored data may come from it.
        decision: a binary model's positive class and threshold, which its predictions follow.
    """
    from trustforge.evaluate import task_of

    schema = data.schema
    if validation_outputs is not None:
        outs, source = validation_outputs, "validation"
    else:
        outs, source = (predict_train() if predict_train is not None else None), "train"
    values = task_of(schema).monitored_predictions(data.preprocessor, [outs], decision) if outs is not None else None
    predictions = pd.DataFrame({PREDICTION: values}) if values is not None else None
    ref = reference_statistics(schema, data.train_raw, predictions, predictions_from=source)
    if outs is not None and predictions is None:
        ref["skipped"][PREDICTION] = f"no prediction statistics for {schema.task} models yet"
    return ref
