"""The installable package (issue 18.4): `python -m build` makes an sdist and a wheel that carry
the package data; the wheel, installed with no extras into a fresh virtual environment, trains and
predicts the breast-cancer example there, records the explanations it cannot make as skipped
(naming the extra), and `trustforge serve` says which extra to install.

Slow: a fresh environment installs torch, pandas, scipy, ... (with uv, from its cache: seconds; with pip, 1-2 minutes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from trustforge._extras import EXTRAS
from trustforge.errors import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]
# CI's pinned CPU torch (the package states a range); /opt/wheels holds it on our machines.
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
WHEELS = Path("/opt/wheels")
DATA_FILES = (
    "trustforge/quickstart.yaml",
    "trustforge/evaluate/templates/report.html.j2",
    "trustforge/evaluate/templates/model_card.md.j2",
)


def _run(args: list, *, env: dict | None = None, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[:4]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _build(tmp: Path) -> tuple[Path, Path]:
    """(sdist, wheel) of a copy of the project (the build leaves its egg-info there, not in the repo)."""
    src = tmp / "project"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    dist = tmp / "dist"
    # The environment's own setuptools where it has one (no download); an isolated build otherwise.
    isolation = ["--no-isolation"] if importlib.util.find_spec("setuptools") else []
    _run([sys.executable, "-m", "build", *isolation, "--outdir", dist, src])
    (sdist,) = dist.glob("trustforge-*.tar.gz")
    (wheel,) = dist.glob("trustforge-*-py3-none-any.whl")
    return sdist, wheel


def test_missing_extra_is_one_error_naming_it(monkeypatch):
    """`require` names the extra and its pip command; `missing` gives the same line as a reason."""
    from trustforge import _extras

    monkeypatch.setitem(_extras.EXTRAS, "serve", ("fastapi", "no_such_module_for_the_test"))
    with pytest.raises(
        MissingExtraError,
        match=r"^trustforge serve needs the 'serve' extra \(no_such_module_for_the_test is not installed\): pip install 'trustforge\[serve\]'$",
    ):
        _extras.require("serve", "trustforge serve")
    assert _extras.missing("explain", "x") is None  # the dev environment has every extra
    assert MissingExtraError.exit_code not in (0, 1, 2, 10)  # 10 is monitor's drift alarm


def test_every_extra_is_declared_and_dev_installs_them_all():
    """The extras `_extras` checks are the ones pyproject.toml declares, `all` pulls each of them,
    and `dev` pulls `all` (so `make test` installs everything)."""
    import tomllib

    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    assert optional["all"] == [f"trustforge[{','.join(EXTRAS)}]"]
    assert "trustforge[all]" in optional["dev"]


@pytest.mark.slow
def test_core_wheel_in_a_fresh_venv_trains_predicts_and_names_missing_extras(tmp_path):
    sdist, wheel = _build(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(DATA_FILES) <= names and "trustforge/_extras.py" in names, sorted(names)[:20]
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"src/{f}" for f in DATA_FILES} <= in_sdist

    env_dir = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", env_dir])
    py = env_dir / "bin" / "python"
    # Nothing of the repository or this environment may leak into the fresh one.
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TRUSTFORGE_HOME", "TRUSTFORGE_TOKEN")
    }
    env["TRUSTFORGE_HOME"] = str(tmp_path / "workspace")
    env["OMP_NUM_THREADS"] = "1"
    find_links = ["--find-links", WHEELS] if WHEELS.is_dir() else []
    # The installer `make` uses, uv, where this environment has it (it reads the wheel's metadata
    # as pip does, from its cache: seconds where pip unpacks torch again); pip otherwise.
    # --no-compile: pip would byte-compile every module of torch, scipy, pandas, ... (about 10,000
    # files, some 40 s of one core); Python compiles the few this test imports when it imports them.
    uv = Path(sys.executable).with_name("uv")
    install = (
        [uv, "pip", "install", "-q", "--python", py]
        if uv.is_file()
        else [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    )
    _run([*install, "-c", CONSTRAINTS, *find_links, wheel], env=env, timeout=900)

    probe = "import json, trustforge, torch; print(json.dumps([trustforge.__file__, torch.__version__]))"
    where, torch_version = json.loads(_run([py, "-c", probe], env=env, cwd=tmp_path).stdout)
    assert where.startswith(str(env_dir)), where  # the installed wheel, not the repository's src/
    assert torch_version.split("+")[0] == "2.13.0", torch_version  # the constraint held: no other (CUDA) build
    extras = [m for mods in EXTRAS.values() for m in mods]
    installed = _run([py, "-c", f"import importlib.util as u; print([m for m in {extras!r} if u.find_spec(m)])"], env=env).stdout
    assert installed.strip() == "[]", installed  # a core install: no extra's package came along

    spec = yaml.safe_load((ROOT / "examples" / "breast_cancer_mlp.yaml").read_text())
    spec["train"]["max_epochs"] = 5  # enough to learn (0.93 after 3 epochs); the full run is tests/test_examples.py's
    (tmp_path / "bc.yaml").write_text(yaml.safe_dump(spec))
    tf = env_dir / "bin" / "trustforge"
    trained = _run([tf, "train", "-q", "bc.yaml"], env=env, cwd=tmp_path)
    assert "models:/breast-cancer-mlp/1" in trained.stdout, trained.stdout
    (run_dir,) = (tmp_path / "workspace" / "runs").glob("breast-cancer-mlp-*")
    assert json.loads((run_dir / "metrics.json").read_text())["accuracy"] >= 0.9
    evidence = json.loads((run_dir / "evidence.json").read_text())
    assert "explanations" not in evidence  # Captum is an extra: skipped, with the reason that names it
    assert "pip install 'trustforge[explain]'" in evidence["skipped"]["explanations"]

    sample = ROOT / "examples" / "data" / "breast_cancer_sample.csv"
    _run([tf, "predict", "models:/breast-cancer-mlp", sample, "-o", "preds.csv"], env=env, cwd=tmp_path)
    preds = (tmp_path / "preds.csv").read_text().splitlines()
    assert preds[0].startswith("prediction,proba_malignant,proba_benign") and len(preds) == 1 + 12

    served = subprocess.run(
        [str(tf), "serve", "models:/breast-cancer-mlp"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert served.returncode == MissingExtraError.exit_code, served.stdout + served.stderr
    assert (
        served.stderr.strip()
        == "error: trustforge serve needs the 'serve' extra (fastapi is not installed): pip install 'trustforge[serve]'"
    )
    imported = subprocess.run([str(py), "-c", "import trustforge.serve"], env=env, capture_output=True, text=True, timeout=120)
    assert imported.returncode != 0 and "MissingExtraError: trustforge serve needs the 'serve' extra" in imported.stderr
