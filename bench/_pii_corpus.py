"""A labelled PII corpus in English and Chinese, for bench/pii.py and tests/privacy.

Each record is a sentence from a template, with spans labelled by type, and near-miss negatives
(unlabelled): card numbers that fail Luhn, IBANs that fail mod-97, ID numbers with a wrong
check digit or an impossible date, SSNs with area 000/666/9xx, IPs with an octet over 255,
numbers with a prefix no mobile has, order numbers, dates, times, versions, amounts.

Names come from Faker (en_US, zh_CN). Faker is a dev dependency used only here: the detector
(`trustforge.privacy`) never imports it and its name lexicons come from other packages
(`names`, `jieba`), so the figures measure generalisation, not a lookup of the generator's lists.
Checksummed values are built here from random digits, so every one is valid (or, for the near
misses, invalid) by construction. Deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from dataclasses import dataclass

__all__ = ["Record", "make_corpus", "evaluate", "SCORED_TYPES"]

SCORED_TYPES = ("PERSON", "EMAIL", "PHONE", "CN_MOBILE", "CREDIT_CARD", "IBAN", "CN_ID", "US_SSN", "IP_ADDRESS", "ADDRESS")


@dataclass(frozen=True)
class Record:
    text: str
    spans: tuple[tuple[str, int, int], ...]  # (type, start, end)


# ---------------------------------------------------------------- checksummed values


def _luhn_digit(body: str) -> str:
    for d in "0123456789":
        total = 0
        for i, ch in enumerate(reversed(body + d)):
            v = int(ch)
            if i % 2:
                v = v * 2 - 9 if v > 4 else v * 2
            total += v
        if total % 10 == 0:
            return d
    raise AssertionError


_CARD_BRANDS = [  # (prefix, length)
    ("4", 16), ("4", 13), ("4", 19),  # Visa incl. 19 digits
    ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("23", 16),  # Mastercard incl. 2-series
    ("34", 15), ("37", 15),  # Amex
    ("6011", 16), ("65", 16),  # Discover
    ("3530", 16), ("62", 16), ("62", 19),  # JCB, UnionPay
    ("5018", 12), ("6759", 16), ("5020", 13),  # Maestro incl. 12 digits
]  # fmt: skip


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def card(rng: random.Random, valid: bool = True) -> str:
    prefix, n = rng.choice(_CARD_BRANDS)
    body = prefix + _digits(rng, n - 1 - len(prefix))
    check = _luhn_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    num = body + check
    style = rng.random()
    if style < 0.5 or n not in (15, 16):
        return num
    if n == 15:
        return f"{num[:4]} {num[4:10]} {num[10:]}"
    sep = " " if style < 0.8 else "-"
    return sep.join(num[i : i + 4] for i in range(0, 16, 4))


_IBAN_SPECS = {"GB": "4A14N", "DE": "18N", "FR": "23N", "ES": "20N", "NL": "4A10N", "IT": "1A22N", "CH": "17N", "BE": "12N"}


def iban(rng: random.Random, valid: bool = True) -> str:
    country = rng.choice(sorted(_IBAN_SPECS))
    spec = _IBAN_SPECS[country]
    bban = ""
    for part in spec.replace("A", "A ").replace("N", "N ").split():
        n, kind = int(part[:-1]), part[-1]
        bban += "".join(rng.choice(string.ascii_uppercase if kind == "A" else string.digits) for _ in range(n))
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 + 2
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


_PROVINCES = "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65".split()
_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id(rng: random.Random, valid: bool = True) -> str:
    born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randint(0, 65 * 365))
    date = born.strftime("%Y%m%d")
    if not valid and rng.random() < 0.5:
        date = f"{born.year}0230"  # no such day
    first = rng.choice(_PROVINCES) + f"{rng.randint(1, 99):02d}{rng.randint(1, 99):02d}" + date + _digits(rng, 3)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(first, _W)) % 11]
    if not valid and date[4:] != "0230":
        check = rng.choice([c for c in "0123456789X" if c != check])
    return first + check


def ssn(rng: random.Random, valid: bool = True) -> str:
    if valid:
        area = rng.choice([a for a in range(1, 900) if a != 666])
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    else:
        area = rng.choice([0, 666, rng.randint(900, 999)])
        group, serial = rng.randint(0, 99), rng.randint(0, 9999)
    return f"{area:03d}-{group:02d}-{serial:04d}"


_MOBILE = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "147", "150", "151", "152", "155", "157", "158", "159",
           "166", "170", "176", "177", "180", "181", "182", "185", "186", "187", "188", "189", "191", "198", "199"]  # fmt: skip


def cn_mobile(rng: random.Random) -> str:
    num = rng.choice(_MOBILE) + _digits(rng, 8)
    style = rng.random()
    if style < 0.45:
        return num
    if style < 0.6:
        return f"{num[:3]} {num[3:7]} {num[7:]}"
    if style < 0.75:
        return f"{num[:3]}-{num[3:7]}-{num[7:]}"
    if style < 0.9:
        return f"+86 {num}"
    return f"+86-{num[:3]}-{num[3:7]}-{num[7:]}"


def phone(rng: random.Random) -> str:
    area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(2, 9)}"
    ex, line = f"{rng.randint(2, 9)}{_digits(rng, 2)}", _digits(rng, 4)
    style = rng.random()
    if style < 0.25:
        return f"({area}) {ex}-{line}"
    if style < 0.45:
        return f"{area}-{ex}-{line}"
    if style < 0.6:
        return f"+1 {area} {ex} {line}"
    if style < 0.7:
        return f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}"
    if style < 0.8:
        return f"+49 30 {_digits(rng, 8)}"
    if style < 0.9:
        return f"+33 {rng.randint(1, 9)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}"
    return f"0{rng.choice(['10', '21', '755', '571'])}-{rng.randint(2, 8)}{_digits(rng, 7)}"


def ipv4(rng: random.Random, valid: bool = True) -> str:
    octets = [rng.randint(1, 254), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)]
    if not valid:
        octets[rng.randint(0, 3)] = rng.randint(256, 999)
    return ".".join(map(str, octets))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.4:
        return f"2001:db8::{groups[6]}:{groups[7]}"
    return ":".join(groups)


# ---------------------------------------------------------------- templates

_EN = [
    "Customer {PERSON} can be reached at {EMAIL} or {PHONE}.",
    "Please charge card {CREDIT_CARD} for order #{ORDER}.",
    "Wire the refund to {IBAN} (account holder {PERSON}).",
    "SSN on file: {US_SSN}; last login from {IP_ADDRESS}.",
    "{PERSON} called from {PHONE} about invoice {ORDER} dated {DATE}.",
    "Contact {EMAIL} if the server at {IP_ADDRESS} is down.",
    "Dear {PERSON}, your card ending {ORDER4} was declined.",
    "Meeting moved to {TIME}; build v{VERSION} is live.",
    "Ticket {ORDER}: total ${AMOUNT}, reference {NEG}.",
    "New employee {PERSON}, SSN {US_SSN}, email {EMAIL}.",
    "Invalid number {NEG} was rejected by the form.",
    "Payment of ${AMOUNT} received from {IBAN}.",
    "The New York office opens on Monday; Customer Service moved to {PHONE}.",
    "Quarterly revenue grew {AMOUNT} percent in North America and Western Europe.",
    "Thank you for choosing Green Valley Bank; Mr. {PERSON} will handle your request.",
    "Release Notes: Apple Pay and Google Wallet are supported since {DATE}.",
    "Ship order {ORDER} to {ADDRESS}.",
    "{PERSON} moved; the new mailing address is {ADDRESS} (phone {PHONE}).",
    "Our 3 Main Street branch opens at 9; 24 Hour Fitness is next door.",
]
_ZH = [
    "客户{PERSON}的手机号是{CN_MOBILE}，邮箱{EMAIL}。",
    "身份证号码：{CN_ID}，银行卡{CREDIT_CARD}",
    "{PERSON}于{DATE}从{IP_ADDRESS}登录系统",
    "请联系{PERSON}，电话{CN_MOBILE}",
    "用户{PERSON}（email: {EMAIL}）卡号{CREDIT_CARD}",
    "订单{ORDER}已发货，金额{AMOUNT}元",
    "申请人{PERSON}，身份证{CN_ID}，手机{CN_MOBILE}",
    "转账至账户{IBAN}，收款人{PERSON}",
    "无效号码{NEG}，请重新输入",
    "办公电话{PHONE}，邮箱{EMAIL}",
    "版本{VERSION}于{TIME}发布",
    "持卡人{PERSON}的卡号{CREDIT_CARD}已冻结",
    "我们将在下周一召开会议，讨论新产品的发布计划。",
    "系统维护期间服务暂停，请于{TIME}后再试。",
    "感谢您的耐心等待，工作人员会尽快处理您的申请。",
    "本月销售额同比增长{AMOUNT}%，高于市场预期。",
    "经理{PERSON}表示，明年将扩大华东地区的业务。",
    "王府井大街的门店将于{DATE}重新开业。",
    "由于天气原因，航班延误，张家界景区暂停开放。",
    "白天的气温比昨天高，周末有小雨。",
    "收货地址：{ADDRESS}，收件人{PERSON}",
    "{PERSON}的住址是{ADDRESS}，邮编已核对。",
    "上海市的地铁线路图已更新，南京路步行街周末人多。",
]


def _neg(rng: random.Random) -> str:
    kind = rng.randrange(7)
    if kind == 0:
        return card(rng, valid=False)
    if kind == 1:
        return iban(rng, valid=False)
    if kind == 2:
        return cn_id(rng, valid=False)
    if kind == 3:
        return ssn(rng, valid=False)
    if kind == 4:
        return ipv4(rng, valid=False)
    if kind == 5:
        return rng.choice(["12", "10", "11"]) + _digits(rng, 9)  # no mobile prefix
    return _digits(rng, rng.choice([6, 8, 10]))


def make_corpus(n: int = 1500, seed: int = 0) -> list[Record]:
    """`n` records, about half English and half Chinese, deterministic for `seed`."""
    from faker import Faker

    rng = random.Random(seed)
    fakers = {"en": Faker("en_US"), "zh": Faker("zh_CN")}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed * 2 + i)
    records = []
    for _ in range(n):
        lang = "zh" if rng.random() < 0.5 else "en"
        template = rng.choice(_ZH if lang == "zh" else _EN)
        text, spans, pos = "", [], 0
        while True:
            i = template.find("{", pos)
            if i < 0:
                text += template[pos:]
                break
            j = template.index("}", i)
            text += template[pos:i]
            slot = template[i + 1 : j]
            value, label = _fill(slot, lang, rng, fakers)
            if label:
                spans.append((label, len(text), len(text) + len(value)))
            text += value
            pos = j + 1
        records.append(Record(text, tuple(spans)))
    return records


def _fill(slot: str, lang: str, rng: random.Random, fakers) -> tuple[str, str | None]:
    f = fakers[lang]
    if slot == "PERSON":
        return f.name() if lang == "zh" else f"{f.first_name()} {f.last_name()}", "PERSON"
    if slot == "EMAIL":
        user = fakers["en"].user_name() if lang == "en" or rng.random() < 0.5 else fakers["zh"].romanized_name().replace(" ", ".").lower()
        return f"{user}@{rng.choice(['163.com', 'qq.com', 'gmail.com', 'example.org', 'mail.co.uk', 'corp.cn'])}", "EMAIL"
    if slot == "PHONE":
        return phone(rng), "PHONE"
    if slot == "CN_MOBILE":
        return cn_mobile(rng), "CN_MOBILE"
    if slot == "CREDIT_CARD":
        return card(rng), "CREDIT_CARD"
    if slot == "IBAN":
        return iban(rng), "IBAN"
    if slot == "CN_ID":
        return cn_id(rng), "CN_ID"
    if slot == "US_SSN":
        return ssn(rng), "US_SSN"
    if slot == "ADDRESS":
        return (f.address().replace("\n", ", ") if lang == "en" else f.address()), "ADDRESS"
    if slot == "IP_ADDRESS":
        return (ipv4(rng) if rng.random() < 0.7 else ipv6(rng)), "IP_ADDRESS"
    if slot == "ORDER":
        return _digits(rng, rng.choice([5, 6, 8])), None
    if slot == "ORDER4":
        return _digits(rng, 4), None
    if slot == "DATE":
        d = dt.date(2020, 1, 1) + dt.timedelta(days=rng.randint(0, 1500))
        return (d.isoformat() if lang == "en" else f"{d.year}年{d.month}月{d.day}日"), None
    if slot == "TIME":
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}", None
    if slot == "VERSION":
        return f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}", None
    if slot == "AMOUNT":
        return f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02d}", None
    if slot == "NEG":
        return _neg(rng), None
    raise KeyError(slot)


# ---------------------------------------------------------------- scoring


def evaluate(records: list[Record], predicted: list[list[tuple[str, int, int]]], merge: dict[str, str] | None = None) -> dict:
    """Span match = overlap with the same type; per-type and micro-averaged precision, recall, F2.

    `merge` maps types onto others before matching (to compare with a system that has fewer
    types, e.g. CN_MOBILE -> PHONE for Presidio). Predicted types outside the scored ones are ignored.
    """
    merge = merge or {}
    scored = {merge.get(t, t) for t in SCORED_TYPES}
    tp_g: dict[str, int] = {}
    gold_n: dict[str, int] = {}
    tp_p: dict[str, int] = {}
    pred_n: dict[str, int] = {}
    for rec, pred in zip(records, predicted):
        gold = [(merge.get(t, t), s, e) for t, s, e in rec.spans]
        pred = [(merge.get(t, t), s, e) for t, s, e in pred if merge.get(t, t) in scored]
        for t, s, e in gold:
            gold_n[t] = gold_n.get(t, 0) + 1
            if any(pt == t and ps < e and s < pe for pt, ps, pe in pred):
                tp_g[t] = tp_g.get(t, 0) + 1
        for t, s, e in pred:
            pred_n[t] = pred_n.get(t, 0) + 1
            if any(gt == t and gs < e and s < ge for gt, gs, ge in gold):
                tp_p[t] = tp_p.get(t, 0) + 1
    per = {}
    for t in sorted(scored):
        p = tp_p.get(t, 0) / pred_n[t] if pred_n.get(t) else 0.0
        r = tp_g.get(t, 0) / gold_n[t] if gold_n.get(t) else 0.0
        per[t] = {"precision": p, "recall": r, "support": gold_n.get(t, 0), "predicted": pred_n.get(t, 0)}
    P = sum(tp_p.values()) / max(1, sum(pred_n.values()))
    R = sum(tp_g.values()) / max(1, sum(gold_n.values()))
    f2 = 5 * P * R / (4 * P + R) if P + R else 0.0
    return {"precision": P, "recall": R, "f2": f2, "spans": sum(gold_n.values()), "per_type": per}
