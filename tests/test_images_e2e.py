"""An image-folder task end to end: PNG/JPEG class folders → train → package → predict a folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import trustforge
from trustforge.errors import DataError


def _write_folder(root, n=180, seed=0):
    """Noisy 16×16 images whose class is the dominant colour: easy to learn, so the test is
    about the folder pipeline (PNG and JPEG, class folders, resizing) rather than vision."""
    rng = np.random.default_rng(seed)
    colours = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}
    for i in range(n):
        name = list(colours)[i % 3]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array(colours[name], dtype=np.float64)
        size = int(rng.integers(14, 40))  # varied sizes: the spec's image.size resizes them
        pixels = np.clip(base + rng.normal(0, 50, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}{'.png' if i % 2 else '.jpg'}")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("images")
    data = _write_folder(base / "train")
    spec = {
        "name": "folder-shapes",
        "data": {"source": f"images:{data}", "image": {"size": [16, 16], "channels": 3}},
        "model": {"kind": "cnn", "channels": [8, 16], "hidden": [16]},
        "train": {"max_epochs": 8, "optimizer": {"name": "adamw", "lr": 0.003}, "early_stopping": None},
    }
    result = trustforge.run(spec, settings=trustforge.Settings.from_env(base / "ws"), progress=False)
    return base, result


def test_image_folder_model_learns_and_predicts_a_folder(trained):
    base, result = trained
    assert result.metrics["labels"] == ["blue", "green", "red"]
    assert result.metrics["accuracy"] > 0.9, result.metrics["accuracy"]
    fresh = _write_folder(base / "fresh", n=30, seed=1)
    flat = base / "flat"
    flat.mkdir()
    for f in sorted(fresh.rglob("*.png"))[:5]:
        (flat / f.name).write_bytes(f.read_bytes())
    model = result.load_model()
    preds = model.predict(flat)
    assert list(preds.columns) == ["path", "prediction", "proba_blue", "proba_green", "proba_red"]
    assert len(preds) == 5
    np.testing.assert_allclose(preds[["proba_blue", "proba_green", "proba_red"]].sum(axis=1), 1.0, rtol=1e-6)
    metrics = model.evaluate(fresh)  # class sub-folders carry the labels
    assert metrics["n"] == 30 and metrics["accuracy"] > 0.7


def test_corrupt_image_at_predict_time_names_the_file(trained):
    base, result = trained
    folder = base / "corrupt"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataError, match="broken.png"):
        result.load_model().predict(folder)


def test_table_given_to_an_image_model_is_refused(trained):
    _, result = trained
    with pytest.raises(DataError, match="images"):
        result.load_model().predict(pd.DataFrame({"a": [1.0]}))
