"""Multi-layer perceptron over a row's columns, or flattened images or sequences.

Over a table it is the combiner of its columns' encoders: the float columns pass through,
each categorical column is embedded, each text column becomes the mean of its token
embeddings (`TokenBag`), each image or audio column goes through a small CNN
(`ConvEncoder`); the vectors are concatenated and the MLP reads them (Ludwig's concat
combiner).
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import mlp_layers
from trustforge.models.conv_encoder import ConvEncoder
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
        grids: (C, H, W) of each image or audio column (may be empty), read by a `ConvEncoder`.
        order: the slots of the tensors after the two matrices, "tokens" or "grid", in the
            order `forward` takes them; default: the text columns' tensors only.
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
        grids: list[tuple[int, ...]] | None = None,
        order: list[str] | None = None,
    ):
        super().__init__()
        dims = [embedding_dim or min(16, (card + 1) // 2) for card in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in zip(cardinalities, dims))
        if vocab_sizes:  # absent otherwise, so the weights of a model without text keep their names
            self.texts = nn.ModuleList(TokenBag(v, embedding_dim or 64) for v in vocab_sizes)
        if grids:
            self.grids = nn.ModuleList(ConvEncoder(int(g[0])) for g in grids)
        self.order = tuple(order or ["tokens"] * len(vocab_sizes or []))
        if sorted(self.order) != sorted(["tokens"] * len(vocab_sizes or []) + ["grid"] * len(grids or [])):
            raise ValueError(f"order {self.order} does not match {len(vocab_sizes or [])} text and {len(grids or [])} grid inputs")
        # Each tensor after the two matrices: (its slot, its encoder's index among that slot's).
        self._own = [(slot, self.order[:j].count(slot)) for j, slot in enumerate(self.order)]
        own = [*getattr(self, "texts", []), *getattr(self, "grids", [])]
        width = n_numeric + sum(dims) + sum(m.out_dim for m in own)
        self.net = mlp_layers(width, hidden, n_out, act=activation, dropout=dropout, batch_norm=batch_norm)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *own: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, D); images (B, C, H, W) become (B, C·H·W)
        parts = [x]
        if len(self.embeddings):
            parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]  # K × (B, E_i)
        if own:  # one vector per text (B, L) or image/audio (B, C, H, W) column, in column order
            parts += [(self.texts[i] if slot == "tokens" else self.grids[i])(t) for (slot, i), t in zip(self._own, own)]
        return self.net(torch.cat(parts, dim=1) if len(parts) > 1 else x)  # (B, n_out)
