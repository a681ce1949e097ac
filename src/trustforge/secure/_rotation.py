"""Key rotation: a new signing key and key-encryption key, and every sealed package re-wrapped.

`rotate_keys` is the whole recipe behind `trustforge keys rotate`: check that the principal
may act on `keys`, rotate the keyring (the old public key stays in `keys/retired/` so old
signatures still verify), re-wrap the data key of every sealed package under the given
folders under the new key-encryption key (no payload is re-encrypted), forget the old
key-encryption key only when every package was re-wrapped, and write the outcome to the
audit log either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from trustforge.errors import SecurityError
from trustforge.secure._access import Principal, require
from trustforge.secure._audit import AuditLog
from trustforge.secure._envelope import rewrap_all
from trustforge.secure._keys import Keyring

__all__ = ["KeyRotation", "rotate_keys"]


@dataclass(frozen=True)
class KeyRotation:
    """What `rotate_keys` did.

    Attributes:
        keyring: the keyring holding the new keys.
        rewrapped: how many sealed packages now have their data key under the new KEK.
        kek_from_env: the new KEK was given in the environment (the caller must tell the user
            to set TRUSTFORGE_KEK to it).
    """

    keyring: Keyring
    rewrapped: int
    kek_from_env: bool


def rotate_keys(
    keyring: Keyring, sealed_roots: Iterable[Path], *, principal: Principal, audit: AuditLog, new_kek_b64: str | None = None
) -> KeyRotation:
    """Replace the signing key and the KEK, and re-wrap every sealed package under `sealed_roots`.

    Args:
        keyring: the workspace keyring now in use.
        sealed_roots: folders searched (recursively) for sealed packages: the registry's artifact
            store and any folder holding packages sealed elsewhere (`package encrypt`). A sealed
            package outside them stays sealed under the old KEK, which is then forgotten.
        principal: who rotates; needs the `keys` action (admin).
        audit: the audit log the outcome is appended to.
        new_kek_b64: the new KEK (base64) when the current one comes from the environment.

    Raises:
        AccessDenied: the principal may not manage keys (the denial is audited).
        SecurityError: the KEK comes from the environment and no new one was given; or some
            packages could not be re-wrapped (audited; the old KEK stays in `keys/retired/`,
            so rotating again finishes the job).
    """
    require(principal, "keys", "keys", audit)
    new = keyring.rotate(new_kek_b64=new_kek_b64)
    count, failures = 0, []
    for root in sealed_roots:
        done, failed = rewrap_all(Path(root), keyring, new)
        count, failures = count + done, failures + failed
    if failures:
        audit.append(principal.name, "keys", "keys", "error", {"rotate": True, "rewrapped": count, "failed": len(failures)})
        raise SecurityError(
            f"{len(failures)} sealed package(s) could not be re-wrapped (first: {failures[0]}); the old key-encryption "
            "key stays in keys/retired/ so that `trustforge keys rotate` can be run again"
        )
    new.purge_retired_keks()
    audit.append(principal.name, "keys", "keys", "ok", {"rotate": True, "key_id": new.key_id, "rewrapped": count})
    return KeyRotation(new, count, bool(new_kek_b64))
