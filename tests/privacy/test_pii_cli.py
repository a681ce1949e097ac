"""`trustforge scan`, `mask` and `unmask` on CSV, Parquet, JSON Lines and text: one-line errors
naming the file, atomic output, the workspace key, and unmask for admins only (audited)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _cli import run_main

ROWS = [
    {"name": "John Smith", "email": "john.smith@example.com", "phone": "13812345678", "note": "身份证11010519491231002X"},
    {"name": "王秀英", "email": "wang.xy@163.com", "phone": "(415) 555-2671", "note": "card 4111 1111 1111 1111"},
]
PLANTED = [
    "John Smith",
    "john.smith@example.com",
    "13812345678",
    "11010519491231002X",
    "wang.xy@163.com",
    "(415) 555-2671",
    "4111 1111 1111 1111",
]


def _write(path, kind):
    df = pd.DataFrame(ROWS)
    if kind == "csv":
        df.to_csv(path, index=False)
    elif kind == "parquet":
        df.to_parquet(path, index=False)
    elif kind == "jsonl":
        path.write_text("".join(json.dumps({"id": i, "user": r}, ensure_ascii=False) + "\n" for i, r in enumerate(ROWS)), encoding="utf-8")
    else:
        path.write_text("\n".join(" ".join(r.values()) for r in ROWS) + "\n", encoding="utf-8")


def _text(path):
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv(index=False)
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".txt"])
def test_scan_then_mask_every_kind_of_file(tmp_path, workspace, suffix):
    src, dst = tmp_path / f"people{suffix}", tmp_path / f"masked{suffix}"
    _write(src, suffix[1:])
    code, out, err = run_main("scan", src, "--json", home=workspace)
    assert code == 0, err
    found = json.loads(out)
    assert found["entities"] == {"CN_ID": 1, "CN_MOBILE": 1, "CREDIT_CARD": 1, "EMAIL": 2, "PERSON": 2, "PHONE": 1}
    assert not any(v in out for v in PLANTED)  # counts, never values
    if suffix in (".csv", ".parquet"):
        # half of the cells is enough (threshold 0.5): one CN_MOBILE of two phones, one ID number of two notes
        assert found["personal"] == {"name": "PERSON", "email": "EMAIL", "phone": "CN_MOBILE", "note": "CN_ID"}
    code, out, err = run_main("mask", src, "-o", dst, home=workspace)
    assert code == 0 and "masked 8 value(s)" in out, (out, err)
    masked = _text(dst)
    assert not any(v in masked for v in PLANTED) and "<EMAIL>" in masked and "<CN_ID>" in masked
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_keyed_policies_need_workspace_keys_and_unmask_is_for_admins(tmp_path, workspace, monkeypatch):
    src = tmp_path / "people.csv"
    _write(src, "csv")
    code, _, err = run_main("unmask", src, "-o", tmp_path / "u0.csv", home=workspace)
    assert (
        code == 7 and err.count("\n") == 1 and "has no keys: run it in the workspace that masked the file" in err and "Traceback" not in err
    )
    assert not (workspace / "keys" / "masking.key").exists()
    # The keys are made on first use, as `trustforge train` makes them (also for data.protect.pii: hash).
    code, _, err = run_main("mask", src, "-o", tmp_path / "h.csv", "--policy", "hash", home=workspace)
    assert code == 0 and (workspace / "keys" / "signing.key").is_file() and (workspace / "keys" / "masking.key").is_file(), err
    code, out, err = run_main("mask", src, "-o", tmp_path / "f.csv", "--policy", "fake", "--entity-policy", "EMAIL=hash", home=workspace)
    assert code == 0, err
    fake = pd.read_csv(tmp_path / "f.csv", dtype=str)
    assert fake["email"].str.match(r"<EMAIL:[0-9a-f]{16}>$").all() and not any(v in _text(tmp_path / "f.csv") for v in PLANTED)
    assert fake["phone"][0] != "13812345678" and len(fake["phone"][0]) == 11 and fake["phone"][0][:3] == "138"
    assert run_main("unmask", tmp_path / "f.csv", "-o", tmp_path / "u.csv", home=workspace).code == 0
    back = pd.read_csv(tmp_path / "u.csv", dtype=str)
    assert back[["name", "phone", "note"]].equals(pd.DataFrame(ROWS)[["name", "phone", "note"]])  # fakes reversed, hashes stay

    assert run_main("users", "add", "vera", "--role", "deployer", home=workspace).code == 0
    token = run_main("users", "token", "vera", home=workspace).stdout.strip()
    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
    code, _, err = run_main("unmask", tmp_path / "f.csv", "-o", tmp_path / "u2.csv", home=workspace)
    assert code == 8 and "vera (role deployer) may not unmask" in err and not (tmp_path / "u2.csv").exists()
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, out, _ = run_main("audit", "show", "--json", home=workspace)
    actions = [(e["actor"], e["action"], e["outcome"]) for e in map(json.loads, out.splitlines())]
    assert ("vera", "unmask", "denied") in actions and any(a[1:] == ("unmask", "ok") for a in actions)


@pytest.mark.parametrize(
    "args,message",
    [
        (["scan", "missing.csv"], "missing.csv: file not found"),
        (["scan", "data.xlsx"], "data.xlsx: unsupported file type '.xlsx'"),
        (["scan", "bad.parquet"], "bad.parquet: cannot be read as parquet"),
        (["scan", "bad.jsonl"], "bad.jsonl: line 2 is not JSON"),
        (["scan", "latin.txt"], "latin.txt: not UTF-8 text"),
        (["mask", "ok.csv", "-o", "ok.csv"], "ok.csv: the output must not be the input file"),
        (["unmask", "ok.csv", "-o", "ok.csv"], "ok.csv: the output must not be the input file"),
        (["mask", "ok.csv", "-o", "out.jsonl"], "out.jsonl: the output must be the same kind of file as ok.csv (csv)"),
        (["scan", "ok.csv", "--entities", "EMAIL,SHOE"], "unknown entity type 'SHOE'"),
        # as training reads tables: pandas would read `a,a` as a and a.1, and the masked copy change the header
        (["mask", "twice.csv", "-o", "out.csv"], "twice.csv: column 'a' appears more than once in the header"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, workspace, args, message):
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "bad.parquet").write_bytes(b"no")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "ok.csv").write_text("a\nx@example.com\n")
    (tmp_path / "twice.csv").write_text("a,a\nx@example.com,1\n")
    code, out, err = run_main(*args, home=workspace, cwd=tmp_path)
    assert code != 0 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.csv").exists()
    if "the output must not be the input" in message:  # an output-path mistake: a usage error, as the README lists them
        assert code == 2, (code, err)


@pytest.mark.parametrize(
    "extra,hint",
    [
        (["--policy", "bogus"], "'--policy': must be one of redact, tag, hash, fake; got 'bogus'"),
        (["--entity-policy", "EMAIL=blur"], "'--entity-policy': policy for EMAIL must be one of redact, tag, hash, fake; got 'blur'"),
        (["--entity-policy", "SHOE=hash"], "'--entity-policy': unknown entity type 'SHOE'"),
        (["--entity-policy", "EMAIL"], "'--entity-policy': expected TYPE=POLICY"),
    ],
)
def test_a_bad_policy_is_a_usage_error_naming_the_option(tmp_path, workspace, extra, hint):
    (tmp_path / "ok.csv").write_text("a\nx@example.com\n")
    code, _, err = run_main("mask", "ok.csv", "-o", "out.csv", *extra, home=workspace, cwd=tmp_path)
    assert code == 2 and hint in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.csv").exists()


def test_keys_and_headers_are_scanned_and_masked_and_never_printed(tmp_path, workspace):
    src, dst = tmp_path / "keys.jsonl", tmp_path / "masked.jsonl"
    src.write_text(json.dumps({"john.smith@gmail.com": {"13812345678": "ok"}, "mary@example.org": 1}) + "\n", encoding="utf-8")
    planted = ["john.smith@gmail.com", "13812345678", "mary@example.org"]
    code, out, _ = run_main("scan", src, "--json", home=workspace)
    assert code == 0 and json.loads(out)["entities"] == {"CN_MOBILE": 1, "EMAIL": 2} and not any(v in out for v in planted), out
    code, out, err = run_main("mask", src, "-o", dst, home=workspace)
    assert code == 0 and "masked 3 value(s)" in out, (out, err)
    # both email keys become <EMAIL>: kept unique, so no value is lost
    assert json.loads(dst.read_text(encoding="utf-8")) == {"<EMAIL>": {"<CN_MOBILE>": "ok"}, "<EMAIL>#2": 1}

    src, dst = tmp_path / "wide.csv", tmp_path / "wide_masked.csv"
    src.write_text("id,john.smith@gmail.com,jane.doe@example.com\n1,a,b\n", encoding="utf-8")
    for args in (("--json",), ()):
        code, out, _ = run_main("scan", src, *args, home=workspace)
        assert code == 0 and "john.smith@gmail.com" not in out and "jane.doe" not in out, out
    assert "<column 2: EMAIL>" in out and "<column 3: EMAIL>" in out
    code, out, _ = run_main("mask", src, "-o", dst, home=workspace)
    assert code == 0 and "masked 2 value(s)" in out
    assert list(pd.read_csv(dst).columns) == ["id", "<EMAIL>", "<EMAIL>#2"]


def test_unmask_refuses_a_file_that_mask_fake_did_not_write(tmp_path, workspace):
    src = tmp_path / "people.csv"
    _write(src, "csv")
    assert run_main("keys", "init", home=workspace).code == 0
    assert run_main("mask", src, "-o", tmp_path / "f.csv", "--policy", "fake", home=workspace).code == 0  # makes the masking secret
    code, _, err = run_main("unmask", src, "-o", tmp_path / "u.csv", home=workspace)  # the original data
    assert code == 4 and err.count("\n") == 1 and "people.csv: refusing to unmask: no people.csv.tfmask.json" in err, err
    assert not (tmp_path / "u.csv").exists()
    side = json.loads((tmp_path / "f.csv.tfmask.json").read_text())
    assert side["policies"]["PERSON"] == "fake" and len(side["sha256"]) == 64 and not any(v in json.dumps(side) for v in PLANTED)
    (tmp_path / "g.csv").write_text((tmp_path / "f.csv").read_text() + "Ann Lee,a@b.cn,13900000000,x\n")
    (tmp_path / "g.csv.tfmask.json").write_text((tmp_path / "f.csv.tfmask.json").read_text())
    code, _, err = run_main("unmask", tmp_path / "g.csv", "-o", tmp_path / "u.csv", home=workspace)
    assert code == 4 and "the file changed since" in err and not (tmp_path / "u.csv").exists()
    forged = {**side, "sha256": "0" * 64}
    (tmp_path / "g.csv.tfmask.json").write_text(json.dumps(forged))
    code, _, err = run_main("unmask", tmp_path / "g.csv", "-o", tmp_path / "u.csv", home=workspace)
    assert code == 4 and "does not verify under this workspace's masking key" in err
    # a later tag mask over the same output removes the sidecar: nothing left to unmask
    assert run_main("mask", src, "-o", tmp_path / "f.csv", home=workspace).code == 0 and not (tmp_path / "f.csv.tfmask.json").exists()
    code, out, _ = run_main("audit", "show", "--json", home=workspace)
    assert sum(e["action"] == "unmask" and e["outcome"] == "error" for e in map(json.loads, out.splitlines())) == 3


def test_keyed_mask_needs_a_principal_allowed_to_and_is_audited(tmp_path, workspace, monkeypatch):
    src = tmp_path / "people.csv"
    _write(src, "csv")
    assert run_main("keys", "init", home=workspace).code == 0
    for user, role in (("vic", "viewer"), ("tess", "trainer")):
        assert run_main("users", "add", user, "--role", role, home=workspace).code == 0
    tokens = {u: run_main("users", "token", u, home=workspace).stdout.strip() for u in ("vic", "tess")}
    monkeypatch.setenv("TRUSTFORGE_TOKEN", "tfk_bogus")
    code, _, err = run_main("mask", src, "-o", tmp_path / "h.csv", "--policy", "hash", home=workspace)
    assert code == 8 and "malformed" in err and not (tmp_path / "h.csv").exists()
    monkeypatch.setenv("TRUSTFORGE_TOKEN", tokens["vic"])
    code, _, err = run_main("mask", src, "-o", tmp_path / "h.csv", "--policy", "fake", home=workspace)
    assert code == 8 and "vic (role viewer) may not mask file:people.csv" in err and not (tmp_path / "h.csv").exists()
    assert run_main("mask", src, "-o", tmp_path / "t.csv", home=workspace).code == 0  # tag: no secret, no principal needed
    monkeypatch.setenv("TRUSTFORGE_TOKEN", tokens["tess"])
    assert run_main("mask", src, "-o", tmp_path / "h.csv", "--policy", "hash", home=workspace).code == 0
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, out, _ = run_main("audit", "show", "--json", home=workspace)
    entries = [e for e in map(json.loads, out.splitlines()) if e["action"] == "mask"]
    assert {(e["actor"], e["outcome"]) for e in entries} == {("vic", "denied"), ("tess", "ok")}
    assert all(e["object"] == "file:people.csv" for e in entries)
    assert str(tmp_path) not in out and not any(v in out for v in PLANTED)


def test_mask_keeps_parquet_dtypes_and_line_endings(tmp_path, workspace):
    src = tmp_path / "phones.parquet"
    pd.DataFrame({"phone": [13812345678, 13987654321], "n": [1, 2]}).to_parquet(src, index=False)
    assert run_main("keys", "init", home=workspace).code == 0
    code, out, _ = run_main("mask", src, "-o", tmp_path / "f.parquet", "--policy", "fake", home=workspace)
    fake = pd.read_parquet(tmp_path / "f.parquet")
    assert code == 0 and "note:" not in out and str(fake["phone"].dtype) == "int64" and 13812345678 not in set(fake["phone"])
    assert run_main("unmask", tmp_path / "f.parquet", "-o", tmp_path / "u.parquet", home=workspace).code == 0
    assert pd.read_parquet(tmp_path / "u.parquet").equals(pd.read_parquet(src))
    code, out, _ = run_main("mask", src, "-o", tmp_path / "h.parquet", "--policy", "hash", home=workspace)
    assert code == 0 and "note: column phone became text (int64 before)" in out
    assert pd.read_parquet(tmp_path / "h.parquet")["phone"].str.startswith("<CN_MOBILE:").all()

    src = tmp_path / "notes.txt"
    src.write_bytes(b"call 13812345678\r\nmail x@example.com\r\n")
    assert run_main("mask", src, "-o", tmp_path / "m.txt", home=workspace).code == 0
    assert (tmp_path / "m.txt").read_bytes() == b"call <CN_MOBILE>\r\nmail <EMAIL>\r\n"


@pytest.mark.parametrize(
    "args,option",
    [
        (["mask", "ok.csv", "-o", "out.csv"], "--output"),
        (["mask", "ok.csv", "--output", "out.csv", "--policy", "fake"], "--output"),
        (["unmask", "ok.csv", "-o", "out.csv"], "--output"),
        (["keys", "export", "out.csv"], "FILE"),
        (["backup", "create", "out.csv"], "FILE"),
    ],
)
def test_an_output_file_that_is_a_folder_is_a_usage_error(tmp_path, workspace, args, option):
    """As `predict -o FOLDER` and `report -o FOLDER`: exit 2 naming the option, before any work
    (mask and unmask exited 74 with the name of their temporary file)."""
    (tmp_path / "ok.csv").write_text("a\nx@example.com\n")
    (tmp_path / "out.csv").mkdir()
    code, _, err = run_main(*args, home=workspace, cwd=tmp_path)
    assert code == 2 and err.strip() == f"error: {option} out.csv: is a folder; give a file path", err
    assert list((tmp_path / "out.csv").iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir() if p.name != "ws") == [
        "ok.csv",
        "out.csv",
    ]


@pytest.mark.parametrize("args", [["keys", "export", "out.pem"], ["backup", "create", "out.pem"]])
def test_a_key_or_backup_file_already_there_is_a_usage_error_and_kept(tmp_path, workspace, args):
    """`keys export FILE` and `backup create FILE` never write over a file (they exited 3, as bad
    data does): a usage error naming FILE as given (exit 2), the file left as it was."""
    assert run_main("keys", "init", home=workspace).code == 0
    (tmp_path / "out.pem").write_text("mine")
    code, _, err = run_main(*args, home=workspace, cwd=tmp_path)
    assert code == 2 and err.strip() == (
        "error: FILE out.pem: already exists; give FILE a file path that does not exist yet (nothing is written over one)"
    ), err
    assert (tmp_path / "out.pem").read_text() == "mine"


@pytest.mark.parametrize(
    "args,option",
    [
        (["mask", "ok.csv", "-o", "nowhere/out.csv"], "--output"),
        (["mask", "ok.csv", "--output", "nowhere/out.csv", "--policy", "fake"], "--output"),
        (["unmask", "ok.csv", "-o", "nowhere/out.csv"], "--output"),
        (["keys", "export", "nowhere/out.csv"], "FILE"),
        (["backup", "create", "nowhere/out.csv"], "FILE"),
    ],
)
def test_an_output_file_in_a_missing_folder_is_a_usage_error(tmp_path, workspace, args, option):
    """A folder that is not there (or is a file) is refused before any work, exit 2 naming the
    option and the path as given (it exited 3 naming only the folder; unmask only after reading
    the file and writing its audit entry)."""
    (tmp_path / "ok.csv").write_text("a\nx@example.com\n")
    code, _, err = run_main(*args, home=workspace, cwd=tmp_path)
    assert code == 2 and err.strip() == f"error: {option} nowhere/out.csv: folder nowhere not found", err
    (tmp_path / "nowhere").write_text("a file")
    code, _, err = run_main(*args, home=workspace, cwd=tmp_path)
    assert code == 2 and err.strip() == f"error: {option} nowhere/out.csv: nowhere is not a folder", err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ws") == ["nowhere", "ok.csv"]


def test_backup_create_to_standard_output_is_a_usage_error(tmp_path, workspace):
    # A probe: `backup create -` wrote a file named "-" (while `keys export -` prints the key).
    code, _, err = run_main("backup", "create", "-", home=workspace, cwd=tmp_path)
    assert code == 2 and "not standard output" in err and not (tmp_path / "-").exists(), err
