"""`builtin:spoken_digits`: the words "zero" to "nine" spoken by eSpeak NG in many voices.

A voice is one eSpeak NG accent (en-us, en-gb, Scottish, Caribbean, ...) with one voice
variant (timbre, formants, breathiness: m1..m8, f1..f5, and named variants such as klatt or
belinda). Every variant is used by exactly one voice, so a voice held out for testing has a
timbre the model never heard, in no accent. Each voice says every word `TAKES` times, each
take at its own speed (words per minute) and pitch, with 0-150 ms of silence before the word.

The clips are generated on first use into the workspace cache
(`TRUSTFORGE_HOME/cache/spoken_digits/v1/WORD/VOICE_TAKE.wav`, 16-bit WAV at eSpeak's
22 050 Hz, so loading resamples them like any recording) with a `manifest.json` listing every
clip and its voice. The folder is filled under a temporary name and published with one
rename, so an interrupted generation leaves no half set; a complete set is reused. The speeds,
pitches and lead silences come from a fixed seed, not the run's: the data set is one fixed
set of clips, and the run's seed decides only how it is split.

Each clip's voice is its group: `prepare` splits by group, so the test (and validation)
voices are never heard in training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trustforge._extras import require
from trustforge._fs import atomic_folder
from trustforge.data._audio import read_audio
from trustforge.data._raw import RawData
from trustforge.errors import DataError

__all__ = ["WORDS", "VOICES", "TAKES", "generate", "load_spoken_digits"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Human-sounding variants (robots, whispers and croaks left out); each is used by one voice.
_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "Alex",
    "Andy",
    "Annie",
    "adam",
    "aunty",
    "belinda",
    "benjamin",
    "david",
    "edward",
    "grandma",
    "john",
    "linda",
    "max",
    "michel",
    "norbert",
    "paul",
)
# Accents are dealt round-robin to the variants: 32 voices, 4 per accent.
VOICES = tuple(f"{_ACCENTS[i % len(_ACCENTS)]}+{v}" for i, v in enumerate(_VARIANTS))
TAKES = 2
_SPEED = (130, 200)  # words per minute (eSpeak's default is 175)
_PITCH = (25, 75)  # eSpeak's 0..99 scale (default 50)
_LEAD = (0.0, 0.15)  # seconds of silence before the word
_SEED = 20240611
_VERSION = "v1"
_MANIFEST = "manifest.json"


def generate(cache: Path, *, workers: int | None = None) -> Path:
    """The folder of the generated clips under `cache`, generating it first when absent or incomplete.

    Raises:
        DataError: eSpeak NG is not installed, or it failed on a clip.
    """
    dest = cache / "spoken_digits" / _VERSION
    if _complete(dest):
        return dest
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DataError(
            "builtin:spoken_digits: espeak-ng is not installed; install it (Debian/Ubuntu package espeak-ng: apt-get install espeak-ng)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # incomplete (files deleted by hand): set it aside so the rename can publish
        stale = dest.with_name(f".{dest.name}.stale-{uuid.uuid4().hex[:8]}")
        os.replace(dest, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        with atomic_folder(dest) as tmp:
            _generate_into(tmp, espeak, workers or min(8, os.cpu_count() or 1))
    except OSError:
        # Another process published a complete set first; theirs is as good as ours.
        if not _complete(dest):
            raise
    return dest


def load_spoken_digits(cache: Path, sample_rate: int, samples: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str], np.ndarray]:
    """The clips as (waveforms (N, samples), labels, classes, paths, voices), generated if needed."""
    root = generate(cache)
    clips = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))["clips"]
    waves = np.stack([read_audio(root / c["path"], sample_rate, samples) for c in clips])
    labels = np.array([c["word"] for c in clips])
    voices = np.array([c["voice"] for c in clips])
    return waves, labels, list(WORDS), [c["path"] for c in clips], voices


def _plan() -> list[dict]:
    """Every clip to speak: word, voice, take, speed, pitch, lead silence (from the fixed seed)."""
    rng = np.random.default_rng(_SEED)
    plan = []
    for voice in VOICES:
        for word in WORDS:
            for take in range(TAKES):
                plan.append(
                    {
                        "path": f"{word}/{voice}_{take}.wav",
                        "word": word,
                        "voice": voice,
                        "take": take,
                        "speed": int(rng.integers(_SPEED[0], _SPEED[1] + 1)),
                        "pitch": int(rng.integers(_PITCH[0], _PITCH[1] + 1)),
                        "lead": round(float(rng.uniform(*_LEAD)), 4),
                    }
                )
    return plan


def _generate_into(folder: Path, espeak: str, workers: int) -> None:
    plan = _plan()
    for word in WORDS:
        (folder / word).mkdir()
    with tempfile.TemporaryDirectory(prefix="spoken-digits-") as raw_dir:
        # Threads suffice: each one waits on an espeak-ng process.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda c: _speak(espeak, c, Path(raw_dir), folder), plan))
    require("audio", "builtin:spoken_digits")
    import soundfile as sf

    manifest = {
        "version": _VERSION,
        "espeak_ng": _espeak_version(espeak),
        "sample_rate": sf.info(str(folder / plan[0]["path"])).samplerate,
        "clips": plan,
    }
    # Written last: a folder with a manifest listing every clip is a complete set.
    (folder / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _speak(espeak: str, clip: dict, raw_dir: Path, folder: Path) -> None:
    require("audio", "builtin:spoken_digits")
    import soundfile as sf

    raw = raw_dir / f"{clip['voice']}_{clip['word']}_{clip['take']}.wav"
    proc = subprocess.run(
        [espeak, "-v", clip["voice"], "-s", str(clip["speed"]), "-p", str(clip["pitch"]), "-w", str(raw), clip["word"]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 or not raw.is_file():
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise DataError(f"builtin:spoken_digits: espeak-ng failed for voice {clip['voice']!r} ({detail[0] if detail else proc.returncode})")
    wave, rate = sf.read(str(raw), dtype="float32")
    # eSpeak pads every word with ~0.4 s of silence; keep the word (to 10 ms each side) and
    # put a drawn lead silence before it, so words start at different times.
    loud = np.flatnonzero(np.abs(wave) > 1e-3 * max(float(np.abs(wave).max()), 1e-9))
    if len(loud) == 0:
        raise DataError(f"builtin:spoken_digits: espeak-ng produced silence for voice {clip['voice']!r}")
    margin = int(0.01 * rate)
    word = wave[max(0, loud[0] - margin) : loud[-1] + margin]
    out = np.concatenate([np.zeros(int(clip["lead"] * rate), dtype=np.float32), word])
    sf.write(str(folder / clip["path"]), out, rate, subtype="PCM_16")


def _espeak_version(espeak: str) -> str:
    proc = subprocess.run([espeak, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip()


def _complete(root: Path) -> bool:
    try:
        clips = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))["clips"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return len(clips) == len(VOICES) * len(WORDS) * TAKES and all((root / c["path"]).is_file() for c in clips)


_PROCESS_CACHE: list[Path] = []


def _process_cache() -> Path:
    """A temporary folder for the generated clips, made once per process."""
    if not _PROCESS_CACHE:
        _PROCESS_CACHE.append(Path(tempfile.mkdtemp(prefix="trustforge-spoken-digits-")))
    return _PROCESS_CACHE[0]


def spoken_digits_source(source: str, *, target: str | None, sample_rate: int, seconds: float, cache_dir: Path | None = None) -> RawData:
    """`builtin:spoken_digits` as audio RawData, generated into `cache_dir` on first use
    (`pipeline.run` passes its settings' cache; a direct caller without one gets a temporary
    folder kept for the life of the process: the library never reads the environment)."""
    if cache_dir is None:
        cache_dir = _process_cache()
    samples = int(round(sample_rate * seconds))
    waves, labels, classes, paths, voices = load_spoken_digits(cache_dir, sample_rate, samples)
    return RawData(
        "audio",
        target or "label",
        source,
        labels=labels,
        classes=classes,
        paths=paths,
        waveforms=waves,
        sample_rate=sample_rate,
        groups=voices,
    )
