"""Shared fixtures: every test gets its own empty workspace and a quiet, 1-thread torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """An empty TRUSTFORGE_HOME per test; tests never touch the user's `.trustforge`."""
    home = tmp_path / "ws"
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def spoken_digits_cache(tmp_path_factory):
    """builtin:spoken_digits generated once per session (needs espeak-ng; skips without it)."""
    import shutil

    from trustforge.data._spoken_digits import generate

    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng: install the Debian package espeak-ng (apt-get install espeak-ng)")
    cache = tmp_path_factory.mktemp("cache")
    generate(cache)
    return cache


@pytest.fixture
def spoken_digits(workspace, spoken_digits_cache):
    """The session's spoken digits, linked into this test's workspace cache (so no test regenerates them)."""
    (workspace / "cache").mkdir(parents=True, exist_ok=True)
    (workspace / "cache" / "spoken_digits").symlink_to(spoken_digits_cache / "spoken_digits")
    return workspace / "cache" / "spoken_digits"


def pytest_configure(config):
    # Intra-op threads beyond the cores only spin: with pytest-xdist (`make test`: two workers)
    # each worker gets its share of the cores; run alone, pytest takes up to two.
    # The same for numpy's and SciPy's BLAS pools (a run sets its own, train/_threads.py; this
    # covers what tests compute themselves).
    import scipy.linalg  # noqa: F401  (SciPy's BLAS loads with it; threadpoolctl caps loaded libraries only)
    from threadpoolctl import threadpool_limits

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, min(2, len(os.sched_getaffinity(0)) // workers))
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")


# The test files that read the session's `as_written` runs (the fixture below). pytest-xdist
# (`make test`) keeps each file's tests on one worker, so module fixtures are
# built once, and keeps these files together on one, so each example is trained once.
AS_WRITTEN_FILES = frozenset(
    {"tests/evaluate/test_baselines.py", "tests/test_examples.py", "tests/test_readme_figures.py", "tests/test_speech_scenario.py"}
)


def pytest_collection_modifyitems(config, items):
    """A test that reads `as_written` from a file not in AS_WRITTEN_FILES would train its example
    again on another worker: refuse to run until the file is listed."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if "as_written" in getattr(item, "fixturenames", ()) and path not in AS_WRITTEN_FILES:
            raise pytest.UsageError(f"{path} reads the as_written fixture: add it to AS_WRITTEN_FILES in tests/conftest.py")


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is a dev dependency; without it pytest runs one test at a time
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class _FileScheduling(LoadScopeScheduling):
        """Whole files to a worker, the AS_WRITTEN_FILES as one unit; the units with the most
        tests go first (xdist's reordering), so the long ones do not start last."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "as_written" if path in AS_WRITTEN_FILES else path

    def pytest_xdist_make_scheduler(config, log):
        return _FileScheduling(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With TRUSTFORGE_STRICT_SKIPS=1 (set by .ci/run) a skipped test fails, so CI runs everything."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("TRUSTFORGE_STRICT_SKIPS") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {report.longrepr}"


@pytest.fixture(autouse=True)
def no_log_writer_left():
    """After each test, the server's log writer (`serve._logging`) is stopped if a test started it:
    its thread would write later tests' records to whatever `sys.stderr` is then (the CI log,
    outside pytest's capture). Stopping writes what is queued while this test's capture is on."""
    yield
    import sys

    module = sys.modules.get("trustforge.serve._logging")
    if module is not None and module._listener is not None:
        module.stop_logging()


@pytest.fixture(scope="session")
def as_written(tmp_path_factory, request):
    """`as_written("shapes_cnn.yaml")`: that example trained as written, once per session, in a
    workspace of its own, with `trustforge.run(spec, register=False)` (how the README's figures
    were measured) and the costly evidence off (speed, explanations, corruptions and the attacks
    of the robustness evidence: they come after the test metrics, the baseline and its intervals,
    and do not change them; no test of this run reads them, and tests/evaluate/test_robustness.py
    attacks its own models). Tests that need the same full-size run, such as a README figure's
    guard and the baseline and intervals the run writes, share this one instead of training the
    example again."""
    import yaml

    import trustforge

    examples = Path(__file__).resolve().parents[1] / "examples"
    runs = {}

    def train(name: str):
        if name not in runs:
            raw = yaml.safe_load((examples / name).read_text(encoding="utf-8"))
            raw["evaluate"] = {**raw.get("evaluate", {}), "speed": False, "explain": False, "corruptions": False, "robustness": False}
            root = tmp_path_factory.mktemp("as-written")
            if raw["data"]["source"] == "builtin:spoken_digits":  # the session's clips, not a second generation
                (root / "ws" / "cache").mkdir(parents=True)
                (root / "ws" / "cache" / "spoken_digits").symlink_to(request.getfixturevalue("spoken_digits_cache") / "spoken_digits")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("TRUSTFORGE_HOME", str(root / "ws"))
                mp.chdir(root)
                runs[name] = trustforge.run(raw, progress=False, register=False)
        return runs[name]

    return train


# tests/redteam's bound (issue 11): `make redteam` runs it alone under `timeout 180`; in `make test`
# its tests run among the others, and their durations together must stay within the same 3 minutes.
REDTEAM_BUDGET_S = 180.0
_redteam_seconds: list[float] = []


def pytest_runtest_logreport(report):
    if report.nodeid.startswith("tests/redteam/"):
        _redteam_seconds.append(report.duration)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller sums every worker's reports
        return
    spent = sum(_redteam_seconds)
    if spent > REDTEAM_BUDGET_S:
        session.config.get_terminal_writer().line(
            f"tests/redteam took {spent:.0f} s in all, over its {REDTEAM_BUDGET_S:.0f} s budget (make redteam's bound)", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
