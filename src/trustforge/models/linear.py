"""A linear model over a table's encoded columns: logistic or ridge regression as a torch module.

The run's yardstick (`evaluate`'s logistic or ridge baseline) fitted by its own solver, then
carried in a package like any network: float columns standardised by the training split's mean
and spread (buffers), categorical columns one-hot (a slot per category of the column's
vocabulary), text columns as the set of their token ids, then one `nn.Linear`. The solver lives with the baselines in `evaluate`; this file
only holds the fitted numbers (`load_fitted`), so the package stays weights-only safetensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["LinearTable"]


class LinearTable(nn.Module):
    """Standardise → one-hot → Linear; outputs logits (classification) or the value (regression).

    Args:
        n_numeric: float inputs (D).
        cardinalities: vocabulary size of each categorical column (K columns).
        n_out: outputs of the head (2 for binary cross-entropy: the logits (0, z); 1 for BCE or regression).
    """

    def __init__(self, n_numeric: int, cardinalities: list[int], n_out: int, vocab_sizes: list[int] | None = None):
        super().__init__()
        self.cardinalities = [int(c) for c in cardinalities]
        self.vocab_sizes = [int(v) for v in vocab_sizes or []]
        self.register_buffer("mean", torch.zeros(n_numeric))
        self.register_buffer("scale", torch.ones(n_numeric))
        self.register_buffer("offsets", torch.tensor(np.cumsum([0, *self.cardinalities[:-1]]), dtype=torch.long))
        self.linear = nn.Linear(n_numeric + sum(self.cardinalities) + sum(self.vocab_sizes), n_out)

    def features(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *tokens: torch.Tensor) -> torch.Tensor:
        """The design matrix (B, D + Σ cardinalities + Σ vocabularies): standardised floats, the
        one-hot categories, then per text column which token ids occur (padding, id 0, never counts)."""
        parts = [(x.flatten(1) - self.mean) / self.scale]  # (B, D)
        if self.cardinalities and x_cat is not None:
            width = sum(self.cardinalities)
            ids = x_cat.long().clamp(min=0) + self.offsets  # (B, K): each column's slot in the one-hot block
            onehot = torch.zeros(len(x), width, dtype=parts[0].dtype, device=x.device)
            parts.append(onehot.scatter_(1, ids, 1.0))  # (B, Σ cardinalities)
        for vocab, ids in zip(self.vocab_sizes, tokens):  # (B, L) token ids → (B, V) presence
            bag = torch.zeros(len(x), vocab, dtype=parts[0].dtype, device=x.device)
            bag.scatter_(1, ids.reshape(len(x), -1).long().clamp(0, vocab - 1), 1.0)
            bag[:, 0] = 0.0
            parts.append(bag)
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *own: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x, x_cat, *own))  # (B, n_out)

    @torch.no_grad()
    def load_fitted(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        """Set the fitted numbers: the floats' mean and spread, and the weights (n_out, width) and intercepts (n_out,)."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        self.linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
