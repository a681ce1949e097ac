"""Numeric sequences (modality "sequence"): `npz:PATH` files, their schema and scaling.

An `.npz` file holds `X`, a float array (N, T, F): N sequences of T steps with F features
each ((N, T) is read as one feature per step), and the targets, an array (N,) named by
`data.target` (default `y`): class labels (integers or text) or numbers for regression. A
file without targets can still be predicted. Files are read with `allow_pickle=False`, so an
object array (which would need pickle) is refused rather than executed.

Every sequence has the same length T: the model's input shape is fixed at training time.
Features are standardised per feature over all steps of the training split.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from trustforge.data._files import require_file
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema, _natural, label_strings
from trustforge.data._states import InputState
from trustforge.errors import DataError

if TYPE_CHECKING:  # the encoder calls in; importing it here would be circular
    from trustforge.data._encoders import Preprocessor

__all__ = ["SequenceState", "read_npz", "read_sequence_input", "check_sequences", "infer_sequence_schema", "fit", "encode", "with_noise"]


def read_npz(path: Path, *, origin: str, target: str | None = None, require_target: bool = True) -> RawData:
    """Read `X` (N, T, F) and the targets from an `.npz` file.

    Args:
        path: the file.
        origin: the source string, for messages.
        target: the name of the targets' array (default `y`).
        require_target: a training source needs targets; a file to predict need not have them.

    Raises:
        DataError: the file is missing or unreadable, holds pickled objects, lacks `X` (or the
            targets), or its arrays have the wrong shape, type or non-finite values. The message
            names the file.
    """
    name = target or "y"
    require_file(path)
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # a zip (.npz) or one .npy array
        raise DataError(f"{path}: not an .npz archive (an .npz file is a zip of arrays; this one does not start as one)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: a single .npy array; expected an .npz archive with arrays 'X' and {name!r}")
            arrays = {k: npz[k] for k in npz.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise DataError(f"{path}: not a readable .npz archive ({detail})") from None
    if "X" not in arrays:
        raise DataError(f"{path}: no array 'X' (the sequences, shape (N, T, F)); arrays are {sorted(arrays)}")
    x = check_sequences(arrays["X"], where=f"{path}: array 'X'")
    labels = None
    if name in arrays:
        y = arrays[name]
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{path}: array {name!r} must have shape ({len(x)},), one target per sequence; got {y.shape}")
        if y.dtype.kind not in "biufU":
            raise DataError(f"{path}: array {name!r} must hold numbers or text; got dtype {y.dtype}")
        labels = y
    elif require_target:
        raise DataError(f"{path}: no array {name!r} (the targets, data.target); arrays are {sorted(arrays)}")
    return RawData("sequence", name, origin, sequences=x, labels=labels)


def check_sequences(x: np.ndarray, *, where: str) -> np.ndarray:
    """`x` as float32 (N, T, F); (N, T) gains F = 1. Refuses other shapes and non-finite values."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where} must hold numbers; got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3 or 0 in x.shape:
        raise DataError(f"{where} must have shape (N, T, F) with N, T, F > 0; got {x.shape}")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        n = int(bad.any(axis=(1, 2)).sum())
        raise DataError(f"{where} holds NaN or infinite values in {n} sequence(s) (first: index {int(np.argmax(bad.any(axis=(1, 2))))})")
    return x


def infer_sequence_schema(raw: RawData, *, task: str) -> tuple[Schema, RawData]:
    """The schema of a labelled sequence set: (T, F), and the classes or a numeric target.

    Raises:
        DataError: no targets, too few sequences, fewer than 2 classes, or a non-numeric
            regression target.
    """
    if task not in ("classification", "regression"):
        raise DataError(f"{raw.origin}: sequence sets support task classification or regression; got {task}")
    if raw.labels is None:
        raise DataError(f"{raw.origin}: no targets (array {raw.target!r}) to learn from")
    if len(raw) < 10:
        raise DataError(f"{raw.origin}: only {len(raw)} sequences; need at least 10")
    _, t, f = raw.sequences.shape
    classes = None
    if task == "classification":
        labels = label_strings(raw.labels)
        present = sorted(set(labels.tolist()), key=_natural)
        classes = [c for c in raw.classes if c in present] if raw.classes else present
        if len(classes) < 2:
            raise DataError(f"{raw.origin}: targets {raw.target!r} hold {len(classes)} class; classification needs at least 2")
        if len(classes) > 1000:
            raise DataError(f"{raw.origin}: targets {raw.target!r} hold {len(classes)} distinct values; is this a regression task?")
    elif raw.labels.dtype.kind not in "biuf" or not np.all(np.isfinite(raw.labels.astype(np.float64))):
        raise DataError(f"{raw.origin}: regression targets {raw.target!r} must be finite numbers; got dtype {raw.labels.dtype}")
    schema = Schema("sequence", task, raw.target, classes=classes, sequence_shape=(int(t), int(f)), rows=len(raw))  # type: ignore[arg-type]
    return schema, raw


@dataclass(frozen=True, eq=False)
class SequenceState(InputState):
    """Per-feature mean and std (float64 (F,)) over every step of the training sequences."""

    mean: torch.Tensor
    std: torch.Tensor

    tensor_names: ClassVar[dict[str, str]] = {"mean": "sequence.mean", "std": "sequence.std"}


def fit(pre: "Preprocessor", raw: RawData) -> SequenceState:
    """Per-feature mean and std over every step of the training sequences."""
    x = torch.from_numpy(raw.sequences).double()  # (N, T, F)
    std = x.std(dim=(0, 1)) if x.shape[0] * x.shape[1] > 1 else torch.ones(x.shape[2], dtype=torch.float64)
    # A constant feature would divide by zero; its std is set to 1.
    return SequenceState(mean=x.mean(dim=(0, 1)), std=torch.where(std > 1e-12, std, torch.ones_like(std)))


def encode(pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor]:
    """The model input: standardised float32 (N, T, F), checked against the schema's (T, F)."""
    want = tuple(pre.schema.sequence_shape or ())
    x = check_sequences(raw.sequences, where=f"{raw.origin}: sequences")
    if tuple(x.shape[1:]) != want:
        raise DataError(f"{raw.origin}: sequences have shape (T, F) {tuple(x.shape[1:])}; the model expects {want}")
    state = pre.input_state
    if not isinstance(state, SequenceState):
        raise DataError("the preprocessor holds no fitted sequence scaling (fit it on sequences first)")
    mean = state.mean.float().view(1, 1, -1)
    std = state.std.float().view(1, 1, -1)
    return ((torch.from_numpy(x) - mean) / std,)  # (N, T, F)


def with_noise(raw: RawData, fraction: float, rng: np.random.Generator) -> RawData:
    """A copy of `raw` whose sequences carry Gaussian noise of `fraction` × each feature's std."""
    x = raw.sequences.astype(np.float64)
    std = x.std(axis=(0, 1), keepdims=True)  # (1, 1, F)
    noisy = x + rng.normal(0.0, 1.0, size=x.shape) * fraction * std
    return RawData(
        "sequence",
        raw.target,
        f"{raw.origin} [noise@{fraction:g}]",
        sequences=noisy.astype(np.float32),
        labels=None if raw.labels is None else raw.labels.copy(),
        classes=raw.classes,
    )


def read_sequence_input(schema: Schema, source: object) -> RawData:
    """Sequences to predict or evaluate: an array (N, T, F) or an `.npz` file (targets optional)."""
    if isinstance(source, np.ndarray):
        x = check_sequences(source, where="input sequences")
        return RawData("sequence", schema.target, "input", sequences=x)
    if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
        raise DataError(f"this model takes sequences: a numpy array (N, T, F) or an .npz file; got {type(source).__name__}")
    path = Path(source)  # type: ignore[arg-type]
    return read_npz(path, origin=str(path), target=schema.target, require_target=False)
