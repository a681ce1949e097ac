"""Every role × registry action: allowed exactly when the policy says so; denials audited and harmless."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _helpers import secure, signed_copy, train_tiny

from trustforge.errors import AccessDenied
from trustforge.registry import Registry
from trustforge.settings import Settings

NAME = "iris-tiny"
REGISTRY_ACTIONS = ("read", "register", "tag", "alias", "delete", "gc")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def world(tiny, workspace, tmp_path):
    """(settings, signed package, admin registry) with version 1 registered by the admin."""
    settings = Settings.from_env()
    admin = Registry(settings)
    pkg = signed_copy(tiny, settings, tmp_path / "signed")
    admin.register(pkg)
    yield settings, pkg, admin
    admin.close()


def state(admin: Registry) -> dict:
    """Everything an action could change, as the admin sees it."""
    versions = admin.list_versions(NAME)
    tree = sorted(str(p.relative_to(admin.artifacts)) for p in admin.artifacts.rglob("*") if ".staging" not in p.parts)
    return {"versions": [(mv.version, mv.aliases, tuple(mv.tags.items())) for mv in versions], "tree": tree}


def perform(reg: Registry, action: str, pkg: Path, admin: Registry) -> None:
    """Do `action` as `reg`'s principal, and check its effect when it is allowed."""
    if action == "read":
        assert reg.get(f"models:/{NAME}/1").version == 1
        assert reg.list_models()[0]["name"] == NAME
        assert [mv.version for mv in reg.list_versions(NAME)] == [1]
    elif action == "register":
        assert reg.register(pkg).version == 2
        assert admin.get(f"models:/{NAME}/2").created_by == reg.principal.name
    elif action == "tag":
        reg.set_tag(NAME, 1, "stage", "prod")
        assert admin.get(f"models:/{NAME}/1").tags == {"stage": "prod"}
    elif action == "alias":
        reg.set_alias(NAME, "champion", 1)
        assert admin.get(f"models:/{NAME}@champion").version == 1
        reg.delete_alias(NAME, "champion")
        assert admin.list_models()[0]["aliases"] == {}
    elif action == "delete":
        reg.delete(NAME, 1)
        assert admin.list_versions(NAME) == []
    elif action == "gc":
        assert reg.gc(grace_s=0)["orphans"] == []
    else:  # pragma: no cover - a new action without a case here must fail loudly
        raise AssertionError(action)


@pytest.mark.parametrize("action", REGISTRY_ACTIONS)
@pytest.mark.parametrize("role", ["viewer", "trainer", "deployer", "admin"])
def test_each_role_can_do_exactly_what_its_row_allows(world, role, action):
    settings, pkg, admin = world
    principal = secure.Principal(name=f"{role}-user", role=role, kind="user")
    before = state(admin)
    audited_before = len(admin.audit.entries(limit=10_000))
    with Registry(settings, principal=principal) as reg:
        if secure.allowed(role, action):
            perform(reg, action, pkg, admin)
            denials = [e for e in admin.audit.entries(limit=10_000) if e["outcome"] == "denied"]
            assert denials == []
        else:
            with pytest.raises(AccessDenied) as info:
                perform(reg, action, pkg, admin)
            assert principal.name in str(info.value) and action in str(info.value)
            assert state(admin) == before, "a denied action changed the registry"
            entries = admin.audit.entries(limit=10_000)  # newest first
            new = entries[: len(entries) - audited_before]
            assert [(e["actor"], e["action"], e["outcome"]) for e in new] == [(principal.name, action, "denied")]
            assert list((admin.artifacts / ".staging").iterdir()) == []
    assert admin.audit.verify().ok


def test_the_policy_matches_the_design():
    """Design §6: viewers read; trainers register; deployers move aliases; only admins delete and gc."""
    granted = {role: {a for a in REGISTRY_ACTIONS if secure.allowed(role, a)} for role in secure.ROLES}
    assert granted["viewer"] == {"read"}
    assert {"read", "register"} <= granted["trainer"] and not granted["trainer"] & {"alias", "delete", "gc"}
    assert {"read", "alias"} <= granted["deployer"] and not granted["deployer"] & {"register", "delete", "gc"}
    assert granted["admin"] == set(REGISTRY_ACTIONS)


def test_the_principal_comes_from_the_token(world):
    settings, pkg, admin = world
    admin.access.add_user("tina", "trainer")
    token = admin.access.issue_token("tina", ttl_days=1)
    with Registry(dataclasses.replace(settings, token=token)) as reg:
        assert (reg.principal.name, reg.principal.role, reg.principal.kind) == ("tina", "trainer", "token")
        assert reg.register(pkg).created_by == "tina"
        with pytest.raises(AccessDenied, match="tina"):
            reg.delete(NAME, 1)
    assert [mv.version for mv in admin.list_versions(NAME)] == [1, 2]
    admin.access.revoke("tina")
    with pytest.raises(AccessDenied) as info:
        Registry(dataclasses.replace(settings, token=token))
    assert token not in str(info.value)
    with pytest.raises(AccessDenied) as info:
        Registry(dataclasses.replace(settings, token="tfk_0123456789abcdef_" + "A" * 43))
    assert "A" * 43 not in str(info.value)


def test_the_local_workspace_admin_acts_without_a_token(world):
    _, _, admin = world
    assert admin.principal.kind == "local-admin" and admin.principal.role == "admin"
