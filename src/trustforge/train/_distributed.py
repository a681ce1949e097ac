"""Distributed data-parallel training: a step strategy over PyTorch's own runtime.

One process per device, launched by `torch.distributed.run` (torchrun): `trustforge train SPEC
--nproc-per-node N` starts it (`launch`), or the user runs `torchrun ... -m trustforge train SPEC`.
Each process reads its rank from the environment torchrun sets (`distributed_from_env`), joins
the process group (gloo on CPU, NCCL on GPU, with a collective timeout so a dead peer ends the
job instead of hanging it) and trains through `DistributedStep`, handed to the Trainer like any
other strategy:

- each epoch's sample order comes from the Trainer's seeded generator, whose state is the same
  on every process; `shard` pads it to a multiple of the world size and strides it, as
  `torch.utils.data.DistributedSampler` does, so the union of the processes' k-th batches is
  the k-th batch of one process with a world-size-times larger batch;
- `DistributedDataParallel` averages the gradients (one all-reduce per update, none for the
  batches of an accumulation group that do not end it);
- the epoch's training loss is reduced over all processes, and rank 0 decides when to stop.

Rank 0 alone writes logs, checkpoints, the package and the registry entry (the pipeline's part).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trustforge.errors import TrainingError
from trustforge.train._steps import PlainStep, StepContext

__all__ = [
    "Distributed",
    "DistributedStep",
    "PeerLost",
    "PEER_LOST_EXIT",
    "distributed_from_env",
    "init_distributed",
    "shutdown_distributed",
    "launch",
]

# A collective (all-reduce, broadcast) that waits longer than this for a peer fails. A step of the
# models we train takes well under a second; a process blocked for 30 s has lost its peer (killed,
# out of memory, its node gone), and the error then ends the job well within a minute.
COLLECTIVE_TIMEOUT_S = 30
# How long the nodes of a multi-node launch wait for each other to join before giving up.
RENDEZVOUS_TIMEOUT_S = 60
# After one process fails, how long torchrun waits for the others to stop on SIGTERM before SIGKILL.
SHUTDOWN_TIMEOUT_S = 10
# Set by `launch` for the processes it starts (read by the CLI only).
LAUNCHED_ENV = "TRUSTFORGE_DDP_LAUNCHED"
# The exit status of a launched process that stopped because it lost a peer (sysexits' EX_TEMPFAIL).
PEER_LOST_EXIT = 75


class PeerLost(TrainingError):
    """A process of a data-parallel run stopped answering; the run's last checkpoint is kept for `--resume`."""

    keeps_run = True


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a data-parallel launch (from torchrun's environment)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes (logs, checkpoints, package, registry)."""
        return self.rank == 0


def distributed_from_env(environ: Mapping[str, str] | None = None) -> Distributed | None:
    """This process's place in a torchrun launch, or None when it was not started by one.

    Raises:
        TrainingError: torchrun's variables are set but incomplete or not integers.
    """
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" not in env and "WORLD_SIZE" not in env:
        return None
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    except (KeyError, ValueError):
        raise TrainingError("a torchrun launch must set RANK, WORLD_SIZE and LOCAL_RANK as integers") from None
    if not 0 <= rank < world:
        raise TrainingError(f"RANK must be in [0, WORLD_SIZE); got RANK {rank}, WORLD_SIZE {world}")
    return Distributed(rank, world, local)


def init_distributed(info: Distributed, device: torch.device) -> None:
    """Join the process group: NCCL for GPUs, gloo for CPUs, with `COLLECTIVE_TIMEOUT_S` on every collective."""
    if dist.is_initialized():
        return
    timeout = timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=timeout, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timeout)


def shutdown_distributed(*, together: bool = False) -> None:
    """Leave the process group (a no-op when none was joined).

    Args:
        together: wait at a barrier for every rank first (the usual clean exit of a process
            group): the way out of a run that trained to the end, so no rank tears down its gloo
            connections while a peer may still read them. A failed run leaves without waiting
            (its peers may be gone); the barrier times out after `COLLECTIVE_TIMEOUT_S` like any
            collective. (The abort some ranks met at exit is torch's, at interpreter teardown:
            `trustforge.cli` ends a finished torchrun worker without it.)
    """
    if not dist.is_initialized():
        return
    if together:
        try:
            dist.barrier()
        except RuntimeError:  # a peer left already: nothing to wait for
            pass
    dist.destroy_process_group()


# What gloo and NCCL say when a peer is gone; they raise a plain RuntimeError for some of it.
_LOST = re.compile(r"gloo|nccl|connection (reset|closed|refused)|timed? ?out|broken pipe|peer", re.IGNORECASE)


@contextlib.contextmanager
def _peers(info: Distributed):
    """Turn a collective that failed (a peer died, or timed out) into one `PeerLost` error; other errors pass."""
    try:
        yield
    except RuntimeError as exc:
        if not isinstance(exc, dist.DistError) and not _LOST.search(str(exc)):
            raise
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise PeerLost(
            f"data-parallel training lost a peer process (seen by rank {info.rank} of {info.world_size}: {first}); "
            "`trustforge train SPEC --resume` with the same launch options continues from the last saved epoch"
        ) from None


class DistributedStep(PlainStep):
    """Plain back-propagation on this process's shard, gradients averaged by DDP.

    Every process trains the same number of equally sized batches per epoch (`shard` pads), so
    DDP's average over processes of their batch-mean gradients is the mean over the union, and
    2 processes at batch B/2 step as 1 process at batch B (to float rounding).

    Args:
        info: this process's rank and world size.
        device: the device this process trains on (its GPU, or the CPU).
    """

    def __init__(self, info: Distributed, device: torch.device):
        self.info = info
        self.device = device
        self._ddp: DistributedDataParallel | None = None
        self._module: torch.nn.Module | None = None

    def setup(self, ctx: StepContext) -> None:
        self._module = ctx.model
        with _peers(self.info):  # DDP broadcasts rank 0's weights and buffers at construction
            self._ddp = DistributedDataParallel(ctx.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        ctx.model = self._ddp

    def teardown(self, ctx: StepContext) -> None:
        # DDP's gradient hooks live on its reducer; dropping the wrapper drops them.
        if self._module is not None:
            ctx.model = self._module
        self._ddp = None

    def backward(
        self, ctx: StepContext, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, *, weight: float, sync: bool
    ) -> torch.Tensor:
        # Batches that do not end an accumulation group keep their gradients local (no all-reduce).
        quiet = self._ddp.no_sync() if (self._ddp is not None and not sync) else contextlib.nullcontext()
        module = self._module
        with _peers(self.info), quiet:
            with ctx.autocast:
                loss = ctx.loss_fn(ctx.model(*inputs), target)
                penalty = module.penalty() if callable(getattr(module, "penalty", None)) else None
            objective = loss if penalty is None else loss + penalty
            ctx.scaler.scale(objective * weight if weight != 1 else objective).backward()
        return loss.detach()

    def update(self, ctx: StepContext) -> None:
        with _peers(self.info):
            super().update(ctx)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        n, world = len(order), self.info.world_size
        total = math.ceil(n / world) * world
        if total != n:  # DistributedSampler's padding: the first samples again, so every rank has as many
            order = order.repeat(math.ceil(total / n))[:total]
        return order[self.info.rank :: world]

    def mean_loss(self, total: torch.Tensor, seen: int) -> float:
        both = torch.stack([total.detach().double(), torch.tensor(float(seen), dtype=torch.float64, device=total.device)])
        with _peers(self.info):
            dist.all_reduce(both)
        return float(both[0] / both[1].clamp(min=1))

    def agree(self, stop: bool) -> bool:
        flag = torch.tensor([1 if stop else 0], device=self.device)
        with _peers(self.info):
            dist.broadcast(flag, src=0)
        return bool(flag.item())

    def summary(self) -> dict[str, object]:
        return {"world_size": self.info.world_size}


def launch(
    argv: Sequence[str],
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
) -> None:
    """Run `python -m trustforge ARGV` in `nproc_per_node` processes through `torch.distributed.run`.

    One node: a standalone rendezvous on a free local port. Several nodes: a static rendezvous
    at `rdzv_endpoint` (HOST:PORT of node 0, which serves it), each node started with its
    `node_rank`. No restarts: a process that fails ends the job (the others are stopped), and
    `--resume` continues it.

    Raises:
        TrainingError: a process failed; the message names its rank and how it ended.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = ["--nproc-per-node", str(nproc_per_node), "--max-restarts", "0", "--monitor-interval", "0.2"]
    args += ["--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S)]
    if nnodes == 1 and rdzv_endpoint is None:
        args += ["--standalone"]
    else:
        if rdzv_endpoint is None:
            raise TrainingError("--rdzv-endpoint HOST:PORT (node 0's address) is needed with --nnodes above 1")
        args += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--rdzv-backend", "static"]
        args += ["--rdzv-endpoint", rdzv_endpoint, "--rdzv-conf", f"timeout={RENDEZVOUS_TIMEOUT_S}"]
    parsed = get_args_parser().parse_args([*args, "-m", "trustforge", *argv])
    # The processes stay quiet about a lost peer (`PeerLost`): the launcher reports the failure once.
    os.environ[LAUNCHED_ENV] = "1"
    # torchrun's agent logs each step of a failure (and a page of traceback); the one error below says it.
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)
    try:
        run(parsed)
    except ChildFailedError as exc:
        raise TrainingError(_failure(exc, nproc_per_node, node_rank)) from None
    except (dist.DistError, RuntimeError, ValueError) as exc:  # the rendezvous failed: no peer node, port taken
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"the data-parallel launch failed before training: {text}") from None
    finally:
        elastic.setLevel(level)
        os.environ.pop(LAUNCHED_ENV, None)


def _failure(exc: object, nproc: int, node_rank: int) -> str:
    """One line naming the first process that failed and how (exit code or signal)."""
    import signal

    # {global rank: failure}; processes stopped by torchrun (SIGTERM) or by a lost peer come after the cause
    failures = sorted(
        getattr(exc, "failures", {}).items(), key=lambda kv: (kv[1].exitcode in (-signal.SIGTERM, PEER_LOST_EXIT), kv[1].timestamp, kv[0])
    )
    if not failures:
        return "data-parallel training failed"
    rank, first = failures[0]
    if first.exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-first.exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-first.exitcode}"
    elif first.exitcode == PEER_LOST_EXIT:
        how = "lost a peer (a process on another node failed, or stopped answering for 30 s)"
    else:
        how = f"exited with code {first.exitcode}"
    return (
        f"data-parallel training failed: rank {rank} (local rank {first.local_rank} of {nproc} on node {node_rank}) {how}; "
        "the job was stopped; `--resume` with the same launch options continues from the last saved epoch"
    )
