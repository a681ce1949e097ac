"""`scan_text`: every entity in a string, overlaps resolved, in reading order."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable

from trustforge.errors import DataError
from trustforge.privacy import _address, _names, _patterns

__all__ = ["Entity", "ENTITY_TYPES", "scan_text", "check_types"]

ENTITY_TYPES: tuple[str, ...] = ("PERSON", "EMAIL", "PHONE", "CN_MOBILE", "CREDIT_CARD", "IBAN", "CN_ID", "US_SSN", "IP_ADDRESS", "ADDRESS")

# Lower wins an overlap. Pattern entities (checksummed) beat addresses, addresses beat names.
_RANK = {**_patterns.PRIORITY, "ADDRESS": 20, "PERSON": 21}  # an address holds name-like words (Howard Street)


@dataclass(frozen=True, slots=True)
class Entity:
    """One detected span: `text == source[start:end]`; `score` in (0, 1] says how sure."""

    type: str
    start: int
    end: int
    text: str
    score: float


def check_types(entities: Iterable[str] | None, where: str = "entities") -> frozenset[str] | None:
    """The entity types asked for, checked; None means all.

    Raises:
        DataError: an unknown entity type (named, with the known ones), or none at all (an empty
            list would find nothing: None asks for all).
    """
    if entities is None:
        return None
    if isinstance(entities, str):
        entities = [entities]
    chosen = frozenset(str(e).upper() for e in entities)
    if not chosen:
        raise DataError(f"{where}: names no entity type (None means all of them)")
    unknown = sorted(chosen - set(ENTITY_TYPES))
    if unknown:
        raise DataError(f"{where}: unknown entity type {unknown[0]!r}; expected some of {', '.join(ENTITY_TYPES)}")
    return chosen


def resolve(found: list[tuple[str, int, int, float]]) -> list[tuple[str, int, int, float]]:
    """Drop every span that overlaps one of higher rank (then longer, then earlier); sort by start.

    O(n log n) in the number of candidates (a long log file holds many), with the kept spans in
    a list sorted by start: they never overlap, so it is sorted by end too.
    """
    if len(found) <= 1:
        return found
    found.sort(key=lambda f: (_RANK[f[0]], f[1] - f[2], f[1]))
    starts: list[int] = []
    kept: list[tuple[str, int, int, float]] = []
    for f in found:
        i = bisect.bisect_left(starts, f[1])
        if i > 0 and kept[i - 1][2] > f[1]:
            continue
        if i < len(kept) and kept[i][1] < f[2]:
            continue
        starts.insert(i, f[1])
        kept.insert(i, f)
    return kept


# Full-width forms (U+FF01-U+FF5E: "１３８", "＠", "Ａ") as ASCII, one character for one, so
# offsets into the original text stay right: Chinese text often writes numbers this way.
FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_HAS_FULLWIDTH = re.compile("[\uff01-\uff5e]")


def halfwidth(text: str) -> str:
    """`text` with full-width ASCII forms made ASCII (same length)."""
    return text.translate(FULLWIDTH) if _HAS_FULLWIDTH.search(text) else text


def scan_spans(text: str, types: frozenset[str] | None) -> list[tuple[str, int, int, float]]:
    """`scan_text` without building `Entity` objects (the masking loop's fast path)."""
    text = halfwidth(text)
    found = _patterns.find_patterns(text, types)
    if types is None or "PERSON" in types:
        found.extend(_names.find_names(text, types))
    if types is None or "ADDRESS" in types:
        found.extend(_address.find_addresses(text, types))
    return resolve(found)


def scan_text(text: str, entities: Iterable[str] | None = None) -> list[Entity]:
    """Find personal data in `text` (English, Chinese, or both in one string).

    Args:
        text: the string to scan.
        entities: the entity types to look for (a subset of `ENTITY_TYPES`); None means all.

    Returns:
        The entities in reading order; no two overlap.

    Raises:
        DataError: `text` is not a string, or an unknown entity type was asked for.
    """
    if not isinstance(text, str):
        raise DataError(f"scan_text: text must be a string; got {type(text).__name__}")
    types = check_types(entities)
    return [Entity(t, s, e, text[s:e], score) for t, s, e, score in scan_spans(text, types)]
