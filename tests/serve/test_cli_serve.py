"""`trustforge serve`: who may start it, where it may listen without tokens, and a real run end to end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _serving import free_port, register, signed_copy
from typer.testing import CliRunner

from trustforge.cli import app
from trustforge.settings import Settings


def _cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def test_serving_without_tokens_beyond_loopback_is_refused(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    result = _cli("serve", "models:/iris-serve@champion", "--host", "0.0.0.0", "--no-auth")
    assert result.exit_code == 7
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve without authentication on 0.0.0.0" in lines[0]
    assert "--insecure-no-auth" in lines[0]


def test_a_principal_without_the_serve_role_cannot_start_a_server(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    registry.access.add_user("vera", "viewer")
    token = registry.access.issue_token("vera")
    result = _cli("serve", "models:/iris-serve@champion", env={"TRUSTFORGE_TOKEN": token})
    assert result.exit_code == 8 and "may not serve models:/iris-serve" in result.output
    last = registry.audit.entries(limit=1)[0]
    assert (last["actor"], last["action"], last["outcome"]) == ("vera", "serve", "denied")


def test_bad_options_are_one_line_errors(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    result = _cli("serve", "models:/iris-serve@champion", "--backend", "tensorrt")
    assert result.exit_code == 2 and "backend must be torch or onnx" in result.output
    result = _cli("serve", "models:/iris-serve@champion", "--max-batch-size", "0")
    assert result.exit_code == 2 and "--max-batch-size (serve option max_batch_size) must be in [1, 65536]; got 0" in result.output
    result = _cli("serve", "not/a/model")
    assert result.exit_code == 9 and "neither a model URI" in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "4096"])
def test_max_request_mb_out_of_range_is_a_usage_error_in_mb(value):
    # Checked before the model is looked up: the flag as typed, in MB, never the bytes it becomes.
    result = _cli("serve", "models:/iris-serve@champion", "--max-request-mb", value)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "--max-request-mb must be a number of MB in [0.001, 2048]; got" in lines[0]
    assert "max_request_bytes" not in lines[0] and "internal error" not in lines[0]


@pytest.mark.parametrize("flag", ["--max-latency-ms", "--poll-s", "--auth-cache-s"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_other_float_options_refuse_nan_and_inf_naming_their_flag(flag, value):
    result = _cli("serve", "models:/iris-serve@champion", flag, value)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and f"{flag} (serve option" in lines[0], result.output


@pytest.mark.slow
def test_serve_a_package_folder_with_a_worker_process_then_stop_cleanly(packages, workspace, tmp_path):
    package = signed_copy(packages["iris"], Settings.from_env(), tmp_path / "pkg")
    port = free_port()
    script = Path(sys.executable).with_name("trustforge")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "trustforge.cli"]
    env = {**os.environ, "TRUSTFORGE_HOME": str(workspace)}
    proc = subprocess.Popen(
        [*cmd, "serve", str(package), "--port", str(port), "--workers", "1", "--no-auth"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.3)
        row = {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3}
        r = httpx.post(f"{url}/invocations", json={"dataframe_records": [row]})
        assert r.status_code == 200 and r.json()["predictions"][0]["prediction"] == "virginica"
        workers = _children(proc.pid)
        assert workers  # the model runs in a worker process
        # the drift monitor runs in a process of its own: the server never loads SciPy's tests (tests/serve/test_startup.py)
        assert "/scipy/stats/" not in Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    events = [line for line in stderr.splitlines() if line.startswith("{")]
    assert any('"event":"listening"' in e for e in events) and any('"event":"request"' in e for e in events)
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)  # no worker outlives the server


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_audits_the_last_window_of_429s(packages, workspace, tmp_path):
    # uvicorn re-raises the SIGTERM it handled once it has stopped; under the default handler that
    # killed the process before the service closed, and the pending 429 counts were never audited.
    from trustforge.registry import Registry

    package = signed_copy(packages["iris"], Settings.from_env(), tmp_path / "pkg")
    port = free_port()
    script = Path(sys.executable).with_name("trustforge")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "trustforge.cli"]
    env = {**os.environ, "TRUSTFORGE_HOME": str(workspace)}
    proc = subprocess.Popen(
        [*cmd, "serve", str(package), "--port", str(port), "--workers", "0", "--no-auth", "--rate-limit", "2/s", "--daily-quota", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.3)
        row = {"sepal length (cm)": 6.7, "sepal width (cm)": 3.0, "petal length (cm)": 5.2, "petal width (cm)": 2.3}
        codes = [httpx.post(f"{url}/invocations", json={"dataframe_records": [row]}).status_code for _ in range(4)]
        assert codes[0] == 200 and codes.count(429) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    with Registry(Settings.from_env(workspace)) as registry:
        limited = [e["details"] for e in registry.audit.entries(limit=50) if e["action"] == "serve_rate_limited"]
    assert len(limited) == 1 and limited[0]["rate"] + limited[0]["quota"] == 3


def test_a_port_in_use_is_one_error_naming_port_before_the_model_loads(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("serve", "models:/iris-serve@champion", "--port", str(port), "--workers", "0")
    assert result.exit_code == 74, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: --port {port} is in use on 127.0.0.1 (another server listens there); stop it or choose another --port"]
    assert '"listening"' not in result.output and '"model_loaded"' not in result.output  # refused before loading
