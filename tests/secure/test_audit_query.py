"""Reading the audit log for pages: exact-match filters in SQL, counts, the values to filter by,
and the token listing of the access store (never a hash)."""

from __future__ import annotations

import sqlalchemy as sa

from trustforge.secure._access import AccessStore, Principal
from trustforge.secure._audit import AuditLog
from trustforge.secure._keys import Keyring


def _log(tmp_path) -> AuditLog:
    log = AuditLog(sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}"), None, None, head_path=None)
    records = []
    for i in range(30):
        records.append(
            {
                "actor": ("alice", "bob", "carol")[i % 3],
                "action": ("alias", "tag")[i % 2],
                "object": f"models:/m/{i}",
                "outcome": "denied" if i % 5 == 0 else "ok",
                "details": {"i": i},
            }
        )
    log.append_many(records)
    return log


def test_filters_match_exactly_in_the_database_newest_first_and_page(tmp_path):
    log = _log(tmp_path)
    everything = log.entries(limit=100)
    assert len(everything) == 30 == log.count()
    bob = log.entries(limit=100, actor="bob")
    assert [r["details"]["i"] for r in bob] == [i for i in range(29, -1, -1) if i % 3 == 1]
    assert log.count(actor="bob") == 10
    both = log.entries(limit=100, actor="alice", outcome="denied")
    assert [r["details"]["i"] for r in both] == [15, 0] and log.count(actor="alice", outcome="denied") == 2
    # alice (i % 3 == 0), denied (i % 5 == 0): 0 is an alias entry, 15 a tag entry.
    assert [r["details"]["i"] for r in log.entries(actor="alice", action="tag", outcome="denied")] == [15]
    assert log.count(actor="alice", action="alias", outcome="denied") == 1
    page2 = log.entries(limit=4, offset=4, action="alias")
    assert [r["details"]["i"] for r in page2] == [20, 18, 16, 14]
    # Exact match: a prefix or a SQL wildcard finds nothing.
    assert log.count(actor="ali") == 0 and log.count(actor="%") == 0 and log.entries(actor="a_ice") == []


def test_values_lists_what_the_log_holds_and_refuses_other_fields(tmp_path):
    import pytest

    log = _log(tmp_path)
    assert log.values("actor") == ["alice", "bob", "carol"]
    assert log.values("outcome") == ["denied", "ok"]
    assert log.values("action", limit=1) == ["alias"]
    with pytest.raises(ValueError, match="field must be one of"):
        log.values("details")


def test_list_tokens_shows_state_but_never_a_hash_or_secret(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    audit = AuditLog(engine, None, None, head_path=None)
    store = AccessStore(engine, audit, keyring=Keyring.init(tmp_path / "keys"))
    admin = Principal("root", "admin", "local-admin")
    store.add_user("ann", "viewer", by=admin)
    store.add_user("ben", "trainer", by=admin)
    first = store.issue_token("ann", ttl_days=1)
    second = store.issue_token("ben", ttl_days=None)
    store.revoke_token(first.split("_")[1], by=admin)
    rows = store.list_tokens()
    assert {r["id"] for r in rows} == {first.split("_")[1], second.split("_")[1]}
    by_id = {r["id"]: r for r in rows}
    assert by_id[first.split("_")[1]]["revoked"] and not by_id[first.split("_")[1]]["live"]
    assert by_id[second.split("_")[1]]["live"] and by_id[second.split("_")[1]]["expires"] is None
    assert all(set(r) == {"id", "user", "created", "expires", "revoked", "live"} for r in rows)
    text = repr(rows)
    assert first.split("_", 2)[2] not in text and second.split("_", 2)[2] not in text
    assert [r["user"] for r in store.list_tokens("ben")] == ["ben"]
    assert [r["id"] for r in store.list_tokens(live_only=True)] == [second.split("_")[1]]
    assert store.count_tokens() == 2 and store.count_tokens(live_only=True) == 1 and store.count_tokens("ann") == 1
    assert [r["id"] for r in store.list_tokens(limit=1)] + [r["id"] for r in store.list_tokens(limit=1, offset=1)] == [
        r["id"] for r in rows
    ]
