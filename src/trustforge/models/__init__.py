"""Model architectures, one per file, and `build_model` that picks one from the spec.

Models are science: they take tensors and return logits, and know nothing of devices,
training, logging or packaging.
"""

from __future__ import annotations

from torch import nn

from trustforge.data import Schema
from trustforge.errors import ModelError
from trustforge.models.cnn import CNN
from trustforge.models.mlp import MLP
from trustforge.models.rnn import RNN
from trustforge.spec import TaskSpec

__all__ = ["MLP", "CNN", "RNN", "build_model", "output_size", "MODEL_KINDS"]

MODEL_KINDS = ("mlp", "cnn", "rnn")


def output_size(spec: TaskSpec, schema: Schema) -> int:
    """Number of model outputs: one logit for binary cross-entropy or regression, else one per class."""
    if spec.task == "regression":
        return 1
    n = len(schema.classes or [])
    if spec.train.loss == "bce":
        if n != 2:
            raise ModelError(f"train.loss 'bce' needs exactly 2 classes; the data has {n}")
        return 1
    return n


def build_model(spec: TaskSpec, schema: Schema) -> nn.Module:
    """The model named by `spec.model` for inputs described by `schema`.

    Raises:
        ModelError: the architecture does not fit the data (e.g. a CNN over a table).
    """
    m = spec.model
    n_out = output_size(spec, schema)
    if m.kind == "mlp":
        if schema.modality == "image":
            c, h, w = schema.image_shape
            n_num, cards = c * h * w, []
        else:
            n_num = len(schema.numeric)
            cards = [c.vocabulary for c in schema.columns if c.kind == "categorical"]
            if any(k < 1 for k in cards):
                raise ModelError("the schema's categorical columns have no fitted vocabulary; fit the preprocessor first")
        return MLP(n_num, cards, n_out, hidden=m.hidden, activation=m.activation, dropout=m.dropout,
                   batch_norm=m.batch_norm, embedding_dim=m.embedding_dim)
    if m.kind == "cnn":
        if schema.modality != "image":
            raise ModelError("model.kind 'cnn' needs image data (builtin:digits, builtin:shapes or images:DIR); use mlp for tables")
        return CNN(schema.image_shape, n_out, channels=m.channels, kernel_size=m.kernel_size, padding=m.padding,
                   convs_per_block=m.convs_per_block, pool=m.pool, pool_size=m.pool_size, global_pool=m.global_pool,
                   batch_norm=m.batch_norm, activation_name=m.activation, hidden=m.hidden, dropout=m.dropout)
    if m.kind == "rnn":
        if schema.modality != "image":
            raise ModelError("model.kind 'rnn' reads sequences; for now only images (row by row) are sequences, use mlp for tables")
        c, h, w = schema.image_shape
        return RNN(c * w, n_out, cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                   bidirectional=m.bidirectional, dropout=m.dropout, pooling=m.pooling)
    raise ModelError(f"model.kind: unknown kind {m.kind!r}; choose from {', '.join(MODEL_KINDS)}")
