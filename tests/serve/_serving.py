"""Helpers of the serving tests: the specs of the small models, signing, registering, live servers."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trustforge.settings import Settings

QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False}

SPECS = {
    # 4 numeric columns, 3 classes; a drift window of 20 rows so tests can fill one.
    "iris": {
        "name": "iris-serve",
        "data": {"source": "builtin:iris"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 30, "batch_size": 16, "optimizer": {"name": "adamw", "lr": 0.02}},
        "evaluate": QUIET,
        "monitor": {"window": 20},
    },
    # a second version of the same model, barely trained: unsure probabilities, easy to tell apart.
    "iris_v2": {
        "name": "iris-serve",
        "data": {"source": "builtin:iris"},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 1, "seed": 3, "optimizer": {"name": "adamw", "lr": 0.001}},
        "evaluate": {**QUIET, "calibrate": False},
        "monitor": {"window": 20},
    },
    # binary, with a decision threshold chosen on validation for malignant recall >= 0.98.
    "cancer": {
        "name": "cancer-serve",
        "data": {"source": "builtin:breast_cancer", "split": {"test": 0.2, "validation": 0.2}},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 20, "batch_size": 32},
        "evaluate": {**QUIET, "threshold": "precision@recall=0.98"},
    },
    # images (1, 8, 8): the tensor layout.
    "digits": {
        "name": "digits-serve",
        "data": {"source": "builtin:digits"},
        "model": {"kind": "cnn", "channels": [8], "hidden": [32]},
        "train": {"max_epochs": 3},
        "evaluate": QUIET,
    },
    # every feature type in one row: a date, categories, numbers and free text (examples/data/strikes.csv).
    "strikes": {
        "name": "strikes-serve",
        "data": {"source": f"csv:{Path(__file__).resolve().parents[2] / 'examples' / 'data' / 'strikes.csv'}", "target": "disrupted"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 3},
        "evaluate": QUIET,
    },
    # an image file, a sound file and a number per row (trustforge.testing.write_media_table).
    "media": {
        "name": "media-serve",
        "data": {
            "source": "csv:PLACEHOLDER",
            "target": "label",
            "image": {"size": [16, 16]},
            "audio": {"sample_rate": 8000, "seconds": 0.5, "n_fft": 256, "hop_length": 200, "n_mels": 20},
        },
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 15, "batch_size": 16},
        "evaluate": QUIET,
    },
    # a numeric, a categorical and a yes/no text column: BYTES inputs.
    "mixed": {
        "name": "mixed-serve",
        "data": {"source": "csv:PLACEHOLDER", "target": "label"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 20, "batch_size": 16},
        "evaluate": QUIET,
    },
}


def mixed_frame(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A small table whose label depends on every column."""
    rng = np.random.default_rng(seed)
    age = rng.normal(50, 10, n).round(1)
    color = rng.choice(["red", "green", "blue"], n)
    smoker = rng.choice(["yes", "no"], n)
    score = (age - 50) / 10 + (color == "red") * 1.5 + (smoker == "yes") * 1.0
    return pd.DataFrame({"age": age, "color": color, "smoker": smoker, "label": np.where(score > 0.8, "high", "low")})


def signed_copy(package: Path, settings: Settings, dest: Path) -> Path:
    """A copy of `package` signed with the workspace's key."""
    from trustforge import secure

    keyring = secure.Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
    out = Path(shutil.copytree(package, dest))
    secure.sign_package(out, keyring)
    return out


def register(registry, package: Path, tmp: Path, *, alias: str | None = "champion") -> str:
    """Register a signed copy of `package`; point `alias` at it. Returns its pinned URI."""
    copy = signed_copy(package, registry.settings, tmp / f"signed-{time.monotonic_ns()}")
    mv = registry.register(copy)
    if alias:
        registry.set_alias(mv.name, alias, mv.version)
    return mv.uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A FastAPI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def local_error(tmp_path: Path) -> Exception:
    """An error that names a local file and, across its 300th character, an email address."""
    from trustforge.errors import IntegrityError

    head = f"{tmp_path}/store/iris/2/weights.safetensors.enc: failed authentication; "
    return IntegrityError(head + "x" * (290 - len(head)) + " mary.smith@example.com")
