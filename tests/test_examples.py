"""Every example spec runs; the README's commands run as written; quality targets hold."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from _figures import assert_near_readme

import trustforge
from trustforge.spec import load_spec, spec_digest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {
        "digits_cnn.yaml",
        "breast_cancer_mlp.yaml",
        "shapes_cnn.yaml",
        "classic_cifar_cnn.yaml",
        "classic_lstm.yaml",
    }


# The foundation's image and table classifiers; the classic tutorial CNN learns slowly with its SGD
# settings and has its own test below. The application scenarios have their own test files.
FOUNDATION = ("digits_cnn", "breast_cancer_mlp", "shapes_cnn", "classic_lstm")
# Shapes and the classic LSTM train as written against their README figures in
# tests/test_readme_figures.py, so they get no short run here.
QUICK = [p for p in EXAMPLES if p.stem in ("digits_cnn", "breast_cancer_mlp")]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_validated_and_run_by_a_test(path):
    """Each example spec is valid, and some test file trains it (names it)."""
    load_spec(path)
    tests = [t for t in (ROOT / "tests").rglob("test_*.py") if path.name in t.read_text(encoding="utf-8")]
    assert path.stem in FOUNDATION or path.stem == "classic_cifar_cnn" or tests, f"no test runs examples/{path.name}"


@pytest.mark.parametrize("path", QUICK, ids=lambda p: p.stem)
def test_example_runs_and_learns_with_small_settings(path):
    """Each example, cut to a few epochs, trains through the Python API and beats chance."""
    raw = yaml.safe_load(path.read_text())
    raw["train"]["max_epochs"] = 4
    result = trustforge.run(raw, progress=False)
    chance = 1 / len(result.metrics["labels"])
    assert result.metrics["accuracy"] > chance + 0.2, result.metrics
    model = result.load_model()
    assert model.name == raw["name"]


def test_quickstart_spec_is_the_digits_example():
    from importlib import resources

    embedded = yaml.safe_load(resources.files("trustforge").joinpath("quickstart.yaml").read_text())
    assert spec_digest(load_spec(embedded)) == spec_digest(load_spec(ROOT / "examples" / "digits_cnn.yaml"))


@pytest.mark.slow
def test_digits_cnn_reaches_target_accuracy():
    """Issue target: ≥ 0.985 on the stratified 20 % split (sklearn's SVC: 0.989 there); and the README's figure."""
    result = trustforge.run(ROOT / "examples" / "digits_cnn.yaml", progress=False)
    assert result.metrics["accuracy"] >= 0.985, result.metrics["accuracy"]
    assert_near_readme("digits_cnn.yaml", result.metrics)


@pytest.mark.slow
def test_breast_cancer_mlp_reaches_target_accuracy(readme_run):
    """The README's `trustforge train -q examples/breast_cancer_mlp.yaml` trains the example as
    written (the README's figures were measured so, or with `trustforge.run`): its run is the one
    held to the target and the figure, not a second training of the same spec."""
    work, proc = readme_run
    runs = list(work.glob(".trustforge/runs/breast-cancer-mlp-*/metrics.json"))
    assert len(runs) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    metrics = json.loads(runs[0].read_text())
    assert metrics["accuracy"] >= 0.97, metrics["accuracy"]
    assert_near_readme("breast_cancer_mlp.yaml", metrics)


@pytest.mark.slow
def test_classic_cifar_cnn_learns_real_labels(as_written):
    """The tutorial CNN, with its SGD settings, learns the 10 shape classes well above chance
    (0.10), near the README's figure (the session's run as written, evidence off; see conftest.py)."""
    result = as_written("classic_cifar_cnn.yaml")
    assert_near_readme("classic_cifar_cnn.yaml", result.metrics)


def _readme_block() -> str:
    """Every bash block of the README that calls trustforge, in order, as one script."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    using = [b for b in blocks if "trustforge " in b and "make demo" not in b]
    assert any("trustforge train" in b for b in using), "README has no bash block that trains"
    return "\n".join(using)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """The README's bash blocks, run once by bash -e from a copy of the examples: (folder, process)."""
    work = tmp_path_factory.mktemp("readme") / "repo"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    venv = Path(sys.executable).parent.parent
    (work / ".venv").symlink_to(venv)
    env = {k: v for k, v in os.environ.items() if k not in ("TRUSTFORGE_HOME", "TOKEN", "SERVER")}
    env["PORT"] = str(_free_port())
    script = _readme_block()
    assert "serve models:/" in script and "[--backend" not in script  # the serve block runs too, as pasted
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    return work, proc


@pytest.mark.slow
def test_readme_commands_run_as_written(readme_run):
    """The README's bash blocks, run by bash -e from a copy of the examples: usage, registry,
    serving (the server started in the background on a free port, one request, stopped)."""
    work, proc = readme_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    preds = (work / "predictions.csv").read_text().splitlines()
    assert preds[0].startswith("prediction,proba_malignant,proba_benign")
    assert len(preds) == 1 + 12
    assert "accuracy" in proc.stdout
    assert "models:/breast-cancer-mlp@champion -> 1" in proc.stdout
    assert "verified" in proc.stdout and "ok: " in proc.stdout
    assert (work / "workspace.tfb").is_file()
    assert "report:" in proc.stdout and list(work.glob(".trustforge/runs/breast-cancer-mlp-*/report.html"))
    # runs list and compare: the one breast-cancer run, completed and ranked first in its group
    assert re.search(r"^breast-cancer-mlp-\S+\s+completed\s+classification", proc.stdout, re.M), proc.stdout
    # its group names the positive class (malignant recall and benign recall never share a leaderboard)
    assert "classification on builtin:breast_cancer, positive class malignant, by accuracy" in " ".join(proc.stdout.split())
    # the server answered the README's request with one prediction per row
    answer = next(json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"predictions"'))
    assert len(answer["predictions"]) == 2


def test_readme_python_snippet_names_real_api():
    text = (ROOT / "README.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    for name in re.findall(r"trustforge\.(\w+)", snippet):
        assert hasattr(trustforge, name), name
    assert all(hasattr(trustforge.Model, m) for m in ("load", "predict"))
    np.testing.assert_equal(True, "Model.load" in snippet)
