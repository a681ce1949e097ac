"""Shared fixtures: every test gets its own empty workspace and a quiet, 1-thread torch."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """An empty TRUSTFORGE_HOME per test; tests never touch the user's `.trustforge`."""
    home = tmp_path / "ws"
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


def pytest_configure(config):
    # Two CI cores: pytest runs one test at a time, and intra-op threads beyond the cores only spin.
    torch.set_num_threads(max(1, min(2, len(os.sched_getaffinity(0)))))
