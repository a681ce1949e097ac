"""The package's data expectations in the server: 400 or flags by policy, and the count in `/metrics`."""

from __future__ import annotations

import shutil
from urllib.parse import unquote

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
    """A tiny MLP whose package expects: ranges flagged (warn), unseen categories refused (fail),
    values of the wrong type read as missing (warn)."""
    from trustforge.pipeline import run

    root = tmp_path_factory.mktemp("serve-expect")
    csv = root / "t.csv"
    _table().to_csv(csv, index=False)
    spec = {
        "name": "expect-serve",
        "data": {
            "source": f"csv:{csv}",
            "target": "label",
            "expect": {"policy": {"range": "warn", "missing": "warn", "allowed": "fail", "type": "warn"}},
        },
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
    assert "row 2, column 'city'" in message and "'berlin' is unseen in training" in message and "policy fail" in message
    assert _count(client, "city", "refused") == 1

    r = client.post("/invocations", json={"dataframe_records": [{"size": 1.0, "city": "oslo"}]})
    assert r.status_code == 400 and r.json()["error_code"] == "BAD_REQUEST" and "row 1, column 'city'" in r.json()["message"]

    r = client.post("/invocations", content="size,city\n1.0,paris\n2.0,oslo\n", headers={"content-type": "text/csv"})
    assert r.status_code == 400 and "row 2, column 'city'" in r.json()["message"], r.text  # rows counted from 1, as everywhere


def test_type_warn_reads_a_wrong_typed_value_as_missing_and_flags_it(client):
    """`policy: {type: warn}`: text in a number column is read as missing, filled in and flagged
    (200), as `trustforge predict` reads it; the server refused it (400)."""
    r = client.post("/invocations", content="size,city\n10.0,paris\nabc,lyon\n", headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.headers["trustforge-expect-violations"] == "1" and r.headers["trustforge-expect-columns"] == "size=1"
    assert r.headers["trustforge-imputed-values"] == "1" and len(r.json()["predictions"]) == 2
    r = client.post("/invocations", json={"dataframe_records": [{"size": "abc", "city": "nice"}]})
    assert r.status_code == 200 and r.headers["trustforge-expect-columns"] == "size=1", r.text
    r = client.post("/v2/models/expect-serve/infer", json=_v2([10.0, "n/a"], ["paris", "lyon"]))
    assert r.status_code == 200 and r.json()["parameters"]["imputed_values"] == {"size": 1}, r.text
    assert _count(client, "size", "flagged") == 3
    r = client.post("/invocations", json={"dataframe_records": [{"size": True, "city": "nice"}]})
    assert r.status_code == 400  # a JSON boolean is not text: still refused


@pytest.fixture(scope="module")
def chinese_package(tmp_path_factory):
    """A tiny MLP with a binary column whose name is not Latin-1 (`城市`), default expectations."""
    from trustforge.pipeline import run

    root = tmp_path_factory.mktemp("serve-expect-zh")
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 120).round(3)
    table = pd.DataFrame({"x": x, "城市": rng.choice(["巴黎", "柏林"], 120), "y": np.where(x > 0, "a", "b")})
    table.to_csv(root / "t.csv", index=False)
    spec = {
        "name": "expect-zh",
        "data": {"source": f"csv:{root / 't.csv'}", "target": "y"},
        "model": {"kind": "mlp", "hidden": [4]},
        "train": {"max_epochs": 1, "early_stopping": None},
        "evaluate": {**QUIET, "privacy_audit": False, "calibrate": "none"},
    }
    result = run(spec, settings=Settings.from_env(root / "ws"), progress=False, register=False)
    return shutil.copytree(result.package, root / "package")


@pytest.fixture
def chinese(chinese_package, registry, tmp_path):
    register(registry, chinese_package, tmp_path)
    svc = ModelService("models:/expect-zh@champion", ServeConfig(auth="none", workers=0), registry=registry).start()
    yield TestClient(create_app(svc))
    svc.close()


def test_a_column_name_outside_latin1_is_percent_encoded_in_the_headers(chinese):
    """A missing value in `城市` (training had none) is filled in and flagged: 200, the name
    percent-encoded as UTF-8 in `Trustforge-Expect-Columns` (it was a 500: the header was Latin-1)."""
    r = chinese.post("/invocations", json={"dataframe_records": [{"x": 0.5, "城市": "巴黎"}, {"x": 0.5, "城市": None}]})
    assert r.status_code == 200, r.text
    assert r.headers["trustforge-expect-columns"] == "%E5%9F%8E%E5%B8%82=1" and r.headers["trustforge-imputed-values"] == "1"
    assert unquote(r.headers["trustforge-expect-columns"]) == "城市=1"
    r = chinese.post("/invocations", content="x,城市\n0.5,\n".encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 200 and unquote(r.headers["trustforge-expect-columns"]) == "城市=1", r.text
    assert _count(chinese, "城市", "flagged") == 2


def test_flagged_values_of_a_request_the_model_refuses_count_as_refused(chinese):
    """An unseen value in a binary column: flagged by data.expect (warn), then refused by the
    column's encoder (400): `/metrics` counts it as refused, not flagged."""
    r = chinese.post("/invocations", json={"dataframe_records": [{"x": 0.5, "城市": "东京"}]})
    assert r.status_code == 400, r.text
    assert _count(chinese, "城市", "refused") == 1 and _count(chinese, "城市", "flagged") == 0


def test_header_names_keep_printable_ascii_and_encode_the_rest():
    from trustforge.serve._expect import ExpectFlags, header_name

    assert header_name("mean radius") == "mean radius" and header_name("âge") == "%C3%A2ge"
    assert header_name("a=b,c%") == "a%3Db%2Cc%25" and header_name(" pad ") == "%20pad%20"
    long = ExpectFlags({f"column {i:03d}": 1 for i in range(200)}).headers()
    assert long["trustforge-expect-violations"] == "200" and len(long["trustforge-expect-columns"]) <= 1000
    assert long["trustforge-expect-columns"].split(",")[-1].startswith("column ")  # whole entries only


def test_a_wrong_typed_value_under_warn_is_read_as_missing_in_number_and_text_columns():
    from prometheus_client import CollectorRegistry

    from trustforge.serve._expect import check_request, expect_counter
    from trustforge.serve._signature import RequestError

    def served(on_missing: str | None = None):
        features = {"size": {"state": {"on_missing": on_missing}}} if on_missing else {}
        manifest = {
            "expect": {"rules": [{"column": "size", "type": "numeric"}, {"column": "code", "type": "numeric"}], "policy": {"type": "warn"}},
            "signature": {
                "inputs": [{"name": "size", "datatype": "FP64", "shape": [-1]}, {"name": "code", "datatype": "BYTES", "shape": [-1]}]
            },
            "preprocessing": {"features": features},
        }
        return type("Model", (), {"manifest": manifest})()  # weak-referenceable, as a loaded model

    payload = {"size": np.array([1.5, "abc"], dtype=object), "code": np.array(["7", "x"], dtype=object)}
    imputed: dict[str, int] = {}
    flags = check_request(expect_counter(CollectorRegistry()), served(), "m", payload, imputed)
    assert flags.headers()["trustforge-expect-columns"] == "size=1,code=1" and imputed == {"size": 1, "code": 1}
    assert payload["size"].dtype == np.float64 and payload["size"][0] == 1.5 and np.isnan(payload["size"][1])
    assert payload["code"].tolist() == ["7", None]
    with pytest.raises(RequestError, match="row 2 is read as missing .* takes no missing value"):
        check_request(expect_counter(CollectorRegistry()), served("error"), "m", {"size": np.array([1.5, "abc"], dtype=object)})
