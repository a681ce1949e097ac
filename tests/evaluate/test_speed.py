"""measure_speed: sane figures, its contract on modes and batches, and its time budget."""

from __future__ import annotations

import json
import time

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from trustforge.evaluate._speed import measure_speed

KEYS = {
    "train_samples_per_s",
    "latency_ms",
    "throughput_samples_per_s",
    "batch_size",
    "repeats",
    "parameters",
    "package_bytes",
    "peak_memory_mb",
    "peak_memory_method",
    "threads",
    "seconds",
}


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    x, _ = load_digits(return_X_y=True)
    return (torch.tensor(x[:300] / 16.0, dtype=torch.float32),)


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_figures_are_sane_and_within_budget(digits, tmp_path) -> None:
    package = tmp_path / "pkg"
    (package / "weights").mkdir(parents=True)
    (package / "manifest.json").write_bytes(b"x" * 1000)
    (package / "weights" / "model.safetensors").write_bytes(b"y" * 2345)
    module = small_mlp()
    t0 = time.perf_counter()
    speed = measure_speed(module, digits, fit_seconds=2.0, train_samples=1000, epochs=3, package_dir=package)
    elapsed = time.perf_counter() - t0
    json.dumps(speed)
    assert set(speed) == KEYS
    assert elapsed < 3.0 * 1.3  # the default budget, with slack for a shared machine
    assert speed["seconds"] <= elapsed
    lat = speed["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] < 1000
    assert lat["n"] >= 200  # a 2-layer MLP makes a well-founded p99 within the budget
    assert speed["throughput_samples_per_s"] > 0
    assert speed["batch_size"] == 256 and 1 <= speed["repeats"] <= 7
    assert speed["train_samples_per_s"] == pytest.approx(1500.0)
    assert speed["parameters"] == 64 * 32 + 32 + 32 * 10 + 10
    assert speed["package_bytes"] == 3345
    assert speed["threads"] == torch.get_num_threads()
    assert speed["peak_memory_method"] in {"vmhwm", "ru_maxrss"}
    assert speed["peak_memory_mb"] is None or speed["peak_memory_mb"] >= 0


def test_batched_throughput_beats_single_calls(digits) -> None:
    # One intra-op thread: on a loaded 2-core machine two threads can wait on each other for
    # milliseconds per call, which is a real figure but not the one this test is about.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        speed = measure_speed(small_mlp(), digits, fit_seconds=1.0, train_samples=1, epochs=1, seconds_budget=0.5)
    finally:
        torch.set_num_threads(threads)
    assert speed["threads"] == 1
    # A batch of 256 amortises the per-call overhead that dominates a batch of 1.
    assert speed["throughput_samples_per_s"] > 5 * 1000 / speed["latency_ms"]["p50"]


def test_no_package_and_no_fit_time(digits) -> None:
    speed = measure_speed(small_mlp(), digits, fit_seconds=0.0, train_samples=10, epochs=1, seconds_budget=0.3)
    assert speed["package_bytes"] is None
    assert speed["train_samples_per_s"] is None


class Recorder(nn.Module):
    """Two inputs (token ids and a float feature); records how it was called."""

    def __init__(self, sleep: float = 0.0, allocate_mb: int = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.head = nn.Linear(9, 2)
        self.sleep, self.allocate_mb = sleep, allocate_mb
        self.calls: list[tuple[int, bool, bool]] = []

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((ids.shape[0], self.training, torch.is_grad_enabled()))
        if self.sleep:
            time.sleep(self.sleep)
        if self.allocate_mb and ids.shape[0] > 1:
            # Touch every page, so the memory is resident, not just reserved.
            torch.ones(self.allocate_mb * 2**20 // 4).sum()
        return self.head(torch.cat([self.embed(ids).mean(1), x], dim=1))


def test_eval_mode_no_grad_and_cycled_batches() -> None:
    module = Recorder()
    module.train()
    ids, x = torch.randint(0, 50, (5, 7)), torch.randn(5, 1)
    speed = measure_speed(module, (ids, x), fit_seconds=1.0, train_samples=5, epochs=1, batch_size=64, seconds_budget=0.3)
    assert module.training  # the caller's mode is restored
    assert all(not training and not grad for _, training, grad in module.calls)
    sizes = {size for size, _, _ in module.calls}
    assert sizes == {1, 64}  # 5 samples cycled up to a full batch of 64
    assert speed["batch_size"] == 64


def test_a_slow_model_keeps_to_the_budget() -> None:
    module = Recorder(sleep=0.05)
    ids, x = torch.randint(0, 50, (8, 3)), torch.randn(8, 1)
    t0 = time.perf_counter()
    speed = measure_speed(module, (ids, x), fit_seconds=1.0, train_samples=8, epochs=1, seconds_budget=0.5)
    elapsed = time.perf_counter() - t0
    # Fewer calls rather than a longer run: budget plus about four calls of slack.
    assert elapsed < 0.5 + 4 * 0.05 + 0.3
    assert 1 <= speed["latency_ms"]["n"] < 200
    assert speed["latency_ms"]["p50"] >= 50.0
    assert speed["repeats"] < 7


def test_peak_memory_sees_an_inference_allocation() -> None:
    module = Recorder(allocate_mb=96)
    ids, x = torch.randint(0, 50, (4, 3)), torch.randn(4, 1)
    speed = measure_speed(module, (ids, x), fit_seconds=1.0, train_samples=4, epochs=1, repeats=2, seconds_budget=0.5)
    if speed["peak_memory_method"] != "vmhwm":
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak; ru_maxrss only gives a lower bound")
    assert 80 <= speed["peak_memory_mb"] < 400


@pytest.mark.parametrize(
    "inputs, kwargs, match",
    [
        ((), {}, "at least one tensor"),
        ((torch.zeros(0, 3),), {}, "at least one sample"),
        ((torch.zeros(3, 2), torch.zeros(4, 2)), {}, "same number of samples"),
        ((torch.zeros(3, 64),), {"batch_size": 0}, "batch_size"),
        ((torch.zeros(3, 64),), {"seconds_budget": 0}, "seconds_budget"),
    ],
)
def test_rejects_bad_arguments(inputs, kwargs, match, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        measure_speed(small_mlp(), inputs, fit_seconds=1.0, train_samples=1, epochs=1, **kwargs)


def test_rejects_a_missing_package_dir(digits, tmp_path) -> None:
    with pytest.raises(ValueError, match="package_dir"):
        measure_speed(small_mlp(), digits, fit_seconds=1.0, train_samples=1, epochs=1, package_dir=tmp_path / "absent", seconds_budget=0.2)
