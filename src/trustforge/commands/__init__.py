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


def output_file(path: Path | None, option: str, *, replace: bool = True, default: bool = False, source: Path | None = None) -> None:
    """Refuse an output file option or argument that cannot be written: a usage error (exit
    code 2) naming the option and the path as given, before any work (every command that writes
    one file: `predict`, `report`, `mask`, ...). Refused: a folder, a path in a folder that is
    not there (nothing is made but the file), and with `replace=False` (`keys export`, `backup
    create`: a key or an archive is never written over) a file already there. `default`: the
    option was not given and `path` is its default (beside the input, whose own check names a
    missing folder). `source`: the input file, which the output must not be (`mask`, `unmask`
    read it while they write)."""
    from trustforge.errors import UsageError

    if path is None:
        return
    named = f"{path} (the default of {option})" if default else f"{option} {path}"
    if path.is_dir():
        raise UsageError(f"{named}: is a folder; give a file path")
    if source is not None and path.exists() and source.exists() and path.resolve() == source.resolve():
        raise UsageError(f"{named}: the output must not be the input file; give another path")
    if not replace and (path.exists() or path.is_symlink()):
        raise UsageError(f"{named}: already exists; give {option} a file path that does not exist yet (nothing is written over one)")
    if not default:
        _in_a_folder(path, named)


def output_folder(path: Path, option: str, *, default: bool = False) -> None:
    """Refuse an output folder option that names something already there: a command that writes
    a new folder (`package encrypt`, `package decrypt`) neither writes into a folder nor replaces
    one, so the path is a usage error (exit code 2), as an output file that is a folder is,
    before any work; so is a given path in a folder that is not there. `default`: the option was
    not given and `path` is its default (beside the input, whose own check names a missing one)."""
    from trustforge.errors import UsageError

    named = f"{path} (the default of {option})" if default else f"{option} {path}"
    if path.exists() or path.is_symlink():
        raise UsageError(
            f"{named}: already exists; give {option} a folder path that does not exist yet (nothing is written into or over one)"
        )
    if not default:
        _in_a_folder(path, named)


def _in_a_folder(path: Path, named: str) -> None:
    """Refuse (a usage error) an output path whose parent folder is not there or is no folder."""
    from trustforge.errors import UsageError

    parent = path.parent
    if not parent.is_dir():
        problem = f"{parent} is not a folder" if parent.exists() else f"folder {parent} not found"
        raise UsageError(f"{named}: {problem}")
