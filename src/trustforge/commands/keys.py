"""`trustforge keys ...`: the workspace signing key pair and key-encryption key.

`init` creates them; `export` prints the public key others verify with (e.g. `backup restore
--trusted-key`); `rotate` prints what `trustforge.secure.rotate_keys` did: it replaces
both, keeps the retired public key so old signatures still verify, and re-wraps the PII masking
secret (unchanged) and the data key of every sealed package in the artifact store under the new
key-encryption key; with
`--reencrypt` it seals every file again under new data keys, so the old key-encryption key
and an old `sealed.json` no longer open anything. Both are `keys` actions (admins,
or the local workspace admin) and are written to the audit log. Library errors
(`TrustForgeError`) propagate to the main command, which prints them as one line.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import typer

app = typer.Typer(help="The workspace signing key pair and key-encryption key.", no_args_is_help=True, add_completion=False)


@contextlib.contextmanager
def workspace() -> Iterator:
    """The registry of the workspace in the environment (engine, keyring, audit log, principal)."""
    from trustforge.registry import Registry

    reg = Registry()
    try:
        yield reg
    finally:
        reg.close()


@app.command()
def init(
    force: bool = typer.Option(False, "--force", help="replace existing keys (packages sealed under the old ones become unreadable)"),
) -> None:
    """Create the signing key pair and a 256-bit key-encryption key (files mode 0600).

    With TRUSTFORGE_KEK set, the key-encryption key comes from there and no kek.key is written.
    """
    from trustforge.secure import Keyring, require
    from trustforge.settings import Settings

    settings = Settings.from_env()
    if force and (settings.keys_dir / "signing.key").exists():
        with workspace() as reg:  # replacing live keys is an admin action, checked and audited
            require(reg.principal, "keys", "keys", reg.audit)
            keyring = Keyring.init(settings.keys_dir, kek_b64=settings.kek, force=True)
            reg.audit.append(reg.principal.name, "keys", "keys", "ok", {"init": "force", "key_id": keyring.key_id})
    else:
        keyring = Keyring.init(settings.keys_dir, kek_b64=settings.kek)
        with workspace() as reg:
            reg.audit.append(reg.principal.name, "keys", "keys", "ok", {"init": True, "key_id": keyring.key_id})
    where = "TRUSTFORGE_KEK" if settings.kek else str(settings.keys_dir / "kek.key")
    typer.echo(f"signing key {keyring.key_id[:16]} (public key: {settings.keys_dir / 'signing.pub'}); key-encryption key from {where}")


@app.command()
def export(
    file: str | None = typer.Argument(None, help="write the PEM here (must not exist); default or -: print it"),
) -> None:
    """Print (or write to FILE; `-` prints) the workspace's current public signing key, PEM.

    Hand it to whoever must trust this workspace: `trustforge backup restore --trusted-key`,
    `Model.load(path, public_key=...)`, model-signing's `verify key --public_key`. It holds no
    secret; the private key and the key-encryption key never leave keys/.
    """
    from trustforge._fs import atomic_write_bytes
    from trustforge.commands import output_file
    from trustforge.secure import Keyring
    from trustforge.settings import Settings

    # `-` is standard output, as to other tools (the key is public); a file named `-` is `./-`
    dest = None if file in (None, "-") else Path(file)
    output_file(dest, "FILE", replace=False)
    settings = Settings.from_env()
    keyring = Keyring.load(settings.keys_dir, kek_b64=settings.kek)
    pem = keyring.public_key_pem()
    if dest is None:
        typer.echo(pem.decode("ascii"), nl=False)
        return
    atomic_write_bytes(dest, pem, mode=0o644, replace=False)  # a file made since the check is kept too
    typer.echo(f"public key {keyring.key_id[:16]} written to {file}")


@app.command()
def rotate(
    include: list[Path] = typer.Option(
        [], "--include", help="another folder holding sealed packages (e.g. from `package encrypt`) to re-wrap too; repeatable"
    ),
    reencrypt: bool = typer.Option(
        False, "--reencrypt", help="seal every file again under new data keys, so the old key-encryption key opens nothing"
    ),
) -> None:
    """New signing key and key-encryption key; re-wrap every sealed package's data key.

    The PII masking secret (keys/masking.key) is re-wrapped under the new key-encryption key and
    never changed, so keyed hashes and fakes keep joining and unmasking.

    Without --reencrypt payloads are not re-encrypted, so the old data keys still open them
    (anyone holding the old key-encryption key and an old copy of a `sealed.json` can decrypt
    them); with it, every sealed file is sealed again under a new data key. Sealed packages in the artifact store and in
    run folders (`data.protect.seal_run`, TRUSTFORGE_SEAL_RUNS) are found by themselves; those elsewhere must be named with --include, or they stay sealed under the
    old key-encryption key, which is then forgotten. When the key-encryption key comes from
    TRUSTFORGE_KEK, give the new one in TRUSTFORGE_NEW_KEK and set TRUSTFORGE_KEK to it
    afterwards.
    """
    from trustforge.secure import rotate_keys
    from trustforge.settings import env_secret

    new_kek = env_secret("TRUSTFORGE_NEW_KEK", "the new base64 key-encryption key, or unset it to write keys/kek.key")
    with workspace() as reg:
        done = rotate_keys(
            reg.keyring,
            [reg.artifacts, reg.settings.runs_dir, *include],
            principal=reg.principal,
            audit=reg.audit,
            new_kek_b64=new_kek,
            reencrypt=reencrypt,
        )
    if done.reencrypted:
        typer.echo(
            f"rotated: signing key {done.keyring.key_id[:16]} (old public key kept in keys/retired/); "
            f"{done.rewrapped} sealed package(s) re-encrypted under new data keys"
        )
    else:
        typer.echo(
            f"rotated: signing key {done.keyring.key_id[:16]} (old public key kept in keys/retired/); "
            f"{done.rewrapped} sealed package(s) re-wrapped. Their old data keys still open old files: the old "
            "key-encryption key with an old copy of a sealed.json decrypts them; run `trustforge keys rotate --reencrypt` "
            "to seal them again under new data keys"
        )
    if done.kek_from_env:
        typer.echo("now set TRUSTFORGE_KEK to the value of TRUSTFORGE_NEW_KEK", err=True)
