"""Access control: the role x action table, users, API tokens, principals and the users/audit commands."""

from __future__ import annotations

import base64
import contextlib
import datetime
import getpass
import json
import re

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from trustforge.errors import AccessDenied, IntegrityError, RegistryError
from trustforge.secure import _access
from trustforge.secure._access import ACTIONS, POLICY, ROLES, AccessStore, Principal, allowed, require
from trustforge.secure._audit import AuditLog
from trustforge.secure._keys import Keyring

# The table from the issue and DESIGN.md §6, written out independently of POLICY: a change to
# either must be made to both on purpose.
EXPECTED = {
    "viewer": {"read", "predict"},
    "trainer": {"read", "register", "tag", "predict", "mask", "export"},
    "deployer": {"read", "tag", "alias", "serve", "predict", "mask"},
    "admin": set(ACTIONS),
}


def test_every_role_can_do_exactly_what_its_row_allows():
    assert set(POLICY) == set(ROLES) == set(EXPECTED)
    for role in ROLES:
        for action in ACTIONS:
            assert allowed(role, action) is (action in EXPECTED[role]), (role, action)
    assert not any(allowed("root", a) for a in ACTIONS)  # an unknown role may do nothing
    with pytest.raises(ValueError):
        allowed("admin", "delete_everything")


def test_the_documented_table_is_the_policy():
    """The Markdown table in the module docstring says exactly what POLICY does."""
    rows = [line for line in _access.__doc__.splitlines() if line.startswith("| ") and not line.startswith("| action")]
    documented = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        documented[cells[0]] = {role for role, mark in zip(ROLES, cells[1:5]) if mark == "x"}
    assert set(documented) == set(ACTIONS)
    for action, roles in documented.items():
        assert roles == {r for r in ROLES if allowed(r, action)}, action


@pytest.fixture
def engine(tmp_path):
    return sa.create_engine(f"sqlite:///{tmp_path / 'access.db'}")


@pytest.fixture
def audit(engine):
    return AuditLog(engine, None, None)


@pytest.fixture
def keyring(tmp_path):
    return Keyring.init(tmp_path / "keys")


@pytest.fixture
def store(engine, audit, keyring):
    return AccessStore(engine, audit, keyring=keyring)


def _scan(tmp_path, needle: bytes) -> list[str]:
    return [p.name for p in tmp_path.iterdir() if p.is_file() and needle in p.read_bytes()]


def test_require_audits_denials_and_passes_allowed_actions(audit):
    viewer = Principal("vera", "viewer", "token")
    require(viewer, "read", "models:/iris", audit)
    assert audit.entries() == []  # allowed reads are not audited
    with pytest.raises(AccessDenied, match=r"vera \(role viewer\) may not register models:/iris"):
        require(viewer, "register", "models:/iris", audit)
    (entry,) = audit.entries()
    assert (entry["actor"], entry["action"], entry["object"], entry["outcome"]) == ("vera", "register", "models:/iris", "denied")
    assert entry["details"] == {"role": "viewer", "kind": "token"}


def test_no_token_means_the_local_workspace_admin(store):
    me = store.authenticate(None)
    assert me == Principal(getpass.getuser(), "admin", "local-admin")


def test_a_packages_lineage_names_a_user_but_never_the_local_admins_os_login():
    assert Principal("alice", "trainer", "token").lineage_name == "alice"
    assert Principal("alice", "trainer", "user").lineage_name == "alice"
    assert Principal("someone-os-login", "admin", "local-admin").lineage_name == "local-admin"


def test_token_is_shown_once_and_only_its_hash_is_stored(store, engine, tmp_path):
    store.add_user("alice", "trainer")
    token = store.issue_token("alice", ttl_days=30)
    match = re.fullmatch(r"tfk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})", token)
    assert match, token
    token_id, secret_text = match.groups()
    secret = base64.urlsafe_b64decode(secret_text + "=")
    assert len(secret) == 32
    assert store.authenticate(token) == Principal("alice", "trainer", "token")
    assert store.issue_token("alice") != token  # random every time
    engine.dispose()
    for needle in (token.encode(), secret_text.encode(), secret, secret.hex().encode()):
        assert _scan(tmp_path, needle) == [], "a token secret reached the database"
    assert _scan(tmp_path, token_id.encode()) == ["access.db"]  # the id is the lookup key
    assert all(token not in str(v) for u in store.list_users() for v in u.values())
    assert store.list_users()[0]["tokens"][0] == token_id


def test_bad_tokens_are_refused_without_echoing_them(store):
    store.add_user("bob", "viewer")
    good = store.issue_token("bob")
    token_id = good.split("_")[1]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    unknown_id = "tfk_" + "0" * 16 + good[20:]
    for bad in (wrong_secret, unknown_id, "tfk_nothex_abc", "hunter2", good + "x", ""):
        with pytest.raises(AccessDenied) as err:
            store.authenticate(bad)
        message = str(err.value)
        assert good[21:] not in message and (len(bad) < 4 or bad not in message), message
    with pytest.raises(AccessDenied, match="not valid") as a:
        store.authenticate(wrong_secret)
    with pytest.raises(AccessDenied, match="not valid") as b:
        store.authenticate(unknown_id)
    assert str(a.value) == str(b.value)  # an unknown id and a wrong secret look the same
    assert store.authenticate(good).name == "bob" and token_id in good


def test_expiry_takes_effect_immediately(store, monkeypatch):
    store.add_user("carol", "deployer")
    token = store.issue_token("carol", ttl_days=1)
    assert store.authenticate(token).role == "deployer"
    issued = _access._now()
    monkeypatch.setattr(_access, "_now", lambda: issued + datetime.timedelta(days=1, seconds=1))
    with pytest.raises(AccessDenied, match=f"expired at {(issued + datetime.timedelta(days=1)):%Y-%m-%d}") as err:
        store.authenticate(token)
    assert token.split("_", 2)[2] not in str(err.value)
    assert store.list_users()[0]["tokens"] == []
    monkeypatch.undo()
    never = store.issue_token("carol", ttl_days=None)
    assert store.authenticate(never).name == "carol"
    for ttl in (0, -1, 10_000):
        with pytest.raises(RegistryError, match="lifetime"):
            store.issue_token("carol", ttl_days=ttl)


def test_revocation_takes_effect_immediately(store):
    store.add_user("dave", "trainer")
    one, two = store.issue_token("dave"), store.issue_token("dave")
    assert store.authenticate(one).name == "dave"
    store.revoke_token(one.split("_")[1])
    with pytest.raises(AccessDenied, match="revoked"):
        store.authenticate(one)
    assert store.authenticate(two).role == "trainer"
    store.grant("dave", "viewer")
    assert store.authenticate(two).role == "viewer"  # role changes are read on every call
    store.revoke("dave")
    with pytest.raises(AccessDenied, match="revoked"):
        store.authenticate(two)
    with pytest.raises(RegistryError, match="is revoked"):
        store.issue_token("dave")
    assert store.list_users()[0]["active"] is False
    store.grant("dave", "trainer")  # re-enables the user, not their old tokens
    with pytest.raises(AccessDenied, match="revoked"):
        store.authenticate(two)
    assert store.authenticate(store.issue_token("dave")).role == "trainer"
    with pytest.raises(RegistryError, match="does not exist"):
        store.revoke_token("0" * 16)
    with pytest.raises(RegistryError, match="16 hex"):
        store.revoke_token("../etc")


def test_token_of_a_revoked_user_is_refused(store, engine):
    store.add_user("erin", "admin")
    token = store.issue_token("erin")
    with engine.begin() as conn:  # the user disabled (and sealed so) without touching the token row
        conn.execute(sa.text("UPDATE access_users SET active = 0 WHERE name = 'erin'"))
        store._seal_user(conn, "erin")
        store.seal_head(conn)
    with pytest.raises(AccessDenied, match="user 'erin' of API token .* is revoked"):
        store.authenticate(token)


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "a\\b", "%2e%2e", "..", ".hidden", "", "x" * 65, "a b", "tab\t", "é"])
def test_bad_user_names_are_refused(store, name):
    with pytest.raises(RegistryError, match="must be 1-64 letters"):
        store.add_user(name, "viewer")


def test_users_management(store):
    store.add_user("f.g-h_1", "viewer")
    with pytest.raises(RegistryError, match="already exists"):
        store.add_user("f.g-h_1", "admin")
    with pytest.raises(RegistryError, match="role 'root' is unknown"):
        store.add_user("x", "root")
    with pytest.raises(RegistryError, match="does not exist"):
        store.grant("nobody", "admin")
    (u,) = store.list_users()
    assert (u["name"], u["role"], u["active"], u["tokens"]) == ("f.g-h_1", "viewer", True, [])


def test_mutations_by_a_principal_are_checked_and_audited(store, audit):
    admin = Principal("root", "admin", "local-admin")
    store.add_user("gina", "trainer", by=admin)
    token = store.issue_token("gina", by=admin)
    gina = store.authenticate(token)
    with pytest.raises(AccessDenied):
        store.add_user("mallory", "admin", by=gina)
    with pytest.raises(AccessDenied):
        store.grant("gina", "admin", by=gina)
    with pytest.raises(RegistryError):
        store.grant("nobody", "viewer", by=admin)
    log = list(reversed(audit.entries()))
    assert [(e["actor"], e["object"], e["outcome"], e["details"].get("op")) for e in log] == [
        ("root", "user:gina", "ok", "add_user"),
        ("root", "user:gina", "ok", "issue_token"),
        ("gina", "user:mallory", "denied", None),
        ("gina", "user:gina", "denied", None),
        ("root", "user:nobody", "error", "grant"),
    ]
    assert log[1]["details"]["token_id"] == token.split("_")[1]
    assert all(token.split("_", 2)[2] not in str(e) for e in log)
    assert [u["name"] for u in store.list_users()] == ["gina"]  # the denied add changed nothing
    assert audit.verify().ok


# -- commands ------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """The users/audit commands on a workspace of their own, acting as TRUSTFORGE_TOKEN's principal."""
    from trustforge.commands import audit as audit_cmd
    from trustforge.settings import Settings

    @contextlib.contextmanager
    def workspace():
        yield audit_cmd._standalone(Settings.from_env())

    monkeypatch.setattr(audit_cmd, "open_workspace", workspace)
    return CliRunner()


def _invoke(runner, app, args):
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout, result.exception


def test_users_and_audit_commands(cli, monkeypatch):
    from trustforge.commands.audit import app as audit_app
    from trustforge.commands.users import app as users_app

    assert _invoke(cli, users_app, ["add", "hana", "--role", "deployer"])[:2] == (0, "added hana (deployer)\n")
    code, out, _ = _invoke(cli, users_app, ["token", "hana", "--days", "7"])
    token = out.strip()
    assert code == 0 and re.fullmatch(r"tfk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", token)
    code, out, _ = _invoke(cli, users_app, ["list"])
    assert code == 0 and "hana" in out and "deployer" in out and token.split("_")[1] in out and token not in out
    code, out, _ = _invoke(cli, audit_app, ["verify"])
    assert (code, out) == (0, "ok: 2 entries\nok: 2 user and token records match their seals\n")
    code, out, _ = _invoke(cli, audit_app, ["show", "--limit", "5"])
    assert code == 0 and "user:hana" in out and token not in out  # the table; details are cut short
    code, out, _ = _invoke(cli, audit_app, ["show", "--limit", "5", "--json"])
    assert code == 0 and "issue_token" in out and token not in out

    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)  # now acting as hana, a deployer
    code, _, exc = _invoke(cli, users_app, ["add", "ivan", "--role", "admin"])
    assert code != 0 and isinstance(exc, AccessDenied)
    code, _, exc = _invoke(cli, audit_app, ["verify"])
    assert isinstance(exc, AccessDenied)
    monkeypatch.delenv("TRUSTFORGE_TOKEN")

    assert _invoke(cli, users_app, ["revoke", "hana"])[0] == 0
    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
    code, _, exc = _invoke(cli, users_app, ["list"])
    assert isinstance(exc, AccessDenied) and token not in str(exc)
    monkeypatch.delenv("TRUSTFORGE_TOKEN")

    code, out, _ = _invoke(cli, audit_app, ["show", "--json", "--limit", "100"])
    log = [json.loads(line) for line in reversed(out.splitlines())]
    assert code == 0 and [(e["actor"], e["action"], e["outcome"]) for e in log] == [
        (getpass.getuser(), "users", "ok"),  # add
        (getpass.getuser(), "users", "ok"),  # token
        ("hana", "users", "denied"),
        ("hana", "audit_verify", "denied"),
        (getpass.getuser(), "users", "ok"),  # revoke
        ("hana", "authenticate", "denied"),  # her revoked token
    ]
    assert token not in out
    assert _invoke(cli, audit_app, ["verify"])[:2] == (0, "ok: 6 entries\nok: 2 user and token records match their seals\n")


def test_audit_verify_command_names_the_first_bad_entry(cli, workspace):
    from trustforge.commands.audit import app as audit_app
    from trustforge.commands.users import app as users_app

    for name in ("a1", "a2", "a3"):
        assert _invoke(cli, users_app, ["add", name])[0] == 0
    db = workspace / "registry.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 2"))
    engine.dispose()
    code, _, exc = _invoke(cli, audit_app, ["verify"])
    assert isinstance(exc, IntegrityError) and str(exc).startswith("audit log entry 2: entry 2 was edited")
