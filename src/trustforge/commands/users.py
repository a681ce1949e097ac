"""`trustforge users ...`: users, roles and API tokens (a thin face over `AccessStore`).

Every command needs the `users` action (admins only, or the local workspace admin) and every
change is written to the audit log in the same transaction. Library errors
(`TrustForgeError`) propagate to the main command, which prints them as one line.
"""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Users, roles (viewer, trainer, deployer, admin) and API tokens.", no_args_is_help=True, add_completion=False)


def _workspace():
    from trustforge.commands.audit import open_workspace

    return open_workspace()


@app.command()
def add(
    name: str = typer.Argument(..., help="user name: letters, digits, '.', '_', '-' (at most 64)"),
    role: str = typer.Option("viewer", "--role", "-r", help="viewer | trainer | deployer | admin"),
) -> None:
    """Add a user with a role."""
    role = role.lower()  # choices are taken in any case, as the other commands' are
    with _workspace() as (access, _audit, principal):
        access.add_user(name, role, by=principal)
    typer.echo(f"added {name} ({role})")


@app.command()
def grant(name: str = typer.Argument(...), role: str = typer.Argument(..., help="viewer | trainer | deployer | admin")) -> None:
    """Give a user a new role (and re-enable a revoked user; their old tokens stay revoked)."""
    role = role.lower()
    with _workspace() as (access, _audit, principal):
        access.grant(name, role, by=principal)
    typer.echo(f"{name} is now {role}")


@app.command()
def revoke(name: str = typer.Argument(...)) -> None:
    """Disable a user and revoke all of their tokens, effective immediately."""
    with _workspace() as (access, _audit, principal):
        access.revoke(name, by=principal)
    typer.echo(f"revoked {name} and all of their tokens")


@app.command()
def token(
    name: str = typer.Argument(...),
    days: float = typer.Option(90.0, "--days", help="lifetime in days"),
    never_expires: bool = typer.Option(False, "--never-expires", help="valid until revoked"),
) -> None:
    """Issue an API token for a user; it is printed once and cannot be shown again."""
    with _workspace() as (access, _audit, principal):
        secret = access.issue_token(name, ttl_days=None if never_expires else days, by=principal)
    typer.echo(secret)
    typer.echo(
        "This token is shown only now and cannot be shown again; store it (e.g. in TRUSTFORGE_TOKEN). "
        f"Revoke it with `trustforge users revoke-token {secret.split('_')[1]}`.",
        err=True,
    )


@app.command("revoke-token")
def revoke_token(token_id: str = typer.Argument(..., help="the 16 hex digits after `tfk_`")) -> None:
    """Revoke one API token by its id, effective immediately."""
    with _workspace() as (access, _audit, principal):
        access.revoke_token(token_id, by=principal)
    typer.echo(f"revoked token {token_id}")


@app.command()
def reseal(
    from_seals: bool = typer.Option(
        False,
        "--from-seals",
        help="take every record whose seal holds, records put back with an older seal too (for a machine that has seen no "
        "access head, or when no machine that saw the newest is left)",
    ),
    from_head: bool = typer.Option(
        False,
        "--from-head",
        help="check the records against the stored access head, whose signature holds, although this machine cannot check "
        "that it descends from the one it saw (a gap in the log of heads that `audit verify` warns of)",
    ),
) -> None:
    """Take as current the users and tokens whose seals hold and that the newest access head this
    machine has seen named: the way back after `trustforge audit verify` named the access head
    (missing, older, stored twice or changed outside TrustForge). The others are left out, named,
    and refused until an admin decides on them again."""
    with _workspace() as (access, _audit, principal):
        result = access.reseal(from_seals=from_seals, from_head=from_head, by=principal)
    typer.echo(f"the access head names {result['rows']} user and token record(s) as current")
    if result["left_out"]:
        typer.echo(
            f"left out, refused until decided again: {', '.join(result['left_out'])}: not the record the access head this "
            f"machine last saw (version {result['checked_against']}) named: put back from an older state, or changed outside "
            "TrustForge. Decide again: `trustforge users grant NAME ROLE` or `users revoke NAME` for a user, "
            "`users revoke-token ID` for a token (or issue a new one)"
        )
    if result["broken"]:
        typer.echo(f"left out, their seals fail (changed outside TrustForge): {', '.join(result['broken'])}")
    if from_seals:
        typer.echo(
            "--from-seals: a record put back with an older seal is current too now: revoke again any that `audit verify` "
            "named, and every revoke_token and revoke that `trustforge audit show` lists"
        )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List users: role, whether active, when created, ids of their live tokens."""
    from trustforge.secure import require

    with _workspace() as (access, audit, principal):
        require(principal, "users", "users", audit)
        rows = access.list_users()
        _, broken = access.verify_seals()
    for line in broken:
        typer.echo(f"warning: {line}: changed outside TrustForge; tokens that rest on it are refused (`trustforge audit verify`)", err=True)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no users (the local workspace admin needs none)")
        return
    width = max(len(r["name"]) for r in rows)
    typer.echo(f"{'NAME':<{width}}  ROLE      ACTIVE  CREATED                      TOKENS")
    for r in rows:
        typer.echo(
            f"{r['name']:<{width}}  {r['role']:<8}  {'yes' if r['active'] else 'no':<6}  {r['created']:<27}  {', '.join(r['tokens']) or '-'}"
        )
