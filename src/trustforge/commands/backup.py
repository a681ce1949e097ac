"""`trustforge backup ...`: one encrypted, signed archive of the workspace, and its restore.

`create` needs the `backup` action, `restore` runs as the local workspace admin (an empty
workspace has no users yet). Both are written to the audit log (a restore into the restored
log). Library errors (`TrustForgeError`) propagate to the main command, which prints them
as one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Back up the registry, packages and audit log to one encrypted, signed file; restore it.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def create(file: Path = typer.Argument(..., help="the archive file to write (must not exist)")) -> None:
    """Write the registry database, every stored package and the public keys to FILE."""
    from trustforge.errors import DataError, TrustForgeError
    from trustforge.registry import Registry, create_backup
    from trustforge.secure import require

    if file.exists() or file.is_symlink():
        raise DataError(f"{file}: already exists; choose another file name")
    if not file.parent.is_dir():
        raise DataError(f"{file.parent}: folder not found (for {file.name})")
    with Registry() as reg:
        require(reg.principal, "backup", "workspace", reg.audit)
        try:
            summary = create_backup(reg.settings, file, reg.keyring)
        except TrustForgeError as exc:
            reg.audit.append(reg.principal.name, "backup", file.name, "error", {"error": str(exc)[:300]})
            raise
        reg.audit.append(reg.principal.name, "backup", file.name, "ok", {"files": summary["files"], "bytes": summary["bytes"]})
    versions = summary["tables"].get("registry_versions", 0)
    typer.echo(
        f"backup written to {file}: {versions} version(s), {summary['files']} file(s), {summary['bytes']} bytes, "
        f"signed by key {summary['key_id'][:16]}"
    )


@app.command()
def restore(file: Path = typer.Argument(..., help="an archive written by `trustforge backup create`")) -> None:
    """Verify FILE completely, then restore it into the (empty) workspace.

    The workspace needs the key-encryption key the backup was made under (TRUSTFORGE_KEK, or
    keys/kek.key put back); its signing key may be new.
    """
    from trustforge.errors import AccessDenied
    from trustforge.registry import Registry, restore_backup
    from trustforge.secure import Keyring
    from trustforge.settings import Settings

    settings = Settings.from_env()
    if settings.token:
        raise AccessDenied("a restore runs as the local workspace admin (an empty workspace has no users); unset TRUSTFORGE_TOKEN")
    keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
    summary = restore_backup(settings, file, keyring)
    with Registry(settings) as reg:
        reg.audit.append(reg.principal.name, "restore", file.name, "ok", {"files": summary["files"], "signed_by": summary["key_id"]})
    versions = summary["tables"].get("registry_versions", 0)
    typer.echo(f"restored {file}: {versions} version(s), {summary['files']} file(s); the audit log continues")
