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
        except BrokenPipeError:
            # The reader stopped reading (`trustforge validate SPEC | head -n 1`): not an error.
            # Point stdout at /dev/null so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
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
    from trustforge.data import source_input_kind
    from trustforge.spec import load_spec, spec_to_yaml

    s = load_spec(spec)
    if _names_no_model(spec):  # say which model the kind of input picked (a YAML comment keeps the output valid)
        sys.stdout.write(
            f"# model.kind {s.model.kind}: picked for {source_input_kind(s.task, s.data.source)} input; name model.kind to choose another\n"
        )
    # Plain write: a console would wrap long lines (paths) at its width and break the YAML.
    sys.stdout.write(spec_to_yaml(s))
    sys.stdout.flush()


def _names_no_model(path: Path) -> bool:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("model") is None and raw.get("task") != "recommendation"


@app.command()
@_friendly
def train(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest interrupted run of this spec"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    no_register: bool = typer.Option(False, "--no-register", help="keep the signed package in the run folder only"),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch CPU threads (over the spec's train.threads); default: OMP_NUM_THREADS if set, "
        "else 1 for a model under 1M parameters, else min(4, cores)",
    ),
) -> None:
    """Train, evaluate, package and sign a spec, and register the package as the next version.

    Prints the test metrics, the run folder, the package path and the model URI.
    """
    from trustforge.evaluate import metrics_table
    from trustforge.pipeline import run

    result = run(spec, resume=resume, progress=not quiet, register=not no_register, threads=threads)
    out.print(metrics_table(result.metrics, result.spec.default_metrics()))
    out.print(f"run:     {escape(str(result.run_dir))}", highlight=False, soft_wrap=True)
    out.print(f"package: {escape(str(result.package))}", highlight=False, soft_wrap=True)
    if result.model_uri:
        out.print(f"model:   {result.model_uri}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def predict(
    package: Path = typer.Argument(..., help="the model package folder"),
    input: Path = typer.Argument(..., help="a CSV/Parquet file, a folder of images, or a WAV file or folder of WAV files"),
    output: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where to write predictions (CSV); default INPUT.predictions.csv next to INPUT"
    ),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"
    ),
    top_k: Optional[int] = typer.Option(
        None, "--top-k", help="recommendation models: the K best items for each user of INPUT (a table with the user column)"
    ),
) -> None:
    """Verify a package (signature, then every file's SHA-256), then predict for every row or image of INPUT.

    With --top-k (recommendation models), write each user's K best items instead: one row per
    user and rank, without the items the user already met.
    """
    from trustforge.package import Model
    from trustforge.train import atomic_write_text

    if top_k is not None and top_k < 1:
        raise DataError(f"--top-k must be an integer >= 1; got {top_k}")
    named = input if input.name else input.resolve()  # `predict PKG .` names the folder
    stem = named.name.rsplit(".", 1)[0] if named.is_file() else named.name
    dest = output or named.with_name(f"{stem}.predictions.csv")
    # Checked before the model runs, so a long prediction is not lost to a typo in --out.
    if dest.resolve() == input.resolve():
        raise DataError(f"{dest}: refusing to overwrite the input with predictions")
    if not dest.parent.is_dir():
        raise DataError(f"{dest.parent}: output folder not found (for {dest.name})")
    model = Model.load(package, public_key=public_key)
    frame = model.recommend(input, k=top_k) if top_k is not None else model.predict(input)
    atomic_write_text(dest, frame.to_csv(index=False))
    out.print(f"{len(frame)} predictions written to {escape(str(dest))}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def evaluate(
    package: Path = typer.Argument(..., help="the model package folder"),
    data: Path = typer.Argument(..., help="a spec (its test split is used) or a labelled CSV/Parquet file or image folder"),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"
    ),
) -> None:
    """Recompute a package's metrics on a spec's test split or on labelled data."""
    import json

    from trustforge.evaluate import metrics_table
    from trustforge.package import Model

    model = Model.load(package, public_key=public_key)
    if data.suffix.lower() in (".yaml", ".yml"):
        from trustforge.data import prepare
        from trustforge.settings import Settings
        from trustforge.spec import load_spec

        prepared = prepare(load_spec(data), cache_dir=Settings.from_env().cache_dir)
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
        table.add_row(
            r["run"],
            r["metric"],
            fmt(r["value"], ".4f"),
            fmt(r["fit_seconds"], ".1f"),
            fmt(r["latency_p50_ms"], ".3f"),
            fmt(None if r["package_bytes"] is None else r["package_bytes"] / 1024, ".1f"),
            fmt(r["parameters"], ","),
        )
    out.print(table)


@app.command()
def monitor(
    model_uri: str = typer.Argument(..., metavar="MODEL_URI", help="a model URI (models:/NAME/3, models:/NAME@alias) or a package folder"),
    data: Path = typer.Option(..., "--data", "-d", help="the inputs to check: a CSV/Parquet file or an image folder"),
    window: Optional[int] = typer.Option(None, "--window", "-w", min=20, help="rows per window (default: the spec's monitor.window)"),
    as_json: bool = typer.Option(False, "--json", help="print each window's full results as one JSON line, no tables"),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"
    ),
) -> None:
    """Check data for drift against the training statistics in the model's package, window by window.

    Windows of --window rows (a last, shorter one of at least 20 rows too), tested per feature and on the predictions.

    A window with drift is one audit entry when MODEL_URI is a registry URI.

    Exit code 0: no window drifted; 10: at least one did; errors as for every command.
    """
    from trustforge.monitor import DRIFT_EXIT_CODE

    if _monitor(model_uri, data, window, as_json, public_key):
        raise typer.Exit(DRIFT_EXIT_CODE)


@_friendly
def _monitor(uri: str, data: Path, window: int | None, as_json: bool, public_key: Path | None) -> bool:
    """The body of `monitor`; True when a window drifted (the exit code is set outside `_friendly`)."""
    import contextlib
    import json
    import logging

    from rich.table import Table

    from trustforge.monitor import check_drift

    # The table below says what the monitor's per-window warning lines would; keep stderr for errors.
    quiet = logging.getLogger("trustforge.monitor.cli")
    quiet.propagate = False
    quiet.handlers = [logging.NullHandler()]
    with contextlib.ExitStack() as stack:
        registry = None
        if uri.startswith("models:/"):  # a registry URI: resolved, and drift audited, in the workspace's registry
            from trustforge.registry import Registry

            registry = stack.enter_context(Registry())
        check = check_drift(uri, data, registry=registry, public_key=public_key, window=window, logger=quiet)

    if as_json:
        for w in check.windows:
            sys.stdout.write(json.dumps(w.to_dict(), allow_nan=False) + "\n")
        sys.stdout.flush()
        return check.drift
    table = Table(title=f"drift of {escape(data.name)} against the training data of {escape(uri)}", title_justify="left")
    for col in ("window", "rows", "drift", "what drifted (deciding test: p < level)", "PSI, W over their threshold (descriptive)"):
        table.add_column(col, justify="left" if col.startswith(("what", "PSI")) else "right")
    for w in check.windows:
        over = w.over_threshold()
        top = w.largest_psi_ratio()
        shown = ", ".join(f"{escape(n)} ({'PSI' if f == 'psi' else 'W'} {x['value']:.2f} >= {x['threshold']:.2f})" for n, f, x in over[:3])
        shown += f" +{len(over) - 3} more" if len(over) > 3 else ""
        if not over and top is not None:  # the largest PSI, beside its threshold at this window size
            shown = f"none (largest PSI {top[1]['value']:.2f} of {top[1]['threshold']:.2f}, {escape(top[0])})"
        table.add_row(
            str(w.index),
            f"{w.start_row}-{w.end_row - 1}" + (" (partial)" if w.partial else ""),
            "[red]yes[/red]" if w.drift else "no",
            escape(w.summary()) or "-",
            shown or "-",
        )
    out.print(table)
    for line in check.explanation:
        out.print(escape(line), highlight=False, soft_wrap=True)
    if check.drift:
        what = ", ".join(f"{escape(k)} ({n})" for k, n in check.counts().items())
        out.print(
            f"drift in {len(check.drifted)} of {len(check.windows)} windows of {check.window} rows: {what}  [{check.rule}]",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print(f"no drift in {len(check.windows)} windows of {check.window} rows  [{check.rule}]", highlight=False, soft_wrap=True)
    return check.drift


@app.command()
@_friendly
def serve(
    model_uri: str = typer.Argument(
        ..., metavar="MODEL_URI", help="models:/NAME@alias or models:/NAME (followed as they move), models:/NAME/3, or a package folder"
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8080, "--port", "-p", help="port to listen on"),
    workers: int = typer.Option(1, "--workers", "-w", help="model worker processes; 0 runs the model inside the server process"),
    backend: str = typer.Option("torch", "--backend", help="torch (eager PyTorch) or onnx (ONNX Runtime, exported on first serve)"),
    max_batch_size: int = typer.Option(32, "--max-batch-size", help="most rows per batch"),
    max_latency_ms: float = typer.Option(10.0, "--max-latency-ms", help="longest a request waits for others to share its batch"),
    max_queue: int = typer.Option(1024, "--max-queue", help="most queued requests; more get 503 with Retry-After"),
    max_request_mb: float = typer.Option(16.0, "--max-request-mb", help="larger request bodies get 413 before they are parsed"),
    threads: int = typer.Option(1, "--threads", help="torch / ONNX Runtime threads per worker"),
    poll_s: float = typer.Option(5.0, "--poll-s", help="seconds between checks of where a followed alias points"),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without tokens (loopback addresses only)"),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth", help="serve without tokens on any address; logs a warning on every request"
    ),
    auth_cache_s: float = typer.Option(
        1.0, "--auth-cache-s", help="seconds a valid token is remembered (revocation acts within this; 0: never)"
    ),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package folder made elsewhere"
    ),
) -> None:
    """Serve a model over HTTP: Open Inference Protocol v2 and MLflow scoring, with tokens, batching and metrics.

    Needs the `serve` role (deployer, admin); callers need tokens whose role may `predict`
    (every role) or `read`. Stops on Ctrl-C after finishing the requests in flight.
    """
    from trustforge.serve import ServeConfig
    from trustforge.serve import serve as run_server

    config = ServeConfig(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        backend=backend,  # type: ignore[arg-type]
        max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms,
        max_queue=max_queue,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
        poll_s=poll_s,
        auth_cache_s=auth_cache_s,
        auth="insecure" if insecure_no_auth else "none" if no_auth else "token",
    )
    run_server(model_uri, config, public_key=str(public_key) if public_key else None)


@app.command()
@_friendly
def quickstart() -> None:
    """The main job (`make demo`): train the digits CNN, sign and register its package, then
    load it back from the registry (decrypted in memory, verified) and predict held-out images."""
    import numpy as np
    import yaml
    from rich.table import Table

    from trustforge.evaluate import metrics_table
    from trustforge.pipeline import run
    from trustforge.registry import Registry
    from trustforge.spec import load_spec

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

    test = prepare(spec, cache_dir=registry.settings.cache_dir).test_raw
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


for _module, _name in (
    ("models", "models"),
    ("package", "package"),
    ("keys", "keys"),
    ("users", "users"),
    ("audit", "audit"),
    ("backup", "backup"),
):
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
