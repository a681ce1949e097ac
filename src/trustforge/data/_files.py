"""Reading files: tables (CSV, Parquet, JSON Lines), images, and folders of class sub-folders.

Every failure names the file. The sources table (`data._sources.SOURCES`) reads through these;
so do prediction inputs.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from trustforge._header import refuse_repeated, refuse_repeated_csv_header
from trustforge._shown import written_relative
from trustforge.errors import DataError

log = logging.getLogger("trustforge.data")

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_LINKED_BYTES",
    "TABLE_FORMATS",
    "decode_image",
    "encode_png",
    "list_files",
    "list_images",
    "read_class_folders",
    "read_image",
    "read_image_folder",
    "read_jsonl",
    "read_linked_files",
    "require_file",
    "read_table",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Images above this many pixels are refused before decoding (decompression bombs).
_MAX_PIXELS = 40_000_000


# ---------------------------------------------------------------------------- tables


def read_table(path: Path, kind: str | None = None, *, skip_blank_lines: bool = True) -> pd.DataFrame:
    """Read a table file (CSV, Parquet or JSON Lines) into a DataFrame, naming the file in every error.

    Args:
        kind: a table format of `TABLE_FORMATS` (a scheme of the sources table); default: the
            one whose suffixes hold the file's suffix (another suffix is refused: a .json or
            .xlsx file read as CSV gave errors about its header or encoding).
        skip_blank_lines: False keeps a CSV line that is empty or all white space as a row of
            missing values: in a one-column file of texts it is an empty text, and dropping it
            would shift every later prediction onto the wrong row.
    """
    suffix = path.suffix.lower()
    kind = kind or next((k for k, (suffixes, _) in TABLE_FORMATS.items() if suffix in suffixes), None)
    if kind is None:
        each = [first + (f" ({', '.join(more)})" if more else "") for (first, *more), _ in TABLE_FORMATS.values()]
        formats = ", ".join(each[:-1]) + f" or {each[-1]}"
        named = f"{path.suffix} is not a table format read here" if suffix else "a file without a suffix is not read as a table"
        raise DataError(f"{path}: {named}; use {formats}")
    if kind not in TABLE_FORMATS:
        raise DataError(f"{path}: {kind} is not a table format ({', '.join(TABLE_FORMATS)})")
    require_file(path)
    frame = TABLE_FORMATS[kind][1](path, skip_blank_lines)
    if frame.columns.duplicated().any():
        refuse_repeated(path, [str(c) for c in frame.columns])
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise DataError(f"{path}: the file has no rows")
    return frame


def _pandas_reader(kind: str, read: Callable[..., pd.DataFrame]) -> Callable[[Path, bool], pd.DataFrame]:
    def frame(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
        try:
            return read(path, skip_blank_lines)
        except DataError:
            raise
        except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
            raise DataError(f"{path}: cannot read as {kind} ({detail})") from None
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise DataError(f"{path}: cannot read as {kind} ({exc.__class__.__name__})") from None

    return frame


def require_file(path: Path) -> None:
    """Refuse a path that is not a file, saying whether it is missing or a folder.

    Raises:
        DataError: naming the path.
    """
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file (name the file in it)")
    if not path.is_file():
        where = " (a spec's data path is relative to the spec's folder, not the working folder)" if written_relative(path) else ""
        raise DataError(f"{path}: data file not found{where}")


def _csv(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
    frame = pd.read_csv(path, skipinitialspace=True, skip_blank_lines=skip_blank_lines)
    refuse_repeated_csv_header(path, frame.columns, skipinitialspace=True)  # pandas read `age,age` as age, age.1
    return frame


def _parquet(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
    return pd.read_parquet(path)


def read_jsonl(path: Path) -> pd.DataFrame:
    """Read a JSON Lines file (one JSON object per line) into a DataFrame.

    Blank lines are skipped; the columns are the objects' keys in the order first seen, and a
    key an object lacks is missing (NaN) in its row.

    Raises:
        DataError: the file is missing, not UTF-8, a line is not valid JSON or not an object
            (the message names the file and line number), or there are no rows.
    """
    require_file(path)
    try:
        records = _json_records(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    if not records:
        raise DataError(f"{path}: the file has no rows")
    return pd.DataFrame.from_records(records)


def _json_records(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{number}: not UTF-8 text") from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text, object_pairs_hook=_one_value_per_key)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except _RepeatedKey as exc:
                raise DataError(
                    f"{path}:{number}: key {exc.args[0]!r} appears more than once in the object; give each field its own name"
                ) from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{number}: must be one JSON object per line; got a JSON {type(obj).__name__}")
            records.append(obj)
    return records


class _RepeatedKey(ValueError):
    pass


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of a repeated key silently; a record must not carry two values of one field.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _read_jsonl(path: Path, skip_blank_lines: bool) -> pd.DataFrame:
    return read_jsonl(path)


# Table file formats: name (the source scheme) -> (suffixes that mean it, reader). A file whose
# suffix is none of these is read only where its scheme names the format (csv:data.txt).
TABLE_FORMATS: dict[str, tuple[tuple[str, ...], Callable[[Path, bool], pd.DataFrame]]] = {
    "csv": ((".csv",), _pandas_reader("csv", _csv)),
    "parquet": ((".parquet", ".pq"), _pandas_reader("parquet", _parquet)),
    "jsonl": ((".jsonl", ".ndjson"), _read_jsonl),
}


# ---------------------------------------------------------------------------- images


def read_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode one image file to float32 (C, H, W) in [0, 1]; a bad file raises DataError naming it."""
    return _decode_image(path, size, channels, name=str(path))


def decode_image(data: bytes, size: tuple[int, int], channels: int, *, name: str) -> np.ndarray:
    """Decode the bytes of a PNG or JPEG image to float32 (C, H, W) in [0, 1]; `name` says where
    the bytes came from in a DataError (a column and row)."""
    return _decode_image(io.BytesIO(data), size, channels, name=name)


def _decode_image(source: Any, size: tuple[int, int], channels: int, *, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if img.width * img.height > _MAX_PIXELS:
                    raise DataError(f"{name}: image is too large ({img.width}×{img.height} pixels)")
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(f"{name}: not a readable image ({exc.__class__.__name__})") from None
    return arr[None, :, :] if channels == 1 else arr.transpose(2, 0, 1)


def encode_png(image: np.ndarray) -> bytes:
    """float (C, H, W) in [0, 1] as the bytes of a lossless PNG (8 bits per channel)."""
    from PIL import Image

    arr = np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------------------- files named in a table

# A file a table names is read whole; one larger than this is refused before reading.
MAX_LINKED_BYTES = 64 * 1024 * 1024


def read_linked_files(col: pd.Series, root: Path, suffixes: tuple[str, ...], *, where: str, kinds: str) -> pd.Series:
    """The contents (bytes) of the files a table column names, by path relative to `root`, the
    table file's folder; contents already in the column (bytes) and missing values stay.

    A path must be relative, stay inside `root` once links are followed, and end in one of
    `suffixes`: a table cannot make us read a file outside its own folder.

    Raises:
        DataError: a path is absolute, leaves the folder, has another suffix, is missing or too
            large; the message names `where`, the column and the row.
    """
    base = root.resolve()
    out: list[Any] = []
    for i, (label, v) in enumerate(zip(col.index, col.tolist())):
        row = int(label) + 1 if isinstance(label, (int, np.integer)) else i + 1  # the row of the file (see features.row_of)
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or isinstance(v, (bytes, bytearray)):
            out.append(None if v is None or not isinstance(v, (bytes, bytearray)) else bytes(v))
            continue
        at = f"{where}: column {col.name!r}, row {row}"
        text = str(v).strip()
        if not text:
            out.append(None)
            continue
        rel = Path(text)
        if rel.is_absolute() or text.startswith("~"):
            raise DataError(f"{at}: {text[:80]!r} is an absolute path; write it relative to the table's folder")
        if rel.suffix.lower() not in suffixes:
            raise DataError(f"{at}: {text[:80]!r} is not a {kinds} file name ({', '.join(suffixes)})")
        path = (base / rel).resolve()
        if not path.is_relative_to(base):
            raise DataError(f"{at}: {text[:80]!r} leaves the table's folder; files must be inside it")
        if not path.is_file():
            raise DataError(f"{at}: file {text[:80]!r} not found next to the table")
        size = path.stat().st_size
        if size > MAX_LINKED_BYTES:
            raise DataError(f"{at}: file {text[:80]!r} is too large ({size / 2**20:.0f} MiB; the limit is {MAX_LINKED_BYTES // 2**20} MiB)")
        out.append(path.read_bytes())
    return pd.Series(out, index=col.index, name=col.name, dtype=object)


def read_class_folders(
    root: Path, suffixes: tuple[str, ...], read: Callable[[Path], np.ndarray], *, what: str, kinds: str, layout: str
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
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
    _note_skipped(root, [p for cls in classes for p in (root / cls).iterdir()], suffixes, kinds)
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
    found = list(root.rglob("*"))
    files = sorted(p for p in found if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{root}: no {kinds} found")
    _note_skipped(root, found, suffixes, kinds)
    return files


def _note_skipped(root: Path, found: list[Path], suffixes: tuple[str, ...], kinds: str) -> None:
    """Say how many files of a folder are not read, by suffix (a `.gif` among PNGs was left out
    without a word); hidden files (`.DS_Store`) pass unmentioned."""
    skipped = [p for p in found if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in suffixes]
    if skipped:
        which = sorted({p.suffix.lower() or "(no suffix)" for p in skipped})
        log.warning("data: %s: %d file(s) not read, not %s (%s)", root, len(skipped), kinds, ", ".join(which))


def read_image_folder(root: Path, size: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Read `root/CLASS/*.png|jpg|jpeg`; class names are the sub-folder names, sorted."""
    return read_class_folders(
        root,
        IMAGE_SUFFIXES,
        lambda f: read_image(f, size, channels),
        what="image",
        kinds="PNG or JPEG images",
        layout="one sub-folder per class",
    )


def list_images(root: Path) -> list[Path]:
    """All PNG/JPEG files under `root` (recursively), sorted, for prediction."""
    return list_files(root, IMAGE_SUFFIXES, what="image", kinds="PNG or JPEG images")
