"""`model.kind: auto` prepares its data once: the choice and the run of the chosen spec share it.

The chosen spec differs from the auto spec only in its model section (and epoch cap), which
`data.prepare` never reads; `pipeline.run(prepared=...)` takes the data only when the spec it
runs has the `data.prepare_key` the data was prepared from.
"""

from __future__ import annotations

import pytest

import trustforge.automl._auto as auto
import trustforge.data as tdata
import trustforge.pipeline as pipeline
from trustforge.automl import run_auto
from trustforge.spec import load_spec

QUIET = {"corruptions": False, "explain": False, "robustness": None}


def _auto_spec(**data) -> dict:
    return {
        "name": "wine-auto",
        "data": {"source": "builtin:wine", **data},
        "model": {"kind": "auto", "candidates": ["linear", "hist_gradient_boosting"], "register_baseline": True},
        "train": {"seed": 5},
        "evaluate": QUIET,
    }


@pytest.fixture
def prepare_calls(monkeypatch):
    """Every call of `data.prepare`, wherever it is imported from."""
    calls = []
    real = tdata.prepare

    def counted(spec, *args, **kwargs):
        calls.append(spec.model.kind)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(auto, "prepare", counted)
    monkeypatch.setattr(pipeline, "prepare", counted)
    return calls


def test_auto_prepares_once_and_trains_what_a_plain_run_of_the_chosen_spec_trains(prepare_calls):
    result = run_auto(_auto_spec(), progress=False, register=False)
    assert prepare_calls == ["auto"], "the data was prepared more than once"
    assert result.timings["prepare_seconds"] > 0  # the one preparation's time, in the run's timings
    # The same chosen spec run on its own (preparing its own data) gives the same model.
    again = pipeline.run(result.spec, progress=False, register=False)
    assert prepare_calls == ["auto", result.spec.model.kind]
    assert "accuracy" in result.metrics
    for metric in ("accuracy", "log_loss", "macro_f1", "balanced_accuracy"):
        if metric in result.metrics:
            assert again.metrics[metric] == result.metrics[metric], metric


def test_a_run_refuses_data_prepared_from_another_spec(workspace):
    spec = load_spec({**_auto_spec(), "model": {"kind": "linear"}})
    data = tdata.prepare(spec)
    assert data.prepared_from == tdata.prepare_key(spec)
    other_seed = load_spec({**_auto_spec(), "model": {"kind": "linear"}, "train": {"seed": 6}})
    other_split = load_spec({**_auto_spec(split={"test": 0.3}), "model": {"kind": "linear"}})
    for other in (other_seed, other_split):
        with pytest.raises(ValueError, match="prepared from another"):
            pipeline.run(other, progress=False, register=False, prepared=data)
    assert not (workspace / "runs").exists() or not any((workspace / "runs").iterdir())  # refused before any run folder
    # The model section is not part of what preparing reads.
    assert tdata.prepare_key(load_spec({**_auto_spec(), "model": {"kind": "mlp"}})) == tdata.prepare_key(spec)
