"""measure_speed: sane figures, its contract on modes and batches, its minimum call count and
time budget, load marking; and the run's figures against an independent measurement."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.datasets import load_digits
from torch import nn

import trustforge
from trustforge.data import prepare
from trustforge.evaluate._speed import MIN_CALLS, measure_speed
from trustforge.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

KEYS = {
    "predict",
    "forward",
    "load",
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
    fwd = speed["forward"]
    assert (fwd["p50_ms"], fwd["p95_ms"], fwd["p99_ms"], fwd["calls"]) == (lat["p50"], lat["p95"], lat["p99"], lat["n"])
    assert fwd["batch"] == 1 and fwd["std_ms"] >= 0 and fwd["mean_ms"] > 0
    assert speed["predict"] is None  # no request given
    assert set(speed["load"]) == {"load_average", "cores", "loaded"}
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


def test_a_slow_model_gets_the_minimum_count_not_one_call() -> None:
    # A 20 ms model and a 0.2 s budget: the budget alone would allow 10 calls; the figures
    # rest on the minimum count, and nothing more than that is spent.
    module = Recorder(sleep=0.02)
    ids, x = torch.randint(0, 50, (8, 3)), torch.randn(8, 1)
    speed = measure_speed(module, (ids, x), fit_seconds=1.0, train_samples=8, epochs=1, seconds_budget=0.2, min_calls=20)
    assert speed["forward"]["calls"] == 20
    assert speed["forward"]["p50_ms"] >= 20.0
    # what was spent, counted in calls (a wall-clock bound failed on a loaded CI machine):
    # warm-up, the timed calls and the throughput batches, and nothing more
    assert len(module.calls) <= 10 + 20 + 8, len(module.calls)
    assert speed["repeats"] < 7  # throughput still keeps to its share of the budget


def test_predict_request_figures_rest_on_at_least_min_calls() -> None:
    calls = []

    def request():
        calls.append(1)
        time.sleep(0.002)

    speed = measure_speed(
        small_mlp(),
        (torch.zeros(3, 64),),
        fit_seconds=1.0,
        train_samples=3,
        epochs=1,
        request=request,
        request_input="x",
        seconds_budget=0.01,
    )
    pred = speed["predict"]
    assert pred["calls"] == MIN_CALLS == 50  # a tiny budget cannot cut the count
    assert len(calls) == MIN_CALLS + 5  # plus the warm-up calls, which are not timed
    assert pred["batch"] == 1 and pred["input"] == "x"
    assert 2.0 <= pred["p50_ms"] <= pred["p95_ms"] <= pred["p99_ms"]
    assert pred["mean_ms"] >= 2.0 and pred["std_ms"] >= 0


def test_load_is_marked_when_the_load_average_exceeds_the_cores(monkeypatch) -> None:
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.5, 1.0, 1.0))
    speed = measure_speed(small_mlp(), (torch.zeros(3, 64),), fit_seconds=1.0, train_samples=3, epochs=1, seconds_budget=0.05)
    assert speed["load"] == {"load_average": 3.5, "cores": 2, "loaded": True}
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    speed = measure_speed(small_mlp(), (torch.zeros(3, 64),), fit_seconds=1.0, train_samples=3, epochs=1, seconds_budget=0.05)
    assert speed["load"] == {"load_average": 1.5, "cores": 2, "loaded": False}


_PEAK_SCRIPT = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from test_speed import Recorder
from trustforge.evaluate._speed import measure_speed
module = Recorder(allocate_mb=96)
ids, x = torch.randint(0, 50, (4, 3)), torch.randn(4, 1)
speed = measure_speed(module, (ids, x), fit_seconds=1.0, train_samples=4, epochs=1, repeats=2, seconds_budget=0.5)
print(json.dumps({k: speed[k] for k in ("peak_memory_mb", "peak_memory_method")}))
"""


def test_peak_memory_sees_an_inference_allocation() -> None:
    # In a fresh interpreter: the peak is the process's, so memory that other threads of a long
    # test session free during the measurement (left-over servers, loaders) would hide the growth.
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(Path(__file__).parent)], capture_output=True, text=True, timeout=300, check=True
    )
    speed = json.loads(out.stdout.strip().splitlines()[-1])
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
        ((torch.zeros(3, 64),), {"min_calls": 0}, "min_calls"),
    ],
)
def test_rejects_bad_arguments(inputs, kwargs, match, tmp_path) -> None:
    with pytest.raises(ValueError, match=match):
        measure_speed(small_mlp(), inputs, fit_seconds=1.0, train_samples=1, epochs=1, **kwargs)


def test_rejects_a_missing_package_dir(digits, tmp_path) -> None:
    with pytest.raises(ValueError, match="package_dir"):
        measure_speed(small_mlp(), digits, fit_seconds=1.0, train_samples=1, epochs=1, package_dir=tmp_path / "absent", seconds_budget=0.2)


# ---------------------------------------------------------------------------- the run's figures


def _independent_p50_ms(call, calls: int = 60) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


@pytest.mark.parametrize(
    "example, row",
    [
        ("digits_cnn.yaml", lambda raw: raw.images[:1]),
        ("breast_cancer_mlp.yaml", lambda raw: raw.frame.iloc[:1].drop(columns=[raw.target])),
    ],
)
def test_run_latency_matches_an_independent_measurement_of_model_predict(example, row) -> None:
    spec = yaml.safe_load((EXAMPLES / example).read_text())
    spec["train"]["max_epochs"] = 2
    spec["evaluate"] = {**spec.get("evaluate", {}), "corruptions": False, "explain": False}
    result = trustforge.run(spec, progress=False, register=False)
    speed = json.loads((result.run_dir / "evidence.json").read_text())["speed"]
    assert speed == result.metrics["speed"]
    pred, fwd = speed["predict"], speed["forward"]
    assert pred["calls"] >= 50 and fwd["calls"] >= 50 and pred["batch"] == fwd["batch"] == 1
    assert pred["input"] == ("one image" if "digits" in example else "one table row")
    assert set(speed["load"]) == {"load_average", "cores", "loaded"}

    model = result.load_model()
    raw = prepare(result.spec, cache_dir=Settings.from_env().cache_dir).test_raw
    x = row(raw)
    assert len(model.predict(x)) == 1
    # The same call, timed in this process by plain perf_counter: the run's figure is within
    # 2x of it (before this issue it timed the forward pass only, 10-1000x faster). On a shared
    # machine the load can change between the run's measurement and this one, so up to three
    # independent measurements are taken, stopping at the first that agrees.
    independent = []
    for _ in range(3):
        independent.append(_independent_p50_ms(lambda: model.predict(x)))
        if independent[-1] / 2 <= pred["p50_ms"] <= independent[-1] * 2:
            break
    else:
        raise AssertionError(f"run's predict p50 {pred['p50_ms']:.3f} ms, independent p50s {independent} ms; load {speed['load']}")
    assert fwd["p50_ms"] < pred["p50_ms"]  # the network is one part of a prediction


def test_one_row_request_hands_predict_one_row_as_a_user_would() -> None:
    import pandas as pd

    from trustforge.data import RawData
    from trustforge.errors import DataError
    from trustforge.evaluate._speed import one_row_request

    class TableModel:  # refuses the target column, predicts one row per input row
        def predict(self, frame):
            if not isinstance(frame, pd.DataFrame) or "y" in frame:
                raise DataError("no")
            return frame

    raw = RawData("table", "y", "test", frame=pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0, 1, 0]}))
    call, what = one_row_request(TableModel(), raw)
    assert what == "one table row" and list(call().columns) == ["a"] and len(call()) == 1

    class Forecaster:  # needs at least 3 values; one forecast of 2 steps
        def predict(self, frame):
            if len(frame) < 3:
                raise DataError("too short")
            return pd.DataFrame({"step": [1, 2]})

    series = RawData("series", "y", "test", frame=pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0]}))
    call, what = one_row_request(Forecaster(), series)
    assert what == "one series (one forecast)" and len(call()) == 2

    class Refuses:
        def predict(self, value):
            raise DataError("never")

    assert one_row_request(Refuses(), raw) is None
