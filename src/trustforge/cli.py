"""The `trustforge` command: a thin face over the library (parse, call, print).

Every `TrustForgeError` becomes one line on stderr (`error: ...`) and a non-zero exit code;
users never see a traceback for bad input.
"""

from __future__ import annotations

import functools
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

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


def _friendly(fn: Callable) -> Callable:
    """Turn library errors into one-line messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrustForgeError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", highlight=False)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@_friendly
def validate(spec: Path = typer.Argument(..., help="the YAML spec")) -> None:
    """Check a spec and print its normalised form (every default filled in)."""
    from trustforge.spec import load_spec, spec_to_yaml

    s = load_spec(spec)
    out.print(spec_to_yaml(s), end="", highlight=False, markup=False)


@app.command()
@_friendly
def train(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest interrupted run of this spec"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Train, evaluate and package a spec; prints the test metrics and the package path."""
    from trustforge.evaluate import metrics_table
    from trustforge.pipeline import run

    result = run(spec, resume=resume, progress=not quiet)
    out.print(metrics_table(result.metrics, result.spec.default_metrics()))
    out.print(f"run:     {result.run_dir}", highlight=False)
    out.print(f"package: {result.package}", highlight=False)


@app.command()
@_friendly
def predict(
    package: Path = typer.Argument(..., help="the model package folder"),
    input: Path = typer.Argument(..., help="a CSV/Parquet file, or a folder of images"),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write predictions (CSV); default INPUT.predictions.csv"),
) -> None:
    """Verify a package, then predict for every row or image of INPUT."""
    from trustforge.package import Model
    from trustforge.train import atomic_write_text

    model = Model.load(package)
    frame = model.predict(input)
    dest = output or Path(f"{input.name.rsplit('.', 1)[0] if input.is_file() else input.name}.predictions.csv")
    if dest.resolve() == input.resolve():
        raise DataError(f"{dest}: refusing to overwrite the input with predictions")
    atomic_write_text(dest, frame.to_csv(index=False))
    out.print(f"{len(frame)} predictions written to {dest}", highlight=False)


@app.command()
@_friendly
def evaluate(
    package: Path = typer.Argument(..., help="the model package folder"),
    data: Path = typer.Argument(..., help="a spec (its test split is used) or a labelled CSV/Parquet file or image folder"),
) -> None:
    """Recompute a package's metrics on a spec's test split or on labelled data."""
    import json

    from trustforge.evaluate import metrics_table
    from trustforge.package import Model

    model = Model.load(package)
    if data.suffix.lower() in (".yaml", ".yml"):
        from trustforge.data import prepare
        from trustforge.spec import load_spec

        prepared = prepare(load_spec(data))
        metrics = model.evaluate(prepared.test_raw)
    else:
        metrics = model.evaluate(data)
    out.print(metrics_table(metrics, model.spec.default_metrics(), title=f"metrics on {data.name} (n={metrics['n']})"))
    out.print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}), highlight=False, soft_wrap=True)


@app.command()
@_friendly
def quickstart() -> None:
    """The main job (`make demo`): train the digits CNN, package it, predict from the package."""
    import numpy as np
    from rich.table import Table

    from trustforge.evaluate import metrics_table
    from trustforge.package import Model
    from trustforge.pipeline import run
    from trustforge.spec import load_spec
    import yaml

    text = resources.files("trustforge").joinpath("quickstart.yaml").read_text(encoding="utf-8")
    spec = load_spec(yaml.safe_load(text))
    out.print(f"[bold]TrustForge quickstart[/bold]: {spec.name} ({spec.model.kind} on {spec.data.source})")
    result = run(spec)
    out.print(metrics_table(result.metrics, spec.default_metrics()))
    out.print(f"package: {result.package}", highlight=False)

    model = Model.load(result.package)  # verified: every file's SHA-256 checked before parsing
    from trustforge.data import prepare

    test = prepare(spec).test_raw
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(test.labels), size=8, replace=False))
    sample = test.images[idx]
    pred = model.predict(sample)
    table = Table(title="predictions from the verified package (held-out test images)", title_justify="left")
    for col in ("sample", "true", "predicted", "confidence"):
        table.add_column(col, justify="right")
    for i, j in enumerate(idx):
        p = pred.iloc[i]
        conf = p[f"proba_{p['prediction']}"]
        table.add_row(str(j), str(test.labels[j]), str(p["prediction"]), f"{conf:.3f}")
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    if os.environ.get("TRUSTFORGE_DEBUG"):
        app()
        return
    try:
        app()
    except TrustForgeError as exc:  # errors raised outside a command body
        err.print(f"error: {exc}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
