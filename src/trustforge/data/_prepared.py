"""What the data stage hands the later stages: encoded splits, the fitted preprocessor, the raw test split."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    augment: ImageAugment  # or a `TokenAugment`: the trainer's per-batch change of the first training input
    train_raw: RawData | None = None  # the training split as read (drift monitoring's reference)
    # Applied by the trainer to every training batch's inputs with its seeded generator (e.g.
    # pairing interactions with sampled negative items, see `NegativeSampler`); None: nothing.
    batch_transform: Callable[[tuple[torch.Tensor, ...], torch.Generator], tuple[torch.Tensor, ...]] | None = None
    # What `data.protect` did to personal data before anything was fitted (`data._protect`), kept
    # in the package's manifest as `pii` so predictions treat their inputs the same way; None: off.
    protection: dict[str, Any] | None = None
    # A header holding personal data -> the name `data.protect` gave its column, for the spec a run
    # writes (`data.renamed_in_spec`); in memory only, never written.
    renamed: dict[str, str] = field(default_factory=dict)
    # `data.expect`: the declared and inferred expectations as the package saves them (None: none),
    # and what checking the declared ones on the training data found (`data._expect.ExpectReport`).
    expect: dict[str, Any] | None = None
    expect_report: Any = None
    # What training-time augmentation was applied to the training split ({input or column: {operation:
    # setting}}; see `data._augment`), for the evidence; empty: none.
    augmentation: dict[str, Any] = field(default_factory=dict)

    # What `data.clean.label_issues` found and did ({policy, rows_checked, found, dropped,
    # relabelled, warnings}; `data.report_label_issues`), for the run's metrics; None: off.
    label_issues: dict[str, Any] | None = None

    @property
    def augmented_copies(self) -> int:
        """Training rows augmentation added to the split as read (audio's waveform copies, mixup's
        mixed rows): what the evidence reports beside the training split's own size; 0 for none."""
        if not self.augmentation or self.train_raw is None or self.schema.modality in ("series", "interactions"):
            return 0  # a series trains on windows and interactions on pairs: not rows of train_raw
        return max(0, len(self.train) - len(self.train_raw))

    def evidence(self) -> dict[str, Any]:
        """The run's metrics entries that say which augmentations were used and what the label-issue
        pass found (none: no entry)."""
        out: dict[str, Any] = {"augmentation": self.augmentation} if self.augmentation else {}
        if self.label_issues is not None:
            out["label_issues"] = self.label_issues
        return out

    # The data profile (`data._profile`: columns, target, duplicates, leakage), written to the run as profile.json.
    profile: dict[str, Any] | None = None
    # Set by `data.prepare`: the `prepare_key` of the spec it was prepared from (None: from rows
    # handed to it rather than the spec's source), and the seconds preparing took.
    prepared_from: str | None = None
    prepare_seconds: float = 0.0
