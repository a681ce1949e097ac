"""Feature types: one module per kind of input column, registered in one place.

`FEATURE_TYPES` maps a type's name to the object that owns everything about that kind of
column (see `FeatureType`). To add a kind: write one module with a `FeatureType` subclass,
add it to `_REGISTERED` below, and give it a case in `trustforge.testing.FEATURE_CASES`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trustforge.data.features._base import MISSING, OWN_TENSOR, UNKNOWN, Block, FeatureOptions, FeatureState, FeatureType, Slot, as_series
from trustforge.data.features._labels import label_strings, natural_key
from trustforge.data.features.audio import Audio
from trustforge.data.features.binary import Binary
from trustforge.data.features.categorical import Categorical
from trustforge.data.features.datetime import DateTime, check_iso_dates
from trustforge.data.features.image import Image
from trustforge.data.features.numeric import Numeric
from trustforge.data.features.text import Text
from trustforge.errors import DataError

__all__ = [
    "Block",
    "FEATURE_TYPES",
    "FeatureOptions",
    "FeatureState",
    "FeatureType",
    "MISSING",
    "OWN_TENSOR",
    "Slot",
    "UNKNOWN",
    "as_series",
    "check_iso_dates",
    "feature_type",
    "infer_type",
    "label_strings",
    "natural_key",
]

# The registry, in the order inference tries them: a column is the first type that claims it
# (file names come first: two image paths are not a yes/no column).
_REGISTERED: tuple[FeatureType, ...] = (Image(), Audio(), Binary(), DateTime(), Numeric(), Text(), Categorical())
FEATURE_TYPES: dict[str, FeatureType] = {t.name: t for t in _REGISTERED}


def feature_type(name: str) -> FeatureType:
    """The registered type called `name`."""
    try:
        return FEATURE_TYPES[name]
    except KeyError:
        raise DataError(f"unknown feature type {name!r}; choose from {', '.join(FEATURE_TYPES)}") from None


def infer_type(col: pd.Series, options: FeatureOptions, *, where: str) -> FeatureType:
    """The type of an undeclared column: the first registered type whose `detect` claims it.

    Raises:
        DataError: the column has no values, or no type claims it (a high-cardinality column
            of short strings, such as an id), naming the column and what to do.
    """
    name = col.name
    values = col.dropna()
    if len(values) == 0:
        raise DataError(f"{where}: column {name!r} has no values; drop it with data.drop")
    for t in _REGISTERED:
        if t.detect(values, options):
            return t
    raise DataError(_undetected(values, name, where, options))


def _undetected(values: pd.Series, name: Any, where: str, options: FeatureOptions) -> str:
    """Why no type claims the column, and what to do: stray text among numbers, numbers or
    dates in a format not read, or an id."""
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().mean() >= 0.9:  # mostly numbers: point at the first that is not one
        row = int(numbers.isna().to_numpy().nonzero()[0][0])
        label = values.index[row]
        stray = int(numbers.isna().sum())
        return (
            f"{where}: column {name!r} holds numbers but for {stray} value(s) such as {text.iloc[row][:40]!r} "
            f"(row {label + 1 if isinstance(label, (int, np.integer)) else label}); fix or empty them, or declare its type in data.features"
        )
    if text.str.fullmatch(r"[\d\s.,:/+\-]+").mean() >= 0.9:
        marked = text[text.str.contains(r"[,/:]")]
        example = (marked if len(marked) else text).iloc[0][:40]
        return (
            f"{where}: column {name!r} looks like numbers or dates in a form not read (e.g. {example!r}); write "
            "plain numbers (10250.5) or ISO 8601 dates (2024-03-01), or declare its type in data.features"
        )
    return (
        f"{where}: column {name!r} has {values.nunique()} distinct short text values (> data.max_categories "
        f"{options.max_categories}), like an id; drop it with data.drop, raise the limit, or declare its type "
        f"with data.features: {{{name}: text}}"
    )
