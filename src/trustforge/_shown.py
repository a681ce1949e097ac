"""How a message names a local file: as the user knows it, not as this machine resolved it.

TrustForge makes some paths absolute before it uses them: a spec's relative data path is
resolved against the spec's folder (`csv:../tables/train.csv` is read as
`csv:/home/ann/proj/tables/train.csv`), and the workspace (`TRUSTFORGE_HOME`, default
`./.trustforge`) is resolved with every folder in it. An error raised deep in a reader names
the absolute path, which the user never typed; pasted into a ticket it also tells where
their files live. `shown` turns such a message into its display form where it is printed
(the command line's `error:` and `note:` lines):

- a path the spec loader resolved, or a file inside it, is named as the spec wrote it
  (`../tables/train.csv`, `../images/cat/1.png`): `remember_written` records it;
- a path inside the workspace is named from the workspace as the user set it
  (`TRUSTFORGE_HOME`, or the default `.trustforge`): `.trustforge/runs/NAME-.../checkpoint.pt`,
  `../ws/keys/signing.key`; a workspace set as an absolute path stays absolute, as typed;
- anything else is left as it is: a path the user typed is already shown as typed.

Only whole paths are replaced: `/data/x.csv` is not rewritten inside `/data/x.csv.bak`, nor
inside a URL such as `sqlite:////data/registry.db`. What goes into packages and reports is
redacted separately (`spec.redact_spec`); this is only for messages shown on this machine.

`recorded` is the form of an error that is kept (an audit entry, append-only and read on other
machines): its class, workspace paths as `shown` names them, every other local path by its base
name, the value a message quotes after "got" left out, and each personal value the detector
finds as its type tag (`<EMAIL>`), masked before the text is cut to its length.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

__all__ = ["audit_object", "no_local_paths", "recorded", "remember_written", "shown", "written_relative"]

# A long-lived process (the dashboard) loads many specs: the newest few are enough to name
# the files of the one that failed.
_KEEP = 64
_written: dict[str, str] = {}
_lock = threading.Lock()

# A path starts after a character that cannot be part of it (text, `csv:`, a quote) and ends
# before one, or before a `/` that leads into it; a sentence's final dot also ends it.
_BEFORE = r"(?<![\w/.~-])"
_AFTER = r"(?=/|\.?(?![\w.~-]))"


def remember_written(resolved: str | os.PathLike[str], written: str) -> None:
    """Record that the absolute path `resolved` was written `written` by the user (a spec's
    relative data path, or one with `~`), so that `shown` names it that way."""
    resolved, written = str(resolved), str(written)
    if resolved == written or not os.path.isabs(resolved) or resolved == os.sep:
        return
    with _lock:
        _written.pop(resolved, None)
        _written[resolved] = written
        while len(_written) > _KEEP:
            _written.pop(next(iter(_written)))


def written_relative(resolved: str | os.PathLike[str]) -> bool:
    """Whether `resolved` was written as a relative path (`remember_written`): a message that it
    is missing then says what it is relative to."""
    with _lock:
        written = _written.get(str(resolved))
    return written is not None and not os.path.isabs(written) and not written.startswith("~")


def shown(text: str, *, home: str | os.PathLike[str] | None = None, home_as: str | None = None) -> str:
    """`text` (a message) with every local path TrustForge made absolute in its display form.

    Args:
        text: the message.
        home: the workspace folder (resolved, as `Settings.home`).
        home_as: how the user set it (`TRUSTFORGE_HOME` as written, or `.trustforge`); paths
            inside `home` are shown from it. "": relative to it (`keys/kek.key`, and the folder
            itself as "the workspace"), for logs and audit entries. None: no workspace path is
            rewritten.
    """
    with _lock:
        forms = dict(_written)
    workspace = str(Path(home)) if home is not None else None
    if workspace is not None and home_as is not None and workspace != os.sep:
        forms.setdefault(workspace, home_as.rstrip("/"))  # a path the spec wrote inside it keeps its written form
    for prefix in sorted(forms, key=len, reverse=True):  # the most specific first
        if prefix not in text:
            continue
        written = forms[prefix]
        pattern = re.compile(_BEFORE + re.escape(prefix) + _AFTER + "(/?)")
        if written == "" and prefix == workspace:
            text = pattern.sub(lambda m: "" if m.group(1) else "the workspace", text)
        else:
            text = pattern.sub(lambda m, w=written: w + m.group(1), text)
    return text


# An absolute local path (`/data/x.csv`, `csv:/data/x.csv`, `~/x.csv`), not a model URI's path
# (`models:/NAME/3`) nor a URL's (`sqlite:////data/registry.db`, `https://host/x`: the path
# cannot start after a `/`); it ends at a space, a quote or a separator of the message.
_SEGMENT = r"[^\s'\"`,;:()<>\[\]{}/]+"
_ABSOLUTE = re.compile(rf"(?<![\w/.~-])(?<!models:)~?/{_SEGMENT}(?:/{_SEGMENT})*")
_URL_FILE = re.compile(r"\b(sqlite|file):/{2,}(?=/)")
# What a message quotes after "got" (the house template: "`x` must be ...; got VALUE").
_GOT = re.compile(r"""(\bgot (?:text |a list |an object |a boolean )?)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def no_local_paths(text: str, *, home: str | os.PathLike[str] | None = None) -> str:
    """`text` with no local path: as `shown` names them, then every other absolute path by its
    base name (`/data/lab/x.csv` → `x.csv`), for what is kept or read elsewhere (logs, audit)."""
    text = shown(text, home=home, home_as="")
    text = _URL_FILE.sub(r"\1:", text)  # `sqlite:////data/registry.db`: its path, then its base name
    return _ABSOLUTE.sub(lambda m: m.group(0).rstrip(".").rsplit("/", 1)[-1] + ("." if m.group(0).endswith(".") else ""), text)


def recorded(exc: BaseException, *, home: str | os.PathLike[str] | None = None, limit: int = 300) -> str:
    """`exc` as an audit entry records it: `Class: message`, with no local path and no value.

    Args:
        exc: the error.
        home: the workspace folder; paths inside it are named relative to it (`keys/kek.key`).
        limit: the most characters kept (the text is masked first, then cut).
    """
    text = no_local_paths(str(exc), home=home)
    text = _GOT.sub(lambda m: m.group(1) + "<value>", text)
    from trustforge.privacy import Masker  # imported here: most callers never record an error

    text = Masker("tag").mask_text(f"{exc.__class__.__name__}: {text}")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def audit_object(kind: str, path: str | os.PathLike[str]) -> str:
    """The audit log's object for a file or folder a command was given: `KIND:NAME`, its base name
    with any personal data in it tagged (`mary.smith@example.com.csv` is `file:<EMAIL>`): the
    log is append-only, so what it holds stays."""
    from trustforge.privacy import Masker  # imported here: most callers never audit a file

    return f"{kind}:{Masker('tag').mask_text(Path(path).name)}"
