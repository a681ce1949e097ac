"""The manifest of a new package: what the model is, what it takes and returns, how it was made.

Everything here is JSON and describes this machine by nothing but versions: the spec is
redacted (a data file is named by its file name only), and the input signature is what the
data's kind of input and feature types say a request carries.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from trustforge.data import Prepared, input_kind
from trustforge.evaluate import task_of
from trustforge.package._format import OOD_FILE, write_package
from trustforge.secure import Keyring
from trustforge.spec import TaskSpec, redact_spec, spec_to_dict
from trustforge.train import count_parameters

__all__ = ["build_manifest", "write_model_package"]


def write_model_package(
    path: Path,
    spec: TaskSpec,
    data: Prepared,
    model: torch.nn.Module,
    metrics: dict[str, Any],
    *,
    run: str,
    spec_digest: str,
    n_out: int,
    keyring: Keyring,
    calibration: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
    decision: dict[str, Any] | None = None,
    ood: tuple[dict[str, Any], dict[str, torch.Tensor] | None] | None = None,
    lineage: dict[str, Any] | None = None,
    created_by: str = "local-admin",
) -> Path:
    """Write the signed package of a trained model at `path` (which must not exist).

    Args:
        calibration: the temperature the package predicts with (and the ECE before and after).
        reference: the drift monitor's reference statistics, signed with the rest.
        decision: a binary model's positive class and threshold (`evaluate.decide`), which
            `Model.predict` and the server predict by.
        ood: the out-of-distribution detector (`monitor.fit_ood`): its JSON entry, saved under
            the manifest's `monitor.ood`, and its tensors, saved as `OOD_FILE` (None: skipped,
            the entry says why); both signed with the rest.
        lineage: more lineage, signed with the rest (e.g. `tune`: the study and trial the model came from).
        created_by: who made it, as `build_manifest` records it.
    """
    manifest = build_manifest(spec, data, model, metrics, run=run, spec_digest=spec_digest, n_out=n_out, created_by=created_by)
    if lineage:
        manifest["lineage"].update(lineage)
    if data.protection is not None:  # what `data.protect` did: `Model` treats its inputs the same way
        manifest["pii"] = data.protection
    if calibration is not None:
        manifest["calibration"] = calibration
    if decision is not None:
        manifest["decision"] = decision
    if reference is not None:
        manifest["monitor"] = {"reference": reference}
    if getattr(data, "expect", None):  # data.expect: declared and inferred expectations, signed with the rest
        manifest["expect"] = data.expect
    tensors = {"weights.safetensors": dict(model.state_dict()), "preprocess.safetensors": data.preprocessor.state()[1]}
    if ood is not None:
        manifest.setdefault("monitor", {})["ood"] = ood[0]
        if ood[1] is not None:
            tensors[OOD_FILE] = ood[1]
    return write_package(path, manifest, tensors, keyring=keyring)


def build_manifest(
    spec: TaskSpec,
    data: Prepared,
    model: torch.nn.Module,
    metrics: dict[str, Any],
    *,
    run: str,
    spec_digest: str,
    n_out: int,
    created_by: str = "local-admin",
) -> dict[str, Any]:
    """The manifest of a package trained from `spec` on `data` (everything but the fields
    `write_package` fills in: format, package id, files).

    Args:
        run: the run folder's name (lineage).
        spec_digest: the digest of the normalised spec (lineage).
        n_out: the model's number of outputs.
        created_by: who made it (lineage): the acting principal's `lineage_name`, a TrustForge
            user name or `local-admin`; never the OS login, which a shared package must not carry.
    """
    meta, _ = data.preprocessor.state()
    redacted = redact_spec(spec)  # no path of this machine leaves it
    return {
        "name": spec.name,
        "version": None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": spec.task,
        "spec": spec_to_dict(redacted),
        "signature": {
            "inputs": input_kind(data.schema).signature(data.preprocessor),
            "outputs": task_of(spec).output_signature(data.schema),
        },
        "preprocessing": meta,
        "model": {"kind": spec.model.kind, "outputs": n_out, "parameters": count_parameters(model)},
        "metrics": dict(metrics),
        "lineage": {
            "run": run,
            "data_source": redacted.data.source,
            "dataset_digest": data.data_digest,
            "spec_digest": spec_digest,
            "git_commit": _git_commit(),
            "packages": _versions(),
            "python": platform.python_version(),
            "created_by": created_by,
        },
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    out = {}
    for name in ("trustforge", "torch", "numpy", "pandas", "scikit-learn", "safetensors", "opacus"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
