"""A bag of token embeddings under an MLP: the fastText architecture, for text."""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import mlp_layers

__all__ = ["BagOfEmbeddings"]


class BagOfEmbeddings(nn.Module):
    """Mean of the token embeddings of a text → MLP → outputs (Joulin et al., 2016, "Bag of
    Tricks for Efficient Text Classification").

    Word order is lost except what n-gram tokens carry (`data.text.ngrams: 2` adds word
    pairs). On a few thousand labelled texts this is the from-scratch model that competes
    with TF-IDF + logistic regression: it has one embedding per token and little else to
    overfit, and trains in seconds.

    Args:
        n_out: number of outputs.
        vocab_size: token ids are 0 .. vocab_size - 1; `pad_id` is padding and never counted.
        embedding_dim: width of each token embedding.
        hidden: widths of the hidden layers between the mean embedding and the head ([] for
            a linear head, as fastText has).
        word_dropout: in training, the chance that a token's embedding is blanked (zeroed).
        dropout: on the mean embedding and after each hidden layer.
    """

    def __init__(
        self,
        n_out: int,
        *,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden: list[int] | None = None,
        activation: str = "relu",
        dropout: float = 0.0,
        word_dropout: float = 0.0,
        pad_id: int = 0,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.word_dropout = word_dropout
        self.token_embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.net = mlp_layers(embedding_dim, list(hidden or []), n_out, act=activation, dropout=dropout, batch_norm=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs (B, n_out) for token ids (B, T); `mask` (B, T), True at real tokens, defaults to `x != pad_id`."""
        mask = (x != self.pad_id) if mask is None else mask.bool()
        h = self.token_embedding(x)  # (B, T, E)
        m = mask[:, :, None].to(h.dtype)
        if self.training and self.word_dropout > 0:
            h = h * (torch.rand(x.shape, device=x.device) >= self.word_dropout)[:, :, None].to(h.dtype)
        pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, E): the mean over real tokens
        return self.net(self.dropout(pooled))
