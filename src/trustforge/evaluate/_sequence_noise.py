"""Input noise for sequences and forecasts: how fast does the model degrade as its inputs get worse?

The table and image corruptions (`_shift`) do not fit a sequence model: a forecast's inputs
are the series itself, so corrupting "the inputs" must leave the values the forecast is
scored against alone. Both checks here add Gaussian noise at the table corruptions' levels
(severity 1, 2, 3: noise std 0.10, 0.25, 0.50 of the data's own std) and return rows shaped
like `corruption_table`'s, so reports show them the same way.

- `forecast_noise_table`: noise on the series the model reads; every window is still scored
  against the clean future values. The seasonal-naive baseline reads the same noisy series,
  and its MAE is reported beside the model's (`baseline_value`): a model that falls below
  the baseline only under noise is fragile.
- `sequence_noise_table`: noise on every feature of every step of numeric sequences.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from trustforge.data import RawData, window_forecasts, with_input_noise
from trustforge.data import sequences_with_noise as with_noise
from trustforge.evaluate._evaluate import compute_metrics
from trustforge.evaluate._shift import LOWER_IS_BETTER, SEVERITIES, _scalar

__all__ = ["NOISE_LEVELS", "forecast_noise_table", "sequence_noise_table"]

NOISE_LEVELS = (0.10, 0.25, 0.50)


def forecast_noise_table(
    outputs_of: Callable[[RawData], torch.Tensor], preprocessor: Any, raw: RawData, *, severities: tuple[int, ...] = SEVERITIES, seed: int
) -> dict[str, Any]:
    """MAE of the forecasts of `raw`'s windows when the series the model reads carries noise.

    Args:
        outputs_of: series → raw model outputs for its windows (e.g. a loaded `Model.outputs`).
        preprocessor: the model's fitted preprocessor (windows and decoding).
        raw: the clean series (usually the test part).
        severities: which of 1..3 to run.
        seed: seeds the noise; each severity draws the same numbers, scaled.

    Returns:
        `{"metric": "mae", "lower_is_better": True, "clean", "baseline_clean", "rows": [...]}`
        with rows `{"corruption": "input_noise", "severity", "parameter", "level", "value",
        "drop", "baseline_value"}`; `drop` = value - clean (positive is worse).
    """
    y, pred, base = window_forecasts(preprocessor, raw, outputs_of(raw))
    clean = compute_metrics("forecasting", y, y_pred=pred, baseline=base)
    positive = preprocessor.schema.series is not None and preprocessor.schema.series.transform == "log"
    rows = []
    for severity in severities:
        level = NOISE_LEVELS[severity - 1]
        noisy = with_input_noise(raw, level, np.random.default_rng(seed), positive=positive)
        _, pred_n, base_n = window_forecasts(preprocessor, noisy, outputs_of(noisy))
        m = compute_metrics("forecasting", y, y_pred=pred_n, baseline=base_n)  # scored against the clean values
        rows.append(
            {
                "corruption": "input_noise",
                "severity": int(severity),
                "parameter": "noise std / series std (inputs only; scored on clean values)",
                "level": level,
                "value": m["mae"],
                "drop": m["mae"] - clean["mae"],
                "baseline_value": m.get("baseline_seasonal_naive_mae"),
            }
        )
    return {
        "metric": "mae",
        "lower_is_better": True,
        "clean": clean["mae"],
        "baseline_clean": clean.get("baseline_seasonal_naive_mae"),
        "rows": rows,
    }


def sequence_noise_table(
    metrics_of: Callable[[RawData], dict[str, Any]], raw: RawData, *, metric: str, severities: tuple[int, ...] = SEVERITIES, seed: int
) -> dict[str, Any]:
    """The metric on labelled sequences whose features carry noise, at each severity.

    Returns:
        The shape of `corruption_table`'s result: `{"metric", "lower_is_better", "clean",
        "rows": [{"corruption": "noise", "severity", "parameter", "level", "value", "drop"}]}`.
    """
    clean = _scalar(metrics_of(raw).get(metric))
    lower = metric in LOWER_IS_BETTER
    rows = []
    for severity in severities:
        level = NOISE_LEVELS[severity - 1]
        value = _scalar(metrics_of(with_noise(raw, level, np.random.default_rng(seed))).get(metric))
        drop = None if value is None or clean is None else (value - clean if lower else clean - value)
        rows.append(
            {
                "corruption": "noise",
                "severity": int(severity),
                "parameter": "noise std / feature std",
                "level": level,
                "value": value,
                "drop": drop,
            }
        )
    return {"metric": metric, "lower_is_better": lower, "clean": clean, "rows": rows}
