"""Person names (and, later, street addresses): lexicons shipped in PyPI packages, offline.

First version: English names only, from the `names` package's US Census lists, as a
capitalised first name followed by a capitalised surname.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

__all__ = ["find_names"]

_A = re.ASCII
# A capitalised word, an initial ("J."), or a hyphenated/apostrophe surname (O'Neil, Smith-Jones).
_CAP_WORD = re.compile(r"(?<![A-Za-z])(?:[A-Z][a-z]+(?:['-][A-Z][a-z]+)?|[A-Z]\.)(?![A-Za-z])", _A)


@functools.lru_cache(maxsize=1)
def english_lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames) from `names` (MIT licence; US Census 1990 frequency lists)."""
    root = resources.files("names")

    def read(name: str) -> frozenset[str]:
        text = root.joinpath(name).read_text(encoding="ascii")
        return frozenset(line.split()[0].capitalize() for line in text.splitlines() if line.strip())

    first = read("dist.male.first") | read("dist.female.first")
    return first, read("dist.all.last")


def find_names(text: str, types: frozenset[str] | None) -> list[tuple[str, int, int, float]]:
    """PERSON spans in `text`."""
    if types is not None and "PERSON" not in types:
        return []
    found: list[tuple[str, int, int, float]] = []
    if any(c.isupper() for c in text):
        found.extend(_english(text))
    return found


def _english(text: str) -> list[tuple[str, int, int, float]]:
    """A known first name, an optional initial, then a known surname, one space apart."""
    first, last = english_lexicon()
    words = [(m.start(), m.end(), m.group()) for m in _CAP_WORD.finditer(text)]
    found, i = [], 0
    while i < len(words) - 1:
        s, e, w = words[i]
        j = i + 1
        if words[j][2].endswith(".") and j + 1 < len(words) and words[j][0] == e + 1:  # middle initial
            e, j = words[j][1], j + 1
        ls, le, lw = words[j]
        if w in first and ls == e + 1 and lw in last:
            found.append(("PERSON", s, le, 0.7))
            i = j + 1
        else:
            i += 1
    return found


@functools.lru_cache(maxsize=1)
def _sorted_lexicon() -> tuple[tuple[str, ...], dict[str, int], tuple[str, ...], dict[str, int]]:
    first, last = english_lexicon()
    f, lst = tuple(sorted(first)), tuple(sorted(last))
    return f, {n: i for i, n in enumerate(f)}, lst, {n: i for i, n in enumerate(lst)}


def fake_name(fpe, text: str, tweak: bytes, dec: bool) -> str:
    """A keyed, reversible stand-in for a name: each word known to the lexicon becomes another
    word of the same list (first names stay first names); other letters are permuted in place."""
    from trustforge.privacy._fpe import FPE  # noqa: F401  (type of `fpe`)

    first, first_ix, last, last_ix = _sorted_lexicon()
    words = text.split(" ")
    out = []
    for i, w in enumerate(words):
        table, index = (first, first_ix) if i < len(words) - 1 else (last, last_ix)
        if w in index:
            op = fpe.decrypt if dec else fpe.encrypt
            out.append(table[op(index[w], len(table), tweak + (b"f" if table is first else b"l"))])
        else:
            out.append(_permute_letters(fpe, w, tweak, dec))
    return " ".join(out)


def _permute_letters(fpe, word: str, tweak: bytes, dec: bool) -> str:
    lower = "abcdefghijklmnopqrstuvwxyz"
    chars = list(word)
    for alphabet, tag in ((lower, b"l"), (lower.upper(), b"u")):
        pos = [i for i, c in enumerate(word) if c in alphabet]
        if pos:
            sub = fpe.alphabet("".join(word[i] for i in pos), alphabet, tweak + tag, decrypt=dec)
            for i, c in zip(pos, sub):
                chars[i] = c
    return "".join(chars)
