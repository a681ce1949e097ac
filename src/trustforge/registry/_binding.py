"""Binding a version row to its folder: the stored package must be the one the database recorded.

A version row records the package's id and the SHA-256 of its verified `manifest.json`
(which lists the SHA-256 of every other file, so it names the whole package). The folder
`ARTIFACTS/NAME/VERSION/` is only a place: anyone who can write the artifact store can copy
another version's folder there, and that folder is a genuine package signed by this
workspace, so signature checks alone accept it. Every load through the registry therefore
compares the folder with the row, twice:

1. before anything is decrypted or parsed beyond what the comparison needs (`check_stored`):
   the stored form (sealed or plain) must be the row's; a sealed folder's header must carry
   the row's package id (one small JSON object, authenticated later when its data key
   unwraps); a plain folder's `manifest.json` bytes must hash to the row's digest.
2. on the verified bytes that are then used (`check_verified`): the manifest's package id
   and digest, so that a folder changed between the two reads is refused as well.

A mismatch is an `IntegrityError` that names the version (`models:/NAME/3`), never the
folder's local path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from trustforge.errors import IntegrityError, SecurityError
from trustforge.registry._names import format_uri
from trustforge.secure import is_sealed

__all__ = ["BoundRow", "check_stored", "check_archived", "check_verified", "open_bound"]

_SEALED = "sealed.json"  # the sealed package's header (trustforge.secure's envelope format)
_MANIFEST = "manifest.json"
_MAX_HEADER = 1 << 20
_CHUNK = 1 << 20


class BoundRow(Protocol):
    """What a version row records about its package (a `ModelVersion` is one)."""

    name: str
    version: int
    encrypted: bool
    package_id: str
    package_digest: str


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:12] if len(text) > 12 else text


def _mismatch(row: BoundRow, why: str) -> IntegrityError:
    return IntegrityError(f"{format_uri(row.name, row.version)}: {why}; refusing to load it (run `trustforge audit show`)")


def _another(row: BoundRow, **found: object) -> IntegrityError:
    """The mismatch error; `found` (package_id or package_digest) is kept on it for the audit entry."""
    ((what, value),) = found.items()
    recorded = getattr(row, what)
    exc = _mismatch(
        row,
        f"the version folder holds another package ({what.replace('_', ' ')} {_short(value)}, the registry recorded {_short(recorded)})",
    )
    exc.found = {what: str(value)[:64]}  # type: ignore[attr-defined]
    return exc


def check_stored(folder: Path, row: BoundRow) -> None:
    """Refuse a folder that does not hold the row's package, reading only what the comparison needs.

    Raises:
        IntegrityError: naming the version: the folder is missing, in the other stored form
            (sealed/plain), or holds a package with another id or manifest digest.
    """
    if not row.package_id or not row.package_digest:
        raise _mismatch(row, "the registry recorded no package id or digest for this version")
    if not folder.is_dir() or folder.is_symlink():
        raise _mismatch(row, "the stored package is missing")
    sealed = is_sealed(folder)
    if sealed != bool(row.encrypted):
        stored, recorded = ("sealed", "plain") if sealed else ("plain", "sealed")
        raise _mismatch(row, f"the version folder holds a {stored} package, the registry stored it {recorded}")
    if sealed:
        header = folder / _SEALED
        try:
            if header.is_symlink() or not header.is_file() or header.stat().st_size > _MAX_HEADER:
                raise ValueError
            found = json.loads(header.read_bytes()).get("package_id")
        except (OSError, ValueError, AttributeError, RecursionError, UnicodeDecodeError):
            raise _mismatch(row, f"the stored package's {_SEALED} is missing or malformed") from None
        if found != row.package_id:
            raise _another(row, package_id=found)
    else:
        manifest = folder / _MANIFEST
        if manifest.is_symlink() or not manifest.is_file():
            raise _mismatch(row, f"the stored package's {_MANIFEST} is missing")
        h = hashlib.sha256()
        with manifest.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        if h.hexdigest() != row.package_digest:
            raise _another(row, package_digest=h.hexdigest())


def check_archived(row: BoundRow, files: dict[str, bytes]) -> None:
    """`check_stored` for a version folder held in memory ({file name: contents}, e.g. from a backup).

    Raises:
        IntegrityError: naming the version, as `check_stored`.
    """
    if not row.package_id or not row.package_digest:
        raise _mismatch(row, "the registry recorded no package id or digest for this version")
    if not files:
        raise _mismatch(row, "the stored package is missing")
    if (_SEALED in files) != bool(row.encrypted):
        stored, recorded = ("sealed", "plain") if _SEALED in files else ("plain", "sealed")
        raise _mismatch(row, f"the version folder holds a {stored} package, the registry stored it {recorded}")
    if row.encrypted:
        try:
            found = json.loads(files[_SEALED]).get("package_id") if len(files[_SEALED]) <= _MAX_HEADER else None
        except (ValueError, AttributeError, RecursionError, UnicodeDecodeError):
            raise _mismatch(row, f"the stored package's {_SEALED} is malformed") from None
        if found != row.package_id:
            raise _another(row, package_id=found)
    else:
        if _MANIFEST not in files:
            raise _mismatch(row, f"the stored package's {_MANIFEST} is missing")
        digest = hashlib.sha256(files[_MANIFEST]).hexdigest()
        if digest != row.package_digest:
            raise _another(row, package_digest=digest)


def check_verified(row: BoundRow, manifest: dict[str, Any], raw_digest: str) -> None:
    """Refuse verified contents that are not the row's package (the folder changed after `check_stored`).

    Args:
        manifest: the verified manifest; raw_digest: the SHA-256 of its verified bytes.
    """
    if manifest.get("package_id") != row.package_id:
        raise _another(row, package_id=manifest.get("package_id"))
    if raw_digest != row.package_digest:
        raise _another(row, package_digest=raw_digest)


def open_bound(folder: Path, row: BoundRow, keyring: Any) -> Any:
    """The verified package (`trustforge.package.VerifiedPackage`) of `row`, checked against the row.

    The pre-parse check, then verification (signature, digests, manifest; decryption in
    memory for a sealed package), then the check on the verified bytes. Tensors are parsed
    only by whoever builds the model from the returned package.

    Raises:
        IntegrityError: naming the version on a mismatch, or the file that fails verification
            from the version (`models:/NAME/3/weights.safetensors.enc: ...`), never by its local path.
        SecurityError: a sealed package under a key-encryption key the keyring lacks (named so too).
    """
    from trustforge.package import encode_manifest, read_package

    check_stored(folder, row)
    try:
        pkg = read_package(folder, keyring=keyring)
    except (IntegrityError, SecurityError) as exc:
        # The package layer names a file by its folder as given, here a local path in the store.
        raise type(exc)(str(exc).replace(str(folder), format_uri(row.name, row.version))) from None
    # read_package checked that the manifest's bytes are exactly encode_manifest(manifest).
    check_verified(row, pkg.manifest, hashlib.sha256(encode_manifest(pkg.manifest)).hexdigest())
    return pkg
