"""Runtime settings that come from the environment, never from a spec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Where TrustForge keeps its state.

    Attributes:
        home: the workspace folder (`TRUSTFORGE_HOME`, default `./.trustforge`).
    """

    home: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> "Settings":
        """Settings from explicit arguments first, then the environment, then defaults."""
        chosen = home or os.environ.get("TRUSTFORGE_HOME") or ".trustforge"
        return cls(home=Path(chosen).expanduser().resolve())

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"
