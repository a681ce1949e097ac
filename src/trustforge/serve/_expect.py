"""The package's data expectations in the server (`data.expect`, saved in the package).

Every request's columns are checked before they reach the model, by the rules the package
holds (declared in the spec and inferred from training), each with its policy:

- `fail` and `drop_row`: the request gets 400 naming each row (numbered from 0, as the
  out-of-distribution guard numbers them) and column, and no prediction; a served response
  cannot lose rows, so `drop_row` refuses like `fail`;
- `warn`: the predictions are returned and flagged: the header `Trustforge-Expect-Violations`
  (their number) and `Trustforge-Expect-Columns` (`column=count,...`).

`trustforge_expect_violations_total{model, column, action}` counts both (action `refused` or
`flagged`). A package without expectations is served as before.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter

from trustforge.data import Expectations, ExpectReport, expectations_of
from trustforge.serve._signature import RequestError

__all__ = ["ExpectGuard", "expect_counter", "check_request"]

_SHOWN = 10  # violations a refusal names


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

    def __init__(self, expectations: Expectations, required: list[str]):
        self.expectations = expectations
        self.required = required

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
        guard = cls(ex, inputs) if ex is not None else None
        _GUARDS[model] = guard
        return guard

    def check(self, payload: Any) -> ExpectReport | None:
        """The report on a request's columns (None: the payload is one tensor, not columns)."""
        if not isinstance(payload, Mapping):
            return None
        columns = {k: v for k, v in payload.items() if np.ndim(v) == 1}
        if not columns:
            return None
        frame = pd.DataFrame(columns, copy=False)
        return self.expectations.check(frame, required=self.required, first_row=0)


_GUARDS: "weakref.WeakKeyDictionary[Any, ExpectGuard | None]" = weakref.WeakKeyDictionary()


def check_request(counter: Counter, model: Any, name: str, payload: Any) -> dict[str, str]:
    """Check a request against the model's expectations and apply their policies.

    Returns:
        The headers that flag violations under warn (empty when there are none).

    Raises:
        RequestError: (400) a violation under fail or drop_row, naming each row and column.
    """
    guard = ExpectGuard.for_model(model)
    report = guard.check(payload) if guard is not None else None
    if report is None or not report.violations:
        return {}
    refused = [v for v in report.violations if v.policy in ("fail", "drop_row")]
    counts = report.counts()
    action = "refused" if refused else "flagged"
    for column, n in counts.items():
        counter.labels(name, column, action).inc(n)
    if refused:
        shown = "; ".join(v.line("request").removeprefix("request: ") for v in refused[:_SHOWN])
        more = f" (and {len(refused) - _SHOWN} more)" if len(refused) > _SHOWN else ""
        raise RequestError(f"refused: {len(refused)} value(s) break the model's data expectations: {shown}{more}")
    return {
        "trustforge-expect-violations": str(len(report.violations)),
        "trustforge-expect-columns": ",".join(f"{c}={n}" for c, n in counts.items())[:1000],
    }
