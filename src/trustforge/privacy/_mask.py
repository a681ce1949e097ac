"""Masking: per-entity policies over text and table columns, and the keyed way back.

Policies (one for all entity types, or one per type):

- ``redact``: the span becomes ``[REDACTED]``.
- ``tag``: the span becomes its type, ``<EMAIL>``.
- ``hash``: ``<EMAIL:3fa9c2e1b7d04a65>``, the first 64 bits of HMAC-SHA256 under the key of the
  type and the normalised value (digits only for numbers, a phone number in international form
  whatever its format, lower case for emails), so the same person joins across rows, columns and
  files masked with the same key. One-way.
- ``fake``: a value of the same shape that still passes its checksum (a Luhn-valid card with
  the same issuer prefix, an ID number with a real date and a correct check digit, an IBAN
  with valid check digits, ...), from a keyed format-preserving permutation (`_fpe`): the
  same value always gets the same fake under one key, and `unmask` turns fakes back into the
  originals with that key only.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import hmac
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from trustforge.errors import DataError, SecurityError
from trustforge.privacy import _names, _patterns
from trustforge.privacy._fpe import FPE
from trustforge.privacy._scan import ENTITY_TYPES, check_types, halfwidth, scan_spans

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Masker", "MaskReport", "unmask", "unmask_spans", "unmask_value", "POLICIES", "FREE_FORM"]

POLICIES = ("redact", "tag", "hash", "fake")
FREE_FORM = _FREE_FORM = ("PERSON", "ADDRESS")  # types without a checksum: a personal column's every cell is one
_KEYED = ("hash", "fake")
_MIN_KEY = 16
_MISSING_KEY = (
    "masking policy {policy!r} needs a key: run `trustforge keys init` in the workspace (the masking key is derived from its "
    "masking secret, kept wrapped by its key-encryption key) or set TRUSTFORGE_KEK; in code pass key=... (at least 16 random bytes)"
)
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
_DIGITS = "0123456789"
_DAY0 = _dt.date(1900, 1, 1).toordinal()
_DAYS = _dt.date(2025, 12, 31).toordinal() - _DAY0 + 1  # fixed, so a fake never depends on today


def _check_key(key: bytes | None, policy: str) -> bytes:
    if key is None:
        raise SecurityError(_MISSING_KEY.format(policy=policy))
    if not isinstance(key, (bytes, bytearray)) or len(key) < _MIN_KEY:
        raise SecurityError(f"masking policy {policy!r}: the key must be at least {_MIN_KEY} bytes")
    return bytes(key)


# ---------------------------------------------------------------- format-preserving fakes


def _put_digits(template: str, digits: str) -> str:
    """`template` with its digits replaced, in order, by `digits`."""
    it = iter(digits)
    return "".join(next(it) if "0" <= c <= "9" else c for c in template)


def _classwise(fpe: FPE, s: str, tweak: bytes, dec: bool) -> str:
    """Permute the digits, the lower-case and the upper-case letters of `s`, each within its class and positions."""
    return fpe.classwise(s, ((_DIGITS, b"d"), (_LOWER, b"l"), (_UPPER, b"u")), tweak, decrypt=dec)


def _whole(kind: str) -> Callable[[str], bool]:
    """A predicate: the string is, as a whole, one entity of `kind` (so a fake is found again)."""

    def ok(candidate: str) -> bool:
        return any(t == kind and s == 0 and e == len(candidate) for t, s, e, _ in _patterns.find_patterns(candidate, frozenset({kind})))

    return ok


def _fake_card(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    d = "".join(c for c in s if "0" <= c <= "9")
    body = d[:6] + fpe.digits(
        d[6:-1], tw + d[:6].encode(), decrypt=dec
    )  # under the kept issuer prefix: cards sharing digits do not share fakes
    return _put_digits(s, body + _patterns.luhn_digit(body))


def _fake_date(fpe: FPE, date: str, tweak: bytes, dec: bool, later: bool = True) -> str:
    """A birth date (YYYYMMDD) from 1900 to 2025 permuted among those dates; a later one (`later`)
    among the days of its own year, so the fake is never in a later year than today (a real ID's
    date is not in the future, and the detector finds the fake again); any other kept. Both
    domains are fixed, so a fake never depends on today. `later` False: a later date kept, as
    masks with a `trustforge.mask.v2` or `v3` sidecar did."""
    try:
        parsed = _dt.date(int(date[:4]), int(date[4:6]), int(date[6:]))
    except ValueError:
        return date
    op = fpe.decrypt if dec else fpe.encrypt
    day = parsed.toordinal() - _DAY0
    if 0 <= day < _DAYS:
        return _dt.date.fromordinal(op(day, _DAYS, tweak) + _DAY0).strftime("%Y%m%d")
    if not later or day < 0:
        return date
    first = _dt.date(parsed.year, 1, 1).toordinal()
    days = _dt.date(parsed.year, 12, 31).toordinal() - first + 1
    return _dt.date.fromordinal(op(parsed.toordinal() - first, days, tweak + b"y") + first).strftime("%Y%m%d")


def _fake_cn_id(fpe: FPE, s: str, tw: bytes, dec: bool, later: bool = True) -> str:
    """Keep the province, permute the region code, the birth date and the serial number, each under
    a tweak of the other two (three rounds of an unbalanced Feistel network over the parts, undone
    in reverse order): people born on one day get unrelated fake dates, so equal fake dates never
    reveal equal real ones, and the fake is still a valid ID (a real date, its check character).
    `later`: as `_fake_date`'s."""
    province, region, date, serial = s[:2], s[2:6], s[6:14], s[14:17]
    tw += province.encode()
    if not dec:
        region = fpe.digits(region, tw + b"r" + date.encode() + serial.encode())
        date = _fake_date(fpe, date, tw + b"t" + region.encode() + serial.encode(), False, later)
        serial = fpe.digits(serial, tw + b"s" + region.encode() + date.encode())
    else:
        serial = fpe.digits(serial, tw + b"s" + region.encode() + date.encode(), decrypt=True)
        date = _fake_date(fpe, date, tw + b"t" + region.encode() + serial.encode(), True, later)
        region = fpe.digits(region, tw + b"r" + date.encode() + serial.encode(), decrypt=True)
    first17 = province + region + date + serial
    return first17 + _patterns.cn_id_check(first17)


def _fake_cn_id_v2(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    """The fakes of masks with a `trustforge.mask.v2` sidecar, kept only to unmask those files:
    each part under a tweak of its own, so IDs with one birth date shared one fake date."""
    first17 = s[:2] + fpe.digits(s[2:6], tw + b"r", decrypt=dec) + _fake_date(fpe, s[6:14], tw + b"t", dec, later=False)
    first17 += fpe.digits(s[14:17], tw + b"s", decrypt=dec)
    return first17 + _patterns.cn_id_check(first17)


_whole_cn_mobile = _whole("CN_MOBILE")


def _fake_cn_mobile(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    """Keep the carrier prefix (and +86 / 0086), permute the last 8 digits under a tweak of the
    prefix: numbers that share their last 8 digits get unrelated fakes; with or without +86, one fake."""
    d = "".join(c for c in s if "0" <= c <= "9")
    front, head = d[:-8], d[-11:-8]
    rest = fpe.digits(d[-8:], tw + head.encode(), valid=lambda r: _whole_cn_mobile(_put_digits(s, front + r)), decrypt=dec)
    return _put_digits(s, front + rest)


_PHONE_EXT = re.compile(r" ?(?:x|ext\.?|#) ?(?=[0-9])", re.ASCII)
_PHONE_TAIL = 7  # the digits a fake phone number changes: a NANP exchange and line, the local part elsewhere


def _phone_split(text: str) -> tuple[str, str]:
    """(the number, its extension's digits) of a PHONE span: "415-555-0132 x12" -> ("415-555-0132", "12")."""
    m = _PHONE_EXT.search(text)
    return (text, "") if m is None else (text[: m.start()], text[m.end() :])


def _phone_canonical(number: str) -> str:
    """A PHONE span's number as international digits, whatever its format: `+1 415 555 0132`,
    `(415) 555-0132`, `1-415-555-0132` and `001 415 555 0132` are 14155550132; `010-12345678` and
    `+86 10 12345678` are 861012345678 (the formats the detector takes: `+` international, North
    American, Chinese landlines with their trunk 0)."""
    if number.lstrip().startswith("+"):
        return "".join(c for c in number.replace("(0)", "") if "0" <= c <= "9")  # +44 (0)20 ...: the trunk 0 is not dialled
    d = "".join(c for c in number if "0" <= c <= "9")
    if d.startswith("00"):
        return d[2:]
    if len(d) == 10 and d[0] != "0":
        return "1" + d  # North American, without its country code
    if d.startswith("0"):
        return "86" + d[1:]  # a Chinese landline, trunk 0 and area code
    return d


def _put_last_digits(s: str, end: int, digits: str) -> str:
    """`s` with the last len(`digits`) digits before index `end` replaced by `digits`."""
    where = [i for i in range(end) if "0" <= s[i] <= "9"][-len(digits) :] if digits else []
    out = list(s)
    for i, c in zip(where, digits):
        out[i] = c
    return "".join(out)


def _fake_phone(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    """Keep the country and area code, permute the last 7 digits (and any extension) under a tweak of
    them, on the international form: one number gets one fake in every format it is written in."""
    number, ext = _phone_split(s)
    canonical = _phone_canonical(number)
    head, tail = canonical[:-_PHONE_TAIL], canonical[-_PHONE_TAIL:]
    # North American exchange codes do not begin with 0 or 1 (the only rule on these digits the patterns check);
    # not a re-scan of the text, which a bare "4155550132" would never pass without the words before it.
    # One that does (`+1 415 155 0132` is found in international form) gets a fake that does too: the walk
    # stays in the set its value is in, so `unmask` finds the way back.
    nanp = len(canonical) == 11 and canonical[0] == "1"
    low = tail[0] in "01"
    valid = (lambda r: (r[0] in "01") == low) if nanp else None
    new = fpe.digits(tail, tw + head.encode(), valid=valid, decrypt=dec)
    out = _put_last_digits(s, len(number), new)
    return _put_last_digits(out, len(s), fpe.digits(ext, tw + b"x" + head.encode(), decrypt=dec)) if ext else out


def _fake_ssn(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    d = "".join(c for c in s if "0" <= c <= "9")
    return _put_digits(s, fpe.digits(d, tw, valid=_patterns._v_ssn, decrypt=dec))


def _fake_iban(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    compact = s.replace(" ", "")
    bban = _classwise(fpe, compact[4:], tw + compact[:2].encode(), dec)
    new = compact[:2] + _patterns.iban_check_digits(compact[:2] + "00" + bban) + bban
    it = iter(new)
    return "".join(c if c == " " else next(it) for c in s)


def _fake_ip(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    addr = ipaddress.ip_address(s)
    bits = addr.max_prefixlen
    op = fpe.decrypt if dec else fpe.encrypt
    return str(type(addr)(op(int(addr), 1 << bits, tw + str(bits).encode())))


def _fake_email(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    """Letters and digits of the local part and of the domain permuted in place; only the dots,
    hyphens and the top-level label kept: a company's or a family's domain identifies a person."""
    local, _, domain = s.rpartition("@")
    name, dot, top = domain.rpartition(".")
    return _classwise(fpe, local, tw, dec) + "@" + _classwise(fpe, name, tw + b"@" + top.lower().encode(), dec) + dot + top


_WORD = re.compile(r"[A-Za-z]+|[0-9]+|[\u4e00-\u9fa5]")


@functools.lru_cache(maxsize=1)
def _cjk_not_kept() -> str:
    from trustforge.privacy._address import KEEP_CJK

    return "".join(c for c in _names._CJK_BLOCK if c not in KEEP_CJK)


def _fake_address(fpe: FPE, s: str, tw: bytes, dec: bool) -> str:
    """Numbers, street, district and city words and CJK characters permuted within their class;
    street suffixes, unit words, state codes, the leading province and 省/市/区/路/号... kept, so it
    still reads (and is found again) as an address."""
    from trustforge.privacy._address import KEEP_CJK, KEEP_WORDS, province_head

    head = province_head(s)  # 上海市, 广西壮族自治区: coarse, like a US state code

    def one(m: re.Match) -> str:
        w = m.group()
        if m.start() < head or w in KEEP_WORDS or w in KEEP_CJK:
            return w
        if "\u4e00" <= w <= "\u9fa5":
            return fpe.alphabet(w, _cjk_not_kept(), tw + b"c" + str(m.start()).encode(), decrypt=dec)
        return _classwise(fpe, w, tw + str(m.start()).encode(), dec)

    return _WORD.sub(one, s)


_FAKERS: dict[str, Callable[[FPE, str, bytes, bool], str]] = {
    "CREDIT_CARD": _fake_card,
    "CN_ID": _fake_cn_id,
    "CN_MOBILE": _fake_cn_mobile,
    "PHONE": _fake_phone,
    "US_SSN": _fake_ssn,
    "IBAN": _fake_iban,
    "IP_ADDRESS": _fake_ip,
    "EMAIL": _fake_email,
    "PERSON": lambda fpe, s, tw, dec: _names.fake_name(fpe, s, tw, dec),
    "ADDRESS": _fake_address,
}


def _fake(fpe: FPE, kind: str, text: str, dec: bool = False, era: str = "v4") -> str:
    """The fake of `text` (or with `dec` its original); `era`: the sidecar format a file was masked
    under (`v2` and `v3` faked Chinese resident IDs their own ways: see `_fake_cn_id_v2`, `_fake_date`)."""
    tweak = b"tf-pii-fake\x00" + kind.encode() + b"\x00"
    if kind == "CN_ID" and era in ("v2", "v3"):
        return _fake_cn_id_v2(fpe, text, tweak, dec) if era == "v2" else _fake_cn_id(fpe, text, tweak, dec, later=False)
    return _FAKERS[kind](fpe, text, tweak, dec)


def _normalise(kind: str, text: str) -> str:
    if kind == "PHONE":  # one token whatever the format: +1 415 555 0132, (415) 555-0132, 415-555-0132
        number, ext = _phone_split(text)
        return _phone_canonical(number) + (f"x{ext}" if ext else "")
    if kind in ("CREDIT_CARD", "CN_MOBILE", "US_SSN"):
        d = "".join(c for c in text if "0" <= c <= "9")
        return d[-11:] if kind == "CN_MOBILE" else d
    if kind in ("IBAN", "CN_ID"):
        return text.replace(" ", "").upper()
    if kind == "EMAIL":
        return text.lower()
    if kind == "IP_ADDRESS":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text
    return " ".join(text.split())


# ---------------------------------------------------------------- the masker


@dataclass
class MaskReport:
    """What `Masker.mask_frame` found and masked.

    Attributes:
        columns: column -> {entity type -> number of spans masked}; only columns with any.
        personal: column -> entity type, for columns classified as wholly personal (a column of emails).
        rows: the number of rows.
    """

    columns: dict[str, dict[str, int]] = field(default_factory=dict)
    personal: dict[str, str] = field(default_factory=dict)
    rows: int = 0

    @property
    def total(self) -> int:
        """Spans masked in all columns."""
        return sum(sum(c.values()) for c in self.columns.values())

    def counts(self) -> dict[str, int]:
        """Entity type -> spans masked, over all columns."""
        out: Counter[str] = Counter()
        for c in self.columns.values():
            out.update(c)
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (counts and column names only, never a value)."""
        return {"rows": self.rows, "total": self.total, "entities": self.counts(), "columns": self.columns, "personal": self.personal}


class Masker:
    """Masks personal data in strings and in the text columns of data frames.

    Args:
        policy: one of `POLICIES` for every entity type, or a mapping entity type -> policy
            (types not named are tagged; the key ``"*"`` sets that default).
        key: the secret for ``hash`` and ``fake`` (at least 16 bytes; the CLI derives it from the
            workspace masking secret, `Keyring.derive_key`). Not needed for ``redact`` and ``tag``.
        entities: the entity types to mask; None means all of `ENTITY_TYPES`.

    Raises:
        DataError: an unknown policy or entity type.
        SecurityError: ``hash`` or ``fake`` without a key (the message says how to get one).
    """

    def __init__(self, policy: str | Mapping[str, str] = "tag", key: bytes | None = None, entities: Iterable[str] | None = None):
        named: dict[str, str] = {}
        if isinstance(policy, str):
            policies = {t: policy for t in ENTITY_TYPES}
        elif isinstance(policy, Mapping):
            default = policy.get("*", "tag")
            named = {str(k).upper(): v for k, v in policy.items() if k != "*"}
            if named:
                check_types(named, where="policy")
            policies = {t: named.get(t, default) for t in ENTITY_TYPES}
        else:
            raise DataError(f"policy must be one of {', '.join(POLICIES)} or a mapping entity type -> policy; got {type(policy).__name__}")
        for kind, p in policies.items():
            if p not in POLICIES:
                raise DataError(f"policy for {kind}: must be one of {', '.join(POLICIES)}; got {p!r}")
        self.policies = policies
        self.types = check_types(entities)
        left_out = sorted(set(named) - self.types) if self.types is not None else []
        if left_out:  # its policy would never apply: that type would stay in clear
            raise DataError(f"policy names {left_out[0]}, which entities leaves out, so it would not be masked at all: add it to entities")
        keyed = sorted({p for p in policies.values() if p in _KEYED})
        self._key = _check_key(key, keyed[0]) if keyed else None
        self._fpe = FPE(self._key) if self._key is not None else None

    def __repr__(self) -> str:  # never the key
        return f"Masker({self.policies!r})"

    def replacement(self, kind: str, text: str) -> str:
        """What one detected span of `kind` becomes under this masker's policy."""
        policy = self.policies[kind]
        text = halfwidth(text)  # "１３８…" hashes as "138…" does, and its fake is made of ASCII digits
        if policy == "tag":
            return f"<{kind}>"
        if policy == "redact":
            return "[REDACTED]"
        if policy == "hash":
            mac = hmac.digest(self._key, b"tf-pii-hash\x00" + kind.encode() + b"\x00" + _normalise(kind, text).encode(), hashlib.sha256)
            return f"<{kind}:{mac[:8].hex()}>"
        return _fake(self._fpe, kind, text)

    def _mask(self, text: str) -> tuple[str, list[str]]:
        spans = scan_spans(text, self.types)
        if not spans:
            return text, []
        parts, pos = [], 0
        for kind, s, e, _ in spans:
            parts.append(text[pos:s])
            parts.append(self.replacement(kind, text[s:e]))
            pos = e
        parts.append(text[pos:])
        return "".join(parts), [k for k, _, _, _ in spans]

    def mask_text(self, text: str) -> str:
        """`text` with every detected entity replaced by its policy's replacement.

        Raises:
            DataError: `text` is not a string.
        """
        if not isinstance(text, str):
            raise DataError(f"mask_text: text must be a string; got {type(text).__name__}")
        return self._mask(text)[0]

    def mask_frame(self, df: "pd.DataFrame", columns: Iterable[str] | None = None) -> tuple["pd.DataFrame", MaskReport]:
        """A masked copy of `df` and a report of what was masked.

        Text columns (and integer columns that `classify_columns` calls personal, e.g. phone
        numbers read as numbers) are scanned cell by cell; each distinct value is masked once.

        Args:
            df: the frame; not changed.
            columns: the columns to mask; None means every text column and every personal one.

        Raises:
            DataError: `df` is not a data frame, or a named column is not in it.
        """
        import pandas as pd

        from trustforge.privacy._columns import classify_columns, text_values

        if not isinstance(df, pd.DataFrame):
            raise DataError(f"mask_frame: df must be a pandas DataFrame; got {type(df).__name__}")
        if isinstance(columns, str):  # one column's name, not its characters
            columns = [columns]
        if columns is None:
            chosen = list(df.columns)
        else:
            chosen = list(columns)
            missing = [c for c in chosen if c not in df.columns]
            if missing:
                raise DataError(f"column {missing[0]!r} is not in the data (columns: {', '.join(map(str, df.columns))[:300]})")
        report = MaskReport(rows=len(df))
        report.personal = {c: t for c, t in classify_columns(df[chosen]).items() if self.types is None or t in self.types}
        out = df.copy()
        for col in chosen:
            values = text_values(df[col], personal=str(col) in report.personal)
            if values is None:
                continue
            counts: Counter[str] = Counter()
            mapping: dict[Any, Any] = {}
            freq = values.value_counts(dropna=True)
            # In a column of names (or addresses) every non-empty cell is one, found by the lexicons or not:
            # each is masked whole.
            whole = report.personal.get(str(col))
            whole = whole if whole in _FREE_FORM else None
            for value, n in freq.items():
                if whole is not None and value.strip():
                    # the whole cell, so that `unmask` of a fake finds it again whatever it looks like
                    masked, kinds = self.replacement(whole, value), [whole]
                else:
                    masked, kinds = self._mask(value)
                mapping[value] = masked
                for k in kinds:
                    counts[k] += int(n)
            if counts:
                masked_col = values.map(mapping)
                out[col] = masked_col.where(values.notna(), df[col]).astype(object) if values.isna().any() else masked_col
                report.columns[str(col)] = dict(sorted(counts.items()))
        return out, report


def unmask_value(kind: str, text: str, key: bytes) -> str:
    """The original of one whole ``fake`` value of `kind` (a cell of a column of names or addresses)."""
    return _fake(FPE(_check_key(key, "fake")), kind, text, dec=True)


def unmask(text: str, key: bytes, entities: Iterable[str] | None = None) -> str:
    """Turn ``fake`` values in `text` back into the originals, with the key they were made with.

    ``hash`` tokens are one-way and ``tag``/``redact`` keep nothing: those stay as they are. The
    caller checks who may do this (the CLI requires the ``unmask`` action, admins only). Chinese
    resident IDs faked before the `trustforge.mask.v3` sidecar format (each part under a tweak of
    its own), and those born after 2025 faked before `trustforge.mask.v4` (their dates were kept),
    do not come back here: `unmask_file` reads a file's sidecar and undoes those.

    Raises:
        SecurityError: no key, or a key shorter than 16 bytes.
        DataError: `text` is not a string, or an unknown entity type.
    """
    _check_key(key, "fake")
    if not isinstance(text, str):
        raise DataError(f"unmask: text must be a string; got {type(text).__name__}")
    types = check_types(entities)
    return unmask_spans(text, key, types, types)


def unmask_spans(text: str, key: bytes, looked: frozenset[str] | None, faked: frozenset[str] | None, era: str = "v4") -> str:
    """`text` with the spans of the types in `faked` turned back, found among the types in `looked`
    (what the mask scanned for, so overlaps resolve as they did then); None means all types.
    Spans of the other types stay as they are: they were never faked. `era`: the sidecar format
    the text was masked under (`v2`: Chinese resident ID fakes permuted each part under a tweak of
    its own; `v2` and `v3`: a birth date after 2025 was kept)."""
    spans = scan_spans(text, looked)
    if not spans:
        return text
    fpe = FPE(_check_key(key, "fake"))
    parts, pos = [], 0
    for kind, s, e, _ in spans:
        if faked is not None and kind not in faked:
            continue
        parts.append(text[pos:s])
        parts.append(_fake(fpe, kind, text[s:e], dec=True, era=era))
        pos = e
    parts.append(text[pos:])
    return "".join(parts)
