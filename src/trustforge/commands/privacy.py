"""`trustforge scan FILE`, `trustforge mask FILE -o OUT`, `trustforge unmask FILE -o OUT`.

A thin face over `trustforge.privacy` for CSV, Parquet, JSON Lines and plain text. `scan`
prints counts per column and entity type, never a detected value. `mask` writes its output
atomically (a temporary file, then a rename). The keyed policies (``hash``, ``fake``) and
`unmask` use a key derived from the workspace masking secret (`Keyring.derive_key`,
HKDF-SHA256, purpose "pii-mask"; the secret is random, kept in keys/masking.key wrapped by the
key-encryption key, and survives `keys rotate`), so every file masked in one workspace joins
with the others, before and after a rotation. `mask` makes the workspace's keys on first use,
as `trustforge train` does; `unmask` needs them to exist (a new key would reverse nothing).
Keyed `mask` needs the ``mask`` action (trainer, deployer, admin; a viewer is refused, and so is
a malformed or revoked token) and each one is audited (the policy and the file's name, any
personal data in it tagged, never its content or folder): without that, anyone who can run the CLI could use the workspace HMAC
as an oracle. `redact` and `tag` use no secret: they are a local file operation like `sed` and
need no principal. A keyed mask also writes `OUT.tfmask.json` (the policy of each entity type it looked
for, key fingerprint, the output's SHA-256, under an HMAC with the masking key); `unmask` refuses
a file without a sidecar that verifies and turns back only the types it lists as fake, so
original data is never "unmasked" into other plausible values.
`unmask` needs the ``unmask`` action (admins, or the local workspace admin) and is written to
the audit log. Scan output never shows a detected value, not even in a header or a JSON key
(`<column 3: EMAIL>`). Library errors (`TrustForgeError`) propagate to the main command, which prints
them as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["scan", "mask", "unmask"]

out = Console()

KEY_PURPOSE = "pii-mask"


def workspace_key(what: str, *, create: bool = False) -> bytes:
    """The masking key of the workspace in the environment.

    `create`: make the workspace's keys first when it has none, as `trustforge train` does (the
    keys are made on first use); `unmask` never creates them: a new key reverses nothing.

    Raises:
        SecurityError: no masking secret and not `create` (the message says to run it in the workspace that masked the file).
    """
    from trustforge.errors import SecurityError
    from trustforge.secure import Keyring
    from trustforge.settings import Settings

    settings = Settings.from_env()
    if create:
        return Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek).derive_key(KEY_PURPOSE)
    if not (settings.keys_dir / "masking.key").is_file():  # nothing was masked with a key here: a new key would reverse nothing
        raise SecurityError(
            f"{what} needs the masking key the file was masked with and this workspace has no keys: "
            "run it in the workspace that masked the file (its keys folder, or its TRUSTFORGE_KEK and keys/masking.key)"
        )
    return Keyring.load(settings.keys_dir, kek_b64=settings.kek).derive_key(KEY_PURPOSE)


def _entities(value: Optional[str]) -> Optional[list[str]]:
    """--entities as a list of upper-case types (checked by `_check_entities`); None when left out (all types)."""
    return None if value is None else [e.strip().upper() for e in value.split(",") if e.strip()]


def _check_entities(value: Optional[str]) -> Optional[str]:
    """--entities, checked while parsing: left out means every type; given, it must name at least one
    known type (`--entities ","` or `""` would otherwise mask nothing and exit 0), else exit 2."""
    from trustforge.privacy import ENTITY_TYPES

    chosen = _entities(value)
    if chosen is None:
        return value
    if not chosen:
        raise typer.BadParameter(f"names no entity type; leave --entities out for all of them, or name some of {', '.join(ENTITY_TYPES)}")
    unknown = [e for e in chosen if e not in ENTITY_TYPES]
    if unknown:
        raise typer.BadParameter(f"unknown entity type {unknown[0]!r}; expected some of {', '.join(ENTITY_TYPES)}")
    return value


def _audited(file: Path) -> str:
    """The audit log's object for `file`: its name, with any personal data in it tagged
    (`mary.smith@example.com.csv` is `file:<EMAIL>`): the log is append-only, so what it holds stays."""
    from trustforge._shown import audit_object

    return audit_object("file", file)


def _check_policy(value: str) -> str:
    """--policy, checked while the command line is parsed: a bad value is a usage error (exit 2), in any case."""
    from trustforge.privacy import POLICIES

    chosen = value.strip().lower()
    if chosen not in POLICIES:
        raise typer.BadParameter(f"must be one of {', '.join(POLICIES)}; got {value!r}")
    return chosen


def _check_entity_policy(items: list[str]) -> list[str]:
    """--entity-policy TYPE=POLICY items, checked while parsing (exit 2 naming the option)."""
    from trustforge.privacy import ENTITY_TYPES, POLICIES

    for item in items:
        kind, sep, value = item.partition("=")
        kind, value = kind.strip().upper(), value.strip()
        if not sep:
            raise typer.BadParameter(f"expected TYPE=POLICY (e.g. EMAIL=hash); got {item!r}")
        if kind not in ENTITY_TYPES:
            raise typer.BadParameter(f"unknown entity type {kind!r}; expected one of {', '.join(ENTITY_TYPES)}")
        if value.lower() not in POLICIES:
            raise typer.BadParameter(f"policy for {kind} must be one of {', '.join(POLICIES)}; got {value!r}")
    return items


def _policy(policy: str, per_entity: list[str]) -> str | dict[str, str]:
    """The masker's policy from --policy and --entity-policy (both checked by their callbacks)."""
    if not per_entity:
        return policy
    table = {"*": policy}
    for item in per_entity:
        kind, _, value = item.partition("=")
        table[kind.strip().upper()] = value.strip().lower()
    return table


def scan(
    file: Path = typer.Argument(..., help="a CSV, Parquet, JSON Lines (.jsonl) or text (.txt, .log, .md) file"),
    entities: Optional[str] = typer.Option(
        None, "--entities", help="comma-separated entity types to look for (default, when left out: all)", callback=_check_entities
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Find personal data in a file: counts per column and entity type (never the values)."""
    from trustforge.privacy import scan_file

    found = scan_file(file, entities=_entities(entities))
    if as_json:
        typer.echo(json.dumps(found, sort_keys=True, ensure_ascii=False))
        return
    total = sum(found["entities"].values())
    out.print(
        f"{escape(found['file'])}: {found['kind']}, {found['rows']} row(s), {total} entit{'y' if total == 1 else 'ies'} found",
        highlight=False,
    )
    if not found["columns"]:
        return
    table = Table("column", "entities", "personal column")
    for col, counts in found["columns"].items():
        table.add_row(escape(col), ", ".join(f"{k} {n}" for k, n in counts.items()), found["personal"].get(col, ""))
    out.print(table)


def mask(
    file: Path = typer.Argument(..., help="a CSV, Parquet, JSON Lines (.jsonl) or text (.txt, .log, .md) file"),
    output: Path = typer.Option(..., "--output", "-o", help="the masked file (same kind; written atomically)"),
    policy: str = typer.Option(
        "tag", "--policy", help="redact | tag | hash | fake (hash and fake use the workspace key)", callback=_check_policy
    ),
    entity_policy: list[str] = typer.Option(
        [], "--entity-policy", help="TYPE=POLICY for one entity type, e.g. EMAIL=hash; repeatable", callback=_check_entity_policy
    ),
    entities: Optional[str] = typer.Option(
        None, "--entities", help="comma-separated entity types to mask (default, when left out: all)", callback=_check_entities
    ),
) -> None:
    """Mask personal data in a file into OUT: redact, type tag, keyed hash (joins still work) or keyed fake.

    Keyed policies need the `mask` action (trainer and up), are audited, and write OUT.tfmask.json,
    which `unmask` needs.
    """
    from trustforge.commands import output_file
    from trustforge.errors import SpecError
    from trustforge.privacy import Masker, mask_file

    output_file(output, "--output", source=file)
    chosen = _entities(entities)
    for item in entity_policy:
        kind = item.partition("=")[0].strip().upper()
        if chosen is not None and kind not in chosen:  # the policy would never apply: that type left in clear
            raise SpecError(
                f"--entity-policy {kind}=...: {kind} is not among --entities ({', '.join(chosen)}), so it would not be masked at all: "
                "add it to --entities"
            )
    policies = _policy(policy, entity_policy)
    used = {policies} if isinstance(policies, str) else set(policies.values())
    keyed = sorted(used & {"hash", "fake"})
    if not keyed:
        report = mask_file(file, output, Masker(policies, entities=chosen))
    else:
        from trustforge.commands.audit import open_workspace
        from trustforge.secure import require

        # The workspace's keys are made on first use, as `trustforge train` makes them (for signing, and for `pii: hash`).
        key = workspace_key(f"--policy {keyed[0]}", create=True)
        obj = _audited(file)
        with open_workspace() as (_access, audit, principal):  # a malformed or revoked token is refused here
            require(principal, "mask", obj, audit)
            masker = Masker(policies, key=key, entities=chosen)
            try:
                report = mask_file(file, output, masker)
            except Exception as exc:
                audit.append(principal.name, "mask", obj, "error", {"policies": keyed, "error": type(exc).__name__})
                raise
            audit.append(principal.name, "mask", obj, "ok", {"policies": keyed, "rows": report.rows, "masked": report.total})
    counts = ", ".join(f"{k} {n}" for k, n in report.counts().items()) or "nothing found"
    out.print(f"masked {report.total} value(s) in {escape(file.name)} ({counts}) -> {escape(str(output))}", highlight=False, soft_wrap=True)
    for note in report.notes:
        out.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)


def unmask(
    file: Path = typer.Argument(..., help="a file masked with --policy fake in this workspace"),
    output: Path = typer.Option(..., "--output", "-o", help="the restored file (same kind; written atomically)"),
) -> None:
    """Turn `fake` values back into the originals (admins only; audited). Hashes, tags and redactions stay.

    Refuses a file without a valid FILE.tfmask.json from `mask --policy fake` in this workspace.
    """
    from trustforge.commands import output_file
    from trustforge.commands.audit import open_workspace
    from trustforge.privacy import unmask_file
    from trustforge.secure import require

    output_file(output, "--output", source=file)
    obj = _audited(file)
    with open_workspace() as (_access, audit, principal):
        require(principal, "unmask", obj, audit)
        key = workspace_key("unmask")
        try:
            rows = unmask_file(file, output, key)
        except Exception as exc:
            audit.append(principal.name, "unmask", obj, "error", {"error": type(exc).__name__})
            raise
        audit.append(principal.name, "unmask", obj, "ok", {"rows": rows})
    out.print(f"unmasked {escape(file.name)} -> {escape(str(output))}", highlight=False, soft_wrap=True)
