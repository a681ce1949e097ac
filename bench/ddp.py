"""Benchmark: data-parallel training throughput on CPU, 1 process against 2 (gloo), and the input pipeline.

What it measures
    * ddp    - training samples per second of `trustforge.train.Trainer.fit` on sklearn's digits
               (1437 training images, 1x8x8) with a small CNN without batch norm, at a global batch
               of 64: one process with the plain step (batch 64) against two processes with
               `DistributedStep` (batch 32 each, gloo all-reduce on loopback), each process with
               one torch thread. Samples/s = epochs x training rows / rank 0's fit seconds (process
               start, imports and the process group's rendezvous are not timed: they are paid
               once per run). Both sides run `--repeats` times, alternately; medians are printed
               with the ratio 2-process / 1-process.
    * input  - seconds per epoch to cut the same data into batches of 64 three ways: the
               Trainer's way (a seeded permutation, index into in-memory tensors), a
               `torch.utils.data.DataLoader` over a `TensorDataset` with 0 workers, and with 1
               worker process. The model's step is not included: this is the host's cost alone.

How to run
    OMP_NUM_THREADS=1 .venv/bin/python bench/ddp.py [--epochs 4] [--repeats 3]

    About 60 s on 2 idle cores. On a machine with 2 cores, 2 processes share them with the rest of
    the system: expect little gain (see the README section "Devices and data-parallel training"
    for the figures measured). The exit status is 0 whatever the result.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from sklearn.datasets import load_digits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from trustforge.train import Distributed, DistributedStep, Trainer, init_distributed, shutdown_distributed  # noqa: E402

GLOBAL_BATCH = 64


class _Split:
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.inputs, self.target = (x,), y


def _data() -> _Split:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)[:1437]  # (N, 1, 8, 8)
    return _Split(x, torch.tensor(y)[:1437])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),  # (B, 32, 8, 8)
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),  # (B, 64, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 64, 4, 4)
        nn.Flatten(),
        nn.Linear(64 * 16, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def _fit(epochs: int, batch_size: int, step=None) -> float:
    trainer = Trainer(loss_fn=nn.functional.cross_entropy, max_epochs=epochs, batch_size=batch_size, seed=1, step=step)
    trainer.fit(_model(), _data())
    return trainer.fit_seconds


def _worker(rank: int, world: int, port: int, epochs: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = Distributed(rank, world, rank)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    init_distributed(info, torch.device("cpu"))
    try:
        seconds = _fit(epochs, GLOBAL_BATCH // world, DistributedStep(info, torch.device("cpu")))
        if rank == 0:
            Path(out).write_text(str(seconds))
    finally:
        shutdown_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "seconds")
        mp.start_processes(_worker, args=(2, _free_port(), epochs, out), nprocs=2, start_method="spawn", join=True)
        return float(Path(out).read_text())


def _input_pipeline(epochs: int) -> dict[str, float]:
    data = _data()
    x, y = data.inputs[0], data.target
    n = len(y)
    gen = torch.Generator().manual_seed(1)
    times: dict[str, float] = {}
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for b in range(0, n, GLOBAL_BATCH):
            idx = perm[b : b + GLOBAL_BATCH]
            _ = x[idx], y[idx]
    times["trainer (index in-memory tensors)"] = (time.perf_counter() - start) / epochs
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y), batch_size=GLOBAL_BATCH, shuffle=True, num_workers=workers, generator=gen
        )
        start = time.perf_counter()
        for _ in range(epochs):
            for _batch in loader:
                pass
        times[f"DataLoader, {workers} worker{'s' if workers != 1 else ''}"] = (time.perf_counter() - start) / epochs
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = len(_data().target)
    one, two = [], []
    _fit(1, GLOBAL_BATCH)  # warm-up (allocator, kernels)
    for _ in range(args.repeats):
        one.append(args.epochs * rows / _fit(args.epochs, GLOBAL_BATCH))
        two.append(args.epochs * rows / _two_processes(args.epochs))
    print(f"cores available: {len(os.sched_getaffinity(0))}; torch threads per process: 1; global batch {GLOBAL_BATCH}")
    print(
        f"1 process  (batch {GLOBAL_BATCH}):      samples/s "
        + ", ".join(f"{v:.0f}" for v in one)
        + f"  median {statistics.median(one):.0f}"
    )
    print(
        f"2 processes (batch {GLOBAL_BATCH // 2} each, gloo): samples/s "
        + ", ".join(f"{v:.0f}" for v in two)
        + f"  median {statistics.median(two):.0f}"
    )
    print(f"ratio 2 / 1 processes: {statistics.median(two) / statistics.median(one):.2f}")
    print("input pipeline, seconds per epoch of batches (no model step):")
    for name, seconds in _input_pipeline(args.epochs).items():
        print(f"  {name:36s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
