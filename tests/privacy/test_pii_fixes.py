"""Masking that must not fail open: a fake mask limited to some entity types is undone only for
those, the entity flags refuse what would mask less than asked, scanning long CJK runs stays
linear, fakes hide what identifies (district and road names, e-mail domains, shared suffixes),
and audit entries hold no personal data from a file's name."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _cli import run_main

from trustforge.privacy import Masker, mask_file, unmask_file
from trustforge.privacy._files import _mac, sidecar_path

KEY = bytes(range(32))
CUSTOMERS = pd.DataFrame(
    {
        "name": ["John Smith", "Mary Johnson"],
        "email": ["john.smith@example.com", "mary.j@example.org"],
        "phone": ["+1 415 555 0132", "13812345678"],
        "note": ["SSN 123-45-6789", "card 4111 1111 1111 1111"],
    }
)


def _read(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_a_fake_mask_of_some_types_is_undone_for_those_only(tmp_path, workspace):
    src = tmp_path / "customers.csv"
    CUSTOMERS.to_csv(src, index=False)
    code, out, err = run_main("mask", src, "-o", tmp_path / "z6.csv", "--policy", "fake", "--entities", "EMAIL", home=workspace)
    assert code == 0, err
    masked = _read(tmp_path / "z6.csv")
    assert masked[["name", "phone", "note"]].equals(CUSTOMERS[["name", "phone", "note"]]) and not masked["email"].equals(CUSTOMERS["email"])
    side = json.loads((tmp_path / "z6.csv.tfmask.json").read_text())
    assert side["policies"] == {"EMAIL": "fake"} and side["format"] == "trustforge.mask.v4"
    code, _, err = run_main("unmask", tmp_path / "z6.csv", "-o", tmp_path / "z6_un.csv", home=workspace)
    assert code == 0, err
    assert _read(tmp_path / "z6_un.csv").equals(CUSTOMERS)  # the real names, phones, SSNs and cards untouched

    # fake for some types, hash for others: the hashes stay, the fakes come back
    code, _, err = run_main(
        "mask",
        src,
        "-o",
        tmp_path / "m.csv",
        "--policy",
        "fake",
        "--entities",
        "EMAIL,PHONE,PERSON",
        "--entity-policy",
        "EMAIL=hash",
        home=workspace,
    )
    assert code == 0, err
    assert json.loads((tmp_path / "m.csv.tfmask.json").read_text())["policies"] == {"EMAIL": "hash", "PERSON": "fake", "PHONE": "fake"}
    assert run_main("unmask", tmp_path / "m.csv", "-o", tmp_path / "m_un.csv", home=workspace).code == 0
    back = _read(tmp_path / "m_un.csv")
    assert back[["name", "phone", "note"]].equals(CUSTOMERS[["name", "phone", "note"]]) and back["email"].str.startswith("<EMAIL:").all()


def test_a_sidecar_of_the_first_format_is_refused(tmp_path):
    src, out = tmp_path / "c.csv", tmp_path / "f.csv"
    CUSTOMERS.to_csv(src, index=False)
    mask_file(src, out, Masker("fake", key=KEY, entities=["EMAIL"]))
    side = sidecar_path(out)
    doc = json.loads(side.read_text())
    # what the first format wrote: every type listed as fake, whatever --entities limited the mask to
    body = {
        "format": "trustforge.mask.v1",
        "policies": dict.fromkeys(Masker("fake", key=KEY).policies, "fake"),
        "key": doc["key"],
        "sha256": doc["sha256"],
    }
    side.write_text(json.dumps({**body, "mac": _mac(KEY, body)}))
    from trustforge.errors import IntegrityError

    with pytest.raises(IntegrityError, match="earlier format that does not record which entity types"):
        unmask_file(out, tmp_path / "u.csv", KEY)
    assert not (tmp_path / "u.csv").exists()


@pytest.mark.parametrize(
    "extra,hint",
    [
        (["--entities", ","], "'--entities': names no entity type; leave --entities out for all of them"),
        (["--entities", ""], "'--entities': names no entity type"),
        (["--entities", "EMAIL,SHOE"], "'--entities': unknown entity type 'SHOE'"),
        (["--entities", "EMAIL", "--entity-policy", "PHONE=hash"], "--entity-policy PHONE=...: PHONE is not among --entities (EMAIL)"),
    ],
)
def test_entity_flags_that_would_mask_less_than_asked_are_usage_errors(tmp_path, workspace, extra, hint):
    (tmp_path / "ok.csv").write_text("a,b\nx@example.com,+1 415 555 0132\n")
    code, _, err = run_main("mask", "ok.csv", "-o", "out.csv", *extra, home=workspace, cwd=tmp_path)
    assert code == 2 and hint in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.csv").exists()
    if "--entity-policy" not in extra:
        code, _, err = run_main("scan", "ok.csv", *extra, home=workspace, cwd=tmp_path)
        assert code == 2 and hint in err, err


def test_the_api_refuses_entity_choices_that_mask_nothing_or_less():
    from trustforge.errors import DataError
    from trustforge.privacy import scan_text

    with pytest.raises(DataError, match="entities: names no entity type"):
        Masker("tag", entities=[])
    with pytest.raises(DataError, match="policy names PHONE, which entities leaves out"):
        Masker({"PHONE": "hash", "*": "tag"}, key=KEY, entities=["EMAIL"])
    with pytest.raises(DataError, match="names no entity type"):
        scan_text("x@example.com", entities=[])
    # a lower-case type in a policy mapping is the type, not a key silently ignored
    assert Masker({"email": "redact"}).mask_text("x@example.com") == "[REDACTED]"
    assert Masker({"*": "redact"}).mask_text("x@example.com") == "[REDACTED]"


def test_scanning_a_long_cjk_run_takes_time_linear_in_its_length():
    import time

    from trustforge.privacy import scan_text

    scan_text("张伟")  # load the lexicons outside the timing

    def best(n: int) -> float:
        times = []
        for _ in range(3):
            t0 = time.process_time()
            scan_text("张" * n)
            times.append(time.process_time() - t0)
        return min(times)

    small, large = best(3000), best(12000)
    assert large / max(small, 1e-4) < 6, (small, large)  # quadratic: about 16 (10 measured); linear: about 4


@pytest.mark.parametrize("offset", [250, 254, 255, 256, 257, 511])
def test_a_name_across_a_window_boundary_of_a_long_run_is_found(offset):
    from trustforge.privacy import scan_text

    filler = "我们今天去公园散步然后" * 80
    text = filler[:offset] + "请联系李强" + filler
    names = [(e.text, e.start) for e in scan_text(text) if e.type == "PERSON"]
    assert ("李强", offset + 3) in names, names


@pytest.mark.parametrize(
    "address,kept,hidden",
    [
        ("地址：上海市黄浦区南京东路100号", ["地址：上海市", "区", "路", "号"], ["黄浦", "南京", "东路", "100"]),
        ("广州市天河区天河路385号", ["市", "区", "路", "号"], ["广州", "天河", "385"]),
        ("广西壮族自治区南宁市青秀区民族大道100号", ["广西壮族自治区", "市", "大道"], ["南宁", "青秀", "民族"]),
        ("上海市江西路8号楼", ["上海市", "路", "号楼"], ["江西"]),
    ],
)
def test_a_fake_chinese_address_keeps_only_its_structure_and_province(address, kept, hidden):
    from trustforge.privacy import scan_text, unmask

    fake = Masker("fake", key=KEY).mask_text(address)
    assert all(k in fake for k in kept) and not any(h in fake for h in hidden), fake
    assert [e.type for e in scan_text(fake)] == ["ADDRESS"] and unmask(fake, KEY) == address


def test_fake_chinese_addresses_always_turn_back():
    from trustforge.privacy import unmask

    masker = Masker({"ADDRESS": "fake"}, key=KEY, entities=["ADDRESS"])
    heads = ["上海市", "北京", "浙江省杭州市", "深圳市", "内蒙古自治区呼和浩特市"]
    roads = ["南京东路", "中山大道", "人民路", "建国门外大街", "解放街", "长安街"]
    for i, (h, r) in enumerate((h, r) for h in heads for r in roads):
        address = f"{h}{'朝阳区' if i % 2 else ''}{r}{i + 1}号"
        fake = masker.mask_text(address)
        assert fake != address and unmask(fake, KEY, entities=["ADDRESS"]) == address, (address, fake)


@pytest.mark.parametrize(
    "text,address",
    [
        ("Address: 1600 Pennsylvania Ave NW, Washington, DC 20500", "1600 Pennsylvania Ave NW, Washington, DC 20500"),
        ("Address: 1600 NW Pennsylvania Ave, Washington, DC 20500", "1600 NW Pennsylvania Ave, Washington, DC 20500"),
        ("Office: Springfield, IL 62704", "Springfield, IL 62704"),
        ("Mail it to Winston-Salem, NC 27101-1234 please", "Winston-Salem, NC 27101-1234"),
    ],
)
def test_us_addresses_with_a_compass_point_or_only_city_state_and_zip_are_found(text, address):
    from trustforge.privacy import scan_text, unmask

    assert [(e.type, e.text) for e in scan_text(text)] == [("ADDRESS", address)]
    fake = Masker("fake", key=KEY).mask_text(text)
    assert address not in fake and unmask(fake, KEY) == text, fake


PHONE_FORMATS = ["+1 415 555 0132", "415-555-0132", "(415) 555-0132", "1-415-555-0132", "call 4155550132"]


def test_a_phone_number_hashes_and_fakes_alike_in_every_format():
    from trustforge.privacy import scan_text, unmask

    hashed = {Masker("hash", key=KEY).mask_text(p).removeprefix("call ") for p in PHONE_FORMATS}
    assert len(hashed) == 1, hashed
    assert Masker("hash", key=KEY).mask_text("010-12345678") == Masker("hash", key=KEY).mask_text("+86 10 12345678")
    fakes = [Masker("fake", key=KEY).mask_text(p) for p in PHONE_FORMATS]
    assert len({"".join(c for c in f if c.isdigit())[-10:] for f in fakes}) == 1, fakes  # one fake number, each in its format
    for p, f in zip(PHONE_FORMATS, fakes):
        assert f != p and "555" not in f.removeprefix("call ")[4:] and [e.type for e in scan_text(f)] == ["PHONE"] and unmask(f, KEY) == p


def test_a_fake_of_a_bare_ten_digit_phone_number_is_made(tmp_path):
    import threading

    # its re-scan needed the words before it ("call"), so the cycle walk never ended
    done = []
    t = threading.Thread(target=lambda: done.append(Masker("fake", key=KEY).mask_text("call 4155550132")), daemon=True)
    t.start()
    t.join(20)
    assert done and done[0].startswith("call 415") and done[0] != "call 4155550132", done


def test_numbers_that_share_their_last_digits_get_unrelated_fakes():
    fake = Masker("fake", key=KEY).mask_text
    a, b = fake("13812345678"), fake("13712345678")
    assert a[:3] == "138" and b[:3] == "137" and a[3:] != b[3:], (a, b)
    assert fake("+86 138 1234 5678").replace(" ", "")[-11:] == a  # with or without +86: one fake
    c, d = fake("4111111111111111"), fake("4012881111111119")  # two issuers, the same 9 digits after the prefix
    assert c[:6] == "411111" and d[:6] == "401288" and c[6:-1] != d[6:-1], (c, d)


def test_the_audit_log_holds_no_personal_data_from_a_file_name(tmp_path, workspace):
    src = tmp_path / "mary.smith@example.com.csv"
    CUSTOMERS.to_csv(src, index=False)
    assert run_main("mask", src, "-o", tmp_path / "m.csv", "--policy", "fake", home=workspace).code == 0
    assert run_main("mask", tmp_path / "m.csv", "-o", tmp_path / "John Smith.csv", "--policy", "hash", home=workspace).code == 0
    assert run_main("unmask", tmp_path / "m.csv", "-o", tmp_path / "u.csv", home=workspace).code == 0
    code, out, _ = run_main("audit", "show", "--json", home=workspace)
    objects = [e["object"] for e in map(json.loads, out.splitlines()) if e["action"] in ("mask", "unmask")]
    assert sorted(objects) == ["file:<EMAIL>", "file:m.csv", "file:m.csv"], objects
    assert "mary" not in out and "example.com" not in out


@pytest.mark.parametrize("email", ["mary.smith@example.com", "x.y@mail.smith-family.name", "John.Doe@Acme-Corp.co.uk"])
def test_a_fake_email_replaces_its_domain_too(email):
    from trustforge.privacy import scan_text, unmask

    fake = Masker("fake", key=KEY).mask_text(email)
    local, domain = email.split("@")
    fake_local, fake_domain = fake.split("@")
    top = domain.rsplit(".", 1)[1]
    assert fake_domain.endswith("." + top) and fake_domain.count(".") == domain.count(".") and len(fake_domain) == len(domain)
    assert not any(label in fake_domain.split(".") for label in domain.split(".")[:-1]) and fake_local != local, fake
    assert [e.type for e in scan_text(fake)] == ["EMAIL"] and unmask(fake, KEY) == email


def test_api_arguments_of_the_wrong_kind_are_trustforge_errors_naming_them(tmp_path):
    from pathlib import Path

    from trustforge.errors import DataError, SecurityError
    from trustforge.privacy import classify_columns, scan_file

    (tmp_path / "a.csv").write_text("email\nx@example.com\n")
    cases = [
        (lambda: Masker("tag").mask_frame([1, 2]), DataError, "mask_frame: df must be a pandas DataFrame; got list"),
        (lambda: classify_columns([1]), DataError, "classify_columns: df must be a pandas DataFrame; got list"),
        (lambda: classify_columns(CUSTOMERS, threshold="high"), DataError, "classify_columns: threshold must be in"),
        (lambda: mask_file(Path, Path, "tag"), DataError, "mask_file: path must be a file path"),
        (lambda: mask_file(tmp_path / "a.csv", tmp_path / "b.csv", "tag"), DataError, "mask_file: masker must be a Masker"),
        (lambda: scan_file(3), DataError, "scan_file: path must be a file path (str or pathlib.Path); got int"),
        (lambda: unmask_file(tmp_path / "a.csv", tmp_path / "b.csv", "k" * 20), SecurityError, "the key must be at least 16 bytes"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()
    assert not (tmp_path / "b.csv").exists()
    masked, _ = Masker("tag").mask_frame(CUSTOMERS, columns="email")  # one column's name
    assert masked["email"].eq("<EMAIL>").all() and masked["phone"].equals(CUSTOMERS["phone"])
