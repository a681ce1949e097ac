"""How fast a model trains and predicts, and what it costs: the speed part of a run's evidence.

Two latencies at batch size 1, because users see the first and engineers tune the second:

- ``predict``: ``Model.predict`` end to end on one raw test row as a user hands it over (a
  one-row DataFrame, one image array, ...): reading and checking the input, preprocessing,
  the network, decoding into the prediction table. This is the product's latency.
- ``forward``: the network's forward pass alone on one encoded row.

Every figure is measured after warm-up (the first calls pay for allocator growth, lazy
initialisation and cache misses that a serving process pays once), from per-call
``time.perf_counter`` readings summarised by count, mean, standard deviation, median and tail
percentiles. Each latency rests on at least ``min_calls`` (50) timed calls whatever the time
budget says, so a loaded machine gives a slow figure, never a figure from one call; beyond that
minimum, calls continue while the budget lasts (up to a cap), so a fast model gets a better
founded tail at no real cost. ``load`` says whether the machine was loaded while it measured
(1-minute load average above the number of cores): such figures are slower than the model is.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["measure_speed", "one_row_request", "MIN_CALLS"]

# Timed calls per latency: at least MIN_CALLS (the count wins over the budget: a p95 from fewer
# calls is one call's accident), then more while the latency's share of the budget lasts, up to
# a cap (more only re-measures the same figure).
MIN_CALLS = 50
_MAX_FORWARD_CALLS = 2000
_MAX_PREDICT_CALLS = 500
_WARMUP_FORWARD = 10
_WARMUP_PREDICT = 5

# Shares of the budget: forward latency, predict latency, batched throughput (the rest is
# warm-up and bookkeeping). Without a predict request its share goes to the forward pass.
_FORWARD_SHARE = 0.3
_PREDICT_SHARE = 0.4
_THROUGHPUT_SHARE = 0.2

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
    request: Callable[[], Any] | None = None,
    request_input: str | None = None,
    batch_size: int = 256,
    repeats: int = 7,
    seconds_budget: float = 1.0,
    min_calls: int = MIN_CALLS,
) -> dict[str, Any]:
    """Measure training throughput, inference latency and throughput, size and memory.

    The module is called as ``module(*inputs)`` under ``torch.no_grad()`` in eval mode (its
    previous mode is restored afterwards). The forward latency uses the first sample of
    ``inputs`` at batch size 1; throughput uses a batch of ``batch_size`` rows cycled from
    ``inputs`` (so a small evaluation set still yields a full batch). ``request`` is one
    end-to-end prediction as a user makes it (see `one_row_request`), timed as is.

    Args:
        module: The trained network.
        inputs: Encoded model inputs, each tensor with the samples on dimension 0 (e.g.
            ``Prepared.test.inputs``); at least one sample.
        fit_seconds: Wall-clock seconds the training loop took.
        train_samples: Samples in the training split (one epoch).
        epochs: Epochs actually run (early stopping may stop before the maximum).
        package_dir: The written model package, whose files are summed for its size; ``None``
            when there is no package yet.
        request: A call of ``Model.predict`` on one raw row; ``None``: no end-to-end figure.
        request_input: What ``request`` predicts for, in words (e.g. "one table row").
        batch_size: Batch size of the throughput measurement.
        repeats: Timed batched calls whose median gives the throughput (fewer when one call
            takes more than its share of the budget; at least one).
        seconds_budget: Wall-clock seconds the calls beyond the minimum may take. The minimum
            count is always made, so a slow model (or a loaded machine) takes longer.
        min_calls: Timed calls each latency rests on at least (after warm-up).

    Returns:
        A JSON-serialisable dict:
        ``predict`` (``None`` without ``request``) and ``forward``: each ``{"p50_ms",
        "p95_ms", "p99_ms", "mean_ms", "std_ms", "calls", "batch": 1}`` (``predict`` also
        ``"input"``); ``load``: ``{"load_average", "cores", "loaded"}`` (the higher 1-minute
        load average seen before and after timing, ``os.cpu_count()``, and whether the load
        exceeded the cores: then every figure here is slower than on an idle machine);
        ``latency_ms``: the forward figures as ``{"p50", "p95", "p99", "n"}`` (kept for
        readers of older runs); ``train_samples_per_s`` (``train_samples * epochs /
        fit_seconds``, ``None`` when ``fit_seconds`` is not positive);
        ``throughput_samples_per_s`` (median over the timed batched forward calls);
        ``batch_size`` and ``repeats`` (what was actually used); ``parameters``;
        ``package_bytes`` (``None`` without a package); ``peak_memory_mb`` (growth of the
        process's peak resident memory during the batched inference, over the resident memory
        before it, ``None`` where the platform cannot tell); ``peak_memory_method`` (how it
        was measured, see ``_PeakRss``); ``threads`` (``torch.get_num_threads()``);
        ``seconds`` (the wall-clock time this call took).

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
    if min_calls < 1:
        raise ValueError(f"`min_calls` must be an int >= 1; got {min_calls}")
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
    load_before = _load_average()

    forward_share = _FORWARD_SHARE if request is not None else _FORWARD_SHARE + _PREDICT_SHARE
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            forward_s = _latencies(
                lambda: _call(module, one, device),
                warmup=_WARMUP_FORWARD,
                min_calls=min_calls,
                max_calls=max(min_calls, _MAX_FORWARD_CALLS),
                budget=seconds_budget * forward_share,
                # The collector running inside one timed call would put its pause into the
                # tail; a serving process sees those pauses too, but spread over many requests.
                collect=False,
            )
            per_call, peak_mb, method = _throughput(module, batch, device, repeats, seconds_budget * _THROUGHPUT_SHARE)
    finally:
        module.train(was_training)
    predict = None
    if request is not None:
        # As the user calls it: with the collector on, and whatever mode `Model.predict` sets.
        predict_s = _latencies(
            request,
            warmup=_WARMUP_PREDICT,
            min_calls=min_calls,
            max_calls=max(min_calls, _MAX_PREDICT_CALLS),
            budget=seconds_budget * _PREDICT_SHARE,
            collect=True,
        )
        predict = {**_summary(predict_s), "input": request_input}

    forward = _summary(forward_s)
    return {
        "predict": predict,
        "forward": forward,
        "load": _load(load_before, _load_average()),
        "latency_ms": {"p50": forward["p50_ms"], "p95": forward["p95_ms"], "p99": forward["p99_ms"], "n": forward["calls"]},
        "train_samples_per_s": float(train_samples * epochs / fit_seconds) if fit_seconds > 0 else None,
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


def one_row_request(model: Any, raw: Any) -> tuple[Callable[[], Any], str] | None:
    """One end-to-end prediction on the first row of `raw` (a test split's `RawData`), as a user makes it.

    The row is handed to ``model.predict`` in the form a user passes: a one-row DataFrame
    without the target column (tables, texts, interactions), a one-sample array (images,
    sequences, audio clips), or the whole series for a forecasting model (one forecast). The
    first form the model accepts is used; when none is (e.g. a table whose columns name files
    that only resolve next to their file), the row as read, whose reading is then not timed.

    Returns:
        ``(call, what)``: the call to time and what it predicts for, in words; None when the
        model predicts for no form of the row.
    """
    from trustforge.data import input_kind
    from trustforge.errors import TrustForgeError

    # (what, value, rows the prediction table may hold at most for this to be one prediction)
    candidates: list[tuple[str, Any, int | None]] = []
    if raw.frame is not None and len(raw.frame):
        first = raw.frame.iloc[:1].reset_index(drop=True)
        candidates.append(("one table row", first.drop(columns=[raw.target], errors="ignore"), 1))
        candidates.append(("one table row", first, 1))
        # A forecast of one series is `horizon` rows, fewer than the series; a table model
        # given the whole frame predicts every row of it, which is no single request.
        candidates.append(("one series (one forecast)", raw.frame.reset_index(drop=True), len(raw.frame) - 1))
    for field, what in (("images", "one image"), ("sequences", "one sequence"), ("waveforms", "one audio clip")):
        values = getattr(raw, field, None)
        if values is not None and len(values):
            candidates.append((what, values[:1], 1))
    try:
        candidates.append(("one row as read (input reading not timed)", input_kind(raw).subset(raw, np.arange(1)), 1))
    except (NotImplementedError, TrustForgeError):
        pass
    for what, value, most in candidates:
        try:
            rows = len(model.predict(value))
        except (TrustForgeError, ValueError, KeyError):
            continue
        if most is None or 0 < rows <= most:
            return (lambda v=value: model.predict(v)), what
    return None


def _latencies(call: Callable[[], Any], *, warmup: int, min_calls: int, max_calls: int, budget: float, collect: bool) -> list[float]:
    """Seconds per call after `warmup` untimed calls: at least `min_calls`, then more within `budget`, at most `max_calls`."""
    for _ in range(warmup):
        call()
    stop_at = time.perf_counter() + budget
    times: list[float] = []
    gc_was_enabled = gc.isenabled()
    if not collect:
        gc.disable()
    try:
        while len(times) < max_calls:
            t0 = time.perf_counter()
            call()
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if len(times) >= min_calls and t1 > stop_at:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def _summary(seconds: list[float]) -> dict[str, Any]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    # Linear interpolation between order statistics (numpy's default) is monotone in q, so
    # p50 <= p95 <= p99 holds for any sample.
    p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
        "calls": int(len(ms)),
        "batch": 1,
    }


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):  # not every platform keeps one
        return None


def _load(before: float | None, after: float | None) -> dict[str, Any]:
    """The machine's load while measuring: the higher 1-minute load average of the two readings."""
    seen = [v for v in (before, after) if v is not None]
    cores = os.cpu_count() or 1
    load = max(seen) if seen else None
    return {"load_average": load, "cores": int(cores), "loaded": bool(load is not None and load > cores)}


def _throughput(
    module: nn.Module, batch: tuple[Tensor, ...], device: torch.device, repeats: int, budget: float
) -> tuple[list[float], float | None, str]:
    """Seconds per batched call (one warm-up call, then up to `repeats`), and the peak memory growth."""
    with _PeakRss() as peak:
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
    return times, peak.growth_mb(), peak.method


def _call(module: nn.Module, inputs: tuple[Tensor, ...], device: torch.device) -> None:
    module(*inputs)
    if device.type == "cuda":  # kernels are asynchronous; time their completion, not their launch
        torch.cuda.synchronize(device)


class _PeakRss:
    """Growth of the process's peak resident set size (RSS) over a `with` block, read by `growth_mb()`.

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

    method: str = "ru_maxrss"
    _before_kb: float | None = None
    _after_kb: float | None = None

    def __enter__(self) -> "_PeakRss":
        # Garbage collected during inference would free pages that the inference then takes back
        # without the peak moving (growth 0 for a real allocation): the cyclic collector is off
        # inside the block. (A gc.collect() before it did the same, but costs a pass over every
        # object of a large process: 56 s of `make test`'s CPU, in workers holding many models.)
        self._gc_was_enabled = gc.isenabled()
        gc.disable()
        self.method = "vmhwm" if self._reset_vmhwm() else "ru_maxrss"
        self._before_kb = self._rss_kb() if self.method == "vmhwm" else self._maxrss_kb()
        return self

    def __exit__(self, *exc: object) -> None:
        self._after_kb = self._status_kb("VmHWM") if self.method == "vmhwm" else self._maxrss_kb()
        if self._gc_was_enabled:
            gc.enable()

    def growth_mb(self) -> float | None:
        if self._after_kb is None or self._before_kb is None:
            return None
        return max(0.0, (self._after_kb - self._before_kb) / 1024.0)

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
