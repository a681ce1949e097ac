"""Data sources: the one table of `data.source` schemes, and the readers behind it.

`SOURCES` maps each scheme (`builtin:NAME`, `csv:PATH`, `parquet:PATH`, `jsonl:PATH`,
`images:DIR`, `audio:DIR`, `npz:PATH`) to its reader, says whether the rest of the source is
a path (resolved against the spec's folder, and cut to its last part in anything that leaves
the machine), and which values a name may take. The spec's validators, the spec loader and
the evidence ask this table; no other module lists the schemes.

A source yields `RawData`: either a table (a DataFrame that holds the target column) or an
image set (float32 array (N, C, H, W) in [0, 1] with a label per image). Every failure names
the file or column at fault.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Callable, Literal

import numpy as np
import pandas as pd

from trustforge.errors import DataError

__all__ = ["RawData", "load_source", "read_table", "read_image_folder", "read_image", "read_class_folders", "list_files",
           "BUILTIN_SOURCES", "BUILTIN_INTERACTIONS", "IMAGE_SUFFIXES", "SOURCES", "SOURCE_FORMS", "Source", "ReadOptions",
           "source_of", "resolve_source", "redact_source", "interaction_roles", "source_holds"]

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
                sample_rate: int = 16000, seconds: float = 1.0, cache_dir: Path | None = None) -> RawData:
    """Read the data named by a spec's `data.source`, through the scheme's reader in `SOURCES`.

    Args:
        source: `SCHEME:REST`, one of `SOURCE_FORMS`.
        target: the target column for tables (builtin sets default to `target`).
        image_size: (H, W) every image of an image folder is resized to.
        channels: 1 (grayscale) or 3 (RGB) for image folders.
        seed: seed of generated sets (`builtin:shapes`).
        sample_rate, seconds: audio (`audio:DIR`, `builtin:spoken_digits`) is resampled to
            `sample_rate` Hz and cut or padded to `seconds`.
        cache_dir: where generated sets are kept (`builtin:spoken_digits`); `pipeline.run` passes its settings'.
    """
    kind, rest = source_of(source)
    return kind.read(rest, source, ReadOptions(target, image_size, channels, seed, sample_rate, seconds, cache_dir))


@dataclass(frozen=True)
class ReadOptions:
    """What a reader needs beside the source: the spec's target and how images and audio are read."""

    target: str | None
    image_size: tuple[int, int] = (32, 32)
    channels: int = 3
    seed: int = 0
    sample_rate: int = 16000
    seconds: float = 1.0
    cache_dir: Path | None = None


@dataclass(frozen=True)
class Source:
    """One scheme of `data.source`.

    Attributes:
        scheme: the text before the colon.
        rest: what follows the colon, as messages name it: NAME, PATH (a file) or DIR (a folder).
        read: (rest, the whole source, options) -> RawData.
        names: the only values the rest may take (the builtin sets), or None for a path.
        suffixes: table files: the file suffixes that mean this format when no scheme says it.
        frame: table files: reads the file into a DataFrame (errors name the file).
        holds: what the source holds, known without reading it (the default model follows
            from it): "table", "image", "audio" or "sequence"; builtin sets say it per name.
    """

    scheme: str
    rest: Literal["NAME", "PATH", "DIR"]
    read: Callable[[str, str, ReadOptions], RawData]
    names: tuple[str, ...] | None = None
    suffixes: tuple[str, ...] = ()
    frame: Callable[[Path, bool], pd.DataFrame] | None = None
    holds: Literal["table", "image", "audio", "sequence"] = "table"

    @property
    def is_path(self) -> bool:
        """The rest is a file or folder of this machine."""
        return self.rest != "NAME"

    def resolve(self, rest: str, base: Path) -> str:
        """The source with a relative path made absolute against `base` (a spec's folder)."""
        if not self.is_path:
            return f"{self.scheme}:{rest}"
        p = Path(rest).expanduser()
        return f"{self.scheme}:{p if p.is_absolute() else (base / p).resolve()}"

    def redact(self, rest: str) -> str:
        """The source as it may leave this machine: a path cut to its file or folder name."""
        if not self.is_path:
            return f"{self.scheme}:{rest}"
        # PureWindowsPath splits on both / and \\, so a path written on Windows is cut too.
        return f"{self.scheme}:{PureWindowsPath(rest).name or '.'}"


def source_of(source: str) -> tuple[Source, str]:
    """The scheme of `source` in `SOURCES` and the rest after the colon (white space around both dropped).

    Raises:
        DataError: no colon, an unknown scheme or an empty rest.
    """
    scheme, sep, rest = source.partition(":")
    kind = SOURCES.get(scheme.strip())
    if not sep or kind is None or not rest.strip():
        raise DataError(f"data.source: must be {SOURCE_FORMS}; got {source!r}")
    return kind, rest.strip()


def resolve_source(source: str, base: Path) -> str:
    """`source` with a relative path resolved against `base` (the folder of the spec that names it)."""
    kind, rest = source_of(source)
    return kind.resolve(rest, base)


def redact_source(source: str) -> str:
    """`source` as it may leave this machine (packages, evidence, reports): `csv:/home/x/data.csv`
    becomes `csv:data.csv`; builtin names are unchanged. Text that is not a source is returned as is."""
    try:
        kind, rest = source_of(source)
    except DataError:
        return source
    return kind.redact(rest)


def source_holds(source: str) -> Literal["table", "image", "audio", "sequence"]:
    """What `source` holds, known from its text alone: "table" (columns, texts and series
    included), "image", "audio" or "sequence".

    Raises:
        DataError: not a source of `SOURCES`.
    """
    kind, rest = source_of(source)
    return _BUILTIN_HOLDS.get(rest, "table") if kind.names is not None else kind.holds


def interaction_roles(source: str) -> dict[str, str] | None:
    """The columns (user, item, rating, time) of a builtin interactions table, or None for other sources."""
    scheme, _, name = source.partition(":")
    kind = SOURCES.get(scheme.strip())
    return BUILTIN_INTERACTIONS.get(name.strip()) if kind is not None and kind.names else None


# ---------------------------------------------------------------------------- tables


def read_table(path: Path, kind: str | None = None, *, skip_blank_lines: bool = True) -> pd.DataFrame:
    """Read a table file (CSV, Parquet or JSON Lines) into a DataFrame, naming the file in every error.

    Args:
        kind: a table scheme of `SOURCES`; default: the one whose suffixes hold the file's
            suffix, else csv.
        skip_blank_lines: False keeps a CSV line that is empty or all white space as a row of
            missing values: in a one-column file of texts it is an empty text, and dropping it
            would shift every later prediction onto the wrong row.
    """
    suffix = path.suffix.lower()
    tables = [s for s in SOURCES.values() if s.frame is not None]
    reader = SOURCES[kind] if kind else next((s for s in tables if suffix in s.suffixes), SOURCES["csv"])
    if reader.frame is None:
        raise DataError(f"{path}: {kind} is not a table format ({', '.join(s.scheme for s in tables)})")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    frame = reader.frame(path, skip_blank_lines)
    if frame.columns.duplicated().any():
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"{path}: duplicate column names {dup}")
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{path}: the file has no rows")
    return frame


def _pandas_reader(kind: str, read: Callable[..., pd.DataFrame]) -> Callable[[Path, bool], pd.DataFrame]:
    def frame(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
        try:
            return read(path, skip_blank_lines)
        except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
            raise DataError(f"{path}: cannot read as {kind} ({detail})") from None
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"{path}: cannot read as {kind} ({exc.__class__.__name__})") from None

    return frame


def _read_jsonl(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
    # One JSON object per line; its errors name the line (see data._text).
    from trustforge.data._text import read_jsonl

    return read_jsonl(path)


def _read_table_source(rest: str, origin: str, o: ReadOptions) -> RawData:
    scheme = origin.partition(":")[0].strip()
    return _table(read_table(Path(rest), scheme), target=o.target, origin=origin, where=rest)


def _table(frame: pd.DataFrame, *, target: str | None, origin: str, where: str) -> RawData:
    if target is None:
        raise DataError(f"{where}: data.target is required for {origin.partition(':')[0]} sources")
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20])) + (", ..." if len(frame.columns) > 20 else "")
        raise DataError(f"{where}: no column {target!r} (the spec's data.target); columns are: {cols}")
    return RawData("table", target, origin, frame=frame)


# ---------------------------------------------------------------------------- builtin sets

def _digits(name: str, origin: str, o: ReadOptions) -> RawData:
    from sklearn import datasets

    d = datasets.load_digits()
    # 8×8 grayscale, pixel values 0..16 → [0, 1], one channel.
    images = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = np.array([str(int(t)) for t in d.target])
    return RawData("image", o.target or "label", origin, images=images, labels=labels, classes=[str(i) for i in range(10)])


def _shapes(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._shapes import SHAPE_CLASSES, make_shapes

    images, y = make_shapes(n_samples=3000, seed=o.seed)
    labels = np.array([SHAPE_CLASSES[i] for i in y])
    return RawData("image", o.target or "label", origin, images=images, labels=labels, classes=list(SHAPE_CLASSES))


def _sklearn_table(name: str, origin: str, o: ReadOptions) -> RawData:
    from sklearn import datasets

    d = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = d.frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    classes = None
    if name != "diabetes":
        # Use the readable class names (e.g. malignant/benign) as labels, in sklearn's order.
        names = [str(n) for n in d.target_names]
        frame["target"] = [names[int(i)] for i in frame["target"]]
        classes = names
    raw = _table(frame, target=o.target or "target", origin=origin, where=origin)
    raw.classes = classes
    return raw


def _series(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._series import builtin_series

    return builtin_series(name, target=o.target, seed=o.seed)


def _risk_table(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._fraud import builtin_risk_table

    frame, default_target, classes = builtin_risk_table(name, seed=o.seed)
    raw = _table(frame, target=o.target or default_target, origin=origin, where=origin)
    raw.classes = classes if raw.target == default_target else None
    return raw


def _text_set(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._text_sets import builtin_text

    return builtin_text(name, target=o.target)


def _birdstrikes(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._birdstrikes import birdstrikes

    raw = _table(birdstrikes(), target=o.target or "disrupted", origin=origin, where=origin)
    raw.classes = ["no", "yes"] if raw.target == "disrupted" else None
    return raw


def _spoken_digits(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._audio import load_audio_source

    return load_audio_source(origin, target=o.target, sample_rate=o.sample_rate, seconds=o.seconds, cache_dir=o.cache_dir)


def _interactions_table(name: str, origin: str, o: ReadOptions) -> RawData:
    # An interactions table read as a plain table (task recommendation reads it in data._interactions).
    from trustforge.data._interactions import _movielens_small

    return _table(_movielens_small(), target=o.target, origin=origin, where=origin)


# The data sets that ship with TrustForge (sklearn's bundled sets and generated or packaged
# ones), each with its loader (name, source, options) -> RawData.
_BUILTIN_LOADERS: dict[str, Callable[[str, str, ReadOptions], RawData]] = {
    "digits": _digits,
    "breast_cancer": _sklearn_table,
    "wine": _sklearn_table,
    "iris": _sklearn_table,
    "diabetes": _sklearn_table,
    "shapes": _shapes,
    "birdstrikes": _birdstrikes,
    "air_passengers": _series,
    "seasonal": _series,
    "fraud": _risk_table,
    "credit_default": _risk_table,
    "movielens_small": _interactions_table,
    "spoken_digits": _spoken_digits,
    "reviews": _text_set,
    "chinese_reviews": _text_set,
}
BUILTIN_SOURCES = tuple(_BUILTIN_LOADERS)
# The builtin sets that are not tables (series, text sets and interactions are tables too).
_BUILTIN_HOLDS: dict[str, Literal["image", "audio"]] = {"digits": "image", "shapes": "image", "spoken_digits": "audio"}
# Builtin interactions tables (task recommendation) and their columns: the default `data.interactions`.
BUILTIN_INTERACTIONS = {"movielens_small": {"user": "userId", "item": "movieId", "rating": "rating", "time": "timestamp"}}


def _builtin(name: str, origin: str, o: ReadOptions) -> RawData:
    if name not in _BUILTIN_LOADERS:
        raise DataError(f"data.source: unknown builtin set {name!r}; choose from {', '.join(BUILTIN_SOURCES)}")
    return _BUILTIN_LOADERS[name](name, origin, o)


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


# ---------------------------------------------------------------------------- the table


def _images(rest: str, origin: str, o: ReadOptions) -> RawData:
    images, labels, classes, paths = read_image_folder(Path(rest), o.image_size, o.channels)
    return RawData("image", o.target or "label", origin, images=images, labels=labels, classes=classes, paths=paths)


def _audio(rest: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._audio import load_audio_source

    return load_audio_source(origin, target=o.target, sample_rate=o.sample_rate, seconds=o.seconds)


def _npz(rest: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._sequences import read_npz

    return read_npz(Path(rest), origin=origin, target=o.target)


def _csv(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
    return pd.read_csv(path, skipinitialspace=True, skip_blank_lines=skip_blank_lines)


def _parquet(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
    return pd.read_parquet(path)


# Every scheme of `data.source`, in the order messages list them. A new scheme is one entry here.
SOURCES: dict[str, Source] = {s.scheme: s for s in (
    Source("builtin", "NAME", _builtin, names=BUILTIN_SOURCES),
    Source("csv", "PATH", _read_table_source, suffixes=(".csv",), frame=_pandas_reader("csv", _csv)),
    Source("parquet", "PATH", _read_table_source, suffixes=(".parquet", ".pq"), frame=_pandas_reader("parquet", _parquet)),
    Source("jsonl", "PATH", _read_table_source, suffixes=(".jsonl", ".ndjson"), frame=_read_jsonl),
    Source("images", "DIR", _images, holds="image"),
    Source("audio", "DIR", _audio, holds="audio"),
    Source("npz", "PATH", _npz, holds="sequence"),
)}
_FORMS = [f"{s.scheme}:{s.rest}" for s in SOURCES.values()]
SOURCE_FORMS = ", ".join(_FORMS[:-1]) + " or " + _FORMS[-1]  # "builtin:NAME, csv:PATH, ... or npz:PATH", for messages
