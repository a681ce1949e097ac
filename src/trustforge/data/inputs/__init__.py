"""Kinds of input, one module each, registered in one place (see `InputKind`).

A table is read column by column through the feature types (`data.features`); the other
kinds are one thing per row. `input_kind(schema)` is how a stage asks about its data.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from trustforge.data.inputs._base import KINDS, InputKind
from trustforge.data.inputs._shapes import Columns, Grid, Ids, Spectrogram, Steps, Tokens
from trustforge.data.inputs.audio import Audio
from trustforge.data.inputs.image import Image
from trustforge.data.inputs.interactions import Interactions
from trustforge.data.inputs.sequence import Sequence
from trustforge.data.inputs.series import Series
from trustforge.data.inputs.table import Table
from trustforge.data.inputs.text import Text

__all__ = ["INPUT_KINDS", "Columns", "Grid", "Ids", "InputKind", "Spectrogram", "Steps", "Tokens", "infer_schema", "input_kind"]

INPUT_KINDS: dict[str, InputKind] = {k.name: k for k in (Table(), Text(), Image(), Audio(), Sequence(), Series(), Interactions())}
KINDS.update(INPUT_KINDS)


def input_kind(of: Any) -> InputKind:
    """The kind of a schema, of raw data (anything with a `modality`), or of a kind's name."""
    return INPUT_KINDS[of if isinstance(of, str) else of.modality]


def infer_schema(
    raw: Any,
    *,
    task: str,
    features: Any = None,
    drop: Any = (),
    max_categories: int = 50,
    audio: Any = None,
    text: Any = None,
    image: Any = None,
) -> tuple[Any, Any]:
    """The schema of `raw` as its kind of input infers it, and `raw` cleaned of rows without a target.

    Args:
        features, drop, max_categories, audio, text, image: the spec's `data` fields of those names.

    Raises:
        DataError: a column cannot be typed, or the target does not suit the task.
    """
    data = SimpleNamespace(features=features, drop=list(drop), max_categories=max_categories, audio=audio, text=text, image=image)
    return input_kind(raw).infer_schema(raw, task=task, data=data)
