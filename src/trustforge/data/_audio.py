"""Audio: reading sound files, the log-mel front end, and waveform corruptions.

Reading. `audio:DIR` holds one sub-folder per class of WAV (or FLAC) files. Every file is
decoded with soundfile, mixed down to mono, resampled to the spec's `data.audio.sample_rate`
(scipy's polyphase `resample_poly`: exact rational ratios, deterministic, no extra
dependency) and cut or zero-padded at the end to `data.audio.seconds`. A file that is not
audio, is truncated, is empty, holds non-finite samples or is too large (checked from its size
and header, before decoding) stops with a `DataError` that names it.

Front end. The model never sees waveforms: `FrontEnd.encode` turns float32 waveforms (N, T)
into standardised log-mel spectrograms (N, 1, n_mels, frames), the "image" the audio CNN reads:

    power = |STFT(wave; Hann window n_fft, hop_length, centred)|²       (N, n_fft//2+1, frames)
    mel   = filters @ power                                            (N, n_mels, frames)
    x     = (log(mel + 1e-6) − mean[band]) / std[band]                 (N, 1, n_mels, frames)

`filters` are librosa's default mel filter bank (Slaney-normalised triangles; `mel_filters`,
checked against `librosa.filters.mel`), built at fit time and saved in the package as a
tensor together with the window and the per-band mean and std of the training split, so a
loaded package computes the same features whatever is installed. The front end lives in the
preprocessor, not in the model, so corruptions, serving and `Model.predict` all take plain
waveforms at the package's sample rate, and explanations are maps over the spectrogram.

Training-time augmentation comes in two kinds: noisy copies of the training clips
(`data.audio.augment`, made once in `prepare`, since waveform changes must happen before the
front end) and random shifts of the spectrogram by mel bands and frames (`data.augment.shift`,
per batch, by the trainer).

Corruptions (for the robustness evidence, `evaluate/_shift.py`) act on waveforms before the
front end: additive white noise at a signal-to-noise ratio, a random gain (clipped at full
scale, as a microphone would) and a random time shift.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from trustforge._extras import require
from trustforge.data._files import list_files, read_class_folders
from trustforge.data._raw import RawData
from trustforge.data._states import InputState, SectionState
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._schema import Schema

__all__ = [
    "AUDIO_SUFFIXES",
    "FrontEndState",
    "FrontEnd",
    "add_noise",
    "augment_clips",
    "change_gain",
    "infer_audio_schema",
    "list_audio",
    "load_audio_source",
    "mel_filters",
    "read_audio",
    "read_audio_folder",
    "read_audio_input",
    "time_shift",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")  # what libsndfile reads here; a table's audio column takes the same
# Refused before decoding: a file over this size, or whose header promises more than this
# much audio (a 10-minute clip is far beyond what a clip classifier reads; the limits stop a
# hostile header from making us allocate gigabytes).
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_SECONDS = 600.0
# Floor inside the log: silence (exact zeros from a synthesiser) maps to log(1e-6) ≈ −13.8
# rather than −inf, a level far below any recorded signal.
_LOG_FLOOR = 1e-6
# RIFF chunks walked to find a WAV file's `data` chunk (real files have a handful).
_MAX_CHUNKS = 1000
# Waveforms per STFT batch: bounds the memory of one (B, n_fft//2+1, frames) complex tensor.
_BATCH = 256


# ---------------------------------------------------------------------------- reading


def read_audio(path: Path, sample_rate: int, samples: int) -> np.ndarray:
    """Decode one sound file to a mono float32 waveform of exactly `samples` samples at `sample_rate`.

    Stereo (or more channels) is averaged to mono; another sample rate is resampled; a longer
    clip is cut at the end, a shorter one padded with zeros at the end.

    Raises:
        DataError: the file is missing, too large, not audio, truncated, empty or holds
            non-finite samples; the message names it.
    """
    require("audio", "audio input")
    import soundfile as sf

    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: audio file is too large ({size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB)")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
        reason = _first_line(exc)
        if "does not exist" in reason or "not a regular file" in reason:  # libsndfile's words for content it cannot recognise
            reason = "content libsndfile does not recognise as audio; WAV, FLAC and OGG are read"
        raise DataError(f"{path}: not a readable audio file ({reason})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise DataError(f"{path}: not a readable audio file (sample rate {info.samplerate}, {info.channels} channels)")
    if info.frames / info.samplerate > MAX_SECONDS:
        raise DataError(f"{path}: audio is too long ({info.frames / info.samplerate:.0f} s; the limit is {MAX_SECONDS:.0f} s)")
    _check_wav_complete(path)
    # Decode only what the clip keeps (plus a few frames for the resampling filter's edge).
    need = int(math.ceil(samples * info.samplerate / sample_rate)) + 64
    try:
        data, rate = sf.read(str(path), frames=need, dtype="float32", always_2d=True)  # (frames, channels)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode audio ({_first_line(exc)})") from None
    if len(data) == 0:
        raise DataError(f"{path}: the audio file holds no samples")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: the audio holds NaN or infinite samples")
    wave = data.mean(axis=1)  # (frames,) mono
    if rate != sample_rate:
        wave = resample(wave, rate, sample_rate)
    return fit_length(wave, samples)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """`wave` (T,) from `rate` to `target` Hz with scipy's polyphase filter (anti-aliased)."""
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target))
    return resample_poly(wave.astype(np.float64), target // g, rate // g).astype(np.float32)


def fit_length(wave: np.ndarray, samples: int) -> np.ndarray:
    """Cut `wave` at the end, or pad it with zeros at the end, to exactly `samples`."""
    out = np.zeros(samples, dtype=np.float32)
    n = min(samples, len(wave))
    out[:n] = wave[:n]
    return out


def _check_wav_complete(path: Path) -> None:
    """Refuse a WAV file whose `data` chunk is shorter than its header declares.

    libsndfile reads a truncated WAV without complaint (it shrinks the frame count to what is
    there), so a copy cut short would silently train on half a word. RIFF headers state the
    data size; streaming writers that cannot know it write 0 or 0xFFFFFFFF, which we accept.
    """
    if path.suffix.lower() != ".wav":
        return
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64, W64 or another container: libsndfile has already vouched for it
        pos = 12
        for _ in range(_MAX_CHUNKS):  # a file of countless tiny chunks gets no more of our time
            if pos + 8 > size:
                return
            f.seek(pos)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                available = size - (pos + 8)
                if length not in (0, 0xFFFFFFFF) and length > available:
                    raise DataError(f"{path}: truncated WAV file (the header declares {length} bytes of audio; {available} are present)")
                return
            pos += 8 + length + (length & 1)  # chunks are padded to an even size


def read_audio_folder(root: Path, sample_rate: int, samples: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read `root/CLASS/*.wav|flac|ogg`; class names are the sub-folder names, sorted.

    Returns:
        (waveforms float32 (N, samples), labels (N,) text, classes, paths relative to `root`).

    Raises:
        DataError: no such folder, fewer than two class folders, a class folder without audio,
            or a file that cannot be read (named).
    """
    return read_class_folders(
        root,
        AUDIO_SUFFIXES,
        lambda f: read_audio(f, sample_rate, samples),
        what="audio",
        kinds="WAV, FLAC or OGG files",
        layout="one sub-folder of audio files per class",
    )


def list_audio(root: Path) -> list[Path]:
    """Every WAV/FLAC/OGG file under `root` (recursively), sorted, for prediction."""
    return list_files(root, AUDIO_SUFFIXES, what="audio", kinds="WAV, FLAC or OGG files")


def load_audio_source(source: str, *, target: str | None, sample_rate: int, seconds: float, cache_dir: Path | None = None) -> RawData:
    """`audio:DIR` as audio RawData (waveforms (N, T), labels, paths); `builtin:spoken_digits`
    is read by `data._spoken_digits.spoken_digits_source`."""
    samples = int(round(sample_rate * seconds))
    scheme, _, rest = source.partition(":")
    waves, labels, classes, paths = read_audio_folder(Path(rest), sample_rate, samples)
    return RawData(
        "audio", target or "label", source, labels=labels, classes=classes, paths=paths, waveforms=waves, sample_rate=sample_rate
    )


def read_audio_input(schema: "Schema", source: Any) -> RawData:
    """Clips to predict or evaluate: an array of waveforms (N, T), a WAV/FLAC file, or a folder of them.

    An array must be float mono waveforms at the model's sample rate and length (the
    package's `signature`); files are read like training data (mono, resampled, cut or padded).
    In a folder of class sub-folders each clip's label is its sub-folder (for evaluation);
    files directly in the folder are unlabelled.

    Raises:
        DataError: a table, an array of the wrong shape or type, or a file that cannot be read.
    """
    import pandas as pd

    front = front_end(schema)
    if isinstance(source, pd.DataFrame):
        raise DataError(f"this model takes audio: waveforms (N, {front.samples}) at {front.sample_rate} Hz or WAV files, not a table")
    if isinstance(source, np.ndarray):
        if not np.issubdtype(source.dtype, np.floating):
            raise DataError(f"waveforms must be floats in [-1, 1]; got an array of {source.dtype}")
        if source.ndim != 2 or source.shape[1] != front.samples:
            raise DataError(
                f"waveforms have shape {tuple(source.shape)}; the model takes (N, {front.samples}): "
                f"mono clips of {front.samples} samples at {front.sample_rate} Hz"
            )
        return RawData(
            "audio",
            schema.target,
            "input",
            labels=np.array([""] * len(source)),
            waveforms=source.astype(np.float32),
            sample_rate=front.sample_rate,
        )
    path = Path(source)
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files, root = list_audio(path), path
    else:
        raise DataError(f"{path}: no such WAV file or folder")
    waves = np.stack([read_audio(f, front.sample_rate, front.samples) for f in files])
    labels = np.array([f.parent.name if f.parent != root else "" for f in files])
    return RawData(
        "audio",
        schema.target,
        str(path),
        labels=labels,
        paths=[str(f.relative_to(root)) for f in files],
        waveforms=waves,
        sample_rate=front.sample_rate,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return text or exc.__class__.__name__


# ---------------------------------------------------------------------------- front end


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney mel filter bank (n_mels, n_fft // 2 + 1): `librosa.filters.mel`'s default matrix.

    Written out rather than called: the first call of librosa's version imports its numba
    machinery, seconds of start-up in every run and test, for a matrix that takes these lines.
    `tests/data/test_audio.py` checks it against librosa's.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_fft//2+1,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))  # band edges and centres, Hz
    width = np.diff(edges)  # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_fft//2+1)
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_fft//2+1) triangles
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney: each triangle has unit area per Hz


# The Slaney mel scale: linear (3 per 200 Hz) below 1 kHz, logarithmic above.
_F_SP, _MIN_LOG_HZ, _LOGSTEP = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP


def _hz_to_mel(hz: float) -> float:
    return hz / _F_SP if hz < _MIN_LOG_HZ else _MIN_LOG_MEL + math.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel < _MIN_LOG_MEL, mel * _F_SP, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL)))


@dataclass(frozen=True, eq=False)
class FrontEndState(InputState):
    """The front end's fitted tensors: the Hann `window` (n_fft,) and `mel` filters
    (n_mels, n_fft//2+1) it is built from, and the per-band `mean` and `std` (n_mels,) of the
    training clips' log-mel spectrograms; all float32. `low` and `high` (n_mels,) are each band's
    smallest and largest standardised value in training, the region an attack may move the
    spectrogram in (None in packages made before they were recorded)."""

    window: torch.Tensor
    mel: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    tensor_names: ClassVar[dict[str, str]] = {
        "window": "audio.window",
        "mel": "audio.mel",
        "mean": "audio.mean",
        "std": "audio.std",
        "low": "audio.low",
        "high": "audio.high",
    }


@dataclass(frozen=True)
class FrontEnd(SectionState):
    """The log-mel front end's settings (from the spec's `data.audio`): the schema's `audio` section.

    Attributes:
        sample_rate: Hz of the waveforms it takes.
        samples: length of every waveform (sample_rate × seconds).
        n_fft: STFT window and FFT size in samples; hop_length: step between frames.
        n_mels: mel bands; fmin, fmax: their frequency range in Hz (fmax None: sample_rate / 2).
    """

    sample_rate: int = 16000
    samples: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None

    @property
    def frames(self) -> int:
        """Frames per clip: the centred STFT yields one per hop plus one."""
        return 1 + self.samples // self.hop_length

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """What the model takes per clip: (1, n_mels, frames)."""
        return (1, self.n_mels, self.frames)

    def to_dict(self) -> dict[str, Any]:
        return self.to_json()

    @classmethod
    def from_dict(cls, d: Any) -> "FrontEnd":
        return cls.from_json(d)

    def fit(self, waveforms: np.ndarray) -> FrontEndState:
        """Build the filters and learn the per-band statistics of the training waveforms (N, T)."""
        mel = mel_filters(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float32)
        mel_t = torch.from_numpy(mel.astype(np.float32))
        logmel = self._log_mel(self._check(waveforms), window, mel_t)  # (N, M, F)
        std = logmel.std(dim=(0, 2))
        # A band that never changes (a silent training set) would divide by zero.
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        mean = logmel.mean(dim=(0, 2))
        z = (logmel - mean.view(1, -1, 1)) / std.view(1, -1, 1)
        return FrontEndState(window=window, mel=mel_t, mean=mean, std=std, low=z.amin(dim=(0, 2)), high=z.amax(dim=(0, 2)))

    def encode(self, waveforms: np.ndarray, state: FrontEndState) -> torch.Tensor:
        """Standardised log-mel spectrograms (N, 1, n_mels, frames) of waveforms (N, T)."""
        logmel = self.log_mel(self._check(waveforms), state)  # (N, M, F)
        mean = state.mean.view(1, -1, 1)
        std = state.std.view(1, -1, 1)
        return ((logmel - mean) / std).unsqueeze(1)  # (N, 1, M, F)

    def log_mel(self, waveforms: np.ndarray, state: "FrontEndState | dict[str, torch.Tensor]") -> torch.Tensor:
        """log(mel power + 1e-6) of waveforms (N, T) → (N, n_mels, frames), in batches.

        `state`: the fitted state, or the filters alone as a dict ("audio.window", "audio.mel").
        """
        if isinstance(state, FrontEndState):
            return self._log_mel(waveforms, state.window, state.mel)
        return self._log_mel(waveforms, state["audio.window"], state["audio.mel"])

    def _log_mel(self, waveforms: np.ndarray, window: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(waveforms), _BATCH):
            x = torch.from_numpy(np.ascontiguousarray(waveforms[i : i + _BATCH], dtype=np.float32))  # (B, T)
            spec = torch.stft(
                x, self.n_fft, hop_length=self.hop_length, window=window, center=True, pad_mode="constant", return_complex=True
            )  # (B, n_fft//2+1, F)
            power = spec.real.square() + spec.imag.square()
            out.append(torch.log(torch.matmul(mel, power) + _LOG_FLOOR))  # (B, M, F)
        return torch.cat(out) if out else torch.empty(0, self.n_mels, self.frames)

    def _check(self, waveforms: np.ndarray) -> np.ndarray:
        if waveforms.ndim != 2 or waveforms.shape[1] != self.samples:
            raise DataError(
                f"waveforms have shape {tuple(waveforms.shape)}; the model takes (N, {self.samples}): "
                f"mono clips of {self.samples} samples at {self.sample_rate} Hz"
            )
        if not np.isfinite(waveforms).all():
            raise DataError("waveforms hold NaN or infinite samples")
        return waveforms


# ---------------------------------------------------------------------------- schema and preprocessor


def infer_audio_schema(raw: RawData, *, task: str, audio: Any = None) -> "Schema":
    """The schema of labelled clips: classes, and the front end (`audio`: the spec's data.audio).

    Raises:
        DataError: the task is not classification, or fewer than two classes have clips.
    """
    from trustforge.data._schema import Schema

    if task != "classification":
        raise DataError(f"{raw.origin}: audio sets support task classification; got {task}")
    present = set(raw.labels.tolist())
    classes = [c for c in raw.classes if c in present] if raw.classes else sorted(present)
    if len(classes) < 2:
        raise DataError(f"{raw.origin}: audio needs at least 2 classes; found {len(classes)}")
    samples = int(raw.waveforms.shape[1])
    opts = {} if audio is None else {k: getattr(audio, k) for k in ("n_fft", "hop_length", "n_mels", "fmin", "fmax")}
    front = FrontEnd(sample_rate=int(raw.sample_rate), samples=samples, **opts)
    return Schema("audio", "classification", raw.target, classes=classes, rows=len(raw), audio=front)


def front_end(schema: "Schema") -> FrontEnd:
    """The schema's front end (its `audio` section).

    Raises:
        DataError: the schema is not an audio schema.
    """
    if schema.audio is None:
        raise DataError("the schema has no audio section (a log-mel front end); it is not an audio schema")
    return schema.audio


def fit(pre: Any, raw: RawData) -> FrontEndState:
    """The front end's fitted state on training clips: filters, window and per-band statistics."""
    return front_end(pre.schema).fit(raw.waveforms)


def encode(pre: Any, raw: RawData) -> tuple[torch.Tensor]:
    """The model's input for clips: (log-mel (N, 1, n_mels, frames),)."""
    front = front_end(pre.schema)
    if raw.sample_rate is not None and raw.sample_rate != front.sample_rate:
        raise DataError(f"{raw.origin}: clips are at {raw.sample_rate} Hz; the model takes {front.sample_rate} Hz")
    state = pre.input_state
    if not isinstance(state, FrontEndState):
        raise DataError("the preprocessor holds no fitted audio front end (fit it on clips first)")
    return (front.encode(raw.waveforms, state),)


def augment_clips(raw: RawData, *, copies: int, snr_db: tuple[float, float], gain_db: float, shift: float, seed: int) -> RawData:
    """`raw` followed by `copies` corrupted copies of every clip (labels repeated), drawn from `seed`.

    Waveform augmentation has to happen before the front end, so it cannot be a per-batch
    transform of the encoded spectrograms; the copies are drawn once instead.
    """
    if copies == 0:
        return raw
    rng = np.random.default_rng([seed, 0xA0D10])
    waves = [raw.waveforms]
    for _ in range(copies):
        w = time_shift(raw.waveforms, shift, rng) if shift > 0 else raw.waveforms
        w = change_gain(w, gain_db, rng) if gain_db > 0 else w
        snr = rng.uniform(snr_db[0], snr_db[1], size=(len(w), 1))  # (N, 1): one SNR per clip
        waves.append(_noise_at(w, snr, rng))
    reps = copies + 1
    return RawData(
        "audio",
        raw.target,
        raw.origin,
        labels=np.tile(raw.labels, reps),
        classes=raw.classes,
        paths=list(raw.paths) * reps if raw.paths else [],
        waveforms=np.concatenate(waves),
        sample_rate=raw.sample_rate,
        groups=np.tile(raw.groups, reps) if raw.groups is not None else None,
    )


# ---------------------------------------------------------------------------- corruptions


def add_noise(waveforms: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at `snr_db` below each clip's own mean power (N, T) → (N, T).

    A silent clip (zero power) gets no noise: its SNR is undefined.
    """
    return _noise_at(waveforms, np.full((len(waveforms), 1), float(snr_db)), rng)


def _noise_at(waveforms: np.ndarray, snr_db: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    power = np.mean(np.square(waveforms, dtype=np.float64), axis=1, keepdims=True)  # (N, 1)
    noise = rng.standard_normal(waveforms.shape) * np.sqrt(power / 10 ** (snr_db / 10))  # (N, T)
    return (waveforms + noise).astype(np.float32)


def change_gain(waveforms: np.ndarray, max_db: float, rng: np.random.Generator) -> np.ndarray:
    """Scale each clip by a gain drawn uniformly in ±`max_db` dB, clipped at full scale [-1, 1]."""
    gain = 10 ** (rng.uniform(-max_db, max_db, size=(len(waveforms), 1)) / 20)  # (N, 1)
    return np.clip(waveforms * gain, -1.0, 1.0).astype(np.float32)


def time_shift(waveforms: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Shift each clip by up to `fraction` of its length, earlier or later, filling with silence."""
    n, t = waveforms.shape
    most = int(round(fraction * t))
    shifts = rng.integers(-most, most + 1, size=n)
    out = np.zeros_like(waveforms, dtype=np.float32)
    for i, s in enumerate(shifts):
        if s >= 0:
            out[i, s:] = waveforms[i, : t - s]
        else:
            out[i, : t + s] = waveforms[i, -s:]
    return out
