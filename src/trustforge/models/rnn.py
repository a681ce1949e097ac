"""Recurrent network (LSTM or GRU) over a sequence; an image is read row by row."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RNN"]


class RNN(nn.Module):
    """A stacked LSTM/GRU whose pooled output feeds a linear head.

    Args:
        n_features: features per time step (for an image (C, H, W): C·W, one step per row).
        n_out: number of outputs.
        cell: "lstm" or "gru".
        pooling: "last" (final step; for a bidirectional net, the last step of the forward
            direction with the first of the backward one), "mean" or "max" over steps.
    """

    def __init__(
        self,
        n_features: int,
        n_out: int,
        *,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
    ):
        super().__init__()
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        # nn.LSTM applies dropout between layers only, so it is meaningless for one layer.
        self.rnn = rnn_cls(
            n_features, hidden_size, num_layers=num_layers, batch_first=True,
            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
        )
        self.pooling = pooling
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, C, H, W) → (B, H, C·W): rows are steps
        out, _ = self.rnn(x)  # (B, T, H·dirs)
        if self.pooling == "mean":
            pooled = out.mean(dim=1)
        elif self.pooling == "max":
            pooled = out.amax(dim=1)
        elif self.bidirectional:
            h = self.hidden_size
            pooled = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)
        else:
            pooled = out[:, -1]
        return self.head(pooled)  # (B, n_out)
