"""Keyed, reversible, format-preserving permutations of small integer domains.

A balanced Feistel network over [0, a*a) with HMAC-SHA256 round functions (Luby-Rackoff;
12 rounds), narrowed to any domain [0, n) or any subset of it by cycle walking (apply the
permutation again until the value lands back in the set; the walk is itself a permutation of
the set and inverts the same way). The tweak binds each use (entity type, field, shape), so
the same value gets the same fake under one key and purpose (joins still work) and a
different one elsewhere.

We write this small construction ourselves rather than depend on an FF1/FF3 package: none of
those on PyPI is widely kept, the domains here are tiny and odd-shaped (valid birth dates,
SSN areas), and cycle walking over a validity predicate is the part we need anyway. It hides
values from readers of masked data; it is not meant as encryption of bulk data.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Callable

from trustforge.errors import DataError

__all__ = ["FPE"]

_ROUNDS = 12
# The most steps a cycle walk takes. The Feistel domain [0, a*a), a = ceil(sqrt(n)), holds at most
# 2n values for every n >= 2 (a*a < n + 2*sqrt(n) + 1 <= 2n once n >= 6; n = 2..5 by hand), so with
# a set that fills a share d of [0, n) each step lands in it with probability about d/2 (the network
# is a pseudo-random permutation) and a walk outlives k steps with probability about (1 - d/2)**k.
# The sets here fill d >= 0.2 (valid SSNs 0.89, North American exchanges 0.8, or 0.2 for one that
# begins with 0 or 1; dates and plain digits all of theirs), so a walk longer than 1,000 steps has
# a chance under 0.9**1000 (1e-45). A value outside the set is refused before walking: its cycle
# may hold no member of the set at all, and a walk from it would not be undone by `decrypt`.
_MAX_WALK = 1000


class FPE:
    """Permutations keyed by `key` (at least 16 bytes); `tweak` names the use."""

    def __init__(self, key: bytes):
        self._key = bytes(key)

    def _f(self, tweak: bytes, i: int, half: int, a: int) -> int:
        mac = hmac.digest(self._key, tweak + bytes([i]) + half.to_bytes((half.bit_length() + 8) // 8, "big"), hashlib.sha256)
        return int.from_bytes(mac[:16], "big") % a

    def _enc(self, x: int, a: int, tweak: bytes) -> int:
        left, right = divmod(x, a)
        for i in range(_ROUNDS):
            left, right = right, (left + self._f(tweak, i, right, a)) % a
        return left * a + right

    def _dec(self, y: int, a: int, tweak: bytes) -> int:
        left, right = divmod(y, a)
        for i in reversed(range(_ROUNDS)):
            left, right = (right - self._f(tweak, i, left, a)) % a, left
        return left * a + right

    def _walk(self, x: int, n: int, tweak: bytes, valid: Callable[[int], bool] | None, step: Callable[[int, int, bytes], int]) -> int:
        """Apply `step` (one direction of the network) to x until the value is back in the set."""
        if not 0 <= x < n or (valid is not None and not valid(x)):
            # the walk would not be a permutation of the set (and may never end): not reversible
            raise DataError("format-preserving fake: the value is outside the set its fakes are drawn from")
        if n <= 1:
            return x
        a = math.isqrt(n - 1) + 1
        tweak = tweak + b"\x00" + str(n).encode()
        for _ in range(_MAX_WALK):
            x = step(x, a, tweak)
            if x < n and (valid is None or valid(x)):
                return x
        raise DataError(f"format-preserving fake: the cycle walk found no value of the set in {_MAX_WALK} steps (the set is too sparse)")

    def encrypt(self, x: int, n: int, tweak: bytes, valid: Callable[[int], bool] | None = None) -> int:
        """Map x in [0, n) (and in `valid`, when given) to another such value, reversibly.

        Raises:
            DataError: x is not in the set, or no value of it within `_MAX_WALK` steps.
        """
        return self._walk(x, n, tweak, valid, self._enc)

    def decrypt(self, y: int, n: int, tweak: bytes, valid: Callable[[int], bool] | None = None) -> int:
        """The inverse of `encrypt` with the same n, tweak and `valid`; raises as it does."""
        return self._walk(y, n, tweak, valid, self._dec)

    def classwise(self, s: str, classes: tuple[tuple[str, bytes], ...], tweak: bytes, decrypt: bool = False) -> str:
        """Permute the characters of `s` that fall in each (alphabet, tag) class among themselves,
        each class in its own positions; other characters stay as they are."""
        out = list(s)
        for alphabet, tag in classes:
            pos = [i for i, c in enumerate(s) if c in alphabet]
            if pos:
                for i, c in zip(pos, self.alphabet("".join(s[i] for i in pos), alphabet, tweak + tag, decrypt=decrypt)):
                    out[i] = c
        return "".join(out)

    def digits(self, s: str, tweak: bytes, valid: Callable[[str], bool] | None = None, decrypt: bool = False) -> str:
        """Permute a string of decimal digits of the same length (leading zeros kept)."""
        if not s:
            return s
        k = len(s)
        check = None if valid is None else (lambda v: valid(f"{v:0{k}d}"))
        op = self.decrypt if decrypt else self.encrypt
        return f"{op(int(s), 10**k, tweak, check):0{k}d}"

    def alphabet(self, s: str, alphabet: str, tweak: bytes, decrypt: bool = False) -> str:
        """Permute a string over `alphabet` (every character of `s` must be in it)."""
        if not s:
            return s
        r, index = len(alphabet), {c: i for i, c in enumerate(alphabet)}
        x = 0
        for c in s:
            x = x * r + index[c]
        op = self.decrypt if decrypt else self.encrypt
        y = op(x, r ** len(s), tweak)
        out = []
        for _ in s:
            y, d = divmod(y, r)
            out.append(alphabet[d])
        return "".join(reversed(out))
