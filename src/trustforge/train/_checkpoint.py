"""Checkpoints as safetensors + JSON: model, optimizer, random state and callback state.

No pickle and no `torch.load`: optimizer state is split into its tensors (safetensors) and
its plain values (JSON), and rebuilt on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from trustforge._fs import atomic_write_text, create_private, private_dir
from trustforge.errors import RunError

_META_KEY = "trustforge.checkpoint"

__all__ = ["save_checkpoint", "load_checkpoint", "flatten_optimizer", "unflatten_optimizer", "atomic_write_text"]


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Split `optimizer.state_dict()` into JSON-safe values and named tensors."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            name = f"{pid}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return {"scalars": scalars, "param_groups": groups}, tensors


def unflatten_optimizer(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Inverse of `flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            pid, key = name[4:].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(folder: Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write `last.safetensors` atomically; the JSON state rides in the file's metadata.

    One file and one rename, so a crash leaves either the previous checkpoint or the new one.
    The folder is 0700 and the file 0600 from their creation, whatever the umask: a run killed
    mid-training leaves nothing readable by others.
    """
    private_dir(folder)
    tmp = folder / f".last.safetensors.tmp-{os.getpid()}"
    try:
        create_private(tmp)  # save_file truncates it, which keeps the mode
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        with tmp.open("rb") as f:
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        os.replace(tmp, folder / "last.safetensors")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read the last checkpoint of a run.

    Raises:
        RunError: there is no checkpoint or it cannot be read.
    """
    path = folder / "last.safetensors"
    if not path.is_file():
        raise RunError(f"{folder}: no checkpoint to resume from")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, KeyError, json.JSONDecodeError, SafetensorError) as exc:
        raise RunError(f"{path}: checkpoint is unreadable ({exc.__class__.__name__})") from None
    return meta, tensors
