"""Data sources: `builtin:NAME`, `csv:PATH`, `parquet:PATH`, `images:DIR`.

A source yields `RawData`: either a table (a DataFrame that holds the target column) or an
image set (float32 array (N, C, H, W) in [0, 1] with a label per image). Every failure names
the file or column at fault.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from trustforge.errors import DataError
from trustforge.spec._model import BUILTIN_SETS

__all__ = ["RawData", "load_source", "read_table", "read_image_folder", "read_image", "read_class_folders", "list_files",
           "BUILTIN_SOURCES", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Images above this many pixels are refused before decoding (decompression bombs).
_MAX_PIXELS = 40_000_000


@dataclass
class RawData:
    """Data as read from its source, before any fitting.

    Attributes:
        modality: "table" or "image".
        target: name of the target (a column of `frame` for tables).
        frame: the table, target column included (tables only).
        images: float32 (N, C, H, W) in [0, 1] (images only).
        labels: the label of each image as text (images only).
        classes: label names in their canonical order, when the source defines one.
        origin: the source string, for messages and lineage.
        sequences: float32 (N, T, F) numeric sequences (modality "sequence"); their targets
            are in `labels` (class labels, or numbers for regression), None when unlabelled.
        waveforms: float32 (N, T) mono clips at `sample_rate` Hz (modality "audio"); their
            class labels are in `labels` ("" when unlabelled).
        groups: one group name per row (e.g. the speaker of a clip), or None. When present,
            `prepare` splits by group, so no group is on both sides of a split.

    A "series" (task forecasting) is a table in `frame`: one value column (`target`) and
    optionally a time column; its length is its number of time steps.
    "interactions" (task recommendation) are a table in `frame`: user, item and optionally
    rating and time columns, one row per interaction (see `data._interactions`).
    "text" is a table in `frame` whose one input is the column named by `text` (see `data._text`).
    """

    modality: Literal["table", "image", "series", "sequence", "audio", "interactions", "text"]
    target: str
    origin: str
    frame: pd.DataFrame | None = None
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    paths: list[str] = field(default_factory=list)
    sequences: np.ndarray | None = None
    waveforms: np.ndarray | None = None
    sample_rate: int | None = None
    groups: np.ndarray | None = None
    text: str | None = None  # modality "text": the text column of `frame`

    def __len__(self) -> int:
        if self.sequences is not None:
            return len(self.sequences)
        if self.waveforms is not None:
            return len(self.waveforms)
        return len(self.frame) if self.frame is not None else len(self.images)  # type: ignore[arg-type]

    def digest(self) -> str:
        """SHA-256 of the data content (not of file metadata), for lineage."""
        h = hashlib.sha256()
        if self.frame is not None:
            h.update(",".join(map(str, self.frame.columns)).encode())
            h.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        elif self.sequences is not None:
            h.update(np.ascontiguousarray(self.sequences).tobytes())
            h.update("\n".join(map(str, self.labels if self.labels is not None else [])).encode())
        elif self.waveforms is not None:
            h.update(f"{self.sample_rate}\n".encode())
            h.update(np.ascontiguousarray(self.waveforms).tobytes())
            h.update("\n".join(map(str, self.labels if self.labels is not None else [])).encode())
        else:
            h.update(np.ascontiguousarray(self.images).tobytes())
            h.update("\n".join(map(str, self.labels)).encode())
        return h.hexdigest()


def load_source(source: str, *, target: str | None, image_size: tuple[int, int], channels: int, seed: int,
                sample_rate: int = 16000, seconds: float = 1.0) -> RawData:
    """Read the data named by a spec's `data.source`.

    Args:
        source: `builtin:NAME`, `csv:PATH`, `parquet:PATH` or `images:DIR`.
        target: the target column for tables (builtin sets default to `target`).
        image_size: (H, W) every image of an image folder is resized to.
        channels: 1 (grayscale) or 3 (RGB) for image folders.
        seed: seed of generated sets (`builtin:shapes`).
        sample_rate, seconds: audio (`audio:DIR`, `builtin:spoken_digits`) is resampled to
            `sample_rate` Hz and cut or padded to `seconds`.
    """
    scheme, _, rest = source.partition(":")
    if scheme == "audio" or source == "builtin:spoken_digits":
        from trustforge.data._audio import load_audio_source

        return load_audio_source(source, target=target, sample_rate=sample_rate, seconds=seconds)
    if scheme == "builtin":
        return _builtin(rest, target=target, seed=seed)
    if scheme in ("csv", "parquet", "jsonl"):
        frame = read_table(Path(rest), scheme)
        return _table(frame, target=target, origin=source, where=rest)
    if scheme == "images":
        images, labels, classes, paths = read_image_folder(Path(rest), image_size, channels)
        return RawData("image", target or "label", source, images=images, labels=labels, classes=classes, paths=paths)
    if scheme == "npz":
        from trustforge.data._sequences import read_npz

        return read_npz(Path(rest), origin=source, target=target)
    raise DataError(f"data.source: unknown scheme {scheme!r}; use builtin, csv, parquet or images")


# ---------------------------------------------------------------------------- tables


def read_table(path: Path, kind: str | None = None, *, skip_blank_lines: bool = True) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON Lines file into a DataFrame, naming the file in every error.

    `skip_blank_lines=False` keeps a CSV line that is empty or all white space as a row of
    missing values: in a one-column file of texts it is an empty text, and dropping it would
    shift every later prediction onto the wrong row.
    """
    suffix = path.suffix.lower()
    kind = kind or ("parquet" if suffix in (".parquet", ".pq") else "jsonl" if suffix in (".jsonl", ".ndjson") else "csv")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if kind == "jsonl":  # one JSON object per line; its errors name the line (see data._text)
        from trustforge.data._text import read_jsonl

        return read_jsonl(path)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, skipinitialspace=True, skip_blank_lines=skip_blank_lines)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise DataError(f"{path}: cannot read as {kind} ({detail})") from None
    except Exception as exc:  # pyarrow raises its own error types for corrupt files
        raise DataError(f"{path}: cannot read as {kind} ({exc.__class__.__name__})") from None
    if frame.columns.duplicated().any():
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"{path}: duplicate column names {dup}")
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{path}: the file has no rows")
    return frame


def _table(frame: pd.DataFrame, *, target: str | None, origin: str, where: str) -> RawData:
    if target is None:
        raise DataError(f"{where}: data.target is required for {origin.partition(':')[0]} sources")
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20])) + (", ..." if len(frame.columns) > 20 else "")
        raise DataError(f"{where}: no column {target!r} (the spec's data.target); columns are: {cols}")
    return RawData("table", target, origin, frame=frame)


# ---------------------------------------------------------------------------- builtin sets

BUILTIN_SOURCES = BUILTIN_SETS


def _builtin(name: str, *, target: str | None, seed: int) -> RawData:
    from sklearn import datasets

    origin = f"builtin:{name}"
    if name == "digits":
        d = datasets.load_digits()
        # 8×8 grayscale, pixel values 0..16 → [0, 1], one channel.
        images = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
        labels = np.array([str(int(t)) for t in d.target])
        return RawData("image", target or "label", origin, images=images, labels=labels, classes=[str(i) for i in range(10)])
    if name == "shapes":
        from trustforge.data._shapes import SHAPE_CLASSES, make_shapes

        images, y = make_shapes(n_samples=3000, seed=seed)
        labels = np.array([SHAPE_CLASSES[i] for i in y])
        return RawData("image", target or "label", origin, images=images, labels=labels, classes=list(SHAPE_CLASSES))
    if name in ("air_passengers", "seasonal"):
        from trustforge.data._series import builtin_series

        return builtin_series(name, target=target, seed=seed)
    if name in ("reviews", "chinese_reviews"):
        from trustforge.data._text_sets import builtin_text

        return builtin_text(name, target=target)
    if name in ("fraud", "credit_default"):
        from trustforge.data._fraud import builtin_risk_table

        frame, default_target, classes = builtin_risk_table(name, seed=seed)
        raw = _table(frame, target=target or default_target, origin=origin, where=origin)
        raw.classes = classes if raw.target == default_target else None
        return raw
    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "diabetes": datasets.load_diabetes,
    }
    if name not in loaders:
        raise DataError(f"data.source: unknown builtin set {name!r}; choose from {', '.join(BUILTIN_SOURCES)}")
    d = loaders[name](as_frame=True)
    frame = d.frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    classes = None
    if name != "diabetes":
        # Use the readable class names (e.g. malignant/benign) as labels, in sklearn's order.
        names = [str(n) for n in d.target_names]
        frame["target"] = [names[int(i)] for i in frame["target"]]
        classes = names
    raw = _table(frame, target=target or "target", origin=origin, where=origin)
    raw.classes = classes
    return raw


# ---------------------------------------------------------------------------- images


def read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one image file to float32 (C, H, W) in [0, 1]; a bad file raises DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > _MAX_PIXELS:
                    raise DataError(f"{path}: image is too large ({img.width}×{img.height} pixels)")
                wide = img.mode.startswith("I")
                if wide:
                    # 16-bit grayscale PNG (medical scans, depth maps): Pillow's convert("L")
                    # clips at 255 instead of scaling, so scale 0..65535 to [0, 1] ourselves.
                    img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) / 65535.0, 0.0, 1.0))
                else:
                    img = img.convert("L" if channels == 1 else "RGB")
                if img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32)
                if wide:
                    arr = np.repeat(arr[:, :, None], 3, axis=2) if channels == 3 else arr
                else:
                    arr = arr / 255.0
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return arr[None, :, :] if channels == 1 else arr.transpose(2, 0, 1)


def read_class_folders(root: Path, suffixes: tuple[str, ...], read: Callable[[Path], np.ndarray], *,
                       what: str, kinds: str, layout: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read `root/CLASS/FILE` for the files whose suffix is in `suffixes`, each with `read`;
    class names are the sub-folder names, sorted (hidden folders skipped). `what`, `kinds` and
    `layout` word the errors ("image" folder, "PNG or JPEG images", "one sub-folder per class").

    Returns:
        (the read arrays stacked, labels (N,) text, classes, paths relative to `root`).

    Raises:
        DataError: no such folder, fewer than two class folders, or a class folder without
            such files, each named; `read` names a file it cannot read.
    """
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: needs {layout} (at least 2); found {len(classes)}")
    arrays, labels, paths = [], [], []
    for cls in classes:
        files = sorted(p for p in (root / cls).iterdir() if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise DataError(f"{root / cls}: no {kinds} in class folder {cls!r}")
        for f in files:
            arrays.append(read(f))
            labels.append(cls)
            paths.append(str(f.relative_to(root)))
    return np.stack(arrays), np.array(labels), classes, paths


def list_files(root: Path, suffixes: tuple[str, ...], *, what: str, kinds: str) -> list[Path]:
    """Every file under `root` (recursively) whose suffix is in `suffixes`, sorted, for prediction."""
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder not found")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{root}: no {kinds} found")
    return files


def read_image_folder(root: Path, size: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read `root/CLASS/*.png|jpg|jpeg`; class names are the sub-folder names, sorted."""
    return read_class_folders(root, IMAGE_SUFFIXES, lambda f: read_image(f, size, channels), what="image",
                              kinds="PNG or JPEG images", layout="one sub-folder per class")


def list_images(root: Path) -> list[Path]:
    """All PNG/JPEG files under `root` (recursively), sorted, for prediction."""
    return list_files(root, IMAGE_SUFFIXES, what="image", kinds="PNG or JPEG images")
