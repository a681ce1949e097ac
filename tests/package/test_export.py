"""`package export`: ONNX and TorchScript artefacts equal eager on the test split, int8 within
half a point of accuracy, signed beside the package, bound to it, and picked by `serve --backend onnx`.

The two example specs are trained once for the module as they are written (the claims are
about those models): the breast-cancer MLP (a table) and the digits CNN (images), with the
slow evaluation extras off (they do not change the model).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from trustforge import secure
from trustforge.commands.package import app
from trustforge.errors import AccessDenied, DataError, IntegrityError
from trustforge.package import Model, OnnxModule, encode_manifest, export_model, export_path, read_export, split_for_export
from trustforge.pipeline import run
from trustforge.registry import Registry
from trustforge.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
VARIANTS = [("onnx", None), ("onnx", "int8"), ("torchscript", None), ("torchscript", "int8")]
runner = CliRunner()


def _digest(model: Model) -> str:
    return hashlib.sha256(encode_manifest(model.manifest)).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{"cancer"|"digits": (settings, run result, model, test rows, {variant: evidence})}, registered."""
    out = {}
    for key, name in (("cancer", "breast_cancer_mlp"), ("digits", "digits_cnn")):
        root = tmp_path_factory.mktemp(key)
        settings = Settings.from_env(root / "ws")
        spec = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
        spec["evaluate"] = {**spec.get("evaluate", {}), **QUIET}
        result = run(spec, settings=settings, progress=False, register=True)
        keyring = secure.Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
        model = Model.load(result.package, keyring=keyring)
        raw, note = split_for_export(model, cache_dir=settings.cache_dir)
        evidence = {}
        for fmt, q in VARIANTS:
            dest = export_path(result.package, fmt, q)
            evidence[(fmt, q)] = export_model(
                model,
                raw,
                dest,
                keyring,
                fmt=fmt,
                quantize=q,
                package_digest=_digest(model),
                data_note=note,
                speed=fmt == "onnx",
                repeats=1,
            )
        out[key] = (settings, result, model, raw, evidence, keyring)
    return out


@pytest.mark.parametrize("key", ["cancer", "digits"])
def test_onnx_and_torchscript_equal_eager_on_the_test_split(trained, key):
    settings, result, model, raw, evidence, keyring = trained[key]
    n = len(model.preprocessor.encode_inputs(raw)[0])
    assert n == result.metrics["n"]  # the re-prepared split is the one the package was scored on
    for fmt in ("onnx", "torchscript"):
        check = evidence[(fmt, None)]["check"]
        assert check["rows"] == n and check["max_difference"] <= 1e-4 and check["tolerance"] == 1e-4
        assert check["accuracy_change_points"] == 0.0
    # Independently of the recorded figure: the ONNX file on disk, verified, run on every test row.
    _, blob = read_export(export_path(result.package, "onnx"), keyring, _digest(model))
    inputs = tuple(model.preprocessor.encode_inputs(raw))
    with torch.no_grad():
        eager = model.module(*inputs)
    got = OnnxModule(blob)(*inputs)
    assert got.shape == eager.shape
    assert float((got - eager).abs().max()) <= 1e-4


@pytest.mark.parametrize("key", ["cancer", "digits"])
def test_int8_changes_test_accuracy_by_at_most_half_a_point(trained, key):
    evidence = trained[key][4]
    onnx_int8, ts_int8 = evidence[("onnx", "int8")]["check"], evidence[("torchscript", "int8")]["check"]
    assert abs(onnx_int8["accuracy_change_points"]) <= 0.5, onnx_int8
    assert ts_int8["accuracy_change_points"] >= -0.5, ts_int8  # torch.ao: no more than half a point lost
    assert onnx_int8["max_difference"] > 0  # really quantised: outputs moved
    eager = onnx_int8["metrics"]["eager"]["accuracy"]
    assert eager == pytest.approx(trained[key][1].metrics["accuracy"])
    speed = evidence[("onnx", "int8")]["speed"]
    assert speed["batch_1"]["eager_ms"] > 0 and speed["batch_256"]["export_ms"] > 0


def test_a_swapped_or_foreign_artefact_is_refused(trained, tmp_path, caplog):
    _, result, model, _, _, keyring = trained["cancer"]
    digest = _digest(model)
    copy = tmp_path / "package.onnx"
    shutil.copytree(export_path(result.package, "onnx"), copy)
    # Another artefact's model file in its place (same name): its digest is not the signed one.
    shutil.copyfile(export_path(result.package, "onnx", "int8") / "model.onnx", copy / "model.onnx")
    with pytest.raises(IntegrityError, match=r"model\.onnx: SHA-256 does not match the signature"):
        read_export(copy, keyring, digest)
    # An intact artefact of another package (the digits CNN's) beside this package is refused too.
    other = trained["digits"][1].package
    with pytest.raises(IntegrityError, match="exported from another package"):
        read_export(export_path(other, "onnx"), trained["digits"][5], digest)
    # The server skips a refused artefact (int8 here, its file swapped) for the next one that verifies.
    from trustforge.serve._onnx import pick_export

    pkg = tmp_path / "served" / "package"
    shutil.copytree(result.package, pkg)
    for q in (None, "int8"):
        shutil.copytree(export_path(result.package, "onnx", q), export_path(pkg, "onnx", q))
    shutil.copyfile(export_path(pkg, "onnx") / "model.onnx", export_path(pkg, "onnx", "int8") / "model.onnx")
    caplog.set_level("WARNING", logger="trustforge.serve")
    picked = pick_export(Model.load(pkg, keyring=keyring), digest, keyring)
    assert picked is not None and picked[0] == export_path(pkg, "onnx") and picked[1]["export"]["quantize"] is None
    refused = [r for r in caplog.records if getattr(r, "event", None) == "onnx_export_refused"]
    assert len(refused) == 1 and refused[0].fields["artefact"] == "package.onnx-int8", [r.getMessage() for r in caplog.records]
    reason = refused[0].fields["reason"]  # a field of its own, naming the file from the package's folder
    assert reason.startswith("package.onnx-int8/model.onnx: SHA-256 does not match") and str(tmp_path) not in reason, reason
    # And the evidence cannot be edited (it is signed with the model file).
    edited = tmp_path / "edited"
    shutil.copytree(export_path(result.package, "onnx", "int8"), edited)
    text = (edited / "manifest.json").read_text().replace('"accuracy_change_points": ', '"accuracy_change_points": 1')
    (edited / "manifest.json").write_text(text)
    with pytest.raises(IntegrityError, match=r"manifest\.json: SHA-256 does not match"):
        read_export(edited, keyring, digest)


def test_cli_exports_a_registered_version_sealed_and_serve_picks_int8(trained, monkeypatch, caplog):
    settings, result, model, _, _, _ = trained["cancer"]
    monkeypatch.setenv("TRUSTFORGE_HOME", str(settings.home))
    uri = result.model_uri
    done = runner.invoke(app, ["export", uri, "--format", "onnx", "--quantize", "int8", "--no-speed"])
    assert done.exit_code == 0, done.output
    assert "(sealed)" in done.output and "accuracy change" in done.output
    with Registry(Settings.from_env()) as reg:
        mv = reg.get(uri)
        folder = export_path(mv.path, "onnx", "int8")
        assert secure.is_sealed(folder) and not (folder / "model.onnx").exists()  # weights never in plaintext at rest
        ok = [e for e in reg.audit.entries() if e["action"] == "export" and e["object"] == mv.uri and e["outcome"] == "ok"]
        assert len(ok) == 1 and ok[0]["details"]["quantize"] == "int8"
        from trustforge.serve import ModelService, ServeConfig
        from trustforge.serve._workers import load_serving_model

        svc = ModelService(uri, ServeConfig(workers=0, auth="none", backend="onnx"), registry=reg).start()
        try:
            served = svc.current.executors[0].model
            assert isinstance(served.module, OnnxModule)
            assert svc.current._load["onnx_export"] == str(folder)
            from sklearn.datasets import load_breast_cancer

            rows = load_breast_cancer(as_frame=True).frame[model.schema.input_names].head(64)
            a, b = model.predict_proba(rows), served.predict_proba(rows)
            assert np.abs(a - b).max() < 0.05  # int8: close, not equal
            worker = load_serving_model(svc.current._load)  # what a worker process loads: the same artefact, verified again
            assert isinstance(worker.module, OnnxModule)
            np.testing.assert_allclose(worker.predict_proba(rows), b, atol=1e-6)
        finally:
            svc.close()


def test_export_needs_the_export_right_and_is_audited(trained, monkeypatch):
    settings, result, *_ = trained["digits"]
    monkeypatch.setenv("TRUSTFORGE_HOME", str(settings.home))
    assert secure.allowed("trainer", "export") and not secure.allowed("deployer", "export") and not secure.allowed("viewer", "export")
    with Registry(Settings.from_env()) as admin:
        admin.access.add_user("dora", "deployer")
        token = admin.access.issue_token("dora")
    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
    done = runner.invoke(app, ["export", result.model_uri, "--format", "torchscript", "--no-speed"])
    assert isinstance(done.exception, AccessDenied), done.output
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    with Registry(Settings.from_env()) as admin:
        assert admin.audit.verify().ok
        denied = [e for e in admin.audit.entries() if e["action"] == "export" and e["outcome"] == "denied"]
        assert len(denied) == 1 and denied[0]["actor"] == "dora"
        assert not export_path(admin.get(result.model_uri).path, "torchscript").exists()


def test_folder_writes_with_a_token_need_the_export_right_and_the_store_is_reached_only_by_uri(trained, tmp_path, monkeypatch):
    """Found by a probe: with a viewer's token, `package decrypt` of the registry's sealed version,
    `package encrypt` and `package export` of a folder ran, and nothing was audited."""
    settings, result, *_ = trained["digits"]
    monkeypatch.setenv("TRUSTFORGE_HOME", str(settings.home))
    with Registry(Settings.from_env()) as admin:
        admin.access.add_user("vic", "viewer")
        admin.access.add_user("tara", "trainer")
        viewer, trainer = admin.access.issue_token("vic"), admin.access.issue_token("tara")
        stored = admin.get(result.model_uri).path
    pkg = tmp_path / "pkg"
    shutil.copytree(result.package, pkg)
    monkeypatch.setenv("TRUSTFORGE_TOKEN", viewer)
    for args in (["encrypt", str(pkg)], ["export", str(pkg), "--format", "torchscript", "--no-speed"]):
        done = runner.invoke(app, args)
        assert isinstance(done.exception, AccessDenied), (args, done.output)
    assert not (tmp_path / "pkg.sealed").exists() and not export_path(pkg, "torchscript").exists()
    for token in (viewer, trainer):  # the store: by URI only, whoever asks
        monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
        done = runner.invoke(app, ["decrypt", str(stored), "-o", str(tmp_path / "plain")])
        assert done.exit_code != 0 and "registry's store" in str(done.exception) and "models:/" in str(done.exception)
        assert not (tmp_path / "plain").exists()
    monkeypatch.setenv("TRUSTFORGE_TOKEN", trainer)
    done = runner.invoke(app, ["encrypt", str(pkg)])
    assert done.exit_code == 0 and secure.is_sealed(tmp_path / "pkg.sealed"), done.output
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    with Registry(Settings.from_env()) as admin:
        assert admin.audit.verify().ok
        rows = [(e["actor"], e["object"], e["outcome"], e["details"].get("op")) for e in admin.audit.entries() if e["action"] == "export"]
        assert ("vic", "package:pkg", "denied", None) in rows and ("tara", "package:pkg", "ok", "encrypt") in rows, rows
        assert not any(str(tmp_path) in str(e) for e in admin.audit.entries())  # the folder's name, never its path


def test_data_option_checks_on_given_rows(trained, tmp_path, monkeypatch):
    settings, result, model, raw, _, _ = trained["cancer"]
    monkeypatch.setenv("TRUSTFORGE_HOME", str(settings.home))
    frame = raw.frame.copy()
    csv = tmp_path / "holdout.csv"
    frame.to_csv(csv, index=False)
    pkg = tmp_path / "pkg"
    shutil.copytree(result.package, pkg)
    done = runner.invoke(app, ["export", str(pkg), "--format", "torchscript", "--data", str(csv), "--no-speed"])
    assert done.exit_code == 0, done.output
    assert f"from eager on {len(frame)} rows of holdout.csv" in done.output and "test rows" not in done.output, done.output
    done = runner.invoke(app, ["verify", str(pkg)])
    assert done.exit_code == 0 and "pkg.torchscript: export verified" in done.output
    assert f"on {len(frame)} rows of holdout.csv" in done.output, done.output
    keyring = secure.Keyring.load(settings.keys_dir, kek_b64=settings.kek)
    ev, _ = read_export(export_path(pkg, "torchscript"), keyring, _digest(model))
    assert ev["check"]["data"] == "rows of holdout.csv (--data)" and ev["check"]["rows"] == len(frame)
    # Found by a probe: one row was taken ("on 1 test rows") and replaced the artefact checked on all of them.
    frame.head(1).to_csv(tmp_path / "lab1.csv", index=False)
    done = runner.invoke(app, ["export", str(pkg), "--format", "torchscript", "--data", str(tmp_path / "lab1.csv"), "--no-speed"])
    assert isinstance(done.exception, DataError) and "--data lab1.csv holds 1 row; an export is checked on at least 10" in str(
        done.exception
    ), done.output
    assert read_export(export_path(pkg, "torchscript"), keyring, _digest(model))[0]["check"]["rows"] == len(frame)  # kept


def test_a_failed_export_is_audited_without_cell_values_or_local_paths(trained, tmp_path, monkeypatch):
    """Found by a probe: the audit entry of a failed export held the error as printed, with the
    email of a numeric cell in --data and the absolute path of a missing --data file."""
    settings, result, _, raw, _, _ = trained["cancer"]
    monkeypatch.setenv("TRUSTFORGE_HOME", str(settings.home))
    frame = raw.frame.copy()
    frame["mean radius"] = frame["mean radius"].astype(object)
    frame.loc[frame.index[2], "mean radius"] = "mary.smith@example.com"
    frame.to_csv(tmp_path / "lab_pii.csv", index=False)
    for data in (tmp_path / "lab_pii.csv", tmp_path / "elsewhere" / "labunk.csv"):
        done = runner.invoke(app, ["export", result.model_uri, "--format", "onnx", "--no-speed", "--data", str(data)])
        assert done.exit_code != 0 and done.exception is not None, done.output
    with Registry(Settings.from_env()) as reg:
        failed = [e for e in reg.audit.entries() if e["action"] == "export" and e["outcome"] == "error"]
    errors = sorted(e["details"]["error"] for e in failed)
    assert errors == [
        "DataError: lab_pii.csv: column 'mean radius' must be numeric; got <value> in row 3",
        "DataError: labunk.csv: data file not found",
    ], errors
    assert not any("mary" in e or str(tmp_path) in e or "elsewhere" in e for e in errors), errors


def test_a_split_setting_one_side_leaves_out_reads_not_set():
    """`evaluate MODEL SPEC` names the split settings that differ; one left out read "None" (probe 10)."""
    from trustforge.package._export import _shown

    assert _shown(None) == "not set" and _shown(True) == "true" and _shown(0.2) == "0.2" and _shown([1]) == "[1]"
