"""The mean of a text column's token embeddings: the `bag` encoder of text features."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TokenBag"]


class TokenBag(nn.Module):
    """Token ids (B, T) → the mean embedding of the real tokens (B, E); padding (id 0) is not
    counted, and a text with no tokens is the zero vector.

    Args:
        vocab_size: ids are 0 .. vocab_size - 1.
        embedding_dim: E.
    """

    def __init__(self, vocab_size: int, embedding_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.out_dim = embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0)[:, :, None].to(self.embedding.weight.dtype)  # (B, T, 1)
        h = self.embedding(ids) * mask  # (B, T, E)
        return h.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, E)
