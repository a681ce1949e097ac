"""The progress bar on a real (forced) terminal, and callbacks released when fit raises."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

import trustforge.data as d
import trustforge.models as m
import trustforge.train as t
from trustforge.evaluate import TASKS
from trustforge.spec import load_spec


def _setup(epochs=3):
    spec = load_spec(
        {
            "data": {"source": "builtin:iris"},
            "model": {"kind": "mlp", "hidden": [8]},
            "train": {"max_epochs": epochs, "batch_size": 16, "early_stopping": None},
        }
    )
    p = d.prepare(spec)
    with t.seeded(spec.train.seed):
        model = m.build_model(spec, p.schema)
    return spec, p, model


def test_progress_bar_renders_epochs_and_stats_on_a_terminal():
    spec, p, model = _setup()
    buf = io.StringIO()
    bar = t.ProgressBar("val_loss", console=Console(file=buf, force_terminal=True, width=120))
    trainer = t.Trainer.from_train_spec(spec.train, TASKS["classification"].loss(spec, 3, p.train.target), callbacks=[bar])
    trainer.fit(model, p.train, p.validation)
    text = buf.getvalue()
    assert "epoch 3/3" in text and "val_loss" in text and "loss " in text
    assert bar.progress is None  # stopped


class _Boom(t.Callback):
    def on_epoch_end(self, trainer, epoch, logs):
        raise RuntimeError("boom")


def test_callbacks_are_released_when_fit_raises(tmp_path):
    spec, p, model = _setup()
    bar = t.ProgressBar("val_loss", console=Console(file=io.StringIO(), force_terminal=True))
    ckpt = t.Checkpoint(tmp_path / "ckpt")
    trainer = t.Trainer.from_train_spec(spec.train, TASKS["classification"].loss(spec, 3, p.train.target), callbacks=[ckpt, bar, _Boom()])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, p.train, p.validation)
    assert bar.progress is None  # the live display no longer holds the terminal
    assert (tmp_path / "ckpt" / "last.safetensors").is_file()  # the epoch's checkpoint finished writing
    meta, _ = t.load_checkpoint(tmp_path / "ckpt")
    assert meta["epoch"] == 0


def test_an_interrupt_while_the_last_epoch_is_saved_still_leaves_it_saved(tmp_path, monkeypatch):
    """A data-parallel launcher's SIGTERM (an interrupt) can land while a process that failed on
    its own is saving its last epoch: the save is finished, then the interrupt goes on, so the
    run keeps its checkpoint (a run without one is removed as having nothing to resume)."""
    import trustforge.train._callbacks as callbacks

    real, calls = callbacks.save_checkpoint, []

    def interrupted_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(callbacks, "save_checkpoint", interrupted_once)
    spec, p, model = _setup()
    ckpt = t.Checkpoint(tmp_path / "ckpt")
    trainer = t.Trainer.from_train_spec(spec.train, TASKS["classification"].loss(spec, 3, p.train.target), callbacks=[ckpt, _Boom()])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(model, p.train, p.validation)
    assert len(calls) == 2
    meta, _ = t.load_checkpoint(tmp_path / "ckpt")
    assert meta["epoch"] == 0


def test_checkpoint_is_a_copy_not_the_live_weights(tmp_path):
    """The background writer saves the state at the epoch's end even though training goes on."""
    spec, p, model = _setup(epochs=2)
    ckpt = t.Checkpoint(tmp_path / "ckpt")
    seen = {}

    class Snap(t.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 0:
                seen.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer = t.Trainer.from_train_spec(spec.train, TASKS["classification"].loss(spec, 3, p.train.target), callbacks=[Snap(), ckpt])
    trainer.fit(model, p.train, p.validation)
    meta, tensors = t.load_checkpoint(tmp_path / "ckpt")
    assert meta["epoch"] == 1
    final = model.state_dict()
    for k, v in final.items():
        assert torch.equal(tensors[f"model.{k}"], v)
    assert any(not torch.equal(seen[k], final[k]) for k in final)  # epoch 2 really changed weights
