"""No path of the training machine leaves it: not in the package, the evidence, the metrics,
the report or the model card (only the data file's name, e.g. `csv:train.csv`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from _cli import run_main
from sklearn.datasets import load_breast_cancer

from trustforge.data import prepare
from trustforge.evaluate import write_report
from trustforge.package import Model
from trustforge.pipeline import run
from trustforge.spec import load_spec, spec_digest, spec_to_dict


def _forms(path: Path) -> set[bytes]:
    """The ways a path can be written into a file: as given and resolved, plain and JSON-escaped."""
    out = set()
    for p in {str(path), str(path.resolve())}:
        out |= {p.encode(), json.dumps(p)[1:-1].encode(), p.replace("/", "\\/").encode()}
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny MLP trained from a spec in one folder on a CSV in another, with a shift set beside it."""
    root = tmp_path_factory.mktemp("elsewhere")
    data = root / "tables"
    data.mkdir()
    frame = load_breast_cancer(as_frame=True).frame
    frame.iloc[:400].to_csv(data / "train.csv", index=False)
    frame.iloc[400:].to_csv(data / "shift.csv", index=False)
    specs = root / "specs"
    specs.mkdir()
    spec_file = specs / "cancer.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "name": "cancer-paths",
                "data": {"source": "csv:../tables/train.csv", "target": "target"},
                "model": {"kind": "mlp", "hidden": [8]},
                "train": {"max_epochs": 2, "batch_size": 64},
                "evaluate": {"shift": "csv:../tables/shift.csv"},
            }
        )
    )
    home = root / "workspace"
    mp = pytest.MonkeyPatch()
    mp.setenv("TRUSTFORGE_HOME", str(home))
    try:
        result = run(spec_file, progress=False)
        report = write_report(result.run_dir)
    finally:
        mp.undo()
    return {"result": result, "report": report, "home": home, "data": data, "spec_file": spec_file}


def test_no_file_that_leaves_the_machine_names_a_local_path(trained):
    result, data = trained["result"], trained["data"]
    assert load_spec(trained["spec_file"]).data.source == f"csv:{(data / 'train.csv').resolve()}"  # resolved for reading
    leaving = sorted(p for p in result.package.rglob("*") if p.is_file())
    assert any(p.suffix == ".safetensors" for p in leaving) and any(p.name == "manifest.json" for p in leaving)
    leaving += [result.run_dir / "evidence.json", result.run_dir / "metrics.json", trained["report"], result.run_dir / "model_card.md"]
    leaving += [result.run_dir / "profile.json"]
    secrets = {
        "workspace": _forms(trained["home"]),
        "data file": _forms(data / "train.csv"),
        "shift file": _forms(data / "shift.csv"),
        "data folder": _forms(data),
        "spec folder": _forms(trained["spec_file"].parent),
    }
    # The scan finds a path where one is: in the spec as loaded, resolved for reading.
    assert any(f in json.dumps(spec_to_dict(load_spec(trained["spec_file"]))).encode() for f in secrets["data file"])
    leaving += [result.run_dir / "spec.yaml", result.run_dir / "status.json"]  # stay here, but are shown and compared
    for path in leaving:
        content = path.read_bytes()
        for what, forms in secrets.items():
            assert not any(f in content for f in forms), f"{path.relative_to(result.run_dir)} holds the {what} path"

    manifest = json.loads((result.package / "manifest.json").read_text())
    assert manifest["spec"]["data"]["source"] == "csv:train.csv"
    assert manifest["spec"]["evaluate"]["shift"] == "csv:shift.csv"
    assert manifest["lineage"]["data_source"] == "csv:train.csv"
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    assert evidence["data"]["source"] == "csv:train.csv" and evidence["shift"]["source"] == "csv:shift.csv"
    assert "csv:train.csv" in trained["report"].read_text() and "csv:train.csv" in (result.run_dir / "model_card.md").read_text()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_no_exported_artefact_names_a_local_path_or_holds_test_rows(trained, fmt):
    """Probe 10, item 1: the ONNX exporter writes each node's Python stack trace into the model
    and TorchScript's `code/*.debug_pkl` records do the same, naming the installed source files
    by their absolute path; tracing also stored its example rows (`traced_inputs`) in the archive."""
    import io
    import zipfile

    import trustforge

    result, data = trained["result"], trained["data"]
    for quantize in ([], ["--quantize", "int8"]):
        args = ("package", "export", result.package, "--format", fmt, *quantize, "--data", data / "shift.csv", "--no-speed")
        code, _, err = run_main(*args, home=trained["home"])
        assert code == 0, err
    secrets = {
        "source folder": _forms(Path(trustforge.__file__).parents[1]),
        "workspace": _forms(trained["home"]),
        "data folder": _forms(data),
    }
    folders = [result.package.with_name(f"package.{fmt}"), result.package.with_name(f"package.{fmt}-int8")]
    for folder in folders:
        files = sorted(folder.iterdir())
        assert {p.name for p in files} == {f"model.{fmt}", "manifest.json", "model.sig"}
        for path in files:
            content = path.read_bytes()
            parts = {path.name: content}
            if zipfile.is_zipfile(io.BytesIO(content)):  # TorchScript: every record, as stored and unpacked
                with zipfile.ZipFile(io.BytesIO(content)) as archive:
                    parts |= {f"{path.name}:{n}": archive.read(n) for n in archive.namelist()}
            for name, part in parts.items():
                for what, forms in secrets.items():
                    assert not any(f in part for f in forms), f"{folder.name}/{name} holds the {what} path"
            assert not any(n.endswith(".debug_pkl") or "traced_inputs" in n for n in parts), sorted(parts)


def test_export_says_why_the_test_split_cannot_be_re_prepared_here(trained, tmp_path):
    """Probe 10, item 5: from a folder without the data file the reason was hidden as `(DataError)`."""
    result = trained["result"]
    code, _, err = run_main("package", "export", result.package, "--format", "onnx", "--no-speed", home=trained["home"], cwd=tmp_path)
    assert code == 3, err
    assert (
        "the test split of cancer-paths cannot be re-prepared from its spec's source 'csv:train.csv' (train.csv: data file not found; "
        "a package keeps its data file's name only, read from the working folder); give the labelled test rows with --data FILE"
    ) in err, err
    assert str(tmp_path) not in err and str(trained["home"]) not in err, err


def test_the_run_folders_spec_names_the_data_as_written_from_there_and_reads_the_same_data(trained):
    """A run folder's spec.yaml holds each relative data path relative to the run folder: loaded
    as a spec file (which resolves it against its own folder) it reads the same files, and has
    the digest `--resume` looks runs up by."""
    result, spec_file = trained["result"], trained["spec_file"]
    saved = yaml.safe_load((result.run_dir / "spec.yaml").read_text())
    assert saved["data"]["source"] == "csv:../../../tables/train.csv"  # workspace/runs/NAME-.../ -> tables/
    assert saved["evaluate"]["shift"] == "csv:../../../tables/shift.csv"
    again, first = load_spec(result.run_dir / "spec.yaml"), load_spec(spec_file)
    assert (again.data.source, again.evaluate.shift) == (first.data.source, first.evaluate.shift)
    assert spec_digest(again) == spec_digest(first) == json.loads((result.run_dir / "status.json").read_text())["spec_digest"]
    assert prepare(again).test_raw.frame.equals(prepare(first).test_raw.frame)


def test_a_data_path_written_absolute_is_relative_in_the_run_folders_spec_and_as_written_in_validate(tmp_path, workspace):
    from trustforge.spec import written_spec

    data = tmp_path / "tables" / "train.csv"
    spec = load_spec(_spec(tmp_path / "specs", "table", {"source": f"csv:{data}", "target": "y"}, evaluate={"shift": "csv:../x.csv"}))
    run_dir = workspace / "runs" / "table-20260101-000000"
    # Relative to the run folder in every process (a tune worker has no record of what was written).
    assert written_spec(spec, run_dir).data.source == f"csv:{os.path.relpath(data, run_dir)}"
    assert not written_spec(spec, run_dir).data.source.startswith("csv:/")
    assert written_spec(spec).data.source == f"csv:{data}"  # `validate`: absolute as written
    assert written_spec(spec, run_dir).evaluate.shift == "csv:../../../x.csv"
    assert written_spec(load_spec({"data": {"source": "builtin:iris"}}), run_dir).data.source == "builtin:iris"
    mapping = load_spec({"data": {"source": "csv:tables/train.csv", "target": "y"}})  # no spec folder: read from the working one
    assert written_spec(mapping, run_dir).data.source == "csv:../../../tables/train.csv"  # (cwd is tmp_path)


def test_a_run_folders_spec_finds_a_linked_data_folder_after_the_project_moves(tmp_path, monkeypatch):
    # Probe #8: the copy named the link's target from the run folder, so with the project moved
    # (its `data/` a link to a folder elsewhere) it no longer found the file the spec still did.
    from trustforge.spec import spec_to_yaml, written_spec

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "train.csv").write_text("x,y\n1,0\n")
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "data").symlink_to(shared)
    spec = load_spec(_spec(project / "specs", "table", {"source": "csv:../data/train.csv", "target": "y"}))
    run_dir = project / ".trustforge" / "runs" / "table-20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.yaml").write_text(spec_to_yaml(written_spec(spec, run_dir)))
    (tmp_path / "a" / "b").mkdir(parents=True)
    project.rename(tmp_path / "a" / "b" / "moved")  # deeper: a path to the link's target from the run folder misses
    again = load_spec(tmp_path / "a" / "b" / "moved" / ".trustforge" / "runs" / "table-20260101-000000" / "spec.yaml")
    assert Path(again.data.source.partition(":")[2]).is_file(), again.data.source


def test_validate_prints_the_data_paths_as_the_spec_wrote_them(tmp_path, workspace):
    _spec(tmp_path / "project" / "specs", "rel", {"source": "csv:../tables/train.csv", "target": "y"}, evaluate={"shift": "csv:~/s.csv"})
    code, out, err = run_main("validate", "--no-data", Path("project") / "specs" / "rel.yaml", home=workspace, cwd=tmp_path)
    assert code == 0, err
    assert "  source: csv:../tables/train.csv\n" in out and "  shift: csv:~/s.csv\n" in out, out
    assert str(tmp_path) not in out and str(tmp_path.resolve()) not in out and str(Path.home()) not in out


def test_the_redacted_package_still_loads_and_evaluates_on_its_spec(trained, monkeypatch):
    result, spec_file = trained["result"], trained["spec_file"]
    monkeypatch.setenv("TRUSTFORGE_HOME", str(trained["home"]))  # its keyring verifies the package
    model = Model.load(result.package)
    assert model.spec.data.source == "csv:train.csv"  # the manifest's spec validates as it is
    metrics = model.evaluate(prepare(load_spec(spec_file)).test_raw)
    assert metrics["n"] == result.metrics["n"] and metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    # The command line does the same from the spec file and writes the report from the run.
    code, out, err = run_main("evaluate", result.package, spec_file, home=trained["home"])
    assert code == 0, err
    code, out, err = run_main("report", result.run_dir, home=trained["home"])
    assert code == 0, err


# ---------------------------------------------------------------------------- errors on this machine
# A message printed here names a file as the user knows it: a spec's data path as the spec wrote
# it (the spec's folder is not the working folder), a file TrustForge placed in the workspace
# relative to the workspace, a command-line argument as typed. Never the absolute path the
# loader or the settings resolved, which the user never typed.


def _spec(folder: Path, name: str, data: dict, **more) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "data": data, **more}))
    return path


def test_an_error_names_a_spec_data_path_as_the_spec_wrote_it(tmp_path, workspace):
    project, cwd = tmp_path / "project", tmp_path / "elsewhere"
    cwd.mkdir()
    typed = Path("..") / "project" / "specs"  # the spec as typed from the working folder

    _spec(project / "specs", "table", {"source": "csv:../tables/train.csv", "target": "label"})
    code, _, err = run_main("validate", typed / "table.yaml", home=workspace, cwd=cwd)
    assert code == 3 and "error: ../tables/train.csv: data file not found (a spec's data path is relative to the spec's folder" in err, err
    errors = [err]

    (project / "tables").mkdir()
    (project / "tables" / "train.csv").write_text("a,b\n1,2\n")
    code, _, err = run_main("validate", typed / "table.yaml", home=workspace, cwd=cwd)
    assert code == 3 and "error: ../tables/train.csv: no column 'label' (the spec's data.target)" in err, err
    errors.append(err)

    # A file inside a folder the spec names: the folder as written, then the rest.
    for label in ("cat", "dog"):
        (project / "images" / label).mkdir(parents=True)
        (project / "images" / label / "1.png").write_bytes(b"not a picture")
    _spec(project / "specs", "pictures", {"source": "images:../images"})
    code, _, err = run_main("validate", typed / "pictures.yaml", home=workspace, cwd=cwd)
    assert code == 3 and "error: ../images/cat/1.png: not a readable image" in err, err
    errors.append(err)

    # evaluate.shift is resolved the same way (it is read after training).
    from trustforge._shown import shown

    shifted = load_spec(
        _spec(project / "specs", "shifted", {"source": "csv:../tables/train.csv", "target": "a"}, evaluate={"shift": "csv:gone.csv"})
    )
    assert shown(f"{shifted.evaluate.shift}: data file not found") == "csv:gone.csv: data file not found"
    for err in errors:
        assert str(tmp_path) not in err and str(tmp_path.resolve()) not in err, err


def test_an_error_names_a_workspace_file_from_the_workspace_as_set(tmp_path, workspace):
    from trustforge.spec import load_spec, spec_digest

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    home = Path("..") / workspace.name  # TRUSTFORGE_HOME=../ws, as a user may set it
    errors = []
    assert run_main("keys", "init", home=home, cwd=cwd).code == 0
    code, _, err = run_main("keys", "init", home=home, cwd=cwd)
    assert code == 7 and "error: keys/signing.key: keys exist already" in err, err
    errors.append(err)

    spec = _spec(tmp_path / "specs", "iris", {"source": "builtin:iris"}, model={"kind": "mlp"})
    run = workspace / "runs" / "iris-20260101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.safetensors").write_bytes(b"not a checkpoint")
    (run / "status.json").write_text(json.dumps({"state": "interrupted", "spec_digest": "another spec"}))
    code, _, err = run_main("train", "--resume", spec, home=home, cwd=cwd)
    assert code == 6 and "error: ../ws/runs/iris-20260101-000000: the interrupted run used a different spec" in err, err
    errors.append(err)

    (run / "status.json").write_text(json.dumps({"state": "interrupted", "spec_digest": spec_digest(load_spec(spec))}))
    code, _, err = run_main("train", "--resume", spec, home=home, cwd=cwd)
    assert code != 0 and "../ws/runs/iris-20260101-000000/checkpoints/" in err, err
    errors.append(err)

    (run / "status.json").write_text(json.dumps({"state": "completed", "spec_digest": "another spec"}))
    code, _, err = run_main("train", "--resume", spec, home=home, cwd=cwd)
    assert code == 6 and "no interrupted run of 'iris' with a checkpoint in the workspace's runs folder (../ws/runs/)" in err, err
    errors.append(err)

    code, _, err = run_main("runs", "show", "iris-19990101-000000", home=home, cwd=cwd)
    assert code == 6 and "iris-19990101-000000: no such run in the workspace's runs folder (../ws/runs/;" in err, err
    errors.append(err)
    for err in errors:
        assert str(tmp_path) not in err and str(tmp_path.resolve()) not in err, err


def test_an_error_names_a_command_line_path_as_typed(tmp_path, workspace):
    cwd = tmp_path / "elsewhere"
    (cwd / "notes").mkdir(parents=True)
    code, _, err = run_main("report", Path("notes"), home=workspace, cwd=cwd)
    assert code == 6 and "error: notes: not a run folder" in err, err
    code, _, err = run_main("report", Path("..") / "nothing", home=workspace, cwd=cwd)
    assert code == 6 and "error: ../nothing: no such run folder" in err, err
    spec = _spec(
        tmp_path / "specs",
        "iris",
        {"source": "builtin:iris"},
        model={"kind": "mlp"},
        tune={"trials": 1, "space": {"train.max_epochs": {"type": "int", "low": 1, "high": 2}}},
    )
    code, _, err = run_main("tune", spec, "--storage", Path("no-folder") / "study.journal", home=workspace, cwd=cwd)
    assert code == 2 and "file whose folder does not exist (no-folder/study.journal)" in err, err
    assert str(tmp_path) not in err and str(tmp_path.resolve()) not in err


def test_shown_rewrites_whole_paths_only(tmp_path):
    from trustforge._shown import remember_written, shown

    data = tmp_path / "tables" / "train.csv"
    remember_written(data, "../tables/train.csv")
    home = tmp_path / "ws"
    ws = {"home": home, "home_as": ".trustforge"}  # the workspace as the user set it: the default
    assert shown(f"csv:{data}: no column 'y'", **ws) == "csv:../tables/train.csv: no column 'y'"
    assert shown(f"'{data}' and {data}.", **ws) == "'../tables/train.csv' and ../tables/train.csv."
    assert shown(f"{data}.bak: not found; {data}2 neither", **ws) == f"{data}.bak: not found; {data}2 neither"
    assert shown(f"{home}/runs/a/checkpoint.pt: truncated", **ws) == ".trustforge/runs/a/checkpoint.pt: truncated"
    assert shown(f"{home}: not writable", **ws) == ".trustforge: not writable"  # the workspace itself is named, not hidden
    assert shown(f"{home}/x", home=home, home_as="../ws/") == "../ws/x"
    assert shown(f"{home}/x", home=home, home_as=str(home)) == f"{home}/x"  # set as an absolute path: shown as set
    assert shown(f"{home}-old/x", **ws) == f"{home}-old/x"  # another folder beside it
    assert shown(f"sqlite:///{home}/registry.db", **ws) == f"sqlite:///{home}/registry.db"  # a URL is left whole
    remember_written(home / "tables", "tables")  # a spec in the workspace: its own form wins
    assert shown(f"{home}/tables/x.csv", **ws) == "tables/x.csv"


def test_recorded_errors_hold_no_local_path_and_no_value(tmp_path):
    """What an audit entry keeps of an error (found by a probe: `package export --data` wrote the
    email of a numeric cell, and the absolute path of a missing file, into the append-only log)."""
    from trustforge._shown import recorded
    from trustforge.errors import DataError, SecurityError

    home = tmp_path / "ws"
    email = DataError("lab_pii.csv: column 'mean radius' must be numeric; got 'mary.smith@example.com' in row 3")
    assert recorded(email, home=home) == "DataError: lab_pii.csv: column 'mean radius' must be numeric; got <value> in row 3"
    missing = DataError(f"{tmp_path}/data/labunk.csv: file not found; csv:{tmp_path}/x.csv neither")
    assert recorded(missing, home=home) == "DataError: labunk.csv: file not found; csv:x.csv neither"
    key = SecurityError(f"{home}/keys/masking.key: the masking secret is wrapped under another key-encryption key")
    assert recorded(key, home=home).startswith("SecurityError: keys/masking.key: the masking secret")
    kept = DataError(f"models:/m/3/weights.safetensors.enc changed; see https://example.org/a/b; sqlite:///{tmp_path}/r.db")
    assert recorded(kept) == "DataError: models:/m/3/weights.safetensors.enc changed; see https://example.org/a/b; sqlite:r.db"
    # a value the message does not quote after "got": masked by the detector, before the text is cut
    loose = DataError("x" * 280 + " call 13039414918 or mary.smith@example.com")
    assert "mary" not in recorded(loose) and "1303941" not in recorded(loose) and len(recorded(loose)) == 300
    assert str(tmp_path) not in recorded(DataError(f"{tmp_path}/a b/c.csv: bad"))


def test_serve_names_a_package_folder_as_typed(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained["result"].package, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "created": "tampered"}))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    code, _, err = run_main("serve", Path("..") / "copy", home=trained["home"], cwd=cwd)
    assert code == 4 and "error: ../copy/manifest.json: " in err and str(tmp_path) not in err, err


def test_serving_a_package_folder_audits_it_by_name_not_by_its_local_path(tmp_path):
    from trustforge.serve._service import ModelSource

    folder = tmp_path / "deep" / "bc-package"
    folder.mkdir(parents=True)
    source = ModelSource(str(folder))
    assert source.object == "package:bc-package"  # what access checks and audit entries name
    assert str(tmp_path) not in source.object


# ---------------------------------------------------------------------------- package files
# `trustforge.secure` names a package's file as FOLDER/NAME with the folder as its caller gave
# it; a caller that holds a path the user never typed (the registry's store, the folder a server
# resolved) names it as the user knows it: the version's URI, the folder as typed.


def _tampered(folder: Path, how: str) -> None:
    if how == "changed":
        target = sorted(p for p in folder.iterdir() if p.name.startswith("weights"))[0]
        data = bytearray(target.read_bytes())
        data[-5] ^= 0xFF
        target.write_bytes(bytes(data))
    elif how == "extra":
        (folder / "notes.txt").write_text("x")
    elif how == "link":
        (folder / "link").symlink_to(folder / "manifest.json" if (folder / "manifest.json").exists() else folder / "sealed.json")
    elif how == "no manifest":
        (folder / "manifest.json").unlink() if (folder / "manifest.json").exists() else (folder / "manifest.json.enc").unlink()
    elif how == "no signature":
        (folder / "model.sig").unlink() if (folder / "model.sig").exists() else (folder / "model.sig.enc").unlink()


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@pytest.mark.parametrize("how", ["changed", "extra", "link", "no manifest", "no signature"])
def test_a_package_error_names_the_file_from_the_folder_as_the_caller_gave_it(trained, tmp_path, monkeypatch, how, sealed):
    import shutil

    from trustforge.errors import TrustForgeError
    from trustforge.secure import Keyring, seal_package, unseal_package, verify_package
    from trustforge.settings import Settings

    monkeypatch.setenv("TRUSTFORGE_HOME", str(trained["home"]))
    monkeypatch.chdir(tmp_path)
    keyring = Keyring.load(Settings.from_env().keys_dir)
    shutil.copytree(trained["result"].package, tmp_path / "plain")
    folder = Path("pkg")
    if sealed:
        seal_package(Path("plain"), folder, keyring)
    else:
        shutil.copytree("plain", folder)
    _tampered(folder, how)
    calls = [lambda: Model.load(folder), lambda: Model.load("pkg/")]
    calls += [lambda: unseal_package(folder, Path("out"), keyring)] if sealed else [lambda: verify_package(folder, keyring)]
    calls += [] if sealed or how == "changed" else [lambda: seal_package(folder, Path("out"), keyring)]  # (digests: when opened)
    for call in calls:
        with pytest.raises(TrustForgeError) as failed:
            call()
        message = str(failed.value)
        assert message.startswith("pkg/"), message
        assert str(tmp_path) not in message and str(tmp_path.resolve()) not in message and str(trained["home"]) not in message, message


def test_a_stored_package_is_named_by_its_version_to_python_callers(trained, tmp_path, monkeypatch):
    """The registry's store is a local path nobody typed: its files are named from the version's
    URI, for a wrong key-encryption key as for a changed file, in load_model, verify_version and a backup."""
    import shutil

    from trustforge.errors import IntegrityError, SecurityError
    from trustforge.registry import Registry, create_backup
    from trustforge.secure import Keyring

    home = tmp_path / "ws"
    shutil.copytree(trained["home"], home)
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    with Registry() as reg:
        mv = reg.get("models:/cancer-paths/1")
        assert mv.encrypted
        reg.keyring = Keyring.load_or_init(tmp_path / "other-keys")  # another workspace's KEK
        for call in (lambda: reg.load_model(mv.uri), lambda: reg.verify_version(mv.name, mv.version)):
            with pytest.raises(
                SecurityError, match=r"^models:/cancer-paths/1/sealed\.json: sealed under another key-encryption key"
            ) as failed:
                call()
            assert str(tmp_path) not in str(failed.value), failed.value
    _tampered(mv.path, "changed")
    with Registry() as reg:
        with pytest.raises(IntegrityError, match=r"^models:/cancer-paths/1/weights\.safetensors\.enc: failed authentication") as failed:
            create_backup(reg.settings, tmp_path / "registry.tfbak", reg.keyring)
        assert str(tmp_path) not in str(failed.value), failed.value


def test_a_server_names_a_package_folder_as_typed_to_python_callers(trained, tmp_path, monkeypatch):
    import shutil

    from trustforge.errors import IntegrityError
    from trustforge.serve import ModelService, ServeConfig

    monkeypatch.setenv("TRUSTFORGE_HOME", str(trained["home"]))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(trained["result"].package, tmp_path / "pkg")
    _tampered(tmp_path / "pkg", "changed")
    for typed in ("pkg", "./pkg/"):
        with pytest.raises(IntegrityError) as failed:
            ModelService(typed, ServeConfig(workers=0, auth="none")).start()
        assert str(failed.value).startswith(typed.rstrip("/") + "/weights.safetensors: "), failed.value
        assert str(tmp_path) not in str(failed.value)
