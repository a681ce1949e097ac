"""The out-of-distribution guard of the server: `--ood flag|refuse|off`, its metric, and old packages."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from _serving import QUIET, register
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

from trustforge.errors import SpecError
from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.settings import Settings

SHIFTED = [2, 5]  # rows pushed far outside the training ranges


def _rows() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame.drop(columns="target")
    rows = frame.head(10).reset_index(drop=True).copy()
    for col in ("mean radius", "worst area", "mean texture"):  # +10 std on three columns
        rows.loc[SHIFTED, col] += 10 * frame[col].std()
    return rows


def _v2(rows: pd.DataFrame) -> dict:
    return {"inputs": [{"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()} for c in rows.columns]}


@pytest.fixture
def cancer(packages, registry, tmp_path):
    register(registry, packages["cancer"], tmp_path)
    services = []

    def client(**options):
        svc = ModelService("models:/cancer-serve@champion", ServeConfig(auth="none", **{"workers": 0, **options}), registry=registry)
        services.append(svc.start())
        return TestClient(create_app(svc))

    yield client
    for svc in services:
        svc.close()


def _metric(client, action: str) -> float:
    text = client.get("/metrics").text
    line = next((s for s in text.splitlines() if s.startswith("trustforge_ood_inputs_total") and f'action="{action}"' in s), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_flag_predicts_every_row_and_says_which_look_foreign_and_why(cancer):
    client = cancer()  # flag is the default
    rows = _rows()
    r = client.post("/v2/models/cancer-serve/infer", json=_v2(rows))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {o["name"]: o for o in body["outputs"]}["prediction"]["shape"] == [10]
    ood = body["parameters"]["ood"]
    assert ood["policy"] == "flag" and len(ood["flagged"]) == 10
    assert set(SHIFTED) <= set(ood["rows"]) and len(ood["rows"]) <= 3  # the shifted rows, at most one false alarm
    assert "score" in ood["reasons"]["2"] and "> threshold" in ood["reasons"]["2"]
    assert r.headers["trustforge-ood-rows"] == str(len(ood["rows"]))
    assert _metric(client, "flagged") == len(ood["rows"])

    r = client.post("/invocations", json={"dataframe_records": rows.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 10 and set(SHIFTED) <= set(r.json()["ood"]["rows"])
    assert _metric(client, "flagged") == 2 * len(ood["rows"])

    clean = client.post("/v2/models/cancer-serve/infer", json=_v2(rows.drop(index=SHIFTED)))
    assert clean.json()["parameters"]["ood"]["rows"] == [] or len(clean.json()["parameters"]["ood"]["rows"]) <= 1


def test_refuse_answers_422_naming_the_rows_and_the_scores(cancer):
    client = cancer(ood="refuse")
    rows = _rows()
    r = client.post("/v2/models/cancer-serve/infer", json=_v2(rows))
    assert r.status_code == 422
    message = r.json()["error"]
    assert "row 3:" in message and "row 6:" in message and "threshold" in message and "--ood refuse" in message
    assert _metric(client, "refused") >= 2
    r = client.post("/invocations", json={"dataframe_records": rows.iloc[[2]].to_dict(orient="records")})
    assert r.status_code == 422 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "row 1:" in r.json()["message"]
    ok = client.post("/invocations", json={"dataframe_records": rows.iloc[[0, 1]].to_dict(orient="records")})
    assert ok.status_code == 200 and ok.json()["ood"]["rows"] == []


def test_off_leaves_requests_alone(cancer):
    client = cancer(ood="off")
    r = client.post("/v2/models/cancer-serve/infer", json=_v2(_rows()))
    assert r.status_code == 200 and "ood" not in (r.json().get("parameters") or {})
    assert "trustforge-ood-rows" not in r.headers


@pytest.mark.slow
def test_the_guard_runs_in_the_worker_process(cancer):
    client = cancer(workers=1, ood="refuse")
    r = client.post("/v2/models/cancer-serve/infer", json=_v2(_rows()))
    assert r.status_code == 422 and "row 6:" in r.json()["error"]


def test_a_package_without_a_detector_still_serves(registry, tmp_path, workspace):
    from trustforge.pipeline import run

    spec = {
        "name": "old-cancer",
        "data": {"source": "builtin:breast_cancer"},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2},
        "evaluate": QUIET,
        "monitor": {"ood": {"enabled": False}},
    }
    result = run(spec, settings=Settings.from_env(tmp_path / "ws"), progress=False, register=False)
    assert "ood" not in (result.load_model().manifest.get("monitor") or {})
    register(registry, result.package, tmp_path)
    svc = ModelService("models:/old-cancer@champion", ServeConfig(workers=0, auth="none", ood="refuse"), registry=registry).start()
    try:
        client = TestClient(create_app(svc))
        r = client.post("/v2/models/old-cancer/infer", json=_v2(_rows()))
        assert r.status_code == 200 and "ood" not in (r.json().get("parameters") or {})
    finally:
        svc.close()
        shutil.rmtree(tmp_path / "ws", ignore_errors=True)


def test_an_unknown_policy_is_one_clear_error():
    with pytest.raises(SpecError, match="--ood .*must be flag, refuse or off"):
        ServeConfig(ood="block")  # type: ignore[arg-type]


def test_the_cli_takes_the_policy_in_any_case_and_names_the_flag(monkeypatch):
    from typer.testing import CliRunner

    from trustforge import cli, serve

    seen = {}
    monkeypatch.setattr(serve, "serve", lambda uri, config, **kw: seen.setdefault("ood", config.ood))
    r = CliRunner().invoke(cli.app, ["serve", "some-folder", "--ood", "OFF"])
    assert r.exit_code == 0, r.output
    assert seen["ood"] == "off"
    r = CliRunner().invoke(cli.app, ["serve", "some-folder", "--ood", "block"])
    assert r.exit_code != 0 and "--ood" in r.output and "Traceback" not in r.output


def test_onnx_refuses_ood_refuse_at_start_naming_both_flags(cancer):
    # The detector reads the torch network's layers: on ONNX it cannot run, so refusing would silently serve every row.
    with pytest.raises(SpecError, match="--ood refuse.*--backend onnx"):
        cancer(backend="onnx", ood="refuse")


def test_onnx_with_the_default_flag_warns_once_and_says_the_guard_is_off(cancer, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="trustforge.serve"):
        client = cancer(backend="onnx")
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "ood_guard_off"]
    assert len(warnings) == 1
    version = client.get("/version").json()
    assert version["ood"]["policy"] == "off" and "onnx" in version["ood"]["reason"]
    assert client.get("/v2/models/cancer-serve/config").json()["parameters"]["ood"]["policy"] == "off"
    r = client.post("/v2/models/cancer-serve/infer", json=_v2(_rows()))
    assert r.status_code == 200 and "ood" not in (r.json().get("parameters") or {})
    # On torch the same package reports the guard on.
    assert cancer().get("/version").json()["ood"] == {"policy": "flag"}
