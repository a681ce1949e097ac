"""A table file's header as written: one column name, one column.

pandas reads a CSV header that names a column twice (`age,age`) as `age` and `age.1`, so which
of the two a rule, a feature, a prediction or a masked copy reads would be a guess. Every CSV
reader (training data, `predict`/`evaluate` input, `mask`/`scan`) refuses it here, naming the
file and the column. Light on purpose (csv module, no pandas or torch import): the PII commands
use it too.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from trustforge.errors import DataError

__all__ = ["refuse_repeated", "refuse_repeated_csv_header"]


def refuse_repeated(path: Path, names: Iterable[str]) -> None:
    """Refuse `names` (a file's column names) when one comes twice.

    Raises:
        DataError: naming the file and the first repeated column.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears more than once in the header; give each column its own name")
        seen.add(name)


def refuse_repeated_csv_header(path: Path, columns: Iterable[object], *, skipinitialspace: bool = False) -> None:
    """Refuse the CSV at `path`, read by pandas into `columns`, when its header names a column twice.

    The header is read again, as written, only when a name looks renamed by pandas (`X.1` beside
    `X`), so a normal file costs nothing more. `skipinitialspace` as the pandas read had it.

    Raises:
        DataError: naming the file and the repeated column.
    """
    names = {str(c) for c in columns}
    if not any("." in c and c.rsplit(".", 1)[1].isdigit() and c.rsplit(".", 1)[0] in names for c in names):
        return
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f, skipinitialspace=skipinitialspace), [])
    refuse_repeated(path, header)
