"""The one module that touches `cryptography` primitives; everything else uses these recipes.

Choices made once, here, and never parameters (pyca/cryptography's advice, DESIGN §7.5):

- symmetric: AES-256-GCM with a fresh random 96-bit nonce for every message, stored in front
  of the ciphertext; callers pass a key, the bytes and the associated data, never a nonce.
- large payloads: split into chunks of `CHUNK` bytes, each its own GCM message with its own
  nonce, and with the chunk's index and a "last chunk" flag in its associated data, so chunks
  cannot be reordered, dropped or the file truncated at a chunk boundary without detection
  (one GCM message is limited in length).
- signing: ECDSA on P-256 with SHA-256 (DER signatures). The OpenSSF `model-signing` tool
  verifies key-signed models with elliptic-curve keys only (not Ed25519), so this is the
  curve that lets its own verifier accept our packages.
- key wrapping: the data key sealed with AES-256-GCM under the key-encryption key.

Failures surface as `CryptoFailure` (a plain ValueError); the callers turn it into the
user-facing error that names the file, so this module never sees a path or a secret's name.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CryptoFailure",
    "KEY_BYTES",
    "CHUNK",
    "new_key",
    "seal",
    "open_sealed_bytes",
    "seal_into",
    "open_stream",
    "sealed_size",
    "SigningKey",
    "load_public_key",
    "public_key_id",
    "derive_key",
]

KEY_BYTES = 32  # AES-256
_NONCE = 12  # 96-bit GCM nonce, random per message
_TAG = 16
OVERHEAD = _NONCE + _TAG
# Plaintext bytes per GCM message in a sealed file. One message must stay under 2 GiB (the
# library's limit); at 1 GiB nearly every file is one message, which decrypts straight into
# the `bytes` that safetensors needs, without a copy.
CHUNK = 1 << 30


class CryptoFailure(ValueError):
    """Authentication or decoding failed; the caller names what failed."""


def new_key() -> bytes:
    """A fresh random 256-bit key (a data key or a key-encryption key)."""
    return AESGCM.generate_key(bit_length=256)


def derive_key(secret: bytes, label: bytes) -> bytes:
    """A 256-bit key for one purpose, derived from `secret` with HKDF-SHA256 (no salt; `label` is the info)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label).derive(secret)


def _aead(key: bytes) -> AESGCM:
    if len(key) != KEY_BYTES:
        raise CryptoFailure("key must be 32 bytes")
    return AESGCM(key)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """One AES-256-GCM message: nonce ‖ ciphertext ‖ tag. For small values (keys, headers)."""
    nonce = os.urandom(_NONCE)
    return nonce + _aead(key).encrypt(nonce, plaintext, aad)


def open_sealed_bytes(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of `seal`.

    Raises:
        CryptoFailure: wrong key, wrong associated data, or changed bytes.
    """
    if len(blob) < OVERHEAD:
        raise CryptoFailure("too short to be sealed")
    try:
        return _aead(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
    except InvalidTag:
        raise CryptoFailure("authentication failed") from None


def _chunk_aad(aad: bytes, index: int, last: bool) -> bytes:
    return aad + struct.pack(">QB", index, 1 if last else 0)


def sealed_size(n: int, chunk: int = CHUNK) -> int:
    """Length of the `seal_into` output for `n` plaintext bytes (an empty input is one chunk)."""
    chunks = max(1, -(-n // chunk))
    return n + chunks * OVERHEAD


def seal_into(
    key: bytes, data: bytes | bytearray | memoryview | mmap.mmap, aad: bytes, out: memoryview | mmap.mmap | bytearray, chunk: int = CHUNK
) -> None:
    """Seal `data` into `out` (exactly `sealed_size(len(data), chunk)` bytes) as GCM messages.

    Each message covers at most `chunk` bytes and is nonce ‖ ciphertext ‖ tag; it
    authenticates `aad`, its index and whether it is the last one. With `data` and `out`
    memory maps of the source and destination files, the ciphertext goes straight into the
    destination's pages: no intermediate buffer, no copy (this is where the time goes on
    hundreds of MB). Every view is released before this returns or raises.
    """
    gcm = _aead(key)
    with memoryview(data) as raw, raw.cast("B") as view, memoryview(out) as rawout, rawout.cast("B") as dst:
        n = len(view)
        if len(dst) != sealed_size(n, chunk):
            raise CryptoFailure("output buffer has the wrong size")
        starts = range(0, n, chunk) if n else range(0, 1)
        pos = 0
        for i, start in enumerate(starts):
            nonce = os.urandom(_NONCE)
            dst[pos : pos + _NONCE] = nonce
            pos += _NONCE
            with view[start : start + chunk] as piece, dst[pos : pos + len(piece) + _TAG] as target:
                gcm.encrypt_into(nonce, piece, _chunk_aad(aad, i, start == starts[-1]), target)
                pos += len(target)


def open_stream(key: bytes, blob: bytes | bytearray | memoryview | mmap.mmap, aad: bytes, chunk: int = CHUNK) -> bytes:
    """Inverse of `seal_into`: the plaintext as one `bytes` object.

    A file of one chunk (up to `CHUNK` bytes, so nearly every file) decrypts straight into
    its final `bytes`, with no copy in between. Every view of `blob` is released before this
    returns or raises.

    Raises:
        CryptoFailure: a wrong key or associated data, a changed, reordered, dropped or
            truncated chunk.
    """
    gcm = _aead(key)
    parts: list[bytes] = []
    failed = False
    with memoryview(blob) as raw, raw.cast("B") as src:
        total = len(src)
        full = chunk + OVERHEAD
        chunks = max(1, -(-total // full))
        failed = total < OVERHEAD or total - (chunks - 1) * full < OVERHEAD
        for i in range(chunks if not failed else 0):
            pos = i * full
            with src[pos : min(pos + full, total)] as piece, piece[_NONCE:] as body:
                try:
                    parts.append(gcm.decrypt(bytes(piece[:_NONCE]), body, _chunk_aad(aad, i, i == chunks - 1)))
                except InvalidTag:
                    failed = True
                    break
    if failed:  # raised outside the `with`, so no traceback keeps a view of `blob` alive
        raise CryptoFailure("authentication failed or truncated")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def public_key_id(public_pem: bytes) -> str:
    """The id of a public key: SHA-256 of its PEM (SubjectPublicKeyInfo), in hex.

    It is the same value `model-signing` puts in a bundle's `publicKey.hint`, so a bundle
    names the key that verifies it in a form both tools understand.
    """
    return hashlib.sha256(public_pem).hexdigest()


class PublicKey:
    """An ECDSA P-256 public key that verifies signatures."""

    def __init__(self, key: ec.EllipticCurvePublicKey):
        self._key = key

    @property
    def pem(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def key_id(self) -> str:
        return public_key_id(self.pem)

    def verify(self, data: bytes, signature: bytes) -> bool:
        """True when `signature` (DER) is this key's ECDSA-SHA256 signature of `data`."""
        try:
            self._key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def load_public_key(pem: bytes) -> PublicKey:
    """Parse a PEM public key; only P-256 keys are accepted.

    Raises:
        CryptoFailure: not a PEM public key, or another algorithm or curve.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise CryptoFailure("not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CryptoFailure("not an ECDSA P-256 public key")
    return PublicKey(key)


class SigningKey:
    """An ECDSA P-256 private key: signs bytes, exports PEM."""

    def __init__(self, key: ec.EllipticCurvePrivateKey):
        self._key = key

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: bytes) -> "SigningKey":
        """Parse an unencrypted PKCS#8 PEM private key.

        Raises:
            CryptoFailure: not such a key, or not P-256.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise CryptoFailure("not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise CryptoFailure("not an ECDSA P-256 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @property
    def public(self) -> PublicKey:
        return PublicKey(self._key.public_key())

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 signature of `data`, DER-encoded."""
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
