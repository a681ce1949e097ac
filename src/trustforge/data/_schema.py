"""The schema: what the model's inputs and target are, inferred from the data once.

Each table column has a feature type (`data.features.FEATURE_TYPES`: numeric, binary,
categorical, text, datetime, image, audio). The schema is saved in the package as JSON and
checked against every input handed to the model later.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from trustforge.data._raw import RawData
from trustforge.data.features import FeatureOptions, feature_type, infer_type, label_strings, natural_key
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._audio import FrontEnd
    from trustforge.data._interactions import InteractionsConfig
    from trustforge.data._series import SeriesConfig
    from trustforge.data._text import TextOptions

__all__ = ["Column", "Schema", "infer_table_schema", "label_strings", "no_target_note"]

log = logging.getLogger("trustforge.data")


@dataclass
class Column:
    """One input column. `kind` is its feature type's name (`data.features.FEATURE_TYPES`)."""

    name: str
    kind: str
    missing: int = 0
    vocabulary: int = 0  # categorical and text: vocabulary size once fitted (special tokens included)
    width: int = 1  # float columns it fills once fitted (a date/time column fills several)
    grid: list[int] | None = None  # image and audio: (C, H, W) of its tensor once fitted
    # The spec's settings this column is fitted with (`FeatureType.settings`: an image column's
    # size and channels, an audio column's front end); empty for most types.
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Schema:
    """Inputs and target of a task.

    Attributes:
        modality: "table" or "image".
        task: "classification" or "regression".
        target: the target's name.
        classes: class names in index order (classification only).
        columns: the input columns in model order (tables only).
        image_shape: (C, H, W) (images only).
        rows: number of usable rows; dropped_rows: rows dropped for a missing target.
        ignored: columns of the source that are neither inputs nor the target (`data.drop`, or
            not among `data.features`); inputs laid out like the source may carry them.
        series: forecasting only: how the series becomes windows (`data._series.SeriesConfig`:
            `time`, `lookback`, `horizon`, `season`, `transform`, `level`). `target` is its
            value column.
        sequence_shape: (T, F) of numeric sequences (modality "sequence" only).
        audio: the log-mel front end of modality "audio" (`data._audio.FrontEnd`: `sample_rate`,
            `samples`, `n_fft`, `hop_length`, `n_mels`, `fmin`, `fmax`).
        interactions: modality "interactions" (task recommendation) only: the column roles
            (`user`, `item`, `rating`, `time`), `feedback` and the hold-outs
            (`data._interactions.InteractionsConfig`). `columns` are the user and item id
            columns; `target` is the rating (explicit) or the item column (implicit).
        text: modality "text" only: the spec's `data.text` with its `column` filled in
            (`data._text.TextOptions`). `columns` holds that one column, of kind "text".

    The four sections are typed, frozen states with `to_json`/`from_json`; a section given as
    a dict (as the schema's JSON holds it) is read into its type, refusing unknown fields.
    """

    modality: Literal["table", "image", "series", "sequence", "audio", "interactions", "text"]
    task: Literal["classification", "regression", "forecasting", "recommendation"]
    target: str
    classes: list[str] | None = None
    columns: list[Column] = field(default_factory=list)
    image_shape: tuple[int, int, int] | None = None
    rows: int = 0
    dropped_rows: int = 0
    ignored: list[str] = field(default_factory=list)
    series: SeriesConfig | None = None
    sequence_shape: tuple[int, int] | None = None
    audio: FrontEnd | None = None
    interactions: InteractionsConfig | None = None
    text: TextOptions | None = None

    def __post_init__(self) -> None:
        for name, section in _sections().items():
            value = getattr(self, name)
            if value is not None and not isinstance(value, section):
                setattr(self, name, section.from_json(value))

    def slot(self, slot: str) -> list[Column]:
        """The columns whose feature type fills `slot` ("float", "index" or "tokens"), in order."""
        return [c for c in self.columns if feature_type(c.kind).slot == slot]

    @property
    def numeric(self) -> list[str]:
        """Columns fed to the model as floats (numeric, binary, date/time), in order."""
        return [c.name for c in self.slot("float")]

    @property
    def categorical(self) -> list[str]:
        """Columns fed to the model as vocabulary indices, in order."""
        return [c.name for c in self.slot("index")]

    @property
    def float_width(self) -> int:
        """Width of the float input: the sum of the float columns' widths."""
        return sum(c.width for c in self.slot("float"))

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["image_shape"] = list(self.image_shape) if self.image_shape else None
        for name in _sections():
            section = getattr(self, name)
            d[name] = section.to_json() if section is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Schema":
        d = dict(d)
        d["columns"] = [Column(**c) for c in d.get("columns", [])]
        d["image_shape"] = tuple(d["image_shape"]) if d.get("image_shape") else None
        if d.get("sequence_shape"):
            d["sequence_shape"] = tuple(d["sequence_shape"])
        for name, section in _sections().items():  # each section's JSON into its type, checked
            d[name] = section.from_json(d[name]) if d.get(name) is not None else None
        return cls(**d)


def _sections() -> dict[str, Any]:
    """The schema's typed sections by field; their modules import this one, so they are imported here late."""
    from trustforge.data._audio import FrontEnd
    from trustforge.data._interactions import InteractionsConfig
    from trustforge.data._series import SeriesConfig
    from trustforge.data._text import TextOptions

    return {"series": SeriesConfig, "audio": FrontEnd, "interactions": InteractionsConfig, "text": TextOptions}


def infer_table_schema(
    raw: RawData,
    *,
    task: str,
    features: list[str] | dict[str, Any] | None,
    drop: list[str],
    max_categories: int,
    text: Any = None,
    data: Any = None,
) -> tuple[Schema, RawData]:
    """The schema of a table (modality "table", or "text": one text column and `text`, the
    spec's data.text) and the table cleaned of rows without a target. `data` (the spec's data
    section) gives the columns' settings (`FeatureType.settings`) beside their own options in
    `data.features`; None: the types' defaults.

    Raises:
        DataError: a named feature column is missing, a column cannot be typed, or the target
            does not suit the task.
    """
    from trustforge.data._sources import did_you_mean  # _sources imports this module

    frame = raw.frame
    for section, names in (("data.features", list(features or [])), ("data.drop", drop)):
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise DataError(
                f"{raw.origin}: {section} names {'a column' if len(missing) == 1 else 'columns'} not in the data: "
                f"{', '.join(map(repr, missing))}{did_you_mean(str(missing[0]), frame.columns)}"
            )
    if raw.target in list(features or []):  # an input that is the answer: it was silently ignored
        raise DataError(
            f"{raw.origin}: data.features.{raw.target} names the target {raw.target!r} (data.target); "
            "the target is not a feature, leave it out of data.features"
        )
    if raw.target in drop:  # dropping the target would silently mean "train on nothing to predict"
        raise DataError(f"{raw.origin}: data.drop names the target {raw.target!r} (data.target); drop other columns")
    target = frame[raw.target]
    keep = target.notna().to_numpy()
    dropped = int((~keep).sum())
    if dropped:
        frame = frame.loc[keep].reset_index(drop=True)
        log.warning("data: %s", no_target_note(dropped, raw.target))
    if len(frame) < 10:
        raise DataError(f"{raw.origin}: only {len(frame)} rows with a target; need at least 10")

    if raw.modality == "text":  # `text`: the spec's data.text; its one column is the input, the rest is ignored
        from trustforge.data._text import text_options

        names, columns = [raw.text], [Column(raw.text, "text", int(frame[raw.text].isna().sum()))]
        text = text_options(raw, text)
    else:
        # A list names the columns to use; a mapping declares the types of some columns and
        # leaves the others in, inferred (drop a column with data.drop).
        entries = dict(features) if isinstance(features, dict) else {}
        declared = {c: e["type"] if isinstance(e, dict) else e for c, e in entries.items()}
        own = {c: {k: v for k, v in e.items() if k != "type"} for c, e in entries.items() if isinstance(e, dict)}
        chosen = list(features) if isinstance(features, list) else []
        names = chosen or [c for c in frame.columns if c != raw.target and c not in drop]
        if not names:
            raise DataError(f"{raw.origin}: no feature columns left besides the target")
        options = FeatureOptions(max_categories=max_categories)
        columns = _columns(frame, names, declared, raw.origin, options)
        for c in columns:
            c.settings = feature_type(c.kind).settings(data, own.get(c.name, {}))
        text = None  # text columns of a table use the default text options (see data.features.text)

    classes = None
    if task == "classification":
        labels = label_strings(frame[raw.target])
        present = sorted(set(labels.tolist()), key=_natural)
        classes = [c for c in raw.classes if c in present] if raw.classes else present
        if len(classes) < 2:
            raise DataError(f"{raw.origin}: target {raw.target!r} has {len(classes)} class; classification needs at least 2")
        y = frame[raw.target]
        fractional = pd.api.types.is_float_dtype(y) and bool((y.dropna() != y.dropna().round()).any())
        if len(classes) > 1000 or (fractional and len(classes) > 20):
            raise DataError(
                f"{raw.origin}: target {raw.target!r} has {len(classes)} distinct values; is this a regression task? (task: regression)"
            )
    else:
        y = frame[raw.target]
        if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
            bad = pd.to_numeric(y, errors="coerce").isna().to_numpy().nonzero()[0]
            example = f"; got {str(y.iloc[bad[0]])[:40]!r} in row {int(bad[0]) + 1}" if len(bad) else f"; got {y.dtype}"
            raise DataError(f"{raw.origin}: regression target {raw.target!r} must be numeric{example}")

    ignored = [c for c in frame.columns if c != raw.target and c not in names]
    modality = raw.modality  # "table", or "text" (one text column; see data._text)
    schema = Schema(
        modality,
        task,
        raw.target,
        classes=classes,
        columns=columns,
        rows=len(frame),
        dropped_rows=dropped,
        ignored=ignored,  # type: ignore[arg-type]
        text=text,
    )
    rows = (raw.rows if raw.rows is not None else np.arange(len(keep)))[keep]  # each kept row's place in the file
    cleaned = RawData(modality, raw.target, raw.origin, frame=frame, classes=raw.classes, text=raw.text, root=raw.root, rows=rows)
    return schema, cleaned


def no_target_note(rows: int, target: str) -> str:
    """The note on `rows` rows left out for having no value of the target (at train, in the
    profile and report, and at evaluate). It names no file: the profile and report hold it."""
    have = "1 row has" if rows == 1 else f"{rows} rows have"
    return f"{have} no value of the target {target!r}; left out"


def _columns(frame: pd.DataFrame, names: list[str], declared: dict[str, str], origin: str, options: FeatureOptions) -> list[Column]:
    """Each input column with its declared type, or the type inference picks."""
    columns = []
    for n in names:
        col = frame[n]
        t = feature_type(declared[n]) if n in declared else infer_type(col, options, where=origin)
        if n in declared and col.notna().sum() == 0:
            raise DataError(f"{origin}: column {n!r} has no values; drop it with data.drop")
        columns.append(Column(n, t.name, int(col.isna().sum())))
    return columns


_natural = natural_key  # the name the other data modules import
