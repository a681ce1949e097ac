"""How fast a model trains and predicts, and what it costs: the speed part of a run's evidence.

Every figure is measured after warm-up (the first calls pay for allocator growth, lazy
initialisation and cache misses that a serving process pays once), and the timings are
per-call ``time.perf_counter`` readings summarised by medians and percentiles, so one
descheduled call on a shared machine moves a tail percentile, not the headline figure.

The whole measurement runs inside a wall-clock budget (``seconds_budget``, 3 s by default):
it is part of every run, and a run on a 2-core CI box must not spend a minute timing a
model that predicts in a millisecond. The number of calls actually made is reported next
to the figures, so a reader can see how much a tail percentile rests on.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["measure_speed"]

# Calls at batch size 1: up to this many (more only re-measures the same figure) or until the
# latency share of the budget is spent. A small model makes them all well within the budget;
# a p99 needs a few hundred calls to rest on more than one or two of them.
_MAX_LATENCY_CALLS = 2000
_WARMUP_CALLS = 10

# Shares of the budget: warm-up, batch-1 latency, batched throughput (the rest is bookkeeping).
_WARMUP_SHARE = 0.1
_LATENCY_SHARE = 0.45
_THROUGHPUT_SHARE = 0.4

_PROC_STATUS = Path("/proc/self/status")
_PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def measure_speed(
    module: nn.Module,
    inputs: tuple[Tensor, ...],
    *,
    fit_seconds: float,
    train_samples: int,
    epochs: int,
    package_dir: Path | None = None,
    batch_size: int = 256,
    repeats: int = 7,
    seconds_budget: float = 3.0,
) -> dict[str, Any]:
    """Measure training throughput, inference latency and throughput, size and memory.

    The module is called as ``module(*inputs)`` under ``torch.no_grad()`` in eval mode (its
    previous mode is restored afterwards). Latency uses the first sample of ``inputs`` at
    batch size 1; throughput uses a batch of ``batch_size`` rows cycled from ``inputs`` (so a
    small evaluation set still yields a full batch).

    Args:
        module: The trained network.
        inputs: Encoded model inputs, each tensor with the samples on dimension 0 (e.g.
            ``Prepared.test.inputs``); at least one sample.
        fit_seconds: Wall-clock seconds the training loop took.
        train_samples: Samples in the training split (one epoch).
        epochs: Epochs actually run (early stopping may stop before the maximum).
        package_dir: The written model package, whose files are summed for its size; ``None``
            when there is no package yet.
        batch_size: Batch size of the throughput measurement.
        repeats: Timed batched calls whose median gives the throughput (fewer when one call
            takes more than its share of the budget; at least one).
        seconds_budget: Wall-clock seconds the measurement aims to stay within. A model whose
            single call takes longer than the budget still gets one warm-up call and one timed
            call of each kind, so the budget can be exceeded by about four calls.

    Returns:
        A JSON-serialisable dict:
        ``train_samples_per_s`` (``train_samples * epochs / fit_seconds``, ``None`` when
        ``fit_seconds`` is not positive); ``latency_ms``: ``{"p50", "p95", "p99", "n"}`` at
        batch size 1 with ``n`` the number of timed calls; ``throughput_samples_per_s`` (median
        over the timed batched calls); ``batch_size`` and ``repeats`` (what was actually used);
        ``parameters``; ``package_bytes`` (``None`` without a package); ``peak_memory_mb``
        (growth of the process's peak resident memory during the batched inference, over
        the resident memory before it, ``None`` where the platform cannot tell);
        ``peak_memory_method`` (how it was measured, see ``_PeakRss``); ``threads``
        (``torch.get_num_threads()``); ``seconds`` (the wall-clock time this call took).

    Raises:
        ValueError: If ``inputs`` is empty, holds no sample or tensors of different lengths,
            or a count, time or budget is out of range.
    """
    started = time.perf_counter()
    inputs = tuple(inputs)
    if not inputs:
        raise ValueError("`inputs` must hold at least one tensor; got none")
    n = int(inputs[0].shape[0]) if inputs[0].ndim else 0
    if n == 0:
        raise ValueError("`inputs` must hold at least one sample; got 0")
    lengths = [int(t.shape[0]) if t.ndim else 0 for t in inputs]
    if len(set(lengths)) != 1:
        raise ValueError(f"every tensor in `inputs` must hold the same number of samples; got {lengths}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size}")
    if repeats < 1:
        raise ValueError(f"`repeats` must be an int >= 1; got {repeats}")
    if not seconds_budget > 0:
        raise ValueError(f"`seconds_budget` must be a float > 0; got {seconds_budget}")
    if train_samples < 0 or epochs < 0:
        raise ValueError(f"`train_samples` and `epochs` must be >= 0; got {train_samples} and {epochs}")

    package_bytes = _package_bytes(package_dir)  # first: a wrong path fails before any timing
    device = _device_of(module)
    inputs = tuple(t.to(device) for t in inputs)
    one = tuple(t[:1] for t in inputs)  # batch size 1: (1, ...)
    rows = torch.arange(batch_size, device=device) % n  # cycle a small set up to a full batch
    batch = tuple(t[rows] for t in inputs)  # (batch_size, ...)

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            latencies = _latencies(module, one, device, seconds_budget)
            per_call, peak_mb, method = _throughput(module, batch, device, repeats, seconds_budget * _THROUGHPUT_SHARE)
    finally:
        module.train(was_training)

    latency_ms = np.asarray(latencies) * 1e3
    # Linear interpolation between order statistics (numpy's default) is monotone in q, so
    # p50 <= p95 <= p99 holds for any sample.
    p50, p95, p99 = (float(v) for v in np.percentile(latency_ms, [50, 95, 99]))
    return {
        "train_samples_per_s": float(train_samples * epochs / fit_seconds) if fit_seconds > 0 else None,
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99, "n": len(latencies)},
        "throughput_samples_per_s": float(batch_size / float(np.median(per_call))),
        "batch_size": int(batch_size),
        "repeats": len(per_call),
        "parameters": int(sum(p.numel() for p in module.parameters())),
        "package_bytes": package_bytes,
        "peak_memory_mb": peak_mb,
        "peak_memory_method": method,
        "threads": int(torch.get_num_threads()),
        "seconds": float(time.perf_counter() - started),
    }


def _latencies(module: nn.Module, one: tuple[Tensor, ...], device: torch.device, budget: float) -> list[float]:
    """Per-call seconds at batch size 1, after warm-up, within the latency share of the budget."""
    warm_until = time.perf_counter() + budget * _WARMUP_SHARE
    for _ in range(_WARMUP_CALLS):
        _call(module, one, device)
        if time.perf_counter() > warm_until:
            break
    # The budget wins over the call count: a slow model reports fewer calls (`n`) rather than
    # overrunning the run; at least one call is always timed.
    stop_at = time.perf_counter() + budget * _LATENCY_SHARE
    times: list[float] = []
    # The collector running inside one timed call would put its pause into the tail percentiles;
    # a serving process sees those pauses too, but spread over many requests, not 1 in 200.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < _MAX_LATENCY_CALLS:
            t0 = time.perf_counter()
            _call(module, one, device)
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if t1 > stop_at:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def _throughput(
    module: nn.Module, batch: tuple[Tensor, ...], device: torch.device, repeats: int, budget: float
) -> tuple[list[float], float | None, str]:
    """Seconds per batched call (one warm-up call, then up to `repeats`), and the peak memory growth."""
    peak = _PeakRss()
    t0 = time.perf_counter()
    _call(module, batch, device)  # warm-up: the largest activations are allocated here
    first = time.perf_counter() - t0
    # Fewer repeats when each call is slow, so a large model keeps to the budget.
    fit = int(budget // first) if first > 0 else repeats
    times: list[float] = []
    for _ in range(max(1, min(repeats, fit))):
        t0 = time.perf_counter()
        _call(module, batch, device)
        times.append(time.perf_counter() - t0)
    peak_mb = peak.growth_mb()
    return times, peak_mb, peak.method


def _call(module: nn.Module, inputs: tuple[Tensor, ...], device: torch.device) -> None:
    module(*inputs)
    if device.type == "cuda":  # kernels are asynchronous; time their completion, not their launch
        torch.cuda.synchronize(device)


class _PeakRss:
    """Growth of the process's peak resident set size (RSS) from now until `growth_mb()`.

    Resident memory is what the operating system charges the process: weights, activations,
    allocator caches, and anything another thread allocates meanwhile. It is the figure that
    decides whether a model fits a container, which is why it is measured rather than
    torch's own allocator statistics (which do not exist for CPU tensors).

    Method ``"vmhwm"`` (Linux): writing ``5`` to ``/proc/self/clear_refs`` resets the
    high-water mark ``VmHWM`` in ``/proc/self/status`` to the current RSS, so its value after
    inference is the true peak *during* inference. Method ``"ru_maxrss"`` (fallback, e.g. a
    kernel without that file or macOS): ``getrusage`` gives the peak over the process's whole
    life and cannot be reset, so growth is only seen when inference exceeds every earlier
    peak (training usually ran higher); the figure is then a lower bound, often 0.
    Memory freed and reused within the allocator is not growth: a model whose activations fit
    in memory already held shows about 0 MB, which is the honest answer.
    """

    def __init__(self) -> None:
        self.method = "vmhwm" if self._reset_vmhwm() else "ru_maxrss"
        self._before_kb = self._rss_kb() if self.method == "vmhwm" else self._maxrss_kb()

    def growth_mb(self) -> float | None:
        after_kb = self._status_kb("VmHWM") if self.method == "vmhwm" else self._maxrss_kb()
        if after_kb is None or self._before_kb is None:
            return None
        return max(0.0, (after_kb - self._before_kb) / 1024.0)

    @staticmethod
    def _reset_vmhwm() -> bool:
        try:
            _PROC_CLEAR_REFS.write_text("5")
        except OSError:
            return False
        return _PeakRss._status_kb("VmHWM") is not None

    @staticmethod
    def _rss_kb() -> float | None:
        return _PeakRss._status_kb("VmRSS")

    @staticmethod
    def _status_kb(field: str) -> float | None:
        try:
            text = _PROC_STATUS.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])  # "VmHWM:    123456 kB"
        return None

    @staticmethod
    def _maxrss_kb() -> float | None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports kilobytes, macOS bytes.
        return peak / 1024.0 if sys.platform == "darwin" else float(peak)


def _package_bytes(package_dir: Path | None) -> int | None:
    """Total size of the regular files under `package_dir` (recursively), None without one."""
    if package_dir is None:
        return None
    root = Path(package_dir)
    if not root.is_dir():
        raise ValueError(f"`package_dir` must be an existing directory; got {str(root)!r}")
    return int(sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()))


def _device_of(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")
