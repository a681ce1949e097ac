"""`trustforge models ...`: the registry from the command line (a thin face over `Registry`).

Each command acts as the principal of `TRUSTFORGE_TOKEN` (or the local workspace admin) on
the workspace of `TRUSTFORGE_HOME`. Library errors (`TrustForgeError`) propagate to the main
command, which prints them as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="The model registry: versions, aliases, tags, lineage.", no_args_is_help=True, add_completion=False)


def _registry():
    from trustforge.registry import Registry

    return Registry()


def _print(text: str) -> None:
    # Plain echo, no console wrapping: names and paths must stay on one line for scripts.
    typer.echo(text)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """List the registered models: versions, latest version, aliases."""
    with _registry() as reg:
        rows = reg.list_models()
    if as_json:
        _print(json.dumps(rows, indent=1))
        return
    if not rows:
        _print("no models registered")
        return
    width = max(len(r["name"]) for r in rows)
    _print(f"{'NAME':<{width}}  VERSIONS  LATEST  ALIASES")
    for r in rows:
        named = ", ".join(f"{a}→{v}" for a, v in r["aliases"].items()) or "-"
        _print(f"{r['name']:<{width}}  {r['versions']:>8}  {str(r['latest'] or '-'):>6}  {named}")


@app.command()
def show(
    uri: str = typer.Argument(..., help="models:/NAME/3, models:/NAME@alias, or models:/NAME (latest); NAME lists every version"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show one version (with lineage, aliases, tags) or every version of a model."""
    from trustforge.commands import local
    from trustforge.registry import parse_model_uri

    with _registry() as reg:
        name, version, alias = parse_model_uri(uri)
        if not uri.startswith("models:/") and version is None and alias is None:
            found = reg.list_versions(name)
        else:
            found = [reg.get(uri)]
    if as_json:
        _print(json.dumps([{**mv.to_dict(), "path": local(str(mv.path))} for mv in found], indent=1))
        return
    if not found:
        _print(f"no versions of {name}")
    for mv in found:
        _print(f"{mv.uri}")
        lines = {
            "created": f"{mv.created_at} by {mv.created_by}",
            "aliases": ", ".join(mv.aliases) or "-",
            "tags": ", ".join(f"{k}={v}" for k, v in mv.tags.items()) or "-",
            "run": mv.run or "-",
            "parent": str(mv.parent_version) if mv.parent_version is not None else "-",
            "dataset digest": mv.dataset_digest or "-",
            "spec digest": mv.spec_digest or "-",
            "package": f"{mv.package_id} sha256:{mv.package_digest}",
            "stored": f"{local(str(mv.path))} ({'encrypted' if mv.encrypted else 'plain'})",
        }
        for k, v in lines.items():
            _print(f"  {k + ':':<16}{v}")
        if mv.metrics:
            _print("  metrics:        " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in mv.metrics.items()))


@app.command()
def register(
    package: Path = typer.Argument(..., help="a signed package folder"),
    name: Optional[str] = typer.Option(None, "--name", help="model name (default: the package's)"),
    parent: Optional[int] = typer.Option(None, "--parent", min=1, help="the version this one derives from"),
    tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE; repeatable"),
) -> None:
    """Verify a package and store it (encrypted) as the next version; prints its URI."""
    tags = dict(_key_value(t) for t in tag)
    with _registry() as reg:
        mv = reg.register(package, name=name, parent_version=parent, tags=tags)
    _print(mv.uri)


@app.command()
def alias(
    name: str = typer.Argument(..., help="model name"),
    alias_: str = typer.Argument(..., metavar="ALIAS", help="alias, e.g. champion"),
    version: int = typer.Argument(..., min=1, help="the version the alias points at"),
) -> None:
    """Point models:/NAME@ALIAS at VERSION."""
    with _registry() as reg:
        reg.set_alias(name, alias_, version)
    _print(f"models:/{name}@{alias_} -> {version}")


@app.command()
def tag(
    name: str = typer.Argument(..., help="model name"),
    version: int = typer.Argument(..., min=1, help="version"),
    pair: str = typer.Argument(..., metavar="KEY=VALUE", help="the tag"),
) -> None:
    """Set a tag on a version."""
    key, value = _key_value(pair)
    with _registry() as reg:
        reg.set_tag(name, version, key, value)
    _print(f"models:/{name}/{version} {key}={value}")


@app.command()
def delete(
    name: str = typer.Argument(..., help="model name"),
    version: int = typer.Argument(..., min=1, help="version"),
) -> None:
    """Delete a version (its aliases and its `package export` artefacts go with it); the number is never reused."""
    with _registry() as reg:
        reg.delete(name, version)
    _print(f"deleted models:/{name}/{version}")


@app.command()
def gc(
    grace: float = typer.Option(10.0, "--grace", help="leave staging entries younger than this many seconds"),
) -> None:
    """Remove orphan files that interrupted operations left in the artifact store."""
    with _registry() as reg:
        report = reg.gc(grace_s=grace)
    _print(f"removed {len(report['staging'])} staging entries and {len(report['orphans'])} orphan version folders")
    for path in report["staging"] + report["orphans"]:
        _print(f"  removed {path}")
    for path in report["missing"]:
        _print(f"  warning: {path}: registered but its folder is missing")
    for path in report["unknown"]:
        _print(f"  note: {path}: not created by the registry; left alone")


def _key_value(text: str) -> tuple[str, str]:
    from trustforge.errors import RegistryError

    if "=" not in text:
        raise RegistryError(f"tag {text[:80]!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    return key, value
