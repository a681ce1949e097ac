"""Mixed inputs on a real table: examples/birdstrikes_mixed.yaml, as written, near its README figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _figures import assert_near_readme

import trustforge

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_birdstrikes_mixed_example_holds_its_readme_figures():
    spec = yaml.safe_load((ROOT / "examples" / "birdstrikes_mixed.yaml").read_text())
    result = trustforge.run(spec, progress=False, register=False)
    assert_near_readme("birdstrikes_mixed.yaml", result.metrics)
    model = result.load_model()
    kinds = {c.name: c.kind for c in model.schema.columns}
    assert kinds["remarks"] == "text" and kinds["date"] == "datetime" and kinds["sky"] == "categorical"
    signature = {i["name"]: i for i in model.manifest["signature"]["inputs"]}
    assert signature["date"]["datatype"] == "BYTES" and signature["height"]["datatype"] == "FP64"
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    columns = [c["name"] for c in evidence["explanations"]["feature_importance"]["columns"]]
    assert columns[0] == "remarks"  # the free text carries most of the signal, as the text-only row shows
