"""An ensemble of networks trained apart: the weighted mean of their predictions.

Classification members are averaged as probabilities (a mixture), not as logits, and the mean is
returned as log-probabilities, which are logits of the same probabilities: softmax(log p) = p, and
for one logit, logit(p). Regression and forecasting members are averaged as values. The members
are trained one after another by the pipeline (`model.kind: ensemble`), each as its own run would
train it; this module only combines them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

_TINY = 1e-7  # probabilities are kept within [_TINY, 1 - _TINY] before the log, so a logit stays finite


class Ensemble(nn.Module):
    """The weighted mean of `members`' outputs.

    Args:
        members: networks that take the same inputs and return outputs of the same shape.
        weights: one per member, summing to 1.
        output: "classes" (logits over classes), "logit" (one logit of a binary task) or "value".
    """

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float], output: str):
        super().__init__()
        if len(members) != len(weights) or len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members and one weight each; got {len(members)} and {len(weights)}")
        if output not in ("classes", "logit", "value"):
            raise ValueError(f"output must be classes, logit or value; got {output!r}")
        self.members = nn.ModuleList(members)
        # Not saved with the weights: the spec holds them, and the package rebuilds the module from it.
        self.register_buffer("weights", torch.tensor(list(weights), dtype=torch.float32), persistent=False)
        self.output = output

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(*inputs).float() for m in self.members])  # (members, batch, ...)
        w = self.weights.reshape(-1, *([1] * (outs.dim() - 1)))
        if self.output == "value":
            return (w * outs).sum(0)
        if self.output == "classes":
            p = (w * torch.softmax(outs, dim=-1)).sum(0)
            return torch.log(p.clamp_min(_TINY))
        p = (w * torch.sigmoid(outs)).sum(0).clamp(_TINY, 1 - _TINY)
        return torch.log(p) - torch.log1p(-p)
