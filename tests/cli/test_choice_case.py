"""A command-line choice is taken in any case, as `--attack FGSM` always was (`--format ONNX` was refused)."""

from __future__ import annotations

from typer.testing import CliRunner

import trustforge.serve
from trustforge.cli import app


def test_export_and_mask_choices_take_any_case():
    from trustforge.commands.package import _check_format, _check_quantize
    from trustforge.commands.privacy import _check_entity_policy, _check_policy, _policy

    assert _check_format("ONNX") == "onnx" and _check_format("TorchScript") == "torchscript"
    assert _check_quantize("INT8") == "int8" and _check_quantize(None) is None
    assert _check_policy("Hash") == "hash"
    assert _check_entity_policy(["email=FAKE"]) == ["email=FAKE"]
    assert _policy("tag", ["email=FAKE"]) == {"*": "tag", "EMAIL": "fake"}


def test_attack_norm_and_train_preset_take_any_case(monkeypatch, tmp_path):
    import trustforge.automl
    from trustforge.commands.attack import _settings
    from trustforge.errors import RunError

    assert _settings(["FGSM"], ["0.1"], "INF", None, None, False, None).norm == "inf"
    seen = {}

    def auto_spec(spec, preset):
        seen["preset"] = preset
        raise RunError("stop here")

    monkeypatch.setattr(trustforge.automl, "auto_spec", auto_spec)
    (tmp_path / "s.yaml").write_text("name: s\ndata: {source: 'builtin:iris'}\n")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "s.yaml"), "--preset", "FAST"])
    assert "stop here" in result.output and seen["preset"] == "fast", result.output


def test_serve_backend_takes_any_case(monkeypatch):
    seen = {}
    monkeypatch.setattr(trustforge.serve, "serve", lambda uri, config, public_key=None: seen.update(config=config))
    result = CliRunner().invoke(app, ["serve", "models:/any", "--backend", "ONNX"])
    assert result.exit_code == 0, result.output
    assert seen["config"].backend == "onnx"
