"""The `trustforge` command: exit codes, what goes to stdout, and one-line errors on stderr.

Every bad input must give a non-zero exit code, exactly one stderr line `error: ...` that names
the field or file, no traceback, and nothing left behind in the workspace.

Starting the console script costs seconds of imports (torch, sklearn), so the tests that are
about the process itself (help, a spec error, training, a tampered package) run the installed
script in a subprocess and the rest call the same entry point, `main()`, in this process.
`TRUSTFORGE_CLI_SUBPROCESS=1` runs every test through the script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _cli import Result, run_main

from trustforge.errors import DataError, IntegrityError, SpecError, UsageError
from trustforge.spec import load_spec, spec_to_dict

ALL_IN_SUBPROCESS = os.environ.get("TRUSTFORGE_CLI_SUBPROCESS") == "1"
IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
CLASSES = ["setosa", "versicolor", "virginica"]


def _script() -> list[str]:
    script = Path(sys.executable).with_name("trustforge")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "trustforge.cli"]


def run_script(*args: str, home: Path, cwd: Path, timeout: float = 300) -> Result:
    """Run the installed `trustforge` console script."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TRUSTFORGE_DEBUG")}
    env.update(TRUSTFORGE_HOME=str(home), NO_COLOR="1", PYTHONWARNINGS="default")
    proc = subprocess.run([*_script(), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path, workspace):
    """`cli(*args, script=False)`: run trustforge in this test's workspace and folder."""

    def call(*args: str, script: bool = False) -> Result:
        runner = run_script if (script or ALL_IN_SUBPROCESS) else run_main
        return runner(*args, home=workspace, cwd=tmp_path)

    return call


def assert_one_line_error(result: Result, exit_code: int, *names: str) -> str:
    """A refused input: the exit code, one `error:` line on stderr naming `names`, no traceback."""
    assert result.code == exit_code, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    assert "internal error" not in line, line  # a bug reached the user, not a refused input
    assert "Traceback" not in result.stdout + result.stderr
    for name in names:
        assert name in line, f"{name!r} not in {line!r}"
    return line


def assert_nothing_left(home: Path, folder: Path) -> None:
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    assert not list(folder.rglob("*.predictions.csv"))
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]


def iris_frame(n: int | None = None, *, seed: int = 0) -> pd.DataFrame:
    """Iris rows with the readable class names as `target`, as builtin:iris has them."""
    from sklearn.datasets import load_iris

    d = load_iris(as_frame=True)
    frame = d.frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    frame["target"] = [str(d.target_names[int(i)]) for i in frame["target"]]
    return frame if n is None else frame.sample(n, random_state=seed).reset_index(drop=True)


IRIS_SPEC = """\
name: iris-mlp
task: classification
data:
  source: builtin:iris
model: {kind: mlp, hidden: [16], dropout: 0.0}
train:
  max_epochs: 5
  batch_size: 8
  optimizer: {name: adam, lr: 0.05}
  early_stopping: null
  seed: 7
"""


@dataclass
class Trained:
    spec: Path
    package: Path
    home: Path
    train: Result


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """A tiny iris MLP trained once by the real console script, shared by the module's tests."""
    root = tmp_path_factory.mktemp("trained")
    spec = root / "iris.yaml"
    spec.write_text(IRIS_SPEC, encoding="utf-8")
    home = root / "ws"
    result = run_script("train", "--quiet", spec, home=home, cwd=root)
    assert result.code == 0, result
    match = re.search(r"^package: (.+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    package = Path(match.group(1).strip())
    assert package.is_dir() and package.parent.parent == home / "runs"
    return Trained(spec, package, home, result)


@pytest.fixture(autouse=True)
def _trust_the_trained_package(request, workspace):
    """Tests that use the shared package act in a workspace holding the keys that signed it."""
    if "trained" in request.fixturenames:
        trained = request.getfixturevalue("trained")
        shutil.copytree(trained.home / "keys", workspace / "keys", dirs_exist_ok=True)


def copy_package(trained: Trained, tmp_path: Path) -> Path:
    dest = tmp_path / "package"
    shutil.copytree(trained.package, dest)
    return dest


# ---------------------------------------------------------------------------- help and validate


def test_help_lists_the_commands(cli):
    result = cli("--help", script=True)
    assert result.code == 0, result
    for command in ("validate", "train", "predict", "evaluate"):
        assert re.search(rf"\b{command}\b", result.stdout), result.stdout
    assert "Traceback" not in result.stderr


def test_a_commands_help_is_whole_paragraphs():
    """Typer's rich help keeps a docstring's line breaks in the command list (`users --help` cut
    reseal's sentence after "head this"): every command's help is paragraphs of one line each,
    which the terminal wraps."""
    from trustforge.cli import app

    def commands(typer_app):
        for command in typer_app.registered_commands:
            yield command
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance)

    found = list(commands(app))
    assert len(found) > 40 and all(c.help for c in found)
    broken = [c.name or c.callback.__name__ for c in found if any("\n" in part for part in c.help.split("\n\n"))]
    assert not broken, broken
    reseal = next(c for c in found if c.callback.__name__ == "reseal")
    assert "newest access head this machine has seen named" in reseal.help


def test_validate_prints_the_normalised_spec(cli, tmp_path, workspace):
    # A deep folder: the data path, written absolute, is longer than a terminal line and must not wrap.
    folder = tmp_path / ("a-project-folder-with-a-rather-long-name-" * 3) / "specs"
    folder.mkdir(parents=True)
    spec = folder / "spec.yaml"
    data = folder.parent / "data" / "train table.csv"
    spec.write_text(f"name: table\ndata: {{source: 'csv:{data}', target: y}}\nmodel: {{kind: mlp}}\n")
    result = cli("validate", "--no-data", spec)  # the data file does not exist: the spec alone is checked
    assert result.code == 0 and result.stderr == "", result
    printed = yaml.safe_load(result.stdout)
    assert printed == spec_to_dict(load_spec(spec))
    assert printed["data"]["source"] == f"csv:{data}"  # as written (a relative one too: tests/test_no_local_paths.py)
    assert printed["train"]["optimizer"] == {"name": "adamw", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
    # The output is itself a spec that validates to the same output.
    again = tmp_path / "normalised.yaml"
    again.write_text(result.stdout)
    assert cli("validate", "--no-data", again).stdout == result.stdout
    assert_nothing_left(workspace, tmp_path)


BINARY_SPEC = """\
name: bc
task: classification
data:
  source: builtin:breast_cancer
  target: target
  split: {{test: 0.2, validation: {validation}, stratify: true}}
model: {{kind: mlp, hidden: [8]}}
train: {{max_epochs: 2, early_stopping: null, seed: 1}}
evaluate: {{threshold: {threshold}, speed: false, corruptions: false, explain: false}}
"""


def test_validate_says_what_a_null_threshold_means_and_keeps_the_spec(cli, tmp_path):
    spec = tmp_path / "bc.yaml"
    spec.write_text(BINARY_SPEC.format(validation=0.2, threshold="null"))
    result = cli("validate", spec)
    assert result.code == 0 and result.stderr == "", result
    assert re.search(r"^  threshold: null  # 0\.5 ", result.stdout, re.MULTILINE), result.stdout
    assert yaml.safe_load(result.stdout) == spec_to_dict(load_spec(spec))  # a comment only: the spec is the same
    again = tmp_path / "normalised.yaml"
    again.write_text(result.stdout)
    assert cli("validate", again).stdout == result.stdout


@pytest.mark.parametrize(
    ("validation", "threshold", "noted"),
    [
        (0.0, "f1", True),
        (0.0, "'precision@recall=0.98'", True),
        (0.0, "{cost: {fp: 1, fn: 5}}", True),
        (0.2, "f1", False),
        (0.0, 0.3, False),
    ],
)
def test_validate_notes_a_threshold_rule_without_a_validation_split(cli, tmp_path, validation, threshold, noted):
    spec = tmp_path / "bc.yaml"
    spec.write_text(BINARY_SPEC.format(validation=validation, threshold=threshold))
    result = cli("validate", spec)
    assert result.code == 0, result
    yaml.safe_load(result.stdout)  # stdout stays a valid spec
    if noted:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("note: evaluate.threshold "), result.stderr
        assert "data.split.validation" in lines[0] and "0.5" in lines[0]
    else:
        assert result.stderr == ""


def test_train_notes_a_threshold_rule_that_fell_back_to_one_half(cli, tmp_path, workspace):
    spec = tmp_path / "bc.yaml"
    spec.write_text(BINARY_SPEC.format(validation=0.0, threshold="f1"))
    result = cli("train", "--quiet", "--no-register", spec)
    assert result.code == 0, result
    metrics = json.loads(next((workspace / "runs").glob("bc-*/metrics.json")).read_text())
    assert metrics["threshold"]["chosen_on"] == "default" and metrics["threshold"]["value"] == 0.5
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "f1" in notes[0] and "0.5" in notes[0], result.stderr


def test_threshold_fallback_is_noted_only_for_a_rule():
    from trustforge.cli import _threshold_fallback

    assert _threshold_fallback({"value": 0.5, "rule": "0.5", "chosen_on": "default", "note": "the default"}) is None
    assert _threshold_fallback({"value": 0.3, "rule": "0.3", "chosen_on": "default", "note": "as set"}) is None
    assert _threshold_fallback({"value": 0.41, "rule": "f1", "chosen_on": "validation", "note": None}) is None
    assert _threshold_fallback(None) is None
    why = _threshold_fallback({"value": 0.5, "rule": "cost", "chosen_on": "default", "note": "one class only; the threshold is 0.5"})
    assert why is not None and why.startswith("one class only; the threshold is 0.5")


# ---------------------------------------------------------------------------- refused inputs: the spec


SPEC_CASES = {
    "unknown-key": ("name: x\ntrain:\n  max_epochs: 2\n  optimzer: {name: sgd}\n", "spec.yaml:4:", "train.optimzer"),
    "wrong-type": ("train:\n  max_epochs: ten\n", "spec.yaml:2:", "train.max_epochs", "'ten'"),
    "out-of-range": ("train:\n  optimizer: {name: sgd, lr: -3}\n", "spec.yaml:2:", "train.optimizer.lr", "-3"),
    "bad-kind": ("model:\n  kind: resnet\n", "spec.yaml:2:", "model.kind", "'resnet'"),
    "malformed": ("name: x\ntrain: {max_epochs: 3\n", "spec.yaml:", "malformed YAML"),
}


@pytest.mark.parametrize("case", SPEC_CASES, ids=str)
def test_bad_spec_is_refused_by_train(cli, tmp_path, workspace, case):
    text, *names = SPEC_CASES[case]
    (tmp_path / "spec.yaml").write_text(text)
    result = cli("train", "spec.yaml", script=case == "unknown-key")
    assert_one_line_error(result, SpecError.exit_code, *names)
    assert result.stdout == ""
    assert_nothing_left(workspace, tmp_path)


def test_validate_refuses_a_bad_spec_and_a_missing_file(cli, tmp_path):
    (tmp_path / "spec.yaml").write_text("model: {kind: mlp, channels: [3]}\n")
    assert_one_line_error(cli("validate", "spec.yaml"), SpecError.exit_code, "spec.yaml:1:", "model.channels")
    assert_one_line_error(cli("validate", "nope.yaml"), SpecError.exit_code, "nope.yaml")


# ---------------------------------------------------------------------------- refused inputs: data


def test_missing_data_file(cli, tmp_path, workspace):
    (tmp_path / "spec.yaml").write_text("data: {source: 'csv:missing.csv', target: y}\nmodel: {kind: mlp}\n")
    result = cli("train", "spec.yaml")
    assert_one_line_error(result, DataError.exit_code, "missing.csv", "not found")
    assert_nothing_left(workspace, tmp_path)


def test_csv_without_the_target_column(cli, tmp_path, workspace):
    iris_frame(40).rename(columns={"target": "species"}).to_csv(tmp_path / "iris.csv", index=False)
    (tmp_path / "spec.yaml").write_text("data: {source: 'csv:iris.csv', target: target}\nmodel: {kind: mlp}\ntrain: {max_epochs: 1}\n")
    result = cli("train", "spec.yaml")
    assert_one_line_error(result, DataError.exit_code, "iris.csv", "'target'", "species")
    assert_nothing_left(workspace, tmp_path)


def test_corrupt_image_in_a_training_folder(cli, tmp_path, workspace):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("circle", "square"):
        (tmp_path / "pictures" / label).mkdir(parents=True)
        for i in range(4):
            pixels = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "pictures" / label / f"{i}.png")
    (tmp_path / "pictures" / "square" / "bad.png").write_bytes(b"\x89PNG but then garbage \x00\x01\x02" * 4)
    (tmp_path / "spec.yaml").write_text(
        "data: {source: 'images:pictures', image: {size: [12, 12]}}\nmodel: {kind: cnn, channels: [4]}\ntrain: {max_epochs: 1}\n"
    )
    result = cli("train", "spec.yaml")
    assert_one_line_error(result, DataError.exit_code, "bad.png")
    assert_nothing_left(workspace, tmp_path)


def test_predict_input_with_missing_columns(cli, trained, tmp_path, workspace):
    iris_frame(10).drop(columns=["target", "petal width (cm)"]).to_csv(tmp_path / "rows.csv", index=False)
    result = cli("predict", trained.package, "rows.csv")
    assert_one_line_error(result, DataError.exit_code, "rows.csv", "petal width (cm)")
    assert_nothing_left(workspace, tmp_path)


def test_predict_input_with_extra_columns(cli, trained, tmp_path, workspace):
    """Extra columns are ignored with a note, as the server ignores extra fields; the
    predictions are those of the rows without them."""
    frame = iris_frame(10).drop(columns=["target"])
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame["customer_id"] = range(10)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    result = cli("predict", trained.package, "rows.csv")
    assert result.code == 0, result
    assert result.stderr.splitlines() == ["note: ignored 1 column the model does not take: customer_id"]
    assert cli("predict", trained.package, "plain.csv").code == 0
    assert (tmp_path / "rows.predictions.csv").read_text() == (tmp_path / "plain.predictions.csv").read_text()


def test_predict_missing_input_file_and_missing_package(cli, trained, tmp_path):
    assert_one_line_error(cli("predict", trained.package, "nope.csv"), DataError.exit_code, "nope.csv")
    iris_frame(5).to_csv(tmp_path / "rows.csv", index=False)
    assert_one_line_error(cli("predict", tmp_path / "no-package", "rows.csv"), IntegrityError.exit_code, "no-package")


# ---------------------------------------------------------------------------- refused inputs: the package


def test_tampered_weights_are_refused(cli, trained, tmp_path, workspace):
    package = copy_package(trained, tmp_path)
    weights = package / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(blob))
    iris_frame(10).drop(columns=["target"]).to_csv(tmp_path / "rows.csv", index=False)
    result = cli("predict", package, "rows.csv", script=True)
    assert_one_line_error(result, IntegrityError.exit_code, "weights.safetensors")
    assert result.stdout == ""
    assert_nothing_left(workspace, tmp_path)


def test_unlisted_file_in_the_package_is_refused(cli, trained, tmp_path, workspace):
    package = copy_package(trained, tmp_path)
    (package / "extra.safetensors").write_bytes(b"not listed anywhere")
    iris_frame(10).drop(columns=["target"]).to_csv(tmp_path / "rows.csv", index=False)
    result = cli("predict", package, "rows.csv")
    assert_one_line_error(result, IntegrityError.exit_code, "extra.safetensors")
    assert_nothing_left(workspace, tmp_path)


def test_evaluate_refuses_a_tampered_manifest(cli, trained, tmp_path):
    package = copy_package(trained, tmp_path)
    manifest = package / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"iris-mlp"', '"iris-mlq"', 1))
    result = cli("evaluate", package, trained.spec)
    assert_one_line_error(result, IntegrityError.exit_code, "manifest.json")


# ---------------------------------------------------------------------------- the happy path


def test_train_prints_metrics_and_the_package(trained):
    result = trained.train
    assert "accuracy" in result.stdout and f"package: {trained.package}" in result.stdout
    baseline = json.loads((trained.package.parent / "metrics.json").read_text())["baseline"]
    assert " ".join(baseline["sentence"].split()) in " ".join(result.stdout.split())  # the yardstick's verdict, in words
    assert "Traceback" not in result.stdout + result.stderr
    assert {p.name for p in trained.package.iterdir()} >= {"manifest.json", "weights.safetensors"}
    assert not [p for p in (trained.home / "runs").rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("with_target", [False, True], ids=["features-only", "with-target"])
def test_predict_writes_a_csv_of_predictions(cli, trained, tmp_path, with_target):
    rows = iris_frame(25, seed=3)
    (tmp_path / "data").mkdir()
    (rows if with_target else rows.drop(columns=["target"])).to_csv(tmp_path / "data" / "rows.csv", index=False)
    args = ["predict", trained.package, "data/rows.csv"] + (["--out", "out.csv"] if with_target else [])
    result = cli(*args)
    assert result.code == 0, result
    assert "Traceback" not in result.stderr
    dest = tmp_path / ("out.csv" if with_target else "data/rows.predictions.csv")
    assert f"25 predictions written to {dest.relative_to(tmp_path)}" in result.stdout
    predictions = pd.read_csv(dest)
    assert list(predictions.columns) == ["prediction"] + [f"proba_{c}" for c in CLASSES]
    assert len(predictions) == len(rows)
    np.testing.assert_allclose(predictions[[f"proba_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-5)
    assert set(predictions["prediction"]) <= set(CLASSES)
    # Five epochs on iris learn it: most predictions are right.
    assert (predictions["prediction"] == rows["target"]).mean() >= 0.8


def test_predict_refuses_to_overwrite_its_input(cli, trained, tmp_path):
    iris_frame(5).drop(columns=["target"]).to_csv(tmp_path / "rows.csv", index=False)
    before = (tmp_path / "rows.csv").read_bytes()
    result = cli("predict", trained.package, "rows.csv", "--out", "rows.csv")
    assert_one_line_error(result, UsageError.exit_code, "--out rows.csv: is INPUT")  # a usage error, as mask's
    assert (tmp_path / "rows.csv").read_bytes() == before
    result = cli("predict", trained.package, "rows.csv", "--out", "no-such-folder/out.csv")
    assert_one_line_error(result, UsageError.exit_code, "--out no-such-folder/out.csv: folder no-such-folder not found")
    (tmp_path / "rows.predictions.csv").mkdir()  # the default: refused before the model runs, as a given --out
    result = cli("predict", trained.package, "rows.csv")
    assert_one_line_error(result, UsageError.exit_code, "rows.predictions.csv (the default of --out): is a folder; give a file path")


def test_evaluate_on_the_spec_test_split(cli, trained):
    result = cli("evaluate", trained.package, trained.spec)
    assert result.code == 0, result
    assert "accuracy" in result.stdout and "Traceback" not in result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 30  # the 20 % test split of 150 rows
    assert metrics["accuracy"] >= 0.8


def test_evaluate_on_a_labelled_csv(cli, trained, tmp_path):
    iris_frame(40, seed=5).to_csv(tmp_path / "labelled.csv", index=False)
    result = cli("evaluate", trained.package, "labelled.csv")
    assert result.code == 0, result
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["n"] == 40 and metrics["accuracy"] >= 0.8
    # Rows without a target value are left out, as training leaves them out, and a note says how many.
    some = iris_frame(40, seed=5)
    some.loc[[3, 17, 30], "target"] = None
    some.to_csv(tmp_path / "some.csv", index=False)
    result = cli("evaluate", trained.package, "some.csv")
    assert result.code == 0, result
    assert json.loads(result.stdout.strip().splitlines()[-1])["rows_without_target"] == 3
    assert "note: 3 rows have no value of the target 'target'; left out" in result.stderr
    # Without the target there is nothing to evaluate against.
    iris_frame(10).drop(columns=["target"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    assert_one_line_error(cli("evaluate", trained.package, "unlabelled.csv"), DataError.exit_code, "unlabelled.csv", "target")


def _spec_with(tmp_path: Path, name: str, **sections: dict) -> Path:
    """IRIS_SPEC with `sections` merged into its sections, written to tmp_path/name."""
    spec = yaml.safe_load(IRIS_SPEC)
    for section, fields in sections.items():
        spec[section] = {**spec.get(section, {}), **fields}
    (tmp_path / name).write_text(yaml.safe_dump(spec), encoding="utf-8")
    return tmp_path / name


@pytest.mark.parametrize(
    "sections, named",
    [
        ({"train": {"seed": 99}}, "train.seed 99 (the package's: 7)"),
        ({"data": {"source": "builtin:iris", "split": {"test": 0.5}}}, "data.split.test 0.5 (the package's: 0.2)"),
    ],
    ids=["seed", "test-fraction"],
)
def test_evaluate_refuses_the_training_data_split_another_way(cli, trained, tmp_path, sections, named):
    # Same data set (digest), other split: its test rows would include rows the model trained on,
    # and the score would overstate the model (the probe: digits 0.994 against 0.975 held out).
    spec = _spec_with(tmp_path, "resplit.yaml", **sections)
    line = assert_one_line_error(cli("evaluate", trained.package, spec), DataError.exit_code, "resplit.yaml", named)
    assert "rows the model was trained on" in line


def test_evaluate_takes_the_training_split_as_written_or_another_data_set(cli, trained, tmp_path):
    # The package's split spelt out (stratify is the classification default) and another model: the same test rows.
    spec = _spec_with(tmp_path, "same.yaml", data={"source": "builtin:iris", "split": {"stratify": True}}, model={"hidden": [8]})
    result = cli("evaluate", trained.package, spec)
    assert result.code == 0, result
    assert json.loads(result.stdout.strip().splitlines()[-1])["n"] == 30
    # Another data set (its own digest) is split as its spec says, whatever the seed.
    iris_frame(60, seed=3).to_csv(tmp_path / "other.csv", index=False)
    spec = _spec_with(
        tmp_path, "other.yaml", data={"source": "csv:other.csv", "target": "target", "split": {"test": 0.5}}, train={"seed": 99}
    )
    result = cli("evaluate", trained.package, spec)
    assert result.code == 0, result
    assert 25 <= json.loads(result.stdout.strip().splitlines()[-1])["n"] <= 30  # half of 60, less test rows that repeat training inputs


def test_evaluate_on_the_training_file_itself_notes_the_figures_are_in_sample(cli, trained, tmp_path):
    """The data set the model was trained on (its lineage's digest), given as a file: every row is
    scored, the training rows with the test rows, so the note says the figures are in-sample."""
    iris_frame().to_csv(tmp_path / "iris.csv", index=False)
    result = cli("evaluate", trained.package, "iris.csv")
    assert result.code == 0, result
    assert "iris.csv is the data set this model was trained on" in result.stderr and "in-sample" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["n"] == 150
    iris_frame(40, seed=5).to_csv(tmp_path / "labelled.csv", index=False)  # other rows: no such note
    assert "in-sample" not in cli("evaluate", trained.package, "labelled.csv").stderr
