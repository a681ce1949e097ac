"""Person names the lexicon pair alone misses (issue 15, a new user's report): common two-character
Chinese names, context cues, titles, hyphenated and lower-case English names, romanised Chinese
names; near-miss words that begin with a surname character; name columns found by header and shape."""

from __future__ import annotations

import pandas as pd
import pytest

from trustforge.privacy import Masker, classify_columns, scan_text


def persons(text: str) -> list[str]:
    return [e.text for e in scan_text(text) if e.type == "PERSON"]


@pytest.mark.parametrize(
    "text,names",
    [
        ("李娜", ["李娜"]),
        ("李强", ["李强"]),
        ("习近平", ["习近平"]),
        ("请联系李娜，电话13812345678", ["李娜"]),
        ("我叫李娜。", ["李娜"]),
        ("Contact 李娜 tomorrow", ["李娜"]),
        ("给李强打电话", ["李强"]),
        ("李娜老师明天上课", ["李娜"]),
        ("张经理不在", ["张经理"]),
        ("Wang Fang", ["Wang Fang"]),
        ("Please ask Zhang Xiaoming today", ["Zhang Xiaoming"]),
        ("Jean-Pierre Dubois", ["Jean-Pierre Dubois"]),
        ("mary ann smith", ["mary ann smith"]),
        ("Mary Ann Smith signed", ["Mary Ann Smith"]),
        ("Dr. Zebulon Quixote", ["Zebulon Quixote"]),
        ("Ask Prof Quentin Zarathustra and Mrs. Oyelaran", ["Quentin Zarathustra", "Oyelaran"]),
    ],
)
def test_names_the_user_reported_are_found(text, names):
    assert persons(text) == names


@pytest.mark.parametrize(
    "text",
    [
        "高兴",
        "王国",
        "张开",
        "黄金",
        "我很高兴见到你",
        "王国的历史很长",
        "他张开双手",
        "黄金价格上涨",
        "银行卡6011000000000004",
        "我叫高兴",  # 高兴 is an adjective in the dictionary, not a person
        # words jieba's dictionary tags `nr` (person): alone in a cell, or after a cue
        "明白",
        "胡子",
        "孙子",
        "王朝",
        "小姐",
        "老公",
        "高峰",
        "安静",
        "我叫明白了",
        "给孙子买书",
        "He Ran to the office",  # He: a pinyin surname that is an English word
        "The Dr. said nothing",
        "new york city",
        "rose gold",  # lower case: a first name and a (rare) Census surname that are ordinary words
        "bill payment",
        "mark down",
        "see you soon",
        "please call me tomorrow",
        "Mr. The",
    ],
)
def test_near_misses_are_not_names(text):
    assert persons(text) == []


def test_lower_case_names_only_when_the_text_is_the_name():
    assert persons("mary smith") == ["mary smith"]
    assert persons("i told mary smith about it") == []  # in running lower-case text, too many ordinary words


# A name column the detector covers only in part (3 of 8 cells): header + shape make it PERSON.
NAMES = ["Li Na", "李娜", "Jean-Pierre Dubois", "Xu Zzq", "Olumide Adeyemi", "Siobhan Nic", "Kwame Mensah", "Thandiwe Zulu"]


@pytest.mark.parametrize("header", ["name", "full_name", "customerName", "姓名", "Customer"])
def test_a_named_name_shaped_column_is_personal_at_a_lower_detection_rate(header):
    found = sum(bool(persons(v)) for v in NAMES)
    assert 0 < found < len(NAMES) / 2  # below the default threshold: header and shape decide
    df = pd.DataFrame({header: NAMES, "city": ["Paris", "London", "Tokyo", "Lima", "Oslo", "Rome", "Cairo", "Delhi"]})
    assert classify_columns(df) == {header: "PERSON"}
    out, report = Masker("tag").mask_frame(df)
    assert out[header].tolist() == ["<PERSON>"] * len(NAMES) and report.personal == {header: "PERSON"}
    assert not any("李娜" in str(v) for v in out.to_numpy().ravel())


def test_the_lower_rate_needs_the_header_the_shape_and_distinct_values():
    assert classify_columns(pd.DataFrame({"code": NAMES})) == {}  # header says nothing of people
    assert classify_columns(pd.DataFrame({"product_name": NAMES})) == {}  # a name, but of a product
    assert classify_columns(pd.DataFrame({"username": NAMES})) == {}
    shapeless = ["Li Na", "李娜", "Jean-Pierre Dubois", "SKU-1234", "A/B 12", "x_9", "#42", "2024-01-01"]
    assert classify_columns(pd.DataFrame({"name": shapeless})) == {}
    repeated = ["Li Na", "李娜", "Jean-Pierre Dubois"] + ["Widget"] * 7
    assert classify_columns(pd.DataFrame({"name": repeated})) == {}
    unfound = ["Widget Pro", "Gadget Max", "Super Tool", "Hyper Drive", "Nano Kit", "Mega Pack", "Blue Box", "Red Cap"]
    assert classify_columns(pd.DataFrame({"name": unfound})) == {}  # name-shaped, but no cell is a name
