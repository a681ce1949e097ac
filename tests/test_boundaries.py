"""The boundaries CI holds: import contracts (import-linter), lint (ruff), and no private imports across subpackages.

The contracts and the ruff rules live in pyproject.toml (`[tool.importlinter]`, `[tool.ruff]`).
`trustforge.X._y` (a private module, or a private name of X) is private to X: code outside X
imports what X's `__init__` exports. Tests may reach inside; src/ may not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "trustforge"
BIN = Path(sys.executable).parent  # the environment running the tests (the project's .venv)


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} not found: install the dev extra (pip install -e '.[dev]')")
    return str(path)


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_import_contracts_hold():
    done = _run(_tool("lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_ruff_finds_nothing():
    done = _run(_tool("ruff"), "check", "--no-cache", "--output-format", "concise", "src", "tests", "bench")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_code_is_formatted_by_ruff():
    done = _run(_tool("ruff"), "format", "--check", "--no-cache", "src", "tests", "bench")
    assert done.returncode == 0, "run `.venv/bin/ruff format src tests bench`:\n" + done.stdout[-6000:] + done.stderr[-2000:]


# ---------------------------------------------------------------------------- the environment

# Who may read the environment: the entry points (the CLI, the server), and the public calls
# whose documented default is "the workspace in the environment" when no settings are given.
ENV_READERS = {
    "src/trustforge/settings.py": "defines Settings.from_env",
    "src/trustforge/cli.py": "entry point",
    "src/trustforge/commands": "entry point (the CLI's command groups)",
    "src/trustforge/serve/_run.py": "entry point (the server)",
    "src/trustforge/ui": "entry point (the dashboard)",
    "src/trustforge/pipeline.py": "run(settings=None): the public default",
    "src/trustforge/tune/_study.py": "tune(settings=None): the public default, as pipeline.run",
    "src/trustforge/automl/_auto.py": "run_auto(settings=None): the public default, as pipeline.run",
    "src/trustforge/train/_distributed.py": "torchrun's protocol: a rank learns its place from the environment (WORLD_SIZE, RANK, ...)",
    "src/trustforge/registry/_registry.py": "Registry(settings=None): the public default",
    "src/trustforge/serve/_service.py": "ModelService(settings=None): the public default",
    "src/trustforge/package/_format.py": "Model.load / read_package without a keyring: the workspace's keys",
    "src/trustforge/models/text_pretrained.py": "sets HF_HUB_OFFLINE (writes, never reads)",
}


def test_only_the_entry_points_read_the_environment():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel == k or rel.startswith(k + "/") for k in ENV_READERS):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and (node.attr in ("environ", "getenv", "from_env")):
                found.append(f"{rel}:{node.lineno}: .{node.attr}")
    assert not found, "read settings from an argument passed down from the entry point instead:\n" + "\n".join(found)


def test_run_passes_its_settings_cache_down_to_the_data(tmp_path, monkeypatch):
    """`run(settings=...)` decides where generated data sets live, whatever TRUSTFORGE_HOME says."""
    import trustforge
    from trustforge.data import _spoken_digits
    from trustforge.settings import Settings

    class Reached(Exception):
        pass

    def fake(cache_dir, *args, **kwargs):
        raise Reached(cache_dir)

    monkeypatch.setattr(_spoken_digits, "load_spoken_digits", fake)
    settings = Settings(home=tmp_path / "elsewhere")
    spec = {"name": "sd", "data": {"source": "builtin:spoken_digits"}, "model": {"kind": "audio_cnn"}}
    with pytest.raises(Reached) as info:
        trustforge.run(spec, settings=settings, register=False, progress=False)
    assert Path(info.value.args[0]) == settings.cache_dir


# ---------------------------------------------------------------------------- private imports


def _unit(path: Path) -> str:
    """The subpackage (or top-level module) a source file belongs to: `secure`, `pipeline`, ..."""
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _owner(dotted: str) -> str | None:
    """The unit `dotted` (`trustforge.X.a._b`) is private to, or None when it is public.

    A name is private when a part after the unit starts with `_` (dunders excepted). The
    top-level private modules (`trustforge._fs`, ...) belong to the whole package.
    """
    parts = dotted.split(".")
    if len(parts) < 3 or parts[0] != "trustforge" or parts[1].startswith("_"):
        return None
    private = any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts[2:])
    return parts[1] if private else None


def _package_of(path: Path) -> list[str]:
    rel = path.relative_to(SRC.parent).with_suffix("").parts
    return list(rel if path.name == "__init__.py" else rel[:-1])


def private_imports() -> list[str]:
    """`file:line: names` for each line of src/ that imports (or calls) a name private to another subpackage."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        unit, tree = _unit(path), ast.parse(path.read_text(encoding="utf-8"), str(path))
        bound: dict[str, str] = {}  # local name -> the trustforge module it stands for
        uses: list[tuple[int, str]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    uses.append((node.lineno, a.name))
                    if a.name.startswith("trustforge."):
                        bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else "trustforge"
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = _package_of(path)
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                for a in node.names:
                    uses.append((node.lineno, f"{base}.{a.name}"))
                    if base == "trustforge" or base.startswith("trustforge."):
                        bound[a.asname or a.name] = f"{base}.{a.name}"
        for node in ast.walk(tree):  # `pipeline._manifest(...)` after `from trustforge import pipeline`
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and _owner(bound[node.value.id]) is None
            ):  # a private module's import is reported already
                uses.append((node.lineno, f"{bound[node.value.id]}.{node.attr}"))
        by_line: dict[int, list[str]] = {}
        for line, dotted in uses:
            owner = _owner(dotted)
            if owner is not None and owner != unit:
                by_line.setdefault(line, []).append(dotted)
        found += [f"{path.relative_to(ROOT)}:{line}: {', '.join(sorted(set(names)))}" for line, names in sorted(by_line.items())]
    return found


def test_the_private_import_finder_sees_every_form():
    assert _owner("trustforge.secure._keys.Keyring") == "secure"
    assert _owner("trustforge.pipeline._manifest") == "pipeline"
    assert _owner("trustforge.secure.Keyring") is None and _owner("trustforge._fs.atomic_write_text") is None
    assert _owner("trustforge.data.__all__") is None


def test_no_private_imports_across_subpackages():
    found = private_imports()
    assert not found, f"{len(found)} imports of another subpackage's private names (import from its __init__):\n" + "\n".join(found)
