"""Signing and verifying package folders in the OpenSSF model-signing format.

The signature file `model.sig` sits inside the package folder. It is a Sigstore bundle
(media type v0.3, JSON) holding a DSSE envelope around an in-toto statement whose predicate
(`https://model_signing/signature/v1.0`, serialization method `files`) lists the SHA-256 of
every other file of the folder. It is signed with the workspace's ECDSA P-256 key and names
that key in `verificationMaterial.publicKey.hint` (SHA-256 of the public PEM), exactly as the
`model-signing` tool does, so its own verifier accepts our packages:

    model_signing verify key PACKAGE --signature PACKAGE/model.sig --public_key keys/signing.pub

We write the format ourselves with `cryptography` rather than call model-signing's signer, so
loading a package needs neither that package nor its protobuf/sigstore dependencies.

Verification order is fixed (DESIGN §4): the signature, then the digest of every file against
the signed list (no file more, none less), then the manifest JSON against the same list. Any
failure is one `IntegrityError` naming the file at fault. `UnsafeNoVerify` skips the
signature only (for packages from elsewhere), and logs a warning saying so.

A message names a file as FOLDER/NAME, the folder exactly as the caller gave it (never
resolved): a relative folder gives relative names. A caller that holds a path its user never
typed names it as the user knows it: the registry by the version's URI
(`registry.open_bound`), a server by the folder as typed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import mmap
import os
from pathlib import Path
from typing import Any, Union

from trustforge._fs import atomic_write_bytes
from trustforge.errors import IntegrityError, SecurityError
from trustforge.secure import _primitives as P
from trustforge.secure._keys import Keyring

__all__ = [
    "SIGNATURE_FILE",
    "UnsafeNoVerify",
    "sign_package",
    "verify_package",
    "sign_digests",
    "verify_blobs",
    "verify_folder",
    "read_folder",
    "Trust",
]

log = logging.getLogger("trustforge.secure")

SIGNATURE_FILE = "model.sig"
MANIFEST = "manifest.json"
_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
_MAX_SIG_BYTES = 16 << 20
_MAX_MANIFEST_BYTES = 64 << 20
_MAX_FILES = 10_000


class UnsafeNoVerify:
    """Load a package without checking its signature (digests are still checked).

    For packages whose signing key you do not hold. Anyone who can change the package can
    also change its manifest, so this proves nothing about who made it; every use logs a
    warning.
    """

    def __repr__(self) -> str:
        return "UnsafeNoVerify()"


Trust = Union[Keyring, P.PublicKey, UnsafeNoVerify]


def resolve_trust(keyring: Keyring | None, public_key: "str | os.PathLike[str] | UnsafeNoVerify | None") -> Trust:
    """What to verify signatures with: an explicit public key (or UnsafeNoVerify), else the keyring.

    Raises:
        SecurityError: neither is given, or the public key file is unreadable or not P-256.
    """
    if isinstance(public_key, UnsafeNoVerify):
        return public_key
    if public_key is not None:
        path = Path(public_key)
        try:
            return P.load_public_key(path.read_bytes())
        except OSError as exc:
            raise SecurityError(f"{path}: cannot read the public key ({exc.strerror or exc.__class__.__name__})") from None
        except P.CryptoFailure as exc:
            raise SecurityError(f"{path}: {exc}") from None
    if keyring is None:
        raise SecurityError("no keyring and no public key to verify the package signature with")
    return keyring


# ---------------------------------------------------------------------------- the format


def _pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature actually covers."""
    t = _PAYLOAD_TYPE.encode()
    return b"DSSEv1 %d %s %d " % (len(t), t, len(payload)) + payload


def _statement(digests: dict[str, str], model_name: str) -> bytes:
    names = sorted(digests)
    root = hashlib.sha256(b"".join(bytes.fromhex(digests[n]) for n in names)).hexdigest()
    statement = {
        "_type": _STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root}}],
        "predicateType": _PREDICATE_TYPE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": [SIGNATURE_FILE]},
            "resources": [{"name": n, "algorithm": "sha256", "digest": digests[n]} for n in names],
        },
    }
    return json.dumps(statement, indent=2).encode("utf-8")


def sign_digests(digests: dict[str, str], model_name: str, keyring: Keyring) -> bytes:
    """The bytes of `model.sig` for a folder whose files have these SHA-256 digests (hex)."""
    payload = _statement(digests, model_name or "package")
    key_id, signature = keyring.sign(_pae(payload))
    bundle = {
        "mediaType": _BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_id}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": _PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode("ascii")


def _plain(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 128
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and "\x00" not in name
    )


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64 text")
    return base64.b64decode(value, validate=True)


def _check_signature(sig_path: Path, raw: bytes, trust: Trust) -> dict[str, str]:
    """Verify a bundle and return the signed {file name: sha256 hex}; IntegrityError naming `sig_path`."""

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"{sig_path}: {why}")

    try:
        bundle = json.loads(raw.decode("utf-8"))
        envelope = bundle["dsseEnvelope"]
        payload = _b64(envelope["payload"])
        (entry,) = envelope["signatures"]
        signature = _b64(entry["sig"])
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        media_type, payload_type = bundle["mediaType"], envelope["payloadType"]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError, ValueError, binascii.Error):
        raise bad("not a model-signing bundle with one DSSE signature") from None
    if media_type != _BUNDLE_MEDIA_TYPE or payload_type != _PAYLOAD_TYPE:
        raise bad("unsupported bundle or payload type")
    if isinstance(trust, Keyring):
        if not trust.knows(hint):
            raise bad(f"signed by a key this workspace does not know (key id {str(hint)[:16]}...)")
        ok = trust.verify(hint, _pae(payload), signature)
    else:
        if hint and hint != trust.key_id:
            raise bad(f"signed by another key (key id {str(hint)[:16]}...) than the public key given")
        ok = trust.verify(_pae(payload), signature)
    if not ok:
        raise bad("signature does not verify (the signed list of files was changed)")
    try:
        statement = json.loads(payload.decode("utf-8"))
        predicate = statement["predicate"]
        serialization = predicate["serialization"]
        resources = predicate["resources"]
        (subject,) = statement["subject"]
        root = subject["digest"]["sha256"]
        ok = (
            statement["_type"] == _STATEMENT_TYPE
            and statement["predicateType"] == _PREDICATE_TYPE
            and serialization["method"] == "files"
            and serialization["hash_type"] == "sha256"
            and isinstance(resources, list)
            and len(resources) <= _MAX_FILES
        )
        digests: dict[str, str] = {}
        for r in resources if ok else []:
            name, digest = r["name"], r["digest"]
            if r["algorithm"] != "sha256" or not _plain(name) or name in digests or name == SIGNATURE_FILE:
                raise bad(f"signed file entry {str(name)[:80]!r} is not a plain file name")
            bytes.fromhex(digest)
            digests[name] = digest.lower()
    except IntegrityError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError, ValueError, AttributeError):
        raise bad("the signed statement is not a model-signing file list") from None
    if not ok:
        raise bad("the signed statement is not a model-signing file list")
    # The subject digest is the SHA-256 of the listed digests in order; model-signing checks it too.
    if hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest() != root:
        raise bad("the signed statement is inconsistent (subject digest)")
    return digests


# ---------------------------------------------------------------------------- verifying


def verify_blobs(root: Path, blobs: dict[str, bytes | bytearray], trust: Trust) -> dict[str, Any]:
    """Verify a package held in memory (`root` only names files in messages); return its manifest.

    Checks, in order: the signature (`model.sig`) with `trust`; that the signed list names
    exactly the other files; each file's SHA-256; then that `manifest.json` is a JSON object
    whose `files` agree with the signed list. With `UnsafeNoVerify` the signature is skipped
    and the manifest's own list is the reference.

    Raises:
        IntegrityError: naming the first file that fails.
    """
    if MANIFEST not in blobs:
        raise IntegrityError(f"{root / MANIFEST}: manifest missing")
    others = {n: b for n, b in blobs.items() if n != SIGNATURE_FILE}
    if isinstance(trust, UnsafeNoVerify):
        log.warning("%s: loading WITHOUT checking the signature (UnsafeNoVerify); only file digests are checked", root)
        manifest = parse_manifest(root, blobs[MANIFEST])
        signed = {MANIFEST: hashlib.sha256(blobs[MANIFEST]).hexdigest(), **_manifest_digests(root, manifest)}
    else:
        if SIGNATURE_FILE not in blobs:
            raise IntegrityError(f"{root / SIGNATURE_FILE}: signature missing (the package is not signed)")
        signed = _check_signature(root / SIGNATURE_FILE, bytes(blobs[SIGNATURE_FILE]), trust)
        manifest = None
    for extra in sorted(others.keys() - signed.keys()):
        raise IntegrityError(f"{root / extra}: file not listed in the {'manifest' if manifest else 'signature'}")
    for name in sorted(signed):
        if name not in others:
            raise IntegrityError(f"{root / name}: {'manifest missing' if name == MANIFEST else 'listed in the signature but missing'}")
        if hashlib.sha256(others[name]).hexdigest() != signed[name]:
            raise IntegrityError(f"{root / name}: SHA-256 does not match the {'manifest' if manifest else 'signature'} (file changed)")
    if manifest is None:
        manifest = parse_manifest(root, blobs[MANIFEST])
        listed = _manifest_digests(root, manifest)
        if listed != {n: d for n, d in signed.items() if n != MANIFEST}:
            raise IntegrityError(f"{root / MANIFEST}: the files it lists differ from the signed list")
    for name, entry in manifest["files"].items():
        if entry.get("size") != len(others[name]):
            raise IntegrityError(f"{root / name}: size does not match the manifest (file changed)")
    return manifest


def _bounded_int(text: str) -> int:
    # A manifest holds no integer beyond int64; json would parse 100,000 digits (slowly) or raise ValueError.
    if len(text.lstrip("-")) > 19 or not -(2**63) <= (value := int(text)) < 2**63:
        raise _AbsurdNumber(f"integer {text[:24]}{'...' if len(text) > 24 else ''} is out of range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _AbsurdNumber(f"number {text[:24]} is not finite")
    return value


def _no_constant(text: str) -> Any:
    raise _AbsurdNumber(f"{text} is not a number JSON allows")


class _AbsurdNumber(ValueError):
    pass


def parse_manifest(root: Path, raw: bytes | bytearray) -> dict[str, Any]:
    """A package manifest's JSON with its numbers bounded: no integer beyond int64 (a 23-digit
    version; 100,001 digits, which Python's json refuses with a ValueError), no NaN or infinity.

    Raises:
        IntegrityError: one line naming the manifest.
    """
    try:
        manifest = json.loads(bytes(raw).decode("utf-8"), parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except _AbsurdNumber as exc:
        raise IntegrityError(f"{root / MANIFEST}: manifest holds an absurd number ({exc})") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IntegrityError(f"{root / MANIFEST}: manifest is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise IntegrityError(f"{root / MANIFEST}: not a TrustForge package manifest")
    return manifest


def _manifest_digests(root: Path, manifest: dict[str, Any]) -> dict[str, str]:
    listed = manifest.get("files")
    if not isinstance(listed, dict) or not listed:
        raise IntegrityError(f"{root / MANIFEST}: manifest lists no files")
    out = {}
    for name, entry in listed.items():
        if not _plain(name) or name in (MANIFEST, SIGNATURE_FILE):
            raise IntegrityError(f"{root / MANIFEST}: file entry {_short(name)} is not a plain file name")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise IntegrityError(f"{root / MANIFEST}: file entry {_short(name)} has no sha256")
        out[name] = entry["sha256"]
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def list_folder(path: str | os.PathLike[str]) -> tuple[Path, set[str]]:
    """The names of a package folder's files, refusing links, folders and oversized metadata.

    Raises:
        IntegrityError: not a folder, no manifest, or an entry that is not a plain file.
    """
    root = Path(path)
    if not root.is_dir():
        raise IntegrityError(f"{root}: not a package folder")
    mpath = root / MANIFEST
    if mpath.is_symlink():
        raise IntegrityError(f"{mpath}: manifest is a symbolic link; a package holds plain files only")
    if not mpath.is_file():
        raise IntegrityError(f"{mpath}: manifest missing")
    names: set[str] = set()
    for entry in sorted(root.iterdir()):
        if entry.is_symlink():
            raise IntegrityError(f"{entry}: is a symbolic link; a package holds plain files only")
        if entry.is_dir():
            raise IntegrityError(f"{entry}: folder not listed in the signature; a package holds plain files only")
        if not entry.is_file():
            raise IntegrityError(f"{entry}: not a plain file")
        if len(names) >= _MAX_FILES:
            raise IntegrityError(f"{root}: too many files for a package")
        if entry.name == SIGNATURE_FILE and entry.stat().st_size > _MAX_SIG_BYTES:
            raise IntegrityError(f"{entry}: signature file too large")
        if entry.name == MANIFEST and entry.stat().st_size > _MAX_MANIFEST_BYTES:
            raise IntegrityError(f"{entry}: manifest too large")
        names.add(entry.name)
    return root, names


def read_folder(path: str | os.PathLike[str]) -> tuple[Path, dict[str, bytes]]:
    """Read every file of a package folder into memory (see `list_folder` for what is refused).

    Nothing is parsed here: the caller verifies what was read, so what was verified is
    exactly what gets parsed (no second read an attacker could race).
    """
    root, names = list_folder(path)
    return root, {name: (root / name).read_bytes() for name in sorted(names)}


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, hashed from a memory map: no copy of the contents."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def verify_folder(path: str | os.PathLike[str], trust: Trust) -> tuple[Path, dict[str, Any], dict[str, bytes]]:
    """Read and verify a package folder: (root, manifest, file contents). See `verify_blobs`."""
    root, blobs = read_folder(path)
    return root, verify_blobs(root, blobs, trust), blobs


def verify_package(path: Path, keyring: Keyring | None, *, public_key: "str | os.PathLike[str] | UnsafeNoVerify | None" = None) -> dict:
    """Verify a package folder's signature, every file's digest and its manifest JSON.

    Args:
        path: the package folder.
        keyring: the workspace keyring (current and retired public keys are trusted).
        public_key: a PEM public key file to trust instead (a package from elsewhere), or
            `UnsafeNoVerify()` to skip the signature (digests are still checked).

    Returns:
        The manifest.

    Raises:
        IntegrityError: naming the first file that fails a check.
        SecurityError: nothing to verify the signature with.
    """
    _, manifest, _ = verify_folder(path, resolve_trust(keyring, public_key))
    return manifest


# ---------------------------------------------------------------------------- signing


def sign_package(path: Path, keyring: Keyring) -> None:
    """Sign a package folder in place: write `model.sig` over every other file's SHA-256.

    The manifest's listed digests must match the files (we do not sign what we cannot vouch
    for). An existing signature is replaced; the new one is written to a temporary name and
    renamed, so the folder never holds a half-written signature.

    Raises:
        IntegrityError: the folder is not a package, holds links or folders, or a file does
            not match the manifest.
    """
    root, names = list_folder(path)
    names.discard(SIGNATURE_FILE)
    digests = {n: sha256_file(root / n) for n in sorted(names)}
    manifest = parse_manifest(root, (root / MANIFEST).read_bytes())
    listed = _manifest_digests(root, manifest)
    for name in sorted(digests.keys() | listed.keys()):
        if name != MANIFEST and listed.get(name) != digests.get(name):
            raise IntegrityError(f"{root / name}: does not match the manifest; refusing to sign it")
    write_signature(root, sign_digests(digests, root.name, keyring))


def write_signature(root: Path, bundle: bytes) -> None:
    """Write `model.sig` into `root` atomically."""
    atomic_write_bytes(root / SIGNATURE_FILE, bundle)
