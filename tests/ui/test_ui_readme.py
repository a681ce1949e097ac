"""The README's dashboard block runs as pasted: `trustforge ui` starts, sends a visitor without a
session to the sign-in page, and stops on SIGTERM."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Dashboard (`trustforge ui`)", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the dashboard section has one bash block"
    return blocks[0]


def test_the_readme_dashboard_block_runs_as_written(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("TRUSTFORGE_HOME", "UI")}
    env["UI_PORT"] = str(port)
    script = _block()
    assert "trustforge ui --port" in script
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "303"  # no session: sent to sign in
    assert "Traceback" not in proc.stderr
