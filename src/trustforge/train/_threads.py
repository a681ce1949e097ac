"""How many CPU threads torch uses while a run trains and gathers its evidence.

Torch's default is one intra-op thread per physical core. On small models that is a loss: their
per-batch operations are too small to split, so extra threads only synchronise, and on a busy
machine each thread waits for the others to be scheduled. The issue that brought this in
measured an epoch of the breast-cancer MLP at 70-116 s with the default threads on a loaded
2-core machine against 2.9 s with one thread. Large models (pretrained encoders, wide
convolutions) do gain from a few threads, up to about four on CPU.

So, unless told (`train.threads` in the spec, `trustforge train --threads N`, or the
`OMP_NUM_THREADS` environment variable, which torch already reads), a run uses one thread for a
model under `SMALL_MODEL_PARAMETERS` parameters and `min(4, usable cores)` otherwise. The choice
depends on the spec and the data only, never on the machine's momentary load, so the same spec
trains the same way on the same machine.

The same count caps the BLAS libraries behind numpy and SciPy (OpenBLAS; each keeps its own
pool, one thread per core by default), through threadpoolctl. The evidence's baselines fit small
logistic and ridge regressions with them, where extra threads are the same loss: the logistic
baseline of the shapes example (1,000 rows of 3,072 numbers, L-BFGS) took a median 9.0 CPU
seconds (6.2 s wall) with numpy's and SciPy's default 2 threads each while another process kept
the second core busy, against 2.5 (2.4 s wall) with one thread; on the idle machine 7.6 against
2.4 CPU seconds (3.9 against 2.0 s wall). `bench/blas_threads.py` measures it, on 2 cores.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

import torch
from torch import nn

__all__ = ["choose_threads", "apply_threads", "restores_threads", "usable_cores", "SMALL_MODEL_PARAMETERS", "MAX_AUTO_THREADS"]

SMALL_MODEL_PARAMETERS = 1_000_000
MAX_AUTO_THREADS = 4

_F = TypeVar("_F", bound=Callable[..., Any])


def choose_threads(requested: int | None, module: nn.Module, *, from_env: bool = False) -> int | None:
    """The intra-op thread count for training `module`: `requested`, else the automatic choice.

    Args:
        from_env: the environment chose torch's threads (`OMP_NUM_THREADS`, which torch reads
            itself; `Settings.threads_from_env` says whether it is set).

    Returns:
        `requested` when given; None (leave torch's setting) when `from_env`, since the user or
        their scheduler chose it; 1 for a model of fewer than
        `SMALL_MODEL_PARAMETERS` parameters; else `min(MAX_AUTO_THREADS, usable cores)`.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be an int >= 1; got {requested}")
        return int(requested)
    if from_env:
        return None
    if sum(p.numel() for p in module.parameters()) < SMALL_MODEL_PARAMETERS:
        return 1
    return max(1, min(MAX_AUTO_THREADS, usable_cores()))


def apply_threads(requested: int | None, module: nn.Module, *, from_env: bool = False) -> int:
    """Set torch's intra-op threads, and the BLAS libraries' (numpy's and SciPy's), as
    `choose_threads` says; returns the count in effect."""
    n = choose_threads(requested, module, from_env=from_env)
    if n is not None:
        torch.set_num_threads(n)
        _blas_limiter(n)
    return int(torch.get_num_threads())


def restores_threads(fn: _F) -> _F:
    """Decorate a function so torch's thread count, and the BLAS libraries', are what they were
    before the call, however it ends."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = torch.get_num_threads()
        blas = _blas_limiter(None)  # records each library's count, changes none
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)
            blas.restore_original_limits()

    return wrapper  # type: ignore[return-value]


def _blas_limiter(n: int | None) -> Any:
    """Cap every BLAS library loaded in the process at `n` threads (None: leave them), and return
    threadpoolctl's limiter, which can restore the counts it found."""
    # threadpoolctl reaches only the libraries already loaded: SciPy's BLAS, a library apart from
    # numpy's, loads with scipy.linalg, which the evidence imports later anyway.
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (containers, taskset)
    except AttributeError:  # not every platform has it
        return os.cpu_count() or 1
