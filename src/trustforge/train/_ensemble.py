"""Training an ensemble (`model.kind: ensemble`): each member on its own, as its own run would train it.

Members are not trained together on the mixture's loss: each is fitted by its own Trainer, built
from `spec.member_spec(spec, i)` (the member's model, its own training settings over the run's, seed
`train.seed + i`), on the run's prepared data, stopping early on the validation split by its own
rule. So a member is the network a run of that spec alone would train, and `tune.ensemble` packages
the trials it ranked rather than something it never scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from trustforge.spec import TaskSpec, member_spec
from trustforge.train._callbacks import Callback, CSVLogger
from trustforge.train._trainer import Trainer


def fit_members(
    spec: TaskSpec,
    data: Any,
    model: Any,
    task: Any,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    log: Path | None = None,
) -> tuple[list[dict[str, float]], list[dict[str, Any]], float]:
    """Train each member of the ensemble `model` (built from `spec`) in place, one after another.

    Args:
        task: the spec's task object (`evaluate.task_of(spec)`): the loss and validation metrics.
        callbacks: handed to every member's trainer.
        log: an `epochs.csv` every member's epochs are appended to, a `member` column first.

    Returns:
        Every member's epochs (each row with `member`, from 1, and its `epoch`), what each member's
        fit reported (its kind, epochs, best epoch, seconds) and the seconds of all the fits.
    """
    history: list[dict[str, float]] = []
    members: list[dict[str, Any]] = []
    seconds = 0.0
    for i, member in enumerate(model.members):
        own = member_spec(spec, i)
        logged = [CSVLogger(log, first={"member": i + 1})] if log is not None else []
        trainer = Trainer.from_spec(own, data, task, callbacks=[*logged, *callbacks], progress=progress)
        rows = trainer.fit(member, data.train, data.validation)
        history += [{"member": i + 1, "epoch": n + 1, **row} for n, row in enumerate(rows)]
        members.append({"member": i + 1, "kind": own.model.kind, **trainer.summary(rows)})
        seconds += trainer.fit_seconds
    return history, members, seconds
