"""Label errors (`data.clean.label_issues`): confident learning held to cleanlab's, on flipped labels.

The figures: with 5 % of the training labels flipped (seeded), out-of-fold probabilities of the
run's own model kind let the finder flag the flipped rows at precision and recall >= 0.8, the
same as cleanlab's `find_label_issues` on the same probabilities (identical flags). On digits
training without the flagged rows recovers at least half of the test accuracy the noise cost; on
breast cancer it does not (0.30 over 140 splits), and the test holds detection only (see
`test_breast_cancer_with_5_percent_flipped`).
`bench/label_issues.py` measures the same over many seeds (`--resplit`: many splits).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

from trustforge.data import clean_training, find_label_issues, prepare
from trustforge.errors import SpecError
from trustforge.evaluate import task_of
from trustforge.pipeline import run
from trustforge.spec import load_spec
from trustforge.train import DEFAULT_MAX_EPOCHS, clean_labels, cross_fit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from label_issues import SPECS, accuracy_on_test, flip_labels, precision_recall  # noqa: E402

QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False, "privacy_audit": False}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_thread():
    # Small networks gain nothing from a second intra-op thread, and on a busy 2-core machine it
    # only spins (the breast-cancer test took 5x longer with two).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cleanlab(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes about classes with few rows
        return cleanlab_find_label_issues(labels, proba, n_jobs=1)


def test_the_flags_are_cleanlabs_on_the_same_probabilities():
    for seed in range(60):
        rng = np.random.default_rng(seed)
        k, n = int(rng.integers(2, 11)), int(rng.integers(20, 400))
        proba = rng.dirichlet(np.full(k, rng.uniform(0.05, 3.0)), size=n)
        labels = proba.argmax(axis=1)
        noisy = rng.random(n) < rng.uniform(0.0, 0.3)
        labels[noisy] = rng.integers(0, k, size=noisy.sum())
        if seed % 5 == 0 and k > 2:
            labels[labels == k - 1] = 0  # a class no row is labelled with
        ours = find_label_issues(labels, proba)
        assert np.array_equal(ours.mask, _cleanlab(labels, proba)), f"case {seed}: k={k} n={n}"
        # Ranked by the probability of the given label, lowest first; suggested: the most probable class.
        assert sorted(ours.ranked.tolist()) == np.flatnonzero(ours.mask).tolist()
        assert np.all(np.diff(proba[ours.ranked, labels[ours.ranked]]) >= 0)
        assert np.array_equal(ours.suggested, proba.argmax(axis=1))
        assert not np.any(ours.suggested[ours.mask] == labels[ours.mask])


def _found_and_recovered(name: str, seed: int) -> dict[str, float]:
    spec = load_spec(ROOT / SPECS[name])
    data = prepare(spec)
    noisy, truth = flip_labels(spec, data, 0.05, seed)
    epochs = min(spec.train.max_epochs, DEFAULT_MAX_EPOCHS)
    proba = cross_fit(spec, noisy, task_of(spec), noisy.train, folds=spec.data.clean.folds, epochs=epochs)
    labels = noisy.train.target.numpy()
    issues = find_label_issues(labels, proba)
    p, r = precision_recall(issues.mask, truth)
    cp, cr = precision_recall(_cleanlab(labels, proba), truth)
    clean_acc, noisy_acc = accuracy_on_test(spec, data), accuracy_on_test(spec, noisy)
    dropped_acc = accuracy_on_test(spec, clean_training(spec, noisy, issues, "drop"))
    return {"P": p, "R": r, "cP": cp, "cR": cr, "clean": clean_acc, "noisy": noisy_acc, "dropped": dropped_acc}


def _holds(f: dict[str, float]) -> None:
    assert f["P"] >= 0.8 and f["R"] >= 0.8, f
    assert abs(f["P"] - f["cP"]) <= 0.05 and abs(f["R"] - f["cR"]) <= 0.05, f
    assert f["noisy"] < f["clean"], f"the noise cost no accuracy, so there is nothing to recover: {f}"
    assert f["dropped"] - f["noisy"] >= 0.5 * (f["clean"] - f["noisy"]), f


def _found_on_its_own_split(name: str, seed: int) -> dict[str, float]:
    # As `bench/label_issues.py --resplit`: the seed draws the train/test split and the model's
    # seed (1000 + seed) and the flips.
    spec = load_spec(ROOT / SPECS[name])
    spec.train.seed = 1000 + seed
    data = prepare(spec)
    noisy, truth = flip_labels(spec, data, 0.05, seed)
    epochs = min(spec.train.max_epochs, DEFAULT_MAX_EPOCHS)
    proba = cross_fit(spec, noisy, task_of(spec), noisy.train, folds=spec.data.clean.folds, epochs=epochs)
    labels = noisy.train.target.numpy()
    flags = find_label_issues(labels, proba).mask
    p, r = precision_recall(flags, truth)
    cp, cr = precision_recall(_cleanlab(labels, proba), truth)
    # The same cross-fitting on the labels before the flips: the rows no model of this kind gets right.
    before = data.train.target.numpy()
    hard = cross_fit(spec, data, task_of(spec), data.train, folds=spec.data.clean.folds, epochs=epochs).argmax(axis=1) != before
    return {
        "P": p,
        "R": r,
        "cP": cp,
        "cR": cr,
        "oof_acc": float((proba.argmax(axis=1) == before).mean()),
        "clean_oof_acc": float((~hard).mean()),
        "false_flags": int((flags & ~truth).sum()),
        "false_flags_hard": int((flags & ~truth & hard).sum()),
    }


def test_breast_cancer_with_5_percent_flipped():
    # Detection only, on three splits of their own. bench/label_issues.py --resplit --seeds 0-139
    # (140 splits): precision 0.84 and recall 0.86 on average, a fifth of single splits under 0.8
    # (so one split is no test of the mean); the mean of three is >= 0.75 on 99.4 % of 5,000
    # random triples of those splits. Recovery is not asserted here because it does not hold and
    # a few splits cannot measure it: 5 % noise costs the MLP 0.0048 +- 0.0011 of test accuracy
    # (half a row of 114), and dropping the flagged rows wins back 0.30 of it (90 % interval
    # -0.07 to 0.57), dropping exactly the flipped rows 0.75 (README "Label errors": why).
    found = [_found_on_its_own_split("breast_cancer", seed) for seed in (0, 1, 2)]
    for f in found:  # the same flags as cleanlab's on the same probabilities
        assert (f["P"], f["R"]) == (f["cP"], f["cR"]), f
    assert np.mean([f["P"] for f in found]) >= 0.75 and np.mean([f["R"] for f in found]) >= 0.75, found
    # Why recovery stays low (bench --diagnose): the out-of-fold probabilities are about as good as
    # this model kind gets (against the labels before the flips, within 0.02 of out-of-fold models
    # trained on those labels), and most rows wrongly flagged are rows those clean-label models
    # get wrong too: hard rows, not a weakness of the cross-fitting that more folds would mend.
    for f in found:
        assert f["oof_acc"] >= f["clean_oof_acc"] - 0.02, f
    assert sum(f["false_flags_hard"] for f in found) >= 0.6 * sum(f["false_flags"] for f in found), found


@pytest.mark.slow
def test_digits_with_5_percent_flipped():
    _holds(_found_and_recovered("digits", 0))


def _noisy_csv(tmp_path: Path, rate: float = 0.05, seed: int = 0) -> tuple[Path, set[int]]:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(frame), size=round(rate * len(frame)), replace=False)
    frame.loc[flipped, "target"] = 1 - frame.loc[flipped, "target"]
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    return path, {int(i) + 1 for i in flipped}  # rows of the file, 1-based, header not counted


def _spec(path: Path, policy: str) -> dict:
    return {
        "name": f"cancer-{policy}",
        "data": {"source": f"csv:{path}", "target": "target", "split": {"test": 0.2, "validation": 0.0}, "clean": {"label_issues": policy}},
        "model": {"kind": "mlp", "hidden": [32]},
        "train": {"max_epochs": 15, "batch_size": 32, "early_stopping": None, "seed": 7},
        "evaluate": QUIET,
    }


def test_a_drop_run_lists_the_flipped_rows_of_the_file_and_trains_without_them(tmp_path):
    from trustforge.evaluate import write_report

    path, flipped = _noisy_csv(tmp_path)
    result = run(_spec(path, "drop"), progress=False, register=False)
    found = json.loads((result.run_dir / "label_issues.json").read_text())
    assert found["policy"] == "drop" and found["found"] == len(found["rows"]) > 0
    named = [int(r["row"].removeprefix("row ")) for r in found["rows"]]
    assert sum(r in flipped for r in named) >= 0.7 * len(named), (named, sorted(flipped))
    frame = pd.read_csv(path)
    for r in found["rows"]:  # the given label is the file's; the suggested one the other class
        given = str(frame.loc[int(r["row"].removeprefix("row ")) - 1, "target"])
        assert r["given"] == given and r["suggested"] != given
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    assert evidence["data"]["split_sizes"]["train"] == found["train_rows_after"] == found["train_rows_before"] - found["found"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())  # the counts in the run's metrics too
    assert metrics["label_issues"] == {
        "policy": "drop",
        "rows_checked": found["rows_checked"],
        "found": found["found"],
        "dropped": found["found"],
        "relabelled": 0,
        "warnings": [],
    }
    html = write_report(result.run_dir).read_text()
    assert "Likely label errors" in html and found["rows"][0]["row"] in html
    assert str(tmp_path) not in json.dumps(found)  # no local path in what the run keeps


def test_relabel_report_and_off(tmp_path):
    path, _ = _noisy_csv(tmp_path)
    spec = load_spec(_spec(path, "relabel"))
    data = prepare(spec)
    cleaned, found = clean_labels(spec, data, task_of(spec))
    assert found is not None and found["relabelled"] == found["found"] > 0
    assert len(cleaned.train) == len(data.train)
    changed = np.flatnonzero((cleaned.train.target != data.train.target).numpy())
    assert len(changed) == found["found"]  # exactly the flagged rows, now with their suggested class
    assert cleaned.train_raw.frame["target"].dtype == data.train_raw.frame["target"].dtype  # still int
    # report keeps the training split as it is; off finds nothing
    flags = find_label_issues(data.train.target.numpy(), np.eye(2)[cleaned.train.target.numpy()] * 0.9 + 0.05)
    assert len(flags) == found["found"] and clean_training(spec, data, flags, "report") is data
    off = load_spec(_spec(path, "off"))
    assert clean_labels(off, data, task_of(off)) == (data, None)


def test_the_pass_says_what_it_found_and_warns_when_it_flags_too_many_rows(caplog):
    # iris with 2-epoch out-of-fold MLPs flagged 52 of 105 training rows and dropped them, with no word
    raw = {
        "task": "classification",
        "data": {"source": "builtin:iris", "clean": {"label_issues": "drop"}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2},
    }
    spec = load_spec(raw)
    with caplog.at_level("WARNING", logger="trustforge.data"):
        cleaned, found = clean_labels(spec, prepare(spec), task_of(spec))
    n, rows = found["found"], found["rows_checked"]
    assert rows == 105 and n > 0.2 * rows and len(cleaned.train) == rows - n
    lines = [r.getMessage() for r in caplog.records]
    assert f"data: label issues: found {n} of 105 training rows likely mislabelled; dropped {n} (data.clean.label_issues: drop)" in lines
    warning = next(s for s in lines if "more than 20%" in s)
    assert warning.startswith(f"data.clean.label_issues flagged {n} of 105 training rows") and "too weak to trust" in warning
    assert found["warnings"] == [warning]  # in label_issues.json
    assert cleaned.evidence()["label_issues"] == {  # and in metrics.json
        "policy": "drop",
        "rows_checked": 105,
        "found": n,
        "dropped": n,
        "relabelled": 0,
        "warnings": [warning],
    }


def test_a_class_with_fewer_training_rows_than_folds_is_named_by_validate_and_train(tmp_path, caplog):
    from trustforge.data import label_issue_warnings, validate_data

    rng = np.random.default_rng(0)
    y = ["a"] * 37 + ["b"] * 4 + ["c"] * 4
    frame = pd.DataFrame({"x": rng.normal(size=len(y)) + np.array([{"a": 0, "b": 3, "c": 6}[v] for v in y]), "label": y})
    frame.to_csv(tmp_path / "small.csv", index=False)
    raw = {
        "task": "classification",
        "data": {"source": f"csv:{tmp_path / 'small.csv'}", "target": "label", "split": {"test": 0.2, "validation": 0.0}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2, "early_stopping": None},
    }
    assert validate_data(load_spec(raw)) == []  # off: nothing to say
    raw["data"]["clean"] = {"label_issues": "drop", "folds": 5}
    spec = load_spec(raw)
    notes = validate_data(spec)
    assert len(notes) == 1 and notes[0].startswith(
        "data.clean.label_issues: 2 class(es) have fewer training rows than data.clean.folds (5): 'b' (3), 'c' (3); "
        "the out-of-fold models see too few of them"
    ), notes
    with caplog.at_level("WARNING", logger="trustforge.data"):
        _, found = clean_labels(spec, prepare(spec), task_of(spec))
    assert notes[0] in found["warnings"] and notes[0] in [r.getMessage() for r in caplog.records]
    assert label_issue_warnings({"a": 30, "b": 5}, 5) == []


def test_a_task_without_classes_is_refused_naming_the_field(tmp_path):
    path, _ = _noisy_csv(tmp_path)
    raw = _spec(path, "drop")
    raw["task"] = "regression"
    with pytest.raises(SpecError, match=r"data\.clean\.label_issues"):
        run(raw, progress=False, register=False)
    assert not (Path.cwd() / "ws" / "runs").exists() or not any((Path.cwd() / "ws" / "runs").iterdir())


def test_private_training_refuses_the_pass(tmp_path):
    path, _ = _noisy_csv(tmp_path)
    raw = _spec(path, "report")
    raw["train"] = {**raw["train"], "privacy": {"epsilon": 3.0}}
    spec = load_spec(raw)
    with pytest.raises(SpecError, match=r"data\.clean\.label_issues .*train\.privacy"):
        clean_labels(spec, prepare(spec), task_of(spec))
