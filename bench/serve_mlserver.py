"""MLServer as the serving benchmark's peer: find it, give it the same network, start it.

bench/serve_load.py imports this. MLServer lives in its own venv (.venv-mlserver, made by
`make bench-peers` from bench/requirements-mlserver.txt) because it pins another FastAPI; the
benchmark installs nothing and leaves MLServer out, saying so, when that venv is absent.

MLServer gets the package's own computation from raw feature rows to class probabilities
(the standardisation TrustForge learned, the network, the calibration temperature, softmax),
traced with torch.jit.trace and checked against `Model.predict_proba` before it is used, and
the same batching settings as TrustForge (`max_batch_size` requests, `max_batch_time` seconds:
MLServer's names for adaptive batching). It listens on 127.0.0.1 only (HTTP, gRPC and metrics),
with `debug` off (its production setting: no access log per request) and one inference worker
process (`parallel_workers`, its default; TrustForge runs one model worker too).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE.parent / ".venv-mlserver"
MODEL_NAME = "bench-mlp"
RUNTIME = "mlserver_torchscript.TorchScriptRuntime"  # bench/mlserver_torchscript.py


def find_mlserver(option: str | None) -> tuple[Path | None, str]:
    """The `mlserver` executable to run and its version line, or None and why it is left out.

    Args:
        option: `--mlserver` as given: a venv folder or an `mlserver` executable; None looks
            for .venv-mlserver beside bench/; "none" leaves MLServer out on purpose.
    """
    if option == "none":
        return None, "MLServer: left out (--mlserver none)"
    where = Path(option) if option else DEFAULT_VENV
    exe = where if where.is_file() else where / "bin" / "mlserver"
    if not exe.is_file():
        return None, (
            f"MLServer: NOT INSTALLED (no {exe}); the comparison with MLServer is left out. "
            "`make bench-peers` installs it into .venv-mlserver (the benchmark installs nothing itself)"
        )
    probe = subprocess.run(
        [str(exe.with_name("python")), "-c", "import mlserver, torch; print(mlserver.__version__, torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        return None, f"MLServer: BROKEN install at {exe} ({probe.stderr.strip().splitlines()[-1:]}); left out"
    mlserver_version, torch_version = probe.stdout.split()
    return exe, f"MLServer {mlserver_version} (torch {torch_version}) from {exe.parent.parent}"


class ServedNetwork(torch.nn.Module):
    """Raw feature rows (N, F) float32 -> class probabilities, as `Model.predict_proba` computes
    them for an all-numeric table: standardise, run the network, divide by the temperature, softmax."""

    def __init__(self, module: torch.nn.Module, mean: np.ndarray, std: np.ndarray, temperature: float):
        super().__init__()
        self.module = module
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        no_categories = torch.zeros((x.shape[0], 0), dtype=torch.long)
        return torch.softmax(self.module(z, no_categories) / self.temperature, dim=1)


def trace_network(model, frame: pd.DataFrame, path: Path) -> float:
    """Trace the network MLServer serves into `path`; return its largest difference from
    `Model.predict_proba` on `frame` (all-numeric columns in the signature's order).

    Raises:
        RuntimeError: the model is not an all-numeric table model this tracing knows.
    """
    features = model.preprocessor.column_features()
    try:
        states = [features[c][1] for c in frame.columns]
        mean = np.array([s.mean for s in states], dtype=np.float64)
        std = np.array([s.std for s in states], dtype=np.float64)
    except (KeyError, AttributeError) as exc:
        raise RuntimeError(f"MLServer peer: cannot read the standardisation of column {exc} (all-numeric table models only)") from None
    served = ServedNetwork(model.module, mean, std, model.temperature).eval()
    x = torch.tensor(frame.to_numpy(np.float32))
    with torch.no_grad():
        traced = torch.jit.trace(served, x[:2])
        traced.save(str(path))
        ours = traced(x).numpy()
    return float(np.abs(ours - model.predict_proba(frame)).max())


def write_repository(
    folder: Path, network: Path, host: str, ports: tuple[int, int, int], max_batch_size: int, max_batch_time_s: float
) -> None:
    """MLServer's settings.json (server) and model-settings.json (model) in `folder`."""
    http_port, grpc_port, metrics_port = ports
    server = {
        "debug": False,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_dir": str(folder / ".metrics"),
        "environments_dir": str(folder / ".envs"),
        "parallel_workers": 1,
        "load_models_at_startup": True,
    }
    model_settings = {
        "name": MODEL_NAME,
        "implementation": RUNTIME,
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time_s,
        "parameters": {"uri": str(network)},
    }
    (folder / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(server, indent=1))
    (folder / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings, indent=1))


def command(exe: Path, folder: Path) -> list[str]:
    return [str(exe), "start", str(folder)]


def environment(base: dict[str, str]) -> dict[str, str]:
    """MLServer's environment: ours without our source path, plus bench/ for the runtime module."""
    env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(HERE)
    return env


def request_body(row: list[float]) -> bytes:
    """One row as an Open Inference Protocol v2 request with one FP32 [1, F] tensor."""
    return json.dumps({"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}).encode()


def probabilities(response: dict) -> list[float]:
    return [float(v) for v in response["outputs"][0]["data"]]
