"""The `trustforge` command: a thin face over the library (parse, call, print).

Every `TrustForgeError` becomes one line on stderr (`error: ...`) and a non-zero exit code;
users never see a traceback for bad input. An unexpected exception (a bug) is also reported
on one line, with exit code 70; `TRUSTFORGE_DEBUG=1` shows its traceback instead.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from trustforge.errors import DataError, TrustForgeError

app = typer.Typer(
    name="trustforge",
    help="From one YAML spec to a trained, evaluated, verified model package.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

# sysexits.h: EX_SOFTWARE (an internal error) and EX_IOERR (the system refused a read or write).
_EXIT_BUG = 70
_EXIT_OS = 74


def _error(message: str) -> None:
    """Print `error: MESSAGE` as exactly one line on stderr (no markup, no wrapping)."""
    text = re.sub(r"\s*\n\s*", " ", str(message)).strip()
    err.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)


def _friendly(fn: Callable) -> Callable:
    """Turn library errors into one-line messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrustForgeError as exc:
            _error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None
        except OSError as exc:  # disk full, permission denied, ... while reading or writing a file
            where = f"{exc.filename}: " if exc.filename else ""
            _error(f"{where}{exc.strerror or exc.__class__.__name__}")
            raise typer.Exit(_EXIT_OS) from None
        except Exception as exc:
            if os.environ.get("TRUSTFORGE_DEBUG"):
                raise
            _error(
                f"internal error ({exc.__class__.__name__}: {str(exc)[:200]}); this is a bug in TrustForge, "
                "please report it; TRUSTFORGE_DEBUG=1 shows the traceback"
            )
            raise typer.Exit(_EXIT_BUG) from None

    return wrapper


@app.command()
@_friendly
def validate(spec: Path = typer.Argument(..., help="the YAML spec")) -> None:
    """Check a spec and print its normalised form (every default filled in)."""
    from trustforge.spec import load_spec, spec_to_yaml

    s = load_spec(spec)
    # Plain write: a console would wrap long lines (paths) at its width and break the YAML.
    sys.stdout.write(spec_to_yaml(s))
    sys.stdout.flush()


@app.command()
@_friendly
def train(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest interrupted run of this spec"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    no_register: bool = typer.Option(False, "--no-register", help="keep the signed package in the run folder only"),
) -> None:
    """Train, evaluate, package and sign a spec, and register the package as the next version.

    Prints the test metrics, the run folder, the package path and the model URI.
    """
    from trustforge.evaluate import metrics_table
    from trustforge.pipeline import run

    result = run(spec, resume=resume, progress=not quiet, register=not no_register)
    out.print(metrics_table(result.metrics, result.spec.default_metrics()))
    out.print(f"run:     {escape(str(result.run_dir))}", highlight=False, soft_wrap=True)
    out.print(f"package: {escape(str(result.package))}", highlight=False, soft_wrap=True)
    if result.model_uri:
        out.print(f"model:   {result.model_uri}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def predict(
    package: Path = typer.Argument(..., help="the model package folder"),
    input: Path = typer.Argument(..., help="a CSV/Parquet file, or a folder of images"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write predictions (CSV); default INPUT.predictions.csv next to INPUT"),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"),
) -> None:
    """Verify a package (signature, then every file's SHA-256), then predict for every row or image of INPUT."""
    from trustforge.package import Model
    from trustforge.train import atomic_write_text

    named = input if input.name else input.resolve()  # `predict PKG .` names the folder
    stem = named.name.rsplit(".", 1)[0] if named.is_file() else named.name
    dest = output or named.with_name(f"{stem}.predictions.csv")
    # Checked before the model runs, so a long prediction is not lost to a typo in --out.
    if dest.resolve() == input.resolve():
        raise DataError(f"{dest}: refusing to overwrite the input with predictions")
    if not dest.parent.is_dir():
        raise DataError(f"{dest.parent}: output folder not found (for {dest.name})")
    model = Model.load(package, public_key=public_key)
    frame = model.predict(input)
    atomic_write_text(dest, frame.to_csv(index=False))
    out.print(f"{len(frame)} predictions written to {escape(str(dest))}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def evaluate(
    package: Path = typer.Argument(..., help="the model package folder"),
    data: Path = typer.Argument(..., help="a spec (its test split is used) or a labelled CSV/Parquet file or image folder"),
    public_key: Optional[Path] = typer.Option(None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"),
) -> None:
    """Recompute a package's metrics on a spec's test split or on labelled data."""
    import json

    from trustforge.evaluate import metrics_table
    from trustforge.package import Model

    model = Model.load(package, public_key=public_key)
    if data.suffix.lower() in (".yaml", ".yml"):
        from trustforge.data import prepare
        from trustforge.spec import load_spec

        prepared = prepare(load_spec(data))
        metrics = model.evaluate(prepared.test_raw)
    else:
        metrics = model.evaluate(data)
    out.print(metrics_table(metrics, model.spec.default_metrics(), title=f"metrics on {escape(data.name)} (n={metrics['n']})"))
    out.print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}), highlight=False, soft_wrap=True)


def _run_folder(path: Path) -> Path:
    """A run folder from a run folder or its package (the report reads the whole run)."""
    from trustforge.errors import RunError

    path = path.resolve()
    if (path / "manifest.json").is_file() or (path / "sealed.json").is_file():
        path = path.parent
    if not (path / "metrics.json").is_file():
        raise RunError(f"{path}: not a run folder (or a run's package); runs live in .trustforge/runs/")
    return path


@app.command()
@_friendly
def report(
    run: Path = typer.Argument(..., help="a run folder, or the package inside one"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write the HTML (default RUN/report.html)"),
) -> None:
    """Write one self-contained HTML report (plots embedded) and a Markdown model card."""
    from trustforge.evaluate import write_report

    folder = _run_folder(run)
    path = write_report(folder, output)
    out.print(f"report:     {escape(str(path))}", highlight=False, soft_wrap=True)
    out.print(f"model card: {escape(str(folder / 'model_card.md'))}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def compare(runs: list[Path] = typer.Argument(..., help="run folders (or their packages)")) -> None:
    """A leaderboard of runs: metric, fit time, predict latency, size."""
    from rich.table import Table

    from trustforge.evaluate import compare_runs

    rows = compare_runs([_run_folder(r) for r in runs])
    table = Table(title="runs, best first", title_justify="left")
    for col in ("run", "metric", "value", "fit s", "p50 latency ms", "package KiB", "parameters"):
        table.add_column(col, justify="left" if col in ("run", "metric") else "right")

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    for r in rows:
        table.add_row(r["run"], r["metric"], fmt(r["value"], ".4f"), fmt(r["fit_seconds"], ".1f"),
                      fmt(r["latency_p50_ms"], ".3f"), fmt(None if r["package_bytes"] is None else r["package_bytes"] / 1024, ".1f"),
                      fmt(r["parameters"], ","))
    out.print(table)


@app.command()
@_friendly
def quickstart() -> None:
    """The main job (`make demo`): train the digits CNN, sign and register its package, then
    load it back from the registry (decrypted in memory, verified) and predict held-out images."""
    import numpy as np
    from rich.table import Table

    from trustforge.evaluate import metrics_table
    from trustforge.pipeline import run
    from trustforge.registry import Registry
    from trustforge.spec import load_spec
    import yaml

    text = resources.files("trustforge").joinpath("quickstart.yaml").read_text(encoding="utf-8")
    spec = load_spec(yaml.safe_load(text))
    out.print(f"[bold]TrustForge quickstart[/bold]: {spec.name} ({spec.model.kind} on {spec.data.source})")
    result = run(spec)
    out.print(metrics_table(result.metrics, spec.default_metrics()))
    out.print(f"package: {escape(str(result.package))}", highlight=False, soft_wrap=True)
    out.print(f"model:   {result.model_uri} (signed; stored encrypted in the registry)", highlight=False, soft_wrap=True)

    with Registry() as registry:
        # Decrypted in memory; signature, then every file's SHA-256, checked before parsing.
        model = registry.load_model(result.model_uri)
    from trustforge.data import prepare

    test = prepare(spec).test_raw
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(test.labels), size=8, replace=False))
    sample = test.images[idx]
    pred = model.predict(sample)
    table = Table(title=f"predictions of {result.model_uri} (held-out test images)", title_justify="left")
    for col in ("sample", "true", "predicted", "confidence"):
        table.add_column(col, justify="right")
    for i, j in enumerate(idx):
        p = pred.iloc[i]
        conf = p[f"proba_{p['prediction']}"]
        table.add_row(str(j), str(test.labels[j]), str(p["prediction"]), f"{conf:.3f}")
    out.print(table)

    from trustforge.evaluate import write_report

    path = write_report(result.run_dir)
    out.print(f"report:  {escape(str(path))}  (open it in a browser; model card beside it)", highlight=False, soft_wrap=True)


def _mount(module: str, name: str) -> None:
    """Add a command group from `trustforge.commands.MODULE`, with the same one-line errors."""
    import copy
    import importlib

    sub = importlib.import_module(f"trustforge.commands.{module}").app
    # A copy of each command with the wrapped callback: the library's own app stays untouched.
    group = typer.Typer(help=sub.info.help, no_args_is_help=True, add_completion=False)
    for command in sub.registered_commands:
        wrapped = copy.copy(command)
        wrapped.callback = _friendly(command.callback)
        group.registered_commands.append(wrapped)
    app.add_typer(group, name=name)


for _module, _name in (("models", "models"), ("package", "package"), ("keys", "keys"), ("users", "users"),
                       ("audit", "audit"), ("backup", "backup")):
    _mount(_module, _name)


def main() -> None:
    """Console-script entry point."""
    if os.environ.get("TRUSTFORGE_DEBUG"):
        app()
        return
    try:
        app()
    except TrustForgeError as exc:  # errors raised outside a command body
        _error(str(exc))
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
