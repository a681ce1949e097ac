"""A package written before feature types (format 1, commit 99d034b) still loads and predicts
exactly what it predicted then: its scalers were tensors and its vocabularies dicts, which the
loader turns into feature states (see data._encoders._legacy_states)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trustforge import Model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_v1"


def test_a_package_from_before_feature_types_predicts_the_same():
    model = Model.load(FIXTURE / "package", public_key=FIXTURE / "signing.pub")
    assert model.manifest["format_version"] == 1 and "features" not in model.manifest["preprocessing"]  # the old format
    assert {c.name: c.kind for c in model.schema.columns}["sky"] == "categorical"
    got = model.predict(pd.read_csv(FIXTURE / "strikes.csv"))
    want = pd.read_csv(FIXTURE / "predictions.csv")
    assert list(got["prediction"]) == list(want["prediction"])
    # Binary, from before decision thresholds: no decision, so the most probable class, as then.
    assert model.decision is None
    assert list(got["prediction"]) == list(np.where(got["proba_yes"] > got["proba_no"], "yes", "no"))
    np.testing.assert_allclose(got[["proba_no", "proba_yes"]].to_numpy(), want[["proba_no", "proba_yes"]].to_numpy(), atol=1e-6)
    # Missing values and an unseen category take the paths they took then.
    frame = pd.read_csv(FIXTURE / "strikes.csv").head(3)
    frame.loc[0, "sky"] = "fog"
    frame.loc[1, "speed"] = np.nan
    assert len(model.predict(frame)) == 3


def test_a_format_version_that_is_not_a_known_integer_is_refused(tmp_path):
    import json
    import shutil

    import pytest

    from trustforge.errors import IntegrityError
    from trustforge.package import FORMAT_VERSION, UnsafeNoVerify, read_package

    for bad in (FORMAT_VERSION + 1, True, "2"):
        pkg = tmp_path / f"pkg-{bad}"
        shutil.copytree(FIXTURE / "package", pkg)
        manifest = json.loads((pkg / "manifest.json").read_text())
        manifest["format_version"] = bad
        (pkg / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, separators=(",", ":")))
        with pytest.raises(IntegrityError, match="unsupported format_version"):
            read_package(pkg, public_key=UnsafeNoVerify())
