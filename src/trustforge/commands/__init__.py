"""Command groups of the `trustforge` CLI (`trustforge models ...`, `keys`, `users`, ...)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["output_file"]


def output_file(path: Path | None, option: str) -> None:
    """Refuse an output file option or argument naming a folder: a usage error (exit code 2),
    before any work (every command that writes one file: `predict`, `report`, `mask`, ...)."""
    from trustforge.errors import UsageError

    if path is not None and path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file path")
