"""Numeric columns: numbers, standardised with the training mean and standard deviation.

With `scaling: robust` (`data.numeric`, or a column's own options in `data.features`) the
centre is the median and the scale the interquartile range / 1.349 (the standard deviation of a
normal with that spread), so a few huge values do not squash the rest; `clip: C` then passes
the scaled value through a smooth clip, z / sqrt(1 + (z / C)²), that leaves values within ±1
almost unchanged and brings an outlier to at most ±C (RealMLP's robust scaling and smooth
clipping, Holzmüller et al. 2024). The state's `mean` and `std` are then that centre and scale.

Missing values are imputed with the training median, mean or 0 (`data.missing.numeric`), or
refused (`error`); an infinity is always refused, since it would turn the scaler into NaN.

The state goes into every package, so it holds no single training value: each number it
stores summarises at least `K` rows (all of them, in a smaller column). The median is the
mean of the `K` middle values, the range (the bounds an attack keeps to) runs from the mean of
the `K` lowest values to the mean of the `K` highest, and a number that lands on a training
value that fewer than `K` rows share is moved to the next float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from trustforge.data._attack_space import STD_EPSILONS, STD_MAX_EPSILON, AttackSpace
from trustforge.data._augment import TABLE_FIELDS, ColumnAugment
from trustforge.data.features._base import Block, FeatureOptions, FeatureState, FeatureType, row_of
from trustforge.errors import DataError

__all__ = ["Numeric", "NumericBlock", "NumericState"]


K = 20  # rows each stored number summarises at least


def summary(values: np.ndarray, at: str | float, *, whole: bool = False) -> float:
    """A statistic of the present `values` over at least `K` of them: the mean of the `K`
    lowest ("low"), middle ("middle") or highest ("high"), or of all when there are fewer;
    never a training value fewer than `K` rows share. `whole`: cut to an integer (times in
    seconds), stepping by 1 rather than to the next float."""
    v = np.sort(values)
    k = min(K, len(v))
    if isinstance(at, float):  # a quantile: the K values around it
        start = min(max(int(round(at * (len(v) - 1))) - k // 2, 0), len(v) - k)
    else:
        start = {"low": 0, "middle": (len(v) - k) // 2, "high": len(v) - k}[at]
    with np.errstate(over="ignore"):  # values near the float limit: `fit` refuses them next, naming the row
        out = float(v[start : start + k].mean())
    if whole:
        out = float(int(out))
    rare, counts = np.unique(v, return_counts=True)
    rare = set(rare[counts < K].tolist())
    while out in rare:  # a coincidence: the next value is as good a summary
        out = out + 1 if whole else float(np.nextafter(out, np.inf))
    return out


@dataclass(frozen=True)
class NumericState(FeatureState):
    fill: float  # imputed for a missing value (raw units)
    mean: float
    std: float  # 1.0 for a constant column
    low: float  # the training range (raw units; see `summary`), the bounds of an attack
    high: float
    on_missing: str = "fill"  # or "error"
    scaling: str = "standard"  # or "robust": mean and std are then the median and IQR / 1.349
    clip: float | None = None  # the smooth clip's bound in scaled units; None: no clip


def numbers(col: pd.Series, *, name: str, where: str) -> np.ndarray:
    """The column as float64 (NaN where missing); text, a boolean or an infinity raises naming the row."""
    kind = col.dtype.kind
    if kind in "iuf":  # already numbers (NaN or pandas' NA where missing): no parsing, no per-value checks
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        return _finite(values, col, name=name, where=where)
    if pd.api.types.is_bool_dtype(col) or col.dtype == object:
        # True is not the number 1 (pandas would convert it): a yes/no column is a binary feature.
        flags = np.fromiter((isinstance(v, (bool, np.bool_)) for v in col.to_numpy()), dtype=bool, count=len(col))
        if flags.any():
            row = int(flags.nonzero()[0][0])
            raise DataError(f"{where}: column {name!r} must be numeric; got the boolean {col.iloc[row]!r} in row {row_of(col, row)}")
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{where}: column {name!r} must be numeric; got {str(col.iloc[row])[:40]!r} in row {row_of(col, row)}")
    return _finite(converted.to_numpy(dtype=np.float64), col, name=name, where=where)


def _finite(values: np.ndarray, col: pd.Series, *, name: str, where: str) -> np.ndarray:
    inf = np.isinf(values)
    if inf.any():
        row = int(inf.nonzero()[0][0])
        raise DataError(f"{where}: column {name!r} holds {values[row]} in row {row_of(col, row)}; values must be finite")
    return values


def standardise(values: np.ndarray, state: NumericState, *, name: str, where: str) -> np.ndarray:
    nan = np.isnan(values)
    if nan.any():
        if state.on_missing == "error":
            raise DataError(f"{where}: column {name!r} has {int(nan.sum())} missing values (data.missing.numeric: error)")
        values = np.where(nan, state.fill, values)
    with np.errstate(over="ignore", invalid="ignore"):
        z = (values - state.mean) / state.std
    # The model reads float32: a value whose scaled form overflows it would become inf, then NaN.
    over = np.flatnonzero(~np.isfinite(z) | (np.abs(z) > np.finfo(np.float32).max))
    if len(over):
        row = int(over[0])
        raise DataError(
            f"{where}: column {name!r} holds {values[row]:g} in row {row + 1}, too far from the training values "
            f"(mean {state.mean:.4g}, std {state.std:.4g}) for the model to read"
        )
    return smooth_clip(z, state.clip)[:, None]  # (N, 1)


def smooth_clip(z: np.ndarray, bound: float | None) -> np.ndarray:
    """z / sqrt(1 + (z / bound)²) (monotone, identity near 0, within ±bound); z when bound is None."""
    return z if bound is None else z / np.sqrt(1.0 + (z / bound) ** 2)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


class NumericBlock(Block):
    """Numeric columns standardised together: one (N, k) matrix, one subtraction and one
    division, one check. Columns that are not plain numbers (text to parse, booleans to refuse)
    and values the model would refuse (an infinity, a missing value under `error`, a value too
    far out for float32) take the one-column path, which gives the same numbers and the same
    error naming the column and row."""

    def __init__(self, type_: FeatureType, states: Sequence[NumericState], names: Sequence[str]):
        super().__init__(type_, states, names)
        self.mean = np.array([s.mean for s in states], dtype=np.float64)
        self.std = np.array([s.std for s in states], dtype=np.float64)
        self.fill = np.array([s.fill for s in states], dtype=np.float64)
        self.refuses_missing = np.array([s.on_missing == "error" for s in states], dtype=bool)
        self.clip = np.array([np.inf if s.clip is None else s.clip for s in states], dtype=np.float64)
        self.clipped = bool(np.isfinite(self.clip).any())

    def _clip(self, z: np.ndarray) -> np.ndarray:
        return z / np.sqrt(1.0 + (z / self.clip) ** 2) if self.clipped else z  # z / inf = 0: unclipped columns unchanged

    def encode(self, values: Sequence[Any], *, where: str, index: Any = None) -> np.ndarray:
        if not all(v.dtype.kind in "iuf" for v in values):
            return super().encode(values, where=where, index=index)
        if all(isinstance(v, np.ndarray) for v in values):
            x = np.array(values, dtype=np.float64).T  # (N, k), one copy
        else:
            x = np.empty((len(values[0]), len(values)), dtype=np.float64)
            for j, v in enumerate(values):  # pandas' nullable numbers carry NA: NaN here, as `numbers` reads them
                x[:, j] = v.to_numpy(dtype=np.float64, na_value=np.nan) if isinstance(v, pd.Series) else v
        with np.errstate(over="ignore", invalid="ignore"):
            z = (x - self.mean) / self.std
            if (np.abs(z) <= _FLOAT32_MAX).all():  # also false for NaN and infinity
                return self._clip(z)
            missing = np.isnan(x)
            if missing.any() and not self.refuses_missing[missing.any(axis=0)].any():
                z = (np.where(missing, self.fill, x) - self.mean) / self.std
                if (np.abs(z) <= _FLOAT32_MAX).all():
                    return self._clip(z)
        return super().encode(values, where=where, index=index)  # a value the model refuses: the message names it


def scaler(values: np.ndarray, fill: float, scaling: str = "standard") -> tuple[float, float]:
    """Mean and standard deviation of the column with its missing values imputed; for
    `robust`, the median and IQR / 1.349 of the present values (each a `summary` of K values),
    falling back to the standard deviation when the IQR is 0 (a mostly constant column)."""
    filled = np.where(np.isnan(values), fill, values)
    if not len(filled):
        return 0.0, 1.0
    present = values[~np.isnan(values)]
    if scaling == "robust" and len(present):
        iqr = summary(present, 0.75) - summary(present, 0.25)
        if iqr > 1e-12:
            return summary(present, "middle"), iqr / 1.349
    std = float(filled.std())
    return float(filled.mean()), std if std > 1e-12 else 1.0


class Numeric(FeatureType):
    name = "numeric"
    slot = "float"
    encoder = "passthrough"
    drift = "numeric"
    datatype = "FP64"
    state_type = NumericState
    corruption = "Gaussian noise of level × the training std"
    augments = TABLE_FIELDS

    def augment(self, state: NumericState, augment: Any) -> ColumnAugment | None:
        # Standardised values: noise of std `noise` is that many training stds of the column.
        if not (augment.noise or augment.mixup):
            return None
        return ColumnAugment(noise=augment.noise, mix=bool(augment.mixup), used={"noise": augment.noise} if augment.noise else {})

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> NumericState:
        values = numbers(col, name=str(col.name), where=where)
        present = values[~np.isnan(values)]
        policy = options.numeric_missing
        if policy == "error" and len(present) < len(values):
            raise DataError(f"{where}: column {col.name!r} has {len(values) - len(present)} missing values (data.missing.numeric: error)")
        if not len(present):
            fill = 0.0
        elif policy == "median":
            fill = summary(present, "middle")
        elif policy == "mean":
            fill = float(present.mean())
        else:  # zero
            fill = 0.0
        scaling, clip = options.column.get("scaling", "standard"), options.column.get("clip")
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = scaler(values, fill, scaling)
        if not (np.isfinite(mean) and np.isfinite(std)):  # values near the float limit: their sum overflows
            row = int(np.nanargmax(np.abs(values)))
            raise DataError(
                f"{where}: column {col.name!r} holds {values[row]:g} in row {row_of(col, row)}; values this large cannot be scaled"
            )
        low, high = (summary(present, "low"), summary(present, "high")) if len(present) else (0.0, 0.0)
        return NumericState(
            fill, mean, std, low, high, "error" if policy == "error" else "fill", scaling, None if clip is None else float(clip)
        )

    def settings(self, data: Any, options: dict[str, Any]) -> dict[str, Any]:
        # `data.numeric` for every numeric column, under the column's own options; defaults are
        # left out, so a schema without them reads as before.
        n = getattr(data, "numeric", None)
        base = (
            {}
            if n is None
            else {k: v for k, v in (("scaling", n.scaling), ("clip", n.clip)) if v != {"scaling": "standard", "clip": None}[k]}
        )
        return {**base, **options}

    def encode(self, state: NumericState, col: pd.Series, *, where: str) -> np.ndarray:
        name = str(col.name)
        return standardise(numbers(col, name=name, where=where), state, name=name, where=where)

    def block(self, states: Sequence[NumericState], names: Sequence[str]) -> NumericBlock:
        return NumericBlock(self, states, names)

    def size(self, state: NumericState) -> int:
        return 1

    def example(self, state: NumericState, rows: int, rng: np.random.Generator) -> list[float]:
        return rng.normal(state.mean, state.std, size=rows).tolist()

    def monitor_values(self, col: pd.Series) -> np.ndarray:
        # Values the model would refuse never reach the monitor; anything else unreadable counts as missing.
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)

    def conforms(self, col: pd.Series) -> np.ndarray:
        if col.dtype.kind in "iuf":
            return np.ones(len(col), dtype=bool)
        flags = np.fromiter((isinstance(v, (bool, np.bool_)) for v in col.to_numpy()), dtype=bool, count=len(col))
        parsed = pd.to_numeric(col.where(~flags, None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return (col.isna().to_numpy() | ~np.isnan(parsed)) & ~flags

    def observed(self, state: NumericState) -> dict[str, Any]:
        return {"min": state.low, "max": state.high}

    def profile(self, col: pd.Series) -> dict[str, Any]:
        # The range as the package's state keeps it (`summary`: no single value), a mean and
        # a 10-bin histogram over that range (values beyond it count in the end bins).
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        present = values[np.isfinite(values)]
        if not len(present):
            return {}
        low, high = summary(present, "low"), summary(present, "high")
        edges = np.linspace(low, high, 11) if high > low else np.array([low, low + 1.0])
        counts = np.histogram(np.clip(present, edges[0], edges[-1]), bins=edges)[0]
        return {
            "low": low,
            "high": high,
            "mean": float(present.mean()),
            "integer": bool(np.all(present == np.round(present))),
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        }

    def near_form(self, col: pd.Series) -> pd.Series:
        # Numbers to 4 significant digits: 0.30000001 and 0.3, or 1250.2 and 1250.0, are one value.
        v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            finite = np.isfinite(v) & (v != 0)
            scale = 10.0 ** np.where(finite, np.floor(np.log10(np.abs(np.where(finite, v, 1.0)))) - 3, 0.0)
            out = np.round(v / scale) * scale
        return pd.Series(out, index=col.index)

    def corrupt(self, state: NumericState, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        # Gaussian noise of `fraction` training standard deviations on every value: sensor noise.
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        noisy = values + rng.normal(0.0, fraction * state.std, size=len(values))
        return pd.Series(noisy, index=col.index, name=col.name)

    def attack_space(self, state: NumericState) -> AttackSpace:
        # The training range, standardised; the budget in standard deviations of the column,
        # which is one encoded unit.
        lo, hi = (smooth_clip(np.array([(b - state.mean) / state.std]), state.clip)[0] for b in (state.low, state.high))
        return AttackSpace(
            np.array([lo]),
            np.array([hi]),
            np.ones(1),
            budget="standard deviations of the column",
            epsilons=STD_EPSILONS,
            max_epsilon=STD_MAX_EPSILON,
        )
