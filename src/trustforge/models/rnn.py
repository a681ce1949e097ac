"""Recurrent network (LSTM or GRU) over a sequence; an image is read row by row, a text token by token."""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import recording

__all__ = ["RNN"]


class RNN(nn.Module):
    """A stacked LSTM/GRU whose pooled output feeds a linear head.

    Args:
        n_features: features per time step (for an image (C, H, W): C·W, one step per row).
        n_out: number of outputs.
        cell: "lstm" or "gru".
        pooling: "last" (final step; for a bidirectional net, the last step of the forward
            direction with the first of the backward one), "mean" or "max" over steps.
        vocab_size: for token-id inputs (B, T) (text): an embedding of this many tokens, each
            `n_features` wide, comes first; id `pad_id` is padding, which the network never
            steps over (sequences are packed), so "last" is each text's own last token. The
            `dropout` then also applies to the embeddings and to the pooled output.
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
        vocab_size: int | None = None,
        pad_id: int = 0,
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, n_features, padding_idx=pad_id) if vocab_size else None
        self.pad_id = pad_id
        self.token_dropout = nn.Dropout(dropout) if vocab_size else None
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        # nn.LSTM applies dropout between layers only, so it is meaningless for one layer.
        self.rnn = rnn_cls(
            n_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.pooling = pooling
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), n_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.token_embedding is not None:
            return self._forward_tokens(x, mask)
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

    def _forward_tokens(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # ids (B, T), left-aligned with padding after; `mask` (B, T) is True at real tokens.
        if mask is None:  # derived from the ids: cut the batch to its longest text
            mask = ids != self.pad_id
            if not recording():  # an export or a trace keeps the full length (`recording`)
                longest = max(1, int(mask.sum(dim=1).max()))
                ids, mask = ids[:, :longest], mask[:, :longest]
        lengths = mask.sum(dim=1).clamp(min=1)  # (B,)
        e = self.token_dropout(self.token_embedding(ids))  # (B, T, E)
        packed = nn.utils.rnn.pack_padded_sequence(e, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, H·dirs)
        m = mask[:, :, None]
        if self.pooling == "mean":
            pooled = (out * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        elif self.pooling == "max":
            pooled = out.masked_fill(~m, torch.finfo(out.dtype).min).amax(dim=1)
        else:  # the final hidden state of the top layer is each text's own last step
            h_n = state[0] if isinstance(state, tuple) else state  # (layers·dirs, B, H)
            pooled = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
        return self.head(self.token_dropout(pooled))  # (B, n_out)
