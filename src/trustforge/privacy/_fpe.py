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

__all__ = ["FPE"]

_ROUNDS = 12


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

    def encrypt(self, x: int, n: int, tweak: bytes, valid: Callable[[int], bool] | None = None) -> int:
        """Map x in [0, n) (and in `valid`, when given) to another such value, reversibly."""
        if n <= 1:
            return x
        a = math.isqrt(n - 1) + 1
        tweak = tweak + b"\x00" + str(n).encode()
        y = self._enc(x, a, tweak)
        while y >= n or (valid is not None and not valid(y)):
            y = self._enc(y, a, tweak)
        return y

    def decrypt(self, y: int, n: int, tweak: bytes, valid: Callable[[int], bool] | None = None) -> int:
        """The inverse of `encrypt` with the same n, tweak and `valid`."""
        if n <= 1:
            return y
        a = math.isqrt(n - 1) + 1
        tweak = tweak + b"\x00" + str(n).encode()
        x = self._dec(y, a, tweak)
        while x >= n or (valid is not None and not valid(x)):
            x = self._dec(x, a, tweak)
        return x

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
