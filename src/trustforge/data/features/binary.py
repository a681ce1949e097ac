"""Binary columns: exactly two distinct values (0/1, yes/no, True/False), fed as 0/1.

The larger value (in natural order: 1 over 0, yes over no, True over False) is 1. A missing
value takes the training split's more frequent value, or is refused (`data.missing.numeric:
error`); a third value is refused, naming the column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trustforge.data.features._base import FeatureOptions, FeatureState, FeatureType, row_of
from trustforge.data.features._labels import label_strings, natural_key
from trustforge.errors import DataError

__all__ = ["Binary", "BinaryState"]


@dataclass(frozen=True)
class BinaryState(FeatureState):
    values: tuple[str, str]  # (negative, positive) as text
    fill: float  # 0.0 or 1.0, imputed for a missing value
    mean: float  # the 0/1 column is standardised like a numeric one
    std: float
    on_missing: str = "fill"

    @property
    def numeric(self) -> bool:
        """Both values are numbers (0/1), so a request may send them as numbers."""
        return all(_is_number(v) for v in self.values)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def zero_one(col: pd.Series, values: tuple[str, str], *, name: str, where: str) -> np.ndarray:
    """1.0 for the positive value, 0.0 for the negative one, NaN where missing."""
    neg, pos = values
    text = pd.Series(label_strings(col), index=col.index).where(col.notna(), None)
    other = text.notna().to_numpy() & ~text.isin([neg, pos]).to_numpy()
    if other.any():
        row = int(other.nonzero()[0][0])
        raise DataError(f"{where}: column {name!r} is binary ({neg!r}/{pos!r}); got {text.iloc[row]!r} in row {row_of(text, row)}")
    return np.where(text.isna(), np.nan, (text == pos).astype(np.float64))


class Binary(FeatureType):
    name = "binary"
    slot = "float"
    encoder = "passthrough"
    drift = "categorical"
    datatype = "FP64"
    state_type = BinaryState
    corruption = "that fraction of values flipped"

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        return col.nunique() == 2

    def conforms(self, col: pd.Series) -> np.ndarray:
        # A binary column holds two values: beyond the two most frequent (the first seen of a tie),
        # each row of a third value breaks it. The values as text, so 1, 1.0 and "1" are one value.
        present = col.notna().to_numpy()
        text = np.asarray(label_strings(col[present]), dtype=object)
        ok = np.ones(len(col), dtype=bool)
        kept = pd.Series(text).value_counts(sort=True).index[:2]  # stable: ties keep the order first seen
        ok[np.flatnonzero(present)] = np.isin(text, np.asarray(kept, dtype=object))
        return ok

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> BinaryState:
        values = sorted(set(label_strings(col.dropna()).tolist()), key=natural_key)
        if len(values) != 2:
            raise DataError(
                f"{where}: column {col.name!r} was declared or inferred binary but has {len(values)} distinct values in training"
            )
        x = zero_one(col, (values[0], values[1]), name=str(col.name), where=where)
        present = x[~np.isnan(x)]
        if options.numeric_missing == "error" and len(present) < len(x):
            raise DataError(f"{where}: column {col.name!r} has {len(x) - len(present)} missing values (data.missing.numeric: error)")
        fill = float(np.round(present.mean())) if len(present) else 0.0
        filled = np.where(np.isnan(x), fill, x)
        std = float(filled.std()) if len(filled) else 1.0
        return BinaryState(
            (values[0], values[1]),
            fill,
            float(filled.mean()) if len(filled) else 0.0,
            std if std > 1e-12 else 1.0,
            "error" if options.numeric_missing == "error" else "fill",
        )

    def encode(self, state: BinaryState, col: pd.Series, *, where: str) -> np.ndarray:
        name = str(col.name)
        x = zero_one(col, state.values, name=name, where=where)
        nan = np.isnan(x)
        if nan.any():
            if state.on_missing == "error":
                raise DataError(f"{where}: column {name!r} has {int(nan.sum())} missing values (data.missing.numeric: error)")
            x = np.where(nan, state.fill, x)
        return ((x - state.mean) / state.std)[:, None]

    def size(self, state: BinaryState) -> int:
        return 1

    def example(self, state: BinaryState, rows: int, rng: np.random.Generator) -> list[object]:
        picked = [state.values[i] for i in rng.integers(0, 2, size=rows)]
        return [float(v) for v in picked] if state.numeric else picked

    def signature(self, name: str, state: BinaryState) -> dict:
        # 0/1 travels as numbers, yes/no as text: the request carries the values training saw.
        return {"name": name, "kind": self.name, "datatype": "FP64" if state.numeric else "BYTES", "shape": [-1]}

    def monitor_values(self, col: pd.Series) -> np.ndarray:
        # As the encoder reads them ("1", not "1.0"), so both sides agree.
        return pd.Series(label_strings(col), index=col.index, dtype=object).where(col.notna(), None).to_numpy(dtype=object)

    def observed(self, state: BinaryState) -> dict[str, list[str]]:
        return {"allowed": list(state.values)}

    def corrupt(self, state: BinaryState, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        # A `fraction` of the values flipped to the other one: a mis-keyed form field.
        text = pd.Series(label_strings(col), index=col.index, dtype=object).where(col.notna(), None)
        flip = rng.random(len(col)) < fraction
        neg, pos = state.values
        text[flip] = [pos if v == neg else neg if v == pos else v for v in text[flip]]
        return text.rename(col.name)
