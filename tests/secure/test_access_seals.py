"""Users and tokens are sealed: a database writer without the keys cannot raise a role, revive or
extend a token, or add a user or token of their own (the probe's `UPDATE access_users SET
role='admin'`). Seals survive key rotation; rows from before seals are sealed once."""

from __future__ import annotations

import base64
import secrets

import pytest
import sqlalchemy as sa
from _cli import run_main

from trustforge.errors import AccessDenied, RegistryError, SecurityError
from trustforge.registry import Registry
from trustforge.secure import _access
from trustforge.settings import Settings


def _sql(home, statement: str, **params) -> None:
    """What someone who can write the database (and nothing else) does."""
    engine = sa.create_engine(f"sqlite:///{home / 'registry.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def _sql_one(home, statement: str):
    engine = sa.create_engine(f"sqlite:///{home / 'registry.db'}")
    with engine.connect() as conn:
        value = conn.execute(sa.text(statement)).scalar_one()
    engine.dispose()
    return value


def _forged_token(home, user: str) -> str:
    """A token row the writer makes up: the hash scheme is public, only the keys are not."""
    token_id, secret = secrets.token_hex(8), secrets.token_bytes(32)
    _sql(
        home,
        "INSERT INTO access_tokens (id, user, hash, created, expires, revoked) VALUES (:id, :user, :hash, '2026-01-01', NULL, NULL)",
        id=token_id,
        user=user,
        hash=_access._token_hash(token_id, secret),
    )
    return f"tfk_{token_id}_{base64.urlsafe_b64encode(secret).rstrip(b'=').decode()}"


@pytest.fixture
def vera(workspace):
    """A workspace with a viewer, vera, holding a live token, and an admin, ada."""
    assert run_main("users", "add", "vera", "--role", "viewer", home=workspace).code == 0
    assert run_main("users", "add", "ada", "--role", "admin", home=workspace).code == 0
    result = run_main("users", "token", "vera", home=workspace)
    assert result.code == 0, result
    return result.stdout.strip()


def _forge(kind: str, home, token: str) -> str:
    """Apply one forgery; return the token the attacker then uses."""
    token_id = token.split("_")[1]
    if kind == "raise role":
        _sql(home, "UPDATE access_users SET role = 'admin' WHERE name = 'vera'")
    elif kind == "borrow the admin's seal":
        _sql(home, "UPDATE access_users SET role = 'admin' WHERE name = 'vera'")
        _sql(
            home,
            "UPDATE access_seals SET key_id = (SELECT key_id FROM access_seals WHERE key = 'ada'), "
            "signature = (SELECT signature FROM access_seals WHERE key = 'ada') WHERE key = 'vera'",
        )
    elif kind == "drop the seal and raise role":
        _sql(home, "UPDATE access_users SET role = 'admin' WHERE name = 'vera'")
        _sql(home, "DELETE FROM access_seals WHERE key = 'vera'")
    elif kind == "revive a revoked token":
        assert run_main("users", "revoke-token", token_id, home=home).code == 0
        _sql(home, "UPDATE access_tokens SET revoked = NULL WHERE id = :id", id=token_id)
    elif kind == "re-enable a revoked user":
        assert run_main("users", "revoke", "vera", home=home).code == 0
        _sql(home, "UPDATE access_users SET active = 1 WHERE name = 'vera'")
        _sql(home, "UPDATE access_tokens SET revoked = NULL WHERE id = :id", id=token_id)
    elif kind == "move a token to the admin":
        _sql(home, "UPDATE access_tokens SET user = 'ada' WHERE id = :id", id=token_id)
    elif kind == "a made-up token for the admin":
        return _forged_token(home, "ada")
    elif kind == "a made-up admin":
        _sql(home, "INSERT INTO access_users (name, role, active, created) VALUES ('mallory', 'admin', 1, '2026-01-01')")
        return _forged_token(home, "mallory")
    return token


FORGERIES = [
    "raise role",
    "borrow the admin's seal",
    "drop the seal and raise role",
    "revive a revoked token",
    "re-enable a revoked user",
    "move a token to the admin",
    "a made-up token for the admin",
    "a made-up admin",
]


@pytest.mark.parametrize("kind", FORGERIES)
def test_a_database_write_grants_nothing_and_verify_names_it(kind, vera, workspace, monkeypatch):
    token = _forge(kind, workspace, vera)
    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
    code, out, err = run_main("users", "list", home=workspace)  # an admin's command
    assert code != 0 and "has no valid seal" in err and "ada" not in out, (code, out, err)
    code, out, err = run_main("models", "list", home=workspace)  # and not even a viewer's: fail closed
    assert code != 0 and "has no valid seal" in err, (code, out, err)
    monkeypatch.delenv("TRUSTFORGE_TOKEN")

    code, out, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "access records changed outside TrustForge (" in err, (code, out, err)
    assert token.split("_", 2)[2] not in err  # never the secret
    code, out, err = run_main("users", "list", home=workspace)
    assert code == 0 and "warning:" in err and "seal" in err, (code, out, err)
    code, out, _ = run_main("audit", "show", "--json", "--limit", "50", home=workspace)
    assert '"reason": "seal broken"' in out


def test_an_admin_decision_reseals_a_row(vera, workspace, monkeypatch):
    _forge("raise role", workspace, vera)
    assert run_main("users", "grant", "vera", "viewer", home=workspace).code == 0  # the admin puts it right
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0
    code, _, err = run_main("users", "list", home=workspace)
    assert code != 0 and "vera (role viewer) may not users" in err
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code == 0 and "ok: 3 user and token records match their seals" in out, (code, out, err)


def test_seals_made_before_a_key_rotation_still_hold(vera, workspace, monkeypatch):
    assert run_main("keys", "rotate", home=workspace).code == 0
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0  # sealed by the retired key
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    assert run_main("users", "grant", "vera", "trainer", home=workspace).code == 0  # sealed by the new one
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    _sql(workspace, "UPDATE access_users SET role = 'admin' WHERE name = 'vera'")
    with Registry(Settings.from_env()) as reg, pytest.raises(AccessDenied, match="seal"):
        reg.access.authenticate(vera)


def test_rows_from_before_seals_are_sealed_once_then_an_unsealed_row_is_refused(vera, workspace, monkeypatch):
    # A workspace as the version before seals left it: rows, no seals, no mark in the keys folder.
    _sql(workspace, "DELETE FROM access_seals")
    _sql(workspace, "DELETE FROM access_head")
    _sql(workspace, "DELETE FROM access_head_log")
    (workspace / "keys" / _access.SEALED_MARKER).unlink()
    (workspace / "keys" / _access.WITNESS_FILE).unlink()
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0  # the first open seals them
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    assert (workspace / "keys" / _access.SEALED_MARKER).is_file()
    code, out, _ = run_main("audit", "show", "--json", "--limit", "50", home=workspace)
    assert code == 0 and '"op": "seal_existing"' in out and '"users": 2' in out and '"tokens": 1' in out
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code == 0 and "ok: 3 user and token records" in out, (code, out, err)

    forged = _forge("a made-up admin", workspace, vera)  # after the mark: refused, never adopted
    monkeypatch.setenv("TRUSTFORGE_TOKEN", forged)
    code, _, err = run_main("users", "list", home=workspace)
    assert code != 0 and "has no valid seal" in err
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "user 'mallory' has no seal" in err, err


def test_a_request_pays_one_signature_check_per_row_version(vera, workspace, monkeypatch):
    with Registry(Settings.from_env()) as reg:
        calls = []
        real = reg.keyring.verify
        monkeypatch.setattr(reg.keyring, "verify", lambda *a: calls.append(a) or real(*a))
        for _ in range(5):
            assert reg.access.authenticate(vera).name == "vera"
        assert len(calls) == 3  # the token's row, its user's and the access head, once each
        reg.access.grant("vera", "trainer")
        assert reg.access.authenticate(vera).role == "trainer" and len(calls) == 5  # the user's new row and the new head


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE access_users SET name = CAST(name AS BLOB) WHERE name = 'vera'",
        "UPDATE access_users SET role = CAST('admin' AS BLOB) WHERE name = 'vera'",
        "UPDATE access_tokens SET expires = CAST('2999-01-01' AS BLOB)",
        "UPDATE access_tokens SET hash = CAST(hash AS BLOB)",
    ],
)
def test_a_value_of_the_wrong_type_is_a_broken_seal_not_a_crash(statement, vera, workspace, monkeypatch):
    _sql(workspace, statement)
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    code, _, err = run_main("models", "list", home=workspace)
    assert code == 8 and ("has no valid seal" in err or "not valid" in err) and "internal error" not in err, err
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("audit", "verify", home=workspace)
    # A renamed user is two problems: the new name has no seal, the head's name is missing.
    broken = 2 if "SET name" in statement else 1
    assert code == 4 and f"access records changed outside TrustForge ({broken})" in err and "internal error" not in err, err
    code, _, err = run_main("users", "list", home=workspace)
    assert code == 0 and "warning:" in err, err


def test_a_refusal_for_a_broken_seal_is_audited_as_anonymous_not_as_the_forged_name(vera, workspace):
    forged = _forge("a made-up token for the admin", workspace, vera)
    with Registry(Settings.from_env()) as reg, pytest.raises(AccessDenied):
        reg.access.authenticate(forged)
    code, out, _ = run_main("audit", "show", "--json", "--limit", "1", home=workspace)
    assert code == 0 and '"actor": "anonymous"' in out and '"claimed_user": "ada"' in out and '"reason": "seal broken"' in out, out


def test_audit_verify_names_every_broken_row(vera, workspace):
    _forge("raise role", workspace, vera)
    _sql(workspace, "UPDATE access_users SET role = 'admin' WHERE name = 'ada'")  # a no-op change: still sealed
    _sql(workspace, "DELETE FROM access_seals WHERE kind = 'token'")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "(2)" in err and "user 'vera' does not match its seal" in err and "has no seal" in err, err


def test_a_keys_folder_put_back_without_its_workspace_id_is_one_clear_error(vera, workspace):
    (workspace / "keys" / _access.SEALED_MARKER).unlink()
    code, _, err = run_main("models", "list", home=workspace)
    assert code != 0 and "keys/access-sealed is missing" in err and "internal error" not in err, err


# ---------------------------------------------------------------------------- replays (the access head)


def _rows(home, token_id: str) -> dict:
    """What a database writer copies before a change, to put it back after: the token's row, its
    user's, their seals and the access head, as stored."""
    engine = sa.create_engine(f"sqlite:///{home / 'registry.db'}")
    with engine.connect() as conn:
        saved = {
            "token": dict(conn.execute(sa.text("SELECT * FROM access_tokens WHERE id = :id"), {"id": token_id}).one()._mapping),
            "seals": [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM access_seals"))],
            "head": dict(conn.execute(sa.text("SELECT * FROM access_head")).one()._mapping),
        }
    engine.dispose()
    return saved


def _put_back(home, saved: dict, *, head: bool) -> None:
    _sql(home, "UPDATE access_tokens SET revoked = :revoked WHERE id = :id", id=saved["token"]["id"], revoked=saved["token"]["revoked"])
    _sql(home, "DELETE FROM access_seals")
    for seal in saved["seals"]:
        _sql(home, "INSERT INTO access_seals (kind, key, key_id, signature) VALUES (:kind, :key, :key_id, :signature)", **seal)
    if head:
        _sql(home, "UPDATE access_head SET version = :version, body = :body, key_id = :key_id, signature = :signature", **saved["head"])


def _second_machine(workspace, tmp_path, monkeypatch):
    """Another machine sharing the workspace's database: its own copy of the keys folder (its
    witness as the first machine's is now), and the database by URL."""
    import shutil

    b = tmp_path / "b"
    b.mkdir()
    shutil.copytree(workspace / "keys", b / "keys")
    monkeypatch.setenv("TRUSTFORGE_DB_URL", f"sqlite:///{workspace / 'registry.db'}")
    return b


@pytest.mark.parametrize("head", [False, True], ids=["row and seal", "row, seals and head"])
def test_a_revoked_token_put_back_with_its_old_seal_is_refused(head, vera, workspace, monkeypatch):
    # The red team's replay: the token's row from before its revocation, with the seal it had then
    # (and, the second time, the whole access state of then, the signed head included).
    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    _put_back(workspace, saved, head=head)
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    code, _, err = run_main("models", "list", home=workspace)
    assert code == AccessDenied.exit_code and "not the one the signed access head names" in err, err
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("audit", "verify", home=workspace)
    expected = "older than version" if head else f"token {token_id} is not the one the access head names"
    assert code == 4 and expected in err, err


def test_an_admins_later_change_does_not_make_a_put_back_row_current(vera, workspace, monkeypatch):
    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    _put_back(workspace, saved, head=False)
    assert run_main("users", "grant", "ada", "admin", home=workspace).code == 0  # signs a new head
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == AccessDenied.exit_code


def test_a_deleted_head_refuses_every_token_where_it_was_seen(vera, workspace, monkeypatch):
    _sql(workspace, "DELETE FROM access_head")
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == AccessDenied.exit_code
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "the access head (which seal of each user and token is current) is missing" in err, err
    # The red team: changes were then refused, or (a token) issued and refused at once; no way back.
    code, _, err = run_main("users", "token", "vera", home=workspace)
    assert code != 0 and "then `trustforge users reseal`" in err, err
    code, out, err = run_main("users", "reseal", home=workspace)
    assert code == 0 and "names 3 user and token record(s) as current" in out, out + err
    assert run_main("audit", "verify", home=workspace).code == 0
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0


def test_audit_verify_names_the_access_problems_when_the_log_fails_too(vera, workspace):
    # The red team: a database put back whole broke both, and only the log's problem was shown.
    _sql(workspace, "UPDATE audit_entries SET actor = 'someone' WHERE seq = 1")
    _sql(workspace, "DELETE FROM access_head")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "audit log entry 1" in err and "the access head (which seal" in err, err


def test_a_workspace_sealed_before_heads_gets_one_once(vera, workspace, monkeypatch):
    _sql(workspace, "DELETE FROM access_head")  # as the version before heads left it: seals, no head, no log, no witness
    _sql(workspace, "DELETE FROM access_head_log")
    (workspace / "keys" / _access.WITNESS_FILE).unlink()
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, out, err = run_main("audit", "show", "--limit", "50", home=workspace)
    assert code == 0 and out.count("seal_head") == 1, out
    assert run_main("audit", "verify", home=workspace).code == 0
    assert (workspace / "keys" / _access.WITNESS_FILE).stat().st_mode & 0o777 == 0o600


def test_an_admins_change_between_the_two_reads_does_not_refuse_a_valid_token(vera, workspace, monkeypatch):
    # The red team: a `users token` committed between authenticate's read of the token and its
    # read of the head refused a valid token once, as a replay (3 times in 25 on a busy server).
    with Registry(Settings.from_env()) as reg:
        real, reads = reg.access._token_row, []

        def racing(token_id):
            row = real(token_id)
            if not reads:
                reg.access.grant("ada", "admin")  # a new head, committed after the token's row was read
            reads.append(token_id)
            return row

        monkeypatch.setattr(reg.access, "_token_row", racing)
        assert reg.access.authenticate(vera).name == "vera" and len(reads) == 2


def test_a_copy_of_the_workspace_that_changed_on_its_own_cannot_replace_its_access_tables(vera, workspace, tmp_path, monkeypatch):
    # The red team: a copy made (keys included) before a revocation, changed twice there (a higher
    # head version, validly signed), its access tables copied into the original: the revoked
    # token lived again and `audit verify` said ok.
    import shutil
    import sqlite3

    copy = tmp_path / "copy"
    shutil.copytree(workspace, copy)
    token_id = vera.split("_")[1]
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    for role in ("trainer", "deployer"):
        assert run_main("users", "grant", "ada", role, home=copy).code == 0
    db = sqlite3.connect(workspace / "registry.db")
    db.execute("ATTACH DATABASE ? AS copy", (str(copy / "registry.db"),))
    for table in ("access_tokens", "access_users", "access_seals", "access_head", "access_head_log"):
        db.execute(f"DELETE FROM {table}")
        db.execute(f"INSERT INTO {table} SELECT * FROM copy.{table}")
    db.commit()
    db.close()
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == AccessDenied.exit_code
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "does not descend from the version" in err, err


def test_a_keys_folder_where_the_witness_cannot_be_written_is_one_clear_error(vera, workspace, monkeypatch):
    with Registry(Settings.from_env()) as reg:
        reg.access._head_cache = None  # a fresh process: the head is verified again, and the witness written

        def read_only(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(_access, "_advance_access_witness", read_only)
        for _ in range(2):  # the red team: the second call passed, the head having been cached before the write
            with pytest.raises(SecurityError, match="keys/access-witness cannot be written \\(Permission denied\\)"):
                reg.access.authenticate(vera)


@pytest.mark.parametrize("version", [10**18, 2**63 - 1])
def test_a_forged_head_version_does_not_carry_into_the_reseal_or_the_witness(version, vera, workspace, monkeypatch):
    # The red team: `users reseal` after this edit built on the forged version, wrote a 19-digit
    # witness that read as unreadable (every token refused for good), or overflowed (exit 70).
    _sql(workspace, "UPDATE access_head SET version = :v", v=version)
    code, out, err = run_main("users", "reseal", home=workspace)
    assert code == 0, out + err
    witness = (workspace / "keys" / _access.WITNESS_FILE).read_text()
    assert int(witness.split()[4]) < 100, witness
    assert run_main("audit", "verify", home=workspace).code == 0
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0


def test_a_whole_access_state_put_back_names_its_rows_and_reseal_leaves_them_out(vera, workspace, monkeypatch):
    # The red team's D3: with the head put back too, `audit verify` named only the head, and
    # `users reseal` took every row whose seal held, the revoked token's old row included.
    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    _put_back(workspace, saved, head=True)
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and f"token {token_id} is not the one the access head this machine last saw (version 4) named" in err, err
    assert "user 'vera'" not in err and "user 'ada'" not in err, err  # unchanged since: not named
    code, out, err = run_main("users", "reseal", home=workspace)
    assert code == 0 and "names 2 user and token record(s)" in out and f"left out, refused until decided again: token {token_id}" in out, (
        out
    )
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    code, _, err = run_main("models", "list", home=workspace)
    assert code == AccessDenied.exit_code and "not the one the signed access head names" in err, err
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and f"token {token_id} is not the one the access head names" in err, err
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0  # the admin decides again
    assert run_main("audit", "verify", home=workspace).code == 0
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    code, _, err = run_main("models", "list", home=workspace)
    assert code == AccessDenied.exit_code and "was revoked" in err, err


def test_without_the_last_heads_body_reseal_asks_for_from_seals(vera, workspace):
    # A witness from before bodies were kept (or a body of another head: a process killed between
    # the two writes): reseal cannot tell which rows were put back, and says so.
    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    body = workspace / "keys" / _access.WITNESS_BODY_FILE
    body.write_bytes(body.read_bytes().replace(b" v1 4 ", b" v1 3 ", 1))
    assert _access._witnessed_entries(workspace / "keys") is None
    _put_back(workspace, saved, head=True)
    code, out, err = run_main("users", "reseal", home=workspace)
    assert code == SecurityError.exit_code and "kept no access head" in err and "--from-seals" in err, out + err
    code, out, err = run_main("users", "reseal", "--from-seals", home=workspace)
    assert code == 0 and "names 3 user and token record(s)" in out and "is current too now" in out, out + err


def test_a_witness_kept_before_bodies_gets_its_body_when_its_head_is_next_checked(vera, workspace):
    (workspace / "keys" / _access.WITNESS_BODY_FILE).unlink()
    with Registry(Settings.from_env()) as reg:
        reg.access.authenticate(vera)  # a fresh process checks the head the witness names
    assert _access._witnessed_entries(workspace / "keys")[0] == 3


def test_a_process_killed_between_the_witness_and_its_body_leaves_no_body_in_use(vera, workspace, monkeypatch):
    # The witness is written first: killed before the body, it is ahead of the old body (unused);
    # the other order left the witness behind, and a put-back state one version old passed.
    written = []
    real = _access.atomic_write_bytes

    def killed_at_the_body(path, data, **kwargs):
        if path.name == _access.WITNESS_BODY_FILE:
            raise KeyboardInterrupt
        written.append(path.name)
        real(path, data, **kwargs)

    monkeypatch.setattr(_access, "atomic_write_bytes", killed_at_the_body)
    assert run_main("users", "grant", "ada", "trainer", home=workspace).code == 130  # killed (Ctrl-C)
    monkeypatch.undo()
    assert written == [_access.WITNESS_FILE] and int((workspace / "keys" / _access.WITNESS_FILE).read_text().split()[4]) == 4
    assert _access._witnessed_entries(workspace / "keys") is None


def test_reseal_on_a_machine_that_missed_a_change_is_refused_and_its_version_is_above_every_head(vera, workspace, tmp_path, monkeypatch):
    # The red team's F3: machine B revoked the token; the head was deleted and the token's old
    # row and seal put back; A's reseal (its witness one head behind) took the old row, and
    # signed a head of B's version, so B then refused every token.

    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    b = _second_machine(workspace, tmp_path, monkeypatch)
    assert run_main("users", "revoke-token", token_id, home=b).code == 0  # on B
    _sql(workspace, "DELETE FROM access_head")
    _put_back(workspace, saved, head=False)
    code, _, err = run_main("users", "reseal", home=workspace)  # on A
    assert code == SecurityError.exit_code and "holds version 4, newer than version 3 this machine has seen" in err, err
    code, out, err = run_main("users", "reseal", home=b)  # on B, which saw it
    assert code == 0 and f"left out, refused until decided again: token {token_id}" in out, out + err
    code, out, err = run_main("users", "reseal", "--from-seals", home=workspace)  # A's, when B is gone
    assert code == 0 and int((workspace / "keys" / _access.WITNESS_FILE).read_text().split()[4]) == 6, out + err


def test_a_gap_in_the_head_log_is_a_warning_and_a_machine_behind_it_reseals(vera, workspace, tmp_path, monkeypatch):
    # The red team's D5: deleted log rows passed `audit verify` here, while a machine that last saw
    # a head before them refused every token. Then (its F4) the documented cure started a new
    # chain, and every other machine refused every token in turn.
    import shutil

    first = _sql_one(workspace, "SELECT fingerprint FROM access_head_log WHERE version = 1")
    _sql(workspace, "DELETE FROM access_head_log WHERE version = 2")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 0 and "warning: the log of access heads misses the head version 3 was built on" in err, err
    b = tmp_path / "b"  # a machine sharing the database that last saw version 1
    shutil.copytree(workspace / "keys", b / "keys")
    (b / "keys" / _access.WITNESS_FILE).write_text(f"trustforge access head v1 1 {first}\n")
    (b / "keys" / _access.WITNESS_BODY_FILE).unlink()
    monkeypatch.setenv("TRUSTFORGE_DB_URL", f"sqlite:///{workspace / 'registry.db'}")
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=b).code == AccessDenied.exit_code
    assert run_main("models", "list", home=workspace).code == 0
    monkeypatch.delenv("TRUSTFORGE_TOKEN")
    code, _, err = run_main("users", "reseal", home=b)  # B's last head is older than the log's newest
    assert code == SecurityError.exit_code and "kept no access head" in err and "--from-head" in err, err
    code, out, err = run_main("users", "reseal", "--from-head", home=b)
    assert code == 0 and "names 3 user and token record(s)" in out, out + err
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    for home in (b, workspace):  # both follow the new head: it is built on the stored one
        code, _, err = run_main("models", "list", home=home)
        assert code == 0, (home, err)


def test_a_duplicated_head_row_is_named_and_reseal_puts_it_right(vera, workspace, monkeypatch):
    # The red team's F7 (PostgreSQL, its primary key dropped): every change failed with "try
    # again" for good while `audit verify` said ok.
    _sql(workspace, "CREATE TABLE head_copy AS SELECT * FROM access_head")
    _sql(workspace, "DROP TABLE access_head")
    _sql(workspace, "ALTER TABLE head_copy RENAME TO access_head")
    _sql(workspace, "INSERT INTO access_head SELECT * FROM access_head")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "the access head (which seal of each user and token is current) is stored 2 times" in err, err
    code, _, err = run_main("users", "grant", "ada", "trainer", home=workspace)
    assert code == SecurityError.exit_code and "is stored 2 times" in err and "users reseal" in err, err
    code, out, err = run_main("users", "reseal", home=workspace)
    assert code == 0 and "names 3 user and token record(s)" in out, out + err
    assert run_main("audit", "verify", home=workspace).code == 0
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=workspace).code == 0


def test_a_column_type_changed_on_postgresql_is_one_line_not_an_internal_error(pg_url, workspace, monkeypatch):
    # The red team's F5: `ALTER TABLE access_head ALTER COLUMN id TYPE text` made `audit verify`,
    # `users token` and every token's command exit 70 ("a bug in TrustForge").
    monkeypatch.setenv("TRUSTFORGE_DB_URL", pg_url)
    assert run_main("users", "add", "vera", "--role", "viewer", home=workspace).code == 0
    token = run_main("users", "token", "vera", home=workspace).stdout.strip()
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE access_head ALTER COLUMN id TYPE text"))
    engine.dispose()
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "is not stored as row id 1" in err, err
    code, _, err = run_main("users", "list", home=workspace)
    assert code == 0 and "warning: the access head" in err, err
    code, _, err = run_main("users", "token", "vera", home=workspace)
    assert code == 9 and "the database refused the change to user:vera (operator does not exist" in err, err
    monkeypatch.setenv("TRUSTFORGE_TOKEN", token)
    code, _, err = run_main("models", "list", home=workspace)
    assert code == 9 and "refused a statement" in err, err


@pytest.mark.parametrize(
    "trigger, change",
    [
        (
            "CREATE TRIGGER k AFTER UPDATE OF revoked ON access_tokens WHEN NEW.revoked IS NOT NULL "
            "BEGIN UPDATE access_tokens SET revoked = NULL WHERE id = NEW.id; END",
            "revoke-token",
        ),
        ("CREATE TRIGGER k BEFORE UPDATE ON access_tokens BEGIN SELECT RAISE(IGNORE); END", "revoke-token"),
        (
            "CREATE TRIGGER k AFTER UPDATE OF role ON access_users WHEN NEW.role <> 'admin' "
            "BEGIN UPDATE access_users SET role = 'admin' WHERE name = NEW.name; END",
            "grant",
        ),
    ],
    ids=["undo a revocation", "ignore the update", "raise the role"],
)
def test_a_trigger_that_rewrites_a_change_is_refused_not_sealed(trigger, change, vera, workspace, monkeypatch):
    # The red team: with a trigger planted, `revoke-token` printed "revoked" and the token lived
    # on, sealed; a grant made vera a sealed admin; `audit verify` said ok.
    token_id = vera.split("_")[1]
    _sql(workspace, trigger)
    args = ["revoke-token", token_id] if change == "revoke-token" else ["grant", "vera", "trainer"]
    code, _, err = run_main("users", *args, home=workspace)
    assert code == SecurityError.exit_code and "trigger 'k' on access_" in err and "cannot be changed" in err, err
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "the database holds trigger 'k'" in err, err
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    code, _, err = run_main("users", "list", home=workspace)
    assert code == AccessDenied.exit_code, err  # still a viewer: nothing was sealed
    # The read-back check alone (a rewrite the listing does not know: a PostgreSQL rule, say).
    monkeypatch.setattr(_access, "_rewriters", lambda conn: [])
    with Registry(Settings.from_env()) as reg, pytest.raises(SecurityError, match="the database did not keep the change"):
        getattr(reg.access, "revoke_token" if change == "revoke-token" else "grant")(*args[1:])


def test_triggers_rules_and_row_security_on_postgresql_are_named_and_refused(pg_url, workspace, monkeypatch):
    monkeypatch.setenv("TRUSTFORGE_DB_URL", pg_url)
    assert run_main("users", "add", "vera", "--role", "viewer", home=workspace).code == 0
    token_id = run_main("users", "token", "vera", home=workspace).stdout.strip().split("_")[1]
    assert run_main("audit", "verify", home=workspace).code == 0  # the listing's own queries run clean
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE FUNCTION undo() RETURNS trigger AS $$ BEGIN NEW.revoked := NULL; RETURN NEW; END $$ LANGUAGE plpgsql"))
        conn.execute(sa.text("CREATE TRIGGER k BEFORE UPDATE ON access_tokens FOR EACH ROW EXECUTE FUNCTION undo()"))
        conn.execute(sa.text("CREATE RULE r AS ON UPDATE TO access_users DO INSTEAD NOTHING"))
        # A schema named as the user comes first on the default search path: current_schema() is
        # then that one, while the tables still resolve to public (the red team's F2 hid a rule so).
        conn.execute(sa.text('CREATE SCHEMA "' + conn.execute(sa.text("SELECT current_user")).scalar_one() + '"'))
        conn.execute(sa.text("CREATE RULE r2 AS ON INSERT TO public.access_seals DO ALSO NOTHING"))
        conn.execute(sa.text("ALTER TABLE access_seals ENABLE ROW LEVEL SECURITY"))
    engine.dispose()
    code, _, err = run_main("users", "revoke-token", token_id, home=workspace)
    assert code == SecurityError.exit_code and "trigger 'k' on access_tokens" in err, err
    code, _, err = run_main("audit", "verify", home=workspace)
    for named in (
        "trigger 'k' on access_tokens",
        "rule 'r' on access_users",
        "rule 'r2' on access_seals",
        "row-level security 'access_seals'",
    ):
        assert named in err, err


def test_reseal_over_an_older_head_put_back_builds_on_the_one_this_machine_saw(vera, workspace, tmp_path, monkeypatch):
    # The red team's F4: reseal built on the head put back, forking the log, and every other
    # machine (which had seen the newer head) refused every token until it resealed too.
    import shutil

    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    b = tmp_path / "b"  # a machine sharing the database that saw the revocation's head too
    shutil.copytree(workspace / "keys", b / "keys")
    _put_back(workspace, saved, head=True)
    assert run_main("users", "reseal", home=workspace).code == 0
    monkeypatch.setenv("TRUSTFORGE_DB_URL", f"sqlite:///{workspace / 'registry.db'}")
    code, _, err = run_main("audit", "verify", home=b)
    assert code == 4 and "does not descend" not in err and f"token {token_id} is not the one the access head names" in err, err


def test_a_seal_the_database_put_back_during_the_change_is_refused_not_named_by_the_head(vera, workspace, monkeypatch):
    # The red team's F1 (round 2): a trigger on a table of the writer's own, fired by a foreign
    # key's cascade from access_seals (no listing of triggers on the access tables sees it), put
    # the token's old seal back while `_write_seal` replaced it; the head named the seal as read
    # back, so the revoked token, its row put back later, lived on and `audit verify` said ok.
    # Here a trigger stands in for it, and the listing is switched off: the read-back refuses.
    token_id = vera.split("_")[1]
    key_id, signature = _sql_one(workspace, f"SELECT key_id || ' ' || signature FROM access_seals WHERE key = '{token_id}'").split()
    _sql(
        workspace,
        f"CREATE TRIGGER swap AFTER INSERT ON access_seals WHEN NEW.key = '{token_id}' BEGIN "
        f"UPDATE access_seals SET key_id = '{key_id}', signature = '{signature}' WHERE kind = 'token' AND key = '{token_id}'; END",
    )
    monkeypatch.setattr(_access, "_rewriters", lambda conn: [])  # what no listing can be sure to find
    with Registry(Settings.from_env()) as reg, pytest.raises(SecurityError, match="did not keep its new seal as written"):
        reg.access.revoke_token(token_id)
    monkeypatch.undo()
    assert _sql_one(workspace, f"SELECT revoked FROM access_tokens WHERE id = '{token_id}'") is None  # nothing was changed
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "the database holds trigger 'swap' on access_seals" in err, err


def test_a_trigger_on_the_audit_log_blocks_no_change_silently(vera, workspace):
    # The red team's F5: a trigger on audit_entries made every revocation fail with a message
    # about entries inserted behind TrustForge's back, and `audit verify` named nothing.
    _sql(workspace, "CREATE TRIGGER a1 BEFORE INSERT ON audit_entries WHEN NEW.action = 'users' BEGIN SELECT RAISE(ABORT, 'x'); END")
    code, _, err = run_main("users", "revoke-token", vera.split("_")[1], home=workspace)
    assert code == SecurityError.exit_code and "trigger 'a1' on audit_entries" in err, err
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "the database holds trigger 'a1' on audit_entries" in err, err
    assert "drop what the database holds that TrustForge did not make, then" in err, err


def test_a_machine_behind_a_gap_takes_the_stored_head_on_an_admins_word_and_leaves_put_back_rows_out(
    vera, workspace, tmp_path, monkeypatch
):
    # The red team's F3 (round 2): machine B revoked the token and changed more; the token's old row
    # and seal were put back and the log's link from B's first change deleted. A (one head behind)
    # refused every token for good, its reseal refused, and only --from-seals, which made the
    # put-back token current again, let it back.

    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    b = _second_machine(workspace, tmp_path, monkeypatch)
    assert run_main("users", "revoke-token", token_id, home=b).code == 0  # version 4, on B
    assert run_main("users", "grant", "ada", "trainer", home=b).code == 0  # version 5
    _put_back(workspace, saved, head=False)
    _sql(workspace, "DELETE FROM access_head_log WHERE version = 4")
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "does not descend from the version 3" in err and "--from-head" in err, err
    assert run_main("users", "reseal", home=workspace).code == SecurityError.exit_code
    code, out, err = run_main("users", "reseal", "--from-head", home=workspace)
    assert code == 0 and f"left out, refused until decided again: token {token_id}" in out, out + err
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    for home in (workspace, b):
        code, _, err = run_main("models", "list", home=home)
        assert code == AccessDenied.exit_code and "not the one the signed access head names" in err, (home, err)


def test_a_deleted_head_is_not_adopted_by_a_machine_that_never_saw_one_where_heads_were_signed(vera, workspace, tmp_path, monkeypatch):
    # The red team's F4 (round 2): a machine with no witness adopted the seals as they stood (a
    # revoked token's row put back among them) as a new version 1, beside the log's version 1.
    import shutil

    token_id = vera.split("_")[1]
    saved = _rows(workspace, token_id)
    assert run_main("users", "revoke-token", token_id, home=workspace).code == 0
    _put_back(workspace, saved, head=False)
    _sql(workspace, "DELETE FROM access_head")
    c = tmp_path / "c"
    c.mkdir()
    shutil.copytree(workspace / "keys", c / "keys", ignore=shutil.ignore_patterns("access-witness*"))
    monkeypatch.setenv("TRUSTFORGE_DB_URL", f"sqlite:///{workspace / 'registry.db'}")
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    assert run_main("models", "list", home=c).code == AccessDenied.exit_code
    assert _sql_one(workspace, "SELECT count(*) FROM access_head") == 0


def _put_back_access(db, saved) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("ATTACH DATABASE ? AS saved", (str(saved),))
    for table in ("access_tokens", "access_users", "access_seals", "access_head", "access_head_log"):
        conn.execute(f"DELETE FROM {table}")
        conn.execute(f"INSERT INTO {table} SELECT * FROM saved.{table}")
    conn.commit()
    conn.close()


def _backup_db(source, dest) -> None:
    import sqlite3

    src, dst = sqlite3.connect(source), sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.close()


@pytest.mark.parametrize("how", ["reseal", "reseal --from-head"])
def test_a_branch_built_on_a_put_back_state_does_not_undo_a_revocation_seen_elsewhere(how, vera, workspace, tmp_path, monkeypatch):
    # The red team's F2 (round 3): B revoked the token; the whole database was put back to before
    # it; A (which had not seen the revocation) made changes on that state. B's plain reseal
    # refused because of A's newer heads, and its `--from-head` took A's head, the token live.
    import shutil

    token_id = vera.split("_")[1]
    b = tmp_path / "b"
    b.mkdir()
    shutil.copytree(workspace / "keys", b / "keys")
    _backup_db(workspace / "registry.db", tmp_path / "before.db")
    monkeypatch.setenv("TRUSTFORGE_DB_URL", f"sqlite:///{workspace / 'registry.db'}")
    assert run_main("users", "revoke-token", token_id, home=b).code == 0  # B: version 4
    _put_back_access(workspace / "registry.db", tmp_path / "before.db")  # the whole access state of version 3
    for name in ("carol", "dave"):  # A, still at version 3, changes on it: versions 4 and 5 of a branch
        assert run_main("users", "add", name, home=workspace).code == 0
    code, out, err = run_main("users", *how.split(), home=b)
    assert code == 0 and f"token {token_id}" in out.split("left out")[1], out + err
    monkeypatch.setenv("TRUSTFORGE_TOKEN", vera)
    for home in (workspace, b):
        code, _, err = run_main("models", "list", home=home)
        assert code == AccessDenied.exit_code and "not the one the signed access head names" in err, (home, err)


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_a_foreign_key_into_the_seals_blocks_a_revocation_by_name_not_as_a_concurrent_change(where, workspace, request, monkeypatch):
    # The red team's F1 (round 3): a table of the writer's own with a foreign key into
    # access_seals made every revocation fail as "changed concurrently; try again" for good,
    # while `audit verify` said ok.
    url = request.getfixturevalue("pg_url") if where == "postgresql" else f"sqlite:///{workspace / 'registry.db'}"
    monkeypatch.setenv("TRUSTFORGE_DB_URL", url)
    assert run_main("users", "add", "vera", "--role", "viewer", home=workspace).code == 0
    token_id = run_main("users", "token", "vera", home=workspace).stdout.strip().split("_")[1]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE evil (kind varchar(8), key varchar(64), FOREIGN KEY (kind, key) REFERENCES access_seals (kind, key))")
        )
        conn.execute(sa.text("INSERT INTO evil VALUES ('token', :id)"), {"id": token_id})
    engine.dispose()
    code, _, err = run_main("users", "revoke-token", token_id, home=workspace)
    assert code == SecurityError.exit_code and "foreign key of table 'evil'" in err, err
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "foreign key of table 'evil'" in err, err
    monkeypatch.setattr(_access, "_rewriters", lambda conn: [])  # what no listing finds: the refusal says why, audited
    with Registry(Settings.from_env()) as reg:
        with pytest.raises(RegistryError, match="the database refused the change to token:.*made outside TrustForge"):
            reg.access.revoke_token(token_id, by=_access.local_admin())
        assert reg.audit.entries(limit=1)[0]["outcome"] == "error"


def test_an_operator_of_a_database_writer_over_the_column_types_is_named(pg_url, workspace, monkeypatch):
    # The red team's F4 (round 3): an exact `=` over varchar in public wins over the catalog's text
    # operator wherever the search path puts it: every valid token was refused while `audit
    # verify` looked fine. It cannot be kept out (the tables live in that schema); it is named.
    monkeypatch.setenv("TRUSTFORGE_DB_URL", pg_url)
    assert run_main("users", "add", "vera", "--role", "viewer", home=workspace).code == 0
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE FUNCTION public.never(a varchar, b varchar) RETURNS boolean AS 'SELECT false' LANGUAGE sql"))
        conn.execute(sa.text("CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.never)"))
    engine.dispose()
    code, _, err = run_main("audit", "verify", home=workspace)
    assert code == 4 and "operator '=' on schema public" in err, err


def test_a_forged_user_or_token_id_with_a_line_break_cannot_fake_lines_of_users_list(vera, workspace):
    _sql(workspace, "INSERT INTO access_users (name, role, active, created) VALUES ('m' || char(10) || 'ok: all fine', 'admin', 1, 'x')")
    _sql(workspace, "UPDATE access_tokens SET id = 'ab' || char(10) || 'ok: fine' WHERE user = 'vera'")
    code, out, err = run_main("users", "list", home=workspace)
    assert code == 0 and "\nok: " not in out and "\\nok: " in out, out


def test_a_role_is_taken_in_any_case_on_the_command_line(workspace):
    assert run_main("users", "add", "rita", "--role", "ADMIN", home=workspace).stdout.strip() == "added rita (admin)"
    assert run_main("users", "grant", "rita", "Viewer", home=workspace).stdout.strip() == "rita is now viewer"
    code, _, err = run_main("users", "grant", "rita", "boss", home=workspace)
    assert code != 0 and "role 'boss' is unknown" in err, err
