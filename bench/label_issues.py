"""Label errors: our confident learning beside cleanlab's `find_label_issues`, and what `drop` recovers.

For each set (digits with the CNN of examples/digits_cnn.yaml, breast cancer with the MLP of
examples/breast_cancer_mlp.yaml) and seed: 5 % of the training split's labels are flipped to
another class at random (seeded); `trustforge.train.cross_fit` makes out-of-fold probabilities
with the run's model kind (`data.clean` defaults: 5 folds, min(max_epochs, 20) epochs); our
finder and cleanlab's (its defaults) flag rows on the same probabilities, and each is scored by
precision and recall at the number it flagged. Then the spec's model trains on the clean, the
noisy and the cleaned (`drop`) training split and is scored on the untouched test split:
recovered = (cleaned - noisy) / (clean - noisy) of the accuracy.

    PYTHONPATH=src nice -n 10 python bench/label_issues.py [--seeds 0,1,2] [--sets digits,breast_cancer] [--no-retrain]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from trustforge.data import LabelIssues, clean_training, find_label_issues, prepare
from trustforge.evaluate import task_of
from trustforge.models import build_model
from trustforge.spec import load_spec
from trustforge.train import DEFAULT_MAX_EPOCHS, Trainer, cross_fit, seeded

SPECS = {"digits": "examples/digits_cnn.yaml", "breast_cancer": "examples/breast_cancer_mlp.yaml"}


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


def accuracy_on_test(spec, data) -> float:
    with seeded(spec.train.seed):
        model = build_model(spec, data.schema)
    trainer = Trainer.from_spec(spec, data, task_of(spec))
    trainer.fit(model, data.train, data.validation)
    out = trainer.predict(data.test.inputs, mixed_precision=False)
    pred = out.argmax(-1) if out.shape[-1] > 1 else (out[:, 0] > 0).long()
    return float((pred == data.test.target).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sets", default="digits,breast_cancer")
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--no-retrain", action="store_true", help="skip the accuracy part (three trainings per seed)")
    args = ap.parse_args()
    from cleanlab.filter import find_label_issues as cleanlab_find

    torch.set_num_threads(1)  # small networks: a second thread only spins on a busy machine
    for name in args.sets.split(","):
        spec = load_spec(SPECS[name])
        data = prepare(spec)
        task = task_of(spec)
        epochs = spec.data.clean.epochs or min(spec.train.max_epochs, DEFAULT_MAX_EPOCHS)
        clean_acc = None if args.no_retrain else accuracy_on_test(spec, data)
        rows = []
        for seed in (int(s) for s in args.seeds.split(",")):
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
            if clean_acc is not None:
                noisy_acc = accuracy_on_test(spec, noisy)
                dropped_acc = accuracy_on_test(spec, clean_training(spec, noisy, ours, "drop"))
                lost = clean_acc - noisy_acc
                row |= {"acc_clean": clean_acc, "acc_noisy": noisy_acc, "acc_drop": dropped_acc}
                row["recovered"] = (dropped_acc - noisy_acc) / lost if lost > 0 else float("nan")
            rows.append(row)
            print(name, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if isinstance(rows[0][k], float)}
        print(name, "MEAN", " ".join(f"{k}={v:.3f}" for k, v in mean.items()), flush=True)
        if clean_acc is not None:
            loss = clean_acc - mean["acc_noisy"]
            print(
                name,
                f"mean recovered (of the mean loss) = {(mean['acc_drop'] - mean['acc_noisy']) / loss:.3f}" if loss > 0 else "no mean loss",
            )


if __name__ == "__main__":
    main()
