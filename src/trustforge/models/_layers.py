"""Small building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn

__all__ = ["activation", "mlp_layers"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by its spec name."""
    return _ACTIVATIONS[name]()


def mlp_layers(n_in: int, hidden: list[int], n_out: int, *, act: str, dropout: float, batch_norm: bool) -> nn.Sequential:
    """Linear → [BatchNorm] → activation → [Dropout] for each hidden size, then a linear head."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(n_in, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)
