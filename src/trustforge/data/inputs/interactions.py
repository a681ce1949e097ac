"""Interactions (task recommendation): (user, item) id pairs, each an index into a vocabulary
(see `data._interactions`; `prepare_interactions` holds out each user's latest ones)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from trustforge.data import _interactions
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Ids

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Interactions"]


class Interactions(InputKind):
    name = "interactions"
    default_model = "mf"
    state_type = _interactions.InteractionsState

    def load(self, spec: Any, *, cache_dir: Any = None) -> RawData:
        return _interactions.load_interactions(spec)  # its columns named by data.interactions

    def prepare(self, spec: Any, raw: RawData) -> Any:
        return _interactions.prepare_interactions(spec, raw)

    def fit(self, pre: "Preprocessor", raw: RawData) -> _interactions.InteractionsState:
        return _interactions.fit(pre, raw)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return _interactions.encode_inputs(pre, raw)

    def shape(self, schema: Schema) -> Ids:
        users, items = (c.vocabulary for c in schema.columns)
        return Ids(users, items)

    def encode_target(self, pre: "Preprocessor", raw: RawData) -> torch.Tensor:
        return _interactions.encode_target(pre, raw)

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        # Ids as text; `role` says which is the user and which the item.
        return [{"name": c.name, "role": role, "datatype": "BYTES", "shape": [-1]} for c, role in zip(pre.schema.columns, ("user", "item"))]

    def read_input(self, schema: Schema, source: Any) -> RawData:
        return _interactions.read_input(source, schema)

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        return raw  # ratings, or held-out items ranked among unmet ones (see evaluate._recommend)
