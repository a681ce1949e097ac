"""Values as text, so 1, 1.0 and "1" name the same category or class in every file format."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["label_strings", "natural_key"]


def label_strings(values: pd.Series | np.ndarray) -> np.ndarray:
    """Labels as text; whole floats lose their `.0` (a CSV column of 0/1 with a gap reads as float)."""
    s = pd.Series(values)
    if pd.api.types.is_float_dtype(s) and np.all(np.isnan(s) | (s == np.round(s))):
        s = s.astype("Int64")
    return s.astype(str).to_numpy()


def natural_key(label: str) -> tuple:
    """Sort "2" before "10" when labels are numbers, else alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
