"""Tabular defaults against scikit-learn's on public tables (issue 17 item 1).

For each table of `bench/_tables.py` and each seed, a minimal spec (source, target, task and
`model.kind`; every other field default, no hand-tuning) is prepared and trained with
TrustForge's own data stage and Trainer, and scored on its test rows. On the same split (the
test rows TrustForge held out; the baselines fit on all the other rows, the rows TrustForge
trains and validates on) scikit-learn fits, with defaults:

- linear: LogisticRegression (classification) or RidgeCV (regression) after median / most
  frequent imputation, standard scaling and one-hot encoding;
- hgb: HistGradientBoostingClassifier / Regressor, categories native (`categorical_features="from_dtype"`).

Score: accuracy (classification) or R² (regression), in points (× 100). The baseline of a
table is the better of linear and hgb by their mean over the seeds (chosen on test: in the
baseline's favour). Printed: each model's score per table (mean over seeds), the difference
of each TrustForge kind from the better baseline with a 95 % interval (paired bootstrap over
test rows within each seed, averaged over seeds), the mean rank of every model over all
(table, seed) pairs, and the mean difference over tables with its interval.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tabular.py                          # all tables, 3 seeds, the default kind
    OMP_NUM_THREADS=1 .venv/bin/python bench/tabular.py --kinds tabm,mlp,ft_transformer --tables wine,pima --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _tables import TABLES, Table, write_csv  # noqa: E402

from trustforge.data import default_model_kind, prepare  # noqa: E402
from trustforge.evaluate import task_of  # noqa: E402
from trustforge.models import build_model  # noqa: E402
from trustforge.spec import TaskSpec  # noqa: E402
from trustforge.train import Trainer, seeded  # noqa: E402

BASELINES = ("linear", "hgb")


def minimal_spec(table: Table, path: Path, kind: str | None, seed: int) -> TaskSpec:
    """What a new user writes: the source, target and task (and the model kind, unless default)."""
    spec = {"name": f"bench-{table.name}", "task": table.task, "data": {"source": f"csv:{path}", "target": table.target}}
    spec["train"] = {"seed": seed}
    if kind is not None:  # "tabm:k=8:dropout=0.2" sets model fields (for exploring; the bench's figures use bare kinds)
        name, *options = kind.split(":")
        spec["model"] = {"kind": name, **{k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options)}}
    return TaskSpec.model_validate(spec)


def fit_trustforge(spec: TaskSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(per-row correctness or (prediction, truth) pairs, test rows, test targets, fit seconds) of one minimal spec."""
    data = prepare(spec)
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    trainer = Trainer.from_spec(spec, data, task_of(spec))
    t0 = time.perf_counter()
    trainer.fit(model, data.train, data.validation)
    seconds = time.perf_counter() - t0
    out = trainer.predict(data.test.inputs, mixed_precision=False)
    order = np.argsort(np.asarray(data.test_raw.rows))  # the baselines score the test rows in file order
    out, y = out[order], data.test.target.numpy()[order]
    if spec.task == "classification":
        pred = (out[:, 0] > 0).long().numpy() if out.shape[1] == 1 else out.argmax(1).numpy()
        # the class names, so they compare with the baselines' predictions of the raw labels
        names = np.asarray(data.schema.classes, dtype=object)
        return names[pred], np.sort(data.test_raw.rows), names[y.astype(int)], seconds
    return out[:, 0].numpy().astype(np.float64), np.sort(data.test_raw.rows), y.astype(np.float64), seconds


def fit_baseline(name: str, table: Table, frame: pd.DataFrame, test_rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, truth) on the test rows of a scikit-learn baseline with defaults."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x = frame.drop(columns=[table.target])
    y = frame[table.target]
    if table.task == "classification":
        y = y.astype(str)
    cats = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c])]
    nums = [c for c in x.columns if c not in cats]
    test = np.zeros(len(frame), dtype=bool)
    test[test_rows] = True
    cls = table.task == "classification"
    if name == "linear":
        pre = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
                ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")), cats),
            ]
        )
        est = make_pipeline(pre, LogisticRegression(max_iter=5000) if cls else RidgeCV())
        xs = x.copy()
        for c in cats:
            xs[c] = xs[c].astype(object).where(xs[c].notna(), "missing").astype(str)
    else:
        xs = x.copy()
        for c in cats:
            xs[c] = xs[c].astype("category")
        kw = {"random_state": seed, "categorical_features": "from_dtype"}
        est = HistGradientBoostingClassifier(**kw) if cls else HistGradientBoostingRegressor(**kw)
    est.fit(xs[~test], y[~test])
    return np.asarray(est.predict(xs[test])), np.asarray(y[test])


def scores(pred: np.ndarray, truth: np.ndarray, task: str) -> np.ndarray:
    """Per-row terms whose mean is the score's ingredient: correctness, or squared error."""
    if task == "classification":
        return (pred.astype(str) == truth.astype(str)).astype(np.float64)
    return (pred - truth) ** 2


def score(terms: np.ndarray, truth: np.ndarray, task: str) -> float:
    """Accuracy or R² in points."""
    if task == "classification":
        return 100 * float(terms.mean())
    return 100 * (1 - float(terms.mean()) / float(np.var(truth)))


def run(tables: list[str], kinds: list[str], seeds: list[int], boot: int = 1000) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in tables:
            table = TABLES[name]
            path, _ = write_csv(table, tmp)
            frame = pd.read_csv(path)  # as TrustForge reads it: the rows' places are the file's
            per = {m: [] for m in [*kinds, *BASELINES]}  # per seed: (terms, truth)
            seconds = {m: 0.0 for m in per}
            for seed in seeds:
                test_rows = None
                for kind in kinds:
                    spec = minimal_spec(table, path, None if kind == "default" else kind, seed)
                    pred, test_rows, truth, sec = fit_trustforge(spec)
                    per[kind].append((scores(pred, truth, table.task), truth))
                    seconds[kind] += sec
                for b in BASELINES:
                    t0 = time.perf_counter()
                    pred, truth = fit_baseline(b, table, frame, test_rows, seed)
                    seconds[b] += time.perf_counter() - t0
                    if table.task == "classification":  # the same rows in the same order as TrustForge's test split
                        assert (truth.astype(str) == per[kinds[0]][-1][1].astype(str)).all(), f"{name}: test rows differ"
                    per[b].append((scores(pred, truth, table.task), truth))
            rows.append(_summarise(table, per, seconds, kinds, rng, boot))
            _print_row(rows[-1], kinds)
    return _overall(rows, kinds, rng, boot)


def _summarise(table: Table, per: dict, seconds: dict, kinds: list[str], rng: np.random.Generator, boot: int) -> dict:
    mean = {m: float(np.mean([score(t, y, table.task) for t, y in v])) for m, v in per.items()}
    best = max(BASELINES, key=lambda b: mean[b])
    diffs, draws = {}, {}
    for kind in kinds:
        # paired bootstrap of the test rows within each seed; the seeds' mean per draw
        d = np.zeros(boot)
        for (tk, y), (tb, yb) in zip(per[kind], per[best]):  # the same rows in the same order; each its own target units
            idx = rng.integers(0, len(y), size=(boot, len(y)))
            d += np.array([score(tk[i], y[i], table.task) - score(tb[i], yb[i], table.task) for i in idx])
        d /= len(per[kind])
        draws[kind] = d
        diffs[kind] = (mean[kind] - mean[best], float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5)))
    ranks = []  # per seed: rank of each model (1 best; ties share the mean rank)
    for s in range(len(per[kinds[0]])):
        vals = pd.Series({m: score(*per[m][s], table.task) for m in per})
        ranks.append(vals.rank(ascending=False, method="average"))
    return {"table": table, "mean": mean, "best": best, "diff": diffs, "draws": draws, "ranks": ranks, "seconds": seconds}


def _print_row(r: dict, kinds: list[str]) -> None:
    t = r["table"]
    cells = "  ".join(f"{m}={r['mean'][m]:6.2f}" for m in r["mean"])
    diffs = "  ".join(f"{k}-{r['best']}={d:+.2f} [{lo:+.2f}, {hi:+.2f}]" for k, (d, lo, hi) in r["diff"].items())
    secs = " ".join(f"{m}:{s:.1f}s" for m, s in r["seconds"].items())
    metric = "acc" if t.task == "classification" else "R2"
    print(f"{t.name:14s} {metric:3s} {cells}  | {diffs}  | {secs}", flush=True)


def _overall(rows: list[dict], kinds: list[str], rng: np.random.Generator, boot: int) -> dict:
    ranks = pd.DataFrame([r for row in rows for r in row["ranks"]])
    print("\nmean rank over (table, seed):", "  ".join(f"{m}={v:.2f}" for m, v in ranks.mean().items()))
    out = {"mean_rank": ranks.mean().to_dict(), "mean_diff": {}, "rows": rows}
    for kind in kinds:
        d = np.mean([r["diff"][kind][0] for r in rows])
        draws = np.mean([r["draws"][kind] for r in rows], axis=0)
        lo, hi = np.percentile(draws, [2.5, 97.5])
        wins = sum(r["diff"][kind][0] >= 0 for r in rows)
        out["mean_diff"][kind] = (float(d), float(lo), float(hi))
        print(
            f"{kind}: mean over {len(rows)} tables of (score - better of linear and hgb) = {d:+.2f} points [{lo:+.2f}, {hi:+.2f}]; "
            f"no worse on {wins}/{len(rows)} tables"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default=",".join(TABLES), help="comma-separated names from bench/_tables.py")
    p.add_argument("--kinds", default="default", help="model kinds (default: the kind a minimal spec gets)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--save", help="write the per-table results to this JSON file (to combine runs of parts of the list)")
    p.add_argument("--combine", help="comma-separated JSON files of --save: print the summary over all their tables, train nothing")
    args = p.parse_args(argv)
    if args.combine:
        rows = [_row_from_json(r) for f in args.combine.split(",") for r in json.loads(Path(f).read_text())]
        for r in rows:
            _print_row(r, list(r["diff"]))
        _overall(rows, list(rows[0]["diff"]), np.random.default_rng(0), 0)
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    kinds = args.kinds.split(",")
    print(f"default model kind for a table: {default_model_kind('classification', 'csv:x.csv')}")
    out = run(args.tables.split(","), kinds, list(range(args.seeds)))
    if args.save:
        Path(args.save).write_text(json.dumps([_row_to_json(r) for r in out["rows"]]))
    return 0


def _row_to_json(r: dict) -> dict:
    return {
        "table": r["table"].name,
        **{k: r[k] for k in ("mean", "best", "diff", "seconds")},
        "draws": {k: v.tolist() for k, v in r["draws"].items()},
        "ranks": [x.to_dict() for x in r["ranks"]],
    }


def _row_from_json(d: dict) -> dict:
    return {
        **d,
        "table": TABLES[d["table"]],
        "draws": {k: np.asarray(v) for k, v in d["draws"].items()},
        "ranks": [pd.Series(x) for x in d["ranks"]],
    }


if __name__ == "__main__":
    raise SystemExit(main())
