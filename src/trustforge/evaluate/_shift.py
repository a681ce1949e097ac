"""Generalisation: metrics on a second test set, and under built-in corruptions.

Two questions a reviewer asks before trusting a model outside its test split:

- `shift_evaluation`: how does it do on data from somewhere else (`evaluate.shift` names any
  data source)? Every scalar metric is reported beside the in-distribution test, with the
  difference.
- `corruption_table`: how fast does it degrade when its inputs get worse? Built-in corruptions
  per modality, each at severities 1..3, give a table of the metric drop.

The model stays out of this module (evaluate/ does not import package/): callers pass
`metrics_of(raw) -> dict`, e.g. a loaded `Model.evaluate`.

Corruptions and their parameters per severity (1, 2, 3):

| modality | name             | parameter                                     | 1     | 2     | 3     |
|----------|------------------|-----------------------------------------------|-------|-------|-------|
| image    | `gaussian_noise` | noise std, in pixel units (images in [0, 1])  | 0.08  | 0.18  | 0.38  |
| image    | `blur`           | Gaussian std in pixels, × max(1, min(H,W)/32) | 0.5   | 1.0   | 1.5   |
| image    | `occlusion`      | side of one square patch, fraction of min(H,W)| 0.25  | 0.40  | 0.55  |
| table    | `noise`          | noise std, as a fraction of each column's std | 0.10  | 0.25  | 0.50  |
| table    | `missing`        | fraction of input cells set to NaN            | 0.10  | 0.25  | 0.50  |
| audio    | `noise`          | white-noise SNR in dB, against each clip's power | 30  | 20    | 10    |
| audio    | `gain`           | random gain within ± dB, clipped at full scale | 6     | 12    | 20    |
| audio    | `time_shift`     | largest shift, a fraction of the clip (silence fills) | 0.05 | 0.10 | 0.20 |
| text     | `typos`          | chance per character of a swap with the next one or a drop | 0.02 | 0.05 | 0.10 |
| text     | `dropped_words`  | chance per word (per character in CJK scripts) of a drop | 0.10 | 0.20 | 0.35 |

The image noise levels are ImageNet-C's Gaussian-noise severities 1, 3 and 5 (Hendrycks &
Dietterich, 2019). Text and audio corruptions join `CORRUPTIONS` under their modality. A kind
with corruptions also has an entry in `_CORRUPTED_INPUTS` (which of its fields a corruption
changes), and a kind whose shift sets are not tables one in `_SHIFT_CHECKS`; nothing here
compares a modality string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from trustforge.data import SOURCES, RawData, Schema, audio_gain, audio_noise, audio_time_shift, redact_source
from trustforge.errors import DataError
from trustforge.evaluate import _text

__all__ = [
    "CORRUPTIONS",
    "LOWER_IS_BETTER",
    "SEVERITIES",
    "Corruption",
    "check_shift_set",
    "corrupt",
    "corruption_table",
    "shift_evaluation",
]

SEVERITIES = (1, 2, 3)
# Metrics where a larger value is worse: their "drop" is reported as value - clean, so a
# positive drop always means the model got worse.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse", "log_loss", "ece", "brier"})


@dataclass(frozen=True)
class Corruption:
    """One built-in corruption.

    Attributes:
        apply: `(data, level, rng) -> data`, on the image array (N, C, H, W), the waveforms
            (N, T), or the input columns of a table or text (see `_CORRUPTED_INPUTS`); it
            returns a new object and leaves its input alone.
        levels: the parameter at severities 1, 2, 3.
        parameter: what the level means, for reports.
    """

    apply: Callable[[Any, float, np.random.Generator], Any]
    levels: tuple[float, float, float]
    parameter: str


# ---------------------------------------------------------------------------- images


def _gaussian_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = images + rng.normal(0.0, sigma, size=images.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    # A sum of shifted slices: kernels are a few taps wide, so this beats an FFT and needs no
    # scipy. Reflect padding keeps the border's brightness (zero padding would darken it).
    r = len(kernel) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    # "reflect" needs r < the axis length; "symmetric" has no such limit for tiny images.
    xp = np.pad(x, pad, mode="reflect" if r < x.shape[axis] else "symmetric")
    n = x.shape[axis]
    out = np.zeros_like(x, dtype=np.float64)
    for i, w in enumerate(kernel):
        out += w * np.take(xp, np.arange(i, i + n), axis=axis)
    return out


def _blur(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    h, w = images.shape[2:]
    # Scale with the image so severities mean the same on 8x8 digits and 224x224 photos.
    kernel = _gaussian_kernel(sigma * max(1.0, min(h, w) / 32))
    out = _blur_axis(_blur_axis(images.astype(np.float64), kernel, axis=2), kernel, axis=3)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _occlusion(images: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    n, _, h, w = images.shape
    side = max(1, round(fraction * min(h, w)))
    out = images.astype(np.float32, copy=True)
    # The patch takes each image's own per-channel mean: it hides content without adding a
    # brightness the model never saw.
    means = images.mean(axis=(2, 3))  # (N, C)
    tops = rng.integers(0, h - side + 1, size=n)
    lefts = rng.integers(0, w - side + 1, size=n)
    for i in range(n):
        out[i, :, tops[i] : tops[i] + side, lefts[i] : lefts[i] + side] = means[i][:, None, None]
    return out


# ---------------------------------------------------------------------------- tables


def _noise_columns(frame: pd.DataFrame) -> list[str]:
    # Binary columns (two values) are left alone: noise would turn 0/1 into values the
    # preprocessor refuses, which measures input validation rather than robustness.
    return [
        c
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) and frame[c].nunique(dropna=True) > 2
    ]


def _table_noise(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    for c in _noise_columns(frame):
        values = frame[c].to_numpy(dtype=np.float64)
        std = np.nanstd(values)
        if not np.isfinite(std) or std == 0:
            continue
        out[c] = values + rng.normal(0.0, fraction * std, size=len(values))
    return out


def _table_missing(frame: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    hit = rng.random(frame.shape) < fraction  # (N, D): each input cell independently
    for j, c in enumerate(frame.columns):
        if hit[:, j].any():
            col = out[c]
            # Integer and bool columns cannot hold NaN: widen them first (object for bool,
            # so a binary column still reads as its two values plus missing).
            if pd.api.types.is_bool_dtype(col):
                col = col.astype(object)
            elif pd.api.types.is_integer_dtype(col):
                col = col.astype(np.float64)
            out[c] = col.mask(hit[:, j])
    return out


CORRUPTIONS: dict[str, dict[str, Corruption]] = {
    "image": {
        "gaussian_noise": Corruption(_gaussian_noise, (0.08, 0.18, 0.38), "noise std (pixel values in [0, 1])"),
        "blur": Corruption(_blur, (0.5, 1.0, 1.5), "Gaussian std in pixels × max(1, min(H, W)/32)"),
        "occlusion": Corruption(_occlusion, (0.25, 0.40, 0.55), "patch side / min(H, W)"),
    },
    "table": {
        "noise": Corruption(
            _table_noise,
            (0.10, 0.25, 0.50),
            "noise std / column std (with feature types, each column's type says; see `_by_type`)",
        ),
        "missing": Corruption(_table_missing, (0.10, 0.25, 0.50), "fraction of input cells set to missing"),
    },
    # On waveforms (N, T), before the model's log-mel front end (see data/_audio.py).
    "audio": {
        "noise": Corruption(audio_noise, (30.0, 20.0, 10.0), "white-noise SNR in dB (lower is noisier)"),
        "gain": Corruption(audio_gain, (6.0, 12.0, 20.0), "random gain within ± dB, clipped at full scale"),
        "time_shift": Corruption(audio_time_shift, (0.05, 0.10, 0.20), "largest time shift / clip length"),
    },
    # On the text column, before tokenisation (see evaluate/_text.py); no text is left empty.
    "text": {
        "typos": Corruption(_text.typos, (0.02, 0.05, 0.10), "chance per character of a swap with the next one or a drop"),
        "dropped_words": Corruption(_text.drop_words, (0.10, 0.20, 0.35), "chance per word (CJK: per character) of a drop"),
    },
}


# How a corruption reaches each kind's inputs: `(raw, name, corruption, level, rng, features)`
# -> the RawData fields that change.
_CorruptInputs = Callable[[RawData, str, Corruption, float, np.random.Generator, Mapping[str, tuple[Any, Any]] | None], dict[str, Any]]


def _array_inputs(field: str) -> _CorruptInputs:
    """A corruption of the whole array in `field` (images (N, C, H, W), waveforms (N, T)), as float32."""

    def apply(
        raw: RawData, name: str, c: Corruption, level: float, rng: np.random.Generator, features: Mapping[str, tuple[Any, Any]] | None
    ) -> dict[str, Any]:
        return {
            field: c.apply(np.asarray(getattr(raw, field), dtype=np.float32), level, rng),
            "labels": raw.labels.copy(),
            "paths": list(raw.paths),
        }

    return apply


def _column_inputs(inputs_of: Callable[[RawData], list[str]]) -> _CorruptInputs:
    """A corruption of the frame's input columns; "noise" asks each column's feature type, when given."""

    def apply(
        raw: RawData, name: str, c: Corruption, level: float, rng: np.random.Generator, features: Mapping[str, tuple[Any, Any]] | None
    ) -> dict[str, Any]:
        inputs = inputs_of(raw)
        if features and name == "noise":
            changed = {col: features[col][0].corrupt(features[col][1], raw.frame[col], level, rng) for col in inputs if col in features}
            inputs = list(changed)
        else:
            changed = c.apply(raw.frame[inputs], level, rng)
        frame = raw.frame.copy()
        for col in inputs:
            frame[col] = changed[col]
        return {"frame": frame}

    return apply


# One entry per kind in CORRUPTIONS.
_CORRUPTED_INPUTS: dict[str, _CorruptInputs] = {
    "image": _array_inputs("images"),
    "audio": _array_inputs("waveforms"),
    "table": _column_inputs(lambda raw: [col for col in raw.frame.columns if col != raw.target]),
    "text": _column_inputs(lambda raw: [raw.text]),  # the one text column, before tokenisation
}


def corrupt(raw: RawData, name: str, severity: int, seed: int, features: Mapping[str, tuple[Any, Any]] | None = None) -> RawData:
    """A corrupted copy of `raw`: same rows, same target, worse inputs.

    Args:
        raw: images (float32 (N, C, H, W) in [0, 1]) or a table holding the target column.
        name: a corruption of `raw.modality` (see `CORRUPTIONS`).
        severity: 1, 2 or 3 (see the module docstring for the parameter at each).
        seed: the same seed gives the same corruption. The generator is seeded by the seed
            alone, so severities draw the same random numbers and differ only in strength.
        features: a table's columns by name as (feature type, fitted state): "noise" then
            asks each column's type for its own corruption (noise on numbers, flipped binary
            values, swapped categories, dropped words, shifted dates) at the level as fraction.

    Returns:
        A new RawData; `raw` is not changed. Images stay float32 in [0, 1]; table columns
        that get noise or NaN become float64 (an int column cannot hold either).

    Raises:
        ValueError: unknown corruption for the modality, or a severity outside 1..3.
    """
    table = CORRUPTIONS.get(raw.modality, {})
    if name not in table:
        raise ValueError(f"no corruption {name!r} for {raw.modality} data; choose from {sorted(table)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}; got {severity!r}")
    c = table[name]
    rng = np.random.default_rng(seed)
    changed = _CORRUPTED_INPUTS[raw.modality](raw, name, c, c.levels[severity - 1], rng, features)
    return replace(raw, origin=f"{raw.origin} [{name}@{severity}]", **changed)


def corruption_table(
    metrics_of: Callable[[RawData], dict[str, Any]],
    raw: RawData,
    *,
    metric: str,
    severities: tuple[int, ...] = SEVERITIES,
    seed: int,
    corruptions: list[str] | None = None,
    features: Mapping[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    """The metric under every built-in corruption of the data's modality, at each severity.

    Args:
        metrics_of: labelled data -> the task's metrics (e.g. `Model.evaluate`).
        raw: the clean evaluation data (usually the test split).
        metric: the metric to tabulate (e.g. "accuracy", "rmse").
        severities: which of 1..3 to run.
        seed: seeds every corruption (the same for each, so results are reproducible).
        corruptions: a subset of the modality's corruptions; default all of them.
        features: a table's feature types and states by column (see `corrupt`).

    Returns:
        `{"metric", "lower_is_better", "clean", "rows": [{"corruption", "severity", "parameter",
        "level", "value", "drop"}]}`. `drop` is clean - value, except for metrics where lower
        is better (`LOWER_IS_BETTER`: mae, rmse, log_loss, ...) where it is value - clean: a
        positive drop always means worse. A metric the data leaves undefined is None, and so is
        its drop.
    """
    available = CORRUPTIONS.get(raw.modality, {})
    names = list(available) if corruptions is None else list(corruptions)
    clean = _scalar(metrics_of(raw).get(metric))
    lower = metric in LOWER_IS_BETTER
    rows = []
    for name in names:
        for severity in severities:
            value = _scalar(metrics_of(corrupt(raw, name, severity, seed, features)).get(metric))
            drop = None
            if value is not None and clean is not None:
                drop = value - clean if lower else clean - value
            c = available[name]
            rows.append(
                {
                    "corruption": name,
                    "severity": int(severity),
                    "parameter": _by_type(features) if features and name == "noise" else c.parameter,
                    "level": float(c.levels[severity - 1]),
                    "value": value,
                    "drop": drop,
                }
            )
    return {"metric": metric, "lower_is_better": lower, "clean": clean, "rows": rows}


def _by_type(features: Mapping[str, tuple[Any, Any]]) -> str:
    """What "noise" does at a level, for each feature type among the columns."""
    types = {t.name: t for t, _ in features.values()}
    return "level, as each column's type reads it: " + "; ".join(f"{name}: {t.corruption}" for name, t in types.items())


def shift_evaluation(
    metrics_of: Callable[[RawData], dict[str, Any]], raw_shift: RawData, raw_test: RawData, schema: Schema
) -> dict[str, Any]:
    """Every scalar metric on a second test set, beside the in-distribution test.

    The shift set is checked against the schema first, so a mismatch is reported as such
    rather than as whatever the model's encoder trips over.

    Args:
        metrics_of: labelled data -> the task's metrics (e.g. `Model.evaluate`).
        raw_shift: the second test set, as loaded from `evaluate.shift`.
        raw_test: the in-distribution test split.
        schema: the model's schema.

    Returns:
        `{"source", "n", "in_distribution", "shifted", "delta"}`: the two metric dicts hold the
        scalar metrics only (no confusion matrix); `delta[m]` = shifted - in_distribution
        (signed as is: for error metrics a positive delta is worse), None where either is
        undefined. `n` is the shift set's size.

    Raises:
        DataError: the shift set has another modality, other columns (tables; the target is
            required, columns the schema ignores are allowed), another image or sequence shape,
            or labels the model does not know (images, clips, class sequences). The message
            names the columns or shapes.
    """
    check_shift_set(raw_shift, schema)
    inside = _scalars(metrics_of(raw_test))
    shifted = _scalars(metrics_of(raw_shift))
    delta = {}
    for k, v in shifted.items():
        if k == "n" or k not in inside:
            continue
        delta[k] = None if v is None or inside[k] is None else v - inside[k]
    # The evidence leaves this machine: a path is cut to its name (see data.redact_source).
    return {"source": redact_source(raw_shift.origin), "n": len(raw_shift), "in_distribution": inside, "shifted": shifted, "delta": delta}


def check_shift_set(raw: RawData, schema: Schema) -> None:
    """Refuse a shift set that does not fit the schema, naming what differs.

    Raises:
        DataError: see `shift_evaluation`.
    """
    where = f"shift set {_source_name(raw.origin)}"
    if raw.modality != schema.modality:
        raise DataError(f"{where}: holds {raw.modality} data; the model takes {schema.modality} data")
    _SHIFT_CHECKS.get(raw.modality, _check_columns)(raw, schema, where)


def _check_labels(raw: RawData, schema: Schema, where: str) -> None:
    unknown = sorted(set(map(str, raw.labels)) - set(schema.classes or []))
    if unknown:
        raise DataError(f"{where}: labels {unknown[:5]} are not classes the model knows ({schema.classes})")


def _check_images(raw: RawData, schema: Schema, where: str) -> None:
    shape = tuple(int(s) for s in raw.images.shape[1:])
    if shape != tuple(schema.image_shape):
        raise DataError(f"{where}: images have shape (C, H, W) {shape}; the model expects {tuple(schema.image_shape)}")
    _check_labels(raw, schema, where)


def _check_sequences(raw: RawData, schema: Schema, where: str) -> None:
    shape = tuple(int(s) for s in raw.sequences.shape[1:])
    if shape != tuple(schema.sequence_shape):
        raise DataError(f"{where}: sequences have shape (T, F) {shape}; the model expects {tuple(schema.sequence_shape)}")
    if schema.classes:  # a regression's targets are numbers: any value will do
        _check_labels(raw, schema, where)


def _check_columns(raw: RawData, schema: Schema, where: str) -> None:
    columns = list(raw.frame.columns)
    expected = schema.input_names
    allowed = {schema.target, *schema.ignored}
    missing = [c for c in expected if c not in columns]
    if schema.target not in columns:
        missing.append(schema.target)
    extra = [c for c in columns if c not in expected and c not in allowed]
    if missing or extra:
        parts = ([f"missing columns {missing}"] if missing else []) + ([f"unexpected columns {extra}"] if extra else [])
        raise DataError(f"{where}: {', '.join(parts)}")


# How a shift set of each kind is checked beyond its kind; a kind not named here is a table
# whose columns must match (tables, text, series, interactions).
_SHIFT_CHECKS: dict[str, Callable[[RawData, Schema, str], None]] = {
    "image": _check_images,
    "audio": _check_labels,  # read at the spec's rate and length, so only the classes can differ
    "sequence": _check_sequences,
}


def _source_name(origin: str) -> str:
    # In a message on this machine "csv:data/shift.csv" reads better as the file it names.
    scheme, sep, rest = origin.partition(":")
    kind = SOURCES.get(scheme)
    return rest if sep and kind is not None and kind.is_path else origin


def _scalar(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _scalars(metrics: dict[str, Any]) -> dict[str, float | int | None]:
    # Lists (confusion matrix, support, labels) stay in metrics.json; here only numbers compare.
    out: dict[str, float | int | None] = {}
    for k, v in metrics.items():
        if k == "n":
            out[k] = int(v)
        elif v is None or (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)):
            out[k] = _scalar(v)
    return out
