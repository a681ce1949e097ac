"""The workspace keyring: one signing key pair, one key-encryption key, retired public keys.

On disk (`keys_dir`, mode 0700; every file mode 0600, written to a temporary name then renamed):

    signing.key              the ECDSA P-256 private key (PKCS#8 PEM)
    signing.pub              its public key (PEM), for handing to verifiers such as model-signing
    kek.key                  base64 of the 256-bit key-encryption key (KEK); absent when the KEK
                             comes from the environment (TRUSTFORGE_KEK, passed in as `kek_b64`)
    retired/<key_id>.pub     public keys of earlier signing keys, kept so old signatures verify
    retired/kek-<id>.key     earlier KEKs, kept only while `keys rotate` re-wraps packages, so an
                             interrupted rotation can be resumed; `purge_retired_keks` drops them
    masking.key              the workspace masking secret (256 random bits), only ever stored
                             wrapped (AES-256-GCM) by the KEK; created on first need. The keys of
                             keyed PII masking (`derive_key`) are HKDF of it, so a KEK rotation
                             re-wraps it and never changes it: hashes join and fakes unmask across
                             rotations

A key id is the SHA-256 of the public key's PEM, in hex. A KEK is named by a short hash of
the key itself (`kek_id`), stored next to every data key it wraps, so that unwrapping with
the wrong KEK says so instead of reporting corrupted data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
import uuid
from pathlib import Path
from typing import Callable

from trustforge._fs import private_dir
from trustforge.errors import SecurityError
from trustforge.secure import _primitives as P

__all__ = ["Keyring"]

_PRIVATE = "signing.key"
_PUBLIC = "signing.pub"
_KEK = "kek.key"
_RETIRED = "retired"
_WRAP_MAGIC = b"TFWK1"
_KEK_ID_BYTES = 8
_MASKING = "masking.key"
# Binds the wrapped masking secret to its use: it cannot be passed off as a package's data key.
_MASKING_AAD = b"trustforge masking secret v1"


def _kek_id(kek: bytes) -> bytes:
    # A one-way tag of a 256-bit random key: names the key without revealing anything of it.
    return hashlib.sha256(b"trustforge kek id\x00" + kek).digest()[:_KEK_ID_BYTES]


def _decode_kek(text: str | bytes, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip() if isinstance(text, (str, bytes)) else text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != P.KEY_BYTES:
        # Never echo the value: it is (meant to be) a secret.
        raise SecurityError(f"{where}: the key-encryption key must be base64 of 32 random bytes")
    return raw


def _write_secret(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 from the first byte on, atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # the umask may have narrowed it further; never wider
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_secret(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (mode 0600, complete or absent) unless `path` exists; True when written.

    Two processes creating the same secret at once: exactly one wins and the other reads its file.
    """
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    _write_secret(tmp, data)
    try:
        os.link(tmp, path)  # fails when `path` exists, unlike a rename
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: a rename, unless it appeared meanwhile
        if path.exists():
            return False
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _make_dir(path: Path) -> None:
    private_dir(path)  # 0700, and so are the parents it creates (a new workspace folder)


def _named(keys_dir: Path, path: Path | None = None) -> str:
    """How a message names the keys folder, or a file in it: `keys/masking.key`, never its local
    path. The folder is the workspace's `keys/`, so the name is unambiguous; the command line
    rewrites workspace paths in its `error:` lines, but logs and the Python API do not."""
    target = keys_dir if path is None else path
    try:
        inside = target.relative_to(keys_dir)
    except ValueError:
        return target.name
    return (Path(keys_dir.name) / inside).as_posix()


def _check_private(path: Path, keys_dir: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecurityError(f"{_named(keys_dir, path)}: mode {mode:04o} lets other users read a secret key; run chmod 600 on it")


class Keyring:
    """The workspace's keys. Build with `init`, `load` or `load_or_init`, not the constructor.

    Attributes:
        keys_dir: the folder holding the keys.
        key_id: id of the current signing key (hex SHA-256 of its public PEM).
    """

    def __init__(
        self,
        keys_dir: Path,
        signing: P.SigningKey,
        kek: bytes | None,
        *,
        kek_from_env: bool,
        retired_keks: dict[bytes, bytes] | None = None,
    ):
        self.keys_dir = Path(keys_dir)
        self._signing = signing
        self._kek = kek
        self._kek_from_env = kek_from_env
        self._retired_keks = dict(retired_keks or {})
        self._masking: bytes | None = None  # the masking secret, once opened
        self.key_id = signing.public.key_id

    def __repr__(self) -> str:  # never the keys themselves
        return f"Keyring({str(self.keys_dir)!r}, key_id={self.key_id[:16]}...)"

    # ------------------------------------------------------------------ building

    @classmethod
    def init(cls, keys_dir: Path, *, kek_b64: str | None = None, force: bool = False) -> "Keyring":
        """Create a signing key pair and (unless `kek_b64` is given or `kek.key` exists) a 256-bit KEK.

        Args:
            keys_dir: the folder for the keys (created with mode 0700).
            kek_b64: the KEK from the environment; then no `kek.key` file is written.
            force: replace existing keys. Packages sealed under the old KEK become unreadable,
                and so does the masking secret (it is replaced on first need: hashes and fakes
                made before no longer join or unmask), so this is for starting over, not for
                rotating (use `rotate`).

        Raises:
            SecurityError: keys exist already and `force` is false, or `kek_b64` is malformed.
        """
        keys_dir = Path(keys_dir)
        kek = _decode_kek(kek_b64, "TRUSTFORGE_KEK") if kek_b64 else None
        if (keys_dir / _PRIVATE).exists() and not force:
            raise SecurityError(
                f"{_named(keys_dir, keys_dir / _PRIVATE)}: keys exist already; use `trustforge keys rotate` to replace them"
            )
        _make_dir(keys_dir)
        signing = P.SigningKey.generate()
        if kek is None and (keys_dir / _KEK).is_file() and not force:
            # A KEK put back on its own (e.g. from a safe, before restoring a backup) is kept:
            # generating a new one would orphan everything sealed under it.
            _check_private(keys_dir / _KEK, keys_dir)
            kek = _decode_kek((keys_dir / _KEK).read_bytes(), _named(keys_dir, keys_dir / _KEK))
        elif kek is None:
            kek = P.new_key()
            _write_secret(keys_dir / _KEK, base64.b64encode(kek) + b"\n")
        _write_secret(keys_dir / _PRIVATE, signing.private_pem())
        _write_secret(keys_dir / _PUBLIC, signing.public.pem)
        ring = cls(keys_dir, signing, kek, kek_from_env=kek_b64 is not None)
        masking = keys_dir / _MASKING
        if force and masking.is_file() and not ring.holds_kek_for(masking.read_bytes(), current_only=True):
            masking.unlink()  # starting over: sealed under a KEK that is gone, it could never be opened again
        return ring

    @classmethod
    def load(cls, keys_dir: Path, *, kek_b64: str | None = None) -> "Keyring":
        """Load the keyring from `keys_dir`, the KEK from `kek_b64` if given, else `kek.key`.

        A keyring without any KEK still signs and verifies; wrapping or unwrapping a data key
        with it raises SecurityError.

        Raises:
            SecurityError: no signing key, an unreadable or malformed key, or a secret key
                file that other users may read.
        """
        keys_dir = Path(keys_dir)
        private = keys_dir / _PRIVATE
        if not private.is_file():
            raise SecurityError(f"{_named(keys_dir, private)}: no signing key; run `trustforge keys init`")
        _check_private(private, keys_dir)
        try:
            signing = P.SigningKey.from_pem(private.read_bytes())
        except P.CryptoFailure as exc:
            raise SecurityError(f"{_named(keys_dir, private)}: {exc}") from None
        kek = None
        if kek_b64:
            kek = _decode_kek(kek_b64, "TRUSTFORGE_KEK")
        elif (keys_dir / _KEK).is_file():
            _check_private(keys_dir / _KEK, keys_dir)
            kek = _decode_kek((keys_dir / _KEK).read_bytes(), _named(keys_dir, keys_dir / _KEK))
        retired: dict[bytes, bytes] = {}
        for path in sorted((keys_dir / _RETIRED).glob("kek-*.key")):
            _check_private(path, keys_dir)
            old = _decode_kek(path.read_bytes(), _named(keys_dir, path))
            retired[_kek_id(old)] = old
        return cls(keys_dir, signing, kek, kek_from_env=bool(kek_b64), retired_keks=retired)

    @classmethod
    def load_or_init(cls, keys_dir: Path, *, kek_b64: str | None = None) -> "Keyring":
        """`load` when a signing key exists in `keys_dir`, else `init`."""
        if (Path(keys_dir) / _PRIVATE).exists():
            return cls.load(keys_dir, kek_b64=kek_b64)
        return cls.init(keys_dir, kek_b64=kek_b64)

    def rotate(self, *, new_kek_b64: str | None = None, announce: Callable[[str], None] | None = None) -> "Keyring":
        """Replace the signing key and the KEK; return the keyring that holds the new ones.

        The old public key is kept under `retired/`, so signatures made with it still verify.
        The old KEK is kept under `retired/` too (when it came from a file) until
        `purge_retired_keks` is called after every sealed package has been re-wrapped; the
        returned keyring can unwrap data keys wrapped under either.

        The masking secret (`masking.key`) is re-wrapped under the new KEK and never changed,
        so keyed hashes and fakes made before the rotation still join and unmask.

        Args:
            new_kek_b64: the new KEK, required when the current one comes from the environment
                (we cannot change the environment; set TRUSTFORGE_KEK to it afterwards).
            announce: called with the new signing key's id once every check passed and before
                any file changes (`rotate_keys` records it in the audit log there, so no key
                comes into use unrecorded even if the process is killed right after); if it
                raises, nothing is changed.

        Raises:
            SecurityError: the KEK comes from the environment and no new one was given; or
                `masking.key` exists and cannot be opened (nothing is changed then).
        """
        if self._kek_from_env and not new_kek_b64:
            raise SecurityError("the key-encryption key comes from TRUSTFORGE_KEK; give the new one in TRUSTFORGE_NEW_KEK to rotate")
        new_kek = _decode_kek(new_kek_b64, "TRUSTFORGE_NEW_KEK") if new_kek_b64 else P.new_key()
        # Open the masking secret before anything changes: a rotation must never orphan it.
        secret = self._masking_secret(create=False) if (self.keys_dir / _MASKING).is_file() else None
        signing = P.SigningKey.generate()
        if announce is not None:
            announce(signing.public.key_id)
        retired_dir = self.keys_dir / _RETIRED
        _make_dir(retired_dir)
        # Order matters for a crash half-way: first keep what verifies and unwraps old data.
        _write_secret(retired_dir / f"{self.key_id}.pub", self._signing.public.pem)
        retired = dict(self._retired_keks)
        if self._kek is not None:
            retired[_kek_id(self._kek)] = self._kek
            if not self._kek_from_env:
                _write_secret(retired_dir / f"kek-{_kek_id(self._kek).hex()}.key", base64.b64encode(self._kek) + b"\n")
        if not new_kek_b64:
            _write_secret(self.keys_dir / _KEK, base64.b64encode(new_kek) + b"\n")
        else:  # the new KEK lives in the environment; a stale file would only mislead
            (self.keys_dir / _KEK).unlink(missing_ok=True)
        _write_secret(self.keys_dir / _PRIVATE, signing.private_pem())
        _write_secret(self.keys_dir / _PUBLIC, signing.public.pem)
        new = Keyring(self.keys_dir, signing, new_kek, kek_from_env=bool(new_kek_b64), retired_keks=retired)
        if secret is not None:
            # After the new KEK is in place; until then the old one (kept above) still opens it.
            _write_secret(self.keys_dir / _MASKING, new.wrap_key(secret, _MASKING_AAD))
            new._masking = secret
        return new

    def purge_retired_keks(self) -> int:
        """Forget earlier KEKs (after every sealed package was re-wrapped); returns how many.

        The masking secret is re-wrapped under the current KEK first if it is not already
        (a rotation interrupted before it got there), so forgetting them never orphans it.
        """
        masking = self.keys_dir / _MASKING
        if masking.is_file() and self._kek is not None and not self.holds_kek_for(masking.read_bytes(), current_only=True):
            _write_secret(masking, self.wrap_key(self._masking_secret(create=False), _MASKING_AAD))  # type: ignore[arg-type]
        paths = sorted((self.keys_dir / _RETIRED).glob("kek-*.key"))
        for path in paths:
            path.unlink()
        self._retired_keks.clear()
        return len(paths)

    # ------------------------------------------------------------------ signing

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """Sign `data` with the current key: (key_id, DER ECDSA-SHA256 signature)."""
        return self.key_id, self._signing.sign(data)

    def _public(self, key_id: str) -> P.PublicKey | None:
        if key_id == self.key_id:
            return self._signing.public
        if not (isinstance(key_id, str) and len(key_id) == 64 and all(c in "0123456789abcdef" for c in key_id)):
            return None
        path = self.keys_dir / _RETIRED / f"{key_id}.pub"
        if not path.is_file():
            return None
        try:
            key = P.load_public_key(path.read_bytes())
        except P.CryptoFailure:
            return None
        return key if key.key_id == key_id else None

    def knows(self, key_id: str) -> bool:
        """True when `key_id` is the current or a retired signing key of this workspace."""
        return self._public(key_id) is not None

    def verify(self, key_id: str, data: bytes, signature: bytes) -> bool:
        """True when `signature` over `data` verifies with key `key_id` (current or retired)."""
        key = self._public(key_id)
        return key is not None and key.verify(data, signature)

    def public_key_pem(self, key_id: str | None = None) -> bytes:
        """The PEM of the current public key, or of `key_id` (current or retired).

        Raises:
            SecurityError: no such key in this keyring.
        """
        key = self._signing.public if key_id is None else self._public(key_id)
        if key is None:
            raise SecurityError(f"{_named(self.keys_dir)}: no public key with id {str(key_id)[:64]}")
        return key.pem

    def public_key_ids(self) -> list[str]:
        """Ids of the current and every retired signing key (current first)."""
        ids = [self.key_id]
        for path in sorted((self.keys_dir / _RETIRED).glob("*.pub")):
            if path.stem != self.key_id and self._public(path.stem) is not None:
                ids.append(path.stem)
        return ids

    def add_public_key(self, pem: bytes) -> str:
        """Keep another public key on record as retired (e.g. the keys of a restored backup).

        Signatures made with it then verify, as they would after a rotation; it never signs.

        Returns:
            Its key id.

        Raises:
            SecurityError: not a PEM P-256 public key.
        """
        try:
            key = P.load_public_key(pem)
        except P.CryptoFailure as exc:
            raise SecurityError(f"{_named(self.keys_dir, self.keys_dir / _RETIRED)}: {exc}") from None
        if not self.knows(key.key_id):
            _make_dir(self.keys_dir / _RETIRED)
            _write_secret(self.keys_dir / _RETIRED / f"{key.key_id}.pub", key.pem)
        return key.key_id

    # ------------------------------------------------------------------ key wrapping

    @property
    def kek_id(self) -> str:
        """A short one-way name of the current KEK (hex); stored beside wrapped keys."""
        return _kek_id(self._require_kek()).hex()

    def _require_kek(self) -> bytes:
        if self._kek is None:
            raise SecurityError(
                f"{_named(self.keys_dir, self.keys_dir / _KEK)}: no key-encryption key; set TRUSTFORGE_KEK or run `trustforge keys init`"
            )
        return self._kek

    def derive_key(self, purpose: str) -> bytes:
        """A 256-bit key for one purpose (e.g. "pii-mask"), HKDF-SHA256 of the masking secret.

        The masking secret is 256 random bits of this workspace, stored only wrapped by the KEK
        in `masking.key` and created on first need. Deterministic: the same workspace and
        purpose give the same key (what keyed masking needs so that joins and `unmask` work
        across runs), also after `rotate` (which re-wraps the secret, never changes it);
        another purpose or another workspace gives an unrelated key.

        Raises:
            SecurityError: no KEK (the message says to set TRUSTFORGE_KEK or run `keys init`),
                or `masking.key` cannot be opened with this keyring's KEKs.
        """
        return P.derive_key(self._masking_secret(), b"trustforge masking key v2\x00" + purpose.encode())  # type: ignore[arg-type]

    def _masking_secret(self, *, create: bool = True) -> bytes | None:
        """The masking secret: opened from `masking.key`, or made (when `create`) if there is none."""
        if self._masking is not None:
            return self._masking
        path = self.keys_dir / _MASKING
        self._require_kek()
        if not path.is_file():
            if not create:
                return None
            _make_dir(self.keys_dir)
            secret = P.new_key()
            if not _create_secret(path, self.wrap_key(secret, _MASKING_AAD)):
                return self._masking_secret(create=False)  # another process made it first: use theirs
            self._masking = secret
            return secret
        _check_private(path, self.keys_dir)
        self._masking = self._open_masking(path.read_bytes(), _named(self.keys_dir, path))
        return self._masking

    def _open_masking(self, wrapped: bytes, where: str) -> bytes:
        if not self.holds_kek_for(wrapped):
            raise SecurityError(
                f"{where}: the masking secret is wrapped under another key-encryption key (wrong TRUSTFORGE_KEK or keys folder?)"
            )
        try:
            return self.unwrap_key(wrapped, _MASKING_AAD)
        except SecurityError:
            raise SecurityError(f"{where}: the masking secret failed authentication (changed, or not a masking secret)") from None

    def export_masking_secret(self) -> bytes | None:
        """The masking secret wrapped under the current KEK (for a backup); None when there is none yet."""
        secret = self._masking_secret(create=False)
        return None if secret is None else self.wrap_key(secret, _MASKING_AAD)

    def import_masking_secret(self, wrapped: bytes, *, where: str, check_only: bool = False) -> bool:
        """Take over a masking secret from `export_masking_secret` (a backup being restored).

        Args:
            wrapped: the wrapped secret; it must open with a KEK this keyring holds.
            where: what to name in errors (the archive).
            check_only: only check that it would be taken over; write nothing.

        Returns:
            True when the workspace had no masking secret and now has (or would have) this one;
            False when it holds this very one already.

        Raises:
            SecurityError: it does not open, or the workspace holds a different masking secret
                (hashes made under either would stop joining; nothing is replaced).
        """
        secret = self._open_masking(wrapped, where)
        current = self._masking_secret(create=False)
        if current is None and not check_only:
            if not _create_secret(self.keys_dir / _MASKING, self.wrap_key(secret, _MASKING_AAD)):
                current = self._masking_secret(create=False)
            else:
                self._masking = secret
                return True
        if current is None:
            return True
        if not hmac.compare_digest(current, secret):
            raise SecurityError(
                f"{where}: its masking secret differs from the one in {_named(self.keys_dir, self.keys_dir / _MASKING)}; data hashed or faked in "
                "this workspace would stop joining and unmasking. If nothing was masked here yet, remove that file and restore again"
            )
        return False

    def holds_kek_for(self, wrapped: bytes, *, current_only: bool = False) -> bool:
        """True when this keyring holds the KEK that `wrapped` names (the current one, or any)."""
        head = len(_WRAP_MAGIC) + _KEK_ID_BYTES
        if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) < head or not wrapped.startswith(_WRAP_MAGIC):
            return False
        kid = bytes(wrapped[len(_WRAP_MAGIC) : head])
        if self._kek is not None and kid == _kek_id(self._kek):
            return True
        return not current_only and kid in self._retired_keks

    def wrap_key(self, dek: bytes, aad: bytes) -> bytes:
        """Seal a data key under the current KEK with AES-256-GCM; `aad` binds it to its use."""
        kek = self._require_kek()
        kid = _kek_id(kek)
        return _WRAP_MAGIC + kid + P.seal(kek, dek, _WRAP_MAGIC + kid + aad)

    def unwrap_key(self, wrapped: bytes, aad: bytes) -> bytes:
        """Recover a data key wrapped by `wrap_key` under the current or a retired KEK.

        Raises:
            SecurityError: wrapped under a KEK this keyring does not hold, or the wrapped key
                or its associated data changed.
        """
        head = len(_WRAP_MAGIC) + _KEK_ID_BYTES
        if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) < head or not wrapped.startswith(_WRAP_MAGIC):
            raise SecurityError("the wrapped data key is malformed")
        kid = bytes(wrapped[len(_WRAP_MAGIC) : head])
        candidates = {**self._retired_keks}
        if self._kek is not None:
            candidates[_kek_id(self._kek)] = self._kek
        kek = candidates.get(kid)
        if kek is None:
            self._require_kek()
            raise SecurityError("the data key was wrapped under another key-encryption key (wrong TRUSTFORGE_KEK or keys folder?)")
        try:
            dek = P.open_sealed_bytes(kek, bytes(wrapped[head:]), bytes(wrapped[:head]) + aad)
        except P.CryptoFailure:
            raise SecurityError("the wrapped data key failed authentication (changed, or moved from another package)") from None
        if len(dek) != P.KEY_BYTES:
            raise SecurityError("the wrapped data key is malformed")
        return dek
