"""Whole columns classified as personal by sampling their cells."""

from __future__ import annotations

import re
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

# A column of names: a header that says so, and short name-shaped, mostly distinct values. The
# lexicons miss rare and foreign names, so such a column is PERSON when a lower share of its
# cells is found (`_NAMED_RATE`): the header and the shape are the evidence the cells lack.
_NAME_HEADERS = frozenset(
    """name names fullname firstname lastname surname forename givenname familyname middlename
    customer client patient contact person people employee staff author owner recipient sender applicant member student
    teacher holder cardholder payee payer beneficiary passenger guest driver buyer seller""".split()
)
_NOT_NAME_HEADERS = frozenset(
    """file host user product company city country street brand item domain model column table field category org
    organisation organization business project app application package device dataset feature class label region
    province state district store shop team department""".split()
)
_CJK_NAME_HEADERS = ("姓名", "名字", "客户", "联系人", "收件人", "收款人", "患者", "员工", "学生", "持卡人", "申请人", "负责人", "用户名称")
_NAME_SHAPE = re.compile(r"[A-Za-z][A-Za-z'.]*(?:-[A-Za-z][A-Za-z'.]*)?(?: [A-Za-z][A-Za-z'.]*(?:-[A-Za-z][A-Za-z'.]*)?){0,3}")
_CJK_NAME = re.compile("[\u4e00-\u9fff]{2,4}")
_NAMED_RATE = 0.2  # share of cells found as PERSON that suffices in a named, name-shaped column
_SHAPE_RATE = 0.8  # share of cells that must look like a name
_DISTINCT = 0.5  # share of distinct values among the sampled cells


def _header_names_people(col: object) -> bool:
    """Whether a column header says it holds person names (name, full_name, customerName, 姓名)."""
    text = str(col)
    if any(h in text for h in _CJK_NAME_HEADERS):
        return True
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()
    tokens = [t for t in re.split(r"[^a-z]+", words) if t]
    return bool(tokens) and not _NOT_NAME_HEADERS.intersection(tokens) and bool(_NAME_HEADERS.intersection(tokens))


def _name_shaped(values: list[str]) -> bool:
    """Short values that look like names: 1-4 words of letters, or 2-4 CJK characters beginning with a
    common surname; mostly distinct."""
    from trustforge.privacy._names import chinese_model

    cjk = [v for v in values if _CJK_NAME.fullmatch(v)]
    common = chinese_model()[2] if cjk else frozenset()  # jieba's dictionary only when a cell needs it
    shaped = sum(1 for v in values if _NAME_SHAPE.fullmatch(v)) + sum(1 for v in cjk if v[0] in common)
    return shaped >= _SHAPE_RATE * len(values) and len(set(values)) >= _DISTINCT * len(values)


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
        threshold: the share of sampled cells that must be one entity of a type. A column whose header
            names people (name, full_name, customer, 姓名, ...) and whose values are short, name-shaped and
            mostly distinct is PERSON when a fifth of its cells is found as a name.

    Returns:
        column -> entity type, for the columns classified as personal.

    Raises:
        DataError: `df` is not a data frame, `sample` < 1 or `threshold` not in (0, 1].
    """
    import numpy as np
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise DataError(f"classify_columns: df must be a pandas DataFrame; got {type(df).__name__}")
    if not isinstance(sample, int) or sample < 1:
        raise DataError(f"classify_columns: sample must be an integer >= 1; got {sample!r}")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold <= 1:
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
        cells = [v.strip() for v in values]
        for v in cells:
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
            elif votes["PERSON"] >= _NAMED_RATE * len(cells) and _header_names_people(col) and _name_shaped(cells):
                out[str(col)] = "PERSON"
    return out
