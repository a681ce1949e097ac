"""Tests for seeded, stratified train/validation/test splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from trustforge.data import load_source, split_indices
from trustforge.errors import DataError


def labels(counts: dict[str, int], seed: int = 0) -> np.ndarray:
    y = np.concatenate([[c] * k for c, k in counts.items()])
    return np.random.default_rng(seed).permutation(y)


def check_partition(n: int, tr: np.ndarray, va: np.ndarray, te: np.ndarray) -> None:
    every = np.concatenate([tr, va, te])
    assert len(every) == n and set(every.tolist()) == set(range(n)), "splits must cover every row exactly once"
    for part in (tr, va, te):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)


@pytest.mark.parametrize("stratify", [False, True])
def test_same_seed_same_split_other_seed_other_split(stratify: bool) -> None:
    y = labels({"a": 60, "b": 30, "c": 10}) if stratify else None
    first = split_indices(100, test=0.2, validation=0.1, stratify=y, seed=7)
    again = split_indices(100, test=0.2, validation=0.1, stratify=y, seed=7)
    other = split_indices(100, test=0.2, validation=0.1, stratify=y, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2]) and not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("stratify", [False, True])
@pytest.mark.parametrize(("n", "test", "validation"), [(100, 0.2, 0.1), (37, 0.3, 0.0), (1001, 0.15, 0.25)])
def test_no_overlap_full_coverage_and_sizes(n: int, test: float, validation: float, stratify: bool) -> None:
    y = np.random.default_rng(n).choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]) if stratify else None
    tr, va, te = split_indices(n, test=test, validation=validation, stratify=y, seed=1)
    check_partition(n, tr, va, te)
    assert len(te) == round(test * n) and len(va) == round(validation * n)


@pytest.mark.parametrize(
    "counts",
    [
        {"a": 50, "b": 50},
        {"a": 500, "b": 37, "c": 13},  # imbalanced
        {"0": 11, "1": 7, "2": 5, "3": 4, "4": 3},  # small classes
        {str(k): 20 + 7 * k for k in range(9)},
        {"neg": 940, "pos": 61},
    ],
)
@pytest.mark.parametrize(("test", "validation"), [(0.2, 0.1), (0.25, 0.15), (0.3, 0.0), (0.1, 0.3)])
def test_stratified_splits_keep_class_proportions(counts: dict[str, int], test: float, validation: float) -> None:
    y = labels(counts)
    n = len(y)
    if min(round(test * n), round(validation * n) or n) < len(counts):  # a held-out split too small for one row per class
        with pytest.raises(DataError, match="at least one row per class"):
            split_indices(n, test=test, validation=validation, stratify=y, seed=0)
        return
    for seed in range(5):
        tr, va, te = split_indices(n, test=test, validation=validation, stratify=y, seed=seed)
        check_partition(n, tr, va, te)
        for part in (tr, va, te):
            got = Counter(y[part].tolist())
            for cls, total in counts.items():
                expected = total * len(part) / n
                assert abs(got.get(cls, 0) - expected) <= 1, (cls, got.get(cls, 0), expected, len(part))


def test_stratified_split_of_breast_cancer_keeps_the_malignant_share() -> None:
    raw = load_source("builtin:breast_cancer", target=None, image_size=(8, 8), channels=1, seed=0)
    y = raw.frame["target"].to_numpy()
    tr, va, te = split_indices(len(y), test=0.2, validation=0.1, stratify=y, seed=7)
    share = np.mean(y == "malignant")
    for part in (tr, va, te):
        assert abs(np.sum(y[part] == "malignant") - share * len(part)) <= 1


@pytest.mark.parametrize("stratify", [False, True])
def test_test_split_does_not_depend_on_the_validation_fraction(stratify: bool) -> None:
    y = labels({"a": 120, "b": 50, "c": 30}) if stratify else None
    tests = [split_indices(200, test=0.2, validation=v, stratify=y, seed=3)[2] for v in (0.0, 0.05, 0.1, 0.3)]
    for te in tests[1:]:
        np.testing.assert_array_equal(te, tests[0])


def test_a_class_too_small_to_stratify_is_a_clear_error() -> None:
    y = labels({"a": 40, "b": 20, "lonely": 1})
    with pytest.raises(DataError, match=r"class 'lonely' has 1 sample\(s\).*stratify: false"):
        split_indices(len(y), test=0.2, validation=0.1, stratify=y, seed=0)
    with pytest.raises(DataError, match="class 'lonely' has 1 sample"):
        split_indices(len(y), test=0.2, validation=0.0, stratify=y, seed=0)
    y = labels({"a": 40, "b": 20, "pair": 2})
    with pytest.raises(DataError, match="class 'pair' has 2 sample.*at least 3"):
        split_indices(len(y), test=0.2, validation=0.1, stratify=y, seed=0)
    tr, va, te = split_indices(len(y), test=0.2, validation=0.0, stratify=y, seed=0)
    assert len(va) == 0 and Counter(y[tr].tolist())["pair"] + Counter(y[te].tolist())["pair"] == 2
    # Without stratification the lonely class is just a row.
    y = labels({"a": 40, "b": 20, "lonely": 1})
    check_partition(len(y), *split_indices(len(y), test=0.2, validation=0.1, stratify=None, seed=0))


def test_too_few_rows_to_split_is_a_data_error() -> None:
    with pytest.raises(DataError, match="cannot split 2 rows"):
        split_indices(2, test=0.4, validation=0.4, stratify=None, seed=0)


@pytest.mark.parametrize(("test", "validation", "field", "rows"), [(0.001, 0.001, "test", 1), (0.2, 0.01, "validation", 2)])
def test_a_stratified_held_out_split_with_fewer_rows_than_classes_is_refused(test, validation, field, rows) -> None:
    # iris (150 rows, 3 classes) with test 0.001 made a 1-row test split, and the run headlined accuracy 1.0
    y = labels({"setosa": 50, "versicolor": 50, "virginica": 50})
    with pytest.raises(
        DataError,
        match=rf"data\.split\.{field} must hold at least one row per class for a stratified split "
        rf"\(3 classes: at least 3 of the 150 rows\); got {validation if field == 'validation' else test:g} \({rows} rows?\)",
    ):
        split_indices(150, test=test, validation=validation, stratify=y, seed=0)
    tr, va, te = split_indices(150, test=0.02, validation=0.02, stratify=y, seed=0)  # 3 rows each: one per class
    assert sorted(y[te].tolist()) == sorted(y[va].tolist()) == ["setosa", "versicolor", "virginica"]
    check_partition(150, *split_indices(150, test=test, validation=validation, stratify=None, seed=0))  # unstratified: rows are rows


def test_validate_and_train_refuse_a_held_out_split_too_small_for_the_classes() -> None:
    from trustforge.data import prepare, validate_data
    from trustforge.spec import load_spec

    s = load_spec({"task": "classification", "data": {"source": "builtin:iris", "split": {"test": 0.001, "validation": 0.001}}})
    for check in (validate_data, prepare):
        with pytest.raises(DataError, match=r"data\.split\.test must hold at least one row per class .*got 0\.001 \(1 row\)"):
            check(s)
