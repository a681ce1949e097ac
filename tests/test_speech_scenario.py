"""Speech recognition end to end: spoken digits → audio CNN → signed package → predictions.

The scenario's claim is recognition in voices never heard in training, so every figure here is
on the test voices of the by-voice split, beside the baseline on the same split: logistic
regression on each clip's mean log-mel vector (the spectrogram averaged over time, which keeps
the spectral envelope and drops the order of the sounds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from _figures import assert_near_readme
from sklearn.linear_model import LogisticRegression

import trustforge
from trustforge.data import Prepared, prepare
from trustforge.errors import DataError
from trustforge.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "speech_digits.yaml"


def example(**train) -> dict:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["train"].update(train)
    return raw


def baseline_accuracy(data: Prepared) -> float:
    """Logistic regression on the mean log-mel vector of the clean training clips, scored on the test voices."""

    def mean_logmel(raw) -> np.ndarray:
        return data.preprocessor.encode_inputs(raw)[0][:, 0].mean(dim=-1).numpy()  # (N, n_mels)

    y_train = data.preprocessor.encode_target(data.train_raw).numpy()
    model = LogisticRegression(max_iter=5000).fit(mean_logmel(data.train_raw), y_train)
    return float((model.predict(mean_logmel(data.test_raw)) == data.test.target.numpy()).mean())


def write_clips(folder: Path, raw, idx: np.ndarray, rate: int = 22050) -> None:
    """Test clips as 22.05 kHz stereo WAV files in class folders: the reader must resample and mix down."""
    from scipy.signal import resample_poly

    for i in idx:
        (folder / raw.labels[i]).mkdir(parents=True, exist_ok=True)
        wave = resample_poly(raw.waveforms[i], 441, 320)
        sf.write(str(folder / raw.labels[i] / f"{i}.wav"), np.stack([wave, wave], axis=1), rate, subtype="PCM_16")


def run_cli(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("trustforge")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "trustforge.cli"]
    env = {**os.environ, "TRUSTFORGE_HOME": str(home), "NO_COLOR": "1"}
    return subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_speech_digits_from_the_cli_in_ci_settings(spoken_digits, workspace, tmp_path):
    """`trustforge train` on the example (fewer epochs), then load, predict and evaluate its package."""
    spec_path = tmp_path / "speech.yaml"
    raw = example(max_epochs=8)
    # The evidence this test reads (corruptions, explanations) stays on; the attacks it does not
    # read are off (tests/evaluate/test_robustness.py attacks the audio kind's spectrogram).
    raw["evaluate"] = {**raw.get("evaluate", {}), "robustness": False}
    spec_path.write_text(yaml.safe_dump(raw))
    trained = run_cli("train", "-q", str(spec_path), home=workspace, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    (run_dir,) = (workspace / "runs").glob("speech-digits-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())

    data = prepare(load_spec(spec_path))
    baseline = baseline_accuracy(data)
    print(
        f"\nunseen voices, CI settings: audio CNN {metrics['accuracy']:.3f}, "
        f"logistic regression on mean log-mel {baseline:.3f} ({len(data.test)} test clips)"
    )
    assert metrics["accuracy"] >= 0.9 and metrics["accuracy"] > baseline, (metrics["accuracy"], baseline)

    model = trustforge.Model.load(run_dir / "package")  # signature and digests checked first
    signature = model.manifest["signature"]["inputs"]
    assert signature == [{"name": "waveform", "datatype": "FP32", "shape": [-1, 16000], "sample_rate": 16000}]
    # The serving contract: an array of waveforms (N, T) at the package's rate.
    frame = model.predict(data.test_raw.waveforms)
    assert np.mean(frame["prediction"].to_numpy() == data.test_raw.labels) == pytest.approx(metrics["accuracy"])
    assert np.allclose(frame.filter(like="proba_").sum(axis=1), 1.0)
    with pytest.raises(DataError, match=r"waveforms have shape \(3, 8000\); the model takes \(N, 16000\)"):
        model.predict(np.zeros((3, 8000), dtype=np.float32))

    # A folder of WAV files at another rate, in stereo: read, resampled, mixed down, evaluated.
    picked = np.arange(0, len(data.test_raw), 6)
    write_clips(tmp_path / "clips", data.test_raw, picked)
    scores = model.evaluate(tmp_path / "clips")
    assert scores["n"] == len(picked) and scores["accuracy"] >= 0.8
    predicted = run_cli(
        "predict", str(run_dir / "package"), str(tmp_path / "clips"), "-o", str(tmp_path / "p.csv"), home=workspace, cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("path,prediction,proba_zero,proba_one") and len(lines) == 1 + len(picked)

    # The evidence: the metric under each corruption at each severity, and explanations.
    evidence = json.loads((run_dir / "evidence.json").read_text())
    rows = evidence["corruptions"]["rows"]
    assert {(r["corruption"], r["severity"]) for r in rows} == {(c, s) for c in ("noise", "gain", "time_shift") for s in (1, 2, 3)}
    noise = [r["value"] for r in rows if r["corruption"] == "noise"]
    assert noise[2] < metrics["accuracy"]  # 10 dB of white noise costs accuracy
    assert evidence["explanations"]["completeness_gap"] < 1e-3


def test_a_bad_wav_stops_prediction_naming_the_file(spoken_digits, tmp_path):
    raw = example(max_epochs=1)
    raw["evaluate"] = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
    model = trustforge.run(raw, progress=False, register=False).load_model()
    (tmp_path / "clips").mkdir()
    sf.write(str(tmp_path / "clips" / "good.wav"), np.zeros(8000, dtype=np.float32), 8000)
    (tmp_path / "clips" / "notes.wav").write_text("not a recording")
    with pytest.raises(DataError, match="notes.wav: not a readable audio file"):
        model.predict(tmp_path / "clips")
    (tmp_path / "clips" / "notes.wav").unlink()
    assert model.predict(tmp_path / "clips")["path"].tolist() == ["good.wav"]  # 0.5 s at 8 kHz, padded


@pytest.mark.slow
def test_speech_digits_full_settings_reach_the_target_on_unseen_voices(spoken_digits, as_written):
    """Issue target: accuracy ≥ 0.95 on voices never heard in training, above the baseline (the
    session's run as written, evidence off, which tests/evaluate/test_baselines.py reads too)."""
    result = as_written(EXAMPLE.name)
    data = prepare(load_spec(EXAMPLE))
    baseline = baseline_accuracy(data)
    print(
        f"\nunseen voices, full settings: audio CNN {result.metrics['accuracy']:.3f}, "
        f"logistic regression on mean log-mel {baseline:.3f}; fit {result.metrics['fit_seconds']:.0f} s"
    )
    assert result.metrics["accuracy"] >= 0.95, result.metrics["accuracy"]
    assert result.metrics["accuracy"] > baseline
    assert_near_readme("speech_digits.yaml", result.metrics)


def test_augmented_copies_are_reported_apart_from_the_training_clips(spoken_digits, tmp_path):
    """The split sizes add up to the clips read; the waveform copies are said as copies, not as examples."""
    from trustforge.evaluate import write_report

    raw = example(max_epochs=1)
    raw["evaluate"] = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
    run = trustforge.run(raw, progress=False, register=False)
    data = json.loads((run.run_dir / "evidence.json").read_text())["data"]
    sizes = data["split_sizes"]
    assert sum(sizes.values()) == data["rows"] and data["augmented_copies"] == sizes["train"]  # copies: 1
    html = " ".join(write_report(run.run_dir).read_text(encoding="utf-8").split())
    assert f"Trained on {sizes['train']:,} examples (+{sizes['train']:,} augmented copies)" in html
    assert f"({sizes['train']} examples and {sizes['train']} augmented copies of them)" in html  # the baseline's fit
