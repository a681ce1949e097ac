"""What every kind of input provides: the whole-row shape a data set's inputs take.

A table's rows are columns, each of its own feature type (`data.features`); the other kinds
are inputs that are one thing per row: an image, an audio clip, a numeric sequence, a window
of a series, a (user, item) pair, a text of one column. Each kind is one object that owns
how its data is typed, split, fitted, encoded, described in the package's signature and read
back at prediction time, so no other stage compares a modality string. Kinds are registered
in `data.inputs.INPUT_KINDS`, keyed by the schema's `modality`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np
import torch

from trustforge.data._attack_space import STD_MAX_EPSILON, AttackSpace, EditSpace
from trustforge.data._augment import Augmentation
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data._states import InputState
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._duplicates import RowKeys
    from trustforge.data._encoders import Preprocessor

__all__ = ["InputKind", "KINDS"]

# name -> kind, filled by `data.inputs` when it registers the kinds; the preprocessor looks its
# kind up here, so it does not import the kinds' modules (which import it).
KINDS: dict[str, "InputKind"] = {}


class InputKind:
    """One kind of input. Subclasses override what differs from a labelled array of rows.

    Attributes:
        name: the schema's `modality`.
        image_like: a grid the training-time shift/flip augmentation applies to.
        default_model: the `model.kind` a spec without `model` gets for this kind of input.
        state_type: the frozen state `fit` returns (see `data._states.InputState`), saved by
            `Preprocessor.state` and read back by `Preprocessor.from_state`; None for a table,
            whose columns' feature types hold their own states.
        max_epsilon, budget: the largest L∞ attack budget of this kind's inputs and its unit, as
            its attack spaces declare them (`AttackSpace.max_epsilon`): what a spec's budgets
            (train.adversarial.epsilon, evaluate.robustness.epsilons) are checked against before
            any data is read. A table's is its numbers' (10 standard deviations); its attack
            spaces may declare a smaller one (an image column), checked once they are known.
    """

    name: ClassVar[str]
    image_like: ClassVar[bool] = False
    default_model: ClassVar[str]  # the `model.kind` a spec without `model` gets for this input
    state_type: ClassVar[type[InputState] | None] = None
    max_epsilon: ClassVar[float] = STD_MAX_EPSILON
    budget: ClassVar[str] = "standard deviations of a column"

    def load(self, spec: Any, *, cache_dir: Any = None) -> RawData | None:
        """Read the spec's data source when this kind reads it its own way (interactions name
        their columns in data.interactions); None: `data.load_source` reads it."""
        return None

    def prepare(self, spec: Any, raw: RawData) -> Any:
        """The whole data stage when this kind splits and encodes in its own way (a series by
        time, interactions per user), else None for the common path of `data.prepare`."""
        return None

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        """The schema of `raw` (`data`: the spec's data section) and `raw` cleaned of rows without a target."""
        raise NotImplementedError

    def subset(self, raw: RawData, idx: np.ndarray) -> RawData:
        """The rows `idx` of `raw`."""
        raise NotImplementedError

    def labels(self, raw: RawData) -> np.ndarray | None:
        """One target label per row (for stratified splits), or None when unlabelled."""
        return raw.labels

    def fit(self, pre: "Preprocessor", raw: RawData) -> InputState | None:
        """The input's fitted state, learned from the training split (an instance of
        `state_type`; None for a table, whose columns' states `pre` holds). `Preprocessor.fit`
        keeps it as `pre.input_state`; `encode` reads it there."""
        raise NotImplementedError

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        """The model's inputs for `raw`."""
        raise NotImplementedError

    def encode_columns(self, pre: "Preprocessor", columns: Mapping[str, Any], *, where: str) -> tuple[torch.Tensor, ...] | None:
        """The model's inputs straight from request columns (name -> one value per row), no
        DataFrame, for a kind whose inputs are columns of their own types (a table); None: the
        kind reads requests through `read_input` (a DataFrame, or the one tensor as an array)."""
        return None

    def encode_target(self, pre: "Preprocessor", raw: RawData) -> torch.Tensor | None:
        """The training target of `raw` when the kind defines its own (series windows,
        interactions); None: the task's classes or standardised values of `target_values`."""
        return None

    def training_copies(self, raw: RawData, data: Any, seed: int) -> RawData:
        """The training split as the model trains on it (augmented copies for audio); default as is."""
        return raw

    def augment(self, pre: "Preprocessor", data: Any, *, seed: int) -> Augmentation:
        """The training-time augmentation of this input as `data.augment` declares it (`data`: the
        spec's data section; `pre`: fitted on the training split): the per-batch operation, the
        copies added to the training split, what is used (the evidence) and which fields this
        input reads. Default: none, and it reads no field."""
        return Augmentation()

    def target_values(self, pre: "Preprocessor", raw: RawData) -> Any:
        """The raw target of each row, as classification and regression encode it."""
        if raw.labels is None:
            raise DataError(f"{raw.origin}: no targets ({pre.schema.target!r}) to evaluate against")
        return raw.labels

    def shape(self, schema: Schema) -> Any:
        """What the encoded tensors look like to a network (see `data.inputs._shapes`)."""
        raise NotImplementedError

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        """The package's input signature: what one request carries."""
        raise NotImplementedError

    def attack_spaces(self, pre: "Preprocessor") -> tuple[AttackSpace | None, ...] | None:
        """Where a gradient attack may move each encoded input tensor (one entry per tensor
        `encode` returns, None for a tensor that may not move), or None when no input of
        this kind has a gradient path (token ids, item ids)."""
        return None

    def edit_space(self, pre: "Preprocessor") -> EditSpace | None:
        """The text columns an edit attack may change (`evaluate._text_attack`), or None when
        this kind reads no text."""
        return None

    def row_keys(self, raw: RawData, schema: Schema) -> "RowKeys | None":
        """How rows compare for the duplicate checks (`data._duplicates`): keys of each row's
        inputs, exact and normalised, and its target; None where rows are not compared."""
        return None

    def profile(self, raw: RawData, schema: Schema) -> dict[str, Any]:
        """The inputs' part of the data profile (`data._profile`): a table's columns, or what
        one row holds (an image's shape, a clip's length); a stated skip by default."""
        return {"skipped": f"no profile of {self.name} inputs"}

    def read_input(self, schema: Schema, source: Any) -> RawData:
        """Prediction input (a DataFrame, an array, a file or a folder) as checked raw data."""
        raise NotImplementedError

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        """`raw` ready for evaluation: its unlabelled rows dropped, or an error naming what is missing."""
        if raw.labels is None or any(str(label) == "" for label in raw.labels):
            raise DataError(f"{raw.origin}: evaluation needs labelled data (one sub-folder per class)")
        return raw
