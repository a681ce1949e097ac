"""What image and audio columns share: each row is one file, read as its bytes.

A table names the files by path, relative to the table's own folder; the table reads them
before the type sees the column (`FeatureType.files`, `data._files.read_linked_files`), so a
type only ever gets file contents: bytes, or base64 text where bytes cannot travel (a served
JSON request, a DataFrame built by hand). A request never names a path, so a server never
opens a file a client points at.

Each row becomes a float32 (C, H, W) grid (the image; the clip's log-mel spectrogram),
standardised per channel with the training statistics, a tensor of its own read by the `conv`
encoder. A missing file is the all-zero grid: the training mean, so the row is predicted from
its other columns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from trustforge.data.features._base import FeatureOptions, FeatureType, row_of
from trustforge.errors import DataError

__all__ = ["MediaType", "contents", "to_base64"]

_B64_PREFIX = ";base64,"
PROFILE_FILES = 200  # files the data profile measures at most, per column


def _spread(values: np.ndarray) -> dict[str, float]:
    """Low, median and high of per-file measurements (sizes and dimensions, not personal values)."""
    return {"low": float(values.min()), "median": float(np.median(values)), "high": float(values.max())}


def contents(col: pd.Series, *, where: str) -> list[bytes | None]:
    """Each row's file contents: bytes as they are, base64 text decoded (a `data:...;base64,`
    prefix allowed), None where missing.

    Raises:
        DataError: a text value is not base64 (a path, say: a request carries contents, not
            paths), naming `where`, the column and the row.
    """
    out: list[bytes | None] = []
    for i, v in enumerate(col.tolist()):
        row = row_of(col, i)
        if isinstance(v, (bytes, bytearray, memoryview)):
            out.append(bytes(v) or None)
        elif v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        elif isinstance(v, str):
            text = v.strip()
            if _B64_PREFIX in text[:100]:
                text = text.split(_B64_PREFIX, 1)[1]
            try:
                out.append(base64.b64decode(text, validate=True) or None if text else None)
            except (binascii.Error, ValueError):
                raise DataError(
                    f"{where}: column {col.name!r}, row {row}: expected the file's contents as base64 text, got "
                    f"{v[:40]!r}; paths are read only from a table file, relative to its folder"
                ) from None
        else:
            raise DataError(f"{where}: column {col.name!r}, row {row}: expected file contents, got {type(v).__name__}")
    return out


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class MediaType(FeatureType):
    """A column of files whose rows become standardised (C, H, W) grids. Subclasses set `files`,
    `magic` and `kinds`, and decode, re-encode, summarise and perturb one row."""

    slot = "grid"
    encoder = "conv"
    drift = "numeric"
    datatype = "BYTES"
    magic: ClassVar[tuple[bytes, ...]]  # how the contents of such a file begin
    kinds: ClassVar[str]  # what the files are called in messages ("PNG or JPEG images")
    stat_axis: ClassVar[int] = 1  # the axis of (N, C, H, W) the state's mean and std run along

    # ------------------------------------------------------------ one row (subclasses)

    def decode(self, state: Any, data: bytes, *, name: str) -> np.ndarray:
        """One file as the raw grid (C, H, W), before standardisation."""
        raise NotImplementedError

    def raw_signal(self, state: Any, data: bytes, *, name: str) -> np.ndarray:
        """One file as the signal a corruption acts on (pixels; samples); default: `decode`."""
        return self.decode(state, data, name=name)

    def to_bytes(self, state: Any, signal: np.ndarray) -> bytes:
        """A signal (as `raw_signal` returns it) written back as a file's bytes."""
        raise NotImplementedError

    def perturb(self, signals: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
        """The signals as real data goes wrong, more with `fraction`."""
        raise NotImplementedError

    def summary(self, data: bytes) -> float:
        """One number per file the drift monitor compares (no fitted state: it reads a file as is)."""
        raise NotImplementedError

    def dimensions(self, data: bytes) -> dict[str, float]:
        """Measurements of one file for the data profile (an image's width and height, a clip's
        seconds); an unreadable file raises `DataError`."""
        return {}

    # ------------------------------------------------------------ the column

    def profile(self, col: pd.Series) -> dict[str, Any]:
        # File sizes and each file's own measurements (`dimensions`), over at most
        # `PROFILE_FILES` files spread over the column, so a big folder costs little.
        try:
            data = [b for b in contents(col, where="profile") if b is not None]
        except DataError:
            return {}
        if not data:
            return {}
        picked = data[:: max(1, len(data) // PROFILE_FILES)][:PROFILE_FILES]
        sizes = np.array([len(b) for b in picked], dtype=np.float64) / 1024.0
        out: dict[str, Any] = {"files_measured": len(picked), "kib": _spread(sizes)}
        measured: dict[str, list[float]] = {}
        unreadable = 0
        for b in picked:
            try:
                for k, v in self.dimensions(b).items():
                    measured.setdefault(k, []).append(float(v))
            except DataError:
                unreadable += 1
        out.update({k: _spread(np.array(v)) for k, v in measured.items()})
        if unreadable:
            out["unreadable"] = unreadable
        return out

    def profile_values(self, col: pd.Series) -> None:
        return None  # one number per file says little about the target; decoding every file costs much

    def near_form(self, col: pd.Series) -> pd.Series:
        # Files compare by their bytes (a re-encoded copy is not found; see `data._duplicates`).
        out = [hashlib.blake2b(bytes(v), digest_size=16).hexdigest() if isinstance(v, (bytes, bytearray)) else v for v in col.tolist()]
        return pd.Series(out, index=col.index, dtype=object).where(col.notna(), None)

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        first = col.iloc[0]
        if isinstance(first, (bytes, bytearray)):
            return all(isinstance(v, (bytes, bytearray)) and bytes(v[:16]).startswith(self.magic) for v in col.head(200))
        if pd.api.types.is_numeric_dtype(col):
            return False
        names = col.astype(str).str.strip().str.lower()
        return bool(names.str.endswith(self.files).mean() >= 0.9 and not names.str.contains("\n").any())

    def conforms(self, col: pd.Series) -> np.ndarray:
        # A value is one file: a name with one of the type's suffixes (a table file's column, before
        # the files are read), or contents that begin as such a file does (bytes, or base64 text).
        # A number, a flag or other text is no file of this kind.
        out = np.ones(len(col), dtype=bool)
        for i, v in enumerate(col.tolist()):
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                continue
            if isinstance(v, (bytes, bytearray, memoryview)):
                out[i] = bytes(v[:16]).startswith(self.magic)
            elif isinstance(v, str):
                out[i] = v.strip().lower().endswith(self.files) or self._base64_file(v)
            else:
                out[i] = False
        return out

    def _base64_file(self, text: str) -> bool:
        text = text.strip()
        if _B64_PREFIX in text[:100]:
            text = text.split(_B64_PREFIX, 1)[1]
        try:
            head = base64.b64decode(text[:24], validate=True)  # 24 characters: 18 whole bytes, enough for every magic
        except (binascii.Error, ValueError):
            return False
        return head.startswith(self.magic)

    def raw_grids(self, state: Any, col: pd.Series, *, where: str) -> tuple[np.ndarray, np.ndarray]:
        """(raw grids float32 (N, C, H, W), zeros where missing; whether each row has a file)."""
        data = contents(col, where=where)
        grids = np.zeros((len(data), *self.grid(state)), dtype=np.float32)
        present = np.zeros(len(data), dtype=bool)
        for i, b in enumerate(data):
            if b is not None:
                grids[i] = self.decode(state, b, name=f"{where}: column {col.name!r}, row {row_of(col, i)}")
                present[i] = True
        return grids, present

    def encode(self, state: Any, col: pd.Series, *, where: str) -> np.ndarray:
        grids, present = self.raw_grids(state, col, where=where)
        shape = [1, 1, 1, 1]
        shape[self.stat_axis] = -1
        mean = np.asarray(state.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(state.std, dtype=np.float32).reshape(shape)
        z = (grids - mean) / std
        z[~present] = 0.0  # a missing file is the training mean
        return z

    def size(self, state: Any) -> int:
        c, h, w = self.grid(state)
        return c * h * w

    def signature(self, name: str, state: Any) -> dict[str, Any]:
        # One file per row, its contents base64-encoded: a request never names a path.
        return {**super().signature(name, state), "content": "base64", "files": list(self.files)}

    def monitor_values(self, col: pd.Series) -> np.ndarray:
        out = np.full(len(col), np.nan)
        for i, b in enumerate(contents(col, where="monitor")):
            if b is not None:
                try:
                    out[i] = self.summary(b)
                except DataError:  # an unreadable file never reached the model; the monitor counts it missing
                    pass
        return out

    def corrupt(self, state: Any, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        data = contents(col, where="corruption")
        out: list[bytes | None] = []
        for i, b in enumerate(data):
            if b is None:
                out.append(None)
                continue
            signal = self.raw_signal(state, b, name=f"corruption: column {col.name!r}, row {row_of(col, i)}")
            out.append(self.to_bytes(state, self.perturb(signal[None], fraction, rng)[0]))
        return pd.Series(out, index=col.index, name=col.name, dtype=object)

    def example(self, state: Any, rows: int, rng: np.random.Generator) -> list[str]:
        # Random signals in range, written as files and base64-encoded, as a request carries them.
        return [to_base64(self.to_bytes(state, self.random_signal(state, rng))) for _ in range(rows)]

    def random_signal(self, state: Any, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError
