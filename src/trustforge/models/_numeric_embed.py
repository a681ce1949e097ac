"""Embeddings of a table's numbers: each float column becomes a small vector (Gorishniy et al. 2022).

An MLP that reads a raw standardised number can only draw piecewise-linear functions of it with
few kinks; periodic features sin(2π c x), cos(2π c x) at learned frequencies c, followed by a
linear layer and a ReLU ("PLR"), let the first layer bend a column's response where the data
bends. It is the embedding TabM and RealMLP use by default, and it costs O(columns × width).

Inputs are first softly clipped, x / sqrt(1 + (x / 3)²), as RealMLP does: a value 50 standard
deviations out (an outlier, a typo) reaches the network as about 3, not 50, while values
within ±1 are almost unchanged. The preprocessing already standardises with the training mean
and standard deviation; the clip makes the embedding robust to what that leaves.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PeriodicEmbedding", "soft_clip"]


def soft_clip(x: torch.Tensor, bound: float = 3.0) -> torch.Tensor:
    """x / sqrt(1 + (x / bound)²): identity near 0, tends to ±bound (smooth, monotone)."""
    return x / torch.sqrt(1 + (x / bound) ** 2)


class PeriodicEmbedding(nn.Module):
    """(B, D) numbers → (B, D, width): per column, periodic features then a linear layer and ReLU.

    Args:
        n_features: D, the float columns.
        width: the embedding width per column.
        frequencies: periodic frequencies per column (2 × that many features before the linear layer).
        sigma: the standard deviation the frequencies start from (PLR's default 0.1 underfits
            standardised inputs on small tables; 1.0 suits the clipped range).
        lite: one linear layer shared by the columns (the "lite" PLR of TabM) instead of one per column.
    """

    def __init__(self, n_features: int, width: int = 16, *, frequencies: int = 16, sigma: float = 1.0, lite: bool = True):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_features, frequencies) * sigma)  # (D, F)
        self.lite = lite
        if lite:
            self.linear = nn.Linear(2 * frequencies, width)
        else:  # one (2F → width) map per column, as a batched weight
            self.weight = nn.Parameter(torch.empty(n_features, 2 * frequencies, width))
            self.bias = nn.Parameter(torch.zeros(n_features, width))
            nn.init.uniform_(self.weight, -1 / math.sqrt(2 * frequencies), 1 / math.sqrt(2 * frequencies))
        self.out_width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 2 * math.pi * self.frequencies * soft_clip(x)[..., None]  # (B, D, F)
        v = torch.cat([torch.cos(v), torch.sin(v)], dim=-1)  # (B, D, 2F)
        if self.lite:
            v = self.linear(v)  # (B, D, W)
        else:
            v = torch.einsum("bdf,dfw->bdw", v, self.weight) + self.bias
        return torch.relu(v)
