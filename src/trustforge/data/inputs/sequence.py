"""Numeric sequences: float32 (N, T, F) from an .npz file, standardised per feature (see `data._sequences`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trustforge.data import _sequences
from trustforge.data._duplicates import RowKeys, array_keys
from trustforge.data._profile import sequence_profile
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Steps
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Sequence"]


class Sequence(InputKind):
    name = "sequence"
    default_model = "rnn"
    state_type = _sequences.SequenceState

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        return _sequences.infer_sequence_schema(raw, task=task)

    def subset(self, raw: RawData, idx: np.ndarray) -> RawData:
        labels = raw.labels[idx] if raw.labels is not None else None
        return RawData("sequence", raw.target, raw.origin, sequences=raw.sequences[idx], labels=labels, classes=raw.classes)

    def row_keys(self, raw: RawData, schema: Schema) -> RowKeys:
        return replace(array_keys(raw.sequences), labels=raw.labels)

    def profile(self, raw: RawData, schema: Schema) -> dict[str, Any]:
        return sequence_profile(raw.sequences)

    def fit(self, pre: "Preprocessor", raw: RawData) -> _sequences.SequenceState:
        return _sequences.fit(pre, raw)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return _sequences.encode(pre, raw)

    def shape(self, schema: Schema) -> Steps:
        t, f = schema.sequence_shape
        return Steps(int(t), int(f))

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        return [{"name": "sequence", "datatype": "FP32", "shape": [-1, *pre.schema.sequence_shape]}]

    def read_input(self, schema: Schema, source: Any) -> RawData:
        return _sequences.read_sequence_input(schema, source)

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        if raw.labels is None:
            raise DataError(f"{raw.origin}: evaluation needs targets (array {schema.target!r} in the .npz file)")
        return raw
