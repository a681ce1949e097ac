"""Tables: rows of columns, each through its own feature type (see `data.features`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from trustforge.data._files import read_table
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema, infer_table_schema
from trustforge.data.features import label_strings
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Columns
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Table"]


class Table(InputKind):
    name = "table"
    default_model = "mlp"

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        return infer_table_schema(raw, task=task, features=data.features, drop=data.drop, max_categories=data.max_categories, text=None)

    def subset(self, raw: RawData, idx: np.ndarray) -> RawData:
        return RawData(
            raw.modality, raw.target, raw.origin, frame=raw.frame.iloc[idx].reset_index(drop=True), classes=raw.classes, text=raw.text
        )

    def labels(self, raw: RawData) -> np.ndarray:
        return label_strings(raw.frame[raw.target])

    def shape(self, schema: Schema) -> Columns:
        return Columns(
            schema.float_width, tuple(c.vocabulary for c in schema.slot("index")), tuple(c.vocabulary for c in schema.slot("tokens"))
        )

    def fit(self, pre: "Preprocessor", raw: RawData) -> None:
        pre.fit_columns(raw.frame, where=raw.origin)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return pre.encode_frame(raw.frame, where=raw.origin)

    def target_values(self, pre: "Preprocessor", raw: RawData) -> pd.Series:
        return raw.frame[pre.schema.target]

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        return pre.input_signature()

    def read_input(self, schema: Schema, source: Any) -> RawData:
        if isinstance(source, pd.DataFrame):
            return RawData("table", schema.target, "input", frame=source)
        if isinstance(source, np.ndarray):
            raise DataError("this model takes a table, not an array")
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{path}: this model takes a CSV or Parquet table, not a folder")
        return RawData("table", schema.target, str(path), frame=read_table(path))

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        if schema.target not in raw.frame.columns:
            raise DataError(f"{raw.origin}: no target column {schema.target!r} to evaluate against")
        return self.subset(raw, np.flatnonzero(raw.frame[schema.target].notna().to_numpy()))
