"""Export artefact folders on disk, torch-free: their names beside a package, and verifying them.

`package verify` checks the exports beside a package without importing torch; writing one
(`_export.export_model`) needs torch. See `_export` for the folder's contents.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from trustforge.errors import IntegrityError
from trustforge.secure import Keyring, is_sealed, open_sealed, parse_manifest, resolve_trust, verify_folder

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "EXPORT_FORMATS",
    "QUANTIZATIONS",
    "FILES",
    "export_entries",
    "export_entry_version",
    "export_path",
    "export_temp_path",
    "find_exports",
    "read_export",
]

EXPORT_FORMAT = "trustforge.export"
EXPORT_VERSION = 1
EXPORT_FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("int8",)
MANIFEST = "manifest.json"
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript"}


# Temporary folders `export_model` writes beside the artefact `A` while it writes it:
# `.A.plain-TAG` (signed, not yet sealed), `.A.sealed-TAG` (sealed, not yet renamed), `.A.old-TAG`
# (the artefact it replaces, until the new one is in place). TAG: 8 hex digits.
TEMP_KINDS = ("plain", "sealed", "old")
_SUFFIX = "(?:{})(?:-(?:{}))?".format("|".join(map(re.escape, EXPORT_FORMATS)), "|".join(map(re.escape, QUANTIZATIONS)))
_FINAL = re.compile(rf"(\d+)\.{_SUFFIX}")
_TEMP = re.compile(rf"\.(\d+)\.{_SUFFIX}\.(?:{'|'.join(TEMP_KINDS)})-[0-9a-f]{{8}}")


def export_path(package: Path, fmt: str, quantize: str | None = None) -> Path:
    """The artefact folder beside `package`: `P.onnx`, `P.onnx-int8`, `P.torchscript`, `P.torchscript-int8`."""
    return Path(package).with_name(f"{Path(package).name}.{fmt}{'-' + quantize if quantize else ''}")


def export_temp_path(dest: Path, kind: str, tag: str) -> Path:
    """A temporary folder beside the artefact folder `dest` (`kind` one of `TEMP_KINDS`)."""
    if kind not in TEMP_KINDS or not re.fullmatch(r"[0-9a-f]{8}", tag):
        raise ValueError(f"not an export temporary: {kind!r}, {tag!r}")
    return Path(dest).with_name(f".{Path(dest).name}.{kind}-{tag}")


def export_entry_version(name: str) -> tuple[int, bool] | None:
    """(version, temporary?) of an entry name that exporting a registry version `V` writes beside
    its folder (`V.onnx`, ..., or a temporary `.V.onnx.plain-TAG`, ...); None for any other name."""
    for pattern, temporary in ((_FINAL, False), (_TEMP, True)):
        m = pattern.fullmatch(name)
        if m:
            return int(m.group(1)), temporary
    return None


def export_entries(package: Path) -> list[Path]:
    """Every entry that exporting `package` (a folder named by its version number, as the registry
    stores them) left beside it, finished or temporary, whether or not it verifies."""
    package = Path(package)
    if not package.name.isdigit() or not package.parent.is_dir():
        return []
    version = int(package.name)
    return sorted(p for p in package.parent.iterdir() if (export_entry_version(p.name) or (None,))[0] == version)


# ---------------------------------------------------------------------------- reading


def read_export(path: Path, keyring: Keyring, package_digest: str | None = None) -> tuple[dict[str, Any], bytes]:
    """Verify an artefact folder (plain or sealed) and return (its evidence, the model file's bytes).

    Checks the signature with the workspace's keys, that the folder holds exactly the signed
    files with their digests, the evidence's format, and, given `package_digest`, that the
    artefact was exported from that package. Sealed folders are decrypted in memory.

    Raises:
        IntegrityError: naming the file that fails a check.
        SecurityError: a sealed artefact whose key-encryption key this keyring does not hold.
    """
    root = Path(path)
    if is_sealed(root):
        blobs = open_sealed(root, keyring)
        evidence = parse_manifest(root, blobs[MANIFEST])
    else:
        root, evidence, blobs = verify_folder(root, resolve_trust(keyring, None))
    if evidence.get("format") != EXPORT_FORMAT or evidence.get("format_version") != EXPORT_VERSION:
        raise IntegrityError(f"{root / MANIFEST}: not a TrustForge export (format {EXPORT_FORMAT} v{EXPORT_VERSION})")
    name = (evidence.get("export") or {}).get("file")
    if name not in FILES.values() or name not in blobs:
        raise IntegrityError(f"{root / MANIFEST}: names no exported model file")
    if package_digest is not None and (evidence.get("source") or {}).get("package_digest") != package_digest:
        raise IntegrityError(f"{root / MANIFEST}: exported from another package (its package digest differs)")
    return evidence, bytes(blobs[name])


def find_exports(package: Path) -> list[Path]:
    """The artefact folders beside `package` (`export_path` names), whether or not they verify."""
    package = Path(package)
    found = []
    for fmt in EXPORT_FORMATS:
        for q in (None, *QUANTIZATIONS):
            p = export_path(package, fmt, q)
            if p.is_dir() and not p.is_symlink():
                found.append(p)
    return found
