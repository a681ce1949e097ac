"""Security recipes: keys, package signatures, envelope encryption, access control, audit log.

This package knows no ML and no HTTP: it seals, signs, checks and logs bytes and records.
Callers get recipes (`sign_package`, `seal_package`, `open_sealed`, `rotate_keys`,
`write_sealed_archive`, ...); nonces, modes and key sizes are never parameters, and the
cryptographic primitives stay in `_primitives`. Other packages import from here only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustforge.secure._archive import (
    ARCHIVE_FORMAT,
    ARCHIVE_VERSION,
    archive_verifier,
    open_sealed_archive,
    public_key_id,
    write_sealed_archive,
)
from trustforge.secure._envelope import is_sealed, open_sealed, rewrap_all, rewrap_sealed, seal_package, unseal_package
from trustforge.secure._keys import Keyring
from trustforge.secure._signing import (
    SIGNATURE_FILE,
    Trust,
    UnsafeNoVerify,
    parse_manifest,
    resolve_trust,
    sign_digests,
    sign_package,
    verify_blobs,
    verify_folder,
    verify_package,
)

if TYPE_CHECKING:
    from trustforge.secure._access import (
        ACTIONS,
        POLICY,
        ROLES,
        SEALED_MARKER,
        AccessStore,
        Principal,
        allowed,
        local_admin,
        require,
        validate_name,
    )
    from trustforge.secure._audit import GENESIS as AUDIT_GENESIS
    from trustforge.secure._audit import WITNESS_FILE as AUDIT_WITNESS_FILE
    from trustforge.secure._audit import AuditLog, AuditReport
    from trustforge.secure._audit import verify_rows as verify_audit_rows
    from trustforge.secure._rotation import KeyRotation, rotate_keys

# Access control and the audit log keep their records in the workspace database (SQLAlchemy):
# imported on first use, so checking a package's signature does not load a database toolkit.
_LAZY = {
    "ACTIONS": ("trustforge.secure._access", "ACTIONS"),
    "POLICY": ("trustforge.secure._access", "POLICY"),
    "ROLES": ("trustforge.secure._access", "ROLES"),
    "AccessStore": ("trustforge.secure._access", "AccessStore"),
    "SEALED_MARKER": ("trustforge.secure._access", "SEALED_MARKER"),
    "Principal": ("trustforge.secure._access", "Principal"),
    "allowed": ("trustforge.secure._access", "allowed"),
    "local_admin": ("trustforge.secure._access", "local_admin"),
    "require": ("trustforge.secure._access", "require"),
    "validate_name": ("trustforge.secure._access", "validate_name"),
    "AuditLog": ("trustforge.secure._audit", "AuditLog"),
    "AuditReport": ("trustforge.secure._audit", "AuditReport"),
    "AUDIT_WITNESS_FILE": ("trustforge.secure._audit", "WITNESS_FILE"),
    "AUDIT_GENESIS": ("trustforge.secure._audit", "GENESIS"),
    "verify_audit_rows": ("trustforge.secure._audit", "verify_rows"),
    "KeyRotation": ("trustforge.secure._rotation", "KeyRotation"),
    "rotate_keys": ("trustforge.secure._rotation", "rotate_keys"),
}

__all__ = [
    "Keyring",
    "rotate_keys",
    "KeyRotation",
    "sign_package",
    "verify_package",
    "sign_digests",
    "verify_folder",
    "verify_blobs",
    "parse_manifest",
    "resolve_trust",
    "Trust",
    "UnsafeNoVerify",
    "SIGNATURE_FILE",
    "seal_package",
    "open_sealed",
    "unseal_package",
    "rewrap_sealed",
    "rewrap_all",
    "is_sealed",
    "ROLES",
    "ACTIONS",
    "POLICY",
    "allowed",
    "local_admin",
    "Principal",
    "AccessStore",
    "SEALED_MARKER",
    "require",
    "validate_name",
    "AuditLog",
    "AuditReport",
    "AUDIT_WITNESS_FILE",
    "AUDIT_GENESIS",
    "verify_audit_rows",
    "METADATA",
    "write_sealed_archive",
    "open_sealed_archive",
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "public_key_id",
    "archive_verifier",
]


def __getattr__(name: str) -> Any:
    if name == "METADATA":
        # The tables this package keeps in the workspace database (users and tokens, the audit
        # log), for the registry to create, back up and restore with its own.
        from trustforge.secure import _access, _audit

        value: Any = (_access.metadata, _audit.metadata)
    elif name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
    else:
        raise AttributeError(f"module 'trustforge.secure' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
