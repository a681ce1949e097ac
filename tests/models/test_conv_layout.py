"""`run_channels_last` (models/_layers.py), as `CNN` (models/cnn.py) and `ConvEncoder`
(models/conv_encoder.py) call it on the CPU: the same outputs and gradients as the layers
called in the default layout, and parameters left in the default layout (safetensors saves only
contiguous tensors)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trustforge.models._layers import run_channels_last
from trustforge.models.cnn import CNN
from trustforge.models.conv_encoder import ConvEncoder


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: CNN((3, 16, 16), 4, channels=[8, 16], batch_norm=True, hidden=[8]), (3, 16, 16)),
        (lambda: ConvEncoder(1, width=8), (1, 12, 10)),  # one channel: its layouts look alike
    ],
    ids=["cnn", "conv_encoder"],
)
def test_channels_last_gives_the_default_layouts_values_and_gradients(make, shape):
    torch.manual_seed(0)
    model = make()
    seq = model.features if isinstance(model, CNN) else model.net
    x = torch.randn(5, *shape)
    results = []
    for run in (run_channels_last, nn.Sequential.forward):  # ours, then the layers in the default layout
        out = run(seq, x)
        results.append((out, torch.autograd.grad(out.square().sum(), list(seq.parameters()))))
    (ours, ours_grads), (plain, plain_grads) = results
    assert ours.dim() != 4 or ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(ours_grads, plain_grads):  # float sums in another order: close to each gradient's scale
        torch.testing.assert_close(a, b, atol=1e-5 * float(b.abs().max()), rtol=1e-4)
    assert all(t.is_contiguous() for t in model.state_dict().values())
