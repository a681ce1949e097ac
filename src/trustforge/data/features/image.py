"""Image columns: a PNG or JPEG per row, resized to `data.image.size` with `data.image.channels`.

Pixels in [0, 1] are standardised per channel with the training statistics and read by a small
convolutional encoder beside the row's other columns (see `_media` for how files are read).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trustforge.data._attack_space import IMAGE_EPSILONS, IMAGE_MAX_EPSILON, AttackSpace
from trustforge.data._augment import IMAGE_FIELDS, ColumnAugment, image_augment
from trustforge.data._files import IMAGE_SUFFIXES, decode_image, encode_png
from trustforge.data.features._base import FeatureOptions, FeatureState
from trustforge.data.features._media import MediaType
from trustforge.errors import DataError

__all__ = ["Image", "ImageState"]


@dataclass(frozen=True)
class ImageState(FeatureState):
    size: tuple[int, int]  # (H, W)
    channels: int  # 1 (grayscale) or 3 (RGB)
    mean: tuple[float, ...]  # per channel, of the training pixels in [0, 1]
    std: tuple[float, ...]


class Image(MediaType):
    name = "image"
    state_type = ImageState
    corruption = "pixel noise of std 0.3 × level and brightness cut by level / 2"
    files = IMAGE_SUFFIXES
    magic = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
    kinds = "PNG or JPEG image"
    augments = IMAGE_FIELDS

    def augment(self, state: ImageState, augment: Any) -> ColumnAugment | None:
        op = image_augment(augment, state.mean, state.std, size=state.size)
        return ColumnAugment(op=op, used=op.used) if op else None

    def settings(self, data: Any, options: dict[str, Any]) -> dict[str, Any]:
        i = getattr(data, "image", None)
        return {**({} if i is None else {"size": list(i.size), "channels": int(i.channels)}), **options}

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> ImageState:
        o = {"size": [32, 32], "channels": 3, **options.column}
        size, channels = (int(o["size"][0]), int(o["size"][1])), int(o["channels"])
        probe = ImageState(size, channels, (0.0,) * channels, (1.0,) * channels)
        grids, present = self.raw_grids(probe, col, where=where)
        if not present.any():
            raise DataError(f"{where}: column {col.name!r} names no image in the training split")
        x = grids[present].astype(np.float64)
        mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
        std = np.where(std > 1e-6, std, 1.0)  # a constant channel is not divided by 0
        return ImageState(size, channels, tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def grid(self, state: ImageState) -> tuple[int, int, int]:
        return (state.channels, *state.size)

    def decode(self, state: ImageState, data: bytes, *, name: str) -> np.ndarray:
        return decode_image(data, state.size, state.channels, name=name)

    def to_bytes(self, state: ImageState, signal: np.ndarray) -> bytes:
        return encode_png(signal)

    def perturb(self, signals: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
        # Sensor noise and under-exposure: Gaussian noise of 0.3 × fraction and brightness cut by
        # half of fraction (a badly lit or grainy photo).
        noisy = signals * (1.0 - 0.5 * fraction) + rng.normal(0.0, 0.3 * fraction, size=signals.shape)
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)

    def random_signal(self, state: ImageState, rng: np.random.Generator) -> np.ndarray:
        return rng.random((state.channels, *state.size)).astype(np.float32)

    def summary(self, data: bytes) -> float:
        # Mean brightness: a new camera, lighting or scanner shows here.
        return float(decode_image(data, (32, 32), 1, name="monitor").mean())

    def dimensions(self, data: bytes) -> dict[str, float]:
        from PIL import Image as PILImage
        from PIL import UnidentifiedImageError

        try:
            with PILImage.open(io.BytesIO(data)) as img:  # reads the header only
                return {"width": float(img.width), "height": float(img.height)}
        except (UnidentifiedImageError, OSError, ValueError):
            raise DataError("profile: not a readable image") from None

    def attack_space(self, state: ImageState) -> AttackSpace:
        # Pixels stay in [0, 1]; the budget is a fraction of that range, 1 / std encoded units per channel.
        mean, std = np.asarray(state.mean).reshape(-1, 1, 1), np.asarray(state.std).reshape(-1, 1, 1)
        return AttackSpace(
            (0.0 - mean) / std,
            (1.0 - mean) / std,
            1.0 / std,
            budget="a fraction of the pixel range [0, 1]",
            epsilons=IMAGE_EPSILONS,
            max_epsilon=IMAGE_MAX_EPSILON,
        )
