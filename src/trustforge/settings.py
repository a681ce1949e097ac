"""Runtime settings that come from the environment, never from a spec.

| variable            | meaning                                             | default                       |
|---------------------|-----------------------------------------------------|-------------------------------|
| TRUSTFORGE_HOME     | the workspace folder                                | ./.trustforge                 |
| TRUSTFORGE_DB_URL   | SQLAlchemy URL of the registry database             | sqlite:///HOME/registry.db    |
| TRUSTFORGE_ARTIFACTS| folder of the registry's package store              | HOME/artifacts                |
| TRUSTFORGE_KEK      | base64 of the 256-bit key-encryption key            | read from HOME/keys/kek.key   |
| TRUSTFORGE_TOKEN    | the API token of the acting principal               | the local workspace admin     |
| TRUSTFORGE_AUDIT_SINK | append-only copy of the audit witness: `file:/PATH` or `syslog:/dev/log` | none        |
| TRUSTFORGE_SEAL_RUNS | `1`: every run folder keeps its package sealed (encrypted), as the registry does | 0   |

Secrets (the key-encryption key, tokens) are read here and never logged or echoed.

An unset `TRUSTFORGE_TOKEN` means the local workspace admin; a set but empty (or blank) one is
an error, never the admin: a CI job whose secret is missing gets `TRUSTFORGE_TOKEN=""`, and
that must fail closed rather than grant everything. The same holds for `TRUSTFORGE_KEK`,
`TRUSTFORGE_DB_URL` and `TRUSTFORGE_AUDIT_SINK` (and `TRUSTFORGE_NEW_KEK` when rotating): set
but blank is an error, not a quiet fallback to a key file on disk, a local database or no sink.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trustforge.errors import SecurityError

__all__ = ["Settings", "workspace_home"]


@dataclass(frozen=True)
class Settings:
    """Where TrustForge keeps its state and which secrets it was handed.

    Attributes:
        home: the workspace folder.
        db_url: SQLAlchemy URL of the registry database.
        artifacts: folder holding registered packages.
        kek: the key-encryption key from the environment (base64), if given there.
        token: the acting principal's API token, if given (None: the local workspace admin).
        seal_runs: keep every run folder's package sealed (`TRUSTFORGE_SEAL_RUNS=1`), as the
            spec's `data.protect.seal_run` does for one spec.
        audit_sink: where each audit witness update is also appended (`file:/ABSOLUTE/PATH`,
            ideally on another volume, or `syslog:/SOCKET`), if anywhere.

    Raises:
        SecurityError: `token` is an empty or blank string (fail closed: it is not "no token").
    """

    home: Path
    db_url: str = ""
    artifacts: Path | None = None
    kek: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    audit_sink: str | None = None
    threads_from_env: bool = False
    seal_runs: bool = False

    def __post_init__(self) -> None:
        if self.token is not None and (not isinstance(self.token, str) or not self.token.strip()):
            raise SecurityError(f"TRUSTFORGE_TOKEN is set but empty; set it to {_TOKEN_HINT}")

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> "Settings":
        """Settings from explicit arguments first, then the environment, then defaults."""
        chosen = workspace_home(home)
        return cls(
            home=chosen,
            db_url=env_secret("TRUSTFORGE_DB_URL", "a database URL, or unset it for the workspace's SQLite file")
            or f"sqlite:///{chosen / 'registry.db'}",
            artifacts=Path(os.environ["TRUSTFORGE_ARTIFACTS"]).expanduser().resolve()
            if os.environ.get("TRUSTFORGE_ARTIFACTS")
            else chosen / "artifacts",
            kek=env_secret("TRUSTFORGE_KEK", "a base64 key-encryption key, or unset it to use keys/kek.key"),
            token=env_secret("TRUSTFORGE_TOKEN", _TOKEN_HINT),
            audit_sink=env_secret(
                "TRUSTFORGE_AUDIT_SINK", "an audit sink (file:/ABSOLUTE/PATH or syslog:/SOCKET), or unset it to keep none"
            ),
            threads_from_env=bool(os.environ.get("OMP_NUM_THREADS")),
            seal_runs=_flag("TRUSTFORGE_SEAL_RUNS"),
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


def workspace_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder, resolved: `home` if given, else `TRUSTFORGE_HOME`, else `./.trustforge`.

    Reads no secret and validates nothing else, so an error message can be phrased with it
    even when the rest of the environment is refused."""
    return Path(home or os.environ.get("TRUSTFORGE_HOME") or ".trustforge").expanduser().resolve()


_TOKEN_HINT = "an API token (`trustforge users token`), or unset it to act as the local workspace admin"


def env_secret(name: str, what: str) -> str | None:
    """A variable that carries a secret or a security setting: None when unset; set but blank is
    an error (SecurityError), never "unset": a secret that failed to mount must not quietly mean
    a key file on disk, a local database, no audit sink or the local workspace admin (fail closed)."""
    value = os.environ.get(name)
    if value is not None and not value.strip():
        raise SecurityError(f"{name} is set but empty; set it to {what}")
    return value


def _flag(name: str) -> bool:
    """A yes/no variable: 1, true, yes or on (any case) is yes; unset or empty is no; anything else is an error."""
    value = (os.environ.get(name) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SecurityError(f"{name} must be 1 or 0 (true/false, yes/no, on/off); got {value[:20]!r}")
