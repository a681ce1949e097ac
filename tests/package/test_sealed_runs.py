"""Sealed run folders: the run's package encrypted at rest like the registry's copy, and read back.

One iris run with `data.protect.seal_run: true` serves the module (a few seconds); the
environment's `TRUSTFORGE_SEAL_RUNS=1` is checked on a second, unregistered one.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _cli import run_main

import trustforge
from trustforge.errors import SecurityError
from trustforge.package import Model
from trustforge.registry import Registry
from trustforge.secure import Keyring, is_sealed
from trustforge.settings import Settings

SPEC = {
    "name": "iris-sealed",
    "data": {"source": "builtin:iris", "target": "target", "protect": {"seal_run": True}},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {"max_epochs": 3},
    "evaluate": {"speed": False, "corruptions": False, "explain": False, "robustness": False, "privacy_audit": False},
}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    root = tmp_path_factory.mktemp("sealed")
    home = root / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTFORGE_HOME", str(home))
        mp.delenv("TRUSTFORGE_TOKEN", raising=False)
        mp.delenv("TRUSTFORGE_SEAL_RUNS", raising=False)
        result = trustforge.run(SPEC, progress=False, register=True)
    from sklearn.datasets import load_iris

    rows = load_iris(as_frame=True).frame.drop(columns=["target"]).head(20)
    rows.to_csv(root / "rows.csv", index=False)
    return root, home, result, rows


def test_the_run_package_is_sealed_and_no_plaintext_weights_are_left(sealed):
    _, _, result, _ = sealed
    package = result.package
    assert is_sealed(package)
    names = sorted(p.name for p in package.iterdir())
    assert "sealed.json" in names and "weights.safetensors.enc" in names
    assert not [n for n in names if n.endswith((".safetensors", ".json")) and n != "sealed.json"], names
    assert not (result.run_dir / "checkpoints").exists()  # the last epoch's weights, in plaintext, are gone
    assert not [p.name for p in result.run_dir.iterdir() if p.name.startswith(".package")]  # no half-way copy
    assert json.loads((result.run_dir / "status.json").read_text())["state"] == "completed"


def test_model_load_predict_and_the_registry_give_the_same_predictions(sealed):
    root, home, result, rows = sealed
    keyring = Keyring.load(home / "keys")
    from_run = Model.load(result.package, keyring=keyring).predict(rows)
    with Registry(Settings.from_env(home)) as reg:
        from_registry = reg.load_model(result.model_uri).predict(rows)
    pd.testing.assert_frame_equal(from_run, from_registry)
    code, out, err = run_main("predict", str(result.package), "rows.csv", "-o", "p.csv", home=home, cwd=root)
    assert code == 0, err
    assert (pd.read_csv(root / "p.csv")["prediction"].astype(str).to_numpy() == from_run["prediction"].astype(str).to_numpy()).all()


def test_verify_and_report_read_a_sealed_run(sealed):
    root, home, result, _ = sealed
    code, out, err = run_main("package", "verify", str(result.package), home=home, cwd=root)
    assert code == 0 and "sealed package" in out, out + err
    code, out, err = run_main("report", str(result.run_dir), home=home, cwd=root)
    assert code == 0, err
    assert (result.run_dir / "report.html").stat().st_size > 1000


def test_another_workspace_cannot_open_a_sealed_run_package(sealed, tmp_path):
    _, _, result, rows = sealed
    other = Keyring.init(tmp_path / "other-keys")
    with pytest.raises(SecurityError):
        Model.load(result.package, keyring=other)


def test_keys_rotate_rewraps_sealed_run_packages_too(sealed):
    root, home, result, rows = sealed
    before = Model.load(result.package, keyring=Keyring.load(home / "keys")).predict(rows)
    code, out, err = run_main("keys", "rotate", home=home, cwd=root)
    assert code == 0, err
    assert "2 sealed package(s) re-wrapped" in out  # the registry's copy and the run's
    after = Model.load(result.package, keyring=Keyring.load(home / "keys")).predict(rows)
    pd.testing.assert_frame_equal(before, after)


def test_trustforge_seal_runs_seals_every_run_and_a_bad_value_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("TRUSTFORGE_SEAL_RUNS", "1")
    spec = {**SPEC, "data": {"source": "builtin:iris", "target": "target"}, "train": {"max_epochs": 1}}
    result = trustforge.run(spec, progress=False, register=False)
    assert is_sealed(result.package)
    out = result.load_model().predict(pd.DataFrame(np.ones((2, 4)), columns=result.load_model().schema.input_names))
    assert len(out) == 2
    monkeypatch.setenv("TRUSTFORGE_SEAL_RUNS", "maybe")
    with pytest.raises(SecurityError, match="TRUSTFORGE_SEAL_RUNS must be 1 or 0"):
        Settings.from_env()
