"""Seeded train/validation/test splits, stratified for classification.

We write our own rather than call sklearn's `train_test_split` twice: splitting the rest
again compounds the rounding, so a class could miss its expected share of the training split
by more than one row. Here every class's share of every split is apportioned from the whole
data set at once, and the test split is drawn first, from draws that do not depend on the
validation fraction, so changing `validation` never changes the test set.

With `groups` (one group name per row, such as the speaker of a clip) whole groups go to one
split: the test groups are never seen in training, which is what "works for a new speaker"
means. Stratification does not apply then.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from trustforge.errors import DataError

__all__ = ["split_indices"]


def split_indices(
    n: int,
    *,
    test: float,
    validation: float,
    stratify: np.ndarray | None,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, validation and test rows, each sorted.

    Stratified, each class gets its expected share of each split (its count times the split's
    fraction) to within one row; only many tiny classes under extreme fractions can leave no
    such rounding, and then the nearest one found is used.

    Args:
        n: number of rows.
        test: fraction of all rows for testing; validation: fraction of all rows for validation.
        stratify: labels to keep class proportions by, or None.
        seed: the run's seed.
        groups: a group per row, or None; when given, each group lies in one split only and
            `stratify` is ignored (see `_group_split`).

    Raises:
        DataError: a class is too small to appear in every split, a stratified held-out split
            has fewer rows than there are classes, or too few rows (or groups) to split.
    """
    if groups is not None:
        if len(groups) != n:
            raise DataError(f"groups has {len(groups)} entries for {n} rows")
        return _group_split(np.asarray(groups), test=test, validation=validation, seed=seed)
    n_test = max(1, int(round(test * n)))
    n_val = max(1, int(round(validation * n))) if validation > 0 else 0
    if n_test + n_val >= n:
        raise DataError(f"cannot split {n} rows into test {n_test}, validation {n_val} and a non-empty training set")
    rng = np.random.default_rng(seed)
    if stratify is None:
        perm = rng.permutation(n)
        test_idx, val_idx, train_idx = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
        return _sorted(train_idx), _sorted(val_idx), _sorted(test_idx)

    labels = np.asarray(stratify)
    if len(labels) != n:
        raise DataError(f"stratify has {len(labels)} labels for {n} rows")
    counts = Counter(labels.tolist())
    parts = 3 if n_val else 2
    small = sorted((c for c, k in counts.items() if k < parts), key=str)
    if small:
        raise DataError(
            f"class {small[0]!r} has {counts[small[0]]} sample(s); a stratified split needs at least {parts} "
            "(set data.split.stratify: false or add data)"
        )
    classes, inverse = np.unique(labels, return_inverse=True)
    # A held-out split with fewer rows than classes leaves classes out of it, and its scores then
    # describe the classes that happened to land there (iris with test 0.001: one test row, accuracy 1.0).
    for name, fraction, rows in (("test", test, n_test), ("validation", validation, n_val)):
        if rows and rows < len(classes):
            raise DataError(
                f"data.split.{name} must hold at least one row per class for a stratified split ({len(classes)} classes: "
                f"at least {len(classes)} of the {n} rows); got {fraction:g} ({rows} row{'s' if rows != 1 else ''}); "
                "raise it or set data.split.stratify: false"
            )
    size = np.bincount(inverse, minlength=len(classes))
    # Draw order: test tie-breaks, then each class's shuffle, then validation tie-breaks, so
    # nothing the test split uses depends on the validation fraction.
    n_k_test = _apportion(size * n_test / n, n_test, rng.random(len(classes)), lo=np.zeros_like(size), hi=size, cap=size)
    members = [rng.permutation(np.flatnonzero(inverse == k)) for k in range(len(classes))]
    rest = size - n_k_test
    want_val, want_train = size * n_val / n, size * (n - n_test - n_val) / n
    # Take as validation rows what keeps both validation and training within a row of their share.
    lo = np.maximum(0, np.ceil(np.maximum(want_val, rest - want_train) - 1)).astype(np.int64)
    hi = np.minimum(rest, np.floor(np.minimum(want_val, rest - want_train) + 1)).astype(np.int64)
    n_k_val = _apportion((want_val + rest - want_train) / 2, n_val, rng.random(len(classes)), lo=lo, hi=hi, cap=rest)
    tests, vals, trains = [], [], []
    for k, idx in enumerate(members):
        a, b = n_k_test[k], n_k_val[k]
        tests.append(idx[:a])
        vals.append(idx[a : a + b])
        trains.append(idx[a + b :])
    return _sorted(np.concatenate(trains)), _sorted(np.concatenate(vals)), _sorted(np.concatenate(tests))


def _group_split(groups: np.ndarray, *, test: float, validation: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole groups per split, in a seeded order: test groups first, then validation, rest training.

    Each held-out split takes at least one group, and as many groups, in the shuffled order,
    as bring its row count nearest to its fraction of all rows. The test groups are drawn
    before, and independently of, the validation fraction.
    """
    n = len(groups)
    names, inverse = np.unique(groups, return_inverse=True)
    size = np.bincount(inverse, minlength=len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    want_groups = 2 + (validation > 0)
    if len(names) < want_groups:
        raise DataError(
            f"cannot split {len(names)} group(s) into test, {'validation, ' if validation > 0 else ''}and training groups; "
            f"need at least {want_groups}"
        )

    def take(start: int, fraction: float, keep: int) -> int:
        # Groups order[start:end] hold the rows nearest to fraction × n; leave `keep` groups after them.
        rows = np.cumsum(size[order[start : len(names) - keep]])
        return start + 1 + int(np.argmin(np.abs(rows - fraction * n)))

    end_test = take(0, test, keep=want_groups - 1)
    end_val = take(end_test, validation, keep=1) if validation > 0 else end_test
    split = np.full(len(names), 2)  # 0 test, 1 validation, 2 train (per group)
    split[order[:end_test]] = 0
    split[order[end_test:end_val]] = 1
    row_split = split[inverse]
    return (_sorted(np.flatnonzero(row_split == 2)), _sorted(np.flatnonzero(row_split == 1)), _sorted(np.flatnonzero(row_split == 0)))


def _apportion(ideal: np.ndarray, total: int, tiebreak: np.ndarray, *, lo: np.ndarray, hi: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Integers near `ideal` that add up to `total` (largest remainder), each in [lo, hi].

    Start from the floor (clipped to the bounds), then hand out the missing units one at a
    time to the class whose ideal is furthest above its count, or take surplus units back from
    the class furthest below. `tiebreak` (random) settles ties, so no class is favoured. Where
    the bounds cannot reach `total`, they widen to [0, cap] (what each class has).
    """
    lo, hi = np.minimum(lo, hi), hi
    count = np.clip(np.floor(ideal).astype(np.int64), lo, hi)
    while (missing := total - int(count.sum())) != 0:
        room = count < hi if missing > 0 else count > lo
        if not room.any():
            lo, hi = np.zeros_like(cap), cap
            continue
        gap = (ideal - count) if missing > 0 else (count - ideal)
        k = np.lexsort((tiebreak, np.where(room, gap, -np.inf)))[-1]
        count[k] += 1 if missing > 0 else -1
    return count


def _sorted(idx: np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(idx, dtype=np.int64))
