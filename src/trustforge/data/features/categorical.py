"""Categorical columns: a few distinct values, each an index into a vocabulary, embedded.

The vocabulary is `<unknown>` (index 0: a value training never saw), `<missing>` (index 1),
then the training values as text in sorted order. A missing value is the `<missing>`
category, the training mode (`data.missing.categorical: most_frequent`), or refused (`error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from trustforge.data.features._base import MISSING, UNKNOWN, FeatureOptions, FeatureState, FeatureType
from trustforge.errors import DataError

__all__ = ["Categorical", "CategoricalState"]


@dataclass(frozen=True)
class CategoricalState(FeatureState):
    vocabulary: tuple[str, ...]  # UNKNOWN, MISSING, then the training values
    fill: int  # the index a missing value takes
    on_missing: str = "fill"  # or "error"

    @cached_property
    def index(self) -> dict[str, int]:
        """Value -> index, built once per state (every prediction call encodes through it)."""
        return {v: i for i, v in enumerate(self.vocabulary)}


def as_text(col: pd.Series) -> pd.Series:
    """Values as text, None where missing."""
    present = col.notna().to_numpy()
    return pd.Series([str(v) if ok else None for v, ok in zip(col.tolist(), present)], index=col.index, name=col.name, dtype=object)


class Categorical(FeatureType):
    name = "categorical"
    slot = "index"
    encoder = "embedding"
    drift = "categorical"
    datatype = "BYTES"
    state_type = CategoricalState
    corruption = "that fraction of values swapped for another category"

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        return col.nunique() <= options.max_categories

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> CategoricalState:
        values = col.dropna().astype(str)
        vocabulary = (UNKNOWN, MISSING, *sorted(set(values)))
        fill = 1
        if options.categorical_missing == "most_frequent" and len(values):
            fill = vocabulary.index(str(values.mode().iloc[0]))
        return CategoricalState(vocabulary, fill, "error" if options.categorical_missing == "error" else "fill")

    def encode(self, state: CategoricalState, col: pd.Series, *, where: str) -> np.ndarray:
        if state.on_missing == "error" and col.isna().any():
            raise DataError(f"{where}: column {col.name!r} has {int(col.isna().sum())} missing values (data.missing.categorical: error)")
        index = state.index
        return np.fromiter((state.fill if v is None else index.get(v, 0) for v in as_text(col)), dtype=np.int64, count=len(col))

    def size(self, state: CategoricalState) -> int:
        return len(state.vocabulary)

    def example(self, state: CategoricalState, rows: int, rng: np.random.Generator) -> list[str]:
        known = list(state.vocabulary[2:]) or [UNKNOWN]
        return [known[i] for i in rng.integers(0, len(known), size=rows)]

    def monitor_values(self, col: pd.Series) -> np.ndarray:
        return as_text(col).to_numpy(dtype=object)

    def observed(self, state: CategoricalState) -> dict[str, list[str]]:
        return {"allowed": list(state.vocabulary[2:])}

    def corrupt(self, state: CategoricalState, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        # A `fraction` of the values replaced by another training value: mislabelled records.
        text = as_text(col)
        known = list(state.vocabulary[2:])
        hit = rng.random(len(col)) < fraction
        if known:
            text[hit] = rng.choice(known, size=int(hit.sum()))
        return text.rename(col.name)
