"""Model architectures, one per file, and `build_model` that picks one from the spec.

Models are science: they take tensors and return logits, and know nothing of devices,
training, logging or packaging.
"""

from __future__ import annotations

from torch import nn

from trustforge.data import Schema
from trustforge.errors import ModelError
from trustforge.models.audio import AudioCNN
from trustforge.models.bag import BagOfEmbeddings
from trustforge.models.cnn import CNN
from trustforge.models.mlp import MLP
from trustforge.models.recommender import MatrixFactorization
from trustforge.models.rnn import RNN
from trustforge.models.text_pretrained import PretrainedTextClassifier
from trustforge.models.transformer import TransformerEncoder
from trustforge.models.two_tower import TwoTower
from trustforge.spec import TaskSpec

__all__ = ["MLP", "CNN", "RNN", "AudioCNN", "MatrixFactorization", "TwoTower", "TransformerEncoder", "PretrainedTextClassifier",
           "BagOfEmbeddings", "build_model", "output_size", "MODEL_KINDS"]

MODEL_KINDS = ("mlp", "cnn", "rnn", "audio_cnn", "mf", "two_tower", "transformer", "text_pretrained")


def output_size(spec: TaskSpec, schema: Schema) -> int:
    """Number of model outputs: one logit for binary cross-entropy or regression, else one per class."""
    if spec.task in ("regression", "recommendation"):  # a rating or a ranking score
        return 1
    if spec.task == "forecasting":
        return int(schema.series["horizon"])  # one output per future step
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
    if schema.modality == "interactions" or m.kind in ("mf", "two_tower"):
        return _recommender(m, schema)
    if schema.modality == "text" or m.kind in ("transformer", "text_pretrained"):
        return _token_model(m, schema, n_out)
    if m.kind == "mlp":
        if schema.modality == "image":
            c, h, w = schema.image_shape
            n_num, cards = c * h * w, []
        elif schema.modality in ("series", "sequence"):
            t, f = _steps(schema)
            n_num, cards = t * f, []  # the sequence is flattened: (B, T, F) → (B, T·F)
        else:  # a table: each column through its feature type's encoder, concatenated (see MLP)
            n_num = schema.float_width
            cards = [c.vocabulary for c in schema.slot("index")]
            vocabs = [c.vocabulary for c in schema.slot("tokens")]
            if any(k < 1 for k in cards + vocabs):
                raise ModelError("the schema's categorical or text columns have no fitted vocabulary; fit the preprocessor first")
            return MLP(n_num, cards, n_out, hidden=m.hidden, activation=m.activation, dropout=m.dropout,
                       batch_norm=m.batch_norm, embedding_dim=m.embedding_dim, vocab_sizes=vocabs)
        return MLP(n_num, cards, n_out, hidden=m.hidden, activation=m.activation, dropout=m.dropout,
                   batch_norm=m.batch_norm, embedding_dim=m.embedding_dim)
    if m.kind == "cnn":
        if schema.modality != "image":
            raise ModelError("model.kind 'cnn' needs image data (builtin:digits, builtin:shapes or images:DIR); use mlp for tables")
        return CNN(schema.image_shape, n_out, channels=m.channels, kernel_size=m.kernel_size, padding=m.padding,
                   convs_per_block=m.convs_per_block, pool=m.pool, pool_size=m.pool_size, global_pool=m.global_pool,
                   batch_norm=m.batch_norm, activation_name=m.activation, hidden=m.hidden, dropout=m.dropout)
    if m.kind == "rnn":
        if schema.modality in ("series", "sequence"):
            _, f = _steps(schema)
            return RNN(f, n_out, cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                       bidirectional=m.bidirectional, dropout=m.dropout, pooling=m.pooling)
        if schema.modality != "image":
            raise ModelError("model.kind 'rnn' reads sequences (npz:PATH sequences, a forecasting series, or images row by row); use mlp for tables")
        c, h, w = schema.image_shape
        return RNN(c * w, n_out, cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                   bidirectional=m.bidirectional, dropout=m.dropout, pooling=m.pooling)
    if m.kind == "audio_cnn":
        if schema.modality != "audio":
            raise ModelError("model.kind 'audio_cnn' needs audio data (audio:DIR or builtin:spoken_digits)")
        from trustforge.data._audio import FrontEnd

        return AudioCNN(FrontEnd.from_dict(schema.audio).input_shape, n_out, channels=m.channels,
                        activation_name=m.activation, dropout=m.dropout)
    raise ModelError(f"model.kind: unknown kind {m.kind!r}; choose from {', '.join(MODEL_KINDS)}")


def _token_model(m, schema: Schema, n_out: int) -> nn.Module:
    """Models over token ids (text), and the Transformer over numeric sequences."""
    if m.kind == "text_pretrained":
        if schema.modality != "text":
            raise ModelError("model.kind 'text_pretrained' needs text data (data.text, or builtin:reviews)")
        return PretrainedTextClassifier(n_out, freeze=m.freeze, hidden=m.hidden, dropout=m.dropout)
    if schema.modality == "text":
        vocab = schema.columns[0].vocabulary
        if vocab < 2:
            raise ModelError("the schema's text column has no fitted vocabulary; fit the preprocessor first")
        if m.kind == "transformer":
            return TransformerEncoder(n_out, vocab_size=vocab, d_model=m.d_model, nhead=m.nhead, num_layers=m.num_layers,
                                      dim_feedforward=m.dim_feedforward, dropout=m.dropout, pooling=m.pooling,
                                      positions=m.positions, word_dropout=m.word_dropout)
        if m.kind == "rnn":
            return RNN(m.embedding_dim, n_out, cell=m.cell, hidden_size=m.hidden_size, num_layers=m.num_layers,
                       bidirectional=m.bidirectional, dropout=m.dropout, pooling=m.pooling, vocab_size=vocab)
        if m.kind == "mlp":  # a bag of token embeddings under the MLP (fastText)
            return BagOfEmbeddings(n_out, vocab_size=vocab, embedding_dim=m.embedding_dim or 64, hidden=m.hidden,
                                   activation=m.activation, dropout=m.dropout, word_dropout=m.word_dropout)
        raise ModelError(f"model.kind {m.kind!r} does not read text; use mlp, transformer, rnn or text_pretrained")
    if schema.modality in ("series", "sequence"):  # float steps (B, T, F), projected to d_model
        _, f = _steps(schema)
        return TransformerEncoder(n_out, n_features=f, d_model=m.d_model, nhead=m.nhead, num_layers=m.num_layers,
                                  dim_feedforward=m.dim_feedforward, dropout=m.dropout, pooling=m.pooling, positions=m.positions)
    raise ModelError(f"model.kind 'transformer' reads text or sequences; this is {schema.modality} data")


def _recommender(m, schema: Schema) -> nn.Module:
    if schema.modality != "interactions" or m.kind not in ("mf", "two_tower"):
        raise ModelError(f"model.kind {m.kind!r} does not fit {schema.modality} data; interactions (task "
                         "recommendation) take model.kind mf or two_tower, and mf or two_tower take nothing else")
    users, items = (c.vocabulary for c in schema.columns)
    if users < 2 or items < 2:
        raise ModelError("the schema's user and item columns have no fitted vocabulary; fit the preprocessor first")
    if m.kind == "mf":
        return MatrixFactorization(users, items, m.factors, l2=m.l2, bias_l2=m.bias_l2, init_std=m.init_std)
    return TwoTower(users, items, embedding_dim=m.embedding_dim, hidden=m.hidden, output_dim=m.output_dim,
                    activation=m.activation, dropout=m.dropout, l2=m.l2, bias_l2=m.bias_l2)


def _steps(schema: Schema) -> tuple[int, int]:
    """(steps, features per step) of a sequence input: a forecasting window or an npz sequence."""
    if schema.modality == "series":
        return int(schema.series["lookback"]), 1
    t, f = schema.sequence_shape
    return int(t), int(f)
