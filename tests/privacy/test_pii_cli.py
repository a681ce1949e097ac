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
        (["mask", "ok.csv", "-o", "out.jsonl"], "out.jsonl: the output must be the same kind of file as ok.csv (csv)"),
        (["mask", "ok.csv", "-o", "nowhere/out.csv"], "nowhere: folder not found (for out.csv)"),
        (["mask", "ok.csv", "-o", "out.csv", "--policy", "blur"], "must be one of redact, tag, hash, fake; got 'blur'"),
        (["scan", "ok.csv", "--entities", "EMAIL,SHOE"], "unknown entity type 'SHOE'"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, workspace, args, message):
    (tmp_path / "data.xlsx").write_bytes(b"PK")
    (tmp_path / "bad.parquet").write_bytes(b"no")
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "ok.csv").write_text("a\nx@example.com\n")
    code, out, err = run_main(*args, home=workspace, cwd=tmp_path)
    assert code != 0 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.csv").exists()
