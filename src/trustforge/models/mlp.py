"""Multi-layer perceptron over numeric features, embedded categoricals, or flattened images."""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import mlp_layers

__all__ = ["MLP"]


class MLP(nn.Module):
    """An MLP whose first layer sees numeric columns beside one embedding per categorical column.

    Args:
        n_numeric: number of float inputs (for images: C·H·W, the image is flattened).
        cardinalities: vocabulary size of each categorical column (may be empty).
        n_out: outputs (classes, 1 for binary logits or regression).
        hidden: widths of the hidden layers.
        embedding_dim: width of every categorical embedding; None picks min(16, (card + 1) // 2).
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
    ):
        super().__init__()
        dims = [embedding_dim or min(16, (card + 1) // 2) for card in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in zip(cardinalities, dims))
        self.net = mlp_layers(n_numeric + sum(dims), hidden, n_out, act=activation, dropout=dropout, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)  # (B, D); images (B, C, H, W) become (B, C·H·W)
        if len(self.embeddings):
            embedded = [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]  # K × (B, E_i)
            x = torch.cat([x, *embedded], dim=1)
        return self.net(x)  # (B, n_out)
