"""Multi-layer perceptron over a row's columns, or flattened images or sequences.

Over a table it is the combiner of its columns' encoders: the float columns pass through,
each categorical column is embedded, each text column becomes the mean of its token
embeddings (`TokenBag`); the vectors are concatenated and the MLP reads them (Ludwig's
concat combiner).
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import mlp_layers
from trustforge.models.token_bag import TokenBag

__all__ = ["MLP"]


class MLP(nn.Module):
    """An MLP whose first layer sees numeric columns beside one embedding per categorical column.

    Args:
        n_numeric: number of float inputs (for images: C·H·W, the image is flattened).
        cardinalities: vocabulary size of each categorical column (may be empty).
        n_out: outputs (classes, 1 for binary logits or regression).
        hidden: widths of the hidden layers.
        embedding_dim: width of every categorical embedding; None picks min(16, (card + 1) // 2).
        vocab_sizes: vocabulary size of each text column (may be empty), read by a `TokenBag`
            of width `embedding_dim` (None: 64).
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        n_out: int,
        *,
        hidden: list[int],
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        embedding_dim: int | None = None,
        vocab_sizes: list[int] | None = None,
    ):
        super().__init__()
        dims = [embedding_dim or min(16, (card + 1) // 2) for card in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in zip(cardinalities, dims))
        if vocab_sizes:  # absent otherwise, so the weights of a model without text keep their names
            self.texts = nn.ModuleList(TokenBag(v, embedding_dim or 64) for v in vocab_sizes)
        width = n_numeric + sum(dims) + sum(bag.out_dim for bag in getattr(self, "texts", []))
        self.net = mlp_layers(width, hidden, n_out, act=activation, dropout=dropout, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *tokens: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, D); images (B, C, H, W) become (B, C·H·W)
        parts = [x]
        if len(self.embeddings):
            parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]  # K × (B, E_i)
        if tokens:
            parts += [bag(ids) for bag, ids in zip(self.texts, tokens)]  # one (B, E) per text column
        return self.net(torch.cat(parts, dim=1) if len(parts) > 1 else x)  # (B, n_out)
