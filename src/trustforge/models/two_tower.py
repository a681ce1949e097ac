"""Two towers: a user tower and an item tower meeting in a dot product (Yi et al., 2019).

    score(u, i) = μ + b_u + b_i + f(u) · g(i),   f(u) = MLP_u(E_u[u]),  g(i) = MLP_i(E_i[i])

Each tower is an id embedding followed by an MLP; only ids feed them today, and the towers
are where user and item features would join. Item vectors do not depend on the user, so
`score_all` embeds the catalogue once per call and ranks it with one matrix product, which is
what makes two towers the usual shape of retrieval models.

Training and fallbacks follow `recommender.MatrixFactorization`: MSE on ratings (explicit) or
BPR on sampled negatives (implicit, a third input); index 0 is the id training never saw,
whose embedding and bias are zero and whose tower output is masked to zero (an MLP maps a zero
embedding to its biases, not to zero), so an unknown user is scored μ + b_i. `penalty()`
hands the trainer an L2 penalty on the embeddings and biases of the ids in the batch; the MLP
weights are left to the optimizer's weight decay.
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import activation

__all__ = ["TwoTower"]


def _tower(embedding_dim: int, hidden: list[int], output_dim: int, act: str, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = embedding_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)


class TwoTower(nn.Module):
    """Args:
    users, items: vocabulary sizes, index 0 (unknown) included.
    embedding_dim: id embedding size (E); hidden: tower hidden sizes; output_dim: D.
    activation, dropout: of the tower MLPs.
    l2, bias_l2: penalty weights on the batch's embeddings and biases.
    """

    def __init__(
        self,
        users: int,
        items: int,
        *,
        embedding_dim: int = 64,
        hidden: list[int] | None = None,
        output_dim: int = 32,
        activation: str = "relu",
        dropout: float = 0.0,
        l2: float = 0.1,
        bias_l2: float = 0.01,
    ):
        super().__init__()
        hidden = [64] if hidden is None else list(hidden)
        self.l2, self.bias_l2 = l2, bias_l2
        self.user_embedding = nn.Embedding(users, embedding_dim, padding_idx=0)  # (U, E)
        self.item_embedding = nn.Embedding(items, embedding_dim, padding_idx=0)  # (I, E)
        self.user_tower = _tower(embedding_dim, hidden, output_dim, activation, dropout)  # E → D
        self.item_tower = _tower(embedding_dim, hidden, output_dim, activation, dropout)  # E → D
        self.user_bias = nn.Embedding(users, 1, padding_idx=0)
        self.item_bias = nn.Embedding(items, 1, padding_idx=0)
        self.global_bias = nn.Parameter(torch.zeros(()))
        with torch.no_grad():
            self.user_bias.weight.zero_()
            self.item_bias.weight.zero_()
        self._penalty: torch.Tensor | None = None

    def _users(self, user: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.user_embedding(user)  # (B, E)
        return self.user_tower(e) * (user != 0).unsqueeze(-1), e  # (B, D), (B, E)

    def _items(self, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.item_embedding(item)  # (B, E)
        return self.item_tower(e) * (item != 0).unsqueeze(-1), e  # (B, D), (B, E)

    def forward(self, user: torch.Tensor, item: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,), or score(user, item) - score(user, negative) when a negative is given."""
        f, e_u = self._users(user)
        g, e_i = self._items(item)
        b_u = self.user_bias(user).squeeze(-1)  # (B,)
        b_i = self.item_bias(item).squeeze(-1)  # (B,)
        squares = e_u.pow(2).sum(-1) + e_i.pow(2).sum(-1)
        bias_squares = b_u.pow(2) + b_i.pow(2)
        if negative is None:
            out = self.global_bias + b_u + b_i + (f * g).sum(-1)
        else:
            g_j, e_j = self._items(negative)
            b_j = self.item_bias(negative).squeeze(-1)
            out = b_i - b_j + (f * (g - g_j)).sum(-1)
            squares = squares + e_j.pow(2).sum(-1)
            bias_squares = bias_squares + b_j.pow(2)
        if self.training:
            self._penalty = self.l2 * squares.mean() + self.bias_l2 * bias_squares.mean()
        return out

    def penalty(self) -> torch.Tensor | None:
        """The L2 penalty of the last training forward pass (once; then None)."""
        out, self._penalty = self._penalty, None
        return out

    @torch.no_grad()
    def score_all(self, user: torch.Tensor) -> torch.Tensor:
        """Scores (B, I) of every item (column 0: the unknown item) for users (B,)."""
        f, _ = self._users(user)  # (B, D)
        items = torch.arange(self.item_embedding.num_embeddings, device=user.device)
        g, _ = self._items(items)  # (I, D)
        return self.global_bias + self.user_bias(user) + self.item_bias.weight.T + f @ g.T  # (B, I)
