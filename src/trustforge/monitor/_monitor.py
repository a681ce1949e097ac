"""`DriftMonitor`: served inputs and predictions, in tumbling windows, against the package's reference.

Rows arrive in batches (one per served request) and wait for their window: table rows as
served, images and clips reduced to a handful of numbers at once. Every `window` rows form
one window, featurized in one pass and tested feature by feature against the reference (see
`_detectors`), plus the prediction.

Windows tumble (they do not overlap): each row is tested once, so windows are independent
under no drift and "false alarms per window" means what it says. A window with drift gives
exactly one log line and one audit entry, whatever the number of requests or drifted features.
A server passes `alert_interval_s` (60 s): then at most one log line and audit entry is
written per interval, however many windows drift in it (a 60,000-row request fills 120
windows of 500); the entry names the first window and counts the drifted windows since the
previous entry (`drifted_windows`), and `flush_alerts` writes what is still counted.

Deciding a window. Numeric features use `numeric_test`, categorical and binary features and
class predictions `categorical_test` (regression predictions are numeric). With p-value tests
(KS, chi-square) and `correction: bonferroni`, each of the window's m tests runs at its level
/ m, so the chance that a window without drift raises an alarm is at most the level (the
larger of `ks_p_value` and `chi2_p_value` when they differ), whatever the number of features;
a feature that is present in the reference but missing from every row of a window gets a
p-value too (reference missing share ** rows) and joins the family. A numeric feature with a
missing value in the window or in training also gets a test of its missing share against
training's (Fisher's exact test, `missing_test`), which joins the family too: a feed that
starts losing a column (49 of 60 values missing) drifts, though KS on the 11 values left may not. PSI and Wasserstein rules
are thresholds on effect sizes: they decide only when the spec says so (`numeric_test: psi`
or `wasserstein`, `categorical_test: psi`), and then at the larger of the spec's threshold and
the figure's no-drift level at the window's size for the corrected level (see `_null`), so
they join the same family.

PSI and Wasserstein are reported for every feature either way. When they do not decide they
are descriptive, and each carries the threshold that means something at the window's size:
the larger of the spec's value (the conventional effect size, Evidently's 0.1) and the value
a window of that many rows drawn without drift exceeds with probability `ks_p_value`
(numeric) or `chi2_p_value` (categorical), uncorrected: about 1 figure in 20 crosses it by
chance. At 57 rows that level is PSI 0.45-0.73 and Wasserstein ~0.3, not 0.1; at 5,000 rows the
spec's 0.1 is the larger. Each feature's result names the test that decides it (`decided_by`).
The levels are simulated once per feature and window size (the first window of a size pays
about 20-100 ms per feature; later ones nothing).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import pandas as pd

from trustforge.data import RawData, Schema
from trustforge.errors import DataError
from trustforge.monitor._detectors import chi2_test, compare_numeric, missing_share_test, psi_categorical
from trustforge.monitor._null import psi_level, wasserstein_level
from trustforge.monitor._reference import MISSING, PREDICTION, featurize, prediction_values, supports
from trustforge.spec import MonitorSpec

if TYPE_CHECKING:
    from trustforge.package import Model
    from trustforge.secure import AuditLog

__all__ = ["DriftMonitor", "WindowResult", "AUDIT_ACTION", "MIN_WINDOW_ROWS"]

AUDIT_ACTION = "drift_alert"
MIN_WINDOW_ROWS = 20  # a partial window (`flush`) with fewer rows is not tested
_LOG = logging.getLogger("trustforge.monitor")
# The prediction's buffer key: no table column can be called this, so a column named
# `prediction` and the model's prediction never mix.
_PRED_KEY = "\x00prediction"


@dataclass
class WindowResult:
    """One tested window.

    Attributes:
        index: 1 for the first window, 2 for the next, ...
        start_row, end_row: the window's served rows, 0-based, end exclusive.
        time: when it was tested (UTC, ISO-8601).
        drift: whether any feature or the prediction drifted.
        drifted: the names of what drifted (features, then `prediction`).
        features: name → result: kind, test and decided_by (the test that decides: ks, chi2,
            psi, wasserstein, missing; None when nothing can be tested), statistic, p_value
            (p-value tests), level (before correction), threshold (what the p-value or
            statistic is compared with, after correction), rows, missing, drift, and the
            figures psi and wasserstein (numeric) as {value, threshold, window, no_drift,
            limit, level, role: "decides" | "descriptive", exceeds} (see `_figure`), or None.
        prediction: the prediction's result in the same form, or None when not monitored.
    """

    index: int
    start_row: int
    end_row: int
    time: str
    drift: bool
    drifted: list[str]
    features: dict[str, dict[str, Any]]
    prediction: dict[str, Any] | None = None
    partial: bool = False

    @property
    def rows(self) -> int:
        return self.end_row - self.start_row

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (infinities become None)."""
        return {
            "index": self.index,
            "start_row": self.start_row,
            "end_row": self.end_row,
            "rows": self.rows,
            "time": self.time,
            "partial": self.partial,
            "drift": self.drift,
            "drifted": list(self.drifted),
            "features": {k: _jsonable(v) for k, v in self.features.items()},
            "prediction": _jsonable(self.prediction) if self.prediction is not None else None,
        }

    def summary(self) -> str:
        """`name (test p=…)` for each drifted feature, for logs and tables."""
        return ", ".join(f"{name} ({_describe(r)})" for name, r in self.drifted_results())

    def largest_psi(self) -> tuple[str, float] | None:
        """(feature, PSI) of the feature with the largest PSI in this window, or None when none has one."""
        psis = {k: r["psi"]["value"] for k, r in self.features.items() if r.get("psi") is not None}
        if not psis:
            return None
        top = max(psis, key=psis.get)
        return top, psis[top]

    def largest_psi_ratio(self) -> tuple[str, dict[str, Any]] | None:
        """(feature, PSI figure) of the feature whose PSI is the largest share of its threshold, or None."""
        figs = {k: r["psi"] for k, r in self.features.items() if r.get("psi") is not None and r["psi"]["threshold"] > 0}
        if not figs:
            return None
        top = max(figs, key=lambda k: figs[k]["value"] / figs[k]["threshold"])
        return top, figs[top]

    def over_threshold(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(name, "psi" | "wasserstein", figure) of each descriptive figure at or over its window-size threshold."""
        out = []
        named = list(self.features.items()) + ([(PREDICTION, self.prediction)] if self.prediction is not None else [])
        for name, r in named:
            for fig in ("psi", "wasserstein"):
                f = r.get(fig)
                if f is not None and f["role"] == "descriptive" and f["exceeds"]:
                    out.append((name, fig, f))
        return out

    def drifted_results(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, result) of each drifted feature, then of the prediction if it drifted."""
        out = [(k, r) for k, r in self.features.items() if r["drift"]]
        if self.prediction is not None and self.prediction["drift"]:
            out.append((PREDICTION, self.prediction))
        return out


def _served_frame(schema: Schema, raw: RawData, features: Mapping[str, Any]) -> pd.DataFrame:
    absent = [c for c in schema.input_names if c not in raw.frame.columns]
    if absent:  # refused with the request that brought it, not at the end of the window
        raise DataError(f"{raw.origin}: missing columns {absent} that the model needs")
    # Kept as served (selecting columns costs more than a request should pay); the frame must
    # not be changed in place until its window is tested.
    return raw.frame


def _reduced(schema: Schema, raw: RawData, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    feats = featurize(schema, raw)
    return {k: feats[k] for k in features}


# What `observe` keeps of a served batch until its window is tested, by modality: a table as
# served (featurized once per window, in one pass); any other kind is reduced to its monitored
# features at once (`_reduced`), so no image or clip is kept.
_ON_ARRIVAL: dict[str, Callable[[Schema, RawData, Mapping[str, Any]], pd.DataFrame | dict[str, np.ndarray]]] = {
    "table": _served_frame,
}


@dataclass
class _Chunk:
    """Served rows waiting for their window.

    `inputs`: a table as served (featurized once per window, in one pass: per-request
    pandas work would cost more than the tests), or featurized arrays (images and
    clips are reduced on arrival, so none is kept), or None. `predictions`: the `prediction`
    column as served, or arrays, or None when the rows came without predictions.
    """

    rows: int
    inputs: pd.DataFrame | dict[str, np.ndarray] | None
    predictions: pd.Series | np.ndarray | None


class DriftMonitor:
    """Tests served inputs and predictions for drift, window by window, against a reference.

    Thread-safe: `observe`, `flush`, `status` and `scores` may be called from any thread.
    `observe` only files its batch away (table rows as served; images and clips reduced to a
    few numbers at once), so a request pays microseconds; when a window fills, the call that
    filled it featurizes the window in one pass and tests it (tens of milliseconds for tens
    of features).

    Args:
        reference: the package's reference statistics (`manifest["monitor"]["reference"]`).
        schema: the model's schema (how raw inputs become monitored features).
        config: the spec's `monitor` section (window and thresholds).
        model_ref: how logs and audit entries name the model (e.g. `models:/fraud/3`).
        audit: an `AuditLog` that gets one `drift_alert` entry per window with drift, or None.
        logger: where the one warning line per window with drift goes (default
            `trustforge.monitor`).
        actor: the audit entries' actor.
        history: how many tested windows `windows` keeps (None: all, for offline runs).
        alert_interval_s: at most one alert (log line and audit entry) per this many seconds,
            counting the drifted windows in between (None: one per drifted window).
        clock: monotonic seconds (tests pass a fake clock).
        record: called with every tested window (drifted or not), e.g. `DriftHistory.record`,
            which keeps the workspace's drift history; it must not raise.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        schema: Schema,
        config: MonitorSpec | None = None,
        *,
        model_ref: str = "model",
        audit: "AuditLog | None" = None,
        logger: logging.Logger | None = None,
        actor: str = "monitor",
        history: int | None = 100,
        alert_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        record: Callable[[WindowResult], None] | None = None,
    ):
        self.reference = reference
        self.record = record
        self.alert_interval_s = alert_interval_s
        self._clock = clock
        self._last_alert: float | None = None
        self._pending_alert: WindowResult | None = None  # the first drifted window not yet alerted
        self._pending_count = 0
        self.schema = schema
        self.config = config or MonitorSpec()
        self.window = self.config.window
        self.model_ref = model_ref
        self.audit = audit
        self.logger = logger or _LOG
        self.actor = actor
        # Features with no value in training cannot be compared with anything.
        self._features = {k: v for k, v in reference.get("features", {}).items() if v.get("count", 0) > 0}
        self._levels: dict[tuple[str, str, int, float], float] = {}  # no-drift levels (feature, figure, rows, level)
        self._prediction = reference.get("prediction")
        self._lock = threading.Lock()
        self._pending: list[_Chunk] = []
        self._pending_rows = 0
        self._rows_seen = 0
        self._tested = 0
        self._drifted = 0
        self._windows: deque[WindowResult] = deque(maxlen=history)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=20)
        self._alert_count = 0
        self._alert_failures = 0

    @classmethod
    def for_model(
        cls,
        model: "Model",
        *,
        audit: "AuditLog | None" = None,
        logger: logging.Logger | None = None,
        actor: str = "monitor",
        uri: str | None = None,
        window: int | None = None,
        history: int | None = 100,
        alert_interval_s: float | None = None,
        record: Callable[[WindowResult], None] | None = None,
    ) -> "DriftMonitor | None":
        """A monitor for a loaded model, or None when its package has no reference statistics.

        The window and thresholds come from the package's spec (`monitor:`); `window`
        overrides the window size. `uri` names the model in logs and audit entries (default
        `models:/NAME`). `record` gets every tested window (see `__init__`).
        """
        reference = (model.manifest.get("monitor") or {}).get("reference")
        if not reference or not (reference.get("features") or reference.get("prediction")):
            return None
        config = model.spec.monitor if window is None else model.spec.monitor.model_copy(update={"window": window})
        return cls(
            reference,
            model.schema,
            config,
            model_ref=uri or f"models:/{model.name}",
            audit=audit,
            logger=logger,
            actor=actor,
            history=history,
            alert_interval_s=alert_interval_s,
            record=record,
        )

    # ------------------------------------------------------------------ feeding

    def observe(self, raw_inputs: RawData, predictions: pd.DataFrame | None = None) -> list[WindowResult]:
        """Add one served batch; returns the windows it completed (usually none).

        Args:
            raw_inputs: the batch as the model read it (`Model.read_input`); a table's frame
                is kept, not copied, until its window is tested: do not change it in place.
            predictions: the batch's predictions (`Model.predict`), row for row, or None.

        Raises:
            DataError: the inputs do not fit the model's schema.
            ValueError: `predictions` has another number of rows than `raw_inputs`.
        """
        n = len(raw_inputs)
        inputs: pd.DataFrame | dict[str, np.ndarray] | None = None
        if self._features and supports(self.schema.modality):
            inputs = _ON_ARRIVAL.get(self.schema.modality, _reduced)(self.schema, raw_inputs, self._features)
        pred = None
        if self._prediction is not None and predictions is not None:
            if len(predictions) != n:
                raise ValueError(f"predictions have {len(predictions)} rows for {n} inputs")
            pred = predictions[PREDICTION] if PREDICTION in predictions.columns else None
        done = []
        with self._lock:
            self._pending.append(_Chunk(n, inputs, pred))
            self._pending_rows += n
            self._rows_seen += n
            while self._pending_rows >= self.window:
                done.append(self._test(self._take(self.window), self.window, partial=False))
        return done

    def flush(self, min_rows: int = MIN_WINDOW_ROWS) -> WindowResult | None:
        """Test the rows waiting in the unfinished window, if there are at least `min_rows`.

        For offline runs, whose last window is seldom full. Returns None when too few rows wait.
        """
        with self._lock:
            n = self._pending_rows
            if n < max(min_rows, 1):
                return None
            return self._test(self._take(n), n, partial=True)

    # ------------------------------------------------------------------ reading

    @property
    def monitored(self) -> list[str]:
        """What each window tests: the features, then `prediction` when predictions are monitored."""
        return list(self._features) + ([PREDICTION] if self._prediction is not None else [])

    @property
    def windows(self) -> list[WindowResult]:
        """The tested windows kept (the last `history`), oldest first."""
        with self._lock:
            return list(self._windows)

    def status(self) -> dict[str, Any]:
        """JSON-serialisable state: window size, rows seen, thresholds, the last window, alerts."""
        c = self.config
        with self._lock:
            last = self._windows[-1].to_dict() if self._windows else None
            return {
                "model": self.model_ref,
                "window": self.window,
                "rows_seen": self._rows_seen,
                "pending_rows": self._pending_rows,
                "windows_tested": self._tested,
                "windows_with_drift": self._drifted,
                "config": {
                    "numeric_test": c.numeric_test,
                    "categorical_test": c.categorical_test,
                    "ks_p_value": c.ks_p_value,
                    "chi2_p_value": c.chi2_p_value,
                    "psi": c.psi,
                    "wasserstein": c.wasserstein,
                    "correction": c.correction,
                },
                "reference": {
                    "features": sorted(self._features),
                    "prediction": self._prediction is not None,
                    "predictions_from": self.reference.get("predictions_from"),
                    "rows": dict(self.reference.get("rows", {})),
                    "skipped": dict(self.reference.get("skipped", {})),
                },
                "last_window": last,
                "alerts": {"count": self._alert_count, "failed_audit_entries": self._alert_failures, "recent": list(self._alerts)},
            }

    def scores(self) -> dict[str, float]:
        """Feature (and `prediction`) → PSI in the last tested window; empty before the first.

        PSI because it means the same for every kind of feature (0.1: moderate, 0.25: large
        shift, by the usual reading, for large windows); each figure's threshold at the
        window's size and the deciding test's result are in `status()`.
        """
        with self._lock:
            if not self._windows:
                return {}
            last = self._windows[-1]
            out = {k: r["psi"]["value"] for k, r in last.features.items() if r.get("psi") is not None}
            if last.prediction is not None and last.prediction.get("psi") is not None:
                out[PREDICTION] = last.prediction["psi"]["value"]
            return out

    # ------------------------------------------------------------------ testing

    def _take(self, n: int) -> dict[str, np.ndarray]:
        """Featurize the waiting rows (with the lock held) and cut the first `n` off; the rest wait on."""
        chunks, self._pending = self._pending, []
        values = self._input_arrays(chunks)
        if self._prediction is not None:
            values[_PRED_KEY] = self._prediction_array(chunks)
        rest = self._pending_rows - n
        if rest:
            inputs = {k: v[n:] for k, v in values.items() if k != _PRED_KEY} if self._features else None
            self._pending = [_Chunk(rest, inputs, values[_PRED_KEY][n:] if _PRED_KEY in values else None)]
        self._pending_rows = rest
        return {k: v[:n] for k, v in values.items()}

    def _input_arrays(self, chunks: list[_Chunk]) -> dict[str, np.ndarray]:
        """Feature name → values of every waiting row, in order (tables featurized in one pass)."""
        frames = [c.inputs for c in chunks if isinstance(c.inputs, pd.DataFrame)]
        table = {}
        if frames:
            table = featurize(self.schema, RawData("table", self.schema.target, "served", frame=pd.concat(frames, ignore_index=True)))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self._features}
        at = 0
        for c in chunks:
            if isinstance(c.inputs, pd.DataFrame):
                for name in self._features:
                    parts[name].append(table[name][at : at + c.rows])
                at += c.rows
            elif c.inputs is not None:
                for name in self._features:
                    parts[name].append(c.inputs[name])
        return {name: np.concatenate(p) for name, p in parts.items() if p}

    def _prediction_array(self, chunks: list[_Chunk]) -> np.ndarray:
        """The prediction of every waiting row, in order; rows served without one are NaN/None."""
        served = [c.predictions for c in chunks if isinstance(c.predictions, pd.Series)]
        converted = None
        if served:
            converted = prediction_values(self.schema.task, pd.DataFrame({PREDICTION: pd.concat(served, ignore_index=True)}))
        numeric = self._prediction["kind"] == "numeric"
        parts, at = [], 0
        for c in chunks:
            if isinstance(c.predictions, pd.Series):
                parts.append(converted[at : at + c.rows])
                at += c.rows
            elif c.predictions is not None:
                parts.append(c.predictions)
            else:
                parts.append(np.full(c.rows, np.nan) if numeric else np.full(c.rows, None, dtype=object))
        return np.concatenate(parts)

    def prepare(self) -> None:
        """Simulate now the no-drift levels that a full window's figures need (see `_null`; about
        1 s for 30 features), which the first window would otherwise pay while serving. Tests a
        made-up window of typical values and records nothing of it."""
        n = self.window
        values = {name: _typical(ref, n) for name, ref in self._features.items()}
        if self._prediction is not None:
            values[_PRED_KEY] = _typical(self._prediction, n)
        with self._lock:
            self._evaluate(values)

    def _evaluate(self, values: dict[str, np.ndarray]) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, list[str]]:
        """(feature results, prediction result, what drifted) of one window's values; records nothing."""
        results = {name: self._compare(ref, values[name]) for name, ref in self._features.items()}
        pred = self._compare(self._prediction, values[_PRED_KEY], observed_only=True) if self._prediction is not None else None
        judged = [(name, ref, results[name]) for name, ref in self._features.items()]
        judged += [(_PRED_KEY, self._prediction, pred)] if pred is not None else []
        family = sum(r.get("test") is not None for _, _, r in judged)  # the window's deciding tests,
        family += sum("missing_test" in r for _, _, r in judged)  # and its tests of missing shares
        for key, ref, r in judged:
            self._judge(key, ref, r, family)
        drifted = [k for k, r in results.items() if r["drift"]] + ([PREDICTION] if pred is not None and pred["drift"] else [])
        return results, pred, drifted

    def _test(self, values: dict[str, np.ndarray], n: int, *, partial: bool) -> WindowResult:
        """Test one window (called with the lock held) and raise its alert."""
        results, pred, drifted = self._evaluate(values)
        start = self._rows_seen - self._pending_rows - n
        result = WindowResult(self._tested + 1, start, start + n, _now(), bool(drifted), drifted, results, pred, partial)
        self._tested += 1
        self._windows.append(result)
        if self.record is not None:
            self.record(result)
        if drifted:
            self._drifted += 1
            self._alert(result)
        return result

    def _judge(self, key: str, ref: Mapping[str, Any], r: dict[str, Any], family: int) -> None:
        """Set a result's corrected threshold, drift, decided_by and its PSI/W figures (in place)."""
        c = self.config
        corrected = r["level"] / family if r.get("level") is not None and c.correction == "bonferroni" and family else r.get("level")
        r["decided_by"] = r.get("test")
        if r.get("p_value") is not None:
            r["threshold"] = corrected
            r["drift"] = r["p_value"] < corrected
        for fig in ("psi", "wasserstein"):
            if r.get(fig) is None:
                continue
            decides = r.get("test") == fig
            f = self._figure(key, ref, fig, float(r[fig]), r["window"], corrected if decides else r["descriptive_level"], decides)
            r[fig] = f
            if decides:
                r["statistic"], r["threshold"], r["drift"] = f["value"], f["threshold"], f["exceeds"]
        m = r.get("missing_test")
        if m is not None:
            m["threshold"] = m["level"] / family if c.correction == "bonferroni" and family else m["level"]
            m["drift"] = bool(m["p_value"] < m["threshold"])
            r["drift"] = bool(r["drift"] or m["drift"])
        r.pop("window", None)
        r.pop("descriptive_level", None)

    def _figure(self, key: str, ref: Mapping[str, Any], fig: str, value: float, rows: int, level: float, decides: bool) -> dict[str, Any]:
        """A PSI or Wasserstein figure with the threshold that means something at `rows` rows.

        `no_drift`: what a window of `rows` rows without drift exceeds with probability
        `level` (simulated from the reference, see `_null`; cached per feature and size);
        `limit`: the spec's threshold; `threshold`: the larger of the two.
        """
        limit = self.config.psi if fig == "psi" else self.config.wasserstein
        cache_key = (key, fig, rows, level)
        no_drift = self._levels.get(cache_key)
        if no_drift is None:
            no_drift = self._levels[cache_key] = _no_drift_level(ref, fig, rows, level)
        threshold = max(limit, no_drift)
        return {
            "value": value,
            "threshold": threshold,
            "window": int(rows),
            "no_drift": no_drift,
            "limit": limit,
            "level": level,
            "role": "decides" if decides else "descriptive",
            "exceeds": bool(value >= threshold),
        }

    def _compare(self, ref: Mapping[str, Any], values: np.ndarray, *, observed_only: bool = False) -> dict[str, Any]:
        """One feature's result in one window, before `_judge` (which sets thresholds, figures and drift).

        `level` is the deciding test's level before correction, `window` the rows the figures
        were computed on and `descriptive_level` the level of their descriptive thresholds.

        `observed_only`: a missing value means "not observed" (rows served without their
        predictions), not a missing value to test; a window with none is not tested.
        """
        c = self.config
        if observed_only:
            values = values[~pd.isna(values)]
            if len(values) == 0:
                return {
                    "kind": ref["kind"],
                    "rows": 0,
                    "missing": 0,
                    "test": None,
                    "statistic": None,
                    "p_value": None,
                    "level": None,
                    "threshold": None,
                    "psi": None,
                    "drift": False,
                }
        if ref["kind"] == "numeric":
            present = values[~np.isnan(values)]
            out: dict[str, Any] = {"kind": "numeric", "rows": int(len(values)), "missing": int(len(values) - len(present))}
            if len(present) == 0:
                return out | self._all_missing(ref, len(values))
            scores = compare_numeric(ref, present)
            out["psi"], out["wasserstein"] = scores["psi"], scores["wasserstein"]
            out["window"], out["descriptive_level"] = int(len(present)), c.ks_p_value
            if out["missing"] or ref.get("missing", 0):
                out["missing_test"] = self._missing_share(ref, len(present), out["missing"])
            if c.numeric_test == "ks" and scores["ks"] is not None:
                d, p = scores["ks"]
                return out | {"test": "ks", "statistic": d, "p_value": p, "level": c.ks_p_value, "threshold": c.ks_p_value, "drift": False}
            stat = out[c.numeric_test] if c.numeric_test != "ks" else None
            if stat is None:  # the reference has too few training rows to test against (see _reference)
                return out | {"test": None, "statistic": None, "p_value": None, "level": None, "threshold": None, "drift": False}
            # Decided by PSI or Wasserstein: `_judge` sets the threshold (spec's, or the no-drift level if larger).
            return out | {
                "test": c.numeric_test,
                "statistic": stat,
                "p_value": None,
                "level": c.ks_p_value,
                "threshold": None,
                "drift": False,
            }
        # Missing categories are a category of their own (`<missing>`), so every row is present.
        values = np.where(pd.isna(values), MISSING, values).astype(object)
        counts = ref["counts"]
        out = {
            "kind": "categorical",
            "rows": int(len(values)),
            "missing": int(np.sum(values == MISSING)),
            "psi": psi_categorical(counts, values),
            "window": int(len(values)),
            "descriptive_level": c.chi2_p_value,
        }
        if c.categorical_test == "chi2":
            stat, p, _ = chi2_test(counts, values)
            return out | {
                "test": "chi2",
                "statistic": stat,
                "p_value": p,
                "level": c.chi2_p_value,
                "threshold": c.chi2_p_value,
                "drift": False,
            }
        return out | {"test": "psi", "statistic": out["psi"], "p_value": None, "level": c.chi2_p_value, "threshold": None, "drift": False}

    def _missing_share(self, ref: Mapping[str, Any], present: int, missing: int) -> dict[str, Any]:
        """The test of a window's missing share against training's (decided in `_judge`)."""
        ref_missing = int(ref.get("missing", 0))
        total = int(ref["count"]) + ref_missing
        return {
            "test": "fisher",
            "p_value": missing_share_test(int(ref["count"]), ref_missing, present, missing),
            "level": self.config.ks_p_value,
            "threshold": self.config.ks_p_value,
            "share": missing / (present + missing),
            "reference_share": ref_missing / total if total else 0.0,
            "drift": False,
        }

    def _all_missing(self, ref: Mapping[str, Any], n: int) -> dict[str, Any]:
        # Every row missing: under the reference each row is missing with its missing share q,
        # so n missing rows have probability q ** n, an exact p-value for "more missing".
        total = ref["count"] + ref.get("missing", 0)
        q = ref.get("missing", 0) / total if total else 0.0
        level = self.config.ks_p_value if self.config.numeric_test == "ks" else self.config.chi2_p_value
        return {
            "test": "missing",
            "statistic": 1.0,
            "p_value": float(q**n),
            "level": level,
            "threshold": level,
            "drift": False,
            "psi": None,
            "wasserstein": None,
        }

    def _alert(self, result: WindowResult) -> None:
        """Alert a drifted window now, or count it until the interval since the last alert ends."""
        if self.alert_interval_s is None:
            self._write_alert(result, 1)
            return
        if self._pending_alert is None:
            self._pending_alert = result
        self._pending_count += 1
        now = self._clock()
        if self._last_alert is None or now - self._last_alert >= self.alert_interval_s:
            self._last_alert = now
            first, count = self._pending_alert, self._pending_count
            self._pending_alert, self._pending_count = None, 0
            self._write_alert(first, count)

    def flush_alerts(self) -> None:
        """Write the alert for drifted windows still counted (a server that stops calls this)."""
        with self._lock:
            if self._pending_alert is not None:
                first, count = self._pending_alert, self._pending_count
                self._pending_alert, self._pending_count = None, 0
                self._last_alert = self._clock()
                self._write_alert(first, count)

    def _write_alert(self, result: WindowResult, windows: int) -> None:
        """One log line and one audit entry for `windows` drifted windows from `result` on; never fails the caller."""
        self._alert_count += 1
        details = {
            "window": result.index,
            "rows": [result.start_row, result.end_row],
            "partial": result.partial,
            "drifted": [{"name": k, **_brief(r)} for k, r in result.drifted_results()],
        }
        if self.alert_interval_s is not None:
            details["drifted_windows"] = windows
        self._alerts.append({"time": result.time, **details})
        self.logger.warning(
            "drift in %s, window %d (rows %d-%d): %s", self.model_ref, result.index, result.start_row, result.end_row - 1, result.summary()
        )
        if self.audit is None:
            return
        try:
            self.audit.append(self.actor, AUDIT_ACTION, self.model_ref, "ok", details)
        except Exception as exc:  # an alert that cannot be audited must not fail the request that completed the window
            self._alert_failures += 1
            self.logger.error(
                "drift in %s, window %d: the audit entry could not be written (%s: %s)",
                self.model_ref,
                result.index,
                exc.__class__.__name__,
                str(exc)[:200],
            )


# No-drift levels by (figure, the reference's statistics as JSON, rows, level): monitors of the
# same package (a server's reload, a test's several monitors) simulate each level once.
_LEVELS: dict[tuple[str, str, int, float], float] = {}
_LEVELS_MAX = 4096
_LEVELS_LOCK = threading.Lock()


def _no_drift_level(ref: Mapping[str, Any], fig: str, rows: int, level: float) -> float:
    key = (fig, json.dumps(ref, sort_keys=True), rows, level)
    with _LEVELS_LOCK:
        if key in _LEVELS:
            return _LEVELS[key]
    if fig == "wasserstein":
        value = wasserstein_level(ref, rows, level)
    elif ref["kind"] == "numeric":
        value = psi_level(ref["bins"]["fractions"], int(ref["count"]), rows, level)
    else:
        value = psi_level(list(ref["counts"].values()), int(ref["count"]), rows, level)
    with _LEVELS_LOCK:
        if len(_LEVELS) >= _LEVELS_MAX:
            _LEVELS.pop(next(iter(_LEVELS)))  # the oldest
        _LEVELS[key] = value
    return value


def _typical(ref: Mapping[str, Any], n: int) -> np.ndarray:
    """`n` values without a missing one, of the kind `ref` describes (for `prepare`)."""
    if ref["kind"] == "numeric":
        return np.zeros(n)
    return np.full(n, next(iter(ref["counts"]), "x"), dtype=object)


def _describe(r: Mapping[str, Any]) -> str:
    m = r.get("missing_test") or {}
    parts = []
    if r.get("p_value") is not None and r["p_value"] < r["threshold"]:
        parts.append(f"{r['test']} p={r['p_value']:.2g} < {r['threshold']:.2g}")
    elif r.get("p_value") is None and r.get("statistic") is not None and r["statistic"] >= r["threshold"]:
        parts.append(f"{r['test']} {r['statistic']:.3g} >= {r['threshold']:.3g}")
    if m.get("drift"):
        parts.append(
            f"missing {m['share']:.0%} vs {m['reference_share']:.0%} in training: fisher p={m['p_value']:.2g} < {m['threshold']:.2g}"
        )
    return "; ".join(parts)


def _brief(r: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("decided_by", "test", "statistic", "p_value", "threshold")
    out = {k: r.get(k) for k in keep if r.get(k) is not None}
    if r.get("psi") is not None:
        out["psi"], out["psi_threshold"] = r["psi"]["value"], r["psi"]["threshold"]
    m = r.get("missing_test")
    if m is not None and m["drift"]:  # counts only: shares of missing values, no value
        out["missing_share"], out["missing_reference_share"], out["missing_p_value"] = m["share"], m["reference_share"], m["p_value"]
    return _jsonable(out)


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            v = _jsonable(v)
        elif isinstance(v, (float, np.floating)):
            v = float(v) if np.isfinite(v) else None
        elif isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        out[k] = v
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
