"""Key rotation: a new signing key and key-encryption key, and every sealed package re-wrapped.

`rotate_keys` is the whole recipe behind `trustforge keys rotate`: check that the principal
may act on `keys`, record the start of the rotation and the new signing key's id in the audit
log (signed with the old key, before any key file changes), rotate the keyring (the old public key stays in `keys/retired/` so old
signatures still verify), re-wrap the data key of every sealed package under the given
folders under the new key-encryption key, forget the old key-encryption key only when every
package was done, and write the outcome to the audit log either way.

Re-wrapping leaves each payload under its old data key: anyone who kept the old KEK and an
old copy of a package's `sealed.json` can still decrypt it. With `reencrypt=True`
(`keys rotate --reencrypt`) every sealed file is sealed again under a new data key instead
(`reencrypt_sealed`, crash-safe), so nothing from before the rotation opens today's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from trustforge._shown import recorded
from trustforge.errors import SecurityError
from trustforge.secure._access import Principal, require
from trustforge.secure._audit import AuditLog
from trustforge.secure._envelope import reencrypt_all, rewrap_all
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
        reencrypted: the packages were sealed again under new data keys (else only re-wrapped:
            their old data keys still open them).
    """

    keyring: Keyring
    rewrapped: int
    kek_from_env: bool
    reencrypted: bool = False


def rotate_keys(
    keyring: Keyring,
    sealed_roots: Iterable[Path],
    *,
    principal: Principal,
    audit: AuditLog,
    new_kek_b64: str | None = None,
    reencrypt: bool = False,
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
        reencrypt: seal every file again under a new data key (`reencrypt_sealed`), so the
            old KEK with an old `sealed.json` opens nothing; else re-wrap the data keys only.

    Raises:
        AccessDenied: the principal may not manage keys (the denial is audited).
        SecurityError: the KEK comes from the environment and no new one was given; or some
            packages could not be re-wrapped (audited; the old KEK stays in `keys/retired/`,
            so rotating again finishes the job).
    """
    require(principal, "keys", "keys", audit)
    started: list[str] = []

    def announce(key_id: str) -> None:
        # Signed with the key in use now, before the new one is written: a rotation killed at
        # any later point leaves the new key on record (rerunning rotates again, also recorded).
        audit.append(
            principal.name,
            "keys",
            "keys",
            "ok",
            {"rotate": "started", "key_id": key_id, "previous_key_id": keyring.key_id, "reencrypt": reencrypt},
        )
        started.append(key_id)

    try:
        new = keyring.rotate(new_kek_b64=new_kek_b64, announce=announce)
    except Exception as exc:
        if started:  # the key files may be half changed: on the record too
            audit.append(
                principal.name,
                "keys",
                "keys",
                "error",
                {"rotate": True, "key_id": started[0], "error": recorded(exc, home=keyring.keys_dir.parent)},
            )
        raise
    count, failures = 0, []
    each = reencrypt_all if reencrypt else rewrap_all
    for root in sealed_roots:
        done, failed = each(Path(root), keyring, new)
        count, failures = count + done, failures + failed
    what = "re-encrypted" if reencrypt else "re-wrapped"
    tally = {"reencrypted": count} if reencrypt else {"rewrapped": count}
    if failures:
        audit.append(principal.name, "keys", "keys", "error", {"rotate": True, **tally, "failed": len(failures)})
        flag = " --reencrypt" if reencrypt else ""
        raise SecurityError(
            f"{len(failures)} sealed package(s) could not be {what} (first: {failures[0]}); the old key-encryption "
            f"key stays in keys/retired/ so that `trustforge keys rotate{flag}` can be run again"
        )
    new.purge_retired_keks()
    audit.append(principal.name, "keys", "keys", "ok", {"rotate": True, "key_id": new.key_id, **tally})
    return KeyRotation(new, count, bool(new_kek_b64), reencrypt)
