"""`RawData`: data as a source reads it, before anything is fitted (every data module's common type)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["RawData"]


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
    # Tables read from a file: its folder, against which the image and audio paths in its
    # columns resolve (`data._files.read_linked_files`). None (a DataFrame, a served request):
    # such columns hold the files' contents (bytes, or base64 text), never paths.
    root: str | None = None
    # Tables: each row's 0-based place in the source, kept through cleaning and splits so that
    # a message names the row of the file (`features.row_of`); None: the row's position.
    rows: np.ndarray | None = None

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
