"""Feature and target encoders: fitted on the training split, saved as JSON + tensors.

`Preprocessor` turns raw data into model inputs, a tuple of tensors:
- tables: (floats float32 (N, D), indices int64 (N, K), *one tensor per text, image or audio
  column), each column encoded by its feature type (`data.features`): numeric and binary
  columns fill one float each, a date/time column several, a categorical column is one index
  (0 = a value never seen in training); a text column is token ids int64 (N, L), an image or
  audio column float32 (N, C, H, W), each a tensor of its own.
- images: (float32 (N, C, H, W) standardised per channel,).
- series (forecasting): (float32 (N, lookback, 1),), one row per window; see `_series`.
- sequences: (float32 (N, T, F) standardised per feature,); see `_sequences`.
- audio: (float32 (N, 1, n_mels, frames) standardised log-mel spectrograms,); see `_audio`.
- interactions: (user index int64 (N,), item index int64 (N,)); see `_interactions`.
- text: (token ids int64 (N, max_length), 0 = padding,); the vocabulary is
  `vocabularies[column]`; see `_text`.

Its fitted state is `(json_dict, {name: tensor})`, so a package holds no pickle.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from trustforge.data._raw import RawData
from trustforge.data._schema import Schema, label_strings
from trustforge.data._states import InputState
from trustforge.data.features import MISSING, OWN_TENSOR, UNKNOWN, Block, FeatureOptions, FeatureState, as_series, feature_type
from trustforge.data.features.binary import BinaryState
from trustforge.data.features.categorical import CategoricalState
from trustforge.data.features.numeric import NumericState
from trustforge.data.features.text import TextState
from trustforge.data.inputs._base import KINDS
from trustforge.errors import DataError

__all__ = ["Preprocessor", "UNKNOWN", "MISSING"]


class Preprocessor:
    """Encodes inputs and targets for one schema; `fit` on training data only."""

    def __init__(self, schema: Schema, *, numeric_missing: str = "median", categorical_missing: str = "category"):
        self.schema = schema
        self.numeric_missing = numeric_missing
        self.categorical_missing = categorical_missing
        self.tensors: dict[str, torch.Tensor] = {}
        self.binary_values: dict[str, list[str]] = {}
        self.vocabularies: dict[str, list[str]] = {}
        # data.missing.categorical: most_frequent — each column's training mode, imputed at encode time.
        self.categorical_fill: dict[str, str] = {}
        self.features: dict[str, FeatureState] = {}  # tables: each column's fitted state, by name
        # The other kinds of input: what `InputKind.fit` learned (image statistics, a series'
        # scaling, ...), a frozen state saved under the tensor names packages have always used.
        self.input_state: InputState | None = None
        self.fitted = False

    # ------------------------------------------------------------------ fitting

    def fit(self, raw: RawData) -> "Preprocessor":
        """Learn scalers, vocabularies and image statistics from the training split."""
        s = self.schema
        self.input_state = KINDS[s.modality].fit(self, raw)  # its kind of input learns what it needs (see data.inputs)
        if self.input_state is not None:  # the vocabularies it learned, by column, as the manifest holds them
            self.vocabularies.update(self.input_state.vocabularies(s))
        if s.task == "regression":
            y = np.asarray(KINDS[s.modality].target_values(self, raw), dtype=np.float64)
            self.tensors["target.mean"] = torch.tensor([y.mean()], dtype=torch.float64)
            self.tensors["target.std"] = torch.tensor([y.std() if y.std() > 1e-12 else 1.0], dtype=torch.float64)
        self.fitted = True
        return self

    # ------------------------------------------------------------------ encoding

    def encode_inputs(self, raw: RawData) -> tuple[torch.Tensor, ...]:
        """Model inputs for `raw`, checked against the schema."""
        return KINDS[self.schema.modality].encode(self, raw)

    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        want = tuple(self.schema.image_shape or ())
        if images.ndim != 4:
            raise DataError(f"an array of images must be (N, C, H, W), N images of {want}; got an array of shape {tuple(images.shape)}")
        if tuple(images.shape[1:]) != want:
            raise DataError(f"images have shape {tuple(images.shape[1:])}; the model expects {want} (C, H, W)")
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        from trustforge.data.inputs.image import ImageState  # the kind's module imports this one

        state = self.input_state
        if not isinstance(state, ImageState):
            raise DataError("the preprocessor holds no fitted image statistics (fit it on images first)")
        mean = state.mean.view(1, -1, 1, 1)
        std = state.std.view(1, -1, 1, 1)
        return (x - mean) / std  # (N, C, H, W)

    def encode_frame(self, frame: pd.DataFrame, *, where: str = "input") -> tuple[torch.Tensor, ...]:
        """A table's inputs: (floats (N, D), indices (N, K), *one tensor per text, image or audio
        column in schema order), each column encoded by its feature type (see `encode_columns`)."""
        self.check_columns(frame, where=where)
        return self.encode_columns(frame_columns(frame, self.schema.input_names), len(frame), where=where, index=frame.index)

    def encode_columns(self, columns: Mapping[str, Any], n: int, *, where: str = "input", index: Any = None) -> tuple[torch.Tensor, ...]:
        """The inputs of `encode_frame` from one array (or Series) of `n` values per schema
        column, no DataFrame: the columns of each feature type that share a matrix are encoded
        together (`FeatureType.block`: all numeric columns standardised as one (N, k) matrix),
        straight into the float and index matrices. `index`: the rows' labels that messages
        name (`features.row_of`); None: their positions.

        A value a type refuses raises the error the column-by-column path gives, in schema
        order, whichever block met it first."""
        plan = self._plan()
        x_num = np.empty((n, plan.widths["float"]), dtype=np.float32)
        x_cat = np.empty((n, plan.widths["index"]), dtype=np.int64)
        try:
            for block, slot, at in plan.blocks:
                (x_num if slot == "float" else x_cat)[:, at] = block.encode(
                    [columns[name] for name in block.names], where=where, index=index
                )
            own = [np.ascontiguousarray(t.encode(st, as_series(columns[name], name, index), where=where)) for name, t, st in plan.own]
        except DataError:
            self._encode_each(columns, where=where, index=index)  # raises the first column's error, as one column at a time would
            raise
        return (torch.from_numpy(x_num), torch.from_numpy(x_cat), *(torch.from_numpy(x) for x in own))

    def _encode_each(self, columns: Mapping[str, Any], *, where: str, index: Any) -> None:
        for c in self.schema.columns:
            feature_type(c.kind).encode(self.features[c.name], as_series(columns[c.name], c.name, index), where=where)

    def _plan(self) -> "_Plan":
        """Where each column's encoding goes, worked out once per fitted preprocessor."""
        plan = self.__dict__.get("_cached_plan")
        if plan is None:
            plan = self._cached_plan = _Plan.of(self)
        return plan

    def imputed(self, frame: pd.DataFrame) -> dict[str, int]:
        """Per table column, the values `encode_frame` fills in from the fitted state (missing
        values; see `FeatureType.imputed`); columns with none are left out."""
        counts = {}
        for c in self.schema.columns:
            if c.name in self.features and c.name in frame.columns:
                n = feature_type(c.kind).imputed(self.features[c.name], frame[c.name])
                if n:
                    counts[c.name] = n
        return counts

    def input_signature(self) -> list[dict[str, Any]]:
        """A table's request signature: one entry per column, as its feature type describes it."""
        return [feature_type(c.kind).signature(c.name, self.features[c.name]) for c in self.schema.columns]

    def column_features(self) -> dict[str, tuple[Any, FeatureState]]:
        """Each table column's (feature type, fitted state), by name."""
        return {c.name: (feature_type(c.kind), self.features[c.name]) for c in self.schema.columns if c.name in self.features}

    def column_groups(self) -> list[tuple[str, str, int, list[int] | None]]:
        """Where each table column sits in the inputs of `encode_frame`: (name, feature type,
        tensor index, its columns in that tensor, or None for a tensor of its own)."""
        groups: list[tuple[str, str, int, list[int] | None]] = []
        at = {"float": 0, "index": 0}
        own = 2
        for c in self.schema.columns:
            slot = feature_type(c.kind).slot
            if slot in OWN_TENSOR:
                groups.append((c.name, c.kind, own, None))
                own += 1
            else:
                width = c.width if slot == "float" else 1
                groups.append((c.name, c.kind, 0 if slot == "float" else 1, list(range(at[slot], at[slot] + width))))
                at[slot] += width
        return groups

    def check_columns(self, frame: pd.DataFrame | Mapping[str, Any], *, where: str = "input", allow_extra: tuple[str, ...] = ()) -> None:
        """Refuse a frame (or columns by name) whose columns differ from the schema's (the target may be present)."""
        expected = self.schema.input_names
        allowed = {self.schema.target, *self.schema.ignored, *allow_extra}
        given = frame.columns.tolist() if isinstance(frame, pd.DataFrame) else list(frame)
        present = set(given)
        missing = [c for c in expected if c not in present]
        extra = [c for c in given if c not in expected and c not in allowed]
        if missing:
            raise DataError(f"{where}: missing columns {missing} that the model needs")
        if extra:
            raise DataError(f"{where}: unexpected columns {extra}; the model takes {expected}")

    def encode_target(self, raw: RawData) -> torch.Tensor:
        """Class indices (int64) or standardised values (float32) for the target."""
        s = self.schema
        kind = KINDS[s.modality]
        own = kind.encode_target(self, raw)
        if own is not None:  # series windows and interactions define their own targets
            return own
        values = kind.target_values(self, raw)
        if s.task == "classification":
            labels = label_strings(values)
            index = {c: i for i, c in enumerate(s.classes or [])}
            unknown = sorted(set(labels.tolist()) - index.keys())
            if unknown:
                raise DataError(f"{raw.origin}: target values {unknown[:5]} are not classes the model knows ({s.classes})")
            return torch.tensor([index[v] for v in labels], dtype=torch.int64)
        y = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(y).any():
            raise DataError(f"{raw.origin}: target {s.target!r} has non-numeric or missing values")
        return torch.from_numpy(((y - self.tensors["target.mean"].numpy()) / self.tensors["target.std"].numpy()).astype(np.float32))

    def decode_regression(self, z: np.ndarray) -> np.ndarray:
        """Undo the target standardisation of model outputs."""
        return z * self.tensors["target.std"].numpy() + self.tensors["target.mean"].numpy()

    # ------------------------------------------------------------------ state

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The fitted state as (JSON-serialisable dict, named tensors).

        `features` holds each table column's feature type and frozen state; `binary_values`
        and `vocabularies` repeat what the server's request checks read. The other kinds'
        `input_state` is saved as its named tensors (and its vocabularies, if it has any).
        """
        meta = {
            "schema": self.schema.to_dict(),
            "missing": {"numeric": self.numeric_missing, "categorical": self.categorical_missing},
            "features": {
                name: {"type": next(c.kind for c in self.schema.columns if c.name == name), "state": st.to_json()}
                for name, st in self.features.items()
            },
            "binary_values": self.binary_values,
            "vocabularies": self.vocabularies,
            "categorical_fill": self.categorical_fill,
        }
        own = self.input_state.tensors() if self.input_state is not None else {}
        return meta, {k: v.contiguous() for k, v in {**self.tensors, **own}.items()}

    @classmethod
    def from_state(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "Preprocessor":
        p = cls(
            Schema.from_dict(meta["schema"]),
            numeric_missing=meta["missing"]["numeric"],
            categorical_missing=meta["missing"]["categorical"],
        )
        p.binary_values = {k: list(v) for k, v in meta["binary_values"].items()}
        p.vocabularies = {k: list(v) for k, v in meta["vocabularies"].items()}
        p.categorical_fill = {k: str(v) for k, v in meta.get("categorical_fill", {}).items()}
        p.tensors = dict(tensors)
        state_type = KINDS[p.schema.modality].state_type
        if state_type is not None:  # the kind's own state; the preprocessor keeps the rest (target scaling)
            p.input_state = state_type.from_saved(p.schema, p.vocabularies, p.tensors)
            for name in state_type.tensor_names.values():
                p.tensors.pop(name, None)
        if "features" in meta:
            p.features = {name: feature_type(f["type"]).state_type.from_json(f["state"]) for name, f in meta["features"].items()}
        elif "num.mean" in p.tensors:  # a table package from before feature types
            p.features = _legacy_states(p)
        p.fitted = True
        return p

    # ------------------------------------------------------------------ helpers

    def fit_columns(self, frame: pd.DataFrame, *, where: str) -> None:
        """Each column's feature type learns its state from the training split."""
        self.__dict__.pop("_cached_plan", None)
        options = self.options()
        for c in self.schema.columns:
            t = feature_type(c.kind)
            state = self.features[c.name] = t.fit(frame[c.name], dataclasses.replace(options, column=dict(c.settings)), where=where)
            if t.slot == "float":
                c.width = t.size(state)
            elif t.slot == "grid":
                c.grid = list(t.grid(state))
            else:
                c.vocabulary = t.size(state)
        self._legacy_views()

    def options(self) -> FeatureOptions:
        """How this schema's columns are fitted (the spec's missing-value policies and text options)."""
        return FeatureOptions(
            self.numeric_missing, self.categorical_missing, text=self.schema.text.to_json() if self.schema.text is not None else {}
        )

    def _legacy_views(self) -> None:
        # The vocabularies and binary values by column, as packages before feature types held
        # them; the server's signature and ONNX probe read them from the manifest.
        for name, state in self.features.items():
            if isinstance(state, BinaryState):
                self.binary_values[name] = list(state.values)
            elif isinstance(state, (CategoricalState, TextState)):
                self.vocabularies[name] = list(state.vocabulary)


def frame_columns(frame: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """The columns `names` of `frame`, each once: a frame of one numpy number type (a table of
    measurements) as views of one array, taken in one call; otherwise each column as its Series,
    which the feature types read as they always have (pandas' own types kept)."""
    dtypes = set(frame.dtypes.tolist())
    only = dtypes.pop() if len(dtypes) == 1 else None
    if isinstance(only, np.dtype) and only.kind in "iuf":
        values = frame.to_numpy()
        at = {c: j for j, c in enumerate(frame.columns.tolist())}
        return {name: values[:, at[name]] for name in names}
    return {name: frame[name] for name in names}


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a fitted table encodes: each block of columns (one feature type, one matrix) with
    its slot and the matrix columns it fills, the matrices' widths, and the columns with a
    tensor of their own (name, type, state), in schema order."""

    blocks: tuple[tuple[Block, str, Any], ...]
    widths: dict[str, int]
    own: tuple[tuple[str, Any, FeatureState], ...]

    @classmethod
    def of(cls, pre: "Preprocessor") -> "_Plan":
        at: dict[tuple[str, str], list[int]] = {}  # (type, slot) -> matrix columns, in order of the columns
        members: dict[tuple[str, str], list[str]] = {}
        widths = {"float": 0, "index": 0}
        own = []
        for c in pre.schema.columns:
            t, state = feature_type(c.kind), pre.features[c.name]
            if t.slot in OWN_TENSOR:
                own.append((c.name, t, state))
                continue
            width = t.size(state) if t.slot == "float" else 1
            key = (t.name, t.slot)
            at.setdefault(key, []).extend(range(widths[t.slot], widths[t.slot] + width))
            members.setdefault(key, []).append(c.name)
            widths[t.slot] += width
        blocks = []
        for (name, slot), names in members.items():
            t = feature_type(name)
            cols = at[(name, slot)]
            contiguous = cols == list(range(cols[0], cols[0] + len(cols)))
            blocks.append((t.block([pre.features[n] for n in names], names), slot, slice(cols[0], cols[-1] + 1) if contiguous else cols))
        return cls(tuple(blocks), widths, tuple(own))


def _legacy_states(pre: "Preprocessor") -> dict[str, FeatureState]:
    """The feature states of a table package written before feature types (format 1): its
    scalers were tensors over the numeric and binary columns, in order, beside per-column
    vocabularies, binary values and modes. Such packages carry no training range; the bounds
    of an attack are then taken as four standard deviations either side of the mean."""
    fill, mean, std = (pre.tensors[f"num.{k}"].numpy() for k in ("fill", "mean", "std"))
    numeric_names = [c.name for c in pre.schema.columns if c.kind in ("numeric", "binary")]
    on_missing = "error" if pre.numeric_missing == "error" else "fill"
    states: dict[str, FeatureState] = {}
    for c in pre.schema.columns:
        if c.kind in ("numeric", "binary"):
            j = numeric_names.index(c.name)
            f, m, sd = float(fill[j]), float(mean[j]), float(std[j])
            if c.kind == "binary":
                neg, pos = pre.binary_values[c.name]
                states[c.name] = BinaryState((neg, pos), f, m, sd, on_missing)
            else:
                states[c.name] = NumericState(f, m, sd, m - 4 * sd, m + 4 * sd, on_missing)
        else:
            vocab = tuple(pre.vocabularies[c.name])
            index = {v: i for i, v in enumerate(vocab)}
            filled = index.get(pre.categorical_fill[c.name], 0) if c.name in pre.categorical_fill else index[MISSING]
            states[c.name] = CategoricalState(vocab, filled, "error" if pre.categorical_missing == "error" else "fill")
    return states
