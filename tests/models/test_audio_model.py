"""The audio CNN: shapes, learning on tones through the real front end, smooth explanations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from trustforge.data import Schema
from trustforge.data._audio import FrontEnd
from trustforge.errors import ModelError
from trustforge.evaluate._explain import explain_images
from trustforge.models import AudioCNN, build_model
from trustforge.spec import load_spec

RATE = 8000
FREQS = (300.0, 700.0, 1500.0, 3000.0)  # one class per pitch


def tones(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clips of 0.5 s: a tone of the class's pitch (±5 %), random onset, length and level, light noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(FREQS), size=n)
    waves = np.zeros((n, RATE // 2), dtype=np.float32)
    for i, k in enumerate(y):
        start, length = rng.integers(0, 1500), rng.integers(800, 2000)
        t = np.arange(length) / RATE
        waves[i, start : start + length] = rng.uniform(0.05, 0.8) * np.sin(2 * np.pi * FREQS[k] * rng.uniform(0.95, 1.05) * t)
    waves += rng.normal(0, 0.01, size=waves.shape).astype(np.float32)
    return waves, y


@pytest.mark.parametrize("shape", [(1, 40, 101), (1, 13, 7), (1, 64, 51)])
def test_shapes(shape):
    model = AudioCNN(shape, 10, channels=[16, 32, 64])
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) < 30_000


def test_it_learns_pitch_classes_through_the_front_end():
    front = FrontEnd(sample_rate=RATE, samples=RATE // 2, n_fft=256, hop_length=80, n_mels=32, fmax=RATE / 2)
    train_w, train_y = tones(240, seed=0)
    test_w, test_y = tones(120, seed=1)
    tensors = front.fit(train_w)
    x_train, x_test = front.encode(train_w, tensors), front.encode(test_w, tensors)  # (N, 1, 32, 51)
    torch.manual_seed(0)
    model = AudioCNN(front.input_shape, len(FREQS), channels=[8, 16])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    y = torch.from_numpy(train_y)
    for _ in range(8):
        model.train()
        for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(32):
            loss = nn.functional.cross_entropy(model(x_train[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1).numpy() == test_y).mean())
    assert accuracy >= 0.9, accuracy  # chance is 0.25

    # Smooth by design (GELU, average pooling, batch norm): integrated gradients meet the
    # completeness check at the first 50 steps, with no escalation.
    with warnings.catch_warnings():  # Captum notes that it switched requires_grad on: expected
        warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
        info, maps = explain_images(model, x_test, torch.from_numpy(test_y), per_class=2, seed=0)
    assert info["completeness_gap"] < 1e-3 and all(e["n_steps"] == 50 for e in info["examples"])
    assert maps["ig"].shape == (8, *front.input_shape)


def test_build_model_checks_the_modality():
    front = FrontEnd(sample_rate=RATE, samples=RATE)
    audio = Schema("audio", "classification", "label", classes=list("abc"), audio=front.to_dict())
    image = Schema("image", "classification", "label", classes=list("abc"), image_shape=(1, 8, 8))
    model = build_model(load_spec({"model": {"kind": "audio_cnn", "channels": [4]}}), audio)
    assert isinstance(model, AudioCNN) and model(torch.zeros(2, *front.input_shape)).shape == (2, 3)
    with pytest.raises(ModelError, match="audio_cnn' needs audio data"):
        build_model(load_spec({"model": {"kind": "audio_cnn"}}), image)
    with pytest.raises(ModelError, match="needs image data"):
        build_model(load_spec({"model": {"kind": "cnn"}}), audio)
