"""`run(spec)`: the run folder it leaves, and the errors that leave none."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch
import yaml
from sklearn.datasets import load_iris

from trustforge.errors import DataError, ModelError, TrainingError
from trustforge.package import Model
from trustforge.pipeline import run
from trustforge.spec import load_spec, spec_digest, spec_to_dict

IRIS = {
    "name": "iris-run",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {"max_epochs": 3, "batch_size": 16, "optimizer": {"name": "adamw", "lr": 0.03}},
}


def test_a_run_leaves_its_folder_in_the_default_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUSTFORGE_HOME")  # the default: ./.trustforge (cwd is tmp_path)
    before = torch.get_rng_state()
    result = run(IRIS, progress=False)
    assert torch.equal(torch.get_rng_state(), before), "run() changed the caller's global RNG state"

    runs = tmp_path / ".trustforge" / "runs"
    assert [p.name for p in runs.iterdir()] == [result.run_dir.name]
    assert result.run_dir.resolve() == (runs / result.run_dir.name).resolve()
    assert re.fullmatch(r"iris-run-\d{8}-\d{6}", result.run_dir.name)
    assert sorted(p.name for p in result.run_dir.iterdir()) == [
        "checkpoints",
        "epochs.csv",
        "evidence.json",
        "metrics.json",
        "package",
        "profile.json",
        "spec.yaml",
        "status.json",
    ]

    spec = load_spec(IRIS)
    saved = yaml.safe_load((result.run_dir / "spec.yaml").read_text())
    assert saved == spec_to_dict(spec)  # normalised: every default filled in
    assert saved["train"]["optimizer"]["weight_decay"] == 0.01
    assert load_spec(result.run_dir / "spec.yaml") == spec

    with (result.run_dir / "epochs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "val_loss", "lr"} <= rows[0].keys()
    for row, logs in zip(rows, result.history):
        assert float(row["train_loss"]) == pytest.approx(logs["train_loss"])
        assert float(row["val_loss"]) == pytest.approx(logs["val_loss"])
        assert float(row["lr"]) == 0.03
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])

    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics == result.metrics
    assert metrics["epochs_trained"] == 3 and metrics["n"] == 30
    assert metrics["accuracy"] > 0.6

    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["state"] == "completed"
    assert status["spec_digest"] == spec_digest(spec)

    model = Model.load(result.run_dir / "package")
    assert model.name == "iris-run"
    assert result.package == result.run_dir / "package"


def test_the_package_names_its_creator_by_trustforge_user_or_as_local_admin_never_by_os_login(workspace):
    """A package leaves the machine: its lineage names a token's TrustForge user, and the local
    workspace admin only by kind (the OS login is personal data); the audit log, which stays,
    keeps the login as the actor."""
    import dataclasses
    import getpass

    from trustforge.registry import Registry
    from trustforge.settings import Settings

    settings = Settings.from_env()
    with Registry(settings) as reg:
        access = reg.access
        access.add_user("tina", "trainer")
        token = access.issue_token("tina")

    def creator(result) -> str:
        return json.loads((result.package / "manifest.json").read_text())["lineage"]["created_by"]

    spec = {**IRIS, "train": {**IRIS["train"], "max_epochs": 1}}
    assert creator(run(spec, settings=dataclasses.replace(settings, token=token), progress=False)) == "tina"
    # (a registered run of the local admin: tests/package/test_package.py)
    assert creator(run(spec, settings=settings, progress=False, register=False)) == "local-admin"
    with Registry(settings) as reg:
        assert reg.principal.name in (getpass.getuser(), "local")  # the audit log's actor for the local admin
        assert [e["actor"] for e in reg.audit.entries(limit=10) if e["action"] == "register"] == ["tina"]


def test_a_spec_file_with_a_csv_source(tmp_path, workspace):
    iris = load_iris(as_frame=True).frame
    (tmp_path / "data").mkdir()
    iris.to_csv(tmp_path / "data" / "iris.csv", index=False)
    spec_file = tmp_path / "specs" / "iris.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(yaml.safe_dump({**IRIS, "data": {"source": "csv:../data/iris.csv", "target": "target"}}))
    result = run(spec_file, progress=False)
    saved = yaml.safe_load((result.run_dir / "spec.yaml").read_text())
    assert saved["data"]["source"] == "csv:../../../data/iris.csv"  # as written, from the run folder (ws/runs/NAME-...)
    assert load_spec(result.run_dir / "spec.yaml").data.source == f"csv:{(tmp_path / 'data' / 'iris.csv').resolve()}"
    assert result.run_dir.parent == workspace / "runs"
    assert result.metrics["accuracy"] > 0.6
    lineage = json.loads((result.package / "manifest.json").read_text())["lineage"]
    assert lineage["data_source"] == "csv:iris.csv"  # no local paths in the package


def test_two_runs_of_a_spec_get_two_folders(workspace):
    one = {**IRIS, "train": {**IRIS["train"], "max_epochs": 1}}
    first = run(one, progress=False)
    second = run(one, progress=False)
    assert first.run_dir != second.run_dir
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == sorted([first.run_dir.name, second.run_dir.name])


def _no_run_folder(workspace) -> bool:
    runs = workspace / "runs"
    return not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"source": "csv:missing.csv", "target": "y"}, "missing.csv: data file not found"),
        ({"source": "builtin:iris", "target": "species"}, "no column 'species'"),
    ],
    ids=["missing-csv", "missing-target"],
)
def test_bad_data_leaves_no_run_folder(data, match, workspace):
    with pytest.raises(DataError, match=match):
        run({**IRIS, "data": data}, progress=False)
    assert _no_run_folder(workspace)


def test_an_unknown_builtin_set_is_a_spec_error_before_anything_runs(workspace):
    from trustforge.errors import SpecError

    with pytest.raises(SpecError, match="data.source must name a builtin set"):
        run({**IRIS, "data": {"source": "builtin:nope"}}, progress=False)
    assert _no_run_folder(workspace)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model": {"kind": "cnn"}}, "model.kind 'cnn' needs image data"),
        ({"model": {"kind": "rnn"}}, "model.kind 'rnn'"),
        ({"train": {"loss": "bce"}}, "'bce' needs exactly 2 classes"),
    ],
    ids=["cnn-over-a-table", "rnn-over-a-table", "bce-on-three-classes"],
)
def test_a_model_that_does_not_fit_the_data_leaves_no_run_folder(change, match, workspace):
    with pytest.raises(ModelError, match=match):
        run({**IRIS, **change}, progress=False)
    assert _no_run_folder(workspace)


def test_a_diverging_run_leaves_no_run_folder(workspace):
    spec = {
        "name": "diverges",
        "task": "regression",
        "data": {"source": "builtin:diabetes"},
        "model": {"kind": "mlp", "hidden": [16], "dropout": 0},
        "train": {"max_epochs": 3, "batch_size": 32, "optimizer": {"name": "sgd", "lr": 10}},
    }
    with pytest.raises(TrainingError, match="epoch 1"):
        run(spec, progress=False)
    assert _no_run_folder(workspace)


def test_a_run_that_fails_on_a_bug_after_training_is_listed_as_failed_not_interrupted(workspace, monkeypatch):
    """A probe's run failed after training (an internal error in Opacus' accountant) and `runs
    list` showed it `interrupted`, as if Ctrl-C had stopped it and it could be resumed."""
    from _cli import run_main

    import trustforge.pipeline

    def boom(*args, **kwargs):
        raise ValueError("a bug after training")

    monkeypatch.setattr(trustforge.pipeline, "_plain_twin", boom)
    with pytest.raises(ValueError, match="a bug after training"):
        run(IRIS, progress=False)
    (run_dir,) = (workspace / "runs").iterdir()
    assert (run_dir / "checkpoints" / "last.safetensors").exists()  # what made it look resumable
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    code, out, err = run_main("runs", "list", home=workspace)
    assert code == 0 and run_dir.name in out and "failed" in out and "interrupted" not in out, out


def test_a_run_stopped_by_a_full_disk_after_training_stays_resumable(workspace, monkeypatch):
    import errno

    import trustforge.pipeline

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trustforge.pipeline, "_plain_twin", full)
    with pytest.raises(OSError):
        run(IRIS, progress=False)
    (run_dir,) = (workspace / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"  # resumable once there is room


def test_a_wrong_type_of_argument_to_the_python_api_is_one_error_naming_it(workspace):
    """A probe's bare TypeErrors (`Model.predict(None)`, `Model.load(5)`, `run(123)`, ...) and a
    `register="no"` that registered: TrustForge's own errors, each naming the argument."""
    from trustforge.errors import IntegrityError, SecurityError, SpecError
    from trustforge.registry import Registry

    for spec in (123, None, b"spec.yaml"):
        with pytest.raises(SpecError, match=r"^the spec must be a TaskSpec, a mapping or the path of a YAML file"):
            run(spec, progress=False)
    for name in ("register", "progress", "resume"):
        with pytest.raises(SpecError, match=rf"^run\({name}=\.\.\.\): must be True or False; got str 'no'$"):
            run(IRIS, **{"progress": False, name: "no"})
    with Registry() as registry:
        assert registry.list_models() == []  # register="no" registered nothing
    result = run(IRIS, progress=False, register=False)
    model = Model.load(result.package)
    for data, got in ((None, "NoneType None"), (5, "int 5"), ([[1, 2, 3]], "list [[1, 2, 3]] (a list of rows: pass pd.DataFrame")):
        for method in ("predict", "predict_proba", "evaluate", "imputed"):
            with pytest.raises(DataError, match=rf"^Model\.{method}\(data\): must be a DataFrame, .*; got {re.escape(got)}"):
                getattr(model, method)(data)
    with pytest.raises(DataError, match=r"^Model\.predict_columns\(columns\): must be a mapping of input name to values.*; got int 5$"):
        model.predict_columns(5)
    with pytest.raises(IntegrityError, match=r"^Model\.load\(path\): must be a package folder \(a str or os\.PathLike\); got int 5$"):
        Model.load(5)
    with pytest.raises(SecurityError, match=r"^Model\.load\(public_key\): must be the path of a PEM public key file .*; got bytes"):
        Model.load(result.package, public_key=b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(SecurityError, match=r"^Model\.load\(keyring\): must be a trustforge\.secure\.Keyring; got str"):
        Model.load(result.package, keyring="key")


def test_the_progress_bar_prints_one_line_per_epoch_off_a_terminal(workspace, capsys):
    run({**IRIS, "train": {**IRIS["train"], "max_epochs": 2}})
    err = capsys.readouterr().err
    assert re.findall(r"epoch (\d)/2", err) == ["1", "2"]


def test_a_model_that_refuses_missing_values_trains_and_is_not_scored_on_them(workspace):
    """`data.missing.numeric: error` with the default robustness check: the run completes; the
    "missing" corruption (which the model refuses by design) is skipped with its reason."""
    spec = {
        "name": "refuses-missing",
        "data": {"source": "builtin:breast_cancer", "missing": {"numeric": "error"}},
        "model": {"kind": "mlp"},
        "train": {"max_epochs": 2, "seed": 7},
        "evaluate": {"explain": False, "speed": False},
    }
    result = run(spec, progress=False, register=False)
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    table = evidence["corruptions"]
    assert {r["corruption"] for r in table["rows"]} == {"noise"}
    assert "refuses missing values" in table["skipped"]["missing"]
