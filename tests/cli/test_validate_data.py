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


def test_misspelt_feature_or_drop_columns_name_the_closest_and_dropping_the_target_is_refused(tmp_path, workspace):
    # Found by a probe: no "did you mean" for data.features, and `drop: [..., label]` was accepted.
    for data, message in [
        (
            {"target": "diagnosis", "features": {"f_07": "numeric"}},
            "data.features names a column not in the data: 'f_07'; did you mean 'f07'?",
        ),
        ({"target": "diagnosis", "drop": ["f01", "f_02"]}, "data.drop names a column not in the data: 'f_02'; did you mean 'f02'?"),
        ({"target": "diagnosis", "drop": ["f01", "diagnosis"]}, "data.drop names the target 'diagnosis' (data.target)"),
        # a probe: features naming the target were accepted and ignored, by validate and train
        ({"target": "diagnosis", "features": {"diagnosis": "numeric"}}, "data.features.diagnosis names the target 'diagnosis'"),
        ({"target": "diagnosis", "features": ["f01", "diagnosis"]}, "data.features.diagnosis names the target 'diagnosis'"),
    ]:
        spec = write(tmp_path, wide_table(), data)
        code, out, err = run_main("validate", spec, home=workspace)
        assert code == DataError.exit_code and message in err and err.count("\n") == 1, err
        same_as_train(spec, workspace, code, err)


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


# ------------------------------------------------- validate runs train's checks (issue 16 item 2)
# Each case below passed `validate` and was refused by `train`: validate now runs the checks
# prepare() runs before fitting (`data.check_data`), by the same code.


def people(n: int = 80) -> pd.DataFrame:
    """The README's `data.protect` example: a name column (as many values as people), a label."""
    from _pii_table import pii_table

    return pii_table(n)[0][["name", "city", "age", "label"]]


def write_spec(tmp_path, frame: pd.DataFrame, data: dict, **top) -> object:
    frame.to_csv(tmp_path / "data.csv", index=False)
    spec = tmp_path / "spec.yaml"
    body = {"name": "v", "data": {"source": "csv:data.csv", **data}, "model": {"kind": "mlp"}, "train": {"max_epochs": 1}, **top}
    spec.write_text(yaml.safe_dump(body), encoding="utf-8")
    return spec


def same_as_train(spec, workspace, code: int, err: str) -> None:
    """`train` refuses the spec before fitting (cheap), with validate's exit status and last line."""
    trained, _, train_err = run_main("train", spec, home=workspace)
    assert (trained, train_err.strip().splitlines()[-1]) == (code, err.strip().splitlines()[-1])


def test_data_protect_is_applied_before_the_columns_are_typed(tmp_path, workspace):
    spec = write_spec(tmp_path, people(), {"target": "label", "protect": {"pii": "mask"}})
    code, out, err = run_main("validate", spec, home=workspace)
    assert code == 0 and err == "", err  # the masked name column is one tag, not an id-like column
    spec = write_spec(tmp_path, people(), {"target": "label", "protect": {"pii": "fail"}})
    code, _, err = run_main("validate", spec, home=workspace)
    assert code == DataError.exit_code and "'name'" in err and "PERSON" in err, err  # train's refusal, not the id error
    assert "like an id" not in err
    same_as_train(spec, workspace, code, err)


def test_data_protect_hash_is_checked_with_a_throwaway_key(tmp_path, workspace):
    spec = write_spec(tmp_path, people(), {"target": "label", "protect": {"pii": "hash"}})
    code, out, err = run_main("validate", spec, home=workspace)
    # the hashed names type as train types them (keyed tokens, read as text); no workspace key is made or read
    assert code == 0 and "pii: hash" in out and "checked with a throwaway key" in err, err
    assert not (workspace.exists() and any(workspace.rglob("masking.key")))


def test_a_misspelt_protect_column_says_did_you_mean(tmp_path, workspace):
    frame = people().assign(email=[f"u{i}@example.org" for i in range(80)])
    spec = write_spec(tmp_path, frame, {"target": "label", "protect": {"pii": "mask", "columns": ["emial", "name"]}})
    code, _, err = run_main("validate", spec, home=workspace)
    assert code == DataError.exit_code and "no column 'emial' (data.protect.columns); did you mean 'email'?" in err, err
    same_as_train(spec, workspace, code, err)


def numbers(n: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=n).round(3), "b": rng.normal(size=n).round(3)})
    frame["y"] = np.where(frame["a"] > 0, "p", "n")
    return frame


def reviews(n: int = 80) -> pd.DataFrame:
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    return pd.DataFrame({"review": [f"{words[i % 6]} item number {i}" for i in range(n)], "y": ["p", "n"] * (n // 2)})


@pytest.mark.parametrize(
    "frame, data, task, field",
    [
        (numbers, {"target": "y", "augment": {"rotate": 10}}, "classification", "rotate"),  # a table has no image
        (reviews, {"target": "y", "text": {"column": "review"}, "augment": {"hflip": True}}, "classification", "hflip"),
        (numbers, {"target": "a", "augment": {"delete": 0.1}}, "regression", "delete"),  # no text column
    ],
)
def test_an_augmentation_no_input_reads_is_refused(tmp_path, workspace, frame, data, task, field):
    spec = write_spec(tmp_path, frame(), data, task=task)
    code, _, err = run_main("validate", spec, home=workspace)
    assert code != 0 and f"data.augment.{field}: no input of this data reads it" in err, err
    same_as_train(spec, workspace, code, err)


def three_classes() -> pd.DataFrame:
    frame = numbers()
    frame["y"] = np.select([frame["a"] < -0.4, frame["a"] > 0.4], ["lo", "hi"], "mid")
    return frame


PRIVATE = {"privacy": {"epsilon": 3.0}, "max_epochs": 1}


@pytest.mark.parametrize(
    "data, top, message, frame",
    [
        ({"target": "a", "clean": {"label_issues": "report"}}, {"task": "regression"}, "needs class labels", numbers),
        ({"target": "y", "clean": {"label_issues": "drop"}}, {"train": PRIVATE}, "cannot be used with train.privacy", numbers),
        ({"target": "y", "augment": {"mixup": 0.2}}, {"train": PRIVATE}, "data.augment.mixup: mixed copies of training rows", numbers),
        # validate passed these, train refused them after training (a probe): a setting of the text attack on a
        # table, and an L2 budget above the largest (10 standard deviations on each of 2 columns: 14.14)
        (
            {"target": "y"},
            {"evaluate": {"robustness": {"budgets": [1, 2]}}},
            "evaluate.robustness.budgets (--budget) applies to text models",
            numbers,
        ),
        (
            {"target": "y"},
            {"evaluate": {"robustness": {"norm": 2, "epsilons": [15]}}},
            "ε 15 is above the largest budget of this model's inputs, 14.14",
            numbers,
        ),
        # validate passed these too (a probe): a positive class the data does not have, a threshold on 3 classes
        (
            {"target": "y"},
            {"evaluate": {"positive_class": "great"}},
            "evaluate.positive_class must be one of the classes (n, p); got 'great'",
            numbers,
        ),
        (
            {"target": "y"},
            {"evaluate": {"threshold": 0.3}},
            "evaluate.threshold applies to binary classification; the data has 3 classes",
            three_classes,
        ),
    ],
)
def test_what_train_refuses_before_fitting_validate_refuses(tmp_path, workspace, data, top, message, frame):
    spec = write_spec(tmp_path, frame(), data, **top)
    code, _, err = run_main("validate", spec, home=workspace)
    assert code != 0 and message in err, err
    assert not (workspace / "runs").exists()
    same_as_train(spec, workspace, code, err)


def test_exact_duplicates_under_fail_are_refused(tmp_path, workspace):
    frame = numbers()
    copies = pd.concat([frame, frame.iloc[:5]], ignore_index=True)
    spec = write_spec(tmp_path, copies, {"target": "y", "duplicates": {"exact": "fail"}})
    code, _, err = run_main("validate", spec, home=workspace)
    assert code == DataError.exit_code and "duplicate" in err, err
    same_as_train(spec, workspace, code, err)
    spec = write_spec(tmp_path, frame, {"target": "y", "duplicates": {"exact": "fail"}})  # no copies: passes
    code, _, err = run_main("validate", spec, home=workspace)
    assert code == 0, err


def test_a_missing_shift_file_is_refused_by_validate_and_before_training(tmp_path, workspace):
    # A probe: `validate` passed a spec whose evaluate.shift file is missing, and `train` refused it
    # only after training, when the evidence read it.
    spec = write(tmp_path, wide_table(), {"target": "diagnosis"})
    text = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**text, "evaluate": {"shift": "csv:gone.csv", "robustness": False, "explain": False}}))
    for command in ("validate", "train"):
        code, _, err = run_main(command, spec, home=workspace)
        assert code == DataError.exit_code and "gone.csv: data file not found (evaluate.shift)" in err, (command, err)
    assert not (workspace / "runs").exists() or not any((workspace / "runs").glob("*/checkpoints/*")), "trained before refusing"
