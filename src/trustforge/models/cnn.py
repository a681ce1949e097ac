"""Convolutional network: conv blocks, then an MLP classifier.

The classic 3×32×32 example (two 3×3 convs with padding 1, 2×2 max-pool after each) flattens
to 64·8·8, not the 64·7·7 often copied from MNIST code: here the size is measured by passing
a dummy input through the blocks, so it is right for every input shape.
"""

from __future__ import annotations

import torch
from torch import nn

from trustforge.errors import ModelError
from trustforge.models._layers import activation, mlp_layers, run_channels_last

__all__ = ["CNN"]


class CNN(nn.Module):
    """Blocks of `convs_per_block` × (conv → [BN] → activation), each followed by a pool.

    Args:
        in_shape: (C, H, W) of the input images.
        n_out: number of outputs.
        channels: output channels of each block.
        padding: an int, or "same" (kernel_size // 2) to keep the spatial size through convs.
        pool: "max", "avg" or "none"; applied after each block with `pool_size`.
        global_pool: average over space before the classifier instead of flattening.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_out: int,
        *,
        channels: list[int],
        kernel_size: int = 3,
        padding: int | str = "same",
        convs_per_block: int = 1,
        pool: str = "max",
        pool_size: int = 2,
        global_pool: bool = False,
        batch_norm: bool = False,
        activation_name: str = "relu",
        hidden: list[int] | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        pad = kernel_size // 2 if padding == "same" else int(padding)
        c_in = in_shape[0]
        layers: list[nn.Module] = []
        for c_out in channels:
            for _ in range(convs_per_block):
                layers.append(nn.Conv2d(c_in, c_out, kernel_size, padding=pad, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(activation(activation_name))
                c_in = c_out
            if pool == "max":
                layers.append(nn.MaxPool2d(pool_size, ceil_mode=True))
            elif pool == "avg":
                layers.append(nn.AvgPool2d(pool_size, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.global_pool = global_pool
        with torch.no_grad():
            out = self.features(torch.zeros(1, *in_shape))  # (1, C', H', W')
        if out.shape[-1] < 1 or out.shape[-2] < 1:
            raise ModelError(f"model: the conv blocks shrink a {in_shape} input to nothing; use fewer blocks or padding")
        flat = out.shape[1] if global_pool else out[0].numel()
        self.flat_features = flat
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = mlp_layers(flat, hidden or [], n_out, act=activation_name, dropout=dropout, batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_channels_last(self.features, x)  # (B, C', H', W')
        x = x.mean(dim=(2, 3)) if self.global_pool else x.flatten(1)  # (B, F)
        return self.classifier(self.dropout(x))  # (B, n_out)
