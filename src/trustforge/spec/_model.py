"""The typed task spec: what to learn, from what, and how.

Every field has a default that works, unknown keys are errors, and model and optimizer
choices are discriminated unions so an error names exactly the field that is wrong.
Trainer names follow PyTorch Lightning (`max_epochs`, `precision`, `gradient_clip_val`,
`accumulate_grad_batches`, `early_stopping`) so people who know it know ours.
"""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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
    "SpecProblem",
]

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu"]
PositiveInt = Annotated[int, Field(gt=0)]


class SpecProblem(ValueError):
    """A rule broken by a value the types allow, located at a field.

    Validators raise it so the loader can point at the field at fault (and its line) rather
    than at the section whose validator ran. `path` is relative to that section; the
    TaskSpec-level checks give full paths.

    Args:
        path: field names (and list indices) from the validated section to the field at fault.
        message: what is expected and what was given, e.g. "must be > 0 when nesterov is true; got 0".
    """

    def __init__(self, path: tuple[str | int, ...], message: str):
        self.path = tuple(path)
        self.message = message
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path).lstrip(".")
        super().__init__(f"{where} {message}" if where else message)


def _number_type(annotation: Any) -> type | None:
    """`int` or `float` when a field holds a plain number (optionally None), else None."""
    if annotation in (int, float):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in (int, float):
            return args[0]
    return None


class _Strict(BaseModel):
    """Base for every spec section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        # YAML 1.1 reads yes/no/on/off as booleans and pydantic would take true as 1; a
        # number field given a boolean is a mistake, not a number.
        if isinstance(data, dict):
            for name, v in data.items():
                if isinstance(v, bool) and name in cls.model_fields:
                    kind = _number_type(cls.model_fields[name].annotation)
                    if kind is not None:
                        what = "an integer" if kind is int else "a number"
                        raise SpecProblem((name,), f"must be {what}; got {str(v).lower()}")
        return data


# ---------------------------------------------------------------------------- data


class SplitSpec(_Strict):
    """Fractions of the whole data set held out for testing and validation."""

    test: float = Field(0.2, gt=0, lt=1)
    validation: float = Field(0.1, ge=0, lt=1)
    stratify: bool | None = Field(None, description="default: true for classification, false for regression")

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitSpec":
        if self.test + self.validation >= 0.9:
            raise SpecProblem(
                (),
                "test + validation must be < 0.9 to leave data for training; "
                f"got {self.test:g} + {self.validation:g} = {self.test + self.validation:g}",
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


# The data sets that ship with TrustForge (sklearn's bundled sets and generated ones); the data
# stage implements them, the spec names them so `validate` catches a typo.
BUILTIN_SETS = ("digits", "breast_cancer", "wine", "iris", "diabetes", "shapes")


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
        scheme, sep, rest = v.partition(":")
        v = f"{scheme.strip()}{sep}{rest.strip()}"  # `csv: data.csv` (quoted) means csv:data.csv
        if not _SOURCE_RE.match(v):
            raise ValueError(f"must be builtin:NAME, csv:PATH, parquet:PATH or images:DIR; got {v!r}")
        if scheme.strip() == "builtin" and rest.strip() not in BUILTIN_SETS:
            raise ValueError(f"must name a builtin set ({', '.join(BUILTIN_SETS)}); got {v!r}")
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

    @field_validator("padding", mode="before")
    @classmethod
    def _non_negative(cls, v: object) -> object:
        # Checked here in full so a bad value gets one message, not one per union member.
        ok = v == "same" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        if not ok:
            raise ValueError(f"must be an integer >= 0 or 'same'; got {v!r}")
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
            raise SpecProblem(("momentum",), "must be > 0 when nesterov is true; got 0")
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

    monitor: str = "val_loss"
    patience: PositiveInt = 5
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"

    @field_validator("monitor")
    @classmethod
    def _validation_metric(cls, v: str) -> str:
        if not re.fullmatch(r"val_[a-z0-9_]+", v):
            raise ValueError(f"must be val_loss or val_<metric> (e.g. val_accuracy); got {v!r}")
        return v


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

    @model_validator(mode="before")
    @classmethod
    def _default_optimizer_name(cls, data: Any) -> Any:
        # `optimizer: {lr: 0.01}` means the default optimizer (adamw) with that rate, as an
        # omitted `optimizer` means the default optimizer with its default rate.
        if isinstance(data, dict) and isinstance(data.get("optimizer"), dict) and "name" not in data["optimizer"]:
            data = {**data, "optimizer": {"name": "adamw", **data["optimizer"]}}
        return data

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
    """What evidence evaluation gathers beside the test metrics (all of it lands in the report).

    `metrics` picks the summary table's rows; `metrics.json` always holds the full set.
    """

    metrics: list[str] | None = Field(None, description="default: the usual set for the task")
    calibrate: bool = Field(True, description="fit a temperature on the validation split; predictions use it")
    speed: bool = Field(True, description="measure latency, throughput, size and memory")
    shift: str | None = Field(None, description="a second test set (any data source) to report every metric on")
    corruptions: bool = Field(True, description="built-in corruptions of the test set per modality")
    severities: list[Annotated[int, Field(ge=1, le=3)]] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    explain: bool = Field(True, description="integrated gradients and saliency, or feature importance for tables")
    explain_per_class: int = Field(2, ge=1, le=20)

    @field_validator("shift")
    @classmethod
    def _shift_source(cls, v: str | None) -> str | None:
        if v is not None and not _SOURCE_RE.match(v.strip()):
            raise ValueError(f"must be builtin:NAME, csv:PATH, parquet:PATH or images:DIR; got {v!r}")
        return v.strip() if v else v


# ---------------------------------------------------------------------------- the task


class TaskSpec(_Strict):
    """One task, from data to evaluated model. The smallest valid spec is `{}`."""

    name: str = "task"
    task: Literal["classification", "regression"] = "classification"
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=CNNSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The name becomes part of folder names and model URIs.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError(
                f"must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit; got {v!r}"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `train:` with every line below it commented out is an empty section, not an error.
        if isinstance(data, dict):
            sections = ("data", "model", "train", "evaluate")
            data = {k: v for k, v in data.items() if not (k in sections and v is None)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSpec":
        # Rules that join two sections; each names the field to change and what it was.
        t, split = self.train, self.data.split
        if self.task == "regression":
            if t.loss in ("cross_entropy", "bce"):
                raise SpecProblem(("train", "loss"), f"must be auto or mse for task regression; got {t.loss!r}")
            if t.class_weights != "none":
                raise SpecProblem(("train", "class_weights"), f"must be none for task regression; got {t.class_weights!r}")
            if split.stratify:
                raise SpecProblem(
                    ("data", "split", "stratify"),
                    "must be false for task regression (a continuous target has no strata); got true",
                )
        elif t.loss == "mse":
            raise SpecProblem(("train", "loss"), "must be auto, cross_entropy or bce for task classification; got 'mse'")
        allowed = CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS
        for i, m in enumerate(self.evaluate.metrics or ()):
            if m not in allowed:
                raise SpecProblem(
                    ("evaluate", "metrics", i), f"must be a {self.task} metric ({', '.join(allowed)}); got {m!r}"
                )
        es = t.early_stopping
        if es is not None and es.monitor != "val_loss":
            metric = es.monitor.removeprefix("val_")
            if metric not in allowed:
                raise SpecProblem(
                    ("train", "early_stopping", "monitor"),
                    f"must be val_loss or val_<metric> with a {self.task} metric ({', '.join(allowed)}); got {es.monitor!r}",
                )
        if es is not None and split.validation == 0:
            raise SpecProblem(
                ("data", "split", "validation"),
                "must be > 0 while train.early_stopping is on (or set train.early_stopping: null); got 0",
            )
        return self

    def default_metrics(self) -> list[str]:
        """The metrics shown in the summary table."""
        if self.evaluate.metrics:
            return list(self.evaluate.metrics)
        if self.task == "classification":
            return ["accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "roc_auc"]
        return list(REGRESSION_METRICS)
