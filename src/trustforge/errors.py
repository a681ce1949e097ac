"""Every failure a user can cause is a `TrustForgeError` with a one-line message.

The CLI prints `error: <message>` and exits non-zero; it never shows a traceback for these.
Messages name the field, file or column at fault and never contain secrets.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "TrustForgeError",
    "TuneError",
    "SpecError",
    "DataError",
    "IntegrityError",
    "ModelError",
    "TrainingError",
    "RunError",
    "SecurityError",
    "AccessDenied",
    "RegistryError",
    "ModelUriError",
    "MissingExtraError",
    "UsageError",
    "checked_argument",
    "described",
]

_T = TypeVar("_T")


class TrustForgeError(Exception):
    """Base class of all errors TrustForge reports to users."""

    exit_code = 1


class SpecError(TrustForgeError):
    """The spec (YAML or dict) is invalid; the message names the field path."""

    exit_code = 2


class UsageError(TrustForgeError):
    """A command-line argument or option has a value the command cannot take (an output path that
    is a folder): a usage error, exit code 2 like Click's own; the message names the option."""

    exit_code = 2


class DataError(TrustForgeError):
    """A data source, file, column or value cannot be used; the message names it."""

    exit_code = 3


class IntegrityError(TrustForgeError):
    """A model package failed verification; the message names the file at fault."""

    exit_code = 4


class ModelError(TrustForgeError):
    """The model described by the spec cannot be built for this data."""

    exit_code = 2


class TrainingError(TrustForgeError):
    """Training could not proceed (diverged, no device, ...)."""

    exit_code = 5


class RunError(TrustForgeError):
    """A run folder is missing, incomplete or does not match the spec (e.g. on resume)."""

    exit_code = 6


class SecurityError(TrustForgeError):
    """Keys are missing or unusable, or a secret-bearing operation cannot proceed."""

    exit_code = 7


class AccessDenied(TrustForgeError):
    """The acting principal may not perform this action (the attempt is audited).

    Attributes:
        user, token_id: for a genuine API token refused (revoked, expired, its user revoked),
            its user and its id (never its secret), so a summary of refusals can name who keeps
            using it; None otherwise (a malformed, unknown or forged token names no one).
    """

    exit_code = 8

    def __init__(self, *args: object, user: str | None = None, token_id: str | None = None):
        super().__init__(*args)
        self.user = user
        self.token_id = token_id


class RegistryError(TrustForgeError):
    """A registry operation failed: unknown model, version or alias, or an invalid name."""

    exit_code = 9


class ModelUriError(RegistryError, UsageError):
    """A model URI that is not one (`models:/NAME/0`, `models:/NAME@`, `models:/`): the address
    the user typed is malformed, a usage error (exit code 2, as Click's own), before any registry
    is asked; a RegistryError still, to code that catches those. A well-formed URI of a model,
    version or alias that does not exist is a plain RegistryError (exit code 9)."""

    exit_code = 2


class TuneError(TrustForgeError):
    """A hyperparameter study cannot run: its storage, a resumed study that differs, or no trial that finished."""

    exit_code = 12  # 10 is monitor's drift alarm, 11 a missing extra


class MissingExtraError(TrustForgeError):
    """A part of TrustForge needs an optional extra that is not installed; the message names the
    extra and the `pip install 'trustforge[EXTRA]'` that adds it (see `trustforge._extras`)."""

    exit_code = 11  # 10 is monitor's drift alarm


def described(value: object) -> str:
    """A wrong argument as a message shows it: its type, and its value where short (`int 5`)."""
    text = repr(value)
    return type(value).__name__ + (f" {text}" if len(text) <= 40 else "")


def checked_argument(value: _T, types: type | tuple[type, ...], where: str, expected: str, error: type[TrustForgeError] = UsageError) -> _T:
    """`value` if it is an instance of `types`, else `error` naming the argument, what it takes
    and what it got: "Registry.register(package): must be a package folder (a str or
    os.PathLike); got int 5". A bool is refused where `types` names int or float but not bool.

    The check for a public entry point's arguments, made before any work, so that a wrong type
    is one TrustForge error rather than a TypeError from deep inside.
    """
    wanted = types if isinstance(types, tuple) else (types,)
    if isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted):
        return value
    raise error(f"{where}: must be {expected}; got {described(value)}")
