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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With TRUSTFORGE_STRICT_SKIPS=1 (set by .ci/run) a skipped test fails, so CI runs everything."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("TRUSTFORGE_STRICT_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {report.longrepr}"
