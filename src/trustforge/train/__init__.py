"""Training: the Trainer, its callbacks, losses, optimizers and schedules, checkpoints."""

from trustforge.train._callbacks import Callback, Checkpoint, CSVLogger, EarlyStopping, ProgressBar
from trustforge.train._checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from trustforge.train._optim import count_parameters, lr_at, make_loss, make_optimizer
from trustforge.train._trainer import Trainer, resolve_device, seeded

__all__ = [
    "Trainer",
    "Callback",
    "EarlyStopping",
    "ProgressBar",
    "CSVLogger",
    "Checkpoint",
    "seeded",
    "resolve_device",
    "make_loss",
    "make_optimizer",
    "lr_at",
    "count_parameters",
    "save_checkpoint",
    "load_checkpoint",
    "atomic_write_text",
]
