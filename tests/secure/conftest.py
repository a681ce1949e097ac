"""Fixtures of the security tests."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

PG_ENV = "TRUSTFORGE_TEST_PG_URL"


@pytest.fixture
def pg_url():
    """A fresh database on the PostgreSQL test server (`eval "$(.ci/postgres.sh)"` starts one)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f'{PG_ENV} is not set: install PostgreSQL (Debian: apt-get install -y postgresql) and run `eval "$(.ci/postgres.sh)"`')
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"tf_audit_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
