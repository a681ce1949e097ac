"""Export of the model kinds the pipeline tests do not export: the Transformer over token ids, and
what a kind that cannot export prints (probe 7, item 5)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from trustforge.errors import ModelError
from trustforge.models.transformer import TransformerEncoder
from trustforge.package import OnnxModule, onnx_bytes


def _ids(batch: int, length: int, lengths: list[int], seed: int) -> torch.Tensor:
    """Token ids (batch, length), row i real for its first lengths[i] steps, padding (0) after."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 50, (batch, length), generator=g)
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    return x


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_a_text_transformer_exports_to_onnx_and_predicts_what_eager_does(pooling):
    """It failed with "ConversionError: Failed to convert the exported program": the cut of a batch
    to its longest text is a shape that depends on the data. The export runs at any batch size
    (the `cls` pooling's batch was frozen at the example's) and on texts longer than the example's."""
    torch.manual_seed(0)
    module = TransformerEncoder(3, vocab_size=50, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, pooling=pooling).eval()
    session = OnnxModule(onnx_bytes(module, (_ids(4, 12, [2, 3, 1, 3], seed=1),), kind="transformer"))
    other = _ids(7, 12, [12, 1, 5, 9, 12, 2, 7], seed=2)
    with torch.no_grad():
        assert torch.allclose(session(other), module(other), atol=1e-5)


def test_a_traced_text_transformer_does_not_keep_the_example_batchs_length():
    """A TorchScript trace froze the example batch's longest text (3 steps) into the graph: longer
    texts were read cut to 3 tokens."""
    torch.manual_seed(0)
    module = TransformerEncoder(2, vocab_size=50, d_model=16, nhead=2, num_layers=1, dim_feedforward=32).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, (_ids(2, 12, [3, 2], seed=1),), check_trace=False)
        longer = _ids(3, 12, [12, 8, 4], seed=2)
        assert torch.allclose(traced(longer), module(longer), atol=1e-5)


class _LevelsFromWeights(nn.Module):
    """A loop as long as a number its weights hold (as the gradient-boosted trees walk their levels):
    torch.export cannot follow it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("depth", torch.tensor(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(int(self.depth)):
            x = x * 2
        return x


def test_a_kind_that_cannot_export_is_one_plain_line_without_the_exporters_report(capfd, monkeypatch):
    """The message carried the exporter's colour codes and was cut at its "Next steps:"; torch's
    "Unable to find user code" warning reached the terminal too."""
    with pytest.raises(ModelError) as info:
        onnx_bytes(_LevelsFromWeights(), (torch.zeros(2, 3),), kind="example", hint="; serve it with --backend torch")
    message = str(info.value)
    assert message.startswith("model kind 'example' cannot be exported to ONNX ("), message
    assert message.endswith("; serve it with --backend torch"), message
    assert "\x1b" not in message and "Next steps" not in message and "step 3/3" not in message and "\n" not in message, message
    out, err = capfd.readouterr()
    assert "Unable to find user code" not in out + err and "symbolic_shapes" not in out + err, out + err

    def refuse(*args, **kwargs):  # the exporter's own wording, as torch 2.13 colours it
        raise RuntimeError(
            "Failed to convert the exported program to an ONNX model. \x1b[96mThis is step 3/3\x1b[0m of exporting the "
            "model to ONNX. Next steps:\n- Create an issue in the PyTorch GitHub repository"
        )

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(
        ModelError,
        match=r"^model kind 'mlp' cannot be exported to ONNX \(RuntimeError: Failed to convert the exported program to an ONNX model\.\)$",
    ):
        onnx_bytes(nn.Linear(2, 1), (torch.zeros(1, 2),), kind="mlp")
    assert logging.getLogger("torch.fx").level == logging.NOTSET  # the loggers quieted during the export are restored


def test_gradient_boosted_trees_export_to_onnx_and_torchscript_at_any_batch_size():
    """They could not: the walk's length was a number read from a weight (`int(self.depth)`), which
    the ONNX exporter cannot follow, and the TorchScript trace froze the example's batch size."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    from trustforge.models.trees import TreeEnsemble

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take their learned side
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0).astype(np.int64) + (np.nan_to_num(x[:, 2]) > 1)
    est = HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=7, random_state=0).fit(x, y)
    module = TreeEnsemble(4, 3, trees=15, nodes=13)
    module.load_fitted(est, np.asarray(est.classes_), logit_pair=False)
    reloaded = TreeEnsemble(4, 3, trees=15, nodes=13)
    reloaded.load_state_dict(module.state_dict())  # as a package rebuilds it: the walk's length comes back
    rows = torch.from_numpy(x[:37]).float()
    with torch.no_grad():
        eager = reloaded.eval()(rows)
        assert torch.equal(eager.argmax(1), torch.from_numpy(est.predict(x[:37])))
        session = OnnxModule(onnx_bytes(reloaded, (torch.from_numpy(x[:4]).float(),), kind="hist_gradient_boosting"))
        assert torch.allclose(session(rows), eager, atol=1e-5)
        traced = torch.jit.trace(reloaded, (torch.from_numpy(x[:4]).float(),), check_trace=False)
        assert torch.allclose(traced(rows), eager, atol=1e-6)


def test_tabm_exports_to_torchscript_int8():
    """It failed ("'function' object has no attribute 't'"): TabM's weight-sharing members read
    `linear.weight` themselves, which a dynamically quantised Linear no longer has. Only the Linear
    layers the forward pass calls as layers (the head) are quantised; the members stay float."""
    import io

    from trustforge.models.tabm import TabM
    from trustforge.package._export import _torchscript_bytes

    torch.manual_seed(0)
    module = TabM(5, [3, 4], 3, output="classes", k=4, hidden=[16, 16]).eval()
    rows = (torch.randn(9, 5), torch.stack([torch.randint(0, 3, (9,)), torch.randint(0, 4, (9,))], 1))
    loaded = torch.jit.load(io.BytesIO(_torchscript_bytes(module, tuple(t[:4] for t in rows), "int8", "tabm")))
    with torch.no_grad():
        eager, quantised = module(*rows), loaded(*rows)
    assert quantised.shape == eager.shape and torch.allclose(quantised, eager, atol=0.05)
