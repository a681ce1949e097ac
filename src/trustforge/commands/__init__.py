"""Command groups of the `trustforge` CLI (`trustforge models ...`, `keys`, `users`, ...)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["local", "output_file", "output_folder"]


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


def output_folder(path: Path, option: str, *, default: bool = False) -> None:
    """Refuse an output folder option that names something already there: a command that writes
    a new folder (`package encrypt`, `package decrypt`) neither writes into a folder nor replaces
    one, so the path is a usage error (exit code 2), as an output file that is a folder is,
    before any work. `default`: the option was not given and `path` is its default."""
    from trustforge.errors import UsageError

    if path.exists() or path.is_symlink():
        named = f"{path} (the default of {option})" if default else f"{option} {path}"
        raise UsageError(
            f"{named}: already exists; give {option} a folder path that does not exist yet (nothing is written into or over one)"
        )
