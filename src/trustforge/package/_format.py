"""The model package on disk: write it atomically and signed, verify it before parsing anything.

A package is a folder:

    manifest.json          format, identity, spec, signature, preprocessing, metrics, lineage,
                           and the SHA-256 and size of every other file
    weights.safetensors    the model's state dict
    preprocess.safetensors the fitted scalers and image statistics
    model.sig              the workspace's signature over every other file's SHA-256, in the
                           OpenSSF model-signing format (see `trustforge.secure._signing`)

Nothing in it can run code when loaded: JSON and safetensors only. Loading checks, in order,
the signature, that the folder holds exactly the signed files with their digests, then the
manifest JSON, and only then parses tensors. A sealed (encrypted) package folder is opened in
memory and goes through the same checks on the decrypted bytes.

The manifest also carries `manifest_sha256`, the SHA-256 of its own canonical JSON without
that key, and its bytes must be exactly what `encode_manifest` writes: a checksum that still
catches corruption when the signature is skipped on purpose (`UnsafeNoVerify`).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustforge._fs import atomic_folder, write_private_bytes
from trustforge.errors import IntegrityError, SecurityError
from trustforge.secure import (
    SIGNATURE_FILE,
    Keyring,
    UnsafeNoVerify,
    is_sealed,
    open_sealed,
    parse_manifest,
    resolve_trust,
    sign_digests,
    verify_folder,
)

if TYPE_CHECKING:
    import torch

# torch and safetensors' torch reader are imported where tensors are written or parsed, not
# here: verifying a package checks bytes only, and importing torch costs seconds.

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SIGNATURE_FILE",
    "write_package",
    "read_package",
    "encode_manifest",
    "sha256_file",
    "VerifiedPackage",
    "UnsafeNoVerify",
    "OOD_FILE",
]

FORMAT = "trustforge.package"
# 4: a binary model's manifest holds its `decision` (positive class and threshold), which
# predictions follow; a reader of format 3 would ignore it and predict by the argmax instead,
# so it must refuse the package rather than predict differently from its metrics.
# 3: a table column may be an image or audio file per row; the schema's columns say their
# tensor's shape (`grid`) and the spec settings they were fitted with (`settings`).
# 2: a table's preprocessing holds each column's feature type and frozen state ("features");
# 1 (before feature types) held scalers as tensors. The loader reads all three (see data._encoders).
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
MANIFEST = "manifest.json"
# The out-of-distribution detector's tensors (`monitor.fit_ood`), when the package has one.
OOD_FILE = "ood.safetensors"
MANIFEST_DIGEST = "manifest_sha256"
_CHUNK = 1 << 20


def save_tensors(tensors: dict[str, torch.Tensor]) -> bytes:
    """safetensors' bytes of `tensors` (torch is imported here, on first use)."""
    from safetensors.torch import save

    return save(tensors)


def load_tensors(blob: bytes) -> dict[str, torch.Tensor]:
    """The tensors of safetensors bytes (torch is imported here, on first use)."""
    from safetensors.torch import load

    return load(blob)


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


def write_package(
    dest: Path, manifest: dict[str, Any], tensor_files: dict[str, dict[str, torch.Tensor]], *, keyring: Keyring | None = None
) -> Path:
    """Write a package to `dest` (which must not exist) through a temporary sibling folder.

    Args:
        dest: the package folder to create.
        manifest: everything but `format`, `format_version`, `package_id` and `files`, which are filled in.
        tensor_files: file name → named tensors, each written as safetensors.
        keyring: the workspace keyring; the package is signed (`model.sig`) before it appears
            at `dest`. Without one the package is unsigned, and loads only with `UnsafeNoVerify`.

    Returns:
        `dest`, its files mode 0600 in a 0700 folder (`atomic_folder`), whatever the umask. On
        any failure nothing is left at `dest` and the temporary folder is removed.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists")
    for name in tensor_files:
        if not _plain_name(name) or name == SIGNATURE_FILE:
            raise ValueError(f"{name!r} is not a plain file name for a package file")
    with atomic_folder(dest) as tmp:
        files: dict[str, dict[str, Any]] = {}
        for name, tensors in tensor_files.items():
            blob = save_tensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
            write_private_bytes(tmp / name, blob)
            files[name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_id": manifest.get("package_id") or uuid.uuid4().hex,
            **{k: v for k, v in manifest.items() if k != "package_id"},
            "files": files,
        }
        raw = encode_manifest(full)
        write_private_bytes(tmp / MANIFEST, raw)
        if keyring is not None:
            digests = {name: entry["sha256"] for name, entry in files.items()}
            digests[MANIFEST] = hashlib.sha256(raw).hexdigest()
            write_private_bytes(tmp / SIGNATURE_FILE, sign_digests(digests, dest.name, keyring))
    return dest


class VerifiedPackage:
    """A package whose signature and files all checked out; tensors parsed only after that."""

    def __init__(self, path: Path, manifest: dict[str, Any], blobs: dict[str, bytes]):
        self.path = path
        self.manifest = manifest
        self._blobs = blobs

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of one verified safetensors file."""
        from safetensors import SafetensorError

        try:
            return load_tensors(self._blobs[name])
        except (SafetensorError, ValueError, KeyError) as exc:
            raise IntegrityError(f"{self.path / name}: not a valid safetensors file ({exc.__class__.__name__})") from None


def read_package(
    path: str | os.PathLike[str], *, keyring: Keyring | None = None, public_key: str | os.PathLike[str] | UnsafeNoVerify | None = None
) -> VerifiedPackage:
    """Verify a package folder, plain or sealed, and return its manifest and file contents.

    Checks, in order: the signature (with `public_key` if given, else the keyring's current
    and retired keys); that the folder holds exactly the signed files (no extra file, link or
    folder); each file's SHA-256; then the manifest: JSON, this format and version, its own
    canonical form, and its file list equal to the signed one. Files are read once into
    memory, so what was verified is what gets parsed. A sealed folder is decrypted in memory
    (never to disk) and its decrypted files go through the same checks.

    Args:
        path: the package folder.
        keyring: the workspace keyring; default: the keys of the workspace in the environment
            (`Settings.from_env()`), loaded only when needed.
        public_key: a PEM public key file to verify a package from elsewhere, or
            `UnsafeNoVerify()` to skip the signature (digests are still checked; logs a warning).

    Raises:
        IntegrityError: naming the first file that fails a check.
        SecurityError: no key to verify with, or a sealed package whose key-encryption key
            this keyring does not hold.
    """
    root = Path(path)
    if is_sealed(root):
        blobs = open_sealed(root, keyring or _workspace_keyring(root))
        manifest = parse_manifest(root, blobs[MANIFEST])  # verified (signature and digests) by open_sealed
    else:
        if keyring is None and public_key is None:
            keyring = _workspace_keyring(root)
        root, manifest, blobs = verify_folder(root, resolve_trust(keyring, public_key))
    _check_format(root, manifest, blobs[MANIFEST])
    return VerifiedPackage(root, manifest, blobs)


def _workspace_keyring(root: Path) -> Keyring:
    from trustforge.settings import Settings

    settings = Settings.from_env()
    try:
        return Keyring.load(settings.keys_dir, kek_b64=settings.kek)
    except SecurityError as exc:
        raise SecurityError(
            f"{root}: no keyring to verify it with ({exc}); give the signer's public key (--public-key, or public_key= in Python)"
        ) from None


def _check_format(root: Path, manifest: dict[str, Any], raw: bytes) -> None:
    mpath = root / MANIFEST
    if manifest.get("format") != FORMAT:
        raise IntegrityError(f"{mpath}: not a TrustForge package manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # `true` is no version, though True == 1
        raise IntegrityError(f"{mpath}: unsupported format_version {_short(manifest.get('format_version'))}")
    try:
        intact = encode_manifest(manifest) == raw
    except (ValueError, RecursionError):
        intact = False
    if not intact:
        raise IntegrityError(f"{mpath}: manifest does not match its {MANIFEST_DIGEST} (file changed)")


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
