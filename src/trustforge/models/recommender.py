"""Matrix factorisation with global, user and item biases (Koren, Bell & Volinsky, 2009).

    score(u, i) = μ + b_u + b_i + p_u · q_i

- explicit feedback: the score is the rating (less the training mean, which the data stage
  takes off), trained by MSE;
- implicit feedback: the score ranks items, trained by BPR (Rendle et al., 2009): given a
  third input, a sampled negative item j, `forward` returns score(u, i) - score(u, j), whose
  binary cross-entropy against "i wins" is BPR's loss.

Index 0 of users and items is the id training never saw: its factors and biases are zero and
stay zero (`padding_idx`: no gradient, and weight decay keeps zero at zero). So an unknown
user is scored μ + b_i (the item's learnt bias, popularity in effect), an unknown item
μ + b_u, both unknown μ: the documented fallback, built into the architecture.

Regularisation is the classic MF objective's: an L2 penalty on the factors and biases of the
users and items each batch looks up (`l2`, `bias_l2`), handed to the trainer through
`penalty()`. Weight decay on whole tables would shrink rarely seen ids every step whether
or not they were used; this shrinks each id in proportion to how often it is trained on.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MatrixFactorization"]


class MatrixFactorization(nn.Module):
    """Biased matrix factorisation.

    Args:
        users: user vocabulary size, index 0 (unknown) included.
        items: item vocabulary size, index 0 (unknown) included.
        factors: latent factors per user and item (F).
        l2: penalty weight on the batch's user and item factors (mean over the batch of
            |p_u|² + |q_i|² (+ |q_j|² for the negative)).
        bias_l2: penalty weight on the batch's biases, likewise.
        init_std: standard deviation of the initial factors.
    """

    def __init__(self, users: int, items: int, factors: int = 32, *, l2: float = 0.1, bias_l2: float = 0.01, init_std: float = 0.1):
        super().__init__()
        self.l2, self.bias_l2 = l2, bias_l2
        self.user_factors = nn.Embedding(users, factors, padding_idx=0)  # (U, F)
        self.item_factors = nn.Embedding(items, factors, padding_idx=0)  # (I, F)
        self.user_bias = nn.Embedding(users, 1, padding_idx=0)  # (U, 1)
        self.item_bias = nn.Embedding(items, 1, padding_idx=0)  # (I, 1)
        self.global_bias = nn.Parameter(torch.zeros(()))
        with torch.no_grad():
            for table in (self.user_factors, self.item_factors):
                table.weight.normal_(0.0, init_std)
                table.weight[0].zero_()
            self.user_bias.weight.zero_()
            self.item_bias.weight.zero_()
        self._penalty: torch.Tensor | None = None

    def forward(self, user: torch.Tensor, item: torch.Tensor, negative: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) of items for users, or score(user, item) - score(user, negative) when given.

        Args:
            user, item, negative: int64 (B,) vocabulary indices.
        """
        p = self.user_factors(user)  # (B, F)
        q = self.item_factors(item)  # (B, F)
        b_u = self.user_bias(user).squeeze(-1)  # (B,)
        b_i = self.item_bias(item).squeeze(-1)  # (B,)
        squares = p.pow(2).sum(-1) + q.pow(2).sum(-1)  # (B,)
        bias_squares = b_u.pow(2) + b_i.pow(2)  # (B,)
        if negative is None:
            out = self.global_bias + b_u + b_i + (p * q).sum(-1)
        else:
            q_j = self.item_factors(negative)  # (B, F)
            b_j = self.item_bias(negative).squeeze(-1)  # (B,)
            out = b_i - b_j + (p * (q - q_j)).sum(-1)  # μ and b_u cancel in the difference
            squares = squares + q_j.pow(2).sum(-1)
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
        p = self.user_factors(user)  # (B, F)
        b_u = self.user_bias(user)  # (B, 1)
        return self.global_bias + b_u + self.item_bias.weight.T + p @ self.item_factors.weight.T  # (B, I)
