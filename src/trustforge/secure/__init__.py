"""Security recipes: keys, package signatures, envelope encryption, access control, audit log.

This package knows no ML and no HTTP: it seals, signs, checks and logs bytes and records.
Callers get recipes (`sign_package`, `seal_package`, `open_sealed`, `rotate_keys`,
`write_sealed_archive`, ...); nonces, modes and key sizes are never parameters, and the
cryptographic primitives stay in `_primitives`. Other packages import from here only.
"""

from trustforge.secure import _access, _audit
from trustforge.secure._access import ACTIONS, POLICY, ROLES, AccessStore, Principal, allowed, require, validate_name
from trustforge.secure._archive import ARCHIVE_FORMAT, ARCHIVE_VERSION, open_sealed_archive, public_key_id, write_sealed_archive
from trustforge.secure._audit import WITNESS_FILE as AUDIT_WITNESS_FILE
from trustforge.secure._audit import AuditLog, AuditReport
from trustforge.secure._envelope import is_sealed, open_sealed, rewrap_all, rewrap_sealed, seal_package, unseal_package
from trustforge.secure._keys import Keyring
from trustforge.secure._rotation import KeyRotation, rotate_keys
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
    "Principal",
    "AccessStore",
    "require",
    "validate_name",
    "AuditLog",
    "AuditReport",
    "AUDIT_WITNESS_FILE",
    "METADATA",
    "write_sealed_archive",
    "open_sealed_archive",
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "public_key_id",
]

# The tables this package keeps in the workspace database (users and tokens, the audit log), for
# the registry to create, back up and restore with its own.
METADATA = (_access.metadata, _audit.metadata)
