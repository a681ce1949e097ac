"""`trustforge validate SPEC` reads the data (unless --no-data), without training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from _cli import run_main

from trustforge.errors import DataError


def wide_table(n: int = 60) -> pd.DataFrame:
    """30 feature columns, then the label: a misspelt label is past the 20 columns an error lists."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i:02d}": rng.normal(size=n).round(3) for i in range(30)})
    frame["diagnosis"] = np.where(frame["f00"] > 0, "malignant", "benign")
    return frame


def write(tmp_path, frame: pd.DataFrame, data: dict) -> object:
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "v", "data": {"source": "csv:data.csv", **data}, "model": {"kind": "mlp"}, "train": {"max_epochs": 1}}),
        encoding="utf-8",
    )
    return spec


def test_a_misspelt_target_names_the_closest_of_all_columns_without_training(tmp_path, workspace):
    spec = write(tmp_path, wide_table(), {"target": "diagnossis"})
    code, out, err = run_main("validate", spec, home=workspace)
    assert code == DataError.exit_code != 0
    assert "no column 'diagnossis'" in err and "did you mean 'diagnosis'?" in err
    assert out == "" and not (workspace / "runs").exists()  # nothing printed as valid, nothing trained
    # --no-data checks the spec only
    code, out, err = run_main("validate", "--no-data", spec, home=workspace)
    assert code == 0 and "diagnossis" in out


def test_a_good_spec_passes_quietly(tmp_path, workspace):
    spec = write(tmp_path, wide_table(), {"target": "diagnosis"})
    code, out, err = run_main("validate", spec, home=workspace)
    assert code == 0 and err == "", err
    assert "source: csv:" in out and "infer: true" in out  # data.expect's default: inferred from training


def test_a_missing_or_unreadable_file(tmp_path, workspace):
    spec = write(tmp_path, wide_table(), {"target": "diagnosis"})
    (tmp_path / "data.csv").unlink()
    code, _, err = run_main("validate", spec, home=workspace)
    assert code != 0 and "data.csv" in err
    (tmp_path / "data.csv").write_bytes(b"\x00\xff\xfe garbage \x00\n\x01")
    code, _, err = run_main("validate", spec, home=workspace)
    assert code != 0 and "data.csv" in err and "internal error" not in err


def test_a_split_that_cannot_be_made_is_refused(tmp_path, workspace):
    frame = wide_table()
    frame.loc[0, "diagnosis"] = "rare"  # one row of a third class: a stratified split cannot place it
    spec = write(tmp_path, frame, {"target": "diagnosis"})
    code, _, err = run_main("validate", spec, home=workspace)
    assert code != 0 and "rare" in err


@pytest.mark.parametrize("policy, ok", [("fail", False), ("warn", True)])
def test_declared_expectations_are_checked(tmp_path, workspace, policy, ok):
    frame = wide_table()
    frame.loc[[4, 9], "f01"] = 50.0
    spec = write(tmp_path, frame, {"target": "diagnosis", "expect": {"columns": {"f01": {"min": -10, "max": 10}}, "policy": policy}})
    code, _, err = run_main("validate", spec, home=workspace)
    assert (code == 0) is ok, err
    assert "csv:data.csv: " in err and "row 5, column 'f01'" in err and "row 10, column 'f01'" in err and str(tmp_path) not in err


def test_an_expectation_on_a_misspelt_column_names_the_closest(tmp_path, workspace):
    spec = write(tmp_path, wide_table(), {"target": "diagnosis", "expect": {"columns": {"f_01": {"min": 0}}}})
    code, _, err = run_main("validate", spec, home=workspace)
    assert code != 0 and "column 'f_01': the column is not in the data; did you mean 'f01'?" in err
