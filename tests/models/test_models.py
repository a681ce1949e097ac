"""Architectures: shapes, flatten sizes, embeddings, and that each kind learns."""

from __future__ import annotations

import pytest
import torch

from trustforge.data import Column, Schema
from trustforge.errors import ModelError
from trustforge.models import CNN, MLP, RNN, build_model
from trustforge.spec import load_spec


def test_classic_cnn_flattens_to_64x8x8_for_32x32_inputs():
    # The tutorial's 64·7·7 is the MNIST (28×28) figure; 32×32 halves twice to 8×8.
    net = CNN((3, 32, 32), 10, channels=[32, 64], kernel_size=3, padding=1, pool="max", pool_size=2, hidden=[128])
    assert net.flat_features == 64 * 8 * 8
    assert net(torch.zeros(5, 3, 32, 32)).shape == (5, 10)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4096, 128), (128, 10)]


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (1, 5, 7)])
def test_cnn_flatten_size_is_measured_for_any_input(shape):
    net = CNN(shape, 4, channels=[8, 16], padding="same")
    assert net(torch.zeros(2, *shape)).shape == (2, 4)


def test_cnn_global_pool_uses_channels_only():
    net = CNN((3, 32, 32), 10, channels=[8, 16, 32], global_pool=True)
    assert net.flat_features == 32


def test_mlp_embeds_categoricals_beside_numerics():
    net = MLP(3, [5, 4], 2, hidden=[8])
    emb_dims = [e.embedding_dim for e in net.embeddings]
    assert emb_dims == [3, 2]  # min(16, (card + 1) // 2)
    assert net.net[0].in_features == 3 + 5
    out = net(torch.randn(6, 3), torch.tensor([[0, 1], [4, 3], [2, 0], [1, 1], [3, 2], [0, 0]]))
    assert out.shape == (6, 2)


def test_mlp_flattens_images():
    net = MLP(64, [], 10, hidden=[16], batch_norm=True, activation="tanh")
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)


@pytest.mark.parametrize(
    "cell,bidirectional,pooling", [("lstm", False, "last"), ("gru", True, "last"), ("lstm", True, "mean"), ("gru", False, "max")]
)
def test_rnn_reads_sequences_and_images_row_by_row(cell, bidirectional, pooling):
    net = RNN(8, 10, cell=cell, hidden_size=16, num_layers=2, bidirectional=bidirectional, pooling=pooling)
    assert net(torch.randn(3, 8, 8)).shape == (3, 10)  # (B, T, F)
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 10)  # (B, C, H, W) → 8 steps of 8


def test_rnn_bidirectional_last_pooling_sees_the_whole_sequence_both_ways():
    torch.manual_seed(0)
    net = RNN(2, 1, cell="gru", hidden_size=4, bidirectional=True).eval()
    x = torch.randn(1, 5, 2)
    changed_first = x.clone()
    changed_first[0, 0] += 1.0
    changed_last = x.clone()
    changed_last[0, -1] += 1.0
    base = net(x)
    assert not torch.allclose(base, net(changed_first))
    assert not torch.allclose(base, net(changed_last))


def _table_schema(classes=("a", "b", "c")):
    return Schema(
        "table", "classification", "y", classes=list(classes), columns=[Column("x1", "numeric"), Column("c", "categorical", vocabulary=4)]
    )


def test_build_model_refuses_cnn_and_rnn_over_tables():
    for model in ({"kind": "cnn"}, {"kind": "rnn"}):
        spec = load_spec({"data": {"source": "csv:x.csv", "target": "y"}, "model": model})
        with pytest.raises(ModelError, match="model.kind"):
            build_model(spec, _table_schema())


def test_bce_needs_two_classes():
    spec = load_spec({"model": {"kind": "mlp"}, "train": {"loss": "bce"}})
    with pytest.raises(ModelError, match="2 classes"):
        build_model(spec, _table_schema())
    net = build_model(spec, _table_schema(("no", "yes")))
    assert net(torch.randn(2, 1), torch.tensor([[1], [2]])).shape == (2, 1)


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "mlp", "hidden": [32]},
        {"kind": "cnn", "channels": [8, 16], "hidden": [32]},
        {"kind": "rnn", "cell": "gru", "hidden_size": 32},
    ],
)
def test_every_kind_learns_digits_in_a_few_epochs(model):
    """A short run of each model kind reaches accuracy far above chance (0.1) on held-out digits."""
    import trustforge

    result = trustforge.run(
        {
            "name": f"digits-{model['kind']}",
            "model": model,
            "train": {"max_epochs": 4, "optimizer": {"name": "adam", "lr": 0.005}, "early_stopping": None},
        },
        progress=False,
    )
    assert result.metrics["accuracy"] > 0.7, result.metrics["accuracy"]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
