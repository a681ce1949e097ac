"""The typed task spec: what to learn, from what, and how.

Every field has a default that works, unknown keys are errors, and model and optimizer
choices are discriminated unions so an error names exactly the field that is wrong.
Trainer names follow PyTorch Lightning (`max_epochs`, `precision`, `gradient_clip_val`,
`accumulate_grad_batches`, `early_stopping`) so people who know it know ours.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "TaskSpec",
    "DataSpec",
    "SplitSpec",
    "MissingSpec",
    "ImageSpec",
    "AugmentSpec",
    "MLPSpec",
    "CNNSpec",
    "RNNSpec",
    "ModelSpec",
    "TrainSpec",
    "SGDSpec",
    "AdamSpec",
    "AdamWSpec",
    "OptimizerSpec",
    "EarlyStoppingSpec",
    "SchedulerSpec",
    "EvaluateSpec",
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
]

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu"]
PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    """Base for every spec section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# ---------------------------------------------------------------------------- data


class SplitSpec(_Strict):
    """Fractions of the whole data set held out for testing and validation."""

    test: float = Field(0.2, gt=0, lt=1)
    validation: float = Field(0.1, ge=0, lt=1)
    stratify: bool | None = Field(None, description="default: true for classification, false for regression")

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitSpec":
        if self.test + self.validation >= 0.9:
            raise ValueError(
                f"test + validation must be < 0.9 to leave data for training; got {self.test + self.validation:g}"
            )
        return self


class MissingSpec(_Strict):
    """What to do with missing values in tables (the stated policy).

    numeric: `median` or `mean` imputation (fitted on the training split), `zero`, or `error`.
    categorical: `category` gives missing values their own category, `most_frequent` imputes,
    `error` refuses. Rows whose target is missing are always dropped and counted.
    """

    numeric: Literal["median", "mean", "zero", "error"] = "median"
    categorical: Literal["category", "most_frequent", "error"] = "category"


class ImageSpec(_Strict):
    """How image folders are read: every image is converted and resized to this shape."""

    size: tuple[PositiveInt, PositiveInt] = (32, 32)
    channels: Literal[1, 3] = 3


class AugmentSpec(_Strict):
    """Training-time image augmentation, drawn from the run's seeded generator."""

    shift: int = Field(0, ge=0, le=8, description="random translation in pixels, each axis")
    hflip: bool = False


_SOURCE_RE = re.compile(r"^(builtin|csv|parquet|images):.+$")


class DataSpec(_Strict):
    """Where the data comes from and how it is split."""

    source: str = "builtin:digits"
    target: str | None = Field(None, description="target column; builtin sets and image folders know theirs")
    features: list[str] | None = Field(None, description="columns to use; default all but the target")
    drop: list[str] = Field(default_factory=list, description="columns to ignore (ids, leaks)")
    split: SplitSpec = Field(default_factory=SplitSpec)
    missing: MissingSpec = Field(default_factory=MissingSpec)
    image: ImageSpec = Field(default_factory=ImageSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    max_categories: int = Field(50, ge=2, description="text-like columns with more distinct values are refused")

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if not _SOURCE_RE.match(v):
            raise ValueError(
                "must look like builtin:NAME, csv:PATH, parquet:PATH or images:DIR; " f"got {v!r}"
            )
        return v


# ---------------------------------------------------------------------------- models


class MLPSpec(_Strict):
    """Multi-layer perceptron over table columns (categoricals embedded) or flattened images."""

    kind: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 64])
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    embedding_dim: PositiveInt | None = Field(None, description="per categorical column; default from its cardinality")


class CNNSpec(_Strict):
    """A stack of conv blocks (conv → [batch norm] → activation → [pool]) and an MLP classifier.

    The flatten size is computed from the input shape; nothing is hard-coded.
    """

    kind: Literal["cnn"] = "cnn"
    channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    kernel_size: PositiveInt = 3
    padding: int | Literal["same"] = "same"
    convs_per_block: PositiveInt = 1
    pool: Literal["max", "avg", "none"] = "max"
    pool_size: PositiveInt = 2
    global_pool: bool = Field(False, description="average over space before the classifier instead of flattening")
    batch_norm: bool = False
    activation: Activation = "relu"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("padding")
    @classmethod
    def _non_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError(f"must be >= 0 or 'same'; got {v}")
        return v


class RNNSpec(_Strict):
    """LSTM or GRU over a sequence; an image is read as a sequence of its rows."""

    kind: Literal["rnn"] = "rnn"
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["last", "mean", "max"] = "last"


ModelSpec = Annotated[Union[MLPSpec, CNNSpec, RNNSpec], Field(discriminator="kind")]


# ---------------------------------------------------------------------------- training


class SGDSpec(_Strict):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGDSpec":
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class AdamSpec(_Strict):
    name: Literal["adam"] = "adam"
    lr: float = Field(0.001, gt=0, le=10)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class AdamWSpec(AdamSpec):
    name: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0)


OptimizerSpec = Annotated[Union[SGDSpec, AdamSpec, AdamWSpec], Field(discriminator="name")]


class NoSchedulerSpec(_Strict):
    name: Literal["none"] = "none"


class CosineSchedulerSpec(_Strict):
    """Cosine decay from lr to `min_lr` over max_epochs, after an optional linear warm-up."""

    name: Literal["cosine"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class StepSchedulerSpec(_Strict):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""

    name: Literal["step"] = "step"
    step_size: PositiveInt = 10
    gamma: float = Field(0.1, gt=0, le=1)


SchedulerSpec = Annotated[
    Union[NoSchedulerSpec, CosineSchedulerSpec, StepSchedulerSpec], Field(discriminator="name")
]


class EarlyStoppingSpec(_Strict):
    """Stop when `monitor` has not improved for `patience` epochs; the best weights are restored."""

    monitor: str = Field("val_loss", pattern=r"^val_[a-z0-9_]+$")
    patience: PositiveInt = 5
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"


class TrainSpec(_Strict):
    """How the Trainer fits the model."""

    max_epochs: PositiveInt = 30
    batch_size: PositiveInt = 64
    optimizer: OptimizerSpec = Field(default_factory=AdamWSpec)
    scheduler: SchedulerSpec = Field(default_factory=NoSchedulerSpec)
    loss: Literal["auto", "cross_entropy", "bce", "mse"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "none"
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)
    gradient_clip_val: float | None = Field(None, gt=0)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: PositiveInt = 1
    precision: Literal["32", "bf16-mixed"] = "32"
    accelerator: Literal["auto", "cpu", "cuda"] = "cpu"
    seed: int = Field(7, ge=0, lt=2**32)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: object) -> object:
        # YAML reads `precision: 32` as an int; Lightning accepts both spellings.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


# ---------------------------------------------------------------------------- evaluation

CLASSIFICATION_METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS = ("mae", "rmse", "r2")


class EvaluateSpec(_Strict):
    """Which metrics the summary table shows; `metrics.json` always holds the full set."""

    metrics: list[str] | None = Field(None, description="default: the usual set for the task")


# ---------------------------------------------------------------------------- the task


class TaskSpec(_Strict):
    """One task, from data to evaluated model. The smallest valid spec is `{}`."""

    name: str = Field("task", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    task: Literal["classification", "regression"] = "classification"
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=CNNSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSpec":
        if self.task == "regression":
            if self.train.loss in ("cross_entropy", "bce"):
                raise ValueError(f"train.loss {self.train.loss!r} needs task classification; got task regression")
            if self.train.class_weights != "none":
                raise ValueError("train.class_weights applies to classification only")
            if self.data.split.stratify:
                raise ValueError("data.split.stratify needs task classification; a continuous target has no strata")
        elif self.train.loss == "mse":
            raise ValueError("train.loss 'mse' needs task regression; got task classification")
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for m in self.evaluate.metrics or ():
            if m not in allowed:
                raise ValueError(f"evaluate.metrics: {m!r} is not a {self.task} metric; choose from {', '.join(allowed)}")
        es = self.train.early_stopping
        if es is not None and es.monitor != "val_loss":
            metric = es.monitor.removeprefix("val_")
            if metric not in allowed:
                raise ValueError(
                    f"train.early_stopping.monitor must be val_loss or val_<metric> for a {self.task} metric; got {es.monitor!r}"
                )
        if es is not None and self.data.split.validation == 0:
            raise ValueError("train.early_stopping needs data.split.validation > 0 (or set early_stopping: null)")
        return self

    def default_metrics(self) -> list[str]:
        """The metrics shown in the summary table."""
        if self.evaluate.metrics:
            return list(self.evaluate.metrics)
        if self.task == "classification":
            return ["accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc"]
        return list(REGRESSION_METRICS)
