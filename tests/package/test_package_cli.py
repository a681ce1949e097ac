"""`trustforge package verify|encrypt|decrypt`: thin commands over the package recipes.

Errors propagate as TrustForgeError (the main command turns them into one line); here the
sub-application is invoked directly, so they arrive as the result's exception.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from trustforge.commands.package import app
from trustforge.errors import DataError, IntegrityError, SecurityError, UsageError
from trustforge.package import read_package, write_package
from trustforge.secure._keys import Keyring

runner = CliRunner()


@pytest.fixture
def keyring(workspace) -> Keyring:
    return Keyring.init(workspace / "keys")


@pytest.fixture
def package(tmp_path, keyring) -> Path:
    return write_package(tmp_path / "pkg", {"name": "tiny"}, {"weights.safetensors": {"w": torch.randn(16, 16)}}, keyring=keyring)


def test_verify_encrypt_decrypt(package, keyring, tmp_path):
    done = runner.invoke(app, ["verify", str(package)])
    assert done.exit_code == 0, done.output
    assert "tiny verified" in done.output

    done = runner.invoke(app, ["encrypt", str(package)])
    assert done.exit_code == 0, done.output
    sealed = tmp_path / "pkg.sealed"
    assert (sealed / "sealed.json").is_file()
    done = runner.invoke(app, ["verify", str(sealed)])
    assert done.exit_code == 0 and "sealed package tiny verified" in done.output

    done = runner.invoke(app, ["decrypt", str(sealed), "--out", str(tmp_path / "back")])
    assert done.exit_code == 0, done.output
    assert read_package(tmp_path / "back", keyring=keyring).manifest["name"] == "tiny"
    assert (tmp_path / "back" / "weights.safetensors").read_bytes() == (package / "weights.safetensors").read_bytes()

    done = runner.invoke(app, ["decrypt", str(sealed), "--out", str(tmp_path / "back")])
    assert isinstance(done.exception, UsageError) and "already exists" in str(done.exception)


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_an_out_folder_that_exists_is_a_usage_error_and_left_as_it_was(command, package, tmp_path):
    """`package encrypt|decrypt --out DIR` with DIR there exited 3, as bad data does: the option's
    value is what the command cannot take, a usage error (exit code 2) as `-o` naming a folder
    is elsewhere; the folder, and a file at --out, stay as they were."""
    source = package
    if command == "decrypt":
        assert runner.invoke(app, ["encrypt", str(package)]).exit_code == 0
        source = tmp_path / "pkg.sealed"
    there = tmp_path / "there"
    there.mkdir()
    (there / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine too")
    for out in (there, tmp_path / "file"):
        done = runner.invoke(app, [command, str(source), "--out", str(out)])
        assert isinstance(done.exception, UsageError) and done.exception.exit_code == 2, done.output
        assert str(done.exception) == (
            f"--out {out}: already exists; give --out a folder path that does not exist yet (nothing is written into or over one)"
        )
    assert [p.name for p in there.iterdir()] == ["keep.txt"] and (there / "keep.txt").read_text() == "mine"
    assert (tmp_path / "file").read_text() == "mine too"
    default = source.with_name("pkg.sealed" if command == "encrypt" else "pkg")
    if command == "encrypt":
        default.mkdir()
    done = runner.invoke(app, [command, str(source)])
    assert isinstance(done.exception, UsageError) and f"{default} (the default of --out): already exists" in str(done.exception)


@pytest.mark.parametrize("command", ["encrypt", "decrypt"])
def test_an_out_folder_in_a_missing_folder_is_a_usage_error(command, package, tmp_path):
    """`--out nowhere/x` exited 3 naming only `nowhere`: a usage error (exit 2) naming the option
    and the path, nothing written."""
    before = sorted(p.name for p in tmp_path.iterdir())
    done = runner.invoke(app, [command, str(package), "--out", str(tmp_path / "nowhere" / "x")])
    assert isinstance(done.exception, UsageError) and done.exception.exit_code == 2, done.output
    assert str(done.exception) == f"--out {tmp_path / 'nowhere' / 'x'}: folder {tmp_path / 'nowhere'} not found"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_verify_names_the_changed_file(package):
    blob = bytearray((package / "weights.safetensors").read_bytes())
    blob[-1] ^= 1
    (package / "weights.safetensors").write_bytes(bytes(blob))
    done = runner.invoke(app, ["verify", str(package)])
    assert isinstance(done.exception, IntegrityError)
    assert str(package / "weights.safetensors") in str(done.exception)


def test_verify_with_a_public_key_needs_no_workspace_keys(package, keyring, tmp_path):
    pub = tmp_path / "signer.pub"
    pub.write_bytes(keyring.public_key_pem())
    shutil.rmtree(keyring.keys_dir)
    done = runner.invoke(app, ["verify", str(package), "--public-key", str(pub)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["verify", str(package)])
    assert isinstance(done.exception, SecurityError) and "keys init" in str(done.exception)


# What `trustforge package verify` imports, in a fresh interpreter: the command line and the
# package checks only (bytes, JSON and signatures), never torch, whose import alone takes
# seconds; the heavy stacks the verify path does not need stay out too.
_VERIFY_IN_A_FRESH_PROCESS = """
import sys
sys.argv = ["trustforge", "package", "verify", sys.argv[1]]
from trustforge.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "pandas", "sqlalchemy", "scipy", "sklearn", "matplotlib", "captum"})
print("exit", code, "heavy", ",".join(heavy) or "-")
"""


def _fresh(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_verify_does_not_import_torch(package):
    done = _fresh("-c", _VERIFY_IN_A_FRESH_PROCESS, str(package))
    assert "tiny verified" in done.stdout, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "exit 0 heavy -", done.stdout + done.stderr


def test_verify_of_a_changed_package_fails_without_importing_torch(package):
    (package / "weights.safetensors").write_bytes(b"changed")
    done = _fresh("-c", _VERIFY_IN_A_FRESH_PROCESS, str(package))
    assert "weights.safetensors" in done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("exit ") and not last.startswith("exit 0") and last.endswith("heavy -"), done.stdout + done.stderr


def test_the_command_line_starts_without_torch():
    # `trustforge --version` and `--help` import the command line and nothing a command needs.
    done = _fresh("-X", "importtime", "-c", "import trustforge.cli")
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "trustforge.cli" in imported
    assert not {"torch", "pandas", "sqlalchemy", "scipy"} & imported


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--format", "foo"], "--format"),
        (["--format", "onnx", "--quantize", "int4"], "--quantize"),
    ],
)
def test_export_refuses_a_bad_format_or_quantisation_as_a_usage_error(workspace, flags, named):
    """Found by a probe: both exited 3 (a data error) after loading the model; a bad flag value is exit 2."""
    from _cli import run_main

    code, out, err = run_main("package", "export", "models:/nothing/1", *flags, "--no-speed", home=workspace)
    assert code == 2 and f"Invalid value for '{named}'" in err and len(err.strip().splitlines()) == 1, (flags, code, err)
    assert "must be one of" in err and "models:/nothing" not in err, err


@pytest.mark.parametrize("value", ["nan", "-1", "1000", "inf", "-0.5"])
def test_export_refuses_a_max_accuracy_drop_outside_0_to_100_points(workspace, value):
    """Found by a probe: `nan` was taken (no comparison with it is true, so the int8 guard was off),
    `-1` ran the whole export and then failed, `1000` was taken."""
    from _cli import run_main

    flags = ["--format", "onnx", "--quantize", "int8", "--max-accuracy-drop", value, "--no-speed"]
    code, out, err = run_main("package", "export", "models:/nothing/1", *flags, home=workspace)
    assert code == 2 and "Invalid value for '--max-accuracy-drop'" in err and "[0, 100]" in err, (value, code, err)
    assert len(err.strip().splitlines()) == 1, err


def test_export_model_refuses_a_max_drop_that_turns_the_int8_guard_off():
    from trustforge.package import export_model

    for bad in (float("nan"), -1.0, 101.0):
        with pytest.raises(DataError, match=r"--max-accuracy-drop must be points of test accuracy in \[0, 100\]"):
            export_model(None, None, Path("unused"), None, fmt="onnx", quantize="int8", package_digest="0" * 64, max_drop=bad)
