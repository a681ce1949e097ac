"""`trustforge attack MODEL`: FGSM and PGD on a verified model, and how its score falls.

The model is resolved and verified as `evaluate`, `serve` and `monitor` do it (a package folder
or a registry URI); the attacks and the figures are `trustforge.evaluate.robustness`'s, the same
as a run's evidence. Library errors (`TrustForgeError`) propagate to the main command, which
prints them as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["attack"]

out = Console()

# The spec's field names as this command's flags, for error messages.
_FLAGS = {
    "attacks": "--attack",
    "epsilons": "--epsilon",
    "steps": "--steps",
    "rows": "--rows",
    "norm": "--norm",
    "step_size": "--step-size",
    "budgets": "--budget",
}


def attack(
    package: str = typer.Argument(..., metavar="MODEL", help="a model package folder, or a model URI (models:/NAME@alias, models:/NAME/3)"),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="a spec (its test split) or a labelled CSV/Parquet file or image/WAV folder; "
        "default: the test split of the spec the package was trained with, prepared again",
    ),
    attacks: Optional[list[str]] = typer.Option(None, "--attack", help="fgsm or pgd (repeat for both; default both)"),
    epsilons: Optional[list[str]] = typer.Option(
        None,
        "--epsilon",
        help="budgets in the input's unit, each > 0 and at most the input's largest (1 for the pixel range, 10 standard deviations; "
        "L2: times sqrt(movable elements)) (repeat, or comma-separated; default per kind of input)",
    ),
    budgets: Optional[list[str]] = typer.Option(
        None, "--budget", help="text models: character edits per row (repeat, or comma-separated; default 1, 2, 4, 8)"
    ),
    norm: Optional[str] = typer.Option(None, "--norm", help="inf (L-infinity, the default) or 2 (L2)"),
    steps: Optional[int] = typer.Option(None, "--steps", help="PGD steps (default 20)"),
    step_size: Optional[float] = typer.Option(None, "--step-size", help="PGD step as a fraction of epsilon (default 0.25)"),
    random_start: bool = typer.Option(False, "--random-start", help="PGD starts from a random point of the ball"),
    rows: Optional[int] = typer.Option(
        None,
        "--rows",
        help="rows attacked at most (a stratified, seeded sample); default evaluate.robustness.rows' default, 200 (text: 100)",
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="default: the model's train.seed"),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch CPU threads; default: OMP_NUM_THREADS if set, else as training chooses (1 for a model under 1M parameters)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the evidence as JSON instead of a table"),
    public_key: Optional[Path] = typer.Option(
        None, "--public-key", help="PEM public key of the workspace that signed a package made elsewhere"
    ),
) -> None:
    """Attack a model with FGSM and PGD within its inputs' valid range, and print its score at each budget.

    Images move within the pixel range [0, 1] (epsilon a fraction of it); table rows move their
    numeric columns within the training range (epsilon in standard deviations), categories and
    flags stay; audio moves its log-mel spectrogram within the training range of each band. Text
    models meet a character-edit attack (typos on the most important words) under `--budget`.
    """
    from trustforge.errors import ModelError
    from trustforge.evaluate import attack_refusal, check_attack_fields, robustness

    settings = _settings(attacks, epsilons, norm, steps, step_size, random_start, rows, budgets)
    model = _load_model(package, public_key)
    reason = attack_refusal(model)
    if reason is not None:
        raise ModelError(f"{package}: cannot attack this model: {reason}")
    check_attack_fields(model, settings)  # a flag of the other family of attack: refused before the data is prepared
    raw, where = _labelled(model, data)
    _check_enough_rows(raw, where if data is None else f"--data {data.name}")
    # As `train` does: torch's default (a thread per core) makes a small model's attack several
    # times slower on a busy machine, since its per-batch operations are too small to split.
    from trustforge.settings import Settings
    from trustforge.train import apply_threads

    apply_threads(threads, model.module, from_env=Settings.from_env().threads_from_env)
    evidence = robustness(model, raw, settings, seed=model.spec.train.seed if seed is None else seed, examples=0)
    if as_json:
        out.print(json.dumps(evidence), highlight=False, soft_wrap=True)
        return
    out.print(_table(evidence, where))
    flip = _flip_line(evidence)
    if flip:
        out.print(flip, highlight=False, soft_wrap=True)
    norm = {"inf": "L∞", "2": "L2"}.get(evidence["norm"], evidence["norm"])
    out.print(f"budget: {escape(evidence['budget'])} ({norm}); model: {escape(evidence['hardened'])}", highlight=False)


def _settings(attacks, epsilons, norm, steps, step_size, random_start, rows, edits=None):
    """The flags as a `RobustnessSpec`; a bad one is one error naming the flag."""
    from trustforge.errors import SpecError
    from trustforge.spec import load_spec

    budgets = None
    if epsilons:
        budgets = []
        for text in epsilons:
            for part in str(text).split(","):
                try:
                    budgets.append(float(part))
                except ValueError:
                    raise SpecError(f"--epsilon must be numbers above 0; got {part.strip()!r}") from None
    counts = None
    if edits:
        counts = []
        for text in edits:
            for part in str(text).split(","):
                try:
                    counts.append(int(part))
                except ValueError:
                    raise SpecError(f"--budget must be whole numbers of character edits, at least 1; got {part.strip()!r}") from None
    # Only the flags given: the others keep RobustnessSpec's defaults (the same as a run's), and a
    # flag of the other family of attack (`--epsilon` on a text model) can be told from a default.
    given = {
        "norm": norm.strip().lower() if norm is not None else None,
        "steps": steps,
        "rows": rows,
        "epsilons": budgets,
        "budgets": counts,
    }
    fields: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if random_start:
        fields["random_start"] = True
    if attacks:
        fields["attacks"] = [a.lower() for a in attacks]
    if step_size is not None:
        fields["step_size"] = step_size
    # Validated as the spec's evaluate.robustness section, so a bad flag reads as a bad spec field
    # does ("must be an integer in [10, 100000]; got 0", not pydantic's wording) and exits 2, a
    # usage error, as Typer's own refusals do.
    try:
        return load_spec({"evaluate": {"robustness": fields}}).evaluate.robustness
    except SpecError as exc:
        message = str(exc)
        section = "evaluate.robustness."
        name = message.removeprefix(section).split(" ", 1)[0].split("[", 1)[0]
        if message.startswith(section) and name in _FLAGS:
            message = _FLAGS[name] + message[len(section) + len(name) :]
        raise SpecError(message) from None


def _load_model(source: str, public_key: Path | None):
    """A verified model from a package folder or a registry URI, as `trustforge evaluate` loads it."""
    from trustforge.errors import DataError
    from trustforge.package import Model

    if source.startswith("models:/"):
        from trustforge.registry import Registry

        if public_key is not None:
            raise DataError(f"--public-key is for a package folder made elsewhere; {source} is verified with this workspace's keys")
        with Registry() as registry:
            return registry.load_model(source)
    return Model.load(Path(source), public_key=public_key)


def _labelled(model, data: Path | None):
    """(labelled raw data, what it is, for the table's title)."""
    from trustforge.data import input_kind, prepare
    from trustforge.settings import Settings

    if data is None or data.suffix.lower() in (".yaml", ".yml"):
        from trustforge.errors import DataError
        from trustforge.spec import load_spec

        cache_dir = Settings.from_env().cache_dir
        if data is None:
            try:
                prepared = prepare(model.spec, cache_dir=cache_dir, key=model.pii_key)
            except DataError as exc:
                raise DataError(
                    f"the package stores no test data, and its spec's source cannot be read here ({exc}); pass --data"
                ) from None
        else:
            from trustforge.package import spec_prepared

            # As `trustforge evaluate MODEL SPEC`: the data set the model was trained on, split another
            # way, would put rows the model trained on in the test split and flatter its robustness.
            prepared = spec_prepared(model, load_spec(data), where=f"--data {data.name}", cache_dir=cache_dir)
            _check_fits(model.schema, prepared.schema, data.name)
        return prepared.test_raw, ("the test split of the model's own spec" if data is None else f"the test split of {data.name}")
    raw = model.read_input(data)
    return input_kind(raw).labelled(model.schema, raw), data.name


def _check_enough_rows(raw, where: str) -> None:
    """Refuse fewer labelled rows than `--rows` takes at least: a sweep over one row printed a
    full table of accuracies of 0 or 1 (`MIN_ATTACK_ROWS`, as a run's evidence skips it)."""
    from trustforge.errors import DataError
    from trustforge.spec import MIN_ATTACK_ROWS

    if len(raw) < MIN_ATTACK_ROWS:
        raise DataError(f"{where} holds {len(raw)} labelled row(s); an attack needs at least {MIN_ATTACK_ROWS} (as --rows does)")


def _describe(schema) -> str:
    """What a schema's rows are, in a few words: its kind of input, its target, its columns."""
    text = f"{schema.modality} inputs, target {schema.target!r}"
    names = [c.name for c in schema.columns]
    if names:
        shown = ", ".join(names[:6]) + (f", … ({len(names)} columns)" if len(names) > 6 else "")
        text += f", columns {shown}"
    if schema.image_shape:
        text += f", images {'×'.join(str(d) for d in schema.image_shape)}"
    return text


def _check_fits(expected, given, where: str) -> None:
    """Refuse, in one DataError, a spec whose data are not what the model takes (another kind of
    input, another target, other columns), before anything is encoded: encoding them would fail
    deep inside a feature type with an error that names neither."""
    from trustforge.errors import DataError

    names = [c.name for c in expected.columns]
    missing = [n for n in names if n not in {c.name for c in given.columns}]
    shape = expected.image_shape and given.image_shape and tuple(expected.image_shape) != tuple(given.image_shape)
    if given.modality != expected.modality or given.target != expected.target or missing or shape:
        raise DataError(
            f"--data {where}: its data are not what the model takes; the model takes {_describe(expected)}, "
            f"the spec's data are {_describe(given)}"
        )


def _budget(ev: dict[str, Any], e: float) -> str:
    """A budget as the table shows it: character edits for the text attack, else ε."""
    return f"{e:g} edit{'' if e == 1 else 's'}" if ev.get("norm") == "edits" else f"ε {e:g}"


def _flip_line(ev: dict[str, Any]) -> str | None:
    """The median smallest budget that flips a prediction, in the attack's unit; None without one."""
    flip = ev.get("smallest_flip")
    if not flip:
        return None
    median = "beyond the sweep" if flip["median"] is None else f"{flip['median']:.4g}"
    unit = "number of character edits" if ev.get("norm") == "edits" else "epsilon"
    return f"median smallest {unit} that flips a prediction ({flip['attack']}): {median}"


def _table(ev: dict[str, Any], where: str) -> Table:
    metric = ev["metric"]
    table = Table(title=f"{metric} under attack on {escape(where)} ({ev['rows']} rows, clean {ev['clean']:.4f})")
    table.add_column("attack")
    for e in ev["epsilons"]:
        table.add_column(_budget(ev, e), justify="right")
    unit = "edits" if ev.get("norm") == "edits" else "ε"
    table.add_column(f"{unit} halving" if metric == "accuracy" else f"{unit} doubling", justify="right")
    table.add_column("samples/s", justify="right")
    for name, a in ev["attacks"].items():
        label = name.upper() + (f"-{ev['steps']}" if name == "pgd" else "")
        cells = []
        for p in a["points"]:
            cell = f"{p[metric]:.4f}"
            if "success_rate" in p:
                cell += f" ({p['success_rate']:.0%} flipped)"
            cells.append(cell)
        half = a["halving_epsilon"]
        table.add_row(label, *cells, "beyond" if half is None else f"{half:.4g}", f"{a['samples_per_second']:.0f}")
    return table
