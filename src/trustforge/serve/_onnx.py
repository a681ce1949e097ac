"""The ONNX Runtime backend: export on first serve into a signed cache, then predict the same.

`prepare_onnx(model, digest, ...)` returns the path of an ONNX export of a verified model's
network, keyed by the package digest (SHA-256 of its verified manifest, which lists every
file's SHA-256), so a changed package never meets a stale export. On a cache miss it exports
the module with `torch.onnx.export` (the dynamo exporter, batch axis dynamic), checks that ONNX
Runtime predicts what the eager model predicts on probe inputs built from the signature
(within 1e-4, relative to magnitudes above 1), and writes the file with a sidecar that the
workspace key signs: an export someone edited on disk fails `load_onnx_model`'s check and is
exported again, never run.

Only the network moves to ONNX Runtime: preprocessing, calibration and the prediction
columns stay `Model`'s own, so `Model.predict_columns` (what the server's executors call) and
`Model.predict` remain the one predict path (the ONNX model is a `Model` whose module is an
ONNX Runtime session).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trustforge._extras import require
from trustforge._fs import atomic_write_bytes
from trustforge._shown import no_local_paths
from trustforge.errors import ModelError
from trustforge.package import ONNX_OPSET, Model, OnnxModule, onnx_bytes
from trustforge.secure import Keyring
from trustforge.serve._logging import log_event
from trustforge.serve._signature import NP_TYPES, Signature

__all__ = ["prepare_onnx", "load_onnx_model", "probe_input", "compare_predictions", "TOLERANCE"]


TOLERANCE = 1e-4
_CACHE_FORMAT = "trustforge.onnx-cache"
_OPSET = ONNX_OPSET
_WORDS = ("good", "bad", "fine", "terrible", "service", "product", "late", "quick", "price", "quality")


def probe_input(model: Model, signature: Signature, rows: int = 16, seed: int = 0) -> pd.DataFrame | np.ndarray:
    """Synthetic inputs that fit the signature: category values the model knows, numbers around
    the training mean, images and waveforms in [0, 1]. For export examples and parity checks."""
    rng = np.random.default_rng(seed)
    if signature.layout == "tensor":
        spec = signature.tensor
        shape = [rows] + [16 if d == -1 else d for d in spec.shape[1:]]
        dtype = NP_TYPES[spec.datatype]
        if dtype.kind == "f":
            return rng.random(shape).astype(dtype)
        return rng.integers(0, 2, size=shape).astype(dtype)
    pre = model.manifest.get("preprocessing") or {}
    vocab = pre.get("vocabularies") or {}
    binary = pre.get("binary_values") or {}
    numeric = list(model.schema.numeric) if hasattr(model.schema, "numeric") else []
    mean = model.preprocessor.tensors.get("num.mean")
    std = model.preprocessor.tensors.get("num.std")
    cols: dict[str, Any] = {}
    features = model.preprocessor.column_features()
    for spec in signature.inputs:
        if spec.name in features:  # a table column: its feature type knows plausible values
            t, state = features[spec.name]
            values = t.example(state, rows, rng)
            cols[spec.name] = values if spec.datatype == "BYTES" else np.asarray(values, dtype=NP_TYPES[spec.datatype])
        elif spec.name in binary:
            values = list(binary[spec.name])
            picked = rng.choice(len(values), size=rows)
            cols[spec.name] = [values[i] for i in picked] if spec.datatype == "BYTES" else np.array([float(values[i]) for i in picked])
        elif spec.datatype == "BYTES":
            known = [v for v in vocab.get(spec.name, [])[2:]] or [" ".join(rng.choice(_WORDS, size=5)) for _ in range(8)]
            cols[spec.name] = [known[i] for i in rng.choice(len(known), size=rows)]
        else:
            j = numeric.index(spec.name) if spec.name in numeric else None
            mu = float(mean[j]) if mean is not None and j is not None else 0.0
            sd = float(std[j]) if std is not None and j is not None else 1.0
            values = rng.normal(mu, sd, size=rows)
            if NP_TYPES[spec.datatype].kind in "iu":
                values = np.round(values)
            cols[spec.name] = values.astype(NP_TYPES[spec.datatype]) if spec.datatype != "BYTES" else values
    return pd.DataFrame(cols)


def compare_predictions(eager: pd.DataFrame, other: pd.DataFrame) -> float:
    """The largest difference between two prediction tables (numbers relative above magnitude 1).

    Returns:
        The max difference over numeric columns; `inf` if a label or a column differs.
    """
    if list(eager.columns) != list(other.columns) or len(eager) != len(other):
        return float("inf")
    worst = 0.0
    for c in eager.columns:
        a, b = eager[c].to_numpy(), other[c].to_numpy()
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            diff = np.abs(a64 - b64) / np.maximum(1.0, np.abs(a64))
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
        elif not np.array_equal(a.astype(str), b.astype(str)):
            return float("inf")
    return worst


def prepare_onnx(model: Model, package_digest: str, cache_dir: Path, keyring: Keyring) -> Path:
    """The path of a verified ONNX export of `model`, exported and checked on first use.

    Args:
        model: the model, loaded from a verified package.
        package_digest: SHA-256 of the package's manifest (the cache key).
        cache_dir: the workspace cache folder (`Settings.cache_dir`).
        keyring: signs new cache entries and verifies existing ones.

    Raises:
        ModelError: the model kind cannot be exported, or ONNX Runtime predicts differently
            (both name the kind).
    """
    entry = Path(cache_dir) / "onnx" / package_digest
    entry.mkdir(parents=True, exist_ok=True)
    onnx_file = entry / "model.onnx"
    with _locked(entry / ".lock"):  # two servers starting at once export once
        if onnx_file.exists():
            try:
                _read_verified(onnx_file, package_digest, keyring)
                return onnx_file
            except ModelError as exc:
                name = _cache_name(package_digest)  # the log names no local path
                log_event(logging.WARNING, "onnx_cache_invalid", cache=name, reason=no_local_paths(str(exc).replace(str(entry), name)))
        signature = Signature.from_manifest(model.manifest)
        blob = export_onnx(model, signature)
        eager_model = model
        onnx_model = Model(model.spec, model.preprocessor, OnnxModule(blob), model.manifest, model.path)
        probe = probe_input(model, signature, rows=64)
        try:
            diff = compare_predictions(eager_model.predict(probe), onnx_model.predict(probe))
        except Exception as exc:  # noqa: BLE001 - any failure of the exported graph is the kind's
            raise ModelError(
                f"model kind {_kind(model)!r}: the ONNX export does not run in ONNX Runtime "
                f"({exc.__class__.__name__}: {str(exc)[:200]}); serve it with --backend torch"
            ) from None
        if not diff <= TOLERANCE:
            raise ModelError(
                f"model kind {_kind(model)!r}: ONNX Runtime predictions differ from eager PyTorch by {diff:.3g} "
                f"(> {TOLERANCE}); serve it with --backend torch"
            )
        meta = {
            "format": _CACHE_FORMAT,
            "format_version": 1,
            "package_digest": package_digest,
            "onnx_sha256": hashlib.sha256(blob).hexdigest(),
            "opset": _OPSET,
            "torch": torch.__version__,
            "max_difference": diff,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        key_id, sig = keyring.sign(_canonical(meta))
        atomic_write_bytes(onnx_file, blob)
        atomic_write_bytes(
            entry / "model.json",
            json.dumps({**meta, "key_id": key_id, "signature": base64.b64encode(sig).decode("ascii")}, indent=1).encode(),
        )
        log_event(logging.INFO, "onnx_exported", cache=_cache_name(package_digest), max_difference=diff)
        return onnx_file


def _cache_name(package_digest: str) -> str:
    """A cache entry as the logs name it: relative to the workspace cache, not a local path."""
    return f"cache/onnx/{package_digest}"


def load_onnx_model(model: Model, onnx_file: Path, package_digest: str, keyring: Keyring, threads: int = 1) -> Model:
    """`model` with its network replaced by the cached ONNX export (verified before it is parsed).

    Raises:
        ModelError: the cache entry is missing, changed or not signed by this workspace.
    """
    blob = _read_verified(Path(onnx_file), package_digest, keyring)
    return Model(model.spec, model.preprocessor, OnnxModule(blob, threads), model.manifest, model.path)


def export_onnx(model: Model, signature: Signature) -> bytes:
    """The ONNX bytes of `model.module`, batch axis dynamic (the package's exporter, `onnx_bytes`).

    Raises:
        ModelError: the exporter cannot handle this model kind (named).
    """
    require("export", "ONNX export")
    raw = model.read_input(probe_input(model, signature, rows=4, seed=1))
    example = tuple(model.preprocessor.encode_inputs(raw))
    return onnx_bytes(model.module, example, kind=_kind(model), hint="; serve it with --backend torch")


def _read_verified(onnx_file: Path, package_digest: str, keyring: Keyring) -> bytes:
    meta_file = onnx_file.with_name("model.json")
    try:
        blob = onnx_file.read_bytes()
        sealed = json.loads(meta_file.read_text(encoding="utf-8"))
        meta = {k: v for k, v in sealed.items() if k not in ("key_id", "signature")}
        signature = base64.b64decode(sealed["signature"], validate=True)
        key_id = sealed["key_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"{onnx_file}: ONNX cache entry is incomplete or unreadable") from None
    if not keyring.verify(key_id, _canonical(meta), signature):
        raise ModelError(f"{meta_file}: ONNX cache entry is not signed by this workspace")
    if meta.get("format") != _CACHE_FORMAT or meta.get("package_digest") != package_digest:
        raise ModelError(f"{meta_file}: ONNX cache entry belongs to another package")
    if hashlib.sha256(blob).hexdigest() != meta.get("onnx_sha256"):
        raise ModelError(f"{onnx_file}: ONNX file changed since it was exported")
    return blob


def _canonical(meta: dict[str, Any]) -> bytes:
    return b"trustforge.onnx-cache.v1\x00" + json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _kind(model: Model) -> str:
    return str(getattr(model.spec.model, "kind", "unknown"))


@contextlib.contextmanager
def _locked(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def pick_export(model: Model, package_digest: str, keyring: Keyring) -> tuple[Path, dict[str, Any]] | None:
    """The artefact `trustforge package export` wrote beside the model's package, if one verifies:
    `PACKAGE.onnx-int8` first (whoever quantised it chose it; its accuracy change is in its
    evidence), else `PACKAGE.onnx`; None when neither exists or verifies (then `prepare_onnx`).

    An artefact that fails its signature, its digests or its binding to this package is refused
    (a warning names it) and never run.
    """
    from trustforge.errors import IntegrityError, SecurityError
    from trustforge.package import export_path, read_export

    if model.path is None:
        return None
    for folder in (export_path(model.path, "onnx", "int8"), export_path(model.path, "onnx")):
        if not folder.is_dir():
            continue
        try:
            evidence, _ = read_export(folder, keyring, package_digest)
        except (IntegrityError, SecurityError) as exc:
            # Named from the package's folder (`PACKAGE.onnx-int8/model.onnx: ...`), never by its local path.
            reason = no_local_paths(str(exc).replace(str(folder.parent) + os.sep, ""))
            log_event(logging.WARNING, "onnx_export_refused", artefact=folder.name, reason=reason[:300])
            continue
        return folder, evidence
    return None


def load_export_model(model: Model, folder: Path, package_digest: str, keyring: Keyring, threads: int = 1) -> Model:
    """`model` with its network replaced by a verified `package export` ONNX artefact (checked again here)."""
    from trustforge.package import read_export

    _, blob = read_export(Path(folder), keyring, package_digest)
    return Model(model.spec, model.preprocessor, OnnxModule(blob, threads), model.manifest, model.path)
