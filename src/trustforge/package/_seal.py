"""Sealed run folders: the run's package kept encrypted, as the registry keeps its copy.

A run folder holds the one plaintext copy of the weights at rest (`package/`, and the
resume checkpoint). With `data.protect.seal_run` (or `TRUSTFORGE_SEAL_RUNS=1`), once the run
is complete its package is replaced by a sealed one (AES-256-GCM under a data key wrapped by
the workspace KEK; `secure.seal_package`), which `Model.load`, `trustforge predict`,
`evaluate`, `serve` and `package verify` read as they read a plain one, decrypting in memory
only; and the checkpoint, needed only to resume an unfinished run, is removed. `keys rotate`
re-wraps sealed run packages with the registry's.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from trustforge._fs import fsync_path
from trustforge.secure import Keyring, is_sealed, seal_package

__all__ = ["seal_run_package"]

_CHECKPOINTS = "checkpoints"


def seal_run_package(run_dir: Path, keyring: Keyring) -> Path:
    """Replace `run_dir/package` by its sealed form and remove the run's checkpoint.

    The sealed copy is written beside the plain one and checked complete (`seal_package`
    verifies the signature first) before the plain folder is removed, so a failure leaves the
    plain package as it was. An already sealed package is left as it is.

    Returns:
        The package folder (now sealed).

    Raises:
        IntegrityError: the package is not one this workspace signed.
        SecurityError: the keyring holds no key-encryption key.
    """
    package = Path(run_dir) / "package"
    if not is_sealed(package):
        tag = uuid.uuid4().hex[:8]
        sealed, plain = package.with_name(f".package.sealed-{tag}"), package.with_name(f".package.plain-{tag}")
        seal_package(package, sealed, keyring)
        os.replace(package, plain)
        os.replace(sealed, package)
        fsync_path(package.parent)
        shutil.rmtree(plain, ignore_errors=True)
    shutil.rmtree(Path(run_dir) / _CHECKPOINTS, ignore_errors=True)  # the last epoch's weights, in plaintext
    return package
