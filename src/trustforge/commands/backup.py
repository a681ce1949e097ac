"""`trustforge backup ...`: one encrypted, signed archive of the workspace, and its restore.

`create` needs the `backup` action, `restore` runs as the local workspace admin (an empty
workspace has no users yet). Both are written to the audit log (a restore into the restored
log, in the restore's own transaction). Under the CLI a SIGTERM during a restore is raised like
Ctrl-C, so a half-written restore is undone. Library errors (`TrustForgeError`) propagate to the main command, which prints them
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
    from trustforge._shown import recorded
    from trustforge.commands import output_file
    from trustforge.errors import IntegrityError, TrustForgeError
    from trustforge.registry import Registry, create_backup
    from trustforge.secure import require

    if str(file) == "-":  # `keys export -` prints; an archive is binary and is never written to a terminal
        from trustforge.errors import UsageError

        raise UsageError("FILE -: backup create writes an archive file, not standard output; give a file path")
    output_file(file, "FILE", replace=False)
    with Registry() as reg:
        require(reg.principal, "backup", "workspace", reg.audit)
        try:
            report = reg.audit.verify()  # the whole log with its copies outside the database (the archive checks its rows)
            if not report.ok:
                raise IntegrityError(
                    f"the audit log does not verify: entry {report.first_bad}: {report.problem}; not backed up (the backup's "
                    "signature would vouch for that history): investigate with `trustforge audit verify`"
                )
            summary = create_backup(reg.settings, file, reg.keyring)
        except TrustForgeError as exc:
            try:
                reg.audit.append(reg.principal.name, "backup", file.name, "error", {"error": recorded(exc, home=reg.settings.home)})
            except TrustForgeError:
                pass  # a log that refuses entries (tampered with) is what `exc` reports: say that, not this
            raise
        reg.audit.append(reg.principal.name, "backup", file.name, "ok", {"files": summary["files"], "bytes": summary["bytes"]})
    versions = summary["tables"].get("registry_versions", 0)
    typer.echo(
        f"backup written to {file}: {versions} version(s), {summary['files']} package file(s), {summary['bytes']} bytes, "
        f"signed by key {summary['key_id'][:16]}"
    )


@app.command()
def restore(
    file: Path = typer.Argument(..., help="an archive written by `trustforge backup create`"),
    trusted_key: Path | None = typer.Option(
        None,
        "--trusted-key",
        help="PEM public key of the workspace that made FILE (`trustforge keys export` there); required unless this "
        "workspace's keys already include the key that signed it (always, for a new workspace)",
    ),
    accept_new_keys: bool = typer.Option(
        False, "--accept-new-keys", help="trust the archive's public keys this workspace does not know (listed when refused)"
    ),
    accept_admins: bool = typer.Option(False, "--accept-admins", help="restore the archive's admin users (listed when refused)"),
    accept_shorter_audit: bool = typer.Option(
        False,
        "--accept-shorter-audit",
        help="restore an audit log shorter than the one this workspace's audit head file recorded (the newer entries are lost)",
    ),
) -> None:
    """Verify FILE completely, then restore it into the (empty) workspace.

    The workspace needs the key-encryption key the backup was made under (TRUSTFORGE_KEK, or
    keys/kek.key put back), but the KEK alone is not trust: FILE must be signed by a key this
    workspace already knows or by --trusted-key. Signing keys it does not know yet, admin users
    and a shorter audit history are listed and refused unless accepted with --accept-new-keys,
    --accept-admins and --accept-shorter-audit.
    """
    from trustforge.errors import AccessDenied, DataError, SecurityError
    from trustforge.registry import restore_backup
    from trustforge.secure import Keyring, public_key_id
    from trustforge.settings import Settings

    settings = Settings.from_env()
    if settings.token:
        raise AccessDenied("a restore runs as the local workspace admin (an empty workspace has no users); unset TRUSTFORGE_TOKEN")
    if not file.exists():
        raise DataError(f"{file}: file not found")
    pem = None
    if trusted_key is not None:
        if not trusted_key.is_file():
            raise DataError(f"--trusted-key {trusted_key}: file not found")
        with open(trusted_key, "rb") as f:
            pem = f.read(1 << 16)  # a P-256 public key's PEM is under 200 bytes
        try:
            public_key_id(pem)
        except SecurityError:
            raise SecurityError(f"--trusted-key {trusted_key}: not a PEM public key (export one with `trustforge keys export`)") from None
    keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
    summary = restore_backup(
        settings,
        file,
        keyring,
        trusted_key=pem,
        accept_new_keys=accept_new_keys,
        accept_admins=accept_admins,
        accept_shorter_audit=accept_shorter_audit,
    )
    audit = summary["audit"]  # the restore's audit entry was written in its own transaction
    versions = summary["tables"].get("registry_versions", 0)
    typer.echo(f"restored {file}: {versions} version(s), {summary['files']} package file(s), signed by key {summary['key_id'][:16]}")
    for key_id in summary["new_keys"]:
        typer.echo(f"  added signing key {key_id[:16]} (now trusted: its signatures verify in this workspace)")
    for name in summary["new_admins"]:
        typer.echo(f"  added admin user {name}")
    for row in summary["unsealed"]:
        typer.echo(f"  warning: {row} did not match its seal in the archive (changed in the source database): refused here too", err=True)
    if audit["archive"] < audit["workspace"]:
        typer.echo(f"  audit log cut from {audit['workspace']} to {audit['archive']} entries (accepted); the audit log continues")
    else:
        typer.echo("  the audit log continues")
