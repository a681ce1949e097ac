"""A CNN over log-mel spectrograms, for spoken words and other short sound clips.

The input is what the audio preprocessor makes of a waveform (see `data/_audio.py`): a
standardised log-mel spectrogram, one channel, mel bands by time frames. Each block halves
both axes; the classifier reads the average of the last feature maps over time, band by band:
a word is recognised wherever it starts in the clip, while where in frequency a pattern lies
(a vowel's formants, a tone's pitch) is kept. A small net (≈ 30 k parameters at the default
widths and 40 mel bands) does not memorise the few voices it trains on.

Design choices, each for a reason:
- batch norm after every conv: the spectrogram's scale differs between voices and
  microphones more than between words;
- average pooling and a smooth activation (GELU by default): the network is smooth, so
  integrated-gradients explanations converge in few steps (see `evaluate/_explain.py`);
- dropout before the linear head only: the convs have few weights to regularise.
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.models._layers import activation

__all__ = ["AudioCNN"]


class AudioCNN(nn.Module):
    """Blocks of conv 3×3 → batch norm → activation → 2×2 average pool, an average over time, a linear head.

    Args:
        in_shape: (1, n_mels, frames) of the spectrograms.
        n_out: number of outputs (classes).
        channels: output channels of each block.
        activation_name: the activation after each batch norm.
        dropout: dropout before the head.
    """

    def __init__(
        self, in_shape: tuple[int, int, int], n_out: int, *, channels: list[int], activation_name: str = "gelu", dropout: float = 0.2
    ):
        super().__init__()
        c_in = in_shape[0]
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),  # (B, c_out, M, F)
                nn.BatchNorm2d(c_out),
                activation(activation_name),
                nn.AvgPool2d(2, ceil_mode=True),  # (B, c_out, ⌈M/2⌉, ⌈F/2⌉)
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        bands = -(-in_shape[1] // 2 ** len(channels))  # M' = ⌈M / 2^blocks⌉ (ceil-mode pooling)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(c_in * bands, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x)  # (B, C, M', F')
        z = z.mean(dim=3).flatten(1)  # (B, C·M'): average over time, each band kept
        return self.head(self.dropout(z))  # (B, n_out)
