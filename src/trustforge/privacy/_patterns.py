"""Pattern entities: a regular expression finds candidates, a checksum or a rule confirms them.

Every pattern is bounded by ASCII look-arounds, never by `\\b`: Python's `\\b` (and `\\w`) count
CJK characters as word characters, so `\\b` patterns find nothing in "邮箱a@b.cn，卡号4111…"
(the failure of Presidio's patterns on Chinese text). All patterns use `re.ASCII`, so `[0-9]`
and the classes never match full-width digits or letters by accident.

Validators (each a pure function of the matched text):

- CREDIT_CARD: 12-19 digits, a known issuer prefix for that length (Visa, Mastercard incl. the
  2-series, Amex, Discover, JCB, Diners, UnionPay, Maestro) and the Luhn check digit.
- IBAN: the country's registered length and ISO 13616 mod-97 = 1.
- CN_ID: GB 11643-1999: a province code, a real birth date (1900 to today) and the ISO 7064
  MOD 11-2 check character.
- US_SSN: area not 000, 666 or 900-999, group not 00, serial not 0000.
- IP_ADDRESS: `ipaddress` accepts it (v4 octets <= 255, v6 groups and `::` rules).
- CN_MOBILE: a mobile prefix allocated in mainland China (13x, 14x, 15x, 16x, 17x, 18x, 19x).
- PHONE: E.164 length (8-15 digits) after `+`, North American numbers with a valid area code
  and exchange, Chinese landlines (area code 0xx(x)).
- EMAIL: a dotted domain with an alphabetic top-level label.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from typing import Callable, Iterator

__all__ = ["PATTERN_TYPES", "find_patterns", "luhn_ok", "luhn_digit", "cn_id_check", "iban_ok", "iban_check_digits", "IBAN_LENGTHS"]

_A = re.ASCII

# ---------------------------------------------------------------- checksums


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_digit(body: str) -> str:
    """The Luhn check digit that completes `body`."""
    for d in "0123456789":
        if luhn_ok(body + d):
            return d
    raise AssertionError("unreachable")


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
# Province-level codes of GB/T 2260 (the first two digits of every resident ID number).
_CN_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83 91".split()
)


def cn_id_check(first17: str) -> str:
    """The GB 11643 (ISO 7064 MOD 11-2) check character of the first 17 digits."""
    return _CN_ID_CHECK[sum(int(c) * w for c, w in zip(first17, _CN_ID_WEIGHTS)) % 11]


def _date_ok(yyyymmdd: str) -> bool:
    try:
        d = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    # Up to the end of this year, not today: a fake birth date (`_mask._fake_date`) stays in its
    # real date's year, so it may lie a few days or months ahead of today.
    return _dt.date(1900, 1, 1) <= d <= _dt.date(_dt.date.today().year, 12, 31)


def _cn_id(text: str) -> bool:
    return text[:2] in _CN_PROVINCES and _date_ok(text[6:14]) and cn_id_check(text[:17]) == text[17].upper()


# ISO 13616 registry lengths (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def _iban_number(compact: str) -> int:
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved))


def iban_ok(compact: str) -> bool:
    """ISO 13616: the country's length and mod-97 of the rearranged number equal to 1."""
    return IBAN_LENGTHS.get(compact[:2]) == len(compact) and compact[2:4].isdigit() and _iban_number(compact) % 97 == 1


def iban_check_digits(compact: str) -> str:
    """The two check digits that make `compact` (its digits 3-4 ignored) a valid IBAN."""
    return f"{98 - _iban_number(compact[:2] + '00' + compact[4:]) % 97:02d}"


# ---------------------------------------------------------------- card issuers


def _card_ok(digits: str) -> bool:
    n = len(digits)
    if not 12 <= n <= 19 or not luhn_ok(digits):
        return False
    p2, p4, p6 = int(digits[:2]), int(digits[:4]), int(digits[:6])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard, 2-series included
        return n == 16
    if p2 in (34, 37):  # Amex
        return n == 15
    if digits.startswith("6011") or p2 == 65 or 644 <= int(digits[:3]) <= 649 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if p4 in (2131, 1800):  # JCB, 15 digits
        return n == 15
    if 300 <= int(digits[:3]) <= 305 or p2 in (36, 38, 39):  # Diners
        return 14 <= n <= 19
    if p2 == 62 or p2 == 81:  # UnionPay
        return 16 <= n <= 19
    if p2 == 50 or 56 <= p2 <= 69 or p4 == 604:  # Maestro (0604 too)
        return 12 <= n <= 19
    return False


# ---------------------------------------------------------------- validators on matched text


def _digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9")


def _v_card(s: str) -> bool:
    d = _digits(s)
    if len(d) == 18 and d[:2] in _CN_PROVINCES and _date_ok(d[6:14]):
        return False  # shaped like a resident ID number (with a wrong check digit): a near miss, not a card
    return _card_ok(d)


def _v_ssn(s: str) -> bool:
    d = _digits(s)
    area = int(d[:3])
    return area != 0 and area != 666 and area < 900 and d[3:5] != "00" and d[5:] != "0000"


def _v_ip(s: str) -> bool:
    if "." in s and ":" not in s:
        parts = s.split(".")
        return all(p == "0" or (p[0] != "0" and int(p) <= 255) for p in parts)
    if sum(c in "0123456789abcdefABCDEF" for c in s) < 2:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


_CN_MOBILE_PREFIX = frozenset(
    [f"13{i}" for i in range(10)]
    + ["145", "146", "147", "148", "149"]
    + [f"15{i}" for i in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
    + ["162", "165", "166", "167"]
    + [f"17{i}" for i in range(9)]
    + [f"18{i}" for i in range(10)]
    + [f"19{i}" for i in (0, 1, 2, 3, 5, 6, 7, 8, 9)]
)


def _v_cn_mobile(s: str) -> bool:
    d = _digits(s)
    if len(d) == 13:
        d = d[2:]
    elif len(d) == 15:
        d = d[4:]
    return len(d) == 11 and d[:3] in _CN_MOBILE_PREFIX


_EXT_SPLIT = re.compile(r" ?(?:x|ext\.?|#)", _A)


def _v_phone_intl(s: str) -> bool:
    s = _EXT_SPLIT.split(s)[0]
    if "((" in s or "))" in s or re.search(r"[ .()-]{3}", s):
        return False
    return 8 <= len(_digits(s)) <= 15


def _v_nanp(s: str) -> bool:
    d = _digits(_EXT_SPLIT.split(s)[0])
    if len(d) == 13 and d.startswith("001"):  # the international prefix dialled from the US
        d = d[3:]
    if len(d) == 11:
        d = d[1:]
    return d[0] not in "01" and d[3] not in "01" and d[1:3] != "11"


def _v_true(s: str) -> bool:
    return True


def _v_email(s: str) -> bool:
    local, _, domain = s.rpartition("@")
    return ".." not in local and ".." not in domain and not local.startswith(".")


def _v_cn_id(s: str) -> bool:
    return _cn_id(s)


# ---------------------------------------------------------------- the patterns

_NB = r"(?<![0-9A-Za-z])"  # not glued to an ASCII letter or digit before
_NA = r"(?![0-9A-Za-z])"  # ... or after

_CARD = re.compile(
    _NB + r"(?<![0-9][ -])(?:[0-9]{12,19}|[0-9]{4}([ -])[0-9]{4}(?:\1[0-9]{4}){1,2}(?:\1[0-9]{1,4})?|[0-9]{4}([ -])[0-9]{6}\2[0-9]{4,5})"
    r"(?![0-9A-Za-z]|[ -][0-9])",
    _A,
)
_CN_ID = re.compile(_NB + r"[0-9]{17}[0-9Xx]" + _NA, _A)
_SSN = re.compile(_NB + r"(?<![0-9][ -])[0-9]{3}([- ])[0-9]{2}\1[0-9]{4}(?![0-9A-Za-z]|[ -][0-9])", _A)
_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z]|\.[0-9])", _A)
# Not inside an address (after "hex:"), but after a lone colon ("IP：" in Chinese reads as "IP:").
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z])(?<![0-9A-Za-z]:)(?<!::)(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})?(?![0-9A-Za-z:])",
    _A,
)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-]|\.[A-Za-z0-9])",
    _A,
)
_CN_MOBILE = re.compile(_NB + r"(?:(?:\+|00)?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}" + _NA, _A)
_EXT = r"(?: ?(?:x|ext\.?|#) ?[0-9]{1,6})?"  # an extension: "x157", " ext. 12"
_PHONE_INTL = re.compile(
    r"(?<![0-9A-Za-z+])\+[0-9]{1,3}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-]?[0-9]{1,5}){1,6}" + _EXT + r"(?![0-9A-Za-z]|[ .-][0-9])", _A
)
_PHONE_NANP = re.compile(
    r"(?<![0-9A-Za-z+-])(?:(?:001|1)[ .-]?)?(?:\([0-9]{3}\) ?|[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}" + _EXT + r"(?![0-9A-Za-z]|[-.][0-9])",
    _A,
)
_PHONE_CN_LAND = re.compile(r"(?<![0-9A-Za-z+-])0[0-9]{2,3}-[0-9]{7,8}(?![0-9A-Za-z]|-[0-9])", _A)
_IBAN = re.compile(r"(?<![0-9A-Za-z])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){10,30}", _A)

# (entity type, pattern, validator, score), in priority order: when two spans overlap the one
# listed first wins (an email holds digits that look like a mobile number, a card number can
# start like an ID number, an SSN's digits look like a phone number's).
_PATTERNS: list[tuple[str, re.Pattern, Callable[[str], bool], float, str]] = [
    # (type, pattern, validator, score, characters one of which the text must hold for a match: a cheap skip)
    ("EMAIL", _EMAIL, _v_email, 1.0, "@"),
    ("CN_ID", _CN_ID, _v_cn_id, 1.0, ""),
    ("CREDIT_CARD", _CARD, _v_card, 1.0, ""),
    ("US_SSN", _SSN, _v_ssn, 0.85, "- "),
    ("IP_ADDRESS", _IPV4, _v_ip, 0.95, "."),
    ("IP_ADDRESS", _IPV6, _v_ip, 0.95, ":"),
    ("CN_MOBILE", _CN_MOBILE, _v_cn_mobile, 0.95, "1"),
    ("PHONE", _PHONE_INTL, _v_phone_intl, 0.8, "+"),
    ("PHONE", _PHONE_NANP, _v_nanp, 0.8, "-. "),
    ("PHONE", _PHONE_CN_LAND, _v_true, 0.7, "-"),
]
PATTERN_TYPES = ("EMAIL", "CN_ID", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "CN_MOBILE", "PHONE")
PRIORITY = {"EMAIL": 0, "CN_ID": 1, "IBAN": 2, "CREDIT_CARD": 3, "US_SSN": 4, "IP_ADDRESS": 5, "CN_MOBILE": 6, "PHONE": 7}

_HAS_DIGIT = re.compile(r"[0-9]", _A)
_RUN12 = re.compile(r"[0-9]{12}", _A)


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # The pattern may run on into the next word (spaces are allowed inside); cut it at the
        # country's length and accept it only if the next character does not continue it.
        start, count, end = m.start(), 0, None
        for i in range(start, m.end()):
            if text[i] != " ":
                count += 1
                if count == want:
                    end = i + 1
                    break
        if end is None or (end < len(text) and text[end].isascii() and text[end].isalnum()):
            continue
        if iban_ok(text[start:end].replace(" ", "")):
            yield start, end


def find_patterns(text: str, types: frozenset[str] | None) -> list[tuple[str, int, int, float]]:
    """Every validated pattern match in `text`: (type, start, end, score); overlaps not yet resolved."""
    found: list[tuple[str, int, int, float]] = []
    if _HAS_DIGIT.search(text) is None:
        if "@" in text and (types is None or "EMAIL" in types):
            found.extend(("EMAIL", m.start(), m.end(), 1.0) for m in _EMAIL.finditer(text) if _v_email(m.group()))
        if ":" in text and (types is None or "IP_ADDRESS" in types):
            found.extend(("IP_ADDRESS", m.start(), m.end(), 0.95) for m in _IPV6.finditer(text) if _v_ip(m.group()))
        return found
    long_run = _RUN12.search(text) is not None
    for kind, pattern, check, score, needs in _PATTERNS:
        if types is not None and kind not in types:
            continue
        if needs and not any(c in text for c in needs):
            continue
        if kind == "CN_ID" and not long_run:
            continue
        for m in pattern.finditer(text):
            if check(m.group()):
                found.append((kind, m.start(), m.end(), score))
    if types is None or "IBAN" in types:
        found.extend(("IBAN", s, e, 1.0) for s, e in _ibans(text))
    if types is None or "PHONE" in types:
        found.extend(("PHONE", s, e, 0.6) for s, e in _bare_phones(text))
    return found


# Ten bare digits are a North American number only where the words before say so (an order
# number has ten digits too): "call 4155552671", "phone: 4155552671", "电话4155552671".
_BARE10 = re.compile(r"(?<![0-9A-Za-z+-])[2-9][0-9]{2}[2-9][0-9]{6}(?![0-9A-Za-z]|[-.][0-9])", _A)
_PHONE_WORDS = re.compile(r"phone|tel\b|call|mobile|cell|fax|contact|reach|电话|手机|致电|联系|热线", _A | re.IGNORECASE)
_CONTEXT = 32


def _bare_phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _BARE10.finditer(text):
        if m.group()[1:3] != "11" and _PHONE_WORDS.search(text, max(0, m.start() - _CONTEXT), m.start()) is not None:
            yield m.start(), m.end()
