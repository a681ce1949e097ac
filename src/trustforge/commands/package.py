"""`trustforge package ...`: verify, encrypt and decrypt package folders.

These act on folders the user names, not on the registry, so they need keys but no role.
Library errors (`TrustForgeError`) propagate to the main command, which prints them as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Verify, encrypt and decrypt model packages.", no_args_is_help=True, add_completion=False)


def _keyring(required: bool = True):
    from trustforge.secure import Keyring
    from trustforge.settings import Settings

    settings = Settings.from_env()
    if not required and not (settings.keys_dir / "signing.key").exists():
        return None
    return Keyring.load(settings.keys_dir, kek_b64=settings.kek)


def _free(dest: Path) -> Path:
    from trustforge.errors import DataError

    if dest.exists() or dest.is_symlink():
        raise DataError(f"{dest}: already exists; choose another --out")
    if not dest.parent.is_dir():
        raise DataError(f"{dest.parent}: output folder not found (for {dest.name})")
    return dest


@app.command()
def verify(
    path: Path = typer.Argument(..., help="a package folder, plain or sealed"),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="a PEM public key to verify a package signed elsewhere"),
) -> None:
    """Check the signature, then every file's SHA-256, then the manifest (sealed: in memory)."""
    from trustforge.package import read_package
    from trustforge.secure import is_sealed

    keyring = _keyring(required=public_key is None or is_sealed(path))
    pkg = read_package(path, keyring=keyring, public_key=public_key)
    m = pkg.manifest
    kind = "sealed package" if is_sealed(path) else "package"
    typer.echo(
        f"{path}: {kind} {m.get('name')!s} verified (signature and {len(m['files']) + 1} file digests, package id {m['package_id']})"
    )


@app.command()
def encrypt(
    path: Path = typer.Argument(..., help="a signed package folder"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="the sealed folder to write (default: PATH.sealed)"),
) -> None:
    """Write an encrypted copy (AES-256-GCM under a new data key wrapped by the workspace KEK).

    `trustforge keys rotate` re-wraps such a copy only when its folder is named with --include.
    """
    from trustforge.secure import seal_package

    dest = _free(out or path.with_name(path.name + ".sealed"))
    seal_package(path, dest, _keyring())
    typer.echo(f"sealed {path} into {dest}")


@app.command()
def decrypt(
    path: Path = typer.Argument(..., help="a sealed package folder"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="the plain folder to write (default: PATH without .sealed, or PATH.plain)"
    ),
) -> None:
    """Verify a sealed package in memory, then write its plain (signed) package folder."""
    from trustforge.secure import unseal_package

    default = path.with_name(path.name[: -len(".sealed")] if path.name.endswith(".sealed") else path.name + ".plain")
    dest = _free(out or default)
    unseal_package(path, dest, _keyring())
    typer.echo(f"decrypted {path} into {dest} (plaintext on disk: delete it when done)")
