"""Fixtures of the serving tests: small trained packages, a registry, live loopback servers.

The helpers they use (and the tests import) live in `_serving.py`: a module named `conftest`
is ambiguous once several test folders have one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest
from _serving import SPECS, LiveServer, mixed_frame

from trustforge.settings import Settings
from trustforge.testing import write_media_table


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, Path]:
    """The models trained once, each in a workspace of its own; returns private package copies."""
    from trustforge.pipeline import run

    root = tmp_path_factory.mktemp("serve-packages")
    csv = root / "mixed.csv"
    mixed_frame().to_csv(csv, index=False)
    out = {}
    for key, spec in SPECS.items():
        if key == "mixed":
            spec = {**spec, "data": {**spec["data"], "source": f"csv:{csv}"}}
        elif key == "media":
            spec = {**spec, "data": {**spec["data"], "source": f"csv:{write_media_table(root / 'media')}"}}
        result = run(spec, settings=Settings.from_env(root / f"ws-{key}"), progress=False, register=False)
        out[key] = Path(shutil.copytree(result.package, root / f"{key}-package"))
    return out


@pytest.fixture
def registry(workspace):
    """The test workspace's registry, acting as the local admin."""
    from trustforge.registry import Registry

    reg = Registry(Settings.from_env())
    yield reg
    reg.close()


@pytest.fixture
def live() -> Iterator[type[LiveServer]]:
    yield LiveServer
