"""Command groups of the `trustforge` CLI (`trustforge models ...`, `keys`, `users`, ...)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["local", "output_file"]


def local(text: str) -> str:
    """`text` with the paths TrustForge made absolute named as the user knows them: a spec's data
    path as the spec wrote it, a file in the workspace from the workspace as the user set it
    (`TRUSTFORGE_HOME`, or `.trustforge`; `trustforge._shown`)."""
    from trustforge._shown import shown
    from trustforge.settings import workspace_home

    try:
        home = workspace_home()
    except (OSError, RuntimeError):  # no home folder to expand `~` against: leave workspace paths as they are
        home = None
    return shown(text, home=home, home_as=os.environ.get("TRUSTFORGE_HOME") or ".trustforge")


def output_file(path: Path | None, option: str) -> None:
    """Refuse an output file option or argument naming a folder: a usage error (exit code 2),
    before any work (every command that writes one file: `predict`, `report`, `mask`, ...)."""
    from trustforge.errors import UsageError

    if path is not None and path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file path")
