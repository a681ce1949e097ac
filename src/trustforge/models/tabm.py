"""TabM: an ensemble of k MLPs that share their weights (Gorishniy et al. 2024), over a table's columns.

Each member is an MLP; the k members share every weight matrix and differ only by per-member
adapters (BatchEnsemble: y_k = ((x ⊙ r_k) W) ⊙ s_k + b_k, Wen et al. 2020) and their own
output heads. So k members hold little more weights than one MLP (though each row costs k members'
passes), and their mean prediction has the variance reduction of an ensemble, which is what small
tables need most. The default k is 8 (bench/tabular.py: as good as 16 within the noise, at half
the cost of the evidence, which scores many copies of the test rows). The first
adapter starts at random signs, so the members see the inputs differently from step one.

Columns are read as the `MLP` reads them (see `models.mlp`): the float matrix (numbers already
standardised by their feature types, flags, date parts), through periodic numeric embeddings
(`_numeric_embed.PeriodicEmbedding`) unless `numeric_embedding: none`, and one embedding per
categorical column; a text column is the mean of its token embeddings (`TokenBag`) and an image or
audio column goes through a small CNN (`ConvEncoder`), as in the `MLP`, so TabM reads any table.

The output is the members' mean prediction, in the form the loss reads: the mean for a
regression, log of the mean probability for classes (so a softmax gives the mean), the logit
of the mean probability for one binary logit. Training reads the same mean, so the loss is the
ensemble's; the members stay diverse through their adapters and heads.
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import activation
from trustforge.models._numeric_embed import PeriodicEmbedding, soft_clip
from trustforge.models.conv_encoder import ConvEncoder
from trustforge.models.token_bag import TokenBag

__all__ = ["TabM", "mean_prediction"]


def mean_prediction(out: torch.Tensor, output: str) -> torch.Tensor:
    """(B, k, n_out) members' outputs → (B, n_out), the mean prediction as the loss reads it.

    Args:
        output: "value" (regression: mean), "classes" (log of the mean softmax) or "logit"
            (one binary logit: logit of the mean sigmoid).
    """
    k = out.shape[1]
    if output == "classes":
        return torch.logsumexp(torch.log_softmax(out, dim=-1), dim=1) - torch.log(torch.tensor(float(k)))
    if output == "logit":
        # log p − log(1 − p) of the mean p, each side a log-mean-exp of log-sigmoids (stable)
        log_p = torch.logsumexp(nn.functional.logsigmoid(out), dim=1)
        log_q = torch.logsumexp(nn.functional.logsigmoid(-out), dim=1)
        return log_p - log_q
    return out.mean(dim=1)


class EnsembleLinear(nn.Module):
    """k members' linear layers sharing W: (B, n_in) read by every member, or (k, B, n_in) → (k, B, n_out).

    Member k computes ((x ⊙ r_k) Wᵀ) ⊙ s_k + b_k = x (diag(r_k) Wᵀ diag(s_k)) + b_k, so the
    forward pass folds the adapters into k small matrices (k·n_in·n_out multiplications, nothing
    next to the rows') and runs one batched matrix product: no (B, k, n) elementwise passes. When
    every member reads the same row (the first layer), it is one (B, n_in) × (n_in, k·n_out) product.
    """

    def __init__(self, n_in: int, n_out: int, k: int, *, random_signs: bool):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)
        r = torch.ones(k, n_in)
        if random_signs:  # TabM's first-layer init: each member sees its own sign pattern
            r = torch.where(torch.rand(k, n_in) < 0.5, -1.0, 1.0)
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(k, n_out))
        bound = n_in**-0.5
        self.bias = nn.Parameter(torch.empty(k, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.r[:, :, None] * self.linear.weight.t()[None] * self.s[:, None, :]  # (k, n_in, n_out)
        k, n_in, n_out = w.shape
        if x.dim() == 2:  # (B, n_in), the same row for every member
            out = (x @ w.transpose(0, 1).reshape(n_in, k * n_out)).view(-1, k, n_out).transpose(0, 1)
            return out + self.bias[:, None, :]  # (k, B, n_out)
        return torch.baddbmm(self.bias[:, None, :], x, w)  # (k, B, n_out)


class TabM(nn.Module):
    """k weight-sharing MLP members over numeric embeddings and categorical embeddings.

    Args:
        n_numeric: float inputs (standardised numbers, flags, date parts).
        cardinalities: vocabulary size of each categorical column (may be empty).
        n_out: outputs (classes, 1 for a binary logit or a regression value).
        output: how members' outputs are averaged: "classes", "logit" or "value" (`mean_prediction`).
        k: ensemble members.
        hidden: hidden widths of each member.
        dropout: after each hidden activation.
        numeric_embedding: "periodic" (PLR-lite) or "none" (raw floats, softly clipped).
        embedding_dim: width of each numeric embedding and each categorical one (None: 16 and
            min(16, (card + 1) // 2)).
        frequency_scale: the std the periodic frequencies start from (`PeriodicEmbedding`'s sigma).
        vocab_sizes, grids, order: text and image/audio columns, as the `MLP` takes them.
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        n_out: int,
        *,
        output: str,
        k: int = 16,
        hidden: list[int],
        activation_name: str = "relu",
        dropout: float = 0.1,
        numeric_embedding: str = "periodic",
        embedding_dim: int | None = None,
        frequency_scale: float = 0.01,
        vocab_sizes: list[int] | None = None,
        grids: list[tuple[int, ...]] | None = None,
        order: list[str] | None = None,
    ):
        super().__init__()
        if output not in ("classes", "logit", "value"):
            raise ValueError(f"output must be classes, logit or value; got {output!r}")
        self.output, self.k = output, k
        self.numeric = (
            PeriodicEmbedding(n_numeric, embedding_dim or 16, sigma=frequency_scale)
            if numeric_embedding == "periodic" and n_numeric
            else None
        )
        dims = [embedding_dim or min(16, (card + 1) // 2) for card in cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in zip(cardinalities, dims))
        if vocab_sizes:  # absent otherwise, so the weights of a table of numbers and categories keep their names
            self.texts = nn.ModuleList(TokenBag(v, embedding_dim or 64) for v in vocab_sizes)
        if grids:
            self.grids = nn.ModuleList(ConvEncoder(int(g[0])) for g in grids)
        self.order = tuple(order or ["tokens"] * len(vocab_sizes or []))
        if sorted(self.order) != sorted(["tokens"] * len(vocab_sizes or []) + ["grid"] * len(grids or [])):
            raise ValueError(f"order {self.order} does not match {len(vocab_sizes or [])} text and {len(grids or [])} grid inputs")
        self._own = [(slot, self.order[:j].count(slot)) for j, slot in enumerate(self.order)]
        own = [*getattr(self, "texts", []), *getattr(self, "grids", [])]
        width = (n_numeric * self.numeric.out_width if self.numeric is not None else n_numeric) + sum(dims) + sum(m.out_dim for m in own)
        layers: list[nn.Module] = []
        for i, h in enumerate(hidden):
            layers += [EnsembleLinear(width, h, k, random_signs=i == 0), activation(activation_name)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        # Each member's own head: (k, width, n_out).
        self.head_weight = nn.Parameter(torch.empty(k, width, n_out).uniform_(-(width**-0.5), width**-0.5))
        self.head_bias = nn.Parameter(torch.zeros(k, n_out))

    def members(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *own: torch.Tensor) -> torch.Tensor:
        """(B, D) floats, (B, K) category indices and the text / image columns' tensors → (B, k, n_out)."""
        parts = [self.numeric(x).flatten(1) if self.numeric is not None else soft_clip(x)]  # (B, D·W) or (B, D)
        if len(self.embeddings):
            parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]  # K × (B, E_i)
        if own:  # one vector per text (B, L) or image/audio (B, C, H, W) column, in column order
            parts += [(self.texts[i] if slot == "tokens" else self.grids[i])(t) for (slot, i), t in zip(self._own, own)]
        h = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, F): every member reads the row
        h = self.body(h)  # (k, B, H)
        out = torch.baddbmm(self.head_bias[:, None, :], h, self.head_weight)  # (k, B, n_out)
        return out.transpose(0, 1)  # (B, k, n_out)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *own: torch.Tensor) -> torch.Tensor:
        return mean_prediction(self.members(x, x_cat, *own), self.output)  # (B, n_out)
