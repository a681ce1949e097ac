"""Red team, issue 11 finding 6: fail-open tokens and what lies at rest.

Each test reproduces one hole found by hand: an empty `TRUSTFORGE_TOKEN` acting as the admin,
workspace files other users may read, a key rotation after which the old KEK and an old
`sealed.json` still open today's weights, and a drift reference holding every training value.
One breast-cancer run, registered, serves the whole module (about 10 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat

import pandas as pd
import pytest
from _cli import run_main

import trustforge
from trustforge.data import prepare
from trustforge.errors import IntegrityError, SecurityError
from trustforge.registry import Registry
from trustforge.secure import Keyring, open_sealed
from trustforge.settings import Settings

SPEC = {
    "name": "bc",
    "data": {"source": "builtin:breast_cancer", "target": "target"},
    "model": {"kind": "mlp"},
    "train": {"max_epochs": 2},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
}
K = 20  # each number stored for a numeric column summarises at least this many training rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A fresh workspace after one run and its registration, made under the usual umask 022."""
    home = tmp_path_factory.mktemp("atrest") / "ws"
    old = os.umask(0o022)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRUSTFORGE_HOME", str(home))
            mp.delenv("TRUSTFORGE_TOKEN", raising=False)
            result = trustforge.run(SPEC, progress=False, register=True)
            train = prepare(result.spec).train_raw.frame
    finally:
        os.umask(old)
    return home, result, train


# ---------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_an_empty_or_blank_token_is_an_error_naming_the_variable_not_the_admin(value, workspace, monkeypatch):
    monkeypatch.setenv("TRUSTFORGE_TOKEN", value)
    with pytest.raises(SecurityError, match="TRUSTFORGE_TOKEN"):
        Settings.from_env()
    with pytest.raises(SecurityError, match="TRUSTFORGE_TOKEN"):
        Registry()
    for args in (
        ("users", "list"),
        ("users", "add", "mallory", "--role", "admin"),
        ("keys", "rotate"),
        ("audit", "verify"),
        ("serve", "models:/bc@champion", "--port", "1"),
    ):
        code, out, err = run_main(*args, home=workspace)
        assert code != 0, (args, out)
        assert "TRUSTFORGE_TOKEN" in err and "Traceback" not in err, (args, err)
    # Nothing was done as the admin: no user was added, no key was rotated.
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, out, _ = run_main("users", "list", home=workspace)
    assert code == 0 and "mallory" not in out


@pytest.mark.parametrize("variable", ["TRUSTFORGE_KEK", "TRUSTFORGE_DB_URL", "TRUSTFORGE_AUDIT_SINK", "TRUSTFORGE_NEW_KEK"])
def test_an_empty_secret_or_security_setting_is_an_error_not_a_quiet_fallback(variable, workspace, monkeypatch):
    """Found by a probe: `TRUSTFORGE_KEK=''` (a secret that failed to mount) meant keys/kek.key on
    disk, and `keys init` wrote one. Likewise an empty database URL must not mean a local SQLite
    file, nor an empty sink no sink."""
    monkeypatch.setenv(variable, "")
    args = ("keys", "rotate") if variable == "TRUSTFORGE_NEW_KEK" else ("keys", "init")
    code, out, err = run_main(*args, home=workspace)
    assert code != 0 and f"{variable} is set but empty" in err and "Traceback" not in err, (out, err)
    assert not (workspace / "keys" / "kek.key").exists()  # no key was written beside the data
    if variable != "TRUSTFORGE_NEW_KEK":
        with pytest.raises(SecurityError, match=f"{variable} is set but empty"):
            Settings.from_env()


# ---------------------------------------------------------------------------- least privilege


def _loose(root) -> list[str]:
    """Every path under `root` (and `root`) that a group or other user could read, write or enter."""
    bad = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:  # the audit head file and witness included
            bad.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    return bad


def test_every_file_of_a_fresh_workspace_is_private_after_a_run_and_a_register(ws):
    home, result, _ = ws
    assert (home / "registry.db").is_file() and any(home.glob("runs/*/package/weights.safetensors"))
    assert any(home.glob("artifacts/bc/1/*.enc"))
    assert _loose(home) == []
    # The database's write-ahead log and shared memory exist while it is open: private too.
    old = os.umask(0o022)
    try:
        with Registry(Settings.from_env(home)) as reg:
            reg.set_tag("bc", 1, "reviewed", "yes")
            wal = [p for p in home.iterdir() if p.name.startswith("registry.db-")]
            assert {p.name for p in wal} >= {"registry.db-wal", "registry.db-shm"}, wal
            assert _loose(home) == []
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------- re-encryption


def test_after_rotate_reencrypt_the_old_kek_and_an_old_sealed_json_open_nothing(ws, tmp_path, monkeypatch):
    home, _, _ = ws
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    monkeypatch.delenv("TRUSTFORGE_TOKEN", raising=False)
    pkg = home / "artifacts" / "bc" / "1"
    old_keys = tmp_path / "old-keys"
    shutil.copytree(home / "keys", old_keys)
    old_header = (pkg / "sealed.json").read_bytes()
    open_sealed(pkg, Keyring.load(old_keys))  # today it opens

    code, out, err = run_main("keys", "rotate", "--reencrypt", home=home)
    assert code == 0, err
    assert "re-encrypted" in out

    # The attacker's copy: today's sealed files under an old header, opened with the old KEK.
    stolen = tmp_path / "stolen"
    shutil.copytree(pkg, stolen)
    (stolen / "sealed.json").write_bytes(old_header)
    with pytest.raises(IntegrityError):
        open_sealed(stolen, Keyring.load(old_keys))
    # The workspace still opens its own package, under the new keys only.
    with Registry(Settings.from_env(home)) as reg:
        assert reg.load_model("models:/bc/1").manifest["name"] == "bc"
    with pytest.raises(SecurityError):
        open_sealed(pkg, Keyring.load(old_keys))


def test_plain_rotation_says_old_data_keys_still_open_old_files(ws, monkeypatch):
    home, _, _ = ws
    monkeypatch.delenv("TRUSTFORGE_TOKEN", raising=False)
    code, out, err = run_main("keys", "rotate", home=home)
    assert code == 0, err
    said = out + err
    assert "old data keys" in said and "--reencrypt" in said, said


# ---------------------------------------------------------------------------- no training value verbatim


# Numbers in the manifest that are not about the data: the spec's own settings (what the user
# wrote, e.g. `monitor.ks_p_value: 0.05`, which may equal some training value by chance).
# Settings, not values of a column: the spec, and the expectations' tolerance and missing
# fractions (a share of rows; an inferred rule's range bounds are still checked).
_NOT_DATA = re.compile(r"/spec/.*|/expect/tolerance|/expect/rules/\d+/max_missing")


def _floats(obj, path=""):
    """(JSON path, value) of every float written in a parsed manifest (ints are counts and sizes)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _floats(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _floats(v, f"{path}/{i}")
    elif isinstance(obj, float):
        yield path, obj


def test_no_numeric_training_value_of_breast_cancer_appears_verbatim_in_the_manifest(ws):
    """Every float written in the manifest is compared with every training value of every
    numeric column, as stored and at 7 significant digits (how the old reference wrote them).
    Allowed: a value that at least K training rows of its column share (a tie is a bin edge
    shared by many rows), and the fields of `_NOT_DATA`. Today's code writes all 455 values."""
    _, result, train = ws
    written: dict[float, list[str]] = {}
    for path, value in _floats(json.loads((result.package / "manifest.json").read_text())):
        if not _NOT_DATA.fullmatch(path):
            written.setdefault(value, []).append(path)
    leaked = {}
    numeric = [c for c in train.columns if pd.api.types.is_numeric_dtype(train[c]) and not pd.api.types.is_bool_dtype(train[c])]
    assert len(numeric) == 30
    for name in numeric:
        for value, n in train[name].value_counts().items():
            hits = written.get(float(value), []) + written.get(float(f"{value:.7g}"), [])
            if n < K and hits:
                leaked.setdefault(name, []).append((float(value), hits[0]))
    assert sum(map(len, leaked.values())) == 0, {k: (len(v), v[:3]) for k, v in leaked.items()}
    ref = json.loads((result.package / "manifest.json").read_text())["monitor"]["reference"]
    assert len(ref["features"]) == 30 and all("cuts" in f for f in ref["features"].values())
