"""A small convolutional encoder: the `conv` encoder of image and audio columns in a table."""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import run_channels_last

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """A grid (B, C, H, W) → a vector (B, out_dim): two 3×3 convolution blocks (ReLU, the first
    max-pooled by 2), then the mean over positions, so any H and W of at least 2 work.

    Args:
        channels: C of the grid (3 for RGB, 1 for grayscale or a spectrogram).
        width: channels of the second block, and `out_dim`.
    """

    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width // 2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width // 2, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_channels_last(self.net, x)  # (B, width)
