"""Fixtures of the drift-monitoring tests: a model trained once on the generated table."""

from __future__ import annotations

from pathlib import Path

import pytest
from _drift_data import SPEC, make_table

import trustforge


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """An MLP trained on 4,000 generated rows and registered in its own workspace, trained once.

    Returns the `RunResult` (`.package`, `.model_uri`, `.load_model()`) and the workspace folder.
    """
    root = tmp_path_factory.mktemp("drift")
    make_table(4000, seed=0).to_csv(root / "train.csv", index=False)
    spec = {**SPEC, "data": {**SPEC["data"], "source": f"csv:{root / 'train.csv'}"}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTFORGE_HOME", str(root / "ws"))
        result = trustforge.run(spec, progress=False, register=True)
    return result, Path(root / "ws")
