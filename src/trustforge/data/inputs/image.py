"""Images: float32 (N, C, H, W) in [0, 1], standardised per channel with the training statistics."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch

from trustforge.data._attack_space import IMAGE_EPSILONS, IMAGE_MAX_EPSILON, AttackSpace
from trustforge.data._augment import IMAGE_FIELDS, Augmentation, image_augment
from trustforge.data._duplicates import RowKeys, array_keys
from trustforge.data._files import list_images, read_image
from trustforge.data._profile import grid_profile
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data._states import InputState
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Grid
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Image", "ImageState"]


@dataclass(frozen=True, eq=False)
class ImageState(InputState):
    """Per-channel mean and std (float32 (C,)) of the training images; a constant channel's std is 1."""

    mean: torch.Tensor
    std: torch.Tensor

    tensor_names: ClassVar[dict[str, str]] = {"mean": "image.mean", "std": "image.std"}


class Image(InputKind):
    name = "image"
    default_model = "cnn"
    image_like = True
    state_type = ImageState
    max_epsilon = IMAGE_MAX_EPSILON
    budget = "a fraction of the pixel range [0, 1]"

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        classes = raw.classes or sorted(set(raw.labels.tolist()))
        if task != "classification":
            raise DataError(f"{raw.origin}: image sets support task classification; got {task}")
        c, h, w = raw.images.shape[1:]
        return Schema("image", "classification", raw.target, classes=classes, image_shape=(c, h, w), rows=len(raw)), raw

    def subset(self, raw: RawData, idx: np.ndarray) -> RawData:
        paths = [raw.paths[i] for i in idx] if raw.paths else []
        return RawData("image", raw.target, raw.origin, images=raw.images[idx], labels=raw.labels[idx], classes=raw.classes, paths=paths)

    def row_keys(self, raw: RawData, schema: Schema) -> RowKeys:
        return replace(array_keys(raw.images), labels=raw.labels)

    def profile(self, raw: RawData, schema: Schema) -> dict[str, Any]:
        return grid_profile(raw.images)

    def fit(self, pre: "Preprocessor", raw: RawData) -> ImageState:
        x = torch.from_numpy(raw.images)
        std = x.std(dim=(0, 2, 3)).float()
        # A constant channel is not divided by 0.
        return ImageState(mean=x.mean(dim=(0, 2, 3)).float(), std=torch.where(std > 1e-6, std, torch.ones_like(std)))

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return (pre.encode_images(raw.images),)

    def augment(self, pre: "Preprocessor", data: Any, *, seed: int) -> Augmentation:
        # Per batch: shift, flip, rotation, crop, colour jitter (in pixels, with the training statistics), cutout.
        state = pre.input_state
        op = image_augment(data.augment, state.mean, state.std, size=tuple(pre.schema.image_shape[1:]))
        return Augmentation(batch=op, used={"image": op.used} if op else {}, reads=IMAGE_FIELDS)

    def shape(self, schema: Schema) -> Grid:
        return Grid(tuple(schema.image_shape))

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        return [{"name": "image", "datatype": "FP32", "shape": [-1, *pre.schema.image_shape]}]

    def attack_spaces(self, pre: "Preprocessor") -> tuple[AttackSpace]:
        # Pixels stay in [0, 1]; the budget is a fraction of that range, 1 / std encoded units per channel.
        state = pre.input_state
        mean = state.mean.double().numpy().reshape(-1, 1, 1)
        std = state.std.double().numpy().reshape(-1, 1, 1)
        return (
            AttackSpace(
                (0.0 - mean) / std,
                (1.0 - mean) / std,
                1.0 / std,
                budget=self.budget,
                epsilons=IMAGE_EPSILONS,
                max_epsilon=self.max_epsilon,
            ),
        )

    def read_input(self, schema: Schema, source: Any) -> RawData:
        if isinstance(source, pd.DataFrame):
            raise DataError("this model takes images, not a table")
        if isinstance(source, np.ndarray):
            return RawData("image", schema.target, "input", images=source.astype(np.float32), labels=np.array([""] * len(source)))
        path = Path(source)
        if not path.is_dir():
            raise DataError(f"{path}: this model takes a folder of PNG/JPEG images")
        files = list_images(path)
        c, h, w = schema.image_shape
        images = np.stack([read_image(f, (h, w), c) for f in files])
        # A folder of class sub-folders carries labels (for evaluation); a flat folder does not.
        labels = np.array([f.parent.name if f.parent != path else "" for f in files])
        return RawData("image", schema.target, str(path), images=images, labels=labels, paths=[str(f.relative_to(path)) for f in files])

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        if raw.labels is None or any(label == "" for label in raw.labels):
            raise DataError(f"{raw.origin}: evaluation needs labelled images (one sub-folder per class)")
        return raw
