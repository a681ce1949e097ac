"""The drift pages of the dashboard, and the drift history they read (`trustforge.monitor._history`):
written by `check_drift` for a registry model, bounded, read back in order."""

from __future__ import annotations

import json
import re

import pytest
from sklearn.datasets import load_iris

from trustforge.monitor import DriftHistory, check_drift, drift_history_models, history_dir, read_drift_history


def _iris_csvs(tmp_path):
    frame = load_iris(as_frame=True).frame.drop(columns="target").sample(frac=1.0, random_state=5).reset_index(drop=True)
    frame.to_csv(tmp_path / "same.csv", index=False)
    shifted = frame.copy()
    shifted["petal length (cm)"] = shifted["petal length (cm)"] + 3.0
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    return tmp_path / "same.csv", tmp_path / "shifted.csv"


def test_the_drift_page_explains_how_to_get_data_when_nothing_is_recorded(client_as):
    page = client_as("viewer").get("/drift")
    assert page.status_code == 200 and 'data-testid="empty"' in page.text and "trustforge monitor models:/" in page.text
    one = client_as("viewer").get("/drift/iris-ui")
    assert one.status_code == 200 and 'data-testid="empty"' in one.text and "drift-table" not in one.text
    assert client_as(None).get("/drift").status_code == 303


def test_check_drift_records_every_window_and_the_pages_show_them(client_as, ui_workspace, tmp_path):
    registry = ui_workspace["registry"]
    same, shifted = _iris_csvs(tmp_path)
    quiet = check_drift("models:/iris-ui@champion", same, registry=registry, window=50)
    moved = check_drift("models:/iris-ui@champion", shifted, registry=registry, window=50)
    assert moved.drift and "petal length (cm)" in moved.counts()
    folder = history_dir(ui_workspace["settings"].home)
    history = read_drift_history(folder, "iris-ui")
    windows = history["windows"]
    assert [w["drift"] for w in windows] == [w.drift for w in quiet.windows + moved.windows]
    assert history["skipped"] == 0 and {w["model"] for w in windows} == {"models:/iris-ui/1"} and windows[0]["source"] == "monitor"
    assert len({w["check"] for w in windows}) == 2  # the two checks are told apart
    petal = windows[-1]["features"]["petal length (cm)"]
    assert petal["test"] == "ks" and petal["drift"] and petal["p_value"] < petal["threshold"]
    assert (folder / "iris-ui.jsonl").stat().st_mode & 0o077 == 0  # private, as the rest of the workspace
    assert [m["name"] for m in drift_history_models(folder)] == ["iris-ui"]

    for role in ("viewer", "trainer", "deployer", "admin"):
        listing = client_as(role).get("/drift")
        assert listing.status_code == 200 and 'href="/drift/iris-ui"' in listing.text
    page = client_as("viewer").get("/drift/iris-ui")
    assert page.status_code == 200 and 'data-testid="drift-table"' in page.text
    rows = re.findall(r'<tr data-testid="drift-row">(.*?)</tr>', page.text, re.S)
    assert len(rows) == len(windows)
    assert sum('badge bad">drift<' in r for r in rows) == len(moved.drifted) + len(quiet.drifted)
    assert "petal length (cm) (ks p=" in rows[0]  # newest first: a drifted window of the shifted file
    data = json.loads(re.search(r'<script type="application/json" id="drift-data">(.*?)</script>', page.text, re.S).group(1))
    assert data["x"] == list(range(1, len(windows) + 1))
    series = data["features"]["petal length (cm)"]
    assert series["measure"] == "p_value" and series["drift"][-1] == 1 and len(series["p_value"]) == len(windows)
    assert '<script src="/static/drift.js" defer></script>' in page.text and "/static/vendor/uPlot.iife.min.js" in page.text
    assert str(ui_workspace["settings"].home) not in page.text


def test_a_package_folder_check_records_nothing(ui_workspace, tmp_path):
    same, _ = _iris_csvs(tmp_path)
    run = ui_workspace["settings"].runs_dir / ui_workspace["runs"][0]
    check_drift(run / "package", same, window=50)
    assert drift_history_models(history_dir(ui_workspace["settings"].home)) == []


def test_bad_names_and_limits_get_a_page_naming_the_field(client_as):
    client = client_as("viewer")
    for path, status, words in [
        ("/drift/-x", 400, "model name"),
        ("/drift/..%2f..%2fkeys", 400, "not valid"),
        ("/drift/a%2e%2e", 400, "not valid"),
        ("/drift/" + "y" * 70, 400, "model name"),
        ("/drift/iris-ui?limit=5", 400, "limit"),
        ("/drift/iris-ui?per=1000", 400, "per"),
    ]:
        answer = client.get(path)
        assert answer.status_code == status and words in answer.text, path


class _Window:
    """A `WindowResult` stand-in: what `DriftHistory.record` reads."""

    def __init__(self, index: int, drift: bool):
        self.index, self.time, self.rows, self.partial, self.drift = index, "2026-01-01T00:00:00+00:00", 50, False, drift
        self.drifted = ["x"] if drift else []
        self.features = {
            "x": {
                "kind": "numeric",
                "decided_by": "ks",
                "statistic": 0.5,
                "p_value": 1e-9 if drift else 0.4,
                "threshold": 0.05,
                "drift": drift,
                "psi": {"value": float("nan")},
            }
        }
        self.prediction = None


def test_the_history_is_bounded_rotated_and_skips_a_damaged_line(tmp_path):
    history = DriftHistory(tmp_path, "m", model="models:/m/1", source="monitor", max_bytes=4096)
    for i in range(1, 201):
        history.record(_Window(i, drift=i % 10 == 0))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["m.jsonl", "m.jsonl.1", "m.lock"]
    assert all((tmp_path / f).stat().st_size <= 4096 for f in ("m.jsonl", "m.jsonl.1"))
    read = read_drift_history(tmp_path, "m", limit=1000)
    indexes = [w["window"] for w in read["windows"]]
    assert indexes == list(range(indexes[0], 201)) and 10 < len(indexes) < 200  # the newest, in order; the oldest rotated away
    assert read["windows"][-1]["features"]["x"]["psi"] is None  # NaN is not JSON: written as null
    with open(tmp_path / "m.jsonl", "ab") as f:
        f.write(b'{"cut short by a cra\n')
    again = read_drift_history(tmp_path, "m", limit=5)
    assert again["skipped"] == 1 and [w["window"] for w in again["windows"]] == [196, 197, 198, 199, 200]


@pytest.mark.parametrize("name", ["../keys", "a/b", "", ".hidden", "x" * 65, "a..b"])
def test_only_registry_model_names_become_file_names(tmp_path, name):
    with pytest.raises(ValueError, match="model name"):
        DriftHistory(tmp_path, name, model="m", source="monitor")
    with pytest.raises(ValueError, match="model name"):
        read_drift_history(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_a_history_that_cannot_be_written_never_fails_the_monitor(tmp_path, caplog):
    blocker = tmp_path / "drift"
    blocker.write_text("a file where the folder should be")
    history = DriftHistory(blocker, "m", model="models:/m/1", source="serve")
    history.record(_Window(1, drift=True))  # no exception
    history.record(_Window(2, drift=True))
    assert sum("drift history of m: not recorded" in r.getMessage() for r in caplog.records) == 1
