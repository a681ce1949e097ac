"""trustforge.privacy: checksummed pattern entities (in English and inside Chinese text), near
misses rejected, masking policies, keyed fakes that unmask, frames and column classification."""

from __future__ import annotations

import pandas as pd
import pytest

from trustforge.errors import DataError, SecurityError
from trustforge.privacy import ENTITY_TYPES, Entity, Masker, MaskReport, classify_columns, scan_text, unmask

KEY = bytes(range(32))

POSITIVES = [
    ("EMAIL", "zhang.wei@163.com"),
    ("EMAIL", "j.doe+news@mail.example.co.uk"),
    ("CN_MOBILE", "13812345678"),
    ("CN_MOBILE", "+86 139-1234-5678"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "(415) 555-2671"),
    ("PHONE", "010-62345678"),
    ("CREDIT_CARD", "4111111111111111"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "2223000048400011"),  # Mastercard 2-series
    ("CREDIT_CARD", "378282246310005"),  # Amex
    ("CREDIT_CARD", "6759649826438453"),  # Maestro, 16
    ("CREDIT_CARD", "501800000009"),  # Maestro, 12 digits (Luhn-valid)
    ("CREDIT_CARD", "4222222222222222224"),  # Visa, 19 digits (Luhn-valid)
    ("IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "DE89370400440532013000"),
    ("CN_ID", "11010519491231002X"),
    ("CN_ID", "440308199901010012"),
    ("US_SSN", "536-22-1234"),
    ("IP_ADDRESS", "192.168.1.10"),
    ("IP_ADDRESS", "2001:db8::8a2e:370:7334"),
]

NEAR_MISSES = [
    "4111111111111112",  # Luhn fails
    "1234567890123456",  # no issuer, Luhn fails
    "GB82 WEST 1234 5698 7654 33",  # mod-97 fails
    "11010519491231002Y",  # not a check character
    "110105194912310021",  # wrong check digit
    "110105194902300020",  # 30 February (its check digit is right for the digits)
    "000-12-3456",  # SSN area 000
    "666-12-3456",
    "912-34-5678",
    "256.1.1.1",
    "1.2.3",
    "12:30:45",
    "12812345678",  # 128: not a mobile prefix
    "1381234567",  # 10 digits
    "user@localhost",
    "name@@example.com",
    "2024-01-15",
]


@pytest.mark.parametrize("kind,value", POSITIVES)
def test_each_pattern_is_found_alone_in_english_and_inside_chinese(kind, value):
    for text, offset in ((value, 0), (f"Contact: {value}.", 9), (f"客户的号码是{value}，请核对", 6)):
        found = scan_text(text)
        assert [(e.type, e.text) for e in found] == [(kind, value)], text
        assert found[0].start == offset and text[found[0].start : found[0].end] == value


@pytest.mark.parametrize("value", NEAR_MISSES)
def test_near_misses_are_rejected(value):
    assert [e for e in scan_text(f"值{value}。 and {value}") if e.type != "PERSON"] == []


def test_check_digits_of_the_near_misses_are_what_makes_them_wrong():
    from trustforge.privacy._patterns import cn_id_check, luhn_ok

    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert cn_id_check("11010519491231002") == "X"
    assert cn_id_check("11010519490230002") == "0"  # the near miss above fails on its date alone


def test_mixed_string_and_entity_filter():
    text = "张伟 email:zhang.wei@163.com卡号4111111111111111 IP 10.0.0.1"
    kinds = [e.type for e in scan_text(text)]
    assert kinds[-3:] == ["EMAIL", "CREDIT_CARD", "IP_ADDRESS"]
    assert [e.type for e in scan_text(text, entities=["EMAIL"])] == ["EMAIL"]
    assert isinstance(scan_text(text)[0], Entity) and "ADDRESS" in ENTITY_TYPES
    with pytest.raises(DataError, match="unknown entity type 'NOPE'"):
        scan_text(text, entities=["NOPE"])


TEXT = "客户手机13812345678，身份证11010519491231002X，card 4111111111111111, IBAN DE89370400440532013000, SSN 536-22-1234, ip 192.168.1.10"


def test_tag_redact_and_hash_policies():
    assert Masker("tag").mask_text(TEXT) == (
        "客户手机<CN_MOBILE>，身份证<CN_ID>，card <CREDIT_CARD>, IBAN <IBAN>, SSN <US_SSN>, ip <IP_ADDRESS>"
    )
    assert "[REDACTED]" in Masker("redact").mask_text(TEXT) and "13812345678" not in Masker("redact").mask_text(TEXT)
    hashed = Masker("hash", key=KEY).mask_text(TEXT)
    # joins still work: the same value gets the same token, whatever its formatting; another key another token
    m = Masker("hash", key=KEY)
    assert m.mask_text("138 1234 5678") == m.mask_text("13812345678") != Masker("hash", key=KEY[::-1]).mask_text("13812345678")
    assert m.mask_text("13812345678") in hashed
    per_type = Masker({"EMAIL": "redact", "*": "tag"}).mask_text("a.b@example.com 13812345678")
    assert per_type == "[REDACTED] <CN_MOBILE>"


def test_fake_keeps_checksums_and_unmasks_only_with_the_key():
    fake = Masker("fake", key=KEY).mask_text(TEXT)
    found, original = scan_text(fake), scan_text(TEXT)
    assert [e.type for e in found] == [e.type for e in original]  # fakes still pass their checksums
    assert all(a.text != b.text for a, b in zip(found, original))
    assert Masker("fake", key=KEY).mask_text(TEXT) == fake  # deterministic
    assert unmask(fake, KEY) == TEXT
    assert unmask(fake, KEY[::-1]) != TEXT


def test_a_missing_key_is_one_clear_error():
    with pytest.raises(SecurityError, match="'hash' needs a key: run `trustforge keys init`"):
        Masker("hash")
    with pytest.raises(SecurityError, match="needs a key"):
        Masker({"EMAIL": "fake"})
    with pytest.raises(SecurityError, match="at least 16 bytes"):
        unmask("x", b"short")
    with pytest.raises(DataError, match="policy for EMAIL: must be one of redact, tag, hash, fake; got 'blur'"):
        Masker({"EMAIL": "blur"})


def test_mask_frame_and_classify_columns():
    df = pd.DataFrame(
        {
            "email": ["a.b@example.com", "c.d@example.org", "e@example.cn", None],
            "mobile": [13812345678, 13912345678, 15012345678, 18612345678],
            "note": ["call 010-62345678", "ok", "身份证11010519491231002X", "nothing"],
            "amount": [1.0, 2.0, 3.5, 4.0],
        }
    )
    assert classify_columns(df) == {"email": "EMAIL", "mobile": "CN_MOBILE"}
    out, report = Masker("tag").mask_frame(df)
    assert isinstance(report, MaskReport)
    assert out["email"].tolist()[:3] == ["<EMAIL>"] * 3 and out["email"].isna().tolist()[3]
    assert out["mobile"].tolist() == ["<CN_MOBILE>"] * 4
    assert out["note"].tolist() == ["call <PHONE>", "ok", "身份证<CN_ID>", "nothing"]
    assert out["amount"].tolist() == df["amount"].tolist() and df["email"][0] == "a.b@example.com"
    assert report.columns == {"email": {"EMAIL": 3}, "mobile": {"CN_MOBILE": 4}, "note": {"CN_ID": 1, "PHONE": 1}}
    assert report.personal == {"email": "EMAIL", "mobile": "CN_MOBILE"} and report.total == 9
    with pytest.raises(DataError, match="column 'nope' is not in the data"):
        Masker("tag").mask_frame(df, columns=["nope"])


def test_names_english_and_chinese_fake_and_back():
    text = "客户张伟的手机13812345678，经理王秀英表示同意; Dear John A. Smith, thanks."
    assert [(e.type, e.text) for e in scan_text(text)] == [
        ("PERSON", "张伟"),
        ("CN_MOBILE", "13812345678"),
        ("PERSON", "王秀英"),
        ("PERSON", "John A. Smith"),
    ]
    assert [e.text for e in scan_text("张家界景区暂停开放，周末有小雨。The New York office")] == []  # places, weather, not people
    fake = Masker("fake", key=KEY).mask_text(text)
    assert not any(name in fake for name in ("张伟", "王秀英", "John", "Smith")), fake
    assert unmask(fake, KEY) == text


def test_a_name_column_is_masked_whole_where_the_lexicons_miss_a_cell():
    df = pd.DataFrame({"customer": ["John Smith", "Mary Johnson", "Xavi Zzyzx", "欧阳娜娜", ""]})
    out, report = Masker("tag").mask_frame(df)
    assert report.personal == {"customer": "PERSON"}
    assert out["customer"].tolist() == ["<PERSON>"] * 4 + [""]
    fake, _ = Masker("fake", key=KEY).mask_frame(df)
    assert not set(fake["customer"][:4]) & set(df["customer"]) and fake["customer"][4] == ""


def test_addresses_us_and_chinese_and_their_fakes():
    text = "Ship to 353 Kathleen Highway Apt. 681, Lake Victoria, VI 39349 today; 收货地址：吉林省桂花县长寿陈路L座 673662，谢谢"
    assert [e.text for e in scan_text(text) if e.type == "ADDRESS"] == [
        "353 Kathleen Highway Apt. 681, Lake Victoria, VI 39349",
        "吉林省桂花县长寿陈路L座 673662",
    ]
    fake = Masker("fake", key=KEY).mask_text(text)
    assert "Kathleen" not in fake and "桂花" not in fake and "673662" not in fake and unmask(fake, KEY) == text


def test_a_long_log_is_scanned_and_masked_whole():
    log = "".join(f"{i:05d} login user{i}@example.com from 10.0.{i % 256}.{i // 256 % 256}\n" for i in range(5000))
    found = scan_text(log)
    assert [e.type for e in found[:2]] == ["EMAIL", "IP_ADDRESS"] and len(found) == 10000
    masked = Masker("tag").mask_text(log)
    assert masked.count("<EMAIL>") == 5000 and "@example.com" not in masked and masked.count("\n") == 5000


def test_full_width_digits_and_letters_are_found_where_they_are():
    text = "手机１３８１２３４５６７８，邮箱ｚｈａｎｇ＠１６３．ｃｏｍ"
    found = scan_text(text)
    assert [(e.type, e.text) for e in found] == [("CN_MOBILE", "１３８１２３４５６７８"), ("EMAIL", "ｚｈａｎｇ＠１６３．ｃｏｍ")]
    m = Masker("hash", key=KEY)
    assert m.mask_text("１３８１２３４５６７８") == m.mask_text("13812345678")  # the same person joins
    assert unmask(Masker("fake", key=KEY).mask_text(text), KEY) == "手机13812345678，邮箱zhang@163.com"


def test_a_column_of_mixed_phone_numbers_is_a_phone_column():
    df = pd.DataFrame({"tel": ["13812345678", "(415) 555-2671", "+44 20 7946 0958", "13912345678", "n/a"]})
    assert classify_columns(df) == {"tel": "CN_MOBILE"}  # 4 of 5 are phones, 2 of them Chinese mobiles
    assert classify_columns(df, threshold=0.9) == {}
