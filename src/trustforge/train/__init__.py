"""Training: the Trainer, its step strategies and callbacks, optimizers and schedules, checkpoints."""

from trustforge.train._adversarial import AdversarialStep
from trustforge.train._callbacks import Callback, Checkpoint, CSVLogger, EarlyStopping, ProgressBar
from trustforge.train._checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from trustforge.train._cross_fit import DEFAULT_MAX_EPOCHS, clean_labels, cross_fit
from trustforge.train._distributed import (
    LAUNCHED_ENV,
    PEER_LOST_EXIT,
    Distributed,
    DistributedStep,
    PeerLost,
    distributed_from_env,
    init_distributed,
    launch,
    shutdown_distributed,
)
from trustforge.train._ensemble import fit_members
from trustforge.train._optim import build_optimizer, count_parameters, learning_rate, lr_at, make_optimizer
from trustforge.train._private import PrivateStep
from trustforge.train._steps import PlainStep, StepContext, StepStrategy, clip_gradients
from trustforge.train._threads import apply_threads, choose_threads, restores_threads, usable_cores
from trustforge.train._trainer import Trainer, check_adversarial, private_step_of, resolve_device, seeded

__all__ = [
    "Trainer",
    "fit_members",
    "usable_cores",
    "StepStrategy",
    "StepContext",
    "PlainStep",
    "AdversarialStep",
    "PrivateStep",
    "private_step_of",
    "check_adversarial",
    "DistributedStep",
    "Distributed",
    "PeerLost",
    "distributed_from_env",
    "init_distributed",
    "shutdown_distributed",
    "launch",
    "LAUNCHED_ENV",
    "PEER_LOST_EXIT",
    "clip_gradients",
    "Callback",
    "EarlyStopping",
    "ProgressBar",
    "CSVLogger",
    "Checkpoint",
    "seeded",
    "resolve_device",
    "make_optimizer",
    "build_optimizer",
    "lr_at",
    "learning_rate",
    "count_parameters",
    "save_checkpoint",
    "load_checkpoint",
    "atomic_write_text",
    "choose_threads",
    "apply_threads",
    "restores_threads",
    "cross_fit",
    "DEFAULT_MAX_EPOCHS",
    "clean_labels",
]
