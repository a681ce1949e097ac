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


def test_writing_onto_a_folder_names_the_folder_not_a_temporary_file(tmp_path):
    # Found by a probe: `predict ... -o EXISTING_FOLDER` said `/work/.probeB.tmp-c793e21e: Is a directory`.
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        _fs.atomic_write_text(tmp_path / "out", "x")
    assert info.value.filename == str(tmp_path / "out") and "folder" in info.value.strerror
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any((tmp_path / "out").iterdir())


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


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_files_written_in_place_are_private_from_creation(tmp_path, umask):
    # Writers that cannot go through a rename (a CSV appended per epoch, safetensors' save_file,
    # the files of a package being assembled) get 0600 at creation, not at the run's end.
    old = os.umask(umask)
    try:
        _fs.write_private_bytes(tmp_path / "a.bin", b"x")
        _fs.create_private(tmp_path / "b.bin")
        with _fs.open_private_append(tmp_path / "c.csv", encoding="utf-8") as f:
            mode_while_open = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            f.write("row\n")
    finally:
        os.umask(old)
    assert mode_while_open == 0o600
    for name in ("a.bin", "b.bin", "c.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert (tmp_path / "a.bin").read_bytes() == b"x" and (tmp_path / "b.bin").read_bytes() == b""


def test_a_full_disk_names_the_file_being_written_not_its_temporary(tmp_path, monkeypatch):
    # a probe: `backup create small/x.tfb` on a full disk said only "No space left on device" (exit 74)
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        _fs.atomic_write_bytes(tmp_path / "x.tfb", b"data")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.tfb")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "open", full)  # no inode left for the temporary file
    with pytest.raises(OSError) as info:
        _fs.atomic_write_bytes(tmp_path / "x.tfb", b"data")
    assert info.value.filename == str(tmp_path / "x.tfb")


def test_a_command_on_a_full_disk_names_the_file(tmp_path, workspace, monkeypatch):
    import errno

    from _cli import run_main

    assert run_main("keys", "init", home=workspace).code == 0

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, out, err = run_main("keys", "export", "pub.pem", home=workspace, cwd=tmp_path)
    assert code == 74 and err.strip() == "error: pub.pem: No space left on device", err
    assert not (tmp_path / "pub.pem").exists()


def test_an_atomic_write_that_must_not_replace_keeps_a_file_made_since_the_check(tmp_path):
    # `keys export FILE` and `backup create FILE` check that FILE is absent, then wrote with a
    # rename, which replaced a file made in between.
    from trustforge._fs import atomic_write_bytes

    dest = tmp_path / "key.pem"
    atomic_write_bytes(dest, b"first", replace=False)
    assert dest.read_bytes() == b"first"
    with pytest.raises(FileExistsError) as info:
        atomic_write_bytes(dest, b"second", replace=False)
    assert info.value.filename == str(dest) and dest.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]  # no temporary file left
