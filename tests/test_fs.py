"""Atomic writes: the target is either the old content or the new, never half; modes are kept."""

from __future__ import annotations

import os
import stat

import pytest

from trustforge import _fs


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    _fs.atomic_write_text(path, "old")
    _fs.atomic_write_text(path, "new", sync_dir=True)
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    _fs.atomic_write_text(path, "old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        _fs.atomic_write_bytes(path, b"new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_secret_files_get_the_mode_asked_for(tmp_path):
    path = tmp_path / "secret.key"
    _fs.atomic_write_bytes(path, b"k" * 32, mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _fs.fsync_path(tmp_path)  # a folder can be flushed too


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "pkg"
    with _fs.atomic_folder(dest) as tmp:
        (tmp / "a.bin").write_bytes(b"a")
        assert not dest.exists()  # nothing is visible until the block succeeds
    assert [p.name for p in dest.iterdir()] == ["a.bin"]
    with pytest.raises(RuntimeError):
        with _fs.atomic_folder(tmp_path / "broken") as tmp:
            (tmp / "a.bin").write_bytes(b"a")
            raise RuntimeError("half-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
