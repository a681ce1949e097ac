"""Data: sources, schema inference, cleaning, splits and encoders with saved state.

`prepare(spec)` is the stage's entry point: it reads the source, infers the schema, splits
with the spec's seed, fits the encoders on the training split only and returns tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from trustforge.data._audio import augment_clips, read_audio_input
from trustforge.data._augment import ImageAugment
from trustforge.data._encoders import Preprocessor
from trustforge.data._kinds import default_model_kind, source_input_kind
from trustforge.data._interactions import NegativeSampler, load_interactions, prepare_interactions
from trustforge.data._schema import Column, Schema, infer_schema, label_strings
from trustforge.data._sources import (
    BUILTIN_INTERACTIONS,
    BUILTIN_SOURCES,
    IMAGE_SUFFIXES,
    SOURCE_FORMS,
    SOURCES,
    RawData,
    Source,
    interaction_roles,
    list_images,
    load_source,
    read_image,
    read_table,
    redact_source,
    resolve_source,
    source_holds,
)
from trustforge.data._sequences import check_sequences, read_npz, read_sequence_input
from trustforge.data._series import forecast_inputs, forecast_table, prepare_series, read_series_input, window_forecasts
from trustforge.data._splits import split_indices
from trustforge.data._text import as_text

if TYPE_CHECKING:  # the spec's validators import this package's tables (SOURCES); importing spec here would be circular
    from trustforge.spec import TaskSpec

__all__ = [
    "BUILTIN_INTERACTIONS",
    "BUILTIN_SOURCES",
    "default_model_kind",
    "source_input_kind",
    "SOURCES",
    "SOURCE_FORMS",
    "Source",
    "interaction_roles",
    "redact_source",
    "resolve_source",
    "source_holds",
    "NegativeSampler",
    "IMAGE_SUFFIXES",
    "Column",
    "ImageAugment",
    "Prepared",
    "Preprocessor",
    "RawData",
    "Schema",
    "TensorData",
    "infer_schema",
    "label_strings",
    "list_images",
    "load_data",
    "load_source",
    "prepare",
    "read_image",
    "read_table",
    "split_indices",
    "subset",
    "as_text",
    "read_audio_input",
    "check_sequences",
    "read_npz",
    "read_sequence_input",
    "read_series_input",
    "prepare_series",
    "forecast_inputs",
    "forecast_table",
    "window_forecasts",
]


@dataclass
class TensorData:
    """Model inputs and target for one split."""

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class Prepared:
    """Everything the later stages need from the data stage."""

    schema: Schema
    preprocessor: Preprocessor
    train: TensorData
    validation: TensorData | None
    test: TensorData
    data_digest: str
    test_raw: RawData
    augment: ImageAugment
    train_raw: RawData | None = None  # the training split as read (drift monitoring's reference)
    # Applied by the trainer to every training batch's inputs with its seeded generator (e.g.
    # pairing interactions with sampled negative items, see `NegativeSampler`); None: nothing.
    batch_transform: Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple[torch.Tensor, ...]] | None = None


def load_data(spec: TaskSpec, *, cache_dir: Path | None = None) -> RawData:
    """Read the spec's data source (generated sets are kept in `cache_dir`)."""
    d = spec.data
    if spec.task == "recommendation":  # an interactions table, its columns named by data.interactions
        return load_interactions(spec)
    raw = load_source(d.source, target=d.target, image_size=tuple(d.image.size), channels=d.image.channels, seed=spec.train.seed,
                      sample_rate=d.audio.sample_rate, seconds=d.audio.seconds, cache_dir=cache_dir)
    return as_text(raw, d.text.column) if d.text is not None else raw  # one column of a table as the text input


def subset(raw: RawData, idx: np.ndarray) -> RawData:
    """The rows `idx` of `raw` (a view of its arrays where possible)."""
    if raw.modality == "text":
        return replace(raw, frame=raw.frame.iloc[idx].reset_index(drop=True))
    if raw.modality == "table":
        return RawData("table", raw.target, raw.origin, frame=raw.frame.iloc[idx].reset_index(drop=True), classes=raw.classes)
    if raw.modality == "sequence":
        labels = raw.labels[idx] if raw.labels is not None else None
        return RawData("sequence", raw.target, raw.origin, sequences=raw.sequences[idx], labels=labels, classes=raw.classes)
    paths = [raw.paths[i] for i in idx] if raw.paths else []
    if raw.modality == "audio":
        return RawData("audio", raw.target, raw.origin, labels=raw.labels[idx], classes=raw.classes, paths=paths,
                       waveforms=raw.waveforms[idx], sample_rate=raw.sample_rate,
                       groups=raw.groups[idx] if raw.groups is not None else None)
    return RawData("image", raw.target, raw.origin, images=raw.images[idx], labels=raw.labels[idx], classes=raw.classes, paths=paths)


def prepare(spec: TaskSpec, raw: RawData | None = None, *, cache_dir: Path | None = None) -> Prepared:
    """Read, type, split and encode the data of `spec`.

    Raises:
        DataError: the source, a column or a value cannot be used.
    """
    raw = raw if raw is not None else load_data(spec, cache_dir=cache_dir)
    if spec.task == "forecasting":  # windows of one series, split by time (see _series)
        return prepare_series(spec, raw)
    if spec.task == "recommendation":  # each user's latest interactions held out (see _interactions)
        return prepare_interactions(spec, raw)
    d = spec.data
    schema, raw = infer_schema(raw, task=spec.task, features=d.features, drop=d.drop, max_categories=d.max_categories,
                               audio=d.audio, text=d.text)
    strat = None
    stratify = d.split.stratify if d.split.stratify is not None else spec.task == "classification"
    if stratify:
        strat = label_strings(raw.frame[raw.target]) if raw.modality in ("table", "text") else raw.labels
    # Rows with a group (e.g. a speaker) are split group by group; see `split_indices`.
    tr, va, te = split_indices(len(raw), test=d.split.test, validation=d.split.validation, stratify=strat, seed=spec.train.seed,
                               groups=raw.groups)
    pre = Preprocessor(schema, numeric_missing=d.missing.numeric, categorical_missing=d.missing.categorical)
    train_raw = subset(raw, tr)
    pre.fit(train_raw)

    def encode(part: RawData) -> TensorData:
        return TensorData(pre.encode_inputs(part), pre.encode_target(part))

    train_in = train_raw
    if schema.modality == "audio":  # noisy copies of the training clips, made before the front end
        a = d.audio.augment
        train_in = augment_clips(train_raw, copies=a.copies, snr_db=a.snr_db, gain_db=a.gain_db, shift=a.shift, seed=spec.train.seed)
    test_raw = subset(raw, te)
    # On audio the "image" is the log-mel spectrogram: a shift moves it by mel bands (a voice
    # pitched a little higher or lower) and by frames (a word said a little earlier or later).
    augment = ImageAugment(d.augment.shift, d.augment.hflip) if schema.modality in ("image", "audio") else ImageAugment()
    return Prepared(
        schema=schema,
        preprocessor=pre,
        train=encode(train_in),
        validation=encode(subset(raw, va)) if len(va) else None,
        test=encode(test_raw),
        data_digest=raw.digest(),
        test_raw=test_raw,
        augment=augment,
        train_raw=train_raw,
    )
