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

import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from trustforge.data._files import (
    IMAGE_SUFFIXES,
    TABLE_FORMATS,
    list_files,
    read_class_folders,
    read_image,
    read_image_folder,
    read_table,
)
from trustforge.data._interactions import BUILTIN_INTERACTIONS
from trustforge.data._raw import RawData
from trustforge.errors import DataError

__all__ = [
    "RawData",
    "load_source",
    "read_table",
    "read_image_folder",
    "read_image",
    "read_class_folders",
    "list_files",
    "BUILTIN_SOURCES",
    "source_holds_text",
    "BUILTIN_INTERACTIONS",
    "IMAGE_SUFFIXES",
    "SOURCES",
    "SOURCE_FORMS",
    "Source",
    "ReadOptions",
    "source_of",
    "resolve_source",
    "redact_source",
    "written_source",
    "interaction_roles",
    "source_holds",
]


def load_source(
    source: str,
    *,
    target: str | None,
    image_size: tuple[int, int],
    channels: int,
    seed: int,
    sample_rate: int = 16000,
    seconds: float = 1.0,
    cache_dir: Path | None = None,
) -> RawData:
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
        """The source with a relative path made absolute against `base` (a spec's folder). Its
        symbolic links are kept, not followed: a run folder's copy of the spec names the file
        through them, so a project moved with a linked `data/` folder still finds it."""
        if not self.is_path:
            return f"{self.scheme}:{rest}"
        p = Path(rest).expanduser()
        return f"{self.scheme}:{p if p.is_absolute() else Path(os.path.abspath(base / p))}"

    def written(self, rest: str, folder: Path | None) -> str:
        """The source with its path for a copy of the spec saved in `folder`: relative to it,
        whatever the user wrote (the same in every process, a tune worker's too, and never the
        absolute path); `folder` None: as the user wrote it (`_shown.remember_written`)."""
        if not self.is_path:
            return f"{self.scheme}:{rest}"
        if folder is None:
            from trustforge._shown import shown  # the record of what the spec wrote

            return f"{self.scheme}:{shown(rest)}"
        return f"{self.scheme}:{Path(os.path.relpath(Path(rest).absolute(), Path(folder).absolute())).as_posix()}"

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


def written_source(source: str, folder: Path | None = None) -> str:
    """`source` with its path for a copy of the spec saved in `folder`, or as the user wrote it.

    `csv:../tables/train.csv` in `proj/specs/x.yaml`, read as `csv:/home/ann/proj/tables/train.csv`,
    becomes `csv:../../../tables/train.csv` from the run folder `proj/.trustforge/runs/x-.../`,
    which a spec saved there resolves to the same file; a path written absolute is made relative
    to `folder` too. `folder` None: `csv:../tables/train.csv`, as written (an absolute one as
    written). Builtin names are unchanged.
    """
    kind, rest = source_of(source)
    return kind.written(rest, folder)


def require_present(source: str, field: str) -> None:
    """Refuse a source whose file or folder is not there (`field` names the spec field).

    Raises:
        DataError: naming the path as the spec wrote it.
    """
    from trustforge._shown import written_relative

    kind, rest = source_of(source)
    if kind.is_path and not Path(rest).exists():
        where = " (a spec's data path is relative to the spec's folder, not the working folder)" if written_relative(rest) else ""
        raise DataError(f"{rest}: data file not found ({field}){where}")


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


def source_holds_text(source: str) -> bool:
    """True when `source` is a builtin text set (modality text without `data.text`); False for
    any other source, or text that is not a source."""
    scheme, _, name = source.partition(":")
    kind = SOURCES.get(scheme.strip())
    return kind is not None and bool(kind.names) and _BUILTIN_LOADERS.get(name.strip()) is _text_set


def interaction_roles(source: str) -> dict[str, str] | None:
    """The columns (user, item, rating, time) of a builtin interactions table, or None for other sources."""
    scheme, _, name = source.partition(":")
    kind = SOURCES.get(scheme.strip())
    return BUILTIN_INTERACTIONS.get(name.strip()) if kind is not None and kind.names else None


# ---------------------------------------------------------------------------- tables


def _read_table_source(rest: str, origin: str, o: ReadOptions) -> RawData:
    scheme = origin.partition(":")[0].strip()
    raw = _table(read_table(Path(rest), scheme), target=o.target, origin=origin, where=rest)
    raw.root = str(Path(rest).parent)  # image and audio paths in its columns are relative to its folder
    return raw


def did_you_mean(name: str, columns: Any) -> str:
    """ "; did you mean 'X'?" for the closest of all `columns` (not only those a message lists), or ""."""
    import difflib

    names = [str(c) for c in columns]
    folded = {n.casefold(): n for n in names}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    return f"; did you mean {folded[close[0]]!r}?" if close else ""


def _table(frame: pd.DataFrame, *, target: str | None, origin: str, where: str) -> RawData:
    if target is None:
        raise DataError(f"{where}: data.target is required for {origin.partition(':')[0]} sources")
    if target not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20])) + (", ..." if len(frame.columns) > 20 else "")
        raise DataError(f"{where}: no column {target!r} (the spec's data.target); columns are: {cols}{did_you_mean(target, frame.columns)}")
    return RawData("table", target, origin, frame=frame)


# ---------------------------------------------------------------------------- builtin sets


# The toy sets scikit-learn ships as CSV files inside its package are read here without
# importing scikit-learn, whose import takes about a second: most of a small run's start. The
# columns get the names scikit-learn's loaders give them; should a release move the files,
# its loader is used instead.
_CANCER_MEASURES = [
    "radius", "texture", "perimeter", "area", "smoothness",
    "compactness", "concavity", "concave points", "symmetry", "fractal dimension",
]  # fmt: skip
_CANCER_COLUMNS = (
    [f"mean {m}" for m in _CANCER_MEASURES] + [f"{m} error" for m in _CANCER_MEASURES] + [f"worst {m}" for m in _CANCER_MEASURES]
)


def _sklearn_file(name: str) -> Path | None:
    """scikit-learn's data file `name`, found without importing scikit-learn; None if it is not there."""
    import importlib.util

    found = importlib.util.find_spec("sklearn")  # locates the package; runs none of its code
    for folder in (found.submodule_search_locations or []) if found is not None else []:
        path = Path(folder) / "datasets" / "data" / name
        if path.is_file():
            return path
    return None


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Digits as scikit-learn's `load_digits` gives them: images (N, 8, 8) float64 0..16, targets (N,) int."""
    path = _sklearn_file("digits.csv.gz")
    if path is None:
        from sklearn import datasets

        d = datasets.load_digits()
        return d.images, d.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _breast_cancer_frame() -> tuple[pd.DataFrame, list[str]] | None:
    """Breast cancer as `load_breast_cancer(as_frame=True)` gives it (30 float columns and an int
    `target`) and its class names, read from scikit-learn's CSV; None when the file is not there."""
    path = _sklearn_file("breast_cancer.csv")
    if path is None:
        return None
    with path.open(encoding="utf-8") as f:
        header = f.readline().strip().split(",")  # rows, columns, then the class names
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    if data.shape != (int(header[0]), int(header[1]) + 1) or int(header[1]) != len(_CANCER_COLUMNS):
        return None
    frame = pd.DataFrame(data[:, :-1], columns=_CANCER_COLUMNS)
    frame["target"] = data[:, -1].astype(np.int64)
    return frame, header[2:]


def _digits(name: str, origin: str, o: ReadOptions) -> RawData:
    images, target = _digits_arrays()
    # 8×8 grayscale, pixel values 0..16 → [0, 1], one channel.
    images = (images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = np.array([str(int(t)) for t in target])
    return RawData("image", o.target or "label", origin, images=images, labels=labels, classes=[str(i) for i in range(10)])


def _shapes(name: str, origin: str, o: ReadOptions) -> RawData:
    from trustforge.data._shapes import SHAPE_CLASSES, make_shapes

    images, y = make_shapes(n_samples=3000, seed=o.seed)
    labels = np.array([SHAPE_CLASSES[i] for i in y])
    return RawData("image", o.target or "label", origin, images=images, labels=labels, classes=list(SHAPE_CLASSES))


def _sklearn_table(name: str, origin: str, o: ReadOptions) -> RawData:
    read = _breast_cancer_frame() if name == "breast_cancer" else None
    if read is not None:
        frame, target_names = read
    else:
        from sklearn import datasets

        d = getattr(datasets, f"load_{name}")(as_frame=True)
        frame, target_names = d.frame.copy(), list(d.target_names) if name != "diabetes" else []
    frame.columns = [str(c) for c in frame.columns]
    classes = None
    if name != "diabetes":
        # Use the readable class names (e.g. malignant/benign) as labels, in sklearn's order.
        names = [str(n) for n in target_names]
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
    from trustforge.data._spoken_digits import spoken_digits_source

    return spoken_digits_source(origin, target=o.target, sample_rate=o.sample_rate, seconds=o.seconds, cache_dir=o.cache_dir)


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


def _builtin(name: str, origin: str, o: ReadOptions) -> RawData:
    if name not in _BUILTIN_LOADERS:
        raise DataError(f"data.source: unknown builtin set {name!r}; choose from {', '.join(BUILTIN_SOURCES)}")
    return _BUILTIN_LOADERS[name](name, origin, o)


# ---------------------------------------------------------------------------- images


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


# Every scheme of `data.source`, in the order messages list them. A new scheme is one entry here.
SOURCES: dict[str, Source] = {
    s.scheme: s
    for s in (
        Source("builtin", "NAME", _builtin, names=BUILTIN_SOURCES),
        *(Source(name, "PATH", _read_table_source, suffixes=suffixes, frame=frame) for name, (suffixes, frame) in TABLE_FORMATS.items()),
        Source("images", "DIR", _images, holds="image"),
        Source("audio", "DIR", _audio, holds="audio"),
        Source("npz", "PATH", _npz, holds="sequence"),
    )
}
_FORMS = [f"{s.scheme}:{s.rest}" for s in SOURCES.values()]
SOURCE_FORMS = ", ".join(_FORMS[:-1]) + " or " + _FORMS[-1]  # "builtin:NAME, csv:PATH, ... or npz:PATH", for messages
