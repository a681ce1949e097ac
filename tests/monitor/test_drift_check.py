"""`check_drift`: the offline check behind `trustforge monitor`, as a library call (no CLI, no printing)."""

from __future__ import annotations

import pytest
from _drift_data import make_table

from trustforge.errors import DataError, ModelError
from trustforge.monitor import AUDIT_ACTION, DriftCheck, check_drift
from trustforge.registry import Registry
from trustforge.settings import Settings


def test_a_package_folder_without_drift(trained, tmp_path):
    result, home = trained
    make_table(250, seed=31).to_csv(tmp_path / "ok.csv", index=False)
    check = check_drift(result.package, tmp_path / "ok.csv", public_key=home / "keys" / "signing.pub")
    assert isinstance(check, DriftCheck) and check.model == str(result.package)
    assert [w.rows for w in check.windows] == [100, 100, 50] and check.windows[-1].partial
    assert not check.drift and check.drifted == [] and check.counts() == {} and check.window == 100
    assert check.rule.startswith("ks for numeric, chi2 for categorical features")


def test_a_registry_uri_is_resolved_and_each_drifted_window_audited(trained, tmp_path):
    result, home = trained
    make_table(300, seed=32, shift="x5").to_csv(tmp_path / "shifted.csv", index=False)
    with Registry(Settings.from_env(home)) as registry:
        before = [e for e in registry.audit.entries(limit=1000) if e["action"] == AUDIT_ACTION]
        check = check_drift(result.model_uri, tmp_path / "shifted.csv", registry=registry, window=150)
        after = [e for e in registry.audit.entries(limit=1000) if e["action"] == AUDIT_ACTION]
    assert check.drift and check.window == 150 and len(check.windows) == 2
    assert list(check.counts())[0] == "x5" and check.counts()["x5"] == len(check.drifted)
    assert len(after) - len(before) == len(check.drifted)
    top = check.windows[0].largest_psi()
    assert top is not None and top[0] == "x5" and top[1] > 0


def test_clear_errors(trained, tmp_path):
    result, home = trained
    make_table(10, seed=33).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="short.csv: 10 rows"):
        check_drift(result.package, tmp_path / "short.csv", public_key=home / "keys" / "signing.pub")
    with pytest.raises(ModelError, match="needs a registry"):
        check_drift(result.model_uri, tmp_path / "short.csv")
