"""The out-of-distribution guard of the server (`--ood flag|refuse|off`).

The detector (`trustforge.monitor.OodDetector`, saved in the package at training time) runs
where the network runs, in the same forward pass as the prediction: `predict_payload` adds two
reserved columns to a batch's prediction columns, which travel through the batch queue and are
sliced per request like the predictions. The HTTP layer takes them out again (`split_ood`) and
applies the policy:

- `flag`: the predictions are returned; the response says which rows look out of distribution
  and why (v2: `parameters.ood`; MLflow `/invocations`: an `ood` field; both: the header
  `Trustforge-Ood-Rows`), and `trustforge_ood_inputs_total{model, action="flagged"}` counts them;
- `refuse`: a request with any such row gets 422 naming the rows and their scores against the
  thresholds, and no prediction (`action="refused"`);
- `off`: the detector is not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = [
    "OOD_FLAG",
    "OOD_REASON",
    "OOD_POLICIES",
    "OodVerdict",
    "detector_for",
    "add_ood_columns",
    "split_ood",
    "OodRefused",
    "ood_headers",
]

OOD_POLICIES = ("flag", "refuse", "off")
# Reserved column names: never a model output (outputs are `prediction`, `proba_<class>`, ...).
OOD_FLAG = "__ood_flag"
OOD_REASON = "__ood_reason"


class OodRefused(Exception):
    """A request holds rows the detector flags, under `--ood refuse`."""

    def __init__(self, message: str, rows: list[int]):
        super().__init__(message)
        self.rows = rows


@dataclass(frozen=True)
class OodVerdict:
    """The detector's verdict on one request's rows."""

    flagged: list[bool]
    reasons: dict[int, str]

    @property
    def rows(self) -> list[int]:
        return [i for i, f in enumerate(self.flagged) if f]

    def body(self, policy: str) -> dict[str, Any]:
        """What a response says about it: the policy, each row's flag, and why flagged rows are."""
        return {"policy": policy, "flagged": self.flagged, "rows": self.rows, "reasons": {str(i): r for i, r in self.reasons.items()}}

    def refusal(self) -> OodRefused:
        rows = self.rows
        # Counted from 1, as every other message counts rows; `rows` and the body's keys stay 0-based positions.
        shown = "; ".join(f"row {i + 1}: {self.reasons.get(i, '')}" for i in rows[:5])
        more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
        return OodRefused(
            f"refused: {len(rows)} of {len(self.flagged)} rows look out of distribution for this model (--ood refuse): {shown}{more}",
            rows,
        )


def detector_for(model: Any, policy: str) -> Any:
    """The model's detector when the policy asks for one and its package has one, else None."""
    if policy == "off":
        return None
    from trustforge.monitor import OodDetector

    return OodDetector.for_model(model)


def add_ood_columns(detector: Any, model: Any, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`model.predict_columns(columns)` with the detector's verdict as two reserved columns."""
    out, result = detector.predict_columns(model, dict(columns))
    if result is None:
        return out
    out = dict(out)
    out[OOD_FLAG] = result.flagged.astype(np.int8)
    out[OOD_REASON] = np.array([r or "" for r in result.reasons], dtype=object)
    return out


def split_ood(columns: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], OodVerdict | None]:
    """The prediction columns without the reserved ones, and the verdict they held (None: no detector ran)."""
    if OOD_FLAG not in columns:
        return dict(columns), None
    rest = {k: v for k, v in columns.items() if k not in (OOD_FLAG, OOD_REASON)}
    flags = [bool(f) for f in np.asarray(columns[OOD_FLAG]).reshape(-1)]
    if not any(flags):  # the usual case: no reasons to read
        return rest, OodVerdict(flags, {})
    reasons = np.asarray(columns.get(OOD_REASON, np.array([""] * len(flags), dtype=object))).reshape(-1)
    return rest, OodVerdict(flags, {i: str(reasons[i]) for i, f in enumerate(flags) if f})


def ood_headers(ood: Mapping[str, Any] | None) -> dict[str, str]:
    """`Trustforge-Ood-Rows: N`, the rows of this request the detector flagged (absent when it did not run)."""
    return {"trustforge-ood-rows": str(len(ood["rows"]))} if ood is not None else {}
