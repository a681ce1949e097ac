"""Shared pieces of the registry tests: a tiny trained package, signed copies, PostgreSQL databases."""

from __future__ import annotations

import importlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

import pytest

from trustforge.settings import Settings

# The public names of `trustforge.secure` the registry uses, and the module of S1/S2 that defines each.
_SECURE_NAMES = {
    "Keyring": "_keys",
    "verify_package": "_signing",
    "sign_package": "_signing",
    "seal_package": "_envelope",
    "open_sealed": "_envelope",
    "Principal": "_access",
    "allowed": "_access",
    "require": "_access",
    "ROLES": "_access",
    "ACTIONS": "_access",
    "AccessStore": "_access",
    "AuditLog": "_audit",
}


def _secure():
    """`trustforge.secure` with its public API.

    TEMPORARY shim: while `secure/__init__.py` (the lead's) does not re-export these names yet,
    they are taken from the defining modules; once it does, this changes nothing.
    """
    module = importlib.import_module("trustforge.secure")
    for name, sub in _SECURE_NAMES.items():
        if not hasattr(module, name):
            setattr(module, name, getattr(importlib.import_module(f"trustforge.secure.{sub}"), name))
    return module


secure = _secure()

TINY = {"name": "iris-tiny", "data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [8]}, "train": {"max_epochs": 2}}
PG_ENV = "TRUSTFORGE_TEST_PG_URL"
PG_MISSING = (
    f"{PG_ENV} is not set: install PostgreSQL (Debian: apt-get install -y postgresql) and run "
    '`eval "$(.ci/postgres.sh)"` to start a throwaway server'
)


def train_tiny(root: Path) -> Path:
    """Train the tiny iris model once in its own workspace; returns a private copy of its package."""
    from trustforge.pipeline import run

    result = run(TINY, settings=Settings.from_env(root / "train-ws"), progress=False)
    return Path(shutil.copytree(result.package, root / "tiny-package"))


def signed_copy(package: Path, settings: Settings, dest: Path) -> Path:
    """A copy of `package` signed with the workspace's key (created if missing)."""
    keyring = secure.Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)
    out = Path(shutil.copytree(package, dest))
    secure.sign_package(out, keyring)
    return out


def pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def new_pg_database() -> tuple[str, Callable[[], None]]:
    """A fresh, empty PostgreSQL database on the test server: (url, drop)."""
    import sqlalchemy as sa

    base = pg_admin_url()
    if base is None:
        pytest.skip(PG_MISSING)
    url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1) if base.startswith("postgresql://") else base)
    name = f"tf_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, workspace, monkeypatch) -> str:
    """Run the test on SQLite (the workspace default) and on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        url, drop = new_pg_database()
        monkeypatch.setenv("TRUSTFORGE_DB_URL", url)
        request.addfinalizer(drop)
    return request.param
