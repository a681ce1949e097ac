"""No path of the training machine leaves it: not in the package, the evidence, the metrics,
the report or the model card (only the data file's name, e.g. `csv:train.csv`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _cli import run_main
from sklearn.datasets import load_breast_cancer

from trustforge.data import prepare
from trustforge.evaluate import write_report
from trustforge.package import Model
from trustforge.pipeline import run
from trustforge.spec import load_spec


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
    # The scan finds a path where one is: the run's own spec.yaml stays here and keeps it.
    assert any(f in (result.run_dir / "spec.yaml").read_bytes() for f in secrets["data file"])
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
