"""Binding a version row to its folder (`registry/_binding.py`): what each check refuses, and that it names the version."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from trustforge.errors import IntegrityError
from trustforge.package import write_package
from trustforge.registry import Registry
from trustforge.registry._binding import check_archived, check_stored, check_verified, open_bound
from trustforge.settings import Settings


@pytest.fixture(params=[True, False], ids=["sealed", "plain"])
def stored(request, workspace, tmp_path):
    """A registry (sealed or plain) with m/1 and n/1, two different packages."""
    with Registry(Settings.from_env(), encrypt=request.param) as reg:
        for name, fill in (("m", 1.0), ("n", 0.0)):
            pkg = write_package(
                tmp_path / name, {"name": name}, {"weights.safetensors": {"w": torch.full((3,), fill)}}, keyring=reg.keyring
            )
            reg.register(pkg, name=name)
        yield reg


def test_a_bound_folder_opens(stored):
    mv = stored.get("models:/m/1")
    pkg = open_bound(mv.path, mv, stored.keyring)
    assert pkg.manifest["package_id"] == mv.package_id


def test_another_package_in_the_folder_is_refused_before_it_is_opened(stored, monkeypatch):
    mv, other = stored.get("models:/m/1"), stored.get("models:/n/1")
    shutil.rmtree(mv.path)
    shutil.copytree(other.path, mv.path)
    monkeypatch.setattr("trustforge.package.read_package", lambda *a, **k: pytest.fail("opened before the binding check"))
    with pytest.raises(IntegrityError, match=r"^models:/m/1: the version folder holds another package") as info:
        check_stored(mv.path, mv)
    assert info.value.found in ({"package_id": other.package_id}, {"package_digest": other.package_digest})
    with pytest.raises(IntegrityError, match="models:/m/1"):
        open_bound(mv.path, mv, stored.keyring)


def test_the_other_stored_form_and_a_missing_folder_are_refused(stored):
    mv = stored.get("models:/m/1")
    flipped = SimpleNamespace(**{**mv.to_dict(), "encrypted": not mv.encrypted})
    with pytest.raises(IntegrityError, match="models:/m/1: the version folder holds a (sealed|plain) package, the registry stored it"):
        check_stored(mv.path, flipped)
    shutil.rmtree(mv.path)
    with pytest.raises(IntegrityError, match="models:/m/1: the stored package is missing"):
        check_stored(mv.path, mv)


def test_a_row_without_id_or_digest_fails_closed(stored):
    mv = stored.get("models:/m/1")
    with pytest.raises(IntegrityError, match="recorded no package id"):
        check_stored(mv.path, SimpleNamespace(**{**mv.to_dict(), "package_digest": ""}))


def test_verified_contents_are_checked_again(stored):
    """A folder swapped between the first check and the read: the verified manifest must still be the row's."""
    mv = stored.get("models:/m/1")
    with pytest.raises(IntegrityError, match="another package"):
        check_verified(mv, {"package_id": "0" * 32}, mv.package_digest)
    with pytest.raises(IntegrityError, match="another package"):
        check_verified(mv, {"package_id": mv.package_id}, "0" * 64)


def test_archived_folders_are_checked_the_same_way(stored):
    mv = stored.get("models:/m/1")
    files = {p.name: p.read_bytes() for p in mv.path.iterdir()}
    check_archived(mv, files)
    name = "sealed.json" if mv.encrypted else "manifest.json"
    changed = json.loads(files[name])
    changed["package_id"] = "0" * 32
    with pytest.raises(IntegrityError, match="models:/m/1: the version folder holds another package"):
        check_archived(mv, {**files, name: json.dumps(changed).encode()})
    with pytest.raises(IntegrityError, match="missing"):
        check_archived(mv, {})
