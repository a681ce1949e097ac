"""The masking key recipe: HKDF of the workspace key-encryption key, per purpose (`Keyring.derive_key`)."""

from __future__ import annotations

import base64

import pytest

from trustforge.errors import SecurityError
from trustforge.secure import Keyring


def test_derived_keys_are_stable_per_purpose_and_need_a_kek(tmp_path):
    kek = base64.b64encode(bytes(range(32))).decode()
    ring = Keyring.init(tmp_path / "keys", kek_b64=kek)
    key = ring.derive_key("pii-mask")
    assert len(key) == 32 and key == Keyring.load(tmp_path / "keys", kek_b64=kek).derive_key("pii-mask")
    assert key != ring.derive_key("other") and bytes(range(32)) not in (key,)
    other = Keyring.init(tmp_path / "keys2", kek_b64=base64.b64encode(bytes(32)).decode())
    assert other.derive_key("pii-mask") != key  # another workspace, another masking key
    no_kek = Keyring(ring.keys_dir, ring._signing, None, kek_from_env=False)
    with pytest.raises(SecurityError, match="no key-encryption key; set TRUSTFORGE_KEK or run `trustforge keys init`"):
        no_kek.derive_key("pii-mask")
