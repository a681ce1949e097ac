"""Expectations on the data (`data.expect`): declared in the spec, inferred from training.

A rule says what one column's values must look like (type, range, allowed values, pattern,
largest missing fraction, uniqueness); a table has row-count bounds and unique keys. The
declared rules come from the spec; with `infer` on (the default: `data.expect` is `{}` unless
the spec says `null`), the training split adds a rule per input column from its fitted feature
state (`FeatureType.observed`: a numeric column's range, made to hold every training value by
`_covering_range` and widened by `tolerance` times its width; a category column's values; no
more missing values than training had, plus `tolerance`). Both are saved in the package
(`manifest["expect"]`; nothing when there is no rule, as for images or a series) and checked
again at `predict`, `evaluate` and in the server.

Each check has a policy: `fail` (stop, naming every violation), `warn` (one line per
violation naming row and column, then go on; a value of the wrong type is read as missing),
`drop_row` (leave the row out). The type check asks the column's feature type
(`FeatureType.conforms`), never a modality name.

Why not pandera (evaluated for issue 16): it installs from PyPI (pandera 0.35: 6.5 MB with
typeguard and typing-inspect) and finds the same rows, but `bench/expect.py` measured it 19x
slower on a one-row request (19 ms against 1.0 ms, the machine under load), 20x on 1,000 rows
and 2.9x on 100,000, plus 0.2 to 0.7 s to import; the server checks every request. The tests
run pandera beside these checks on the same table and find the same violating rows
(`tests/data/test_expect.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from trustforge.data._raw import RawData
from trustforge.data._sources import did_you_mean
from trustforge.data.features import feature_type, label_strings
from trustforge.data.features.numeric import K as _K
from trustforge.errors import DataError

__all__ = [
    "CHECKS",
    "POLICIES",
    "Expectations",
    "ExpectReport",
    "Rule",
    "Violation",
    "check_declared_types",
    "check_raw",
    "expectations_of",
    "fit_expectations",
    "validate_data",
]

CHECKS = ("type", "range", "allowed", "pattern", "missing", "unique", "rows", "keys")
POLICIES = ("fail", "warn", "drop_row")
DEFAULT_POLICY = {c: "fail" if c == "type" else "warn" for c in CHECKS}
TABLE = "<table>"  # the column a table-level violation (row count) is counted under
_SHOWN = 20  # violations a message lists before "and N more"


@dataclass(frozen=True)
class Rule:
    """What one column's values must look like; `origin` is "declared" or "inferred"."""

    column: str
    origin: str = "declared"
    type: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    max_missing: float | None = None
    unique: bool = False
    policy: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if v is not None and v is not False}
        if self.allowed is not None:
            d["allowed"] = list(self.allowed)
        return d


@dataclass(frozen=True)
class Violation:
    """One broken expectation: `row` is the 1-based row of the file (None: the whole column or table)."""

    check: str
    column: str
    row: int | None
    message: str
    policy: str
    origin: str
    # The value the message quotes cut to 40 characters, as text of at most 400: a server of a
    # model trained with data.protect masks it whole before it is cut (cut first, an email is no
    # longer one to the detector). Not in the violation's repr nor in its equality.
    value: str | None = field(default=None, repr=False, compare=False)

    def line(self, where: str) -> str:
        at = (
            f"row {self.row}, column {self.column!r}"
            if self.row is not None
            else ("the table" if self.column == TABLE else f"column {self.column!r}")
        )
        return f"{where}: {at}: {self.message} ({self.origin} {self.check} expectation, policy {self.policy})"


@dataclass
class ExpectReport:
    """What a check found: the violations, the rows to leave out and the values to read as missing."""

    violations: list[Violation] = field(default_factory=list)
    drop: set[int] = field(default_factory=set)  # positions in the checked table
    blank: dict[str, set[int]] = field(default_factory=dict)  # column -> positions of wrong-typed values kept under warn

    @property
    def failed(self) -> list[Violation]:
        return [v for v in self.violations if v.policy == "fail"]

    def counts(self) -> dict[str, int]:
        """Violations per column (table-level ones under "<table>")."""
        out: dict[str, int] = {}
        for v in self.violations:
            out[v.column] = out.get(v.column, 0) + 1
        return out

    def lines(self, where: str) -> list[str]:
        return [v.line(where) for v in self.violations]

    def raise_if_failed(self, where: str) -> None:
        """DataError naming every violation under policy fail (the first 20, and how many more)."""
        failed = self.failed
        if not failed:
            return
        shown = "; ".join(v.line(where).removeprefix(f"{where}: ") for v in failed[:_SHOWN])
        more = f"; and {len(failed) - _SHOWN} more" if len(failed) > _SHOWN else ""
        raise DataError(f"{where}: {len(failed)} data expectation(s) failed (data.expect): {shown}{more}")

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The table with the rows to drop left out and wrong-typed values kept under warn read as missing."""
        if self.blank:
            frame = frame.copy()
            for column, rows in self.blank.items():
                col = frame[column].astype(object) if frame[column].dtype != object else frame[column]
                col.iloc[sorted(rows)] = None
                frame[column] = col
        if self.drop:
            keep = np.ones(len(frame), dtype=bool)
            keep[sorted(self.drop)] = False
            frame = frame.loc[keep]
        return frame

    def to_json(self, where: str) -> dict[str, Any]:
        """The report as the run folder keeps it (`expectations.json`): counts and one line per violation."""
        return {**self.metrics(), "lines": self.lines(where)}

    def metrics(self) -> dict[str, Any]:
        """The report as run metrics: the total and the count per column."""
        return {
            "expect_violations": len(self.violations),
            "expect_violations_by_column": self.counts(),
            "expect_rows_dropped": len(self.drop),
        }


@dataclass(frozen=True)
class Expectations:
    """Every rule of a task: per column, row-count bounds, unique keys and each check's policy."""

    rules: tuple[Rule, ...] = ()
    rows: tuple[int | None, int | None] = (None, None)
    keys: tuple[tuple[str, ...], ...] = ()
    policy: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_POLICY))
    tolerance: float = 0.1
    # The type check of inferred rules is left to the feature types (see `_deferred`): true
    # unless `data.expect.policy` sets the type check's policy.
    model_types: bool = False

    @classmethod
    def declared(cls, spec: Any) -> "Expectations":
        """The rules of the spec's `data.expect` section (an `ExpectSpec`)."""
        policy = dict(DEFAULT_POLICY)
        if isinstance(spec.policy, str):
            policy = dict.fromkeys(CHECKS, spec.policy)
        else:
            policy.update(spec.policy)
        rules = tuple(
            Rule(
                name,
                "declared",
                c.type,
                c.min,
                c.max,
                tuple(_canon_values(c.allowed)) if c.allowed is not None else None,
                c.pattern,
                c.max_missing,
                c.unique,
                c.policy,
            )
            for name, c in spec.columns.items()
        )
        rows = (spec.rows.min, spec.rows.max) if spec.rows is not None else (None, None)
        model_types = not isinstance(spec.policy, str) and "type" not in spec.policy
        return cls(rules, rows, tuple(tuple(k) for k in spec.unique), policy, spec.tolerance, model_types)

    @property
    def empty(self) -> bool:
        """No rule, row bound or key: nothing to check."""
        return not self.rules and self.rows == (None, None) and not self.keys

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [r.to_json() for r in self.rules],
            "rows": list(self.rows),
            "keys": [list(k) for k in self.keys],
            "policy": dict(self.policy),
            "tolerance": self.tolerance,
            "model_types": self.model_types,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Expectations":
        try:
            rules = tuple(Rule(**{k: tuple(v) if k == "allowed" else v for k, v in r.items()}) for r in d.get("rules", []))
            rows = tuple(d.get("rows") or (None, None))
            policy = {**DEFAULT_POLICY, **dict(d.get("policy") or {})}
            if set(policy) - set(CHECKS) or set(policy.values()) - set(POLICIES):
                raise ValueError(f"unknown checks or policies in {policy}")
            return cls(
                rules,
                (rows[0], rows[1]),
                tuple(tuple(k) for k in d.get("keys", [])),
                policy,
                float(d.get("tolerance", 0.1)),
                d.get("model_types") is True,
            )
        except (TypeError, ValueError, AttributeError, IndexError) as exc:
            raise DataError(f"the package's data expectations cannot be read ({str(exc)[:120]})") from None

    def policy_of(self, check: str, rule: Rule | None = None) -> str:
        return (rule.policy if rule is not None and rule.policy else None) or self.policy.get(check, DEFAULT_POLICY[check])

    def check(
        self, frame: pd.DataFrame, *, rows: np.ndarray | None = None, required: Iterable[str] | None = None, first_row: int = 1
    ) -> ExpectReport:
        """Check a table against every rule.

        Args:
            frame: the table (a served request's columns, a file to predict on, training data).
            rows: each row's 0-based place in its file (`RawData.rows`), for the row a line names;
                None: its position.
            required: columns whose absence is a violation; None: every column a rule names.
                Others (the target, when predicting) are skipped when absent.
            first_row: the number the first row gets (1, as every message counts rows: a file's
                data rows, a served request's rows).
        """
        report = ExpectReport()
        need = None if required is None else set(required)
        place = (lambda i: int(rows[i]) + first_row) if rows is not None else (lambda i: int(i) + first_row)
        n = len(frame)
        lo, hi = self.rows
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            bound = f">= {lo}" if lo is not None and n < lo else f"<= {hi}"
            # Rows cannot be dropped to meet a row count: drop_row reads as fail here.
            policy = self.policy_of("rows")
            report.violations.append(
                Violation("rows", TABLE, None, f"has {n} rows; expected {bound}", "fail" if policy == "drop_row" else policy, "declared")
            )
        for rule in self.rules:
            if rule.column not in frame.columns:
                if (need is None or rule.column in need) and not _deferred(self, rule):
                    policy = self.policy_of("type", rule)
                    report.violations.append(
                        Violation(
                            "type",
                            rule.column,
                            None,
                            f"the column is not in the data{did_you_mean(rule.column, frame.columns)}",
                            "fail" if policy == "drop_row" else policy,
                            rule.origin,
                        )
                    )
                continue
            _check_column(self, rule, frame[rule.column], place, report)
        for key in self.keys:
            absent = [c for c in key if c not in frame.columns]
            if absent:
                if need is None or set(absent) & need:
                    report.violations.append(
                        Violation("keys", ",".join(key), None, f"key columns not in the data: {absent}", "fail", "declared")
                    )
                continue
            dup = frame.duplicated(subset=list(key), keep="first").to_numpy()
            _per_row(
                self,
                "keys",
                None,
                ",".join(key),
                dup,
                frame[list(key)].astype(str).agg("/".join, axis=1),
                place,
                report,
                "repeats an earlier row's key",
            )
        return report

    def merged(self, other: "Expectations") -> "Expectations":
        """These rules followed by `other`'s (the inferred ones after the declared)."""
        return replace(self, rules=self.rules + other.rules)


def _check_column(ex: Expectations, rule: Rule, col: pd.Series, place: Any, report: ExpectReport) -> None:
    name = rule.column
    # A column of plain numpy numbers (a served request, most of a table) is read once as an
    # array; pandas' per-call cost was most of the check's time on a few rows.
    arr = col.to_numpy() if isinstance(col.dtype, np.dtype) and col.dtype.kind in "iuf" else None
    if arr is None:
        present = col.notna().to_numpy()
    else:
        present = ~np.isnan(arr) if arr.dtype.kind == "f" else np.ones(len(arr), dtype=bool)
    ok_type = np.ones(len(col), dtype=bool)
    if rule.type is not None and not _deferred(ex, rule):
        ok_type = feature_type(rule.type).conforms(col) | ~present
        bad = ~ok_type
        if bad.any():
            policy = ex.policy_of("type", rule)
            what = f"is not a value of {'an' if rule.type[:1] in 'aeiou' else 'a'} {rule.type} column"
            _per_row(ex, "type", rule, name, bad, col, place, report, what + (" (read as missing)" if policy == "warn" else ""))
            if policy == "warn":
                report.blank.setdefault(name, set()).update(np.flatnonzero(bad).tolist())
    if rule.min is not None or rule.max is not None:
        values = arr.astype(np.float64, copy=False) if arr is not None else _numbers(col, ok_type)
        with np.errstate(invalid="ignore"):
            low = values < rule.min if rule.min is not None else np.zeros(len(col), dtype=bool)
            high = values > rule.max if rule.max is not None else np.zeros(len(col), dtype=bool)
        bounds = f"[{_num(rule.min)}, {_num(rule.max)}]"
        _per_row(ex, "range", rule, name, low | high, col, place, report, f"is outside {bounds}")
    if rule.allowed is not None:
        bad = present & ~_isin(col, rule.allowed)
        shown = ", ".join(rule.allowed[:8]) + (", ..." if len(rule.allowed) > 8 else "")
        seen = "unseen in training" if rule.origin == "inferred" else "not allowed"
        _per_row(ex, "allowed", rule, name, bad, col, place, report, f"is {seen} (allowed: {shown})")
    if rule.pattern is not None:
        text = col.astype(str)
        bad = present & ~text.str.fullmatch(rule.pattern).fillna(False).to_numpy(dtype=bool)
        _per_row(ex, "pattern", rule, name, bad, col, place, report, f"does not match {rule.pattern!r}")
    if rule.max_missing is not None:
        missing = ~present
        if rule.max_missing == 0:
            _per_row(ex, "missing", rule, name, missing, col, place, report, "is missing")
        elif len(col) and missing.mean() > rule.max_missing:
            policy = ex.policy_of("missing", rule)
            report.violations.append(
                Violation(
                    "missing",
                    name,
                    None,
                    f"{missing.mean():.1%} of values missing; expected at most {rule.max_missing:.1%}",
                    policy,
                    rule.origin,
                )
            )
            if policy == "drop_row":
                report.drop.update(np.flatnonzero(missing).tolist())
    if rule.unique:
        dup = (col.duplicated(keep="first") & col.notna()).to_numpy()
        _per_row(ex, "unique", rule, name, dup, col, place, report, "repeats an earlier row's value")


# A two-valued column is read as binary, but a declared numeric (0/1) or categorical (yes/no)
# type describes it too: its values still pass that type's value check.
_READ_AS = {"binary": ("binary", "numeric", "categorical")}


def check_declared_types(ex: Expectations | None, schema: Any, report: ExpectReport, *, where: str) -> None:
    """The declared `type` of each input column against the feature type the model reads it as
    (at training, once the columns are typed): a value check alone cannot tell a category or a
    text from a number (a float is a category the categorical type reads), so `age: {type:
    categorical}` on a numeric column is a violation of the column, under the type check's policy
    (drop_row reads as fail: no row can be left out to change a column's type).

    Raises:
        DataError: such a violation under policy fail.
    """
    if ex is None:
        return
    kinds = {c.name: c.kind for c in schema.columns}
    for rule in ex.rules:
        read_as = kinds.get(rule.column)
        if rule.origin != "declared" or rule.type is None or read_as is None or rule.type in _READ_AS.get(read_as, (read_as,)):
            continue
        policy = ex.policy_of("type", rule)
        report.violations.append(
            Violation(
                "type",
                rule.column,
                None,
                f"is read as {read_as}, not {rule.type} (declare it in data.features to read it as {rule.type}, or correct data.expect)",
                "fail" if policy == "drop_row" else policy,
                rule.origin,
            )
        )
    report.raise_if_failed(where)


def _deferred(ex: Expectations, rule: Rule) -> bool:
    """Whether an inferred rule leaves its type check to the model: unless `data.expect.policy`
    sets the type check's policy, the feature type refuses a value it cannot read (or an absent
    column) itself, naming row and column and how to write it (an ISO 8601 date, a number
    without stray text), as it did before expectations were inferred by default."""
    return rule.origin == "inferred" and ex.model_types


def _per_row(
    ex: Expectations,
    check: str,
    rule: Rule | None,
    column: str,
    bad: np.ndarray,
    col: pd.Series,
    place: Any,
    report: ExpectReport,
    what: str,
) -> None:
    """One violation per row flagged in `bad`, with its value; drop_row marks the rows to leave out."""
    hits = np.flatnonzero(bad)
    if not len(hits):
        return
    policy = ex.policy_of(check, rule)
    origin = rule.origin if rule is not None else "declared"
    values = col.to_numpy()[hits]  # one read, not one `iloc` per row
    for i, value in zip(hits.tolist(), values.tolist()):
        shown = "missing" if _is_missing(value) else f"{str(value)[:40]!r}"
        message = what if check == "missing" else f"{shown} {what}"
        whole = None if check == "missing" or _is_missing(value) else str(value)[:400]
        report.violations.append(Violation(check, column, place(i), message, policy, origin, whole))
    if policy == "drop_row":
        report.drop.update(hits.tolist())


def _is_missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _numbers(col: pd.Series, ok: np.ndarray) -> np.ndarray:
    """The column as float64, NaN where missing or not a number (values of the wrong type are the type check's)."""
    if col.dtype.kind in "iuf":
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    kept = col.where(ok, None) if not ok.all() else col
    flags = np.fromiter((isinstance(v, (bool, np.bool_)) for v in kept.to_numpy()), dtype=bool, count=len(kept))
    values = pd.to_numeric(kept.where(~flags, None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _isin(col: pd.Series, allowed: tuple[str, ...]) -> np.ndarray:
    """Whether each value is one of `allowed` as the rules compare text: numbers without a
    trailing `.0` (1, 1.0 and "1" agree). Values that match as they are skip the conversion."""
    if col.dtype.kind in "iuf":
        return pd.Series(label_strings(col)).isin(allowed).to_numpy()
    ok = col.isin(allowed).to_numpy().copy()
    rest = np.flatnonzero(~ok & col.notna().to_numpy())
    if len(rest):
        ok[rest] = np.isin(np.array(_canon_values(col.iloc[rest].tolist()), dtype=object), allowed)
    return ok


def _canon_values(values: Iterable[Any]) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or v is None:
            out.append(str(v))
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            out.append(str(v))
            continue
        out.append(str(int(x)) if math.isfinite(x) and x == round(x) and abs(x) < 2**53 else str(v))
    return out


def fit_expectations(spec_expect: Any, pre: Any, train_frame: pd.DataFrame | None) -> Expectations | None:
    """The task's expectations: the declared ones and, with `infer`, one rule per input column of
    a table from its fitted state (`FeatureType.observed`) and the training split's missing values.

    Args:
        spec_expect: the spec's `data.expect` (None: no expectations).
        pre: the fitted `Preprocessor`.
        train_frame: the training split's table (None: not a table; only declared rules).
    """
    if spec_expect is None:
        return None
    declared = Expectations.declared(spec_expect)
    if not spec_expect.infer or train_frame is None:
        return declared
    tol = spec_expect.tolerance
    inferred = []
    for name, (ftype, state) in pre.column_features().items():
        seen = ftype.observed(state)
        lo, hi = seen.get("min"), seen.get("max")
        if lo is not None and hi is not None:
            if name in train_frame.columns:  # a range that holds every training value, not just the typical ones
                lo, hi = _covering_range(train_frame[name], lo, hi)
            pad = tol * (hi - lo)
            lo, hi = lo - pad, hi + pad
        allowed = tuple(_canon_values(seen["allowed"])) if "allowed" in seen else None
        missing = float(train_frame[name].isna().mean()) if name in train_frame.columns else 0.0
        max_missing = 0.0 if missing == 0 else min(1.0, missing + tol)
        inferred.append(Rule(name, "inferred", ftype.name, lo, hi, allowed, None, max_missing))
    return declared.merged(Expectations(tuple(inferred)))


def _covering_range(col: pd.Series, low: float, high: float) -> tuple[float, float]:
    """Bounds that hold every training value of a numeric column, from aggregates of `K` rows
    only (as the feature state, the package keeps no single training value): the mean of the
    `K` lowest (highest) values less (plus) sqrt(K - 1) times their standard deviation. By
    Samuelson's inequality no value of a sample lies further than sqrt(n - 1) standard
    deviations from its mean, so the bounds hold the least and the greatest value; the means
    of the `K` extremes alone (the state's `low`, `high`) leave the tails of a skewed column
    outside, and `predict` on the training data itself would warn. `low`, `high`: the state's
    range, kept when the column holds no number."""
    flags = np.fromiter((isinstance(v, (bool, np.bool_)) for v in col.to_numpy()), dtype=bool, count=len(col))
    values = pd.to_numeric(col.where(~flags, None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    v = np.sort(values[np.isfinite(values)])
    if not len(v):
        return low, high
    k = min(_K, len(v))
    spread = math.sqrt(k - 1)
    bottom, top = v[:k], v[-k:]
    lo = float(bottom.mean() - spread * bottom.std())
    hi = float(top.mean() + spread * top.std())
    return min(lo, low), max(hi, high)


def expectations_of(manifest: Mapping[str, Any]) -> Expectations | None:
    """The expectations a package holds, as inputs to predict and serve are checked against
    them (None: the spec had no `data.expect`). The row-count bounds (`rows`) describe the
    training table, not a batch to score: a one-row request is not a violation of `rows: {min:
    500}`, so they are left out here."""
    d = manifest.get("expect")
    if not d:
        return None
    return replace(Expectations.from_json(d), rows=(None, None))


def check_raw(ex: Expectations | None, raw: RawData, *, where: str, required: Iterable[str] | None = None) -> tuple[RawData, ExpectReport]:
    """Check a table's raw data and apply the policies: raise for `fail`, leave out `drop_row`
    rows (their file rows kept in `raw.rows`), read wrong-typed values kept under `warn` as missing.

    Data that is not a table is checked for its row count only.

    Raises:
        DataError: a violation under policy fail, every one named (up to 20).
    """
    if ex is None:
        return raw, ExpectReport()
    if raw.frame is None:
        rules = replace(ex, rules=(), keys=())
        if ex.rules or ex.keys:
            names = [r.column for r in ex.rules if r.origin == "declared"]
            if names:
                raise DataError(f"{where}: data.expect.columns {names} apply to tables; this data is not one")
        report = rules.check(pd.DataFrame(index=range(len(raw))))
        report.raise_if_failed(where)
        return raw, report
    report = ex.check(raw.frame, rows=raw.rows, required=required)
    report.raise_if_failed(where)
    if not report.drop and not report.blank:
        return raw, report
    frame = report.apply(raw.frame)
    positions = raw.rows if raw.rows is not None else np.arange(len(raw.frame))
    keep = np.ones(len(raw.frame), dtype=bool)
    keep[sorted(report.drop)] = False
    if not keep.any():
        raise DataError(f"{where}: every row breaks a data expectation under drop_row; nothing is left")
    return replace(raw, frame=frame.reset_index(drop=True), rows=np.asarray(positions)[keep]), report


def validate_data(
    spec: Any,
    *,
    cache_dir: Any = None,
    key: bytes | None = None,
    probabilities: bool | None = None,
    stage_checks: Callable[[Any, Any, int, Any], None] | None = None,
) -> list[str]:
    """What `trustforge validate` finds by reading a spec's data, without training: every check
    `prepare` makes before training, by the same code (`data.check_data`, `data.fit_preprocessor`):
    the source exists and parses, the target exists ("did you mean" over all columns), personal
    data is dealt with as `data.protect` says (its `fail` refuses here too), the declared
    expectations hold, the columns can be typed, `data.duplicates` allows what is there, the split
    is feasible (enough rows per class), `data.augment` is read by the inputs (and mixup is not
    combined with `train.privacy`), and `data.clean.label_issues` suits the task. The encoders are
    fitted on the training split (what `data.augment` reads depends on them); nothing is encoded
    and no model is built or trained.

    Args:
        key: the workspace masking key (`data.protect.pii: hash`); without it a throwaway key
            hashes the columns (the same columns come out, so the checks after it are the same).
        probabilities: the task scores classes (`evaluate.task_of(spec).probabilities`), for the
            `data.clean.label_issues` check; None: classification.
        stage_checks: called with (the fitted preprocessor or None, the raw training rows or
            None, the number of training rows, the data's classes) once the encoders are fitted:
            the later stages' own refusals that depend on the data (robustness settings, the
            privacy accountant, `evaluate.positive_class` / `threshold` against the classes),
            which this layer may not import; the caller passes them in.

    Returns:
        Notes to print: violations under policy warn, rows drop_row would leave out (none when
        all is well: the command's output is the normalised spec).

    Raises:
        DataError, SpecError, SecurityError: the first problem, as `train` would refuse it.
    """
    import os

    from trustforge.data import (
        check_data,
        fit_preprocessor,
        label_issue_warnings,
        label_issues_refusal,
        needs_masking_key,
        redact_source,
        subset,
    )

    d = spec.data
    notes = []
    if key is None and needs_masking_key(d.protect.pii):
        key = os.urandom(32)
        notes.append("data.protect.pii hash: checked with a throwaway key; train hashes with the workspace masking key")
    where = redact_source(d.source)  # the file's name, not its path
    c = check_data(spec, cache_dir=cache_dir, key=key, where=where)
    if c.expect_report is not None and c.declared is not None:
        notes += c.expect_report.lines(where)
        if c.expect_report.drop:
            notes.append(f"{where}: {len(c.expect_report.drop)} row(s) would be left out under drop_row")
    if c.own is not None:  # a series or interactions: its own kind split it
        schema, has_rows = c.own.schema, c.own.train_raw is not None
        n_train = len(c.own.train)
    else:
        pre, train_raw, _ = fit_preprocessor(spec, c)
        schema, has_rows = c.schema, True
        n_train = len(c.split[0])
    if spec.train.privacy is not None:  # delta below 1/n, n the training rows, as train refuses it
        spec.train.privacy.check_delta(n_train)
    if stage_checks is not None and c.own is not None:
        stage_checks(None, None, n_train, schema.classes)
    elif stage_checks is not None:
        stage_checks(pre, train_raw, n_train, schema.classes)
    label_issues_refusal(
        spec,
        probabilities=spec.task == "classification" if probabilities is None else probabilities,
        classes=schema.classes,
        modality=schema.modality,
        has_rows=has_rows,
    )
    if d.clean.label_issues != "off" and c.split is not None:  # classes too small for the folds, as train will warn
        train_labels = c.kind.labels(subset(c.raw, c.split[0]))
        names, counts = np.unique(np.asarray(train_labels).astype(str), return_counts=True)
        notes += label_issue_warnings(dict(zip(names.tolist(), counts.tolist())), d.clean.folds)
    return notes
