"""The `trustforge` console script's entry point, called inside the test process.

Importable from every test folder: tests/conftest.py puts tests/ on `sys.path`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from trustforge.cli import main

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def __iter__(self):  # code, out, err = run_main(...)
        return iter((self.code, self.stdout, self.stderr))


def run_main(*args: object, home: Path, cwd: Path | None = None) -> Result:
    """Call the entry point as the script would, with TRUSTFORGE_HOME=`home` (and in `cwd`);
    argv, the environment and the working directory are restored afterwards. Colour codes are
    stripped from the output."""
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_home, saved_cwd = sys.argv, os.environ.get("TRUSTFORGE_HOME"), Path.cwd()
    sys.argv = ["trustforge", *map(str, args)]
    os.environ["TRUSTFORGE_HOME"] = str(home)
    if cwd is not None:
        os.chdir(cwd)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved_argv
        if saved_home is None:
            os.environ.pop("TRUSTFORGE_HOME", None)
        else:
            os.environ["TRUSTFORGE_HOME"] = saved_home
        os.chdir(saved_cwd)
    return Result(code, _ANSI.sub("", out.getvalue()), _ANSI.sub("", err.getvalue()))
