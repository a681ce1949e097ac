"""Checkpoints: optimizer state through safetensors, atomic files, and interrupt → resume.

The strongest check here: a run interrupted at the end of epoch 2 and resumed ends with the
same weights, bit for bit, as the same spec trained without a break.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch

import trustforge.pipeline as pipeline
import trustforge.train._checkpoint as checkpoint_module
from trustforge.data import prepare
from trustforge.errors import RunError, TrainingError
from trustforge.models import build_model
from trustforge.pipeline import run
from trustforge.settings import Settings
from trustforge.spec import load_spec
from trustforge.train import Callback, Checkpoint, load_checkpoint, save_checkpoint, seeded
from trustforge.train._checkpoint import flatten_optimizer, unflatten_optimizer

# ---------------------------------------------------------------------------- optimizer state


@pytest.fixture(scope="module")
def iris():
    return prepare(load_spec({"data": {"source": "builtin:iris"}, "model": {"kind": "mlp"}}))


def _model(iris):
    spec = load_spec({"data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [8], "dropout": 0}})
    with seeded(0):
        return build_model(spec, iris.schema)


def _steps(model, optimizer, iris, batches):
    x, y = iris.train.inputs[0], iris.train.target
    for b in batches:
        idx = slice(b * 16, (b + 1) * 16)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.95), weight_decay=0.05),
    ],
    ids=["sgd-momentum", "adamw"],
)
def test_optimizer_state_round_trips_through_safetensors(make, iris, tmp_path):
    model = _model(iris)
    optimizer = make(model.parameters())
    _steps(model, optimizer, iris, range(3))
    meta, tensors = flatten_optimizer(optimizer.state_dict())
    assert tensors, "the optimizer's buffers are tensors in the file"
    tensors.update({f"model.{k}": v for k, v in model.state_dict().items()})
    save_checkpoint(tmp_path, {"optimizer": meta}, tensors)
    meta2, tensors2 = load_checkpoint(tmp_path)

    restored = unflatten_optimizer(meta2["optimizer"], tensors2)
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert restored["state"].keys() == original["state"].keys()
    for pid, entries in original["state"].items():
        assert restored["state"][pid].keys() == entries.keys()
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(restored["state"][pid][key], value), (pid, key)
            else:
                assert restored["state"][pid][key] == value

    # A fresh model and optimizer loaded from the file continue exactly as the originals do.
    model2 = _model(iris)
    model2.load_state_dict({k[6:]: v for k, v in tensors2.items() if k.startswith("model.")})
    optimizer2 = make(model2.parameters())
    optimizer2.load_state_dict(restored)
    _steps(model, optimizer, iris, range(3, 6))
    _steps(model2, optimizer2, iris, range(3, 6))
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------------------- the file


def test_a_checkpoint_is_one_file_replaced_atomically(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, {"epoch": 0}, {"w": torch.zeros(3)})
    save_checkpoint(folder, {"epoch": 1}, {"w": torch.ones(3)})
    assert [p.name for p in folder.iterdir()] == ["last.safetensors"]

    real = checkpoint_module.save_file

    def crash_midway(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(Path(filename).read_bytes()[:40])  # half written ...
        raise OSError("disk full")  # ... when the process fails

    monkeypatch.setattr(checkpoint_module, "save_file", crash_midway)
    with pytest.raises(OSError):
        save_checkpoint(folder, {"epoch": 2}, {"w": torch.full((3,), 2.0)})
    assert [p.name for p in folder.iterdir()] == ["last.safetensors"]  # no temporary file left
    meta, tensors = load_checkpoint(folder)  # the previous checkpoint, whole
    assert meta == {"epoch": 1}
    assert torch.equal(tensors["w"], torch.ones(3))


def test_a_missing_or_corrupt_checkpoint_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "last.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(RunError, match="unreadable"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------------------- interrupt and resume

# Dropout, so the global RNG matters; early stopping whose state spans the interruption.
PLAIN = {
    "name": "iris-resume",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [16], "dropout": 0.2},
    "train": {
        "max_epochs": 5,
        "batch_size": 16,
        "optimizer": {"name": "adamw", "lr": 0.01},
        "early_stopping": {"monitor": "val_loss", "patience": 3},
    },
}
# Validation accuracy stalls from epoch 1, so this one stops at epoch 3, after the break at 2:
# only a restored early-stopping state (best, wait) stops it there.
STOPS_EARLY = {
    **PLAIN,
    "name": "iris-stops",
    "train": {**PLAIN["train"], "max_epochs": 10, "early_stopping": {"monitor": "val_accuracy", "patience": 2}},
}


def digest(result) -> str:
    return hashlib.sha256((result.package / "weights.safetensors").read_bytes()).hexdigest()


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each spec trained without a break, in a workspace of its own."""
    settings = Settings.from_env(tmp_path_factory.mktemp("reference"))
    out = {}
    for spec in (PLAIN, STOPS_EARLY):
        result = run(spec, settings=settings, progress=False)
        out[spec["name"]] = (digest(result), without_seconds(result.history))
    assert len(out["iris-stops"][1]) == 3, "the reference run should stop early at epoch 3"
    assert len(out["iris-resume"][1]) == 5
    return out


class InterruptAfterEpoch(Callback):
    """Ctrl-C at the end of an epoch (after the built-in checkpoint callback has run)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def interrupt_after_epoch_2(spec, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        run(spec, callbacks=[InterruptAfterEpoch(2)], progress=False)
    return 2


def interrupt_between_log_and_checkpoint_of_epoch_3(spec, monkeypatch):
    # The CSV row of epoch 3 is written, its checkpoint is not: resuming reruns epoch 3.
    real = Checkpoint.on_epoch_end

    def killed(self, trainer, epoch, logs):
        if epoch + 1 == 3:
            raise KeyboardInterrupt
        real(self, trainer, epoch, logs)

    monkeypatch.setattr(Checkpoint, "on_epoch_end", killed)
    with pytest.raises(KeyboardInterrupt):
        run(spec, progress=False)
    monkeypatch.setattr(Checkpoint, "on_epoch_end", real)
    return 2


def interrupt_while_packaging(spec, monkeypatch):
    # Training finished (stopped early): resuming must not train on past the stop.
    real = pipeline.write_model_package

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_model_package", killed)
    with pytest.raises(KeyboardInterrupt):
        run(spec, progress=False)
    monkeypatch.setattr(pipeline, "write_model_package", real)
    return None


def csv_epochs(run_dir: Path) -> list[int]:
    with (run_dir / "epochs.csv").open(newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize(
    ("spec", "interrupt"),
    [
        (PLAIN, interrupt_after_epoch_2),
        (STOPS_EARLY, interrupt_after_epoch_2),
        (PLAIN, interrupt_between_log_and_checkpoint_of_epoch_3),
        (STOPS_EARLY, interrupt_while_packaging),
    ],
    ids=["after-epoch-2", "early-stopping-state", "between-log-and-checkpoint", "while-packaging"],
)
def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(spec, interrupt, uninterrupted, workspace, monkeypatch):
    checkpointed = interrupt(spec, monkeypatch)
    runs = list((workspace / "runs").iterdir())
    assert len(runs) == 1
    run_dir = runs[0]
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert (run_dir / "checkpoints" / "last.safetensors").is_file()
    assert not (run_dir / "package").exists()
    if checkpointed is not None:
        meta, _ = load_checkpoint(run_dir / "checkpoints")
        assert meta["epoch"] + 1 == checkpointed

    before = torch.get_rng_state()
    resumed = run(spec, resume=True, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert resumed.run_dir == run_dir  # continued in place, no new folder
    assert [p.name for p in (workspace / "runs").iterdir()] == [run_dir.name]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"

    expected_digest, expected_history = uninterrupted[spec["name"]]
    assert without_seconds(resumed.history) == expected_history
    assert digest(resumed) == expected_digest
    assert csv_epochs(run_dir) == list(range(1, len(expected_history) + 1))  # each epoch exactly once
    assert resumed.metrics["epochs_trained"] == len(expected_history)


class SlowEpochs(Callback):
    """Each epoch takes `seconds` longer (inside the epoch, so its epochs.csv row counts it)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_epoch_start(self, trainer, epoch):
        time.sleep(self.seconds)


def test_a_resumed_runs_fit_seconds_cover_the_time_before_the_break(workspace):
    # Two slow epochs, a break, three quick ones: fit_seconds is the whole fit's, as
    # epochs_trained is, never the last leg's alone (probe: 1.18 s recorded of 11.7 s trained).
    spec = {**PLAIN, "name": "iris-timed"}
    with pytest.raises(KeyboardInterrupt):
        run(spec, callbacks=[SlowEpochs(0.3), InterruptAfterEpoch(2)], progress=False)
    (run_dir,) = (workspace / "runs").iterdir()
    resumed = run(spec, resume=True, progress=False)
    with (run_dir / "epochs.csv").open(newline="") as f:
        epoch_seconds = sum(float(row["seconds"]) for row in csv.DictReader(f))
    assert resumed.metrics["epochs_trained"] == 5
    assert resumed.metrics["fit_seconds"] >= epoch_seconds >= 0.6
    assert resumed.metrics["fit_seconds"] == resumed.timings["fit_seconds"]


def test_resume_with_a_different_spec_is_a_run_error(workspace):
    with pytest.raises(KeyboardInterrupt):
        run(PLAIN, callbacks=[InterruptAfterEpoch(1)], progress=False)
    changed = {**PLAIN, "train": {**PLAIN["train"], "max_epochs": 6}}
    with pytest.raises(RunError, match="different spec"):
        run(changed, resume=True, progress=False)
    (run_dir,) = (workspace / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"  # untouched


def test_resume_with_no_interrupted_run_is_a_run_error(workspace):
    with pytest.raises(RunError, match="no interrupted run"):
        run(PLAIN, resume=True, progress=False)
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())
    # An interrupted run of another spec whose name starts with this one's is not this one's.
    other = {**PLAIN, "name": "iris-resume-big"}
    with pytest.raises(KeyboardInterrupt):
        run(other, callbacks=[InterruptAfterEpoch(1)], progress=False)
    with pytest.raises(RunError, match="no interrupted run of 'iris-resume'"):
        run(PLAIN, resume=True, progress=False)
    # A completed run is nothing to resume either.
    run({**PLAIN, "train": {**PLAIN["train"], "max_epochs": 1}}, progress=False)
    with pytest.raises(RunError, match="no interrupted run"):
        run({**PLAIN, "train": {**PLAIN["train"], "max_epochs": 1}}, resume=True, progress=False)


def test_a_resumed_run_that_fails_is_kept_as_failed_and_not_resumed_again(workspace):
    # Diverges in epoch 3: interrupted after epoch 1, the resumed run fails.
    spec = {
        "name": "diverges",
        "task": "regression",
        "data": {"source": "builtin:diabetes"},
        "model": {"kind": "mlp", "hidden": [16], "dropout": 0},
        "train": {"max_epochs": 6, "batch_size": 32, "early_stopping": None, "optimizer": {"name": "sgd", "lr": 0.3, "momentum": 0.9}},
    }
    with pytest.raises(KeyboardInterrupt):
        run(spec, callbacks=[InterruptAfterEpoch(1)], progress=False)
    with pytest.raises(TrainingError, match="in epoch 3"):
        run(spec, resume=True, progress=False)
    (run_dir,) = (workspace / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert csv_epochs(run_dir) == [1, 2]
    with pytest.raises(RunError, match="no interrupted run"):
        run(spec, resume=True, progress=False)


# ---------------------------------------------------------------------------- private from creation


class ModesAtEpochEnd(Callback):
    """Record the mode of every file and folder in the run folder at the end of an epoch (after the
    built-in CSV logger has written and the checkpoint is flushed, as its timer would), then stop
    the run before any change of status."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.modes: dict[str, int] = {}

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.epoch:
            run_dir = trainer_run_dir(trainer)
            next(cb for cb in trainer.callbacks if isinstance(cb, Checkpoint)).flush()
            for p in [run_dir, *run_dir.rglob("*")]:
                self.modes[str(p.relative_to(run_dir))] = p.stat().st_mode & 0o777
            raise KeyboardInterrupt


def trainer_run_dir(trainer) -> Path:
    from trustforge.train import CSVLogger

    return next(cb for cb in trainer.callbacks if isinstance(cb, CSVLogger)).path.parent


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_every_file_of_a_run_folder_is_private_while_training(workspace, umask):
    # A run killed mid-training (kill -9) never reaches the status change that narrows modes,
    # so each file must be 0600 (and each folder 0700) from its creation, whatever the umask.
    spy = ModesAtEpochEnd(2)
    old = os.umask(umask)
    try:
        with pytest.raises(KeyboardInterrupt):
            run({**PLAIN, "name": "iris-private"}, callbacks=[spy], progress=False)
    finally:
        os.umask(old)
    assert {"epochs.csv", "spec.yaml", "status.json", "checkpoints", "checkpoints/last.safetensors"} <= set(spy.modes)
    wrong = {name: oct(mode) for name, mode in spy.modes.items() if mode != (0o700 if name in (".", "checkpoints") else 0o600)}
    assert wrong == {}


def test_checkpoint_and_csv_log_are_private_from_their_first_byte(tmp_path, monkeypatch):
    from trustforge.train import CSVLogger

    seen = []
    real = checkpoint_module.save_file

    def spy(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        seen.append(Path(filename).stat().st_mode & 0o777)  # the temporary file, before its rename

    monkeypatch.setattr(checkpoint_module, "save_file", spy)
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck", {"epoch": 0}, {"w": torch.zeros(3)})
        log = CSVLogger(tmp_path / "epochs.csv")
        log.on_epoch_end(None, 0, {"train_loss": 1.0})
        first = (tmp_path / "epochs.csv").stat().st_mode & 0o777
        log.on_epoch_end(None, 1, {"train_loss": 0.5})
    finally:
        os.umask(old)
    assert seen == [0o600]
    assert (tmp_path / "ck" / "last.safetensors").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ck").stat().st_mode & 0o777 == 0o700
    assert first == 0o600 and (tmp_path / "epochs.csv").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "epochs.csv").read_text().splitlines() == ["epoch,train_loss", "1,1.0", "2,0.5"]
