"""The package's data expectations in the server (`data.expect`, saved in the package).

Every request's columns are checked before they reach the model, by the rules the package
holds (declared in the spec and inferred from training), each with its policy:

- `fail` and `drop_row`: the request gets 400 naming each row (counted from 1, as every
  error message counts rows) and column, and no prediction; a served response cannot lose
  rows, so `drop_row` refuses like `fail`;
- `warn`: the predictions are returned and flagged: the header `Trustforge-Expect-Violations`
  (their number) and `Trustforge-Expect-Columns` (`column=count,...`, each column name
  percent-encoded as UTF-8 outside printable ASCII, as `header_name` writes it).

`trustforge_expect_violations_total{model, column, action}` counts both (action `refused` or
`flagged`), once the request's outcome is known (`ExpectFlags.count`): a flagged request that
is refused later (the model's 400, the out-of-distribution guard's 422) counts as refused, and
one that fails (503, 504, 500) not at all. A package without expectations is served as before.

A request that plainly breaks no rule skips the table: when every rule is a range and a
missing-value bound (what `data.expect` infers for numeric columns; no type check of its own,
no allowed values, pattern, uniqueness or key) and every column they name is a 1-D numeric
array, one array comparison finds whether any value is out of range or missing. Only then
is the request checked the full way (a DataFrame and `Expectations.check`), which finds
and words the violations; a request without any answers at once (the DataFrame cost about
0.7 ms of the server's 1 ms per one-row request).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import quote as percent_encode

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter

from trustforge.data import Expectations, ExpectReport, expectations_of
from trustforge.serve._signature import ColumnBlock, RequestError, Signature, TensorSpec, quote

__all__ = ["ExpectFlags", "ExpectGuard", "expect_counter", "check_request", "header_name"]

_SHOWN = 10  # violations a refusal names
_HEADER_MAX = 1000  # characters of `Trustforge-Expect-Columns`, whole entries only
# Printable ASCII but the list's separators (`,` `=`) and `%` itself: kept as written in a header.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%,=")


def expect_counter(registry: CollectorRegistry) -> Counter:
    """`trustforge_expect_violations_total{model, column, action}` on the server's registry."""
    return Counter(
        "trustforge_expect_violations",
        "Served values that break the package's data expectations, by column and what was done (flagged: predicted and said; refused: 400)",
        ["model", "column", "action"],
        registry=registry,
    )


class ExpectGuard:
    """A package's expectations, ready to check request columns."""

    def __init__(self, expectations: Expectations, required: list[str], specs: Mapping[str, TensorSpec] | None = None):
        self.expectations = expectations
        self.required = required
        self.specs = dict(specs or {})  # the served columns, by name: how a value read as missing is written
        self._quick = _quick_bounds(expectations)  # (names, low, high) when the numeric shortcut applies

    @classmethod
    def for_model(cls, model: Any) -> "ExpectGuard | None":
        """The model's guard (built once per loaded model), or None when its package has no expectations."""
        try:
            return _GUARDS[model]
        except KeyError:
            pass
        ex = expectations_of(model.manifest)
        entries = (model.manifest.get("signature") or {}).get("inputs") or []
        inputs = [str(s.get("name")) for s in entries if isinstance(s, dict) and not s.get("optional")]  # optional ones may be absent
        guard = None
        if ex is not None:
            signature = Signature.from_manifest(model.manifest) if entries else None
            guard = cls(ex, inputs, {s.name: s for s in signature.inputs} if signature is not None else None)
        _GUARDS[model] = guard
        return guard

    def check(self, payload: Any) -> ExpectReport | None:
        """The report on a request's columns (None: the payload is one tensor, not columns)."""
        if type(payload) is not dict and not isinstance(payload, Mapping):
            return None
        if self._quick is not None and _plainly_fine(self._quick, payload):
            return None
        columns = {k: v for k, v in payload.items() if np.ndim(v) == 1}
        if not columns:
            return None
        frame = pd.DataFrame(columns, copy=False)
        return self.expectations.check(frame, required=self.required, first_row=1)


def _quick_bounds(ex: Expectations) -> tuple[tuple[str, ...], np.ndarray, np.ndarray] | None:
    """Every rule's column and range as arrays ([k, 1]; +-inf for an open end), when every rule
    is a range and a missing-value bound only (else None: each request takes the full check)."""
    if ex.keys or ex.rows != (None, None) or not ex.rules:
        return None
    for rule in ex.rules:
        typed = rule.type is not None and not (rule.origin == "inferred" and ex.model_types)  # as data._expect._deferred
        if typed or rule.allowed is not None or rule.pattern is not None or rule.unique:
            return None
    names = tuple(r.column for r in ex.rules)
    low = np.array([[-np.inf if r.min is None else float(r.min)] for r in ex.rules], dtype=np.float64)
    high = np.array([[np.inf if r.max is None else float(r.max)] for r in ex.rules], dtype=np.float64)
    return names, low, high


def _plainly_fine(quick: tuple[tuple[str, ...], np.ndarray, np.ndarray], payload: Mapping) -> bool:
    """True when `payload` breaks none of the rules of `quick` for sure: every named column is a
    1-D numeric array of the request's length, none missing (NaN) and every value in range.
    False means "check the full way" (a violation, or something the shortcut does not read)."""
    names, low, high = quick
    block = payload.block if type(payload) is ColumnBlock else None
    if block is not None and block.dtype.kind in "iuf":  # the columns are the rows of one array, all of one length
        rows = _block_rows(payload.names, names)
        if rows is None:
            return False
        part = block[rows]
        with np.errstate(invalid="ignore"):  # compared as float64, like the concatenation below; NaN is never inside
            return bool((part >= low).all() and (part <= high).all())
    n = -1
    for value in payload.values():  # the full check builds a table of every 1-D column: same lengths
        if isinstance(value, np.ndarray) and value.ndim == 1:
            if n < 0:
                n = len(value)
            elif len(value) != n:
                return False
    cols = []
    for name in names:
        value = payload.get(name)
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iuf":
            return False
        cols.append(value)
    block = np.concatenate(cols, dtype=np.float64).reshape(len(cols), -1) if n else np.empty((len(cols), 0))
    with np.errstate(invalid="ignore"):
        inside = (block >= low) & (block <= high)  # False for NaN: missing values take the full check
    return bool(inside.all())


@functools.lru_cache(maxsize=64)
def _block_rows(columns: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray | None:
    """The row of a block with `columns` that holds each rule's column (`names`), else None."""
    at = {c: i for i, c in enumerate(columns)}
    return np.array([at[n] for n in names], dtype=np.intp) if all(n in at for n in names) else None


_GUARDS: "weakref.WeakKeyDictionary[Any, ExpectGuard | None]" = weakref.WeakKeyDictionary()


def _refusal_line(v: Any) -> str:
    """A violation as a 400 names it, its value quoted whole (`quote`): the app masks it for a
    model trained with data.protect before it is cut to 40 characters."""
    line = v.line("request").removeprefix("request: ")
    if v.value is not None:
        line = line.replace(repr(v.value[:40]), quote(v.value), 1)
    return line


def header_name(column: str) -> str:
    """A column name as a response header writes it: UTF-8, percent-encoded outside printable
    ASCII and for `%`, `,` and `=` (`urllib.parse.unquote` reads it back), so any name is a
    valid header value (`城市` is `%E5%9F%8E%E5%B8%82`, `mean radius` stays as it is); a space
    at either end is encoded too, as HTTP drops it there."""
    text = percent_encode(column, safe=_HEADER_SAFE)
    return text if text == text.strip(" ") else percent_encode(column, safe=_HEADER_SAFE.replace(" ", ""))


@dataclass(frozen=True)
class ExpectFlags:
    """A request's violations under `warn`: the headers that flag them, and their count for
    `/metrics`, taken once the request's outcome is known."""

    counts: dict[str, int] = field(default_factory=dict)  # violations per column

    def headers(self) -> dict[str, str]:
        """`Trustforge-Expect-Violations` and `Trustforge-Expect-Columns` (none without violations)."""
        if not self.counts:
            return {}
        entries: list[str] = []
        size = 0
        for column, n in self.counts.items():
            entry = f"{header_name(column)}={n}"
            size += len(entry) + 1
            if size > _HEADER_MAX + 1:
                break
            entries.append(entry)
        return {"trustforge-expect-violations": str(sum(self.counts.values())), "trustforge-expect-columns": ",".join(entries)}

    def count(self, counter: Counter, model: str, action: str) -> None:
        """Add the violations to `trustforge_expect_violations_total` as `action` (flagged: the
        request was answered; refused: it was refused after all)."""
        for column, n in self.counts.items():
            counter.labels(model, column, action).inc(n)


_NO_FLAGS = ExpectFlags()


def check_request(counter: Counter, model: Any, name: str, payload: Any, imputed: dict[str, int] | None = None) -> ExpectFlags:
    """Check a request against the model's expectations and apply their policies.

    A value of the wrong type that the request kept (a column whose type check has policy
    warn: `TensorSpec.lenient`) is flagged, then read as missing in `payload` (NaN, filled in
    by the model) and counted in `imputed`, as `predict` reads it.

    Returns:
        The violations under warn (none when there are none), to flag in the response and
        count when it is known how the request ended.

    Raises:
        RequestError: (400) a violation under fail or drop_row, naming each row and column
            (every violation of the request counted as refused).
    """
    guard = ExpectGuard.for_model(model)
    report = guard.check(payload) if guard is not None else None
    if report is None or not report.violations:
        return _NO_FLAGS
    flags = ExpectFlags(report.counts())
    refused = [v for v in report.violations if v.policy in ("fail", "drop_row")]
    if refused:
        flags.count(counter, name, "refused")
        shown = "; ".join(_refusal_line(v) for v in refused[:_SHOWN])
        more = f" (and {len(refused) - _SHOWN} more)" if len(refused) > _SHOWN else ""
        raise RequestError(f"refused: {len(refused)} value(s) break the model's data expectations: {shown}{more}")
    for column, rows in report.blank.items():
        spec = guard.specs.get(column)
        payload[column] = _read_as_missing(payload[column], rows, spec, column)
        if imputed is not None and spec is not None and spec.imputes:
            imputed[column] = imputed.get(column, 0) + len(rows)
    return flags


def _read_as_missing(values: np.ndarray, rows: set[int], spec: TensorSpec | None, column: str) -> np.ndarray:
    """A column whose values of the wrong type (at `rows`) are read as missing, for the model to
    fill in: NaN in a number column (which kept the text: `TensorSpec.lenient`), None in a text one.

    Raises:
        RequestError: the column takes no missing value (its policy is `error`).
    """
    if spec is not None and not spec.imputes:
        i = min(rows)
        raise RequestError(
            f"column {column!r}: {quote(values[i])} at row {i + 1} is read as missing (data.expect type policy warn), "
            "but the model takes no missing value in this column"
        )
    if spec is None or spec.datatype == "BYTES":
        out = np.array(values, dtype=object)
        out[sorted(rows)] = None
        return out
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if i in rows or v is None:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):  # text the type check passed but float() does not read
            raise RequestError(f"column {column!r} must hold numbers; got {quote(v)} at row {i + 1}") from None
    return out
