"""FT-Transformer (Gorishniy et al. 2021): every column a token, a Transformer over the tokens.

The feature tokenizer turns each float column j into x_j·w_j + b_j (a d-wide token; the number
softly clipped first, see `_numeric_embed.soft_clip`) and each categorical column into its
embedding row plus a column bias; a learned [CLS] token is prepended, pre-norm Transformer
layers mix the columns, and a head reads the [CLS] token. Attention lets it learn
interactions between columns that an MLP must find through its hidden units; it costs
O(columns²) per row, so it suits tables of tens to a few hundred columns.

Text, image and audio columns are not read: `mlp` combines those.
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._numeric_embed import soft_clip

__all__ = ["FTTransformer"]


class FTTransformer(nn.Module):
    """Args:
    n_numeric: float inputs (standardised numbers, flags, date parts).
    cardinalities: vocabulary size of each categorical column (may be empty).
    n_out: outputs.
    d_token: token width.
    n_heads: attention heads (divides d_token).
    n_layers: Transformer layers.
    dim_feedforward: the feed-forward width (the paper's 4/3 · d_token rounded).
    attention_dropout, ffn_dropout, residual_dropout: as in the paper's defaults.
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        n_out: int,
        *,
        d_token: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int | None = None,
        attention_dropout: float = 0.2,
        ffn_dropout: float = 0.1,
        residual_dropout: float = 0.0,
    ):
        super().__init__()
        d = d_token
        scale = d**-0.5
        self.num_weight = nn.Parameter(torch.empty(n_numeric, d).uniform_(-scale, scale))  # (D, d)
        self.num_bias = nn.Parameter(torch.empty(n_numeric, d).uniform_(-scale, scale))
        self.embeddings = nn.ModuleList(nn.Embedding(card, d) for card in cardinalities)
        self.cat_bias = nn.Parameter(torch.empty(len(cardinalities), d).uniform_(-scale, scale))
        self.cls = nn.Parameter(torch.empty(1, 1, d).uniform_(-scale, scale))
        ff = dim_feedforward or max(8, int(d * 4 / 3))
        self.layers = nn.ModuleList(_Block(d, n_heads, ff, attention_dropout, ffn_dropout, residual_dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        tokens = [self.cls.expand(x.shape[0], -1, -1)]  # (B, 1, d)
        if x.shape[1]:
            tokens.append(soft_clip(x)[..., None] * self.num_weight + self.num_bias)  # (B, D, d)
        if len(self.embeddings):
            cats = torch.stack([emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)], dim=1)  # (B, K, d)
            tokens.append(cats + self.cat_bias)
        h = torch.cat(tokens, dim=1)  # (B, 1 + D + K, d)
        for layer in self.layers:
            h = layer(h)
        return self.head(torch.relu(self.norm(h[:, 0])))  # (B, n_out), from the [CLS] token


class _Block(nn.Module):
    """Pre-norm attention and feed-forward, each with a residual."""

    def __init__(self, d: int, heads: int, ff: int, attention_dropout: float, ffn_dropout: float, residual_dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attention = nn.MultiheadAttention(d, heads, dropout=attention_dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(ffn_dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(residual_dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = self.norm1(h)
        h = h + self.drop(self.attention(z, z, z, need_weights=False)[0])
        return h + self.drop(self.ffn(self.norm2(h)))
