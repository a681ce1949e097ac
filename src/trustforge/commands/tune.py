"""`trustforge tune SPEC`: run (or resume) the spec's hyperparameter study, then package and register its best trial.

Thin: parse, call `trustforge.tune.tune`, print the leaderboard. Library errors
(`TrustForgeError`) propagate to the main command, which prints them as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def tune(
    spec: Path = typer.Argument(..., help="the YAML spec, with a tune: section"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="trials in the study in all (default tune.trials)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=1, help="seconds after which no new trial starts"),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="local worker processes: at most the CPU cores this process may use (2 on one core); no more start than the study has trials to run",
    ),
    storage: Optional[str] = typer.Option(
        None,
        "--storage",
        help="sqlite:///PATH, postgresql://..., journal:PATH or registry (TRUSTFORGE_DB_URL); default a journal file in the workspace",
    ),
    study: Optional[str] = typer.Option(
        None, "--study", help="the study's name: letters, digits, '.', '_', '-' (default the spec's name); an existing study resumes"
    ),
    no_register: bool = typer.Option(False, "--no-register", help="do not register the best model"),
    ensemble: Optional[int] = typer.Option(
        None, "--ensemble", min=1, max=16, help="package an ensemble of the best N trials (default tune.ensemble; 1: the best alone)"
    ),
    top: int = typer.Option(10, "--top", min=1, help="leaderboard rows to print"),
) -> None:
    """Search the spec's tune.space with Optuna (TPE, pruning), then package and register the best trial."""
    from trustforge.commands import local
    from trustforge.evaluate import write_report
    from trustforge.tune import tune as run_study

    result = run_study(
        spec, trials=trials, timeout=timeout, workers=workers, storage=storage, study=study, register=not no_register, ensemble=ensemble
    )
    s = result.summary
    counts = ", ".join(f"{n} {state}" for state, n in sorted(s["counts"].items()))
    typer.echo(f"study {result.study} ({result.storage['kind']}): {counts}; {s['total_epochs']} epochs in all")
    typer.echo(f"ranked by {result.metric} {s['ranked_on']} ({result.direction})")
    typer.echo(f"{'trial':>5}  {'state':<9} {result.metric:>12}  {'epochs':>6}  params")
    for row in s["leaderboard"][:top]:
        value = f"{row['value']:.4f}" if row["value"] is not None else "-"
        params = ", ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
        typer.echo(f"{row['trial']:>5}  {row['state']:<9} {value:>12}  {row['epochs'] or 0:>6}  {params}")
    typer.echo(f"best: trial {result.best_trial}, {result.metric} {result.best_value:.4f}")
    ensemble = s.get("ensemble")
    if ensemble and ensemble.get("alone"):
        typer.echo(f"tune.ensemble {ensemble['asked']}: the best trial stands alone ({ensemble['alone']})")
    elif ensemble and s.get("retrained", {}).get("ensemble"):
        typer.echo(f"ensemble: trials {', '.join(map(str, ensemble['trials']))}, each retrained as a member (model.kind ensemble)")
    if result.model_uri:
        typer.echo(f"registered: {result.model_uri}")
    # Folders in the workspace, named from the workspace as the user set it (`commands.local`).
    if result.run_dir is not None:  # the retrained run, else the best trial's own (as `train --no-register` says)
        typer.echo(f"run:     {local(str(result.run_dir))}")
        if (result.run_dir / "package").is_dir():
            typer.echo(f"package: {local(str(result.run_dir / 'package'))}")
    if result.run is not None:
        typer.echo(f"report:  {local(str(write_report(result.run.run_dir)))}")


def _short(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v).replace(" ", "")
