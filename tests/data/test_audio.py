"""Audio data: reading WAV files, the log-mel front end, group splits, corruptions, spoken digits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from trustforge.data import Preprocessor, _audio, _spoken_digits, load_source, prepare, split_indices
from trustforge.data._audio import FrontEnd, add_noise, change_gain, read_audio, read_audio_folder, time_shift
from trustforge.errors import DataError
from trustforge.spec import load_spec

RATE = 16000


def tone(freq: float, seconds: float = 0.5, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_set(root: Path, classes: dict[str, float], n: int = 6, rate: int = RATE) -> Path:
    """A folder of class sub-folders, each with `n` tones of the class's frequency (± a little)."""
    rng = np.random.default_rng(0)
    for name, freq in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            wave = tone(freq * rng.uniform(0.97, 1.03), seconds=rng.uniform(0.3, 0.6), rate=rate)
            sf.write(str(root / name / f"{i}.wav"), wave, rate, subtype="PCM_16")
    return root


# ---------------------------------------------------------------------------- reading


def test_stereo_becomes_mono_and_other_rates_are_resampled(tmp_path):
    left, right = tone(440, rate=22050), tone(440, rate=22050, amp=0.1)
    sf.write(str(tmp_path / "stereo.wav"), np.stack([left, right], axis=1), 22050)
    wave = read_audio(tmp_path / "stereo.wav", RATE, RATE)
    assert wave.shape == (RATE,) and wave.dtype == np.float32
    # 0.5 s at 22 050 Hz is 8000 samples at 16 kHz; the rest of the second is zero padding.
    assert np.all(wave[8100:] == 0) and np.abs(wave[:7900]).max() > 0.25
    # Mono is the channels' mean: amplitude (0.5 + 0.1) / 2, and the pitch survives resampling.
    assert abs(np.abs(wave[1000:7000]).max() - 0.3) < 0.02
    spectrum = np.abs(np.fft.rfft(wave[:8000]))
    assert abs(np.argmax(spectrum) * RATE / 8000 - 440) <= 2


def test_long_clips_are_cut_at_the_end(tmp_path):
    sf.write(str(tmp_path / "long.wav"), tone(300, seconds=2.0), RATE)
    wave = read_audio(tmp_path / "long.wav", RATE, RATE // 2)
    np.testing.assert_allclose(wave, tone(300, seconds=2.0)[: RATE // 2], atol=1e-4)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("this is not audio"), "not a readable audio file"),
        (lambda p: p.write_bytes(b"RIFF"), "not a readable audio file"),
        (lambda p: p.write_bytes(b""), "not a readable audio file"),
    ],
)
def test_a_file_that_is_not_audio_is_named(tmp_path, make, message):
    path = tmp_path / "clip.wav"
    make(path)
    with pytest.raises(DataError, match=message) as err:
        read_audio(path, RATE, RATE)
    assert str(path) in str(err.value)


def test_a_truncated_wav_is_refused(tmp_path):
    whole = tmp_path / "whole.wav"
    sf.write(str(whole), tone(440), RATE, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:4000])  # libsndfile alone would read the 1978 samples left
    with pytest.raises(DataError, match="truncated") as err:
        read_audio(cut, RATE, RATE)
    assert str(cut) in str(err.value)
    assert read_audio(whole, RATE, RATE).shape == (RATE,)


def test_empty_and_non_finite_audio_are_refused(tmp_path):
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, dtype=np.float32), RATE)
    with pytest.raises(DataError, match="empty.wav: the audio file holds no samples"):
        read_audio(tmp_path / "empty.wav", RATE, RATE)
    bad = tone(440)
    bad[10] = np.nan
    sf.write(str(tmp_path / "nan.wav"), bad, RATE, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav: the audio holds NaN"):
        read_audio(tmp_path / "nan.wav", RATE, RATE)


def test_a_too_large_file_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.wav"
    sf.write(str(path), tone(440, seconds=1.0), RATE)
    monkeypatch.setattr(_audio, "MAX_FILE_BYTES", 1000)

    def never(*args, **kwargs):
        raise AssertionError("decoded a file that should have been refused")

    monkeypatch.setattr(sf, "read", never)
    with pytest.raises(DataError, match="big.wav: audio file is too large"):
        read_audio(path, RATE, RATE)
    # A header that promises more audio than the limit is refused the same way.
    monkeypatch.setattr(_audio, "MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(_audio, "MAX_SECONDS", 0.5)
    with pytest.raises(DataError, match="big.wav: audio is too long"):
        read_audio(path, RATE, RATE)


def test_folder_problems_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="audio folder not found"):
        read_audio_folder(tmp_path / "nowhere", RATE, RATE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: needs one sub-folder of audio files per class .* found 0"):
        read_audio_folder(tmp_path / "empty", RATE, RATE)
    root = write_set(tmp_path / "set", {"low": 300, "high": 2000}, n=2)
    (root / "silent").mkdir()
    (root / "silent" / "notes.txt").write_text("no audio here")
    with pytest.raises(DataError, match="silent: no WAV, FLAC or OGG files in class folder 'silent'"):
        read_audio_folder(root, RATE, RATE)
    shutil.rmtree(root / "silent")
    (root / "low" / "1.wav").write_text("not audio")
    with pytest.raises(DataError, match=r"low/1.wav: not a readable audio file"):
        load_source(f"audio:{root}", target=None, image_size=(8, 8), channels=1, seed=0)


def test_audio_folder_source(tmp_path):
    root = write_set(tmp_path / "set", {"low": 300, "high": 2000}, n=3, rate=22050)
    raw = load_source(f"audio:{root}", target=None, image_size=(8, 8), channels=1, seed=0, sample_rate=8000, seconds=0.75)
    assert raw.modality == "audio" and raw.waveforms.shape == (6, 6000) and raw.sample_rate == 8000
    assert raw.classes == ["high", "low"] and sorted(set(raw.labels)) == ["high", "low"]
    assert raw.paths[0] == "high/0.wav" and raw.groups is None and len(raw) == 6


# ---------------------------------------------------------------------------- front end


def test_log_mel_puts_a_tone_in_its_mel_band():
    front = FrontEnd(sample_rate=RATE, samples=RATE // 2, n_mels=40)
    waves = np.stack([tone(f) for f in (250, 1000, 4000)])
    tensors = front.fit(waves)
    logmel = front.log_mel(waves, tensors)  # (3, 40, frames)
    assert logmel.shape == (3, 40, front.frames) == (3, 40, 51)
    centres = _audio._mel_to_hz(np.linspace(_audio._hz_to_mel(20.0), _audio._hz_to_mel(RATE / 2), 42))[1:-1]
    for i, f in enumerate((250, 1000, 4000)):
        band = int(logmel[i, :, 5:-5].mean(dim=1).argmax())
        assert abs(centres[band] - f) < 0.12 * f, (f, centres[band])


def test_mel_filters_are_librosas():
    import librosa

    for rate, n_fft, n_mels, fmin, fmax in [(16000, 512, 40, 20.0, None), (22050, 2048, 128, 0.0, None), (44100, 1024, 64, 300.0, 8000.0)]:
        ours = _audio.mel_filters(rate, n_fft, n_mels, fmin, fmax)
        theirs = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        assert ours.shape == theirs.shape == (n_mels, n_fft // 2 + 1)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-8)


def test_encoding_is_standardised_on_training_statistics_and_survives_the_package_state(tmp_path):
    root = write_set(tmp_path / "set", {"low": 300, "high": 2000}, n=5)
    spec = load_spec({"data": {"source": f"audio:{root}", "split": {"test": 0.2, "validation": 0.2}}, "model": {"kind": "audio_cnn"}})
    data = prepare(spec)
    x = data.train.inputs[0]
    assert x.shape[1:] == (1, 40, 101) and x.dtype == torch.float32
    np.testing.assert_allclose(x.mean(dim=(0, 1, 3)).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(dim=(0, 1, 3)).numpy(), 1, atol=1e-2)
    meta, tensors = data.preprocessor.state()
    again = Preprocessor.from_state(json.loads(json.dumps(meta)), {k: v.clone() for k, v in tensors.items()})
    assert set(tensors) >= {"audio.mel", "audio.window", "audio.mean", "audio.std"}
    assert torch.equal(again.encode_inputs(data.test_raw)[0], data.test.inputs[0])
    with pytest.raises(DataError, match=r"waveforms have shape \(2, 100\); the model takes \(N, 16000\)"):
        FrontEnd.from_dict(again.schema.audio).encode(np.zeros((2, 100), np.float32), tensors)


def test_augmented_copies_are_seeded_and_only_in_training(tmp_path):
    root = write_set(tmp_path / "set", {"low": 300, "high": 2000}, n=5)
    base = {
        "data": {"source": f"audio:{root}", "split": {"test": 0.2, "validation": 0.2}, "audio": {"augment": {"copies": 2}}},
        "model": {"kind": "audio_cnn"},
    }
    a, b = prepare(load_spec(base)), prepare(load_spec(base))
    assert len(a.train) == 3 * len(a.train_raw) and len(a.test) == len(a.test_raw)
    assert torch.equal(a.train.inputs[0], b.train.inputs[0])
    n = len(a.train_raw)
    assert not torch.equal(a.train.inputs[0][:n], a.train.inputs[0][n : 2 * n])  # the copies differ
    assert torch.equal(a.train.target[:n], a.train.target[n : 2 * n])


# ---------------------------------------------------------------------------- group splits


def test_group_split_keeps_each_group_in_one_split():
    groups = np.repeat([f"voice{i}" for i in range(20)], 10)
    tr, va, te = split_indices(len(groups), test=0.2, validation=0.1, stratify=None, seed=3, groups=groups)
    parts = [set(groups[i]) for i in (tr, va, te)]
    assert len(parts[2]) == 4 and len(parts[1]) == 2 and len(parts[0]) == 14
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(200))
    # The test groups do not move when the validation fraction changes; another seed moves them.
    _, _, te2 = split_indices(len(groups), test=0.2, validation=0.25, stratify=None, seed=3, groups=groups)
    assert np.array_equal(te, te2)
    _, _, te3 = split_indices(len(groups), test=0.2, validation=0.1, stratify=None, seed=4, groups=groups)
    assert not np.array_equal(te, te3)


def test_group_split_needs_enough_groups():
    with pytest.raises(DataError, match="cannot split 2 group"):
        split_indices(20, test=0.2, validation=0.1, stratify=None, seed=0, groups=np.repeat(["a", "b"], 10))
    tr, va, te = split_indices(20, test=0.2, validation=0.0, stratify=None, seed=0, groups=np.repeat(["a", "b"], 10))
    assert len(va) == 0 and len(tr) == len(te) == 10


# ---------------------------------------------------------------------------- corruptions


def test_noise_has_the_asked_snr_and_gain_and_shift_behave():
    rng = np.random.default_rng(0)
    waves = np.stack([tone(440, 1.0), tone(880, 1.0, amp=0.1)])
    noisy = add_noise(waves, 10.0, rng)
    snr = 10 * np.log10(np.mean(waves**2, axis=1) / np.mean((noisy - waves) ** 2, axis=1))
    np.testing.assert_allclose(snr, 10.0, atol=0.2)
    louder = change_gain(waves, 20.0, np.random.default_rng(1))
    assert np.abs(louder).max() <= 1.0
    ratio = np.abs(louder).max(axis=1) / np.abs(waves).max(axis=1)
    assert np.all((ratio >= 0.1 - 1e-6) & (ratio <= 10 + 1e-6)) and not np.allclose(ratio, 1)
    shifted = time_shift(waves, 0.2, np.random.default_rng(2))
    lag = [int(np.argmax(np.correlate(shifted[i], waves[i], mode="full"))) - (waves.shape[1] - 1) for i in range(2)]
    assert all(abs(s) <= 0.2 * waves.shape[1] for s in lag) and any(s != 0 for s in lag)
    assert np.array_equal(add_noise(waves, 10.0, np.random.default_rng(5)), add_noise(waves, 10.0, np.random.default_rng(5)))


def test_audio_corruptions_join_the_evidence_table():
    from trustforge.data import RawData
    from trustforge.evaluate._shift import CORRUPTIONS, corrupt

    assert set(CORRUPTIONS["audio"]) == {"noise", "gain", "time_shift"}
    raw = RawData("audio", "label", "test", labels=np.array(["a", "b"]), waveforms=np.stack([tone(440, 1.0)] * 2), sample_rate=RATE)
    worse = corrupt(raw, "noise", 3, seed=0)
    assert worse.waveforms.shape == raw.waveforms.shape and not np.array_equal(worse.waveforms, raw.waveforms)
    assert np.array_equal(raw.waveforms[0], tone(440, 1.0))  # the input is left alone


def test_an_audio_shift_set_is_checked_against_the_schema(tmp_path):
    from trustforge.evaluate._shift import shift_evaluation

    root = write_set(tmp_path / "set", {"low": 300, "high": 2000}, n=4)
    spec = load_spec({"data": {"source": f"audio:{root}", "split": {"test": 0.25, "validation": 0.25}}})
    data = prepare(spec)
    other = write_set(tmp_path / "other", {"low": 320, "middle": 900}, n=2, rate=44100)
    shifted = load_source(f"audio:{other}", target=None, image_size=(8, 8), channels=1, seed=0)
    with pytest.raises(DataError, match=r"shift set .*other: labels \['middle'\] are not classes the model knows"):
        shift_evaluation(lambda raw: {"accuracy": 1.0}, shifted, data.test_raw, data.schema)
    (other / "middle").rename(other / "high")
    shifted = load_source(f"audio:{other}", target=None, image_size=(8, 8), channels=1, seed=0)
    report = shift_evaluation(lambda raw: {"accuracy": float(len(raw))}, shifted, data.test_raw, data.schema)
    assert report["n"] == 4 and report["shifted"]["accuracy"] == 4.0


# ---------------------------------------------------------------------------- builtin:spoken_digits


def test_spoken_digits_are_split_by_voice(spoken_digits):
    spec = load_spec({"data": {"source": "builtin:spoken_digits"}, "model": {"kind": "audio_cnn"}})
    raw = load_source("builtin:spoken_digits", target=None, image_size=(8, 8), channels=1, seed=7)
    n = len(_spoken_digits.VOICES) * len(_spoken_digits.WORDS) * _spoken_digits.TAKES
    assert raw.waveforms.shape == (n, RATE) and raw.classes == list(_spoken_digits.WORDS)
    assert len(set(raw.groups)) == len(_spoken_digits.VOICES)
    data = prepare(spec, raw)
    train_voices, test_voices = set(data.train_raw.groups), set(data.test_raw.groups)
    assert test_voices and not (train_voices & test_voices)
    variant = lambda v: v.split("+")[1]  # noqa: E731 - the timbre of a voice
    assert not {variant(v) for v in train_voices} & {variant(v) for v in test_voices}
    assert sorted(set(data.test_raw.labels)) == sorted(_spoken_digits.WORDS)  # every word in the test split


def test_generation_is_complete_reused_and_atomic(tmp_path, monkeypatch, spoken_digits_cache):
    folder = _spoken_digits.generate(spoken_digits_cache)  # already there: reused, not regenerated
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["clips"]) == len(_spoken_digits.VOICES) * 10 * _spoken_digits.TAKES
    assert manifest["espeak_ng"].startswith("eSpeak NG")
    assert sf.info(str(folder / manifest["clips"][0]["path"])).samplerate == 22050
    calls = []
    monkeypatch.setattr(_spoken_digits, "_generate_into", lambda *a: calls.append(a))
    assert _spoken_digits.generate(spoken_digits_cache) == folder and not calls
    monkeypatch.undo()

    # An interrupted generation leaves neither a half set nor its temporary folder.
    real = _spoken_digits._speak
    count = {"n": 0}

    def flaky(espeak, clip, raw_dir, out):
        count["n"] += 1
        if count["n"] == 50:
            raise KeyboardInterrupt
        return real(espeak, clip, raw_dir, out)

    monkeypatch.setattr(_spoken_digits, "_speak", flaky)
    with pytest.raises(KeyboardInterrupt):
        _spoken_digits.generate(tmp_path / "cache", workers=1)
    assert list((tmp_path / "cache" / "spoken_digits").iterdir()) == []


def test_missing_espeak_is_a_data_error_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng is not installed.*package espeak-ng"):
        _spoken_digits.generate(tmp_path)


def test_a_format_libsndfile_cannot_open_is_named_as_such(tmp_path):
    """A file libsndfile cannot make sense of (here an ID3 tag with nothing after it, as a broken MP3):
    libsndfile says it "does not exist or is not a regular file", which it does and is; the message
    says which formats are read instead."""
    path = tmp_path / "clip.mp3"
    path.write_bytes(b"ID3junk")  # an ID3 tag and nothing after it: libsndfile "does not exist or is not a regular file"
    with pytest.raises(DataError) as err:
        read_audio(path, RATE, RATE)
    assert "not a readable audio file" in str(err.value) and "does not exist" not in str(err.value)


def test_an_audio_folder_reads_ogg_as_a_tables_audio_column_does_and_names_what_it_skips(tmp_path, caplog):
    """A folder read WAV and FLAC only, so an OGG clip there was left out without a word (a table's
    audio column and a single file read it); a file of another kind is now named by suffix."""
    root = write_set(tmp_path / "clips", {"low": 220.0, "high": 880.0}, n=3)
    sf.write(str(root / "low" / "extra.ogg"), tone(220), RATE, format="OGG", subtype="VORBIS")
    (root / "high" / "notes.txt").write_text("not a clip")
    (root / "high" / ".DS_Store").write_bytes(b"\x00")
    with caplog.at_level("WARNING", logger="trustforge.data"):
        waves, labels, _, paths = read_audio_folder(root, RATE, RATE // 2)
    assert len(waves) == 7 and "low/extra.ogg" in paths
    assert "1 file(s) not read, not WAV, FLAC or OGG files (.txt)" in caplog.text and ".DS_Store" not in caplog.text
