"""Label errors: our confident learning beside cleanlab's `find_label_issues`, and what `drop` recovers.

For each set (digits with the CNN of examples/digits_cnn.yaml, breast cancer with the MLP of
examples/breast_cancer_mlp.yaml, and `breast_cancer_default`: breast cancer under a spec with every
field default, so TabM with a validation split and early stopping) and seed: 5 % of the training split's labels are flipped to
another class at random (seeded); `trustforge.train.cross_fit` makes out-of-fold probabilities
with the run's model kind (`data.clean` defaults: 5 folds, min(max_epochs, 20) epochs); our
finder and cleanlab's (its defaults) flag rows on the same probabilities, and each is scored by
precision and recall at the number it flagged. Then the spec's model trains on the clean, the
noisy and the cleaned (`drop`) training split, and on the noisy split without exactly the flipped
rows (`oracle`, the most dropping could give back), and is scored on the untouched test split:
recovered = mean(cleaned - noisy) / mean(clean - noisy) of the accuracy, over the seeds, with a
bootstrap interval over the seeds.

One test split is too small to tell: breast cancer's holds 114 rows and 5 % noise costs its MLP
about one of them. `--resplit` gives each seed its own stratified train/test split (and model
seed: train.seed = 1000 + seed), so the clean, noisy and cleaned models of a seed share a split
and the flips while the means pool every seed's test rows:

`--diagnose` adds why dropping gives back what it does: the out-of-fold accuracy against the labels
before the flips, beside the same cross-fitting on those clean labels (whose misses are the hard
rows: how many wrongly flagged and how many missed flips are hard), and a model trained without
only the flagged rows that were flipped (`flipped_flags`: the finder's misses without its false
flags; against `drop` it prices the false flags, against `oracle` the missed flips). `--rows PATH`
appends each seed's figures to PATH as JSON lines.

    PYTHONPATH=src nice -n 10 python bench/label_issues.py [--seeds 0,1,2 | --seeds 0-99] [--sets digits,breast_cancer] [--resplit]
        [--no-retrain] [--diagnose] [--rows PATH]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from trustforge.data import LabelIssues, clean_training, find_label_issues, prepare
from trustforge.evaluate import task_of
from trustforge.models import build_model
from trustforge.spec import load_spec
from trustforge.train import DEFAULT_MAX_EPOCHS, Trainer, cross_fit, seeded

SPECS = {
    "digits": "examples/digits_cnn.yaml",
    "breast_cancer": "examples/breast_cancer_mlp.yaml",
    # The spec a new user writes: every field default, so the default tabular model (TabM) with its
    # validation split and early stopping.
    "breast_cancer_default": {"name": "bc-default", "data": {"source": "builtin:breast_cancer", "target": "target"}},
}


def flip_labels(spec, data, rate: float, seed: int):
    """`data` with `rate` of its training labels moved to another class (seeded), and the flipped rows."""
    y = data.train.target.numpy()
    k = len(data.schema.classes)
    rng = np.random.default_rng([seed, 0xF11B])
    flipped = np.sort(rng.choice(len(y), size=round(rate * len(y)), replace=False))
    new = y.copy()
    new[flipped] = (y[flipped] + rng.integers(1, k, size=len(flipped))) % k
    mask = np.zeros(len(y), dtype=bool)
    mask[flipped] = True
    flips = LabelIssues(mask, flipped, y, new, np.ones(len(y)), np.zeros((k, k), dtype=np.int64))
    return clean_training(spec, data, flips, "relabel"), mask


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hit = int((flagged & truth).sum())
    return hit / max(int(flagged.sum()), 1), hit / max(int(truth.sum()), 1)


def scores_on_test(spec, data) -> tuple[float, float]:
    """Test accuracy and log loss (mean negative log probability of the true class) of the spec's model trained on `data`."""
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    trainer = Trainer.from_spec(spec, data, task_of(spec))
    trainer.fit(model, data.train, data.validation)
    out = trainer.predict(data.test.inputs, mixed_precision=False).float()
    if out.shape[-1] > 1:
        pred, logp = out.argmax(-1), torch.log_softmax(out, -1)
    else:
        pred, logp = (out[:, 0] > 0).long(), torch.cat([torch.nn.functional.logsigmoid(-out), torch.nn.functional.logsigmoid(out)], -1)
    target = data.test.target.long()
    return float((pred == target).float().mean()), float(-logp[torch.arange(len(target)), target].mean())


def accuracy_on_test(spec, data) -> float:
    return scores_on_test(spec, data)[0]


def dropped(spec, data, mask: np.ndarray):
    """`data` with the training rows of `mask` left out (as `data.clean.label_issues: drop` does)."""
    y = data.train.target.numpy()
    k = len(data.schema.classes)
    rows = LabelIssues(mask, np.flatnonzero(mask), y, y, np.ones(len(y)), np.zeros((k, k), dtype=np.int64))
    return clean_training(spec, data, rows, "drop")


def seeds_of(text: str) -> list[int]:
    """`0,1,2` or `0-99`."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def recovery(rows: list[dict], metric: str = "acc") -> dict[str, float]:
    """Means with standard errors over the seeds, and recovered = mean gain / mean loss with a 90 %
    bootstrap interval over the seeds, for `drop`, `oracle` and (with --diagnose) `flipped_flags`; `metric` "acc" (accuracy, higher is
    better) or "nll" (log loss, lower is better)."""
    sign = -1.0 if metric == "nll" else 1.0
    clean, noisy = (sign * np.array([r[f"{metric}_{k}"] for r in rows]) for k in ("clean", "noisy"))
    n = len(rows)
    se = lambda x: float(np.std(x, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")  # noqa: E731
    out = {"seeds": n, "loss": float(np.mean(clean - noisy)), "loss_se": se(clean - noisy)}
    rng = np.random.default_rng(0)
    boot = rng.integers(0, n, size=(4000, n))
    for name in [arm for arm in ("drop", "oracle", "flipped_flags") if f"{metric}_{arm}" in rows[0]]:
        after = sign * np.array([r[f"{metric}_{name}"] for r in rows])
        gain = after - noisy
        out[f"{name}_gain"], out[f"{name}_gain_se"] = float(gain.mean()), se(gain)
        out[f"{name}_recovered"] = float(gain.mean() / out["loss"]) if out["loss"] > 0 else float("nan")
        lost = (clean - noisy)[boot].mean(axis=1)
        ratio = np.where(lost > 0, gain[boot].mean(axis=1) / np.where(lost > 0, lost, 1), np.nan)
        out[f"{name}_recovered_lo"], out[f"{name}_recovered_hi"] = (float(v) for v in np.nanpercentile(ratio, [5, 95]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sets", default="digits,breast_cancer")
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--resplit", action="store_true", help="each seed its own stratified train/test split (train.seed = 1000 + seed)")
    ap.add_argument("--rows", metavar="PATH", help="append each seed's figures to PATH, one JSON object a line")
    ap.add_argument("--no-retrain", action="store_true", help="skip the accuracy part (three trainings per seed)")
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="also: out-of-fold accuracy against the labels before the flips, clean-label out-of-fold models (which wrongly "
        "flagged rows and missed flips are hard), and (unless --no-retrain) a model trained without only the flagged rows that were flipped",
    )
    args = ap.parse_args()
    from cleanlab.filter import find_label_issues as cleanlab_find

    def scores(spec, data) -> dict[str, float]:
        return dict(zip(("acc", "nll"), scores_on_test(spec, data)))

    torch.set_num_threads(1)  # small networks: a second thread only spins on a busy machine
    for name in args.sets.split(","):
        spec = load_spec(SPECS[name])
        data = prepare(spec)
        task = task_of(spec)
        epochs = spec.data.clean.epochs or min(spec.train.max_epochs, DEFAULT_MAX_EPOCHS)
        clean = None if args.no_retrain or args.resplit else scores(spec, data)
        rows = []
        for seed in seeds_of(args.seeds):
            if args.resplit:
                spec = load_spec(SPECS[name])
                spec.train.seed = 1000 + seed
                data = prepare(spec)
                clean = None if args.no_retrain else scores(spec, data)
            noisy, truth = flip_labels(spec, data, args.rate, seed)
            t0 = time.perf_counter()
            proba = cross_fit(spec, noisy, task, noisy.train, folds=spec.data.clean.folds, epochs=epochs)
            fit_s = time.perf_counter() - t0
            labels = noisy.train.target.numpy()
            t0 = time.perf_counter()
            ours = find_label_issues(labels, proba)
            ours_s = time.perf_counter() - t0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                theirs = cleanlab_find(labels, proba, n_jobs=1)
                theirs_s = time.perf_counter() - t0
            p, r = precision_recall(ours.mask, truth)
            cp, cr = precision_recall(theirs, truth)
            row = {"seed": seed, "flipped": int(truth.sum()), "flagged": len(ours), "P": p, "R": r, "cleanlab_flagged": int(theirs.sum())}
            row |= {"cleanlab_P": cp, "cleanlab_R": cr, "same_flags": bool(np.array_equal(ours.mask, theirs))}
            row |= {"cross_fit_s": fit_s, "ours_ms": 1e3 * ours_s, "cleanlab_ms": 1e3 * theirs_s}
            if args.diagnose:
                # How good the out-of-fold probabilities are: their accuracy against the labels before
                # the flips, beside out-of-fold models trained on those clean labels; and how many of
                # the wrongly flagged rows those clean-label models also get wrong (hard rows).
                truth_y = data.train.target.numpy()
                clean_proba = cross_fit(spec, data, task, data.train, folds=spec.data.clean.folds, epochs=epochs)
                hard = clean_proba.argmax(axis=1) != truth_y
                row |= {"oof_acc_true": float((proba.argmax(axis=1) == truth_y).mean()), "clean_oof_acc_true": float((~hard).mean())}
                row |= {"false_flags": int((ours.mask & ~truth).sum()), "false_flags_hard": int((ours.mask & ~truth & hard).sum())}
                row |= {"missed_flips": int((~ours.mask & truth).sum()), "missed_flips_hard": int((~ours.mask & truth & hard).sum())}
            if clean is not None:
                noisy_s = scores(spec, noisy)
                drop_s = scores(spec, clean_training(spec, noisy, ours, "drop"))
                oracle_s = drop_s if np.array_equal(ours.mask, truth) else scores(spec, dropped(spec, noisy, truth))
                arms = {"clean": clean, "noisy": noisy_s, "drop": drop_s, "oracle": oracle_s}
                if args.diagnose:  # the flagged rows that were flipped, and only those: the finder's misses without its false flags
                    arms["flipped_flags"] = scores(spec, dropped(spec, noisy, ours.mask & truth))
                for m in ("acc", "nll"):
                    row |= {f"{m}_{arm}": s[m] for arm, s in arms.items()}
            rows.append(row)
            if args.rows:
                with open(args.rows, "a") as out:
                    out.write(json.dumps({"set": name, "resplit": args.resplit, **row}) + "\n")
            print(name, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)}
        print(name, "MEAN", " ".join(f"{k}={v:.3f}" for k, v in mean.items()), flush=True)
        if "acc_clean" in mean:
            print(
                name,
                f"over {len(rows)} seeds ({len(rows) * len(data.test)} test rows): accuracy clean {mean['acc_clean']:.4f}, "
                f"noisy {mean['acc_noisy']:.4f}, after drop {mean['acc_drop']:.4f}, without exactly the flipped rows {mean['acc_oracle']:.4f}; "
                f"log loss {mean['nll_clean']:.4f}, {mean['nll_noisy']:.4f}, {mean['nll_drop']:.4f}, {mean['nll_oracle']:.4f}",
            )
            for metric, what in (("acc", "accuracy"), ("nll", "log loss")):
                f = recovery(rows, metric)
                print(name, f"{what}: lost to the noise {f['loss']:.4f} ± {f['loss_se']:.4f} (standard error)")
                for how in [arm for arm in ("drop", "oracle", "flipped_flags") if f"{arm}_gain" in f]:
                    print(
                        name,
                        f"{what}: {how} gained {f[how + '_gain']:+.4f} ± {f[how + '_gain_se']:.4f}, recovered {f[how + '_recovered']:.2f} "
                        f"of the mean loss (90 % bootstrap over seeds {f[how + '_recovered_lo']:.2f} to {f[how + '_recovered_hi']:.2f})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
