"""Date and time columns: the year as a number, and month, weekday and hour on circles.

A timestamp becomes float columns: the year (standardised), then (sin, cos) of the month,
the weekday and, when training saw times of day, the hour, so December sits next to January
and Sunday next to Monday. Values are ISO 8601 text (`2024-03-01`, `2024-03-01T14:30:00`)
or a datetime column of a Parquet file; a time-zone offset is converted to UTC. A missing
value takes the training median time; a value that is not a date is refused, naming its row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trustforge.data.features._base import FeatureOptions, FeatureState, FeatureType, row_of
from trustforge.data.features.numeric import summary
from trustforge.errors import DataError

__all__ = ["DateTime", "DateTimeState", "check_iso_dates"]

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_CYCLES = (("month", 12), ("weekday", 7), ("hour", 24))


@dataclass(frozen=True)
class DateTimeState(FeatureState):
    fill: str  # ISO time imputed for a missing value (the training median; see `_summary_time`)
    year_mean: float
    year_std: float
    hours: bool  # training saw times of day other than midnight: the hour is a feature
    low: str  # the training range, for drift reports
    high: str


def check_iso_dates(text: pd.Series, *, name: str, where: str) -> None:
    """Refuse a value of `text` (None where missing) that is not an ISO 8601 date or time in form
    (03/01/2024 is March 1st or January 3rd: pandas would guess), naming the column, the first
    such value, its row and how to write it. Tables' date columns and series' times are read so."""
    bad = [i for i, v in enumerate(text) if v is not None and not _ISO.match(str(v).strip())]
    if bad:
        raise DataError(
            f"{where}: column {name!r} must hold ISO 8601 dates (2024-03-01 or 2024-03-01T14:30); "
            f"got {str(text.iloc[bad[0]])[:40]!r} in row {row_of(text, int(bad[0]))}"
        )


def timestamps(col: pd.Series, *, name: str, where: str) -> pd.Series:
    """The column as UTC-naive timestamps (NaT where missing); a value that is not a date raises."""
    if pd.api.types.is_datetime64_any_dtype(col):
        t = col
    else:
        text = col.astype(object).where(col.notna(), None)
        check_iso_dates(text, name=name, where=where)
        t = pd.to_datetime(text.map(lambda v: v if v is None else str(v).strip()), errors="coerce", utc=True, format="ISO8601")
        impossible = np.flatnonzero(t.isna().to_numpy() & text.notna().to_numpy())
        if len(impossible):  # ISO in form, but no such time (2024-02-30, month 13, hour 25)
            row = int(impossible[0])
            raise DataError(
                f"{where}: column {name!r} holds {str(text.iloc[row])[:40]!r} in row {row_of(text, row)}, which is not a date that exists"
            )
    if getattr(t.dt, "tz", None) is not None:
        t = t.dt.tz_convert("UTC").dt.tz_localize(None)
    return t


def _summary_time(t: pd.Series, at: str) -> str:
    """`numeric.summary` for times, to the second: a package holds no single training time
    that fewer than `numeric.K` rows share."""
    seconds = np.array([x.value // 10**9 for x in t], dtype=np.int64)
    return pd.Timestamp(int(summary(seconds, at, whole=True)), unit="s", tz=t.dt.tz).isoformat()


class DateTime(FeatureType):
    name = "datetime"
    slot = "float"
    encoder = "passthrough"
    # Served data is always later than the training data, so a test on the dates would alarm on
    # every window; the monitor leaves date columns out (as Evidently does by default).
    drift = None
    unwatched = "a date moves with time: data served after training always has later dates, so its test would alarm on every window"
    datatype = "BYTES"
    state_type = DateTimeState
    corruption = "times moved by up to that fraction of a year"

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        if pd.api.types.is_datetime64_any_dtype(col):
            return True
        if pd.api.types.is_numeric_dtype(col):
            return False
        sample = col.astype(str).str.strip().head(500)
        return bool(sample.map(lambda v: bool(_ISO.match(v))).all())

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> DateTimeState:
        t = timestamps(col, name=str(col.name), where=where).dropna()
        if not len(t):
            raise DataError(f"{where}: column {col.name!r} has no dates in the training split")
        years = t.dt.year.to_numpy(dtype=np.float64)
        std = float(years.std())
        hours = bool((t.dt.hour != 0).any() or (t.dt.minute != 0).any())
        low, middle, high = (_summary_time(t, at) for at in ("low", "middle", "high"))
        return DateTimeState(middle, float(years.mean()), std if std > 1e-12 else 1.0, hours, low, high)

    def encode(self, state: DateTimeState, col: pd.Series, *, where: str) -> np.ndarray:
        t = timestamps(col, name=str(col.name), where=where).fillna(pd.Timestamp(state.fill))
        parts = [((t.dt.year.to_numpy(dtype=np.float64) - state.year_mean) / state.year_std)]
        values = {
            "month": t.dt.month.to_numpy() - 1,
            "weekday": t.dt.day_of_week.to_numpy(),
            "hour": t.dt.hour.to_numpy() + t.dt.minute.to_numpy() / 60.0,
        }
        for unit, period in _CYCLES:
            if unit == "hour" and not state.hours:
                continue
            angle = 2.0 * np.pi * values[unit].astype(np.float64) / period
            parts += [np.sin(angle), np.cos(angle)]
        return np.stack(parts, axis=1)  # (N, size)

    def size(self, state: DateTimeState) -> int:
        return 7 if state.hours else 5

    def feature_names(self, name: str, state: DateTimeState) -> list[str]:
        units = [u for u, _ in _CYCLES if u != "hour" or state.hours]
        return [f"{name}.year"] + [f"{name}.{u}.{f}" for u in units for f in ("sin", "cos")]

    def example(self, state: DateTimeState, rows: int, rng: np.random.Generator) -> list[str]:
        low, high = pd.Timestamp(state.low), pd.Timestamp(state.high)
        span = max((high - low).total_seconds(), 1.0)
        return [(low + pd.Timedelta(seconds=float(x))).isoformat() for x in rng.uniform(0.0, span, size=rows)]

    def conforms(self, col: pd.Series) -> np.ndarray:
        # What `timestamps` reads: ISO 8601 in form, and a time that exists.
        if pd.api.types.is_datetime64_any_dtype(col):
            return np.ones(len(col), dtype=bool)
        text = col.astype(object).where(col.notna(), None)
        form = np.fromiter((v is None or bool(_ISO.match(str(v).strip())) for v in text), dtype=bool, count=len(col))
        kept = text.where(form, None).map(lambda v: v if v is None else str(v).strip())
        t = pd.to_datetime(kept, errors="coerce", utc=True, format="ISO8601")
        return form & ~(t.isna().to_numpy() & kept.notna().to_numpy())

    def profile(self, col: pd.Series) -> dict[str, Any]:
        # The range as the package's state keeps it: no single time fewer than K rows share.
        try:
            t = timestamps(col, name=str(col.name), where="profile").dropna()
        except DataError:  # a value training will refuse, naming its row; the profile says nothing of it
            return {}
        return {"low": _summary_time(t, "low"), "high": _summary_time(t, "high")} if len(t) else {}

    def profile_values(self, col: pd.Series) -> np.ndarray | None:
        try:
            t = timestamps(col, name=str(col.name), where="profile")
        except DataError:
            return None
        return np.array([x.value / 1e9 if x is not pd.NaT else np.nan for x in t], dtype=np.float64)

    def corrupt(self, state: DateTimeState, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        # Each time moved by up to `fraction` of a year either way: clock and time-zone errors.
        t = timestamps(col, name=str(col.name), where="corruption")
        days = rng.uniform(-365.0 * fraction, 365.0 * fraction, size=len(t))
        moved = t + pd.to_timedelta(days, unit="D")
        return moved.map(lambda v: None if pd.isna(v) else v.isoformat()).rename(col.name)
