"""Model architectures, one per file, and `build_model` that picks one from the spec.

Models are science: they take tensors and return logits, and know nothing of devices,
training, logging or packaging.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from trustforge.data import Columns, Grid, Ids, Schema, Spectrogram, Steps, Tokens, input_kind
from trustforge.errors import ModelError
from trustforge.models._attacks import fgsm, pgd
from trustforge.models._private import private_compatible
from trustforge.models.audio import AudioCNN
from trustforge.models.bag import BagOfEmbeddings
from trustforge.models.cnn import CNN
from trustforge.models.conv_encoder import ConvEncoder
from trustforge.models.ensemble import Ensemble
from trustforge.models.ft_transformer import FTTransformer
from trustforge.models.linear import LinearTable
from trustforge.models.mlp import MLP
from trustforge.models.recommender import MatrixFactorization
from trustforge.models.rnn import RNN
from trustforge.models.tabm import TabM
from trustforge.models.text_pretrained import PretrainedTextClassifier
from trustforge.models.transformer import TransformerEncoder
from trustforge.models.trees import TreeEnsemble
from trustforge.models.two_tower import TwoTower
from trustforge.spec import TaskSpec, member_spec

__all__ = [
    "MLP",
    "CNN",
    "RNN",
    "AudioCNN",
    "MatrixFactorization",
    "TwoTower",
    "TransformerEncoder",
    "PretrainedTextClassifier",
    "BagOfEmbeddings",
    "ConvEncoder",
    "TabM",
    "FTTransformer",
    "Ensemble",
    "build_model",
    "fgsm",
    "pgd",
    "private_compatible",
    "output_size",
    "MODEL_KINDS",
    "LinearTable",
    "TreeEnsemble",
]


def output_size(spec: TaskSpec, schema: Schema) -> int:
    """Number of model outputs: one per class (one logit for binary cross-entropy), one per
    future step of a forecast, else one (a value, a rating or a ranking score)."""
    if schema.classes:
        n = len(schema.classes)
        if spec.train.loss == "bce":
            if n != 2:
                raise ModelError(f"train.loss 'bce' needs exactly 2 classes; the data has {n}")
            return 1
        return n
    if schema.series is not None:
        return int(schema.series.horizon)
    return 1


# What each shape of input is called in messages.
_WHAT = {Columns: "table", Grid: "image", Steps: "sequence", Tokens: "text", Spectrogram: "audio", Ids: "interactions"}


def build_model(spec: TaskSpec, schema: Schema) -> nn.Module:
    """The model named by `spec.model` for the input shape the schema's kind of input hands it.

    A spec with `train.privacy` gets the network DP-SGD can train: batch norm replaced by group
    norm (see `private_compatible`), so a package rebuilds the same layers its weights came from.

    Raises:
        ModelError: the architecture does not read that input (e.g. a CNN over a table), or
            `train.privacy` is set and a layer cannot be trained privately.
    """
    m = spec.model
    shape = input_kind(schema).shape(schema)
    n_out = output_size(spec, schema)
    if isinstance(shape, Ids) != (m.kind in ("mf", "two_tower")):
        raise ModelError(
            f"model.kind {m.kind!r} does not fit {_WHAT[type(shape)]} data; interactions (task "
            "recommendation) take model.kind mf or two_tower, and mf or two_tower take nothing else"
        )
    output = "value" if not schema.classes else "logit" if n_out == 1 else "classes"  # what the loss reads
    if m.kind == "tabm":  # the members' mean is taken as the loss reads it: classes, one logit or a value
        model = _tabm(m, shape, n_out, output)
    elif m.kind == "ensemble":  # each member built as its own run would build it, from its own seed
        members = []
        for i in range(len(m.members)):
            own = member_spec(spec, i)
            with torch.random.fork_rng():
                torch.manual_seed(own.train.seed)
                members.append(build_model(own, schema))
        model = Ensemble(members, m.normalised_weights(), output)
    else:
        model = _BUILDERS[m.kind](m, shape, n_out)
    if spec.train.privacy is not None:  # DP-SGD: batch norm → group norm, other layers checked (see models._private)
        model = private_compatible(model)
    return model


def _mlp(m: Any, shape: Any, n_out: int) -> nn.Module:
    if isinstance(shape, Tokens):  # a bag of token embeddings under the MLP (fastText)
        return BagOfEmbeddings(
            n_out,
            vocab_size=_vocab(shape.vocabulary),
            embedding_dim=m.embedding_dim or 64,
            hidden=m.hidden,
            activation=m.activation,
            dropout=m.dropout,
            word_dropout=m.word_dropout,
        )
    if isinstance(shape, Columns):  # each column through its feature type's encoder, concatenated (see MLP)
        if any(k < 1 for k in shape.cardinalities + shape.vocabularies):
            raise ModelError("the schema's categorical or text columns have no fitted vocabulary; fit the preprocessor first")
        return MLP(
            shape.floats,
            list(shape.cardinalities),
            n_out,
            hidden=m.hidden,
            activation=m.activation,
            dropout=m.dropout,
            batch_norm=m.batch_norm,
            embedding_dim=m.embedding_dim,
            vocab_sizes=list(shape.vocabularies),
            grids=list(shape.grids),
            order=list(shape.own),
        )
    if isinstance(shape, Grid):
        n_num = shape.shape[0] * shape.shape[1] * shape.shape[2]  # the image is flattened
    elif isinstance(shape, Steps):
        n_num = shape.steps * shape.features  # the sequence is flattened: (B, T, F) → (B, T·F)
    else:
        raise ModelError(f"model.kind 'mlp' does not read {_WHAT[type(shape)]} data; use audio_cnn for audio")
    return MLP(
        n_num,
        [],
        n_out,
        hidden=m.hidden,
        activation=m.activation,
        dropout=m.dropout,
        batch_norm=m.batch_norm,
        embedding_dim=m.embedding_dim,
    )


def _cnn(m: Any, shape: Any, n_out: int) -> nn.Module:
    if not isinstance(shape, Grid):
        raise ModelError("model.kind 'cnn' needs image data (builtin:digits, builtin:shapes or images:DIR); use mlp for tables")
    return CNN(
        shape.shape,
        n_out,
        channels=m.channels,
        kernel_size=m.kernel_size,
        padding=m.padding,
        convs_per_block=m.convs_per_block,
        pool=m.pool,
        pool_size=m.pool_size,
        global_pool=m.global_pool,
        batch_norm=m.batch_norm,
        activation_name=m.activation,
        hidden=m.hidden,
        dropout=m.dropout,
    )


def _rnn(m: Any, shape: Any, n_out: int) -> nn.Module:
    vocab = None
    if isinstance(shape, Tokens):  # token ids, embedded to `embedding_dim` per step
        features, vocab = m.embedding_dim, _vocab(shape.vocabulary)
    elif isinstance(shape, Steps):
        features = shape.features
    elif isinstance(shape, Grid):  # images read row by row: each row's C·W values are one step
        features = shape.shape[0] * shape.shape[2]
    else:
        raise ModelError(
            "model.kind 'rnn' reads sequences (npz:PATH sequences, a forecasting series, or images row by row); use mlp for tables"
        )
    return RNN(
        features,
        n_out,
        cell=m.cell,
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        bidirectional=m.bidirectional,
        dropout=m.dropout,
        pooling=m.pooling,
        vocab_size=vocab,
    )


def _transformer(m: Any, shape: Any, n_out: int) -> nn.Module:
    if isinstance(shape, Tokens):
        return TransformerEncoder(
            n_out,
            vocab_size=_vocab(shape.vocabulary),
            d_model=m.d_model,
            nhead=m.nhead,
            num_layers=m.num_layers,
            dim_feedforward=m.dim_feedforward,
            dropout=m.dropout,
            pooling=m.pooling,
            positions=m.positions,
            word_dropout=m.word_dropout,
        )
    if isinstance(shape, Steps):  # float steps (B, T, F), projected to d_model
        return TransformerEncoder(
            n_out,
            n_features=shape.features,
            d_model=m.d_model,
            nhead=m.nhead,
            num_layers=m.num_layers,
            dim_feedforward=m.dim_feedforward,
            dropout=m.dropout,
            pooling=m.pooling,
            positions=m.positions,
        )
    raise ModelError(f"model.kind 'transformer' reads text or sequences; this is {_WHAT[type(shape)]} data")


def _text_pretrained(m: Any, shape: Any, n_out: int) -> nn.Module:
    if not isinstance(shape, Tokens):
        raise ModelError("model.kind 'text_pretrained' needs text data (data.text, or builtin:reviews)")
    return PretrainedTextClassifier(n_out, freeze=m.freeze, hidden=m.hidden, dropout=m.dropout)


def _audio_cnn(m: Any, shape: Any, n_out: int) -> nn.Module:
    if not isinstance(shape, Spectrogram):
        raise ModelError("model.kind 'audio_cnn' needs audio data (audio:DIR or builtin:spoken_digits)")
    return AudioCNN(shape.shape, n_out, channels=m.channels, activation_name=m.activation, dropout=m.dropout)


def _recommender(m: Any, shape: Ids, n_out: int) -> nn.Module:
    if shape.users < 2 or shape.items < 2:
        raise ModelError("the schema's user and item columns have no fitted vocabulary; fit the preprocessor first")
    if m.kind == "mf":
        return MatrixFactorization(shape.users, shape.items, m.factors, l2=m.l2, bias_l2=m.bias_l2, init_std=m.init_std)
    return TwoTower(
        shape.users,
        shape.items,
        embedding_dim=m.embedding_dim,
        hidden=m.hidden,
        output_dim=m.output_dim,
        activation=m.activation,
        dropout=m.dropout,
        l2=m.l2,
        bias_l2=m.bias_l2,
    )


def _table_only(kind: str, shape: Any, *, text: bool = False) -> Columns:
    # The fitted baselines read a table's numbers and category codes (the linear one also a
    # text column's tokens as a bag); image and audio columns have no place in them.
    if not isinstance(shape, Columns) or shape.grids or (shape.vocabularies and not text):
        what = (
            _WHAT[type(shape)] if not isinstance(shape, Columns) else "image or audio columns" if text else "text, image or audio columns"
        )
        reads = "numbers, categories and text" if text else "numbers and categories"
        raise ModelError(f"model.kind {kind!r} reads table {reads} only; this data has {what}")
    return shape


def _linear(m: Any, shape: Any, n_out: int) -> nn.Module:
    shape = _table_only("linear", shape, text=True)
    return LinearTable(shape.floats, list(shape.cardinalities), n_out, vocab_sizes=list(shape.vocabularies))


def _trees(m: Any, shape: Any, n_out: int) -> nn.Module:
    shape = _table_only("hist_gradient_boosting", shape)
    per_iter = n_out if n_out > 2 else 1  # one tree per class per iteration; one for two classes or a value
    return TreeEnsemble(shape.floats + len(shape.cardinalities), n_out, trees=m.max_iter * per_iter, nodes=2 * m.max_leaf_nodes - 1)


def _auto(m: Any, shape: Any, n_out: int) -> nn.Module:
    raise ModelError("model.kind 'auto' is resolved to a model kind before a model is built (trustforge train, trustforge.automl.run_auto)")


def _tabular_columns(m: Any, shape: Any, *, own: bool = False) -> Columns:
    # TabM reads any table (text and image columns through the MLP's encoders, `own`); the
    # FT-Transformer reads the float matrix and the categorical indices only.
    if not isinstance(shape, Columns):
        raise ModelError(f"model.kind {m.kind!r} reads tables (csv, parquet, jsonl or a builtin table); this is {_WHAT[type(shape)]} data")
    if not own and (shape.vocabularies or shape.grids):
        raise ModelError(
            f"model.kind {m.kind!r} reads number and category columns; this table has text, image or audio columns: use tabm or mlp"
        )
    if any(k < 1 for k in shape.cardinalities + shape.vocabularies):
        raise ModelError("the schema's categorical columns have no fitted vocabulary; fit the preprocessor first")
    return shape


def _tabm(m: Any, shape: Any, n_out: int, output: str) -> nn.Module:
    cols = _tabular_columns(m, shape, own=True)
    return TabM(
        cols.floats,
        list(cols.cardinalities),
        n_out,
        output=output,
        k=m.k,
        hidden=m.hidden,
        activation_name=m.activation,
        dropout=m.dropout,
        numeric_embedding=m.numeric_embedding,
        embedding_dim=m.embedding_dim,
        frequency_scale=m.frequency_scale,
        vocab_sizes=list(cols.vocabularies),
        grids=list(cols.grids),
        order=list(cols.own),
    )


def _ft_transformer(m: Any, shape: Any, n_out: int) -> nn.Module:
    cols = _tabular_columns(m, shape)
    return FTTransformer(
        cols.floats,
        list(cols.cardinalities),
        n_out,
        d_token=m.d_token,
        n_heads=m.n_heads,
        n_layers=m.n_layers,
        dim_feedforward=m.dim_feedforward,
        attention_dropout=m.attention_dropout,
        ffn_dropout=m.ffn_dropout,
        residual_dropout=m.residual_dropout,
    )


def _vocab(size: int) -> int:
    if size < 2:
        raise ModelError("the schema's text column has no fitted vocabulary; fit the preprocessor first")
    return size


# One builder per model kind: the registry `model.kind` names.
_BUILDERS: dict[str, Callable[[Any, Any, int], nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "rnn": _rnn,
    "audio_cnn": _audio_cnn,
    "mf": _recommender,
    "two_tower": _recommender,
    "transformer": _transformer,
    "text_pretrained": _text_pretrained,
    "linear": _linear,  # fitted, not trained: see evaluate.fit_fitted
    "hist_gradient_boosting": _trees,
    "auto": _auto,
    "tabm": lambda m, shape, n_out: _tabm(m, shape, n_out, "value"),  # build_model passes the output form
    "ft_transformer": _ft_transformer,
}
MODEL_KINDS = (*_BUILDERS, "ensemble")  # an ensemble is built in build_model, from the whole spec (each member's own settings)
