"""BLAS threads: the evidence's logistic baseline with numpy's and SciPy's default pools, and capped
at the run's thread count as `trustforge.train.apply_threads` caps them.

The baseline of examples/shapes_cnn.yaml (1,000 training rows of 3,072 numbers, multinomial
logistic regression by L-BFGS, `evaluate._baselines.fit_logistic`) is fitted alternately with
the BLAS libraries at their default counts (one thread per core) and at one thread, the count a
small model's run chooses, while `--busy` processes spin on the other cores (a loaded machine,
as under `make test`'s two workers). Prints wall and CPU seconds per fit, and the ratio of CPU
seconds (default / capped).

    PYTHONPATH=src python bench/blas_threads.py [--rounds 3] [--busy 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import scipy.linalg  # noqa: F401  (SciPy's BLAS, which L-BFGS uses, loaded before threadpoolctl looks)
from threadpoolctl import threadpool_info, threadpool_limits

from trustforge.data import prepare
from trustforge.evaluate._baselines import fit_logistic
from trustforge.spec import load_spec


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=1, help="processes spinning beside the fits")
    a = ap.parse_args()
    spec = load_spec("examples/shapes_cnn.yaml")
    data = prepare(spec)
    fit_logistic(data, seed=7)  # warm-up: imports, first allocation
    pools = {i["filepath"].rsplit("/", 1)[-1]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    print(f"BLAS libraries and their default threads: {pools}")
    busy = [multiprocessing.Process(target=_spin, args=(time.time() + 3600,), daemon=True) for _ in range(a.busy)]
    for p in busy:
        p.start()
    cpu: dict[str, list[float]] = {"default": [], "capped": []}
    try:
        for _ in range(a.rounds):
            for arm in ("default", "capped"):
                t0, c0 = time.perf_counter(), time.process_time()
                if arm == "capped":
                    with threadpool_limits(limits=1, user_api="blas"):
                        fit_logistic(data, seed=7)
                else:
                    fit_logistic(data, seed=7)
                wall, used = time.perf_counter() - t0, time.process_time() - c0
                cpu[arm].append(used)
                print(f"{arm:8s} wall {wall:6.2f} s  CPU {used:6.2f} s", flush=True)
    finally:
        for p in busy:
            p.terminate()
    d, c = statistics.median(cpu["default"]), statistics.median(cpu["capped"])
    print(f"median CPU seconds per fit: default {d:.2f}, capped at one thread {c:.2f}; ratio {d / c:.1f}x ({a.busy} busy process(es))")


if __name__ == "__main__":
    main()
