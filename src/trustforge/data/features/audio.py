"""Audio columns: a WAV, FLAC or OGG clip per row, read as `data.audio` says.

Each clip is mixed to mono, resampled to `sample_rate`, cut or zero-padded to `samples`, and
turned into a log-mel spectrogram (1, n_mels, frames) by the same front end as audio sets
(`data._audio.FrontEnd`), standardised per mel band with the training statistics; a small
convolutional encoder reads it beside the row's other columns (see `_media`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from trustforge._extras import require
from trustforge.data import _audio
from trustforge.data._attack_space import STD_EPSILONS, STD_MAX_EPSILON, AttackSpace
from trustforge.data._augment import SPECTROGRAM_FIELDS, ColumnAugment, spectrogram_augment
from trustforge.data.features._base import FeatureOptions, FeatureState
from trustforge.data.features._media import MediaType
from trustforge.errors import DataError

__all__ = ["Audio", "AudioState"]


@dataclass(frozen=True)
class AudioState(FeatureState):
    sample_rate: int
    samples: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float
    fmax: float | None
    mean: tuple[float, ...]  # per mel band, of the training log-mel values
    std: tuple[float, ...]
    low: tuple[float, ...] = ()  # per mel band, the smallest and largest standardised training value (attack bounds)
    high: tuple[float, ...] = ()

    @property
    def front_end(self) -> _audio.FrontEnd:
        return _audio.FrontEnd(self.sample_rate, self.samples, self.n_fft, self.hop_length, self.n_mels, self.fmin, self.fmax)


_FRONT = ("sample_rate", "samples", "n_fft", "hop_length", "n_mels", "fmin", "fmax")


class Audio(MediaType):
    name = "audio"
    state_type = AudioState
    corruption = "white noise at 30 × (1 − level) dB SNR"
    files = _audio.AUDIO_SUFFIXES
    magic = (b"RIFF", b"fLaC", b"OggS")
    kinds = "WAV, FLAC or OGG audio"
    stat_axis = 2  # standardised per mel band
    augments = SPECTROGRAM_FIELDS

    def augment(self, state: AudioState, augment: Any) -> ColumnAugment | None:
        # The spectrogram, per batch: shifts by bands and frames, SpecAugment's masks.
        op = spectrogram_augment(augment, size=state.front_end.input_shape[1:])
        return ColumnAugment(op=op, used=op.used) if op else None

    def __init__(self) -> None:
        self._filters: dict[tuple[Any, ...], dict[str, torch.Tensor]] = {}

    def settings(self, data: Any, options: dict[str, Any]) -> dict[str, Any]:
        a = getattr(data, "audio", None)
        spec = {} if a is None else {k: getattr(a, k) for k in ("sample_rate", "seconds", "n_fft", "hop_length", "n_mels", "fmin", "fmax")}
        merged = {**spec, **options}
        if "seconds" in merged:  # the front end counts samples
            merged["samples"] = int(round(merged.get("sample_rate", 16000) * merged.pop("seconds")))
        return merged

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> AudioState:
        front = _audio.FrontEnd(**{k: v for k, v in options.column.items() if k in _FRONT})
        probe = AudioState(*(getattr(front, k) for k in _FRONT), (0.0,) * front.n_mels, (1.0,) * front.n_mels)
        grids, present = self.raw_grids(probe, col, where=where)
        if not present.any():
            raise DataError(f"{where}: column {col.name!r} names no audio file in the training split")
        x = grids[present][:, 0].astype(np.float64)  # (N, M, F)
        mean, std = x.mean(axis=(0, 2)), x.std(axis=(0, 2))
        std = np.where(std > 1e-6, std, 1.0)  # a band that never changes is not divided by 0
        z = (x - mean[None, :, None]) / std[None, :, None]
        return AudioState(
            *(getattr(front, k) for k in _FRONT),
            tuple(float(m) for m in mean),
            tuple(float(s) for s in std),
            tuple(float(v) for v in z.min(axis=(0, 2))),
            tuple(float(v) for v in z.max(axis=(0, 2))),
        )

    def attack_space(self, state: AudioState) -> AttackSpace | None:
        # As the audio input kind: the standardised log-mel spectrogram within each band's training range.
        if not state.low or not state.high:  # a package made before the range was recorded
            return None
        lo, hi = np.asarray(state.low).reshape(1, -1, 1), np.asarray(state.high).reshape(1, -1, 1)
        budget = "standard deviations of each band of the log-mel spectrogram (the attack moves the spectrogram, not the waveform)"
        return AttackSpace(lo, hi, np.ones_like(lo), budget=budget, epsilons=STD_EPSILONS, max_epsilon=STD_MAX_EPSILON)

    def grid(self, state: AudioState) -> tuple[int, int, int]:
        return state.front_end.input_shape

    def raw_signal(self, state: AudioState, data: bytes, *, name: str) -> np.ndarray:
        """The clip as mono float32 (samples,) at the state's sample rate."""
        require("audio", "audio input")
        import soundfile as sf

        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                if f.samplerate <= 0 or f.channels <= 0:
                    raise DataError(f"{name}: not a readable audio file")
                if f.frames / f.samplerate > _audio.MAX_SECONDS:
                    raise DataError(f"{name}: audio is too long ({f.frames / f.samplerate:.0f} s; the limit is {_audio.MAX_SECONDS:.0f} s)")
                need = int(np.ceil(state.samples * f.samplerate / state.sample_rate)) + 64
                wave, rate = f.read(frames=need, dtype="float32", always_2d=True), f.samplerate
        except DataError:
            raise
        except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
            raise DataError(f"{name}: not a readable {self.kinds} file ({exc.__class__.__name__})") from None
        if not len(wave) or not np.isfinite(wave).all():
            raise DataError(f"{name}: the audio holds no samples, or NaN or infinite ones")
        mono = wave.mean(axis=1)
        if rate != state.sample_rate:
            mono = _audio.resample(mono, rate, state.sample_rate)
        return _audio.fit_length(mono, state.samples)

    def decode(self, state: AudioState, data: bytes, *, name: str) -> np.ndarray:
        return self.log_mel(state, self.raw_signal(state, data, name=name)[None])[0]

    def log_mel(self, state: AudioState, waves: np.ndarray) -> np.ndarray:
        """Log-mel spectrograms (N, 1, n_mels, frames) of clips (N, samples)."""
        front = state.front_end
        key = tuple(getattr(front, k) for k in _FRONT)
        filters = self._filters.get(key)
        if filters is None:  # the window and mel filters, built once per front end
            mel = _audio.mel_filters(front.sample_rate, front.n_fft, front.n_mels, front.fmin, front.fmax)
            filters = self._filters[key] = {
                "audio.window": torch.hann_window(front.n_fft, periodic=True, dtype=torch.float32),
                "audio.mel": torch.from_numpy(mel.astype(np.float32)),
            }
        return front.log_mel(waves, filters).unsqueeze(1).numpy()

    def to_bytes(self, state: AudioState, signal: np.ndarray) -> bytes:
        require("audio", "audio input")
        import soundfile as sf

        out = io.BytesIO()
        sf.write(out, np.clip(signal, -1.0, 1.0), state.sample_rate, format="WAV", subtype="FLOAT")
        return out.getvalue()

    def perturb(self, signals: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
        # Background noise: white noise at an SNR falling from 30 dB (fraction 0) to 0 dB (fraction 1).
        return _audio.add_noise(signals, 30.0 * (1.0 - fraction), rng)

    def random_signal(self, state: AudioState, rng: np.random.Generator) -> np.ndarray:
        return (0.1 * rng.standard_normal(state.samples)).astype(np.float32)

    def dimensions(self, data: bytes) -> dict[str, float]:
        require("audio", "audio input")
        import soundfile as sf

        try:
            info = sf.info(io.BytesIO(data))  # reads the header only
        except (sf.SoundFileError, RuntimeError, OSError, ValueError):
            raise DataError("profile: not a readable audio file") from None
        return {"seconds": float(info.frames) / float(info.samplerate), "sample_rate": float(info.samplerate)}

    def summary(self, data: bytes) -> float:
        # Loudness in dB full scale: another microphone, gain or room shows here.
        require("audio", "audio input")
        import soundfile as sf

        try:
            wave, _ = sf.read(io.BytesIO(data), frames=16000 * 30, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError, OSError, ValueError):
            raise DataError("monitor: not a readable audio file") from None
        rms = float(np.sqrt(np.mean(np.square(wave)))) if wave.size else 0.0
        return 20.0 * np.log10(max(rms, 1e-6))
