"""What the data stage hands the later stages: encoded splits, the fitted preprocessor, the raw test split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from trustforge.data._augment import ImageAugment
from trustforge.data._encoders import Preprocessor
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema

__all__ = ["Prepared", "TensorData"]


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
    # The data profile (`data._profile`: columns, target, duplicates, leakage), written to the run as profile.json.
    profile: dict[str, Any] | None = None
