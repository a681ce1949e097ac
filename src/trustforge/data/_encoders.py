"""Feature and target encoders: fitted on the training split, saved as JSON + tensors.

`Preprocessor` turns raw data into model inputs, a tuple of tensors:
- tables: (numeric float32 (N, D), categorical int64 (N, K)); binary columns are 0/1 numerics,
  categoricals are vocabulary indices (0 = a value never seen in training).
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

from typing import Any

import numpy as np
import pandas as pd
import torch

from trustforge.data import _audio, _interactions, _sequences, _series, _text
from trustforge.data._schema import Schema, _natural, label_strings
from trustforge.data._sources import RawData
from trustforge.errors import DataError

__all__ = ["Preprocessor", "UNKNOWN", "MISSING"]

UNKNOWN = "<unknown>"
MISSING = "<missing>"


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
        self.fitted = False

    # ------------------------------------------------------------------ fitting

    def fit(self, raw: RawData) -> "Preprocessor":
        """Learn scalers, vocabularies and image statistics from the training split."""
        s = self.schema
        if s.modality == "image":
            x = torch.from_numpy(raw.images)
            self.tensors["image.mean"] = x.mean(dim=(0, 2, 3)).float()
            # A constant channel would divide by zero; its std is set to 1.
            std = x.std(dim=(0, 2, 3)).float()
            self.tensors["image.std"] = torch.where(std > 1e-6, std, torch.ones_like(std))
        elif s.modality == "series":
            _series.fit(self, raw)
        elif s.modality == "sequence":
            _sequences.fit(self, raw)
        elif s.modality == "audio":
            _audio.fit(self, raw)
        elif s.modality == "interactions":
            _interactions.fit(self, raw)
        elif s.modality == "text":
            _text.fit(self, raw)
        else:
            frame = raw.frame
            for c in s.columns:
                if c.kind == "binary":
                    self.binary_values[c.name] = _binary_values(frame[c.name])
                elif c.kind == "categorical":
                    values = frame[c.name].dropna().astype(str)
                    if self.categorical_missing == "most_frequent" and len(values):
                        self.categorical_fill[c.name] = str(values.mode().iloc[0])
                    seen = sorted(set(values))
                    self.vocabularies[c.name] = [UNKNOWN, MISSING] + seen
                    c.vocabulary = len(self.vocabularies[c.name])
            num = self._numeric_matrix(frame, impute=False)
            fill = self._fill_values(num)
            filled = np.where(np.isnan(num), fill, num)
            mean = filled.mean(axis=0) if len(filled) else np.zeros(num.shape[1])
            std = filled.std(axis=0) if len(filled) else np.ones(num.shape[1])
            std = np.where(std > 1e-12, std, 1.0)
            self.tensors["num.fill"] = torch.tensor(fill, dtype=torch.float64)
            self.tensors["num.mean"] = torch.tensor(mean, dtype=torch.float64)
            self.tensors["num.std"] = torch.tensor(std, dtype=torch.float64)
        if s.task == "regression":
            y = np.asarray(raw.frame[s.target] if raw.frame is not None else raw.labels, dtype=np.float64)
            self.tensors["target.mean"] = torch.tensor([y.mean()], dtype=torch.float64)
            self.tensors["target.std"] = torch.tensor([y.std() if y.std() > 1e-12 else 1.0], dtype=torch.float64)
        self.fitted = True
        return self

    # ------------------------------------------------------------------ encoding

    def encode_inputs(self, raw: RawData) -> tuple[torch.Tensor, ...]:
        """Model inputs for `raw`, checked against the schema."""
        if self.schema.modality == "image":
            return (self.encode_images(raw.images),)
        if self.schema.modality == "series":
            return _series.encode_inputs(self, raw)
        if self.schema.modality == "sequence":
            return _sequences.encode(self, raw)
        if self.schema.modality == "audio":
            return _audio.encode(self, raw)
        if self.schema.modality == "interactions":
            return _interactions.encode_inputs(self, raw)
        if self.schema.modality == "text":
            return _text.encode(self, raw)
        return self.encode_frame(raw.frame, where=raw.origin)

    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        want = tuple(self.schema.image_shape or ())
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise DataError(f"images have shape {tuple(images.shape[1:])}; the model expects {want} (C, H, W)")
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        mean = self.tensors["image.mean"].view(1, -1, 1, 1)
        std = self.tensors["image.std"].view(1, -1, 1, 1)
        return (x - mean) / std  # (N, C, H, W)

    def encode_frame(self, frame: pd.DataFrame, *, where: str = "input") -> tuple[torch.Tensor, torch.Tensor]:
        self.check_columns(frame, where=where)
        num = self._numeric_matrix(frame, impute=True, where=where)
        mean, std = self.tensors["num.mean"].numpy(), self.tensors["num.std"].numpy()
        x_num = torch.from_numpy(((num - mean) / std).astype(np.float32))  # (N, D)
        cats = []
        for name in self.schema.categorical:
            vocab = self.vocabularies[name]
            index = {v: i for i, v in enumerate(vocab)}
            col = frame[name]
            if col.isna().any():
                if self.categorical_missing == "error":
                    raise DataError(f"{where}: column {name!r} has {int(col.isna().sum())} missing values (data.missing.categorical: error)")
            text = col.astype(object).where(col.notna(), None)
            fill = index.get(self.categorical_fill[name], 0) if name in self.categorical_fill else index[MISSING]
            cats.append([index.get(str(v), 0) if v is not None else fill for v in text])
        x_cat = torch.tensor(np.array(cats, dtype=np.int64).T.reshape(len(frame), len(cats)))  # (N, K)
        return x_num, x_cat

    def check_columns(self, frame: pd.DataFrame, *, where: str = "input", allow_extra: tuple[str, ...] = ()) -> None:
        """Refuse a frame whose columns differ from the schema's (the target may be present)."""
        expected = self.schema.input_names
        allowed = {self.schema.target, *self.schema.ignored, *allow_extra}
        missing = [c for c in expected if c not in frame.columns]
        extra = [c for c in frame.columns if c not in expected and c not in allowed]
        if missing:
            raise DataError(f"{where}: missing columns {missing} that the model needs")
        if extra:
            raise DataError(f"{where}: unexpected columns {extra}; the model takes {expected}")

    def encode_target(self, raw: RawData) -> torch.Tensor:
        """Class indices (int64) or standardised values (float32) for the target."""
        s = self.schema
        if s.modality == "series":
            return _series.encode_target(self, raw)
        if s.modality == "interactions":
            return _interactions.encode_target(self, raw)
        if s.modality == "sequence" and raw.labels is None:
            raise DataError(f"{raw.origin}: no targets (array {s.target!r}) to evaluate against")
        values = raw.frame[s.target] if raw.frame is not None else raw.labels
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
        """The fitted state as (JSON-serialisable dict, named tensors)."""
        meta = {
            "schema": self.schema.to_dict(),
            "missing": {"numeric": self.numeric_missing, "categorical": self.categorical_missing},
            "binary_values": self.binary_values,
            "vocabularies": self.vocabularies,
            "categorical_fill": self.categorical_fill,
        }
        return meta, {k: v.contiguous() for k, v in self.tensors.items()}

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
        p.fitted = True
        return p

    # ------------------------------------------------------------------ helpers

    def _numeric_matrix(self, frame: pd.DataFrame, *, impute: bool, where: str = "input") -> np.ndarray:
        cols = []
        for name in self.schema.numeric:
            col = frame[name]
            if name in self.binary_values:
                neg, pos = self.binary_values[name]
                text = pd.Series(label_strings(col), index=col.index).where(col.notna(), None)
                bad = sorted({v for v in text.dropna() if v not in (neg, pos)})
                if bad:
                    raise DataError(f"{where}: column {name!r} is binary ({neg!r}/{pos!r}); got {bad[:3]}")
                cols.append(np.where(text.isna(), np.nan, (text == pos).astype(np.float64)))
            else:
                converted = pd.to_numeric(col, errors="coerce")
                bad = converted.isna() & col.notna()
                if bad.any():
                    example = col[bad].iloc[0]
                    raise DataError(f"{where}: column {name!r} must be numeric; got {str(example)[:40]!r} in row {int(bad.to_numpy().nonzero()[0][0]) + 1}")
                values = converted.to_numpy(dtype=np.float64)
                inf = np.isinf(values)
                if inf.any():
                    # An infinity would turn the column's scaler, and so every row, into NaN.
                    raise DataError(f"{where}: column {name!r} holds {values[inf][0]} in row {int(inf.nonzero()[0][0]) + 1}; values must be finite")
                cols.append(values)
        num = np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))
        if impute:
            nan = np.isnan(num)
            if nan.any():
                if self.numeric_missing == "error":
                    name = self.schema.numeric[int(nan.any(axis=0).nonzero()[0][0])]
                    raise DataError(f"{where}: column {name!r} has missing values (data.missing.numeric: error)")
                num = np.where(nan, self.tensors["num.fill"].numpy(), num)
        return num

    def _fill_values(self, num: np.ndarray) -> np.ndarray:
        nan = np.isnan(num)
        if nan.any() and self.numeric_missing == "error":
            name = self.schema.numeric[int(nan.any(axis=0).nonzero()[0][0])]
            raise DataError(f"column {name!r} has {int(nan[:, self.schema.numeric.index(name)].sum())} missing values (data.missing.numeric: error)")
        fill = np.zeros(num.shape[1])
        for j, name in enumerate(self.schema.numeric):
            col = num[:, j][~nan[:, j]]
            if name in self.binary_values or self.numeric_missing not in ("median", "mean"):
                # Binary columns impute their most frequent value; `zero` imputes 0.
                fill[j] = (np.round(col.mean()) if name in self.binary_values else 0.0) if len(col) else 0.0
            elif len(col):
                fill[j] = np.median(col) if self.numeric_missing == "median" else col.mean()
        return fill


def _binary_values(col: pd.Series) -> list[str]:
    # Sorted, so the positive value is the larger one: 1 over 0, 10 over 9, True over False, yes over no.
    values = sorted(set(label_strings(col.dropna()).tolist()), key=_natural)
    if len(values) != 2:
        raise DataError(f"column {col.name!r} was inferred binary but has {len(values)} distinct values in training")
    return values
