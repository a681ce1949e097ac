"""The README's example figures (bench/figures.json), for the tests that guard them near their claims.

Importable from every test folder: tests/conftest.py's folder is on `sys.path`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

import scenarios  # noqa: E402  (bench/scenarios.py: the one copy of the figures and their comparison)
from scenarios import FIGURES, REDUCED, shortfalls  # noqa: E402

__all__ = ["FIGURES", "REDUCED", "assert_near_readme", "scenarios"]


def assert_near_readme(example: str, metrics: Mapping[str, float], only: Iterable[str] | None = None, *, reduced: bool = False) -> None:
    """Each README figure of `example` (or the metrics in `only`) is within its tolerance of the
    measured `metrics`, either way: a fall fails, and so does a README that understates.
    `reduced`: the figures of the cheaper settings CI trains instead (bench/figures.json "_reduced")."""
    keep = set(only) if only is not None else None
    figures = REDUCED[example]["figures"] if reduced else FIGURES[example]
    recorded = {m: r for m, r in figures.items() if keep is None or m in keep}
    assert recorded, f"no README figure of {example} named {sorted(keep or ())}"
    missed = shortfalls(example, metrics, {example: recorded}, two_sided=True)
    assert not missed, "; ".join(missed) + " (the figure is in bench/figures.json and the README's Examples section)"
