"""Whole columns classified as personal by sampling their cells."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from trustforge.errors import DataError
from trustforge.privacy._scan import scan_spans

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["classify_columns", "text_values"]

# A cell "is" an entity when one span covers most of it ("张伟" or "Mr. John Smith" count; an
# email inside a sentence does not make the column an email column).
_COVER = 0.6
_PHONES = ("PHONE", "CN_MOBILE")


def text_values(series: "pd.Series", personal: bool = False) -> "pd.Series | None":
    """The column as strings to scan, or None when it holds no text.

    Text (object/string) columns as they are (non-strings made strings); integer columns, and
    float columns of whole numbers, only when `personal` (phone or ID numbers read as numbers).
    """
    import pandas as pd

    kind = series.dtype.kind
    if kind in "OSU" or isinstance(series.dtype, pd.StringDtype):
        return series.map(lambda v: v if isinstance(v, str) or v is None or (isinstance(v, float) and v != v) else str(v))
    if not personal:
        return None
    if kind in "iu":
        return series.astype(str)
    if kind == "f":
        whole = series.dropna()
        if len(whole) and (whole == whole.round()).all():
            return series.map(lambda v: None if v != v else str(int(v)))
    return None


def classify_columns(df: "pd.DataFrame", sample: int = 200, threshold: float = 0.5) -> dict[str, str]:
    """Columns whose cells are, mostly, one kind of personal data.

    Args:
        df: the frame.
        sample: how many non-empty cells to look at per column (evenly spaced, deterministic).
        threshold: the share of sampled cells that must be one entity of a type.

    Returns:
        column -> entity type, for the columns classified as personal.

    Raises:
        DataError: `sample` < 1 or `threshold` not in (0, 1].
    """
    import numpy as np

    if not isinstance(sample, int) or sample < 1:
        raise DataError(f"classify_columns: sample must be an integer >= 1; got {sample!r}")
    if not 0 < threshold <= 1:
        raise DataError(f"classify_columns: threshold must be in (0, 1]; got {threshold!r}")
    out: dict[str, str] = {}
    for col in df.columns:
        series = df[col]
        if series.dtype.kind in "iuf":
            values = text_values(series, personal=True)
        else:
            values = text_values(series)
        if values is None:
            continue
        values = values.dropna()
        values = values[values.map(lambda v: bool(v.strip()))]
        if values.empty:
            continue
        if len(values) > sample:
            values = values.iloc[np.linspace(0, len(values) - 1, sample).astype(int)]
        votes: Counter[str] = Counter()
        for v in values:
            v = v.strip()
            for kind, s, e, _ in scan_spans(v, None):
                if e - s >= _COVER * len(v):
                    votes[kind] += 1
                    break
        if votes:
            kind, n = votes.most_common(1)[0]
            if kind in _PHONES:  # a column of phone numbers, some of them Chinese mobiles, is one of phones
                n = sum(votes[k] for k in _PHONES)
            if n >= threshold * len(values):
                out[str(col)] = kind
    return out
