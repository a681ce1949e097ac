"""A small table with planted personal data, for the `data.protect` tests.

Importable from every test folder (tests/conftest.py puts tests/ on `sys.path`). Its own short
name lists, not the detector's lexicons and not Faker's: names, emails, Chinese resident ID
numbers with valid GB 11643 check digits (a share ending in X), Chinese mobile numbers, and free
text that carries some of them; beside them columns a model can learn from (city, age, a
label that follows them).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

_FIRST = ["Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Isabella", "James", "Charlotte", "William"]
_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson", "Anderson", "Taylor", "Moore"]
_CN_SURNAME = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵"]
_CN_GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军"]
_AREAS = ["110101", "310104", "440305", "330106", "510107", "420102"]
_MOBILE = ["130", "131", "135", "136", "138", "139", "150", "151", "158", "177", "186", "188", "199"]  # assigned prefixes
_CITIES = ["north", "south", "east", "west"]
_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def cn_id(rng: np.random.Generator, want_x: bool | None = None) -> str:
    """A Chinese resident ID number: area, a real birth date, sequence, GB 11643 check digit."""
    while True:
        day = dt.date(1950, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 50)))
        body = f"{_AREAS[rng.integers(len(_AREAS))]}{day:%Y%m%d}{rng.integers(0, 1000):03d}"
        check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _W)) % 11]
        if want_x is None or (check == "X") == want_x:
            return body + check


def pii_table(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """(the table, the planted values by kind: name, email, cn_id, phone)."""
    rng = np.random.default_rng(seed)
    rows, planted = [], {"name": [], "email": [], "cn_id": [], "phone": []}
    for i in range(n):
        if i % 4 == 3:
            name = _CN_SURNAME[rng.integers(len(_CN_SURNAME))] + _CN_GIVEN[rng.integers(len(_CN_GIVEN))]
            email = f"user{i:03d}.{rng.integers(1000, 9999)}@mail.example.cn"
        else:
            first, last = _FIRST[rng.integers(len(_FIRST))], _LAST[rng.integers(len(_LAST))]
            name = f"{first} {last}"
            email = f"{first.lower()}.{last.lower()}{i:03d}@example.org"
        ident = cn_id(rng, want_x=(i % 5 == 0))
        phone = f"{_MOBILE[rng.integers(len(_MOBILE))]}{rng.integers(0, 10**8):08d}"
        city = _CITIES[rng.integers(len(_CITIES))]
        age = int(rng.integers(18, 80))
        note = [
            f"Customer asked to be called back on {phone} about the order",
            f"Sent the invoice to {email} as requested",
            f"客户要求回电 {phone}，关于订单",
            "Paid on time, no complaints so far",
        ][i % 4]
        label = "yes" if age + (20 if city in ("east", "west") else 0) > 58 else "no"
        topic = ["callback", "invoice", "callback", "paid"][i % 4]
        row = {"name": name, "email": email, "id_number": ident, "phone": phone, "city": city, "age": age, "note": note}
        rows.append({**row, "topic": topic, "label": label})
        planted["name"].append(name)
        planted["email"].append(email)
        planted["cn_id"].append(ident)
        planted["phone"].append(phone)
    return pd.DataFrame(rows), planted


def write_pii_table(path: Path, n: int = 300, seed: int = 0) -> dict[str, list[str]]:
    """Write `pii_table` as CSV at `path`; the planted values by kind."""
    frame, planted = pii_table(n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return planted
