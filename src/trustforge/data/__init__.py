"""Data: sources, schema inference, cleaning, splits and encoders with saved state.

`prepare(spec)` is the stage's entry point: it reads the source, infers the schema, splits
with the spec's seed, fits the encoders on the training split only and returns tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trustforge.data._augment import ImageAugment
from trustforge.data._encoders import Preprocessor
from trustforge.data._schema import Column, Schema, infer_schema, label_strings
from trustforge.data._sources import (
    BUILTIN_SOURCES,
    IMAGE_SUFFIXES,
    RawData,
    list_images,
    load_source,
    read_image,
    read_table,
)
from trustforge.data._splits import split_indices
from trustforge.spec import TaskSpec

__all__ = [
    "BUILTIN_SOURCES",
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


def load_data(spec: TaskSpec) -> RawData:
    """Read the spec's data source."""
    d = spec.data
    return load_source(d.source, target=d.target, image_size=tuple(d.image.size), channels=d.image.channels, seed=spec.train.seed)


def subset(raw: RawData, idx: np.ndarray) -> RawData:
    """The rows `idx` of `raw` (a view of its arrays where possible)."""
    if raw.modality == "table":
        return RawData("table", raw.target, raw.origin, frame=raw.frame.iloc[idx].reset_index(drop=True), classes=raw.classes)
    paths = [raw.paths[i] for i in idx] if raw.paths else []
    return RawData("image", raw.target, raw.origin, images=raw.images[idx], labels=raw.labels[idx], classes=raw.classes, paths=paths)


def prepare(spec: TaskSpec, raw: RawData | None = None) -> Prepared:
    """Read, type, split and encode the data of `spec`.

    Raises:
        DataError: the source, a column or a value cannot be used.
    """
    raw = raw if raw is not None else load_data(spec)
    d = spec.data
    schema, raw = infer_schema(raw, task=spec.task, features=d.features, drop=d.drop, max_categories=d.max_categories)
    strat = None
    stratify = d.split.stratify if d.split.stratify is not None else spec.task == "classification"
    if stratify:
        strat = label_strings(raw.frame[raw.target]) if raw.modality == "table" else raw.labels
    tr, va, te = split_indices(len(raw), test=d.split.test, validation=d.split.validation, stratify=strat, seed=spec.train.seed)
    pre = Preprocessor(schema, numeric_missing=d.missing.numeric, categorical_missing=d.missing.categorical)
    train_raw = subset(raw, tr)
    pre.fit(train_raw)

    def encode(part: RawData) -> TensorData:
        return TensorData(pre.encode_inputs(part), pre.encode_target(part))

    test_raw = subset(raw, te)
    augment = ImageAugment(d.augment.shift, d.augment.hflip) if schema.modality == "image" else ImageAugment()
    return Prepared(
        schema=schema,
        preprocessor=pre,
        train=encode(train_raw),
        validation=encode(subset(raw, va)) if len(va) else None,
        test=encode(test_raw),
        data_digest=raw.digest(),
        test_raw=test_raw,
        augment=augment,
    )
