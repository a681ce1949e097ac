"""Repeated rows (`data.duplicates`): found, counted, and dropped, refused or reported by policy."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from trustforge.data import prepare
from trustforge.data._duplicates import Duplicates, RowKeys, across_splits, array_keys
from trustforge.errors import DataError, SpecError
from trustforge.spec import load_spec


def _cancer_with_copies(tmp_path, fraction=0.10, seed=0):
    """Breast cancer as a CSV in which `fraction` of the rows are copies of other rows (seeded)."""
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(seed)
    copies = frame.iloc[rng.choice(len(frame), int(fraction * len(frame)), replace=False)]
    data = pd.concat([frame, copies]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    path = tmp_path / "cancer.csv"
    data.to_csv(path, index=False)
    return path, len(copies), len(data)


def _spec(path, target="target", task="classification", **duplicates):
    data = {"source": f"csv:{path}", "target": target}
    if duplicates:
        data["duplicates"] = duplicates
    return load_spec({"name": "dups", "task": task, "data": data})


def _inputs(frame: pd.DataFrame, target: str) -> set[tuple]:
    return set(map(tuple, frame.drop(columns=[target]).round(12).to_numpy().tolist()))


def test_ten_percent_copies_leave_no_test_row_that_sits_in_training_and_the_profile_says_how_many(tmp_path, caplog):
    path, planted, rows = _cancer_with_copies(tmp_path)
    with caplog.at_level(logging.WARNING, logger="trustforge.data"):
        data = prepare(_spec(path))

    train, test = data.train_raw.frame, data.test_raw.frame
    assert not _inputs(train, "target") & _inputs(test, "target")  # the must-hold: no test row also in training
    assert data.profile["duplicates"]["across_splits"]["test"]["against"] == ["training", "validation"]

    dup = data.profile["duplicates"]
    assert dup["exact"] == planted == 56  # every planted copy found, nothing else (the source rows are distinct)
    across = dup["across_splits"]
    found = across["test"]["exact"] + across["validation"]["exact"]
    assert (across["test"]["removed"], across["test"]["rows"], across["validation"]["removed"]) == (18, 125, 8)  # as the README says
    assert (
        found > 0
        and across["test"]["removed"] == across["test"]["exact"]
        and across["validation"]["removed"] == across["validation"]["exact"]
    )
    # The splits the model used add up to the rows kept, and the test split is what is left of it.
    assert len(data.test) == across["test"]["rows"] - across["test"]["removed"] == data.profile["splits"]["test"]
    assert sum(data.profile["splits"].values()) == rows - found
    # Never silent: the notes (profile and report) and the log say it.
    assert any(f"{across['test']['removed']} of the {across['test']['rows']} test row(s)" in n for n in data.profile["notes"])
    assert any("removed from test" in r.getMessage() for r in caplog.records)


def test_across_splits_warn_keeps_the_copies_and_fail_refuses_naming_the_field(tmp_path):
    path, _, _ = _cancer_with_copies(tmp_path)
    kept = prepare(_spec(path, across_splits="warn"))
    assert _inputs(kept.train_raw.frame, "target") & _inputs(kept.test_raw.frame, "target")
    assert kept.profile["duplicates"]["across_splits"]["test"]["removed"] == 0
    assert any("score is optimistic" in n for n in kept.profile["notes"])

    with pytest.raises(DataError, match=r"data\.duplicates\.across_splits: fail"):
        prepare(_spec(path, across_splits="fail"))


def test_exact_drop_keeps_one_of_each_row_and_fail_names_example_rows(tmp_path):
    path, planted, rows = _cancer_with_copies(tmp_path)
    data = prepare(_spec(path, exact="drop"))
    assert data.profile["rows"] == rows - planted
    assert data.profile["duplicates"]["removed"] == {"exact": planted}
    assert data.profile["duplicates"]["across_splits"]["test"]["exact"] == 0  # nothing left to repeat across splits

    with pytest.raises(DataError, match=r"56 row\(s\) repeat an earlier row exactly.*e\.g\. row\(s\) \d+.*data\.duplicates\.exact: fail"):
        prepare(_spec(path, exact="fail"))


def _reviews(tmp_path) -> tuple:
    """A small table: 60 distinct rows, 6 near copies (case, spacing, punctuation, rounding) and
    2 pairs that conflict (same inputs, other label)."""
    rng = np.random.default_rng(1)
    words = ["good", "bad", "fine", "great", "poor", "awful", "nice", "dull"]
    rows = [
        {
            "text": " ".join(rng.choice(words, 5)) + f" item {i}",
            "price": round(float(rng.uniform(1, 100)), 2),
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(60)
    ]
    near = [dict(rows[i], text=rows[i]["text"].upper() + "!", price=rows[i]["price"] + 1e-9) for i in range(6)]
    conflicting = [dict(rows[i], label="neg" if rows[i]["label"] == "pos" else "pos") for i in (10, 11)]
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows + near + conflicting).to_csv(path, index=False)
    return path, len(rows) + len(near) + len(conflicting)


def test_near_copies_are_counted_apart_from_exact_ones_and_dropped_on_request(tmp_path):
    path, rows = _reviews(tmp_path)
    found = prepare(_spec(path, target="label", across_splits="warn")).profile["duplicates"]
    assert (found["exact"], found["near"]) == (0, 6)

    dropped = prepare(_spec(path, target="label", near="drop"))
    assert dropped.profile["duplicates"]["removed"] == {"near": 6}
    assert dropped.profile["rows"] == rows - 6
    # With near: drop, the split check compares normalised rows too.
    assert {e["match"] for e in dropped.profile["duplicates"]["across_splits"].values()} == {"near"}


def test_conflicting_rows_are_counted_by_group_and_dropped_or_refused(tmp_path):
    path, rows = _reviews(tmp_path)
    found = prepare(_spec(path, target="label")).profile["duplicates"]
    assert (found["conflicting"], found["conflicting_groups"]) == (4, 2)

    dropped = prepare(_spec(path, target="label", conflicting="drop"))
    assert dropped.profile["duplicates"]["removed"] == {"conflicting": 4}  # both sides of each conflict
    assert dropped.profile["rows"] == rows - 4

    with pytest.raises(DataError, match=r"4 row\(s\) in 2 group\(s\) share their inputs but not their target.*conflicting: fail"):
        prepare(_spec(path, target="label", conflicting="fail"))


def test_rows_are_compared_without_id_like_and_dropped_columns_and_the_profile_says_which(tmp_path):
    # Issue 16: every row has its own record_id, 30 rows copy another otherwise and 10 copy one with the other label.
    # Compared with record_id, no row repeats; the profile itself names record_id as ID-like.
    frame = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(0)
    source = rng.choice(len(frame), 40, replace=False)
    conflicts = frame.iloc[source[30:]].assign(target=lambda f: 1 - f["target"])
    data = pd.concat([frame, frame.iloc[source[:30]], conflicts]).sample(frac=1.0, random_state=0).reset_index(drop=True)
    data.insert(0, "record_id", np.arange(1, len(data) + 1))
    data["batch_weight"] = rng.random(len(data))  # distinct on every row but not an input (data.drop)
    path = tmp_path / "records.csv"
    data.to_csv(path, index=False)
    spec = load_spec(
        {"name": "ids", "task": "classification", "data": {"source": f"csv:{path}", "target": "target", "drop": ["batch_weight"]}}
    )
    prepared = prepare(spec)
    profile = prepared.profile
    dup = profile["duplicates"]
    assert (dup["exact"], dup["conflicting"], dup["conflicting_groups"]) == (30, 20, 10)
    assert [e["column"] for e in dup["ignored_columns"]] == ["record_id"] == [e["column"] for e in profile["id_like"]]
    across = dup["across_splits"]
    assert (across["validation"]["removed"], across["test"]["removed"]) == (7, 13)  # found and removed, as the README says
    assert any("compared without the ID-like column(s) 'record_id'" in n for n in profile["notes"])
    # No held-out row repeats a training row once the id is set aside.
    inputs = [c for c in data.columns if c not in ("record_id", "batch_weight", "target")]
    seen = set(map(tuple, prepared.train_raw.frame[inputs].round(12).to_numpy().tolist()))
    assert not seen & set(map(tuple, prepared.test_raw.frame[inputs].round(12).to_numpy().tolist()))


def test_array_rows_find_exact_and_noisy_copies():
    images = load_digits().images[:200, None].astype(np.float32) / 16.0  # (N, 1, 8, 8) in [0, 1]
    assert len(np.unique(array_keys(images).near)) == 200  # distinct digits are not near copies of each other
    rng = np.random.default_rng(0)
    noisy = np.clip(images[:20] + rng.normal(0, 0.01, images[:20].shape), 0, 1).astype(np.float32)
    keys = array_keys(np.concatenate([images, images[:3], noisy]))
    assert len(keys.inputs) - len(np.unique(keys.inputs)) == 3  # the exact copies, and only them
    caught = keys.near[203:] == keys.near[:20]
    assert caught.mean() >= 0.8  # a copy with a value on a rounding edge can be missed: near copies of arrays are a lower bound


def test_the_policy_is_checked_by_the_spec():
    with pytest.raises(SpecError, match=r"data\.duplicates\.exact"):
        load_spec({"name": "x", "data": {"source": "builtin:iris", "duplicates": {"exact": "ignore"}}})
    assert load_spec({"name": "x", "data": {"source": "builtin:iris"}}).data.duplicates.across_splits == "drop"


def test_a_run_writes_the_profile_and_its_report_says_what_was_found(tmp_path):
    from trustforge.evaluate._report import write_report
    from trustforge.pipeline import run

    path, planted, _ = _cancer_with_copies(tmp_path)
    spec = {
        "name": "dups-run",
        "task": "classification",
        "data": {"source": f"csv:{path}", "target": "target"},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 1, "batch_size": 64},
        "evaluate": {"robustness": False, "privacy_audit": False},
    }
    result = run(spec, progress=False, register=False)
    profile = json.loads((result.run_dir / "profile.json").read_text(encoding="utf-8"))
    removed = profile["duplicates"]["across_splits"]["test"]["removed"]
    assert profile["duplicates"]["exact"] == planted and removed > 0
    assert result.metrics["n"] == profile["splits"]["test"]  # the test metrics are over the cleaned test split

    html = write_report(result.run_dir).read_text(encoding="utf-8")
    assert 'id="data-profile"' in html
    assert f"{removed} of the {profile['duplicates']['across_splits']['test']['rows']} test row(s)" in html
    table = html.split('data-profile="duplicates"')[1].split("</table>")[0]
    assert f'<td class="num">{planted}</td>' in table
    assert "removed from test (data.duplicates.across\\_splits: drop)" in (result.run_dir / "model_card.md").read_text(encoding="utf-8")


def test_a_test_row_that_repeats_a_validation_row_is_removed_too():
    # Rows 0-5 train, 6-7 validation, 8-9 test; row 8 repeats validation row 6, row 9 is new.
    ids = np.array([0, 1, 2, 3, 4, 5, 6, 7, 6, 9])
    keys = RowKeys(ids, ids, np.array(["a"] * 10, dtype=object))
    found = Duplicates({"exact": "warn", "near": "warn", "conflicting": "warn", "across_splits": "drop"})
    held = across_splits(keys, found, np.arange(6), {"validation": np.array([6, 7]), "test": np.array([8, 9])}, origin="t")
    assert held["test"].tolist() == [9] and held["validation"].tolist() == [6, 7]
    assert found.across_splits["test"]["removed"] == 1 and "training or validation split" in found.notes[-1]


def test_inputs_of_few_distinct_values_keep_their_repeats_and_say_so(tmp_path, caplog):
    # Three distinct rows, repeated: every new row would repeat one too, so a repeat is no leak.
    rows = [("red", "s", "yes"), ("blue", "m", "no"), ("green", "l", "no")] * 20
    path = tmp_path / "few.csv"
    pd.DataFrame(rows, columns=["colour", "size", "label"]).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="trustforge.data"):
        data = prepare(_spec(path, target="label"))
    test = data.profile["duplicates"]["across_splits"]["test"]
    assert test["removed"] == 0 and test["exact"] == test["rows"] == 12
    assert test["kept_because"].startswith("most rows repeat")
    assert any("kept, as more than 50% repeat" in r.getMessage() for r in caplog.records)
