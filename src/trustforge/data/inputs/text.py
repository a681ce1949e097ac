"""Text: one column of a table, tokenised as `data.text` says, read by a text model (see `data._text`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from trustforge.data import _text
from trustforge.data._attack_space import EditSpace
from trustforge.data._augment import TEXT_FIELDS, Augmentation, token_augment
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema, infer_table_schema
from trustforge.data.inputs._shapes import Tokens
from trustforge.data.inputs.table import Table

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Text"]


class Text(Table):
    name = "text"
    default_model = "mlp"  # a bag of token embeddings (fastText); TabM is the tables' default
    state_type = _text.TextInputState

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        schema, cleaned = infer_table_schema(
            raw, task=task, features=None, drop=data.drop, max_categories=data.max_categories, text=data.text
        )
        # Every text, before the split: an empty one is refused at validate too, with its row in the file.
        _text.check_texts(cleaned.frame[raw.text], column=raw.text, where=raw.origin, rows=cleaned.rows)
        return schema, cleaned

    def fit(self, pre: "Preprocessor", raw: RawData) -> _text.TextInputState:  # type: ignore[override]
        return _text.fit(pre, raw)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return _text.encode(pre, raw)

    def encode_columns(self, pre: "Preprocessor", columns: Any, *, where: str) -> None:
        """None: a request's text column is read as `predict` reads it (`read_input`, then
        tokenised by `encode`); a table's column-by-column path knows no text input's state."""
        return None

    def augment(self, pre: "Preprocessor", data: Any, *, seed: int) -> Augmentation:
        # Per batch on the token ids: deletions, swaps, embedding-neighbour replacements.
        t = pre.schema.text
        op = token_augment(data.augment, pre.input_state.vocabulary, wordpiece=t.tokenizer == "wordpiece")
        return Augmentation(batch=op, used={t.column: op.used} if op else {}, reads=TEXT_FIELDS)

    def shape(self, schema: Schema) -> Tokens:
        return Tokens(schema.columns[0].vocabulary)

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        # One UTF-8 text per row, tokenised inside.
        t = pre.schema.text
        return [
            {"name": t.column, "kind": "text", "datatype": "BYTES", "shape": [-1], "tokenizer": t.tokenizer, "max_length": t.max_length}
        ]

    def attack_spaces(self, pre: "Preprocessor") -> None:
        return None  # token ids: no gradient path (the table's method would look for column states a text has not)

    def edit_space(self, pre: "Preprocessor") -> EditSpace:
        return EditSpace((pre.schema.text.column,))  # the one text, attacked in its characters

    def read_input(self, schema: Schema, source: Any) -> RawData:
        return _text.read_text_input(schema, source)
