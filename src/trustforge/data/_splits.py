"""Seeded train/validation/test splits, stratified for classification."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import train_test_split

from trustforge.errors import DataError

__all__ = ["split_indices"]


def split_indices(
    n: int, *, test: float, validation: float, stratify: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, validation and test rows.

    The test split is drawn first so that changing `validation` never changes the test set.

    Args:
        n: number of rows.
        test: fraction of all rows for testing; validation: fraction of all rows for validation.
        stratify: labels to keep class proportions by, or None.
        seed: the run's seed.

    Raises:
        DataError: a class is too small to appear in every split.
    """
    if stratify is not None:
        counts = Counter(stratify.tolist())
        parts = 3 if validation > 0 else 2
        small = sorted(c for c, k in counts.items() if k < parts)
        if small:
            raise DataError(
                f"class {small[0]!r} has {counts[small[0]]} sample(s); a stratified split needs at least {parts} "
                "(set data.split.stratify: false or add data)"
            )
    idx = np.arange(n)
    n_test = max(1, int(round(test * n)))
    try:
        rest, test_idx = train_test_split(idx, test_size=n_test, random_state=seed, stratify=stratify)
        if validation <= 0:
            return np.sort(rest), np.array([], dtype=np.int64), np.sort(test_idx)
        n_val = max(1, int(round(validation * n)))
        strat_rest = stratify[rest] if stratify is not None else None
        train_idx, val_idx = train_test_split(rest, test_size=n_val, random_state=seed, stratify=strat_rest)
    except ValueError as exc:
        raise DataError(f"cannot split {n} rows (test {test}, validation {validation}): {exc}") from None
    return np.sort(train_idx), np.sort(val_idx), np.sort(test_idx)
