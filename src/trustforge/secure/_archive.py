"""The sealed archive: one file holding a payload encrypted and signed under the workspace keys.

The recipe behind `trustforge backup` (the registry decides what goes in; this module how it is
sealed). On disk:

    TFBACKUP1\\n
    header\\n        one line of JSON: format, time, the signing key's id and public key, the
                    data key wrapped by the key-encryption key (KEK), the ciphertext's size and
                    SHA-256, and an ECDSA signature over all of that
    ciphertext      the payload sealed with AES-256-GCM under the data key (the header's
                    signed fields are its associated data)

`open_sealed_archive` checks the signature, the ciphertext's digest, the data key and the
decryption before it returns anything. The signature must verify with a key the reader trusts:
one the keyring already knows (current or retired) or the public key the operator hands in
(`trusted_key`), never the public key the header carries (anyone can put their own there). The
KEK only keeps the contents secret: whoever holds it (a CI job, say) can seal an archive, so
holding it proves nothing about who made one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mmap
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from trustforge._fs import atomic_write_bytes
from trustforge.errors import DataError, IntegrityError, SecurityError
from trustforge.secure import _primitives as P
from trustforge.secure._keys import Keyring

__all__ = ["ARCHIVE_FORMAT", "ARCHIVE_VERSION", "write_sealed_archive", "open_sealed_archive", "public_key_id", "archive_verifier"]

# The format names say "backup": archives written before this module existed must still open.
ARCHIVE_FORMAT = "trustforge.backup"
ARCHIVE_VERSION = 1
_MAGIC = b"TFBACKUP1\n"
_MAX_HEADER = 1 << 20
_SIGNED = ("format", "format_version", "created", "key_id", "public_key", "chunk_size", "payload_size", "payload_sha256", "wrapped_key")
_BOUND = ("format", "format_version", "created", "key_id", "chunk_size")


def public_key_id(pem: bytes) -> str:
    """The key id (SHA-256 of the PEM) of a public key; SecurityError when `pem` is not one."""
    try:
        return P.load_public_key(pem).key_id
    except P.CryptoFailure:
        raise SecurityError("not a public key (PEM)") from None


def archive_verifier(keyring: Keyring, pems: Iterable[bytes]) -> Callable[[str, bytes, bytes], bool]:
    """A signature check by the keyring's keys or by `pems`, the public keys an archive carries
    (for its audit log's signed head and checkpoints, checked before a restore adds those keys).

    Raises:
        SecurityError: one of `pems` is not a public key.
    """
    carried = {}
    for pem in pems:
        try:
            key = P.load_public_key(pem)
        except P.CryptoFailure:
            raise SecurityError("not a public key (PEM)") from None
        carried[key.key_id] = key

    def verify(key_id: str, data: bytes, signature: bytes) -> bool:
        key = carried.get(key_id)
        return key.verify(data, signature) if key is not None else keyring.verify(key_id, data, signature)

    return verify


def _canonical(header: dict[str, Any], keys: tuple[str, ...]) -> bytes:
    return json.dumps({k: header[k] for k in keys}, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_sealed_archive(dest: Path, payload: bytes, keyring: Keyring) -> None:
    """Seal `payload` (a tar archive) under a fresh data key, sign the header, write `dest` atomically (mode 0600)."""
    dek = P.new_key()
    header: dict[str, Any] = {
        "format": ARCHIVE_FORMAT,
        "format_version": ARCHIVE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "key_id": keyring.key_id,
        "public_key": keyring.public_key_pem().decode("ascii"),
        "chunk_size": P.CHUNK,
    }
    aad = b"trustforge.backup.v1 payload\x00" + _canonical(header, _BOUND)
    header["wrapped_key"] = base64.b64encode(
        keyring.wrap_key(dek, b"trustforge.backup.v1 data key\x00" + _canonical(header, _BOUND))
    ).decode("ascii")
    size = P.sealed_size(len(payload), P.CHUNK)
    sealed = bytearray(size)
    P.seal_into(dek, payload, aad, sealed, P.CHUNK)
    header["payload_size"] = size
    header["payload_sha256"] = hashlib.sha256(sealed).hexdigest()
    key_id, signature = keyring.sign(b"trustforge.backup.v1 header\x00" + _canonical(header, _SIGNED))
    header["signature"] = base64.b64encode(signature).decode("ascii")
    # Never over a file: one made since the caller checked is kept, and this write fails.
    atomic_write_bytes(
        dest, b"".join([_MAGIC, json.dumps(header, sort_keys=True).encode("ascii") + b"\n", sealed]), mode=0o600, replace=False
    )


def open_sealed_archive(src: Path, keyring: Keyring, *, trusted_key: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    """Verify and decrypt an archive: (header, tar bytes). Nothing is written.

    Args:
        src: the archive file.
        keyring: the reader's keys: its KEK opens the archive; its current and retired public
            keys are trusted signers.
        trusted_key: a PEM public key the operator trusts as the signer (e.g. the source
            workspace's, from `trustforge keys export`); the archive must be signed by it.

    Raises:
        DataError: naming `src`, when there is no such file.
        IntegrityError: naming `src`, for any change to the file.
        SecurityError: naming `src`, when it was signed by a key neither the keyring nor
            `trusted_key` is, by another key than `trusted_key`, or made under a KEK this
            keyring lacks; or `trusted_key` is not a public key.
    """
    trusted = None
    if trusted_key is not None:
        try:
            trusted = P.load_public_key(trusted_key)
        except (P.CryptoFailure, TypeError, ValueError):
            raise SecurityError("the trusted key is not a PEM public key (export one with `trustforge keys export`)") from None

    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"{src}: {why}")

    if not src.exists():
        raise DataError(f"{src}: file not found")
    if not src.is_file():
        raise bad("not a backup file (not a regular file)")
    with open(src, "rb") as f:
        if os.fstat(f.fileno()).st_size < len(_MAGIC) + 2:
            raise bad("not a TrustForge backup")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[: len(_MAGIC)] != _MAGIC:
                raise bad("not a TrustForge backup")
            end = data.find(b"\n", len(_MAGIC), len(_MAGIC) + _MAX_HEADER)
            if end < 0:
                raise bad("header missing or too long")
            header = _parse_header(src, bytes(data[len(_MAGIC) : end]))
            _check_signature(src, header, keyring, trusted)
            payload = memoryview(data)[end + 1 :]
            try:
                if len(payload) != header["payload_size"] or hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
                    raise bad("the encrypted contents do not match the signed header (file changed or truncated)")
                dek = _unwrap(src, header, keyring)
                aad = b"trustforge.backup.v1 payload\x00" + _canonical(header, _BOUND)
                try:
                    tar = P.open_stream(dek, payload, aad, header["chunk_size"])
                except P.CryptoFailure:
                    raise bad("the encrypted contents failed authentication") from None
            finally:
                payload.release()
    return header, tar


def _parse_header(src: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("ascii"))
        ok = (
            isinstance(header, dict)
            and header.get("format") == ARCHIVE_FORMAT
            and header.get("format_version") == ARCHIVE_VERSION
            and all(k in header for k in (*_SIGNED, "signature"))
            and isinstance(header["chunk_size"], int)
            and 1 << 10 <= header["chunk_size"] <= P.CHUNK
            and isinstance(header["payload_size"], int)
            and isinstance(header["key_id"], str)
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        ok = False
    if not ok:
        raise IntegrityError(f"{src}: not a TrustForge backup header")
    return header


def _check_signature(src: Path, header: dict[str, Any], keyring: Keyring, trusted: P.PublicKey | None) -> None:
    """The header's signature, by the operator's `trusted` key if given, else by a key this keyring knows.

    The public key the header carries is never used: it is the forger's key in a forged
    archive. Restoring into a workspace that does not know the source's key therefore needs
    the operator to hand that key in.
    """
    try:
        signature = base64.b64decode(header["signature"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise IntegrityError(f"{src}: the header's signature is malformed") from None
    message = b"trustforge.backup.v1 header\x00" + _canonical(header, _SIGNED)
    key_id = header["key_id"]
    if trusted is not None:
        if key_id != trusted.key_id:
            raise SecurityError(
                f"{src}: signed by key {str(key_id)[:16]}, not by the trusted key {trusted.key_id[:16]}; nothing was restored"
            )
        ok = trusted.verify(message, signature)
    elif keyring.knows(key_id):
        ok = keyring.verify(key_id, message, signature)
    else:
        raise SecurityError(
            f"{src}: signed by key {str(key_id)[:16]}, which this workspace does not trust; if you trust it, give the source "
            "workspace's public key with --trusted-key PEM (`trustforge keys export` there)"
        )
    if not ok:
        raise IntegrityError(f"{src}: the signature does not verify (file changed)")


def _unwrap(src: Path, header: dict[str, Any], keyring: Keyring) -> bytes:
    try:
        wrapped = base64.b64decode(header["wrapped_key"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise IntegrityError(f"{src}: the wrapped data key is malformed") from None
    if not keyring.holds_kek_for(wrapped):
        raise SecurityError(f"{src}: made under another key-encryption key (set TRUSTFORGE_KEK, or put kek.key back, to the workspace's)")
    try:
        return keyring.unwrap_key(wrapped, b"trustforge.backup.v1 data key\x00" + _canonical(header, _BOUND))
    except SecurityError:
        raise IntegrityError(f"{src}: the wrapped data key failed authentication (file changed)") from None
