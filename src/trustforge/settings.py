"""Runtime settings that come from the environment, never from a spec.

| variable            | meaning                                             | default                       |
|---------------------|-----------------------------------------------------|-------------------------------|
| TRUSTFORGE_HOME     | the workspace folder                                | ./.trustforge                 |
| TRUSTFORGE_DB_URL   | SQLAlchemy URL of the registry database             | sqlite:///HOME/registry.db    |
| TRUSTFORGE_ARTIFACTS| folder of the registry's package store              | HOME/artifacts                |
| TRUSTFORGE_KEK      | base64 of the 256-bit key-encryption key            | read from HOME/keys/kek.key   |
| TRUSTFORGE_TOKEN    | the API token of the acting principal               | the local workspace admin     |
| TRUSTFORGE_AUDIT_SINK | append-only copy of the audit witness: `file:/PATH` or `syslog:/dev/log` | none        |

Secrets (the key-encryption key, tokens) are read here and never logged or echoed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Where TrustForge keeps its state and which secrets it was handed.

    Attributes:
        home: the workspace folder.
        db_url: SQLAlchemy URL of the registry database.
        artifacts: folder holding registered packages.
        kek: the key-encryption key from the environment (base64), if given there.
        token: the acting principal's API token, if given.
        audit_sink: where each audit witness update is also appended (`file:/ABSOLUTE/PATH`,
            ideally on another volume, or `syslog:/SOCKET`), if anywhere.
    """

    home: Path
    db_url: str = ""
    artifacts: Path | None = None
    kek: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    audit_sink: str | None = None

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> "Settings":
        """Settings from explicit arguments first, then the environment, then defaults."""
        chosen = Path(home or os.environ.get("TRUSTFORGE_HOME") or ".trustforge").expanduser().resolve()
        return cls(
            home=chosen,
            db_url=os.environ.get("TRUSTFORGE_DB_URL") or f"sqlite:///{chosen / 'registry.db'}",
            artifacts=Path(os.environ["TRUSTFORGE_ARTIFACTS"]).expanduser().resolve()
            if os.environ.get("TRUSTFORGE_ARTIFACTS")
            else chosen / "artifacts",
            kek=os.environ.get("TRUSTFORGE_KEK") or None,
            token=os.environ.get("TRUSTFORGE_TOKEN") or None,
            audit_sink=os.environ.get("TRUSTFORGE_AUDIT_SINK") or None,
        )

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"
