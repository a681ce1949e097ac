"""Transformer encoder over token ids (text) or a numeric sequence, with a pooled head."""

from __future__ import annotations

import math

import torch
from torch import nn

from trustforge.models._layers import recording

__all__ = ["TransformerEncoder", "sinusoidal_positions"]


def sinusoidal_positions(length: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """The fixed sine/cosine position code of "Attention Is All You Need", (length, width).

    Computed, not learned, so a model takes any length and its weights do not depend on the
    `max_length` it was trained with.
    """
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / width))
    code = torch.zeros(length, width, device=device)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return code  # (T, width)


class TransformerEncoder(nn.Module):
    """Embedding + positions → pre-norm Transformer encoder layers → pooling → linear head.

    Exactly one of `vocab_size` (inputs are token ids (B, T), id `pad_id` is padding) or
    `n_features` (inputs are float sequences (B, T, F), projected to `d_model` by a linear
    layer) is given. Padding never takes part: it is masked out of attention and of pooling.
    Token-id batches are cut to their longest text before the encoder (padding is last), so
    short texts padded to a long `max_length` cost what short texts cost.

    Args:
        n_out: number of outputs.
        d_model, nhead, num_layers, dim_feedforward, dropout: as in `torch.nn.TransformerEncoderLayer`
            (GELU, norm first).
        pooling: "mean" or "max" over the real (unpadded) steps, or "cls": the output at a
            learned vector put before the first step.
        positions: "sinusoidal" adds the position code to every step; "none" leaves the
            encoder order-free (it reads a bag of tokens in context of each other), which
            suits tasks decided by which words occur more than by their order.
        word_dropout: token ids only, in training: the chance that a token's embedding is
            blanked (zeroed), whole words at a time, as in Iyyer et al. (2015); on a few
            thousand texts it keeps the model from leaning on a handful of words.
    """

    def __init__(
        self,
        n_out: int,
        *,
        vocab_size: int | None = None,
        n_features: int | None = None,
        d_model: int = 128,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.1,
        pooling: str = "mean",
        positions: str = "sinusoidal",
        word_dropout: float = 0.0,
        pad_id: int = 0,
    ):
        super().__init__()
        if (vocab_size is None) == (n_features is None):
            raise ValueError("give exactly one of vocab_size (token ids) and n_features (float sequences)")
        self.pad_id = pad_id
        self.pooling = pooling
        self.word_dropout = word_dropout
        self.positions = positions
        self.d_model = d_model
        if vocab_size is not None:
            self.token_embedding = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
            self.input_projection = None
        else:
            self.token_embedding = None
            self.input_projection = nn.Linear(n_features, d_model)
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True)
        # No dropout on the attention weights: on CPU it is most of a layer's training time
        # (a (B, heads, T, T) mask drawn per layer; ×6 at T = 256, d_model 64) and it forces the
        # attention matrix to be materialised; dropout on embeddings, residual branches, the
        # feed-forward block and the pooled vector regularises the model.
        layer.self_attn.dropout = 0.0
        # enable_nested_tensor only applies to post-norm layers; saying so keeps PyTorch quiet.
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)  # pre-norm layers leave the last output unnormalised
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, n_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs (B, n_out) for token ids (B, T) or float sequences (B, T, F).

        `mask` (B, T), True at real steps, defaults to `x != pad_id` for token ids (and the
        batch is then cut to its longest text) and to all steps for float sequences.
        Attribution methods pass it explicitly, so that a baseline made of padding ids is read
        at the input's positions, at the input's length.
        """
        if self.token_embedding is not None:
            if mask is None:  # derived from the ids: cut the batch to its longest text (padding is last)
                mask = x != self.pad_id
                if not recording():
                    longest = max(1, int(mask.sum(dim=1).max()))
                    x, mask = x[:, :longest], mask[:, :longest]
            h = self.token_embedding(x)  # (B, T, D)
            if self.training and self.word_dropout > 0:
                keep = torch.rand(x.shape, device=x.device) >= self.word_dropout  # (B, T): one draw per token
                h = h * keep[:, :, None].to(h.dtype)
        else:
            if mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            h = self.input_projection(x.float())  # (B, T, D)
        mask = mask.bool()
        if self.positions == "sinusoidal":
            h = h + sinusoidal_positions(h.shape[1], self.d_model, h.device)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)  # (B, 1 + T, D)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        h = self.norm(self.encoder(self.dropout(h), src_key_padding_mask=~mask))  # (B, T, D)
        if self.pooling == "cls":
            pooled = h[:, 0]
        elif self.pooling == "max":
            pooled = h.masked_fill(~mask[:, :, None], torch.finfo(h.dtype).min).amax(dim=1)
        else:
            m = mask[:, :, None].to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, D)
        return self.head(self.dropout(pooled))  # (B, n_out)
