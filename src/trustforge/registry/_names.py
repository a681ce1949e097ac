"""Names that become folder names and URI parts: model names, aliases, tag keys, model URIs.

A model name is a path component under the artifact store (`artifacts/NAME/VERSION/`), so
a name that is anything but a plain, short, ASCII word is refused before it reaches the
file system or the database. The check is an allow-list (letters, digits, `.`, `_`, `-`; not
starting with `.` or `-`; at most 64 characters); the explicit refusals below exist so that the
error says *why* (traversal, encoding, look-alike) instead of only "does not match".
"""

from __future__ import annotations

import re
import unicodedata

from trustforge.errors import ModelUriError, RegistryError

__all__ = ["check_name", "check_alias", "check_tag_key", "check_tag_value", "check_version", "parse_model_uri", "format_uri", "MAX_NAME"]

MAX_NAME = 64
MAX_TAG_VALUE = 1024
URI_SCHEME = "models:/"
URI_FORMS = "models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME (the latest version)"
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# Aliases name versions, never versions themselves: `models:/m@3` would read like a version.
_RESERVED_ALIASES = frozenset({"latest"})


def _show(value: object) -> str:
    """`repr` of a user's input, cut short so that a huge input does not make a huge error."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{kind} must be a string; got {_show(value)}")
    shown = _show(value)
    if value == "":
        raise RegistryError(f"{kind} must not be empty; got {shown}")
    # Explicit refusals first, so that the message says what is wrong with the input.
    if "\x00" in value:
        raise RegistryError(f"{kind} {shown}: contains a NUL byte")
    if "%" in value:
        # `%2e%2e`, `%252e` and friends: whatever decodes this later must not find a path in it.
        raise RegistryError(f"{kind} {shown}: percent-encoding is not allowed in names")
    if "/" in value or "\\" in value:
        raise RegistryError(f"{kind} {shown}: path separators ('/', '\\') are not allowed in names")
    if ".." in value:
        raise RegistryError(f"{kind} {shown}: '..' (path traversal) is not allowed in names")
    folded = unicodedata.normalize("NFKC", value)
    if not folded.isascii() or not value.isascii():
        # Full-width dots and slashes, Cyrillic look-alikes: NFKC folds some into ASCII
        # (`．．／` → `../`), others stay foreign; either way a name is plain ASCII.
        hint = " (it normalises to a path)" if ("/" in folded or ".." in folded or "\\" in folded) else ""
        raise RegistryError(f"{kind} {shown}: only ASCII letters, digits, '.', '_' and '-' are allowed{hint}")
    if len(value) > MAX_NAME:
        raise RegistryError(f"{kind} {shown}: longer than {MAX_NAME} characters")
    if value[0] in ".-":
        raise RegistryError(f"{kind} {shown}: must not start with '.' or '-'")
    if not _PLAIN.fullmatch(value):
        raise RegistryError(f"{kind} {shown}: only letters, digits, '.', '_' and '-' are allowed")
    return value


def check_name(name: object) -> str:
    """Return `name` if it is a valid model name.

    Raises:
        RegistryError: naming the input and what is wrong with it.
    """
    return _check("model name", name)


def check_alias(alias: object) -> str:
    """Return `alias` if it is a valid alias (a model name that is not all digits nor reserved).

    Raises:
        RegistryError: naming the input and what is wrong with it.
    """
    _check("alias", alias)
    if alias.isdigit() or alias in _RESERVED_ALIASES:  # type: ignore[union-attr]
        raise RegistryError(f"alias {_show(alias)}: reserved (digits are versions; 'latest' means the newest version)")
    return alias  # type: ignore[return-value]


def check_tag_key(key: object) -> str:
    """Return `key` if it is a valid tag key (same rules as a model name).

    Raises:
        RegistryError: naming the input and what is wrong with it.
    """
    return _check("tag key", key)


def check_tag_value(value: object) -> str:
    """Return `value` if it is a printable string of at most 1024 characters.

    Raises:
        RegistryError: naming the input and what is wrong with it.
    """
    if not isinstance(value, str):
        raise RegistryError(f"tag value must be a string; got {_show(value)}")
    if len(value) > MAX_TAG_VALUE:
        raise RegistryError(f"tag value {_show(value)}: longer than {MAX_TAG_VALUE} characters")
    if not value.isprintable():
        raise RegistryError(f"tag value {_show(value)}: contains control characters")
    return value


def check_version(version: object) -> int:
    """Return `version` as an int if it is a positive integer (bools and strings of digits refused)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RegistryError(f"version must be a positive integer; got {_show(version)}")
    return version


def parse_model_uri(uri: str) -> tuple[str, int | None, str | None]:
    """Split a model URI into (name, version, alias).

    Accepted forms: `models:/NAME/3` (a version), `models:/NAME@champion` (an alias),
    `models:/NAME` (the latest version: both version and alias are None). A bare NAME is
    accepted as `models:/NAME`.

    Raises:
        ModelUriError: the URI is malformed or any part of it is not a valid name/version (a
            usage error: the one place every command's model address is parsed), naming the URI
            and the forms expected.
    """
    if not isinstance(uri, str):
        raise ModelUriError(f"model URI must be a string; got {_show(uri)}")
    try:
        return _split_uri(uri)
    except RegistryError as exc:
        raise ModelUriError(f"model URI {_show(uri)}: {exc}; expected {URI_FORMS}") from None


def _split_uri(uri: str) -> tuple[str, int | None, str | None]:
    rest = uri[len(URI_SCHEME) :] if uri.startswith(URI_SCHEME) else uri
    if rest == "":
        raise RegistryError("no model name")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return check_name(name), None, check_alias(alias)
    if "/" in rest:
        name, version = rest.split("/", 1)
        check_name(name)
        if not (version.isascii() and version.isdigit()) or version.startswith("0"):
            raise RegistryError(f"version must be a positive integer; got {_show(version)}")
        return name, int(version), None
    return check_name(rest), None, None


def format_uri(name: str, version: int | None = None, alias: str | None = None) -> str:
    """The model URI of a name, a version or an alias."""
    if alias is not None:
        return f"{URI_SCHEME}{name}@{alias}"
    if version is not None:
        return f"{URI_SCHEME}{name}/{version}"
    return f"{URI_SCHEME}{name}"
