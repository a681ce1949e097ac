"""Training-time image augmentation as a batch transform driven by an explicit generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ImageAugment"]


class ImageAugment:
    """Random translation (zero padding, i.e. the channel mean after standardising) and flips.

    Args:
        shift: largest translation in pixels along each axis.
        hflip: flip half of the images left-right.
    """

    def __init__(self, shift: int = 0, hflip: bool = False):
        self.shift = shift
        self.hflip = hflip

    def __bool__(self) -> bool:
        return self.shift > 0 or self.hflip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape  # (B, C, H, W)
        if self.hflip:
            flip = torch.rand(b, generator=generator) < 0.5
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        if self.shift:
            s = self.shift
            padded = F.pad(x, (s, s, s, s))  # (B, C, H+2s, W+2s)
            dy = torch.randint(0, 2 * s + 1, (b,), generator=generator)
            dx = torch.randint(0, 2 * s + 1, (b,), generator=generator)
            rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # (B, 1, 1, W)
            batch = torch.arange(b)[:, None, None, None]
            chan = torch.arange(x.shape[1])[None, :, None, None]
            x = padded[batch, chan, rows, cols]  # (B, C, H, W)
        return x
