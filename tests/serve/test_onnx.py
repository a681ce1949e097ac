"""The ONNX Runtime backend: exported on first serve into a signed cache, predicting what eager predicts."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from _serving import mixed_frame, register
from sklearn.datasets import load_digits, load_iris

from trustforge.errors import ModelError
from trustforge.package import OnnxModule
from trustforge.serve import ModelService, ServeConfig, _onnx, create_app
from trustforge.serve._onnx import compare_predictions
from trustforge.serve._workers import load_serving_model

NAMES = {"iris": "iris-serve", "digits": "digits-serve", "mixed": "mixed-serve", "strikes": "strikes-serve", "media": "media-serve"}


def _inputs(key: str, packages=None):
    if key == "media":  # an image and a sound file per row, as their contents: conv-encoded grids beside the floats
        import base64

        table = packages["media"].parent / "media" / "table.csv"
        rows = pd.read_csv(table).head(40).drop(columns="label")
        for col in ("photo", "clip"):
            rows[col] = [base64.b64encode((table.parent / p).read_bytes()).decode() for p in rows[col]]
        return rows
    if key == "iris":
        return load_iris(as_frame=True).frame.drop(columns="target")
    if key == "digits":
        return (load_digits().images[:200] / 16.0).astype(np.float32)[:, None]
    if key == "strikes":  # a date, categories, numbers and free text: token-id tensors beside the floats
        return pd.read_csv(Path(__file__).resolve().parents[2] / "examples" / "data" / "strikes.csv").drop(columns="disrupted").head(100)
    return mixed_frame(100, seed=5).drop(columns="label")


def _onnx_service(registry, key: str, **options) -> ModelService:
    return ModelService(
        f"models:/{NAMES[key]}@champion", ServeConfig(workers=0, auth="none", backend="onnx", **options), registry=registry
    ).start()


@pytest.mark.parametrize("key", ["iris", "digits", "mixed", "strikes", "media"])
def test_onnx_runtime_predicts_what_eager_pytorch_predicts(packages, registry, tmp_path, key):
    uri = register(registry, packages[key], tmp_path)
    eager = registry.load_model(uri)
    svc = _onnx_service(registry, key)
    try:
        served = svc.current.executors[0].model
        assert isinstance(served.module, OnnxModule)  # really ONNX Runtime, not the torch module
        x = _inputs(key, packages)
        a, b = eager.predict(x), served.predict(x)
        assert (a["prediction"] == b["prediction"]).all()
        assert compare_predictions(a, b) <= 1e-4
        entry = registry.settings.cache_dir / "onnx" / svc.current.digest
        assert (entry / "model.onnx").is_file() and (entry / "model.json").is_file()
        # What a worker process loads from the cache predicts the same.
        worker_model = load_serving_model(svc.current._load)
        assert compare_predictions(a, worker_model.predict(x)) <= 1e-4
    finally:
        svc.close()


def test_onnx_through_http_matches_eager(packages, registry, tmp_path, live):
    uri = register(registry, packages["iris"], tmp_path)
    rows = _inputs("iris").sample(16, random_state=2)
    expected = registry.load_model(uri).predict(rows)
    svc = _onnx_service(registry, "iris")
    try:
        with live(create_app(svc)) as server:
            assert httpx.get(f"{server.url}/v2/models/iris-serve").json()["platform"] == "trustforge_onnxruntime"
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": rows.to_dict(orient="records")})
            got = r.json()["predictions"]
            assert [g["prediction"] for g in got] == expected["prediction"].tolist()
            np.testing.assert_allclose([[g[c] for c in expected.columns[1:]] for g in got], expected.iloc[:, 1:].to_numpy(), atol=1e-4)
    finally:
        svc.close()


def test_the_export_is_cached_by_package_digest_and_checked_before_use(packages, registry, tmp_path, monkeypatch, caplog):
    register(registry, packages["iris"], tmp_path)
    exports = []
    real = _onnx.export_onnx
    monkeypatch.setattr(_onnx, "export_onnx", lambda *a, **k: exports.append(1) or real(*a, **k))

    _onnx_service(registry, "iris").close()
    assert len(exports) == 1
    svc = _onnx_service(registry, "iris")  # second start: from the cache
    digest = svc.current.digest
    svc.close()
    assert len(exports) == 1

    onnx_file = registry.settings.cache_dir / "onnx" / digest / "model.onnx"
    blob = bytearray(onnx_file.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # someone edits the cached export
    onnx_file.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="changed since it was exported"):
        _onnx.load_onnx_model(registry.load_model("models:/iris-serve/1"), onnx_file, digest, registry.keyring)
    caplog.set_level("INFO")
    svc = _onnx_service(registry, "iris")  # refused, exported again, served
    svc.close()
    assert len(exports) == 2
    logged = [r.getMessage() for r in caplog.records if "onnx_" in r.getMessage()]
    assert any("onnx_cache_invalid" in m and f"cache/onnx/{digest}/model.onnx: ONNX file changed" in m for m in logged), logged
    assert logged and not any(str(tmp_path) in m for m in logged), logged  # no local path in the server's logs
    _onnx.load_onnx_model(registry.load_model("models:/iris-serve/1"), onnx_file, digest, registry.keyring)


def test_a_model_kind_that_cannot_export_is_named(packages, registry, tmp_path, monkeypatch):
    register(registry, packages["digits"], tmp_path)

    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported ONNX operator aten::weird")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(ModelError, match=r"model kind 'cnn' cannot be exported to ONNX \(RuntimeError: Unsupported.*--backend torch"):
        _onnx_service(registry, "digits")


def test_an_export_that_predicts_differently_is_refused(packages, registry, tmp_path, monkeypatch):
    register(registry, packages["iris"], tmp_path)
    call = OnnxModule.__call__
    monkeypatch.setattr(OnnxModule, "__call__", lambda self, *t: call(self, *t) * 1.05)  # softmax is shift-invariant; scaling is not
    with pytest.raises(ModelError, match="model kind 'mlp': ONNX Runtime predictions differ from eager PyTorch"):
        _onnx_service(registry, "iris")
    assert not list((registry.settings.cache_dir / "onnx").glob("*/model.onnx"))  # nothing cached


@pytest.mark.parametrize("key", ["iris", "mixed", "digits"])
def test_onnx_predicts_from_columns_what_eager_does(packages, registry, tmp_path, key):
    """The ONNX backend runs the same array core (`predict_columns`): its session replaces the torch module."""
    uri = register(registry, packages[key], tmp_path)
    eager = registry.load_model(uri)
    svc = _onnx_service(registry, key)
    try:
        served = svc.current.executors[0].model
        assert isinstance(served.module, OnnxModule)
        x = _inputs(key, packages)
        columns = {"image": x} if isinstance(x, np.ndarray) else {c: x[c].to_numpy() for c in x.columns}
        a, b = eager.predict_columns(columns), served.predict_columns(columns)
        assert list(a) == list(b) and a["prediction"].tolist() == b["prediction"].tolist()
        assert compare_predictions(pd.DataFrame(a), pd.DataFrame(b)) <= 1e-4
        table = served.predict(x)  # and the table predict gives is the same arrays
        assert all(table[c].to_numpy().tolist() == b[c].tolist() for c in b)
    finally:
        svc.close()
