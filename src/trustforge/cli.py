"""The `trustforge` command: a thin face over the library (parse, call, print).

Every `TrustForgeError` becomes one line on stderr (`error: ...`) and a non-zero exit code;
users never see a traceback for bad input. An unexpected exception (a bug) is also reported
on one line, with exit code 70; `TRUSTFORGE_DEBUG=1` shows its traceback instead.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from trustforge.commands import local, output_file
from trustforge.errors import DataError, SpecError, TrustForgeError, UsageError

if TYPE_CHECKING:
    from trustforge.automl import Candidate
    from trustforge.monitor import DriftCheck
    from trustforge.spec import TaskSpec

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
_EXIT_TERM = 128 + 15  # killed by SIGTERM, as a shell reports it


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is: a run stops as on Ctrl-C (its checkpoint written,
    its status "interrupted", resumable) instead of dying with status.json saying "running"."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block, the first SIGTERM raises `_Terminated`; a second one kills as usual."""
    import signal

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, previous)  # cleaning up may be stopped by a second SIGTERM
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test calling main() from a thread): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _error(message: str) -> None:
    """Print `error: MESSAGE` as exactly one line on stderr (no markup, no wrapping), local paths
    named as the user knows them (`_local`)."""
    text = re.sub(r"\s*\n\s*", " ", local(str(message))).strip()
    err.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)


def _interrupted(exc: KeyboardInterrupt) -> typer.Exit:
    """Say so on stderr; the exit code a shell gives Ctrl-C (130) or SIGTERM (143)."""
    terminated = isinstance(exc, _Terminated)
    err.print("interrupted (SIGTERM)" if terminated else "interrupted", highlight=False)
    return typer.Exit(_EXIT_TERM if terminated else 130)


def _friendly(fn: Callable) -> Callable:
    """Turn library errors into one-line messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # a command's own exit code
            raise
        except TrustForgeError as exc:
            _error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            raise _interrupted(exc) from None
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


def _print_version(value: bool) -> None:
    if value:
        from trustforge import __version__  # the package is imported already; nothing heavy

        typer.echo(f"trustforge {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"),
) -> None:
    """From one YAML spec to a trained, evaluated, verified model package."""


@app.command()
@_friendly
def validate(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    no_data: bool = typer.Option(False, "--no-data", help="check the spec only; do not read its data"),
) -> None:
    """Check a spec and print its normalised form (every default filled in).

    Unless --no-data, also read the data and run every check train runs before fitting a model
    (the same code): the file exists and parses, the target exists, data.protect, data.expect,
    the columns can be typed, data.duplicates, the split is feasible, data.augment and
    data.clean fit the data and the task. With or without data: model.kind auto's candidates suit
    the kind of input the source holds (the check train makes, by the same function).
    """
    from trustforge.data import source_input_kind
    from trustforge.spec import load_spec, located, spec_to_yaml, written_spec

    s = load_spec(spec)
    if s.model.kind == "auto":  # the source says which input it holds: no data read
        from trustforge.automl import candidates_for

        _trees_skip_attacks(s, candidates_for(s))
    if not no_data:
        from trustforge.data import validate_data
        from trustforge.evaluate import task_of
        from trustforge.pipeline import stage_checks_for
        from trustforge.settings import Settings

        # The same checks train runs before it fits a model (`data.check_data`); `pii: hash` with a throwaway key
        with located(spec):  # a field the data refuses (train.privacy.delta) is named at its line
            notes = validate_data(
                s, cache_dir=Settings.from_env().cache_dir, probabilities=task_of(s).probabilities, stage_checks=stage_checks_for(s)
            )
        for line in notes:
            _note(line)
    if _names_no_model(spec):  # say which model the kind of input picked (a YAML comment keeps the output valid)
        sys.stdout.write(
            f"# model.kind {s.model.kind}: picked for {source_input_kind(s.task, s.data.source)} input; name model.kind to choose another\n"
        )
    # Plain write: a console would wrap long lines (paths) at its width and break the YAML.
    sys.stdout.write(_what_applies(s, spec_to_yaml(written_spec(s))))  # data paths as the spec wrote them
    sys.stdout.flush()
    split = getattr(s.data, "split", None)
    rule = s.evaluate.threshold
    if s.task == "classification" and isinstance(rule, (str, dict)) and split is not None and split.validation == 0:
        name = "cost" if isinstance(rule, dict) else rule
        _note(
            f"evaluate.threshold {name} is chosen on the validation split, and data.split.validation is 0: "
            "training will use 0.5; set data.split.validation (e.g. 0.2) to choose it"
        )


def _trees_skip_attacks(s: "TaskSpec", pool: "list[Candidate]") -> None:
    """Note, for model.kind auto with evaluate.robustness on, that a tree ensemble it may package
    is not attacked. A baseline that wins is packaged with register_baseline, or when no network
    is a candidate (`automl.choose`)."""
    if s.evaluate.robustness is None or "hist_gradient_boosting" not in [c.kind for c in pool]:
        return
    if s.model.register_baseline or all(c.baseline for c in pool):
        why = "model.register_baseline: true" if s.model.register_baseline else "no network among model.candidates"
        _note(
            f"evaluate.robustness: model.kind auto may package hist_gradient_boosting ({why}), a tree ensemble; if it does, "
            "the run skips the attacks (its output is piecewise constant, with no input gradient) and evidence.json says so"
        )


def _what_applies(s, text: str) -> str:
    """The normalised spec's YAML with a comment where null stands for a default with a value
    (`threshold: null  # 0.5 ...`). Comments only: the spec, and its digest, are unchanged."""
    if s.task != "classification":
        return text
    lines = text.split("\n")
    section = None
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            section = line.split(":", 1)[0]
        elif section == "evaluate" and line == "  threshold: null":
            lines[i] = line + "  # 0.5 for a binary task (the positive class when its probability is >= 0.5)"
        elif section == "evaluate" and line == "  positive_class: null":
            lines[i] = line + "  # for a binary task, the training split's minority class"
    return "\n".join(lines)


def _names_no_model(path: Path) -> bool:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("model") is None and raw.get("task") != "recommendation"


def _stops_on_sigterm(fn: Callable) -> Callable:
    """Run a training command with SIGTERM raised as an interrupt (`_sigterm_interrupts`), and
    after an interrupt say whether the run was kept and how to resume it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _sigterm_interrupts():
            try:
                return fn(*args, **kwargs)
            except KeyboardInterrupt as exc:
                stop = _interrupted(exc)
                if isinstance(kwargs.get("spec"), Path):
                    _resume_hint(kwargs["spec"])
                raise stop from None

    return wrapper


@app.command()
@_friendly
@_stops_on_sigterm
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
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        help="choose the model automatically (model.kind: auto): fast (short candidate runs) or best; "
        "candidates are ranked on the validation split, never the test split",
    ),
    nproc_per_node: Optional[int] = typer.Option(
        None,
        "--nproc-per-node",
        min=1,
        help="data-parallel training in N processes on this node (one per GPU; gloo on CPU), launched through torch.distributed.run; "
        "default: the spec's train.devices, else 1 process",
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="nodes of a multi-node data-parallel run (start this command on each)"),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="this node's rank in [0, --nnodes); node 0 serves the rendezvous"),
    rdzv_endpoint: Optional[str] = typer.Option(
        None, "--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address and a free port, the same on every node (--nnodes above 1)"
    ),
) -> None:
    """Train, evaluate, package and sign a spec, and register the package as the next version.

    Prints the test metrics, the run folder, the package path and the model URI. With
    --nproc-per-node (or under torchrun) the training is data-parallel; rank 0 alone writes.
    """
    from trustforge.evaluate import metrics_table
    from trustforge.pipeline import run
    from trustforge.train import LAUNCHED_ENV, PEER_LOST_EXIT, PeerLost, distributed_from_env

    preset = preset.strip().lower() if preset is not None else None  # as every choice, in any case
    if preset is not None and preset not in ("fast", "best"):
        raise SpecError(f"--preset must be fast or best; got {preset!r}")
    auto = preset is not None or _is_auto(spec)
    if auto and (nproc_per_node is not None or nnodes > 1 or distributed_from_env() is not None):
        raise SpecError(
            "--nproc-per-node and torchrun do not apply to model.kind auto (the candidates train in one process); train without them"
        )
    if auto:  # model.kind auto: candidates ranked on validation, then the chosen one trained
        from trustforge.automl import auto_spec, run_auto

        if resume:
            raise SpecError("--resume does not apply to model.kind auto (the choice runs anew); train without it")
        result = run_auto(auto_spec(spec, preset), progress=not quiet, register=not no_register, threads=threads)
        _print_model_choice(result.metrics["model_choice"])
        skipped = _skipped_robustness(result.run_dir)
        if skipped is not None:  # the spec asked for attacks; the model auto chose takes none
            _note(f"evaluate.robustness skipped for the chosen model, {result.spec.model.kind}: {skipped} (see evidence.json)")
    else:
        distributed = distributed_from_env()
        if distributed is None:  # not started by torchrun: launch it when more than one process is asked for
            nproc = _processes_per_node(spec, nproc_per_node, nnodes, node_rank, rdzv_endpoint)
            if nproc is not None:
                from trustforge.train import launch

                argv = ["train", str(spec), *(["--resume"] if resume else []), *(["--quiet"] if quiet else [])]
                argv += [*(["--no-register"] if no_register else []), *(["--threads", str(threads)] if threads is not None else [])]
                launch(argv, nproc_per_node=nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint)
                return
        try:
            result = run(spec, resume=resume, progress=not quiet, register=not no_register, threads=threads, distributed=distributed)
        except PeerLost:
            if distributed is not None and os.environ.get(LAUNCHED_ENV) == "1":
                raise typer.Exit(PEER_LOST_EXIT) from None  # `trustforge train --nproc-per-node` reports the failure once
            raise
        if result is None:  # a data-parallel rank other than 0: rank 0 reports
            return
    out.print(metrics_table(result.metrics, result.spec.default_metrics()))
    if result.metrics.get("expect_violations"):  # data.expect under warn or drop_row: the lines are in the run folder
        counts = ", ".join(f"{k} ({v})" for k, v in result.metrics["expect_violations_by_column"].items())
        _note(
            f"{_count(result.metrics['expect_violations'], 'data expectation violation')} in training data by column: {counts}; see expectations.json in the run folder"
        )
    baseline = result.metrics.get("baseline")
    if isinstance(baseline, dict) and baseline.get("sentence"):  # the yardstick, in one plain sentence
        out.print(escape(baseline["sentence"]), highlight=False, soft_wrap=True)
    out.print(f"run:     {escape(local(str(result.run_dir)))}", highlight=False, soft_wrap=True)
    out.print(f"package: {escape(local(str(result.package)))}", highlight=False, soft_wrap=True)
    if result.model_uri:
        out.print(f"model:   {result.model_uri}", highlight=False, soft_wrap=True)
    fallback = _threshold_fallback(result.metrics.get("threshold"))
    if fallback:
        _note(fallback)


def _is_auto(spec: Path) -> bool:
    from trustforge.spec import load_spec

    return load_spec(spec).model.kind == "auto"


def _skipped_robustness(run_dir: Path) -> str | None:
    """Why the run's evidence has no robustness section (`skipped.robustness` in evidence.json), or None."""
    import json

    from trustforge.evaluate import EVIDENCE

    try:
        skipped = json.loads((run_dir / EVIDENCE).read_text(encoding="utf-8")).get("skipped") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return skipped.get("robustness") if isinstance(skipped, dict) else None


def _print_model_choice(choice: dict) -> None:
    """The candidates' leaderboard (validation scores, fit time, one-row latency) and the verdict."""
    from rich.table import Table

    key = choice["metric"]
    table = Table(title=f"model choice ({choice['preset']} preset, ranked by {key} on the validation split)")
    for name in ("rank", "candidate", key, "fit s", "latency ms", "note"):
        table.add_column(name)
    for r in choice["leaderboard"]:
        note = r.get("skipped") or ("baseline" if r.get("baseline") else "not packaged" if r.get("ensemble") else "")
        value = f"{r[key]:.4f}" if key in r else "-"
        fit = f"{r['fit_seconds']:.2f}" if "fit_seconds" in r else "-"
        latency = f"{r['latency_ms']:.3f}" if "latency_ms" in r else "-"
        table.add_row(str(r.get("rank", "-")), escape(r["kind"]), value, fit, latency, escape(note))
    out.print(table)
    out.print(escape(choice["verdict"]), highlight=False, soft_wrap=True)


def _processes_per_node(spec: Path, nproc_per_node: int | None, nnodes: int, node_rank: int, endpoint: str | None) -> int | None:
    """The processes per node a launch starts (None: train in this process), the options checked."""
    if node_rank >= nnodes:
        raise SpecError(f"--node-rank must be in [0, --nnodes); got {node_rank} with --nnodes {nnodes}")
    if endpoint is not None and not re.fullmatch(r"[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5}", endpoint):
        raise SpecError(f"--rdzv-endpoint must be HOST:PORT; got {endpoint!r}")
    if nnodes > 1 and endpoint is None:
        raise SpecError("--rdzv-endpoint HOST:PORT (node 0's address) is needed with --nnodes above 1")
    if nproc_per_node is None:
        from trustforge.spec import load_spec

        try:
            nproc_per_node = load_spec(spec).train.devices
        except TrustForgeError:
            return None  # the run reports a bad spec, as without a launch
    if nproc_per_node is None or (nproc_per_node == 1 and nnodes == 1 and endpoint is None):
        return None
    return nproc_per_node


def _threshold_fallback(threshold: object) -> str | None:
    """Why a threshold rule (f1, recall@precision=P, ...) was not applied and 0.5 serves; None when
    it was applied, or when the threshold is the default or a fixed number."""
    if not isinstance(threshold, dict) or threshold.get("chosen_on") != "default":
        return None
    rule = str(threshold.get("rule"))
    try:
        float(rule)
        return None  # 0.5 by default, or the number the spec fixes: nothing fell back
    except ValueError:
        pass
    why = threshold.get("note") or f"evaluate.threshold {rule} could not be applied; the threshold is 0.5"
    return f"{why} (metrics.json threshold.note)"


def _resume_hint(spec: Path) -> None:
    """After Ctrl-C or SIGTERM: say whether the run was kept and how to continue it (true either way)."""
    from trustforge.pipeline import find_resumable_run
    from trustforge.settings import Settings
    from trustforge.spec import load_spec, spec_digest

    try:
        s = load_spec(spec)
        found = find_resumable_run(Settings.from_env(), s.name, spec_digest(s))
    except TrustForgeError:
        err.print("no epoch was saved, so there is nothing to resume", highlight=False)
        return
    err.print(
        f"run {escape(found.name)} kept as interrupted; `trustforge train {escape(str(spec))} --resume` continues it from its last saved epoch",
        highlight=False,
        soft_wrap=True,
    )


def _load_model(source: str, public_key: Path | None):
    """A verified model from a package folder or a registry URI (models:/NAME@alias, models:/NAME/3,
    models:/NAME for the latest), resolved and loaded as `serve` and `monitor` do: decrypted in
    memory and verified with the workspace's keys, the read checked and audited as the principal's."""
    from trustforge.package import Model

    if source.startswith("models:/"):
        from trustforge.registry import Registry

        if public_key is not None:
            raise DataError(f"--public-key is for a package folder made elsewhere; {source} is verified with this workspace's keys")
        with Registry() as registry:
            return registry.load_model(source)
    return Model.load(Path(source), public_key=public_key)


@app.command()
@_friendly
def predict(
    package: str = typer.Argument(..., metavar="MODEL", help="a model package folder, or a model URI (models:/NAME@alias, models:/NAME/3)"),
    input: Path = typer.Argument(..., help="a CSV/Parquet file, a folder of images, or a WAV file or folder of WAV files"),
    output: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="where to write predictions (CSV); default NAME.predictions.csv next to INPUT, NAME being INPUT without its extension (rows.csv: rows.predictions.csv)",
    ),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"
    ),
    top_k: Optional[int] = typer.Option(
        None, "--top-k", min=1, help="recommendation models: the K best items for each user of INPUT (a table with the user column)"
    ),
    id_column: Optional[str] = typer.Option(
        None, "--id-column", help="a column of INPUT copied as the first column of the predictions (a row key to join them back by)"
    ),
) -> None:
    """Verify a package (signature, then every file's SHA-256), then predict for every row or image of INPUT.

    With --top-k (recommendation models), write each user's K best items instead: one row per
    user and rank, without the items the user already met.

    Columns the model does not take are ignored with a note, as the server ignores extra
    fields; missing values the model fills in (from what training learned) are counted.
    """
    from trustforge.train import atomic_write_text

    if top_k is not None and id_column is not None:
        raise DataError("--id-column does not apply with --top-k: its rows are users and ranks, not rows of INPUT")
    named = input if input.name else input.resolve()  # `predict PKG .` names the folder
    stem = named.name.rsplit(".", 1)[0] if named.is_file() else named.name
    dest = output or named.with_name(f"{stem}.predictions.csv")
    # Checked before the model runs, so a long prediction is not lost to a typo in --out.
    output_file(dest, "--out", default=output is None)
    if dest.resolve() == input.resolve():
        raise UsageError(f"--out {dest}: is INPUT; give another file (the predictions never overwrite the rows they are of)")
    if not dest.parent.is_dir():  # the default, beside INPUT: INPUT is not there
        raise DataError(f"{input}: file or folder not found")
    model = _load_model(package, public_key)
    if top_k is not None:
        frame = model.recommend(input, k=top_k)
        if frame.attrs.get("repeated_users"):
            _note(f"{_count(frame.attrs['repeated_users'], 'repeated user id')} in {input.name} left out: each user gets one list")
    else:
        raw, ids, ignored = _model_input(model, input, id_column)
        raw, ids, _ = _expect_input(model, raw, ids, input.name)
        frame = model.predict(raw)
        imputed = model.imputed(raw)
        if ids is not None:
            frame = _with_ids(frame, ids, id_column, len(raw.frame))
        if ignored:
            _note(f"ignored {_count(len(ignored), 'column')} the model does not take: {', '.join(map(str, ignored))}")
        if imputed:
            rows = ", ".join(f"{k} ({v})" for k, v in imputed.items())
            _note(f"{_count(sum(imputed.values()), 'missing value')} filled in from what training learned: {rows}")
    atomic_write_text(dest, frame.to_csv(index=False))
    out.print(f"{len(frame)} predictions written to {escape(str(dest))}", highlight=False, soft_wrap=True)


def _expect_input(model, raw, ids, where: str):
    """Check the package's data expectations on a table to predict on or evaluate (`data.expect`):
    one note per violation under warn, an error naming them under fail, rows left out under
    drop_row (and their --id-column values with them); then a count per column (when there is
    more than one, or rows were left out). Data that breaks nothing prints nothing. Returns the
    checked input, the ids and the report (None: the package has no expectations)."""
    from trustforge.data import check_raw, expectations_of

    ex = expectations_of(model.manifest)
    if ex is None:
        return raw, ids, None
    inputs = (model.manifest.get("signature") or {}).get("inputs") or []
    required = [str(s.get("name")) for s in inputs if isinstance(s, dict) and not s.get("optional")]
    checked, report = check_raw(ex, raw, where=where, required=required)
    shown = report.lines(where)
    for line in shown[:50]:
        _note(line)
    if len(shown) > 50:
        _note(f"{where}: and {len(shown) - 50} more violations")
    if len(report.violations) > 1 or report.drop:  # one violation's line already names its column
        counts = ", ".join(f"{k} ({v})" for k, v in report.counts().items())
        dropped = f"; {_count(len(report.drop), 'row')} left out (drop_row)" if report.drop else ""
        _note(f"{_count(len(report.violations), 'expectation violation')} by column: {counts}{dropped}")
    if report.drop and ids is not None:
        import numpy as np

        keep = np.ones(len(ids), dtype=bool)
        keep[sorted(report.drop)] = False
        ids = ids[keep]
    return checked, ids, report


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _note(text: str) -> None:
    err.print(f"note: {escape(local(text))}", highlight=False, soft_wrap=True)


def _model_input(model, input: Path, id_column: str | None):
    """(raw input without the columns the model does not take, the --id-column values or None,
    the names of the columns ignored). A table keeps its target and `data.drop` columns, which
    the model already passes over; the server ignores extra fields the same way."""
    raw = model.read_input(input)
    frame = getattr(raw, "frame", None)
    if frame is None:
        if id_column is not None:
            raise DataError(f"{input}: --id-column needs a table; predictions of a folder of files carry their path instead")
        return raw, None, []
    if id_column is not None and id_column not in frame.columns:
        raise DataError(f"{input}: no column {id_column!r} (--id-column); it has {[str(c) for c in frame.columns][:20]}")
    ids = frame[id_column].to_numpy() if id_column is not None else None
    raw, extra = model.without_extra_columns(raw)
    return raw, ids, [c for c in extra if c != id_column]


def _with_ids(frame, ids, column: str, n: int):
    if len(frame) != n:
        raise DataError(
            f"--id-column: the model gives {len(frame)} rows for {n} input rows (a forecast's steps); there is no row key to pass"
        )
    if column in frame.columns:
        raise DataError(f"--id-column {column!r}: the predictions already have a column of that name")
    frame = frame.copy()
    frame.insert(0, column, ids)
    return frame


@app.command()
@_friendly
def evaluate(
    package: str = typer.Argument(..., metavar="MODEL", help="a model package folder, or a model URI (models:/NAME@alias, models:/NAME/3)"),
    data: Path = typer.Argument(..., help="a spec (its test split is used) or a labelled CSV/Parquet file or image folder"),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"
    ),
) -> None:
    """Recompute a package's metrics on a spec's test split or on labelled data."""
    import json

    from trustforge.evaluate import metrics_table

    model = _load_model(package, public_key)
    if data.suffix.lower() in (".yaml", ".yml"):
        from trustforge.package import spec_test_split
        from trustforge.settings import Settings
        from trustforge.spec import load_spec

        # A spec with data.protect.pii: hash is hashed under the workspace key the model holds for its own
        # inputs; the data set the model was trained on must be split as it was in training.
        test = spec_test_split(model, load_spec(data), where=data.name, cache_dir=Settings.from_env().cache_dir)
        raw, _, report = _expect_input(model, test, None, data.name)
    else:
        given = model.read_input(data)
        if given.digest() == (model.manifest.get("lineage") or {}).get("dataset_digest"):  # the training file itself
            _note(
                f"{data.name} is the data set this model was trained on (its lineage's dataset digest): its training rows are "
                "scored with its test rows, so these figures are in-sample; `trustforge evaluate MODEL SPEC` scores the test split alone"
            )
        raw, _, report = _expect_input(model, given, None, data.name)
    metrics = model.evaluate(raw)
    if report is not None:  # data.expect: violations per column beside the metrics
        metrics = {**metrics, **report.metrics()}
    out.print(metrics_table(metrics, model.spec.default_metrics(), title=f"metrics on {escape(data.name)} (n={metrics['n']})"))
    if metrics.get("rows_without_target"):  # left out by Model.evaluate, as training leaves them out
        from trustforge.data import no_target_note

        _note(no_target_note(metrics["rows_without_target"], model.schema.target))
    if metrics.get("n_in_training_period"):  # a forecaster scored on times it trained on: legitimate, but not a test
        first, last = model.schema.series.train_period
        _note(
            f"{metrics['n_in_training_period']} of the {metrics['n']} windows forecast times inside the model's training period "
            f"({first} to {last}); on the training series those scores are in-sample, not a test of the forecast"
        )
    out.print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}), highlight=False, soft_wrap=True)


def _run_folder(source: str) -> Path:
    """The run folder to report on: a run folder, its package, or the run a registered model
    (models:/NAME@alias, models:/NAME/3) was trained in. The report reads the whole run."""
    from trustforge.errors import RunError
    from trustforge.evaluate import read_run, run_folder

    if source.startswith("models:/"):
        from trustforge.registry import Registry

        with Registry() as registry:
            version = registry.get(source)
            runs = registry.settings.runs_dir
        if not version.run or not (runs / version.run).is_dir():
            named = source if source == version.uri else f"{source} ({version.uri})"
            where = (
                f"was trained in run {version.run}, whose folder was removed from the workspace's runs folder ({runs}/)"
                if version.run
                else "has no run folder on record"
            )
            raise RunError(
                f"{named} {where}; the version stays in the registry (predict, evaluate and serve take it), "
                "but `trustforge report` needs the run folder"
            )
        path = runs / version.run
    else:
        path = run_folder(Path(source))
    if not (path / "metrics.json").is_file():
        row = read_run(path)
        raise RunError(f"{path.name}: no test metrics to report ({row['note'] or row['state']})")
    return path


@app.command()
@_friendly
def report(
    run: str = typer.Argument(
        ..., metavar="RUN", help="a run folder, the package inside one, or a model URI (models:/NAME@alias, models:/NAME/3)"
    ),
    output: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write the HTML (default RUN/report.html)"),
) -> None:
    """Write one self-contained HTML report (plots embedded) and a Markdown model card."""
    from trustforge.evaluate import write_report

    output_file(output, "--out")
    folder = _run_folder(run)
    path = write_report(folder, output)
    out.print(f"report:     {escape(local(str(path)))}", highlight=False, soft_wrap=True)
    out.print(f"model card: {escape(local(str(folder / 'model_card.md')))}", highlight=False, soft_wrap=True)


@app.command()
@_friendly
def compare(
    runs: list[Path] = typer.Argument(..., help="run folders (or their packages), e.g. .trustforge/runs/*"),
    metric: Optional[str] = typer.Option(
        None, "--metric", "-m", help="rank by this metric of metrics.json (default: each task's own: accuracy, rmse, ndcg@10)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print every row as JSON, no tables"),
) -> None:
    """Leaderboards of runs, one per task and data source: metric, fit time, predict latency, size.

    Runs not completed (interrupted, failed, running) are listed under their group with why
    they are not ranked.
    """
    from trustforge.commands.runs import print_compare

    print_compare(runs, metric, as_json)


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

    Windows of --window rows (a last, shorter one of at least 20 rows too; fewer last rows are noted
    as not tested), tested per feature and on the predictions. Columns the model does not take
    are ignored with a note, as `predict` ignores them.

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

    from trustforge.monitor import MIN_WINDOW_ROWS, check_drift

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
    if check.ignored:
        _note(f"ignored {_count(len(check.ignored), 'column')} the model does not take: {', '.join(check.ignored)}")
    if check.untested:
        first = check.windows[-1].end_row if check.windows else 0
        _note(
            f"the last {_count(check.untested, 'row')} ({first}-{first + check.untested - 1}) not tested: "
            f"fewer than the {MIN_WINDOW_ROWS} a drift window needs"
        )

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
    tested = _windows_tested(check, "--window" if window is not None else "the spec's monitor.window")
    if check.drift:
        what = ", ".join(f"{escape(k)} ({n})" for k, n in check.counts().items())
        out.print(f"drift in {len(check.drifted)} of {tested}: {what}  {escape(f'[{check.rule}]')}", highlight=False, soft_wrap=True)
    else:  # the rule in brackets escaped: Rich read it as a markup tag and printed nothing
        out.print(f"no drift in {tested}  {escape(f'[{check.rule}]')}", highlight=False, soft_wrap=True)
    return check.drift


def _windows_tested(check: DriftCheck, option: str) -> str:
    """The windows a drift check tested, with the rows they really held: "5 windows of 100 rows (the
    last one 50 rows)", "1 window of 150 rows (fewer than --window 1000)"."""
    n = len(check.windows)
    windows = "window" if n == 1 else "windows"
    last = check.windows[-1] if check.windows else None
    if last is None or not last.partial:
        return f"{n} {windows} of {check.window} rows"
    if n == 1:
        return f"1 window of {last.rows} rows (fewer than {option} {check.window})"
    return f"{n} {windows} of {check.window} rows (the last one {last.rows} rows)"


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
    public_metadata: bool = typer.Option(
        False, "--public-metadata", help="metadata and readiness routes answer without a token (for probes); inference still needs one"
    ),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package folder made elsewhere"
    ),
    # --- per-caller limits (serve/_quota.py) ---
    rate_limit: Optional[str] = typer.Option(
        None, "--rate-limit", help="prediction requests per caller: N/s, N/min or N/h (default: no limit); more get 429 with Retry-After"
    ),
    burst: Optional[int] = typer.Option(
        None, "--burst", help="prediction requests a caller may send at once (default: one second's worth)"
    ),
    daily_quota: Optional[int] = typer.Option(None, "--daily-quota", help="prediction requests per caller per UTC day (default: no quota)"),
    no_probe_alert: bool = typer.Option(
        False, "--no-probe-alert", help="do not watch callers for bursts of near-duplicate or out-of-distribution queries"
    ),
    ood: str = typer.Option(
        "flag", "--ood", help="rows the package's out-of-distribution detector flags: flag (predict and say why), refuse (422) or off"
    ),
    pii_in_logs: str = typer.Option(
        "never", "--pii-in-logs", help="never: personal data found in a log field is replaced by its type tag (<EMAIL>); allow: as it is"
    ),
) -> None:
    """Serve a model over HTTP: Open Inference Protocol v2 and MLflow scoring, with tokens, batching and metrics.

    Needs the `serve` role (deployer, admin); callers need tokens whose role may `predict`
    (every role) or `read`. Stops on Ctrl-C after finishing the requests in flight.
    """
    import math

    from trustforge.serve import ServeConfig, parse_rate
    from trustforge.serve import serve as run_server

    # Checked in MB, as typed (the config holds bytes; NaN and inf have no whole number of bytes).
    if not (math.isfinite(max_request_mb) and 0.001 <= max_request_mb <= 2048):
        raise UsageError(f"--max-request-mb must be a number of MB in [0.001, 2048]; got {max_request_mb:g}")
    config = ServeConfig(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        backend=backend.strip().lower(),  # type: ignore[arg-type]  # as every choice, in any case
        max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms,
        max_queue=max_queue,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
        poll_s=poll_s,
        auth_cache_s=auth_cache_s,
        public_metadata=public_metadata,
        auth="insecure" if insecure_no_auth else "none" if no_auth else "token",
        rate_limit=parse_rate(rate_limit),
        burst=burst,
        daily_quota=daily_quota,
        probe_alert=not no_probe_alert,
        ood=ood.strip().lower(),  # type: ignore[arg-type]  # --ood OFF means off
        pii_in_logs=pii_in_logs.strip().lower(),  # type: ignore[arg-type]
    )
    run_server(model_uri, config, public_key=str(public_key) if public_key else None)


@app.command()
@_friendly
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (not loopback: needs --tls-cert/--tls-key)"),
    port: int = typer.Option(8090, "--port", "-p", help="port to listen on"),
    tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate: serve HTTPS (session cookies get Secure)"),
    tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert"),
    insecure_no_tls: bool = typer.Option(
        False, "--insecure-no-tls", help="allow a non-loopback address without TLS (tokens and cookies cross the network in clear)"
    ),
) -> None:
    """A web dashboard of this workspace: runs, models, audit log, drift, users.

    Sign in with an API token (`trustforge users token NAME`); every page and action is checked
    against the same roles as the CLI, and every change and denial is audited. Stops on Ctrl-C.
    """
    from trustforge.ui import run_ui

    run_ui(host, port, tls_cert=tls_cert, tls_key=tls_key, insecure_no_tls=insecure_no_tls)


@app.command()
@_friendly
@_stops_on_sigterm
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
    out.print(f"package: {escape(local(str(result.package)))}", highlight=False, soft_wrap=True)
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
    out.print(f"report:  {escape(local(str(path)))}  (open it in a browser; model card beside it)", highlight=False, soft_wrap=True)


def _attack_command() -> None:
    """`trustforge attack`: one command (not a group) from `trustforge.commands.attack`."""
    from trustforge.commands.attack import attack

    app.command("attack")(_friendly(attack))


_attack_command()


def _tune_command() -> None:
    """`trustforge tune`: one command (not a group) from `trustforge.commands.tune`."""
    from trustforge.commands.tune import tune

    app.command("tune")(_friendly(tune))


_tune_command()


def _privacy_commands() -> None:
    """`trustforge scan`, `mask` and `unmask`: commands (not a group) from `trustforge.commands.privacy`."""
    from trustforge.commands import privacy

    for name in ("scan", "mask", "unmask"):
        app.command(name)(_friendly(getattr(privacy, name)))


_privacy_commands()


# Commands that undo what they wrote when interrupted: SIGTERM (`docker stop`, systemd, `kill`)
# is raised there like Ctrl-C, so the undo runs instead of the process dying half-way.
_UNDONE_ON_SIGTERM = {("backup", "restore")}


def _raises_on_sigterm(fn: Callable) -> Callable:
    """Run `fn` with SIGTERM raised as an interrupt (`_sigterm_interrupts`); `_friendly` then exits 143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _sigterm_interrupts():
            return fn(*args, **kwargs)

    return wrapper


def _mount(module: str, name: str) -> None:
    """Add a command group from `trustforge.commands.MODULE`, with the same one-line errors."""
    import copy
    import importlib

    sub = importlib.import_module(f"trustforge.commands.{module}").app
    # A copy of each command with the wrapped callback: the library's own app stays untouched.
    group = typer.Typer(help=sub.info.help, no_args_is_help=True, add_completion=False)
    for command in sub.registered_commands:
        wrapped = copy.copy(command)
        callback = command.callback
        if (name, command.name or callback.__name__) in _UNDONE_ON_SIGTERM:
            callback = _raises_on_sigterm(callback)
        wrapped.callback = _friendly(callback)
        group.registered_commands.append(wrapped)
    app.add_typer(group, name=name)


for _module, _name in (
    ("models", "models"),
    ("package", "package"),
    ("keys", "keys"),
    ("users", "users"),
    ("audit", "audit"),
    ("backup", "backup"),
    ("runs", "runs"),
):
    _mount(_module, _name)


def _reflow_help(typer_app: typer.Typer) -> None:
    """Give each command its docstring with the lines of each paragraph joined: Typer's rich help
    keeps a docstring's line breaks in the command list (`users --help` broke a sentence after
    "head this"), while the terminal wraps a paragraph by itself. Paragraphs stay apart."""
    for command in typer_app.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        command.help = "\n\n".join(" ".join(line.strip() for line in part.splitlines()) for part in doc.split("\n\n"))
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


_reflow_help(app)


def main() -> None:
    """Console-script entry point.

    Usage errors (a missing argument, an unknown option, a bad value) are one `error:` line
    with exit code 2, like every other refusal, instead of Click's boxed usage panel.
    """
    if os.environ.get("TRUSTFORGE_DEBUG"):
        app()
        return
    try:
        code = app(standalone_mode=False, prog_name="trustforge")
    except TrustForgeError as exc:  # errors raised outside a command body
        _error(str(exc))
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `trustforge models`: the help is printed already
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        path = getattr(ctx, "command_path", None)
        _error(f"{path}: {exc.format_message()} (`{path} --help` shows the usage)" if path else exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted", highlight=False)
        sys.exit(1)
    code = code if isinstance(code, int) else 0
    if code == 0 and "TORCHELASTIC_RUN_ID" in os.environ:
        _leave_as_a_rank()
    sys.exit(code)


def _leave_as_a_rank() -> None:
    """End a torchrun worker that finished its command, without the interpreter's teardown.

    Why: with torch 2.13 and gloo, a process that has trained with DDP and left its process group
    sometimes aborts while the interpreter shuts down (SIGABRT, "terminate called without an
    active exception"), and its launcher then fails a job whose run is complete. Reproduced
    without TrustForge, on a loaded 2-core machine: a 2-process torchrun of a plain DDP loop that
    calls destroy_process_group aborted in 3 of 30 launches; ending with os._exit, in 0 of 30.
    Everything the command writes is written and closed by now; the output streams and the
    logging handlers are flushed here.
    """
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
