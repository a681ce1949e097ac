"""`trustforge audit ...`: show and verify the tamper-evident audit log (a thin face over `AuditLog`).

Both commands act as the principal of `TRUSTFORGE_TOKEN` (or the local workspace admin) and
need the `audit_verify` action (admins only). Library errors (`TrustForgeError`) propagate to
the main command, which prints them as one line; a failed verification is an
`IntegrityError` naming the first bad entry.
"""

from __future__ import annotations

import contextlib
import json
from typing import Iterator

import typer

app = typer.Typer(help="The audit log: who did what, when, with what outcome.", no_args_is_help=True, add_completion=False)


@contextlib.contextmanager
def open_workspace() -> Iterator[tuple]:
    """(AccessStore, AuditLog, Principal) of the workspace in `TRUSTFORGE_HOME` (from its `Registry`)."""
    from trustforge.registry import Registry, database_errors

    with Registry() as reg, database_errors(reg.settings.db_url):  # the commands' own statements too
        yield reg.access, reg.audit, reg.principal


def _standalone(settings) -> tuple:
    """The same pieces built without a `Registry` (tests use it to act on a bare database)."""
    from trustforge.registry import make_engine
    from trustforge.secure import AUDIT_WITNESS_FILE, AccessStore, AuditLog, Keyring

    engine = make_engine(settings.db_url)
    keyring = Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
    audit = AuditLog(engine, keyring.sign, keyring.verify, witness_path=settings.keys_dir / AUDIT_WITNESS_FILE, sink=settings.audit_sink)
    access = AccessStore(engine, audit=audit, keyring=keyring)
    return access, audit, access.authenticate(settings.token)


@app.command()
def show(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="how many entries, newest first"),
    offset: int = typer.Option(0, "--offset", min=0, help="skip this many newest entries first"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
) -> None:
    """Show the newest audit entries (actor, action, object, time, outcome)."""
    from trustforge.secure import require

    with open_workspace() as (_access, audit, principal):
        require(principal, "audit_verify", "audit-log", audit)
        rows = audit.entries(limit=limit, offset=offset)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, sort_keys=True))
        return
    if not rows:
        typer.echo("the audit log is empty")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"audit log (newest {len(rows)}, skipped {offset})" if offset else f"audit log (newest {len(rows)})")
    for col in ("seq", "time (UTC)"):
        table.add_column(col, no_wrap=True)
    for col in ("actor", "action", "object", "outcome"):
        table.add_column(col, no_wrap=True)
    table.add_column("details", overflow="ellipsis", no_wrap=True, max_width=30)
    style = {"ok": "green", "denied": "red", "error": "yellow"}
    for r in rows:
        details = r["details"] if isinstance(r["details"], str) else json.dumps(r["details"], sort_keys=True, separators=(",", ":"))
        if len(details) > 30:  # the table is a summary; `--json` prints every detail
            details = details[:27] + "..."
        outcome = f"[{style.get(r['outcome'], 'white')}]{r['outcome']}[/]"
        table.add_row(str(r["seq"]), r["time"][:19], r["actor"], r["action"], r["object"], outcome, details)
    # Piped output is not cut to 80 columns: nobody's terminal is there to wrap it.
    console = Console()
    Console(width=None if console.is_terminal else 160).print(table)


@app.command()
def verify(
    adopt: bool = typer.Option(
        False,
        "--adopt",
        help="start the witness (keys/audit-witness.json) for the log as the database holds it, if it verifies: "
        "after copying a workspace without its witness; this accepts the log's length as genuine, "
        "and never replaces a witness that names a longer or different log",
    ),
) -> None:
    """Check the hash chain, the signed checkpoints and head, the head file and the witness.

    Exit 0 and `ok: N entries` when the log is intact; otherwise a one-line error naming the
    first entry that was edited, deleted, reordered or cut off, or what is missing (the head,
    the head file, the witness, the tables), and a non-zero exit code. Then the same for the
    users and tokens: each row must match its seal (a role raised or a token un-revoked by a
    direct database write does not).
    """
    from trustforge.errors import IntegrityError
    from trustforge.secure import require

    with open_workspace() as (access, audit, principal):
        require(principal, "audit_verify", "audit-log", audit)
        report = audit.adopt() if adopt else audit.verify()
        if adopt and report.ok:
            audit.append(principal.name, "audit_adopt", "audit-log", "ok", {"entries": report.entries})
        records, broken = access.verify_seals()
        gap = access.head_log_gap()
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    if gap is not None:
        typer.echo(
            f"warning: the log of access heads {gap} (changed outside TrustForge): a machine sharing this database that last "
            "saw an older head refuses every token until `trustforge users reseal --from-head` is run there",
            err=True,
        )
    problems = [] if report.ok else [f"audit log entry {report.first_bad}: {report.problem}"]
    if report.ok:
        typer.echo(f"ok: {report.entries} entries" + (" (witness started)" if adopt else ""))
    if broken:  # named even when the log failed too: a database put back whole breaks both
        shown = "; ".join(broken[:20]) + (f"; and {len(broken) - 20} more" if len(broken) > 20 else "")
        dropped_first = (
            "drop what the database holds that TrustForge did not make, then "
            if any(b.startswith("the database holds") for b in broken)
            else ""
        )
        problems.append(
            f"access records changed outside TrustForge ({len(broken)}): {shown}. A token whose record or whose user's record is "
            f"among them is refused; {dropped_first}`trustforge users grant` or `users revoke-token` seals a row again as an admin "
            "decides (`trustforge users reseal` first, when the access head is named)"
        )
    if problems:
        raise IntegrityError("; and ".join(problems))
    typer.echo(f"ok: {records} user and token records match their seals")
