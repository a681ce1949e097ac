"""Format-preserving fakes: a Chinese resident ID's fake birth date depends on the whole ID (equal
fake dates never reveal equal real ones), a birth date after 2025 is faked within its year, files
masked with the earlier ID fakes (v2 and v3 sidecars) still unmask, the cycle walk is bounded and refuses values outside its set, and a North American
number whose exchange begins with 0 or 1 still unmasks."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from trustforge.errors import DataError
from trustforge.privacy import Masker, mask_file, scan_text, unmask, unmask_file
from trustforge.privacy._files import _mac, _sha256, sidecar_path
from trustforge.privacy._fpe import FPE
from trustforge.privacy._mask import _fake
from trustforge.privacy._patterns import cn_id_check

KEY = bytes(range(32))


def _id(first17: str) -> str:
    return first17 + cn_id_check(first17)


# one birth date (31 December 1949) in IDs of different regions and serials, and one region too
BORN_SAME_DAY = [_id(f"11{region:04d}19491231{serial:03d}") for region in (105, 106, 108, 2011) for serial in (2, 17, 318, 999)]


def test_ids_born_on_one_day_get_unrelated_fake_dates():
    masker = Masker("fake", key=KEY)
    fakes = [masker.mask_text(i) for i in BORN_SAME_DAY]
    dates = [f[6:14] for f in fakes]
    assert len(set(dates)) > len(dates) // 2, dates  # not one shared fake date
    same_region = [f[6:14] for f in fakes[:4]]  # one region, one date, four serials
    assert len(set(same_region)) == 4, same_region
    for real, fake in zip(BORN_SAME_DAY, fakes):
        assert fake != real and fake[:2] == real[:2]  # the province is kept
        assert dt.datetime.strptime(fake[6:14], "%Y%m%d").year >= 1900  # a real date
        assert fake[17] == cn_id_check(fake[:17])
        assert [(e.type, e.text) for e in scan_text(f"身份证{fake}")] == [("CN_ID", fake)]
        assert masker.mask_text(real) == fake  # deterministic under the key
        assert unmask(fake, KEY) == real


def test_a_file_masked_with_the_earlier_id_fakes_still_unmasks(tmp_path):
    df = pd.DataFrame({"id": BORN_SAME_DAY[:3], "note": ["a@example.com", "b@example.com", "x"]})
    src, out = tmp_path / "ids.csv", tmp_path / "masked.csv"
    df.to_csv(src, index=False)
    mask_file(src, out, Masker("fake", key=KEY))
    side = sidecar_path(out)
    assert json.loads(side.read_text())["format"] == "trustforge.mask.v4"
    unmask_file(out, tmp_path / "back.csv", KEY)
    assert pd.read_csv(tmp_path / "back.csv", dtype=str).equals(df)

    # what a v2 mask wrote: the ID fakes of then (every ID born that day with one fake date)
    old = df.copy()
    old["id"] = [_fake(FPE(KEY), "CN_ID", i, era="v2") for i in df["id"]]
    old["note"] = [Masker("fake", key=KEY).mask_text(v) for v in df["note"]]
    assert old["id"].str[6:14].nunique() == 1
    old.to_csv(out, index=False)
    doc = json.loads(side.read_text())
    body = {"format": "trustforge.mask.v2", "policies": doc["policies"], "key": doc["key"], "sha256": _sha256(out)}
    side.write_text(json.dumps({**body, "mac": _mac(KEY, body)}))
    unmask_file(out, tmp_path / "back2.csv", KEY)
    assert pd.read_csv(tmp_path / "back2.csv", dtype=str).equals(df)


# born in 2026, the first year after the first domain (1900-2025), early enough to be past
BORN_LATER = [
    _id(f"44{region:04d}2026{month:02d}{day:02d}{serial:03d}")
    for region, month, day, serial in ((103, 1, 12, 7), (305, 2, 15, 88), (106, 1, 10, 412), (2011, 3, 11, 950))
]


def test_an_id_born_after_2025_gets_a_fake_birth_date_in_its_year():
    """Birth dates from 1900 to 2025 are permuted among those; a later one was kept whole (a baby's
    ID kept its real birth date): it is now permuted among the days of its own year, so the fake
    is never in a year after today's and is found and unmasked again."""
    masker = Masker("fake", key=KEY)
    fakes = [masker.mask_text(i) for i in BORN_LATER]
    assert sum(f[6:14] != r[6:14] for r, f in zip(BORN_LATER, fakes)) >= 3, fakes
    for real, fake in zip(BORN_LATER, fakes):
        assert fake[6:10] == real[6:10] and fake[17] == cn_id_check(fake[:17])
        dt.datetime.strptime(fake[6:14], "%Y%m%d")  # a real date
        assert [(e.type, e.text) for e in scan_text(f"身份证{fake}")] == [("CN_ID", fake)]
        assert unmask(fake, KEY) == real


def test_a_file_masked_when_later_birth_dates_were_kept_still_unmasks(tmp_path):
    """A v3 sidecar: its IDs born after 2025 kept their dates; unmasking does not permute them."""
    df = pd.DataFrame({"id": BORN_LATER})
    out = tmp_path / "masked.csv"
    df.to_csv(tmp_path / "ids.csv", index=False)
    mask_file(tmp_path / "ids.csv", out, Masker("fake", key=KEY))
    old = pd.DataFrame({"id": [_fake(FPE(KEY), "CN_ID", i, era="v3") for i in df["id"]]})
    assert (old["id"].str[6:14] == df["id"].str[6:14]).all()  # v3 kept the date
    old.to_csv(out, index=False)
    side = sidecar_path(out)
    doc = json.loads(side.read_text())
    body = {"format": "trustforge.mask.v3", "policies": doc["policies"], "key": doc["key"], "sha256": _sha256(out)}
    side.write_text(json.dumps({**body, "mac": _mac(KEY, body)}))
    unmask_file(out, tmp_path / "back.csv", KEY)
    assert pd.read_csv(tmp_path / "back.csv", dtype=str).equals(df)


def test_the_cycle_walk_is_bounded():
    calls = []

    def only_zero(v: int) -> bool:  # a set of one value: the walk from 0 goes round its whole cycle
        calls.append(v)
        if len(calls) > 5000:
            raise RuntimeError("the cycle walk did not stop")
        return v == 0

    with pytest.raises(DataError, match="no value of the set in 1000 steps"):
        FPE(KEY).encrypt(0, 10**6, b"t", valid=only_zero)


@pytest.mark.parametrize("x,n", [(5, 10), (10, 10), (-1, 10)])
def test_a_value_outside_the_set_is_refused_not_walked(x, n):
    with pytest.raises(DataError, match="outside the set"):
        FPE(KEY).encrypt(x, n, b"t", valid=lambda v: v != 5)
    with pytest.raises(DataError, match="outside the set"):
        FPE(KEY).decrypt(x, n, b"t", valid=lambda v: v != 5)


@pytest.mark.parametrize("number", ["+1 415 155 0132", "+1 415 055 0132", "+1 415 555 0132"])
def test_a_north_american_number_unmasks_whatever_its_exchange(number):
    text = f"call {number} now"
    fake = Masker("fake", key=KEY).mask_text(text)
    assert fake != text and unmask(fake, KEY) == text
