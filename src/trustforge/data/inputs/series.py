"""A time series (task forecasting): windows of `lookback` values, each with its next `horizon`
values as the target (see `data._series`; `prepare_series` splits it by time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from trustforge.data import _series
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Steps
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Series"]


class Series(InputKind):
    name = "series"
    default_model = "rnn"
    state_type = _series.SeriesState

    def prepare(self, spec: Any, raw: RawData) -> Any:
        return _series.prepare_series(spec, raw)

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        # Reached only by another task: forecasting prepares a series its own way (`prepare`).
        raise DataError(
            f"{raw.origin} holds a time series, which only task forecasting reads (the spec's task is {task!r}): set "
            "`task: forecasting`, or give its values as a table file (csv:...) for another task"
        )

    def fit(self, pre: "Preprocessor", raw: RawData) -> _series.SeriesState:
        return _series.fit(pre, raw)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return _series.encode_inputs(pre, raw)

    def shape(self, schema: Schema) -> Steps:
        return Steps(int(schema.series.lookback), 1)  # one value per step

    def encode_target(self, pre: "Preprocessor", raw: RawData) -> torch.Tensor:
        return _series.encode_target(pre, raw)

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        # One series per request, at least `lookback` rows; the time column (if any) orders them.
        schema = pre.schema
        series = schema.series
        inputs = [{"name": schema.target, "datatype": "FP64", "shape": [-1], "min_rows": series.lookback}]
        if series.time:
            kind = "FP64" if series.time_kind == "numeric" else "BYTES"  # dates travel as ISO text
            inputs.append({"name": series.time, "datatype": kind, "shape": [-1], "optional": True})
        return inputs

    def read_input(self, schema: Schema, source: Any) -> RawData:
        return _series.read_series_input(schema, source)

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        return raw  # every complete window of the series is scored against its next values
