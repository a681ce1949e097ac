"""The package's data expectations in the server: 400 or flags by policy, and the count in `/metrics`."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from _serving import QUIET, register
from fastapi.testclient import TestClient

from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.settings import Settings


def _table(n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    size = rng.uniform(0, 100, n).round(2)
    city = rng.choice(["paris", "lyon", "nice"], n)
    return pd.DataFrame({"size": size, "city": city, "label": np.where((size > 50) ^ (city == "nice"), "yes", "no")})


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """A tiny MLP whose package expects: ranges flagged (warn), unseen categories refused (fail)."""
    from trustforge.pipeline import run

    root = tmp_path_factory.mktemp("serve-expect")
    csv = root / "t.csv"
    _table().to_csv(csv, index=False)
    spec = {
        "name": "expect-serve",
        "data": {"source": f"csv:{csv}", "target": "label", "expect": {"policy": {"range": "warn", "missing": "warn", "allowed": "fail"}}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2, "early_stopping": None},
        "evaluate": {**QUIET, "privacy_audit": False, "calibrate": "none"},
    }
    result = run(spec, settings=Settings.from_env(root / "ws"), progress=False, register=False)
    return shutil.copytree(result.package, root / "package")


@pytest.fixture
def client(package, registry, tmp_path):
    register(registry, package, tmp_path)
    svc = ModelService("models:/expect-serve@champion", ServeConfig(auth="none", workers=0), registry=registry).start()
    yield TestClient(create_app(svc))
    svc.close()


def _v2(size: list, city: list) -> dict:
    return {
        "inputs": [
            {"name": "size", "datatype": "FP64", "shape": [len(size)], "data": size},
            {"name": "city", "datatype": "BYTES", "shape": [len(city)], "data": city},
        ]
    }


def _count(client, column: str, action: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("trustforge_expect_violations_total") and f'column="{column}"' in line and f'action="{action}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_warn_predicts_and_flags_the_rows_and_counts_them(client):
    r = client.post("/v2/models/expect-serve/infer", json=_v2([10.0, 500.0, 20.0, -80.0], ["paris", "lyon", "nice", "nice"]))
    assert r.status_code == 200, r.text
    assert r.headers["trustforge-expect-violations"] == "2" and r.headers["trustforge-expect-columns"] == "size=2"
    assert {o["name"]: o for o in r.json()["outputs"]}["prediction"]["shape"] == [4]
    assert _count(client, "size", "flagged") == 2

    r = client.post("/invocations", json={"dataframe_records": [{"size": 900.0, "city": "paris"}]})
    assert r.status_code == 200 and r.headers["trustforge-expect-columns"] == "size=1"
    assert _count(client, "size", "flagged") == 3

    clean = client.post("/v2/models/expect-serve/infer", json=_v2([10.0, 60.0], ["paris", "lyon"]))
    assert clean.status_code == 200 and "trustforge-expect-violations" not in clean.headers


def test_fail_answers_400_naming_row_and_column(client):
    r = client.post("/v2/models/expect-serve/infer", json=_v2([10.0, 20.0, 30.0], ["paris", "berlin", "nice"]))
    assert r.status_code == 400
    message = r.json()["error"]
    assert "row 1, column 'city'" in message and "'berlin' is unseen in training" in message and "policy fail" in message
    assert _count(client, "city", "refused") == 1

    r = client.post("/invocations", json={"dataframe_records": [{"size": 1.0, "city": "oslo"}]})
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST" and "row 0, column 'city'" in r.json()["message"]
