"""What every feature type provides, and the options a column is read with.

A feature type owns everything about one kind of input column: whether a column looks like
it (inference), what is learned from the training split (a frozen state that round-trips
through JSON), how a column becomes a tensor, which encoder network reads that tensor (by the
registry key of `trustforge.models`), how a serving request carries it, what the drift
monitor watches, how the generalisation evidence corrupts it and which bounds an attack must
keep it in. No other stage switches on the kind of a column: it asks the column's type.

Tensors of a table's columns are laid out in slots (see `Slot`), so that a table's inputs are
always `(floats (N, D), indices (N, K), *one tensor per text, image or audio column)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import pandas as pd

from trustforge.data._attack_space import AttackSpace
from trustforge.data._augment import ColumnAugment

__all__ = [
    "Block",
    "PROFILE_MIN_COUNT",
    "short",
    "top_values",
    "FeatureOptions",
    "FeatureState",
    "FeatureType",
    "OWN_TENSOR",
    "Slot",
    "UNKNOWN",
    "MISSING",
    "as_series",
    "row_of",
]

UNKNOWN = "<unknown>"  # index 0 of a categorical vocabulary: a value training never saw
MISSING = "<missing>"  # index 1: a missing value, when missing values are a category of their own

# "float": columns of the float matrix (N, D); "index": one column of the int64 index matrix
# (N, K), read through an embedding; "tokens": a tensor of its own, int64 token ids (N, L);
# "grid": a tensor of its own, float32 (N, C, H, W) (an image, or an audio clip's spectrogram).
# Tensors of their own follow the two matrices in the order of their columns.
Slot = Literal["float", "index", "tokens", "grid"]
OWN_TENSOR: tuple[Slot, ...] = ("tokens", "grid")  # slots whose columns each have a tensor of their own


@dataclass(frozen=True)
class FeatureOptions:
    """How columns are read and fitted; from the spec's `data` section.

    Attributes:
        numeric_missing: `data.missing.numeric` (median | mean | zero | error).
        categorical_missing: `data.missing.categorical` (category | most_frequent | error).
        max_categories: a string column with more distinct values is not a category.
        text: the text options (`spec.TextSpec` as a dict) for text columns.
        column: the column's own settings, taken from the spec by its type (`FeatureType.settings`).
    """

    numeric_missing: str = "median"
    categorical_missing: str = "category"
    max_categories: int = 50
    text: dict[str, Any] = dataclasses.field(default_factory=dict)
    column: dict[str, Any] = dataclasses.field(default_factory=dict)


class FeatureState:
    """A fitted state: a frozen dataclass of JSON values (tuples travel as lists)."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FeatureState":
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - set(names)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} in a {cls.__name__}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def row_of(col: pd.Series, i: int) -> int:
    """The 1-based row of a table file that position `i` of `col` came from: the table kind
    hands its columns to the types indexed by their rows' places in the file (`RawData.rows`),
    so a message names the row a user can find, whatever split it is in; otherwise the position."""
    label = col.index[i] if 0 <= i < len(col) else None
    return int(label) + 1 if isinstance(label, (int, np.integer)) and not isinstance(label, bool) else i + 1


def as_series(values: Any, name: str, index: Any = None) -> pd.Series:
    """A column of a request or of `Model.predict_columns` as the Series a DataFrame would hold
    (a Series is kept as it is): what `FeatureType.encode` reads."""
    if isinstance(values, pd.Series):
        return values
    return pd.Series(values, name=name, index=index, copy=False)


class Block:
    """Columns of one feature type that go into the same matrix (slot float or index), encoded
    together: `encode` gives float (N, sum of their sizes) or int64 (N, k), their columns in order.

    This one encodes them one at a time through the type's `encode`; a type that can encode
    several columns as one array operation returns its own subclass from `FeatureType.block`,
    which must give the same numbers and, for a value it refuses, the same error.

    Attributes:
        type: the feature type.
        states: each column's fitted state.
        names: the columns' names.
    """

    def __init__(self, type_: "FeatureType", states: Sequence[Any], names: Sequence[str]):
        self.type = type_
        self.states = tuple(states)
        self.names = tuple(names)

    def encode(self, values: Sequence[Any], *, where: str, index: Any = None) -> np.ndarray:
        """The block's matrix from one array (or Series) per column, in `names` order; `index`:
        the rows' labels, which messages name (`row_of`); None: their positions."""
        parts = [self.type.encode(st, as_series(v, name, index), where=where) for st, v, name in zip(self.states, values, self.names)]
        return np.concatenate(parts, axis=1) if self.type.slot == "float" else np.stack(parts, axis=1)


PROFILE_MIN_COUNT = 5  # a value the profile prints is shared by at least this many rows
PROFILE_MAX_CHARS = 12  # and is cut to this many characters
PROFILE_TOP = 8  # values listed at most


def short(value: Any) -> str:
    """A value as the profile prints it: its text cut to `PROFILE_MAX_CHARS` characters."""
    text = str(value)
    return text if len(text) <= PROFILE_MAX_CHARS else text[: PROFILE_MAX_CHARS - 1] + "…"


def top_values(col: pd.Series) -> list[list[Any]]:
    """[value cut short, rows] of the most frequent values that at least `PROFILE_MIN_COUNT` rows share."""
    counts = col.dropna().astype(str).value_counts()
    return [[short(v), int(n)] for v, n in counts.head(PROFILE_TOP).items() if n >= PROFILE_MIN_COUNT]


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


class FeatureType:
    """One kind of input column. Subclasses set the class attributes and the methods.

    Attributes:
        name: the type's name in specs, schemas and packages (`data.features: {col: NAME}`).
        slot: where its tensor goes (see `Slot`).
        encoder: the `trustforge.models` encoder key that turns its tensor into a vector.
        drift: how the drift monitor compares it: None (not watched; `unwatched` says why),
            "numeric" (KS, PSI, Wasserstein on
            `monitor_values`) or "categorical" (chi-squared on category counts).
        datatype: the Open Inference Protocol datatype of one value in a request.
        state_type: the frozen state class `fit` returns.
        files: for a column that names files (an image, an audio clip): the suffixes it reads.
            The table reads the files, relative to its own folder, before the type sees the
            column (`data._files.read_linked_files`); the type then gets their contents as
            bytes, or as base64 text in a served request.
    """

    name: ClassVar[str]
    slot: ClassVar[Slot]
    encoder: ClassVar[str]
    drift: ClassVar[Literal["numeric", "categorical"] | None]
    unwatched: ClassVar[str] = ""  # why the drift monitor leaves this type alone, when `drift` is None
    corruption: ClassVar[str]  # what `corrupt` does at a level, for the evidence ("that fraction of values flipped")
    datatype: ClassVar[str]
    state_type: ClassVar[type[FeatureState]]
    files: ClassVar[tuple[str, ...]] = ()
    augments: ClassVar[frozenset[str]] = frozenset()  # the `data.augment` fields `augment` reads

    def augment(self, state: Any, augment: Any) -> ColumnAugment | None:
        """What training-time augmentation does to this column's part of a batch, as `augment`
        (the spec's `data.augment`) declares it; None: nothing (categories, flags, dates)."""
        return None

    def settings(self, data: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The column's settings (`FeatureOptions.column`), kept in the schema so a column is
        fitted as the spec said: the spec's data section (`data`, None for none) for this type,
        under the column's own `options` from `data.features` (already checked by the spec)."""
        return dict(options)

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        """Whether an undeclared column (missing values dropped, at least one left) looks like this type."""
        raise NotImplementedError

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> FeatureState:
        """Learn the state from the training split's column (missing values included)."""
        raise NotImplementedError

    def encode(self, state: Any, col: pd.Series, *, where: str) -> np.ndarray:
        """The column as an array: float64 (N, size) for slot float, int64 (N,) for index,
        int64 (N, L) for tokens, float32 (N, C, H, W) for grid. Bad values raise `DataError` naming `where`, the column and row."""
        raise NotImplementedError

    def block(self, states: Sequence[Any], names: Sequence[str]) -> Block:
        """How this type's columns of a table encode together (slots float and index only): by
        default one at a time through `encode`; a type overrides it to encode them as one array op."""
        return Block(self, states, names)

    def imputed(self, state: Any, col: pd.Series) -> int:
        """How many values of `col` `encode` fills in from the fitted state instead of reading them:
        missing values, which take the training median, mode, mean image, an empty text, ...
        (0 when the state refuses missing values instead: `on_missing` "error")."""
        if getattr(state, "on_missing", "fill") != "fill":
            return 0
        return int(col.isna().sum())

    # ------------------------------------------------------------ the data profile (`data._profile`)

    def profile(self, col: pd.Series) -> dict[str, Any]:
        """What the data profile shows of the column beyond its missing fraction and distinct
        count (the whole data set, after any masking of personal data): by default its most
        frequent values, cut short, and only those at least `PROFILE_MIN_COUNT` rows share, so
        no rare value (a name, an id) is printed."""
        return {"top": top_values(col)}

    def profile_values(self, col: pd.Series) -> np.ndarray | None:
        """The column as the profile compares it with the target (leakage) and with itself (ID-like
        columns): float64 (NaN = missing) for an ordered type, text labels (None = missing) for an
        unordered one; None where a single column says little this way (free text, files)."""
        if self.drift is None:
            return None
        return self.monitor_values(col)

    def near_form(self, col: pd.Series) -> pd.Series:
        """Each value normalised so that near-duplicate rows compare equal (`data._duplicates`):
        by default its text, trimmed and case-folded; missing stays missing."""
        return col.astype(object).where(col.isna(), col.astype(str).str.strip().str.casefold())

    def size(self, state: Any) -> int:
        """Float columns it fills (slot float), its vocabulary size (index and tokens), its
        values per row (grid)."""
        raise NotImplementedError

    def grid(self, state: Any) -> tuple[int, int, int]:
        """The (C, H, W) of one row's tensor (slot grid only)."""
        raise NotImplementedError

    def signature(self, name: str, state: Any) -> dict[str, Any]:
        """Its entry in the package's input signature (one value per row)."""
        return {"name": name, "kind": self.name, "datatype": self.datatype, "shape": [-1]}

    def monitor_values(self, col: pd.Series) -> np.ndarray:
        """What drift monitoring compares: float64 (NaN = missing) for numeric drift, text
        labels (None = missing) for categorical drift; types with `drift` None need none. It needs no fitted state, so the
        monitor reads a column as the package's reference statistics were read."""
        raise NotImplementedError

    def corrupt(self, state: Any, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        """The column with about `fraction` of its rows corrupted as real data goes wrong."""
        raise NotImplementedError

    def conforms(self, col: pd.Series) -> np.ndarray:
        """Whether each value is one this type reads (bool (N,); missing values conform): the
        type check of `data.expect`, which turns what `encode` would refuse into a violation
        naming the row. Default: every value (a text column takes any text)."""
        return np.ones(len(col), dtype=bool)

    def observed(self, state: Any) -> dict[str, Any]:
        """What training saw of the column, as `data.expect` rules inferred from its fitted
        state: {"min", "max"} (a range, in the state's privacy-safe summaries) or {"allowed":
        [values]}; {} when the type has nothing to expect."""
        return {}

    def example(self, state: Any, rows: int, rng: np.random.Generator) -> list[Any]:
        """`rows` plausible values of the column as a request would carry them (probes, export checks)."""
        raise NotImplementedError

    def attack_space(self, state: Any) -> AttackSpace | None:
        """Where a gradient attack may move this column's encoded values (slots float and grid):
        tensors shaped like one row's values of the column ((size,) for float, (C, H, W) or
        broadcastable for grid), or None where it may not: a discrete input has no gradient
        path, and an encoding whose values are tied to each other is not free to move."""
        return None

    def edit_space(self, state: Any) -> bool:
        """Whether an edit attack on raw values (character edits of a text) may change this
        column; such a column is attacked through the prediction path, not a gradient."""
        return False

    def feature_names(self, name: str, state: Any) -> list[str]:
        """Names of the float columns it fills, for explanations (slot float)."""
        return [name] if self.slot == "float" else []
