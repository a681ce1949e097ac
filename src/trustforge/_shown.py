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
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

__all__ = ["remember_written", "shown"]

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


def shown(text: str, *, home: str | os.PathLike[str] | None = None, home_as: str | None = None) -> str:
    """`text` (a message) with every local path TrustForge made absolute in its display form.

    Args:
        text: the message.
        home: the workspace folder (resolved, as `Settings.home`).
        home_as: how the user set it (`TRUSTFORGE_HOME` as written, or `.trustforge`); paths
            inside `home` are shown from it. None: no workspace path is rewritten.
    """
    with _lock:
        forms = dict(_written)
    workspace = str(Path(home)) if home is not None else None
    if workspace is not None and home_as and workspace != os.sep:
        forms.setdefault(workspace, home_as.rstrip("/") or os.sep)  # a path the spec wrote inside it keeps its written form
    for prefix in sorted(forms, key=len, reverse=True):  # the most specific first
        if prefix not in text:
            continue
        written = forms[prefix]
        pattern = re.compile(_BEFORE + re.escape(prefix) + _AFTER + "(/?)")
        text = pattern.sub(lambda m, w=written: w + m.group(1), text)
    return text
