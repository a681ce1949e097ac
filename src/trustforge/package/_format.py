"""The model package on disk: write it atomically, verify it before parsing anything else.

A package is a folder:

    manifest.json          format, identity, spec, signature, preprocessing, metrics, lineage,
                           and the SHA-256 and size of every other file
    weights.safetensors    the model's state dict
    preprocess.safetensors the fitted scalers and image statistics

Nothing in it can run code when loaded: JSON and safetensors only. Loading checks that the
folder holds exactly the files the manifest lists, with their digests, before any of them
is parsed.

The manifest carries `manifest_sha256`, the SHA-256 of its own canonical JSON without that
key, and its bytes must be exactly what `encode_manifest` writes, so any changed byte in it
is caught too. That is a checksum against corruption, not a defence against someone who
rewrites the manifest; signing the manifest arrives with the secure-registry work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from trustforge.errors import IntegrityError

__all__ = ["FORMAT", "FORMAT_VERSION", "write_package", "read_package", "encode_manifest", "sha256_file", "VerifiedPackage"]

FORMAT = "trustforge.package"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest_sha256"
_MAX_MANIFEST_BYTES = 64 << 20
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    """The bytes of `manifest.json` for `manifest`, with its `manifest_sha256` (re)computed.

    Raises:
        ValueError: the manifest holds a value JSON cannot represent exactly (NaN, infinity).
    """
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    full = {**body, MANIFEST_DIGEST: hashlib.sha256(canonical.encode("ascii")).hexdigest()}
    return (json.dumps(full, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def write_package(dest: Path, manifest: dict[str, Any], tensor_files: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write a package to `dest` (which must not exist) through a temporary sibling folder.

    Args:
        dest: the package folder to create.
        manifest: everything but `format`, `format_version`, `package_id` and `files`, which are filled in.
        tensor_files: file name → named tensors, each written as safetensors.

    Returns:
        `dest`. On any failure nothing is left at `dest` and the temporary folder is removed.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists")
    for name in tensor_files:
        if not _plain_name(name):
            raise ValueError(f"{name!r} is not a plain file name for a package file")
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        files: dict[str, dict[str, Any]] = {}
        for name, tensors in tensor_files.items():
            blob = save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
            (tmp / name).write_bytes(blob)
            files[name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_id": manifest.get("package_id") or uuid.uuid4().hex,
            **{k: v for k, v in manifest.items() if k != "package_id"},
            "files": files,
        }
        (tmp / MANIFEST).write_bytes(encode_manifest(full))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(dest.parent)
    return dest


class VerifiedPackage:
    """A package whose files all matched their digests; tensors parsed only after that."""

    def __init__(self, path: Path, manifest: dict[str, Any], blobs: dict[str, bytes]):
        self.path = path
        self.manifest = manifest
        self._blobs = blobs

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of one verified safetensors file."""
        try:
            return load_tensors(self._blobs[name])
        except (SafetensorError, ValueError, KeyError) as exc:
            raise IntegrityError(f"{self.path / name}: not a valid safetensors file ({exc.__class__.__name__})") from None


def read_package(path: str | os.PathLike[str]) -> VerifiedPackage:
    """Verify a package folder and return its manifest and file contents.

    Checks, in order: the folder and manifest exist; the manifest is a JSON object of this
    format; the folder holds exactly the listed files (no extra file, link or folder); each
    file's size and SHA-256 match. Files are read once into memory, so what was verified is
    what gets parsed.

    Raises:
        IntegrityError: naming the first file that fails a check.
    """
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise IntegrityError(f"{root}: not a package folder")
    if not mpath.is_file() or mpath.is_symlink():
        raise IntegrityError(f"{mpath}: manifest missing")
    if mpath.stat().st_size > _MAX_MANIFEST_BYTES:
        raise IntegrityError(f"{mpath}: manifest too large")
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise IntegrityError(f"{mpath}: manifest is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IntegrityError(f"{mpath}: not a TrustForge package manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IntegrityError(f"{mpath}: unsupported format_version {_short(manifest.get('format_version'))}")
    try:
        intact = encode_manifest(manifest) == raw
    except (ValueError, RecursionError):
        intact = False
    if not intact:
        raise IntegrityError(f"{mpath}: manifest does not match its {MANIFEST_DIGEST} (file changed)")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise IntegrityError(f"{mpath}: manifest lists no files")
    for name in listed:
        if not _plain_name(name):
            raise IntegrityError(f"{mpath}: file entry {_short(name)} is not a plain file name")
    present = {p.name for p in root.iterdir()} - {MANIFEST}
    for extra in sorted(present - listed.keys()):
        what = "symbolic link" if (root / extra).is_symlink() else "folder" if (root / extra).is_dir() else "file"
        raise IntegrityError(f"{root / extra}: {what} not listed in the manifest")
    blobs: dict[str, bytes] = {}
    for name, entry in listed.items():
        fpath = root / name
        if fpath.is_symlink():
            raise IntegrityError(f"{fpath}: is a symbolic link; a package holds plain files only")
        if not fpath.is_file():
            raise IntegrityError(f"{fpath}: listed in the manifest but missing")
        if not isinstance(entry, dict) or fpath.stat().st_size != entry.get("size"):
            raise IntegrityError(f"{fpath}: size does not match the manifest (file changed)")
        blob = fpath.read_bytes()
        if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
            raise IntegrityError(f"{fpath}: SHA-256 does not match the manifest (file changed)")
        blobs[name] = blob
    return VerifiedPackage(root, manifest, blobs)


def _plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 128
        and name not in (".", "..", MANIFEST)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and "\x00" not in name
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk (a folder's entries matter for the renames)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
