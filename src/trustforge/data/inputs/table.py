"""Tables: rows of columns, each through its own feature type (see `data.features`).

A column of image or audio file names is read here, once its type is known: each path,
relative to the table file's folder and confined to it, becomes the file's bytes, so every
later stage (splits, corruptions, the package's drift reference) holds contents, not paths.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd
import torch

from trustforge.data._attack_space import AttackSpace, EditSpace
from trustforge.data._augment import Augmentation, TableAugment, mixup_copies
from trustforge.data._duplicates import RowKeys, table_keys
from trustforge.data._files import read_linked_files, read_table
from trustforge.data._profile import profile_columns
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema, infer_table_schema
from trustforge.data.features import OWN_TENSOR, feature_type, label_strings
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Columns
from trustforge.errors import DataError, SpecError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Table"]


class Table(InputKind):
    name = "table"
    # TabM (k = 8 members): on bench/tabular.py's ten tables level with the better of linear and
    # gradient boosting on average (the MLP 2 points behind), for about 1.5x the MLP's run.
    default_model = "tabm"

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        schema, cleaned = infer_table_schema(
            raw, task=task, features=data.features, drop=data.drop, max_categories=data.max_categories, text=None, data=data
        )
        return schema, self._with_files(schema, cleaned)

    def subset(self, raw: RawData, idx: np.ndarray) -> RawData:
        return RawData(
            raw.modality,
            raw.target,
            raw.origin,
            frame=raw.frame.iloc[idx].reset_index(drop=True),
            classes=raw.classes,
            text=raw.text,
            root=raw.root,
            rows=raw.rows[idx] if raw.rows is not None else None,
        )

    def labels(self, raw: RawData) -> np.ndarray:
        return label_strings(raw.frame[raw.target])

    def row_keys(self, raw: RawData, schema: Schema) -> RowKeys:
        return replace(table_keys(raw.frame, schema), labels=self.labels(raw))

    def profile(self, raw: RawData, schema: Schema) -> dict[str, Any]:
        return {"columns": profile_columns(raw.frame, schema)}

    def shape(self, schema: Schema) -> Columns:
        own = [c for c in schema.columns if feature_type(c.kind).slot in OWN_TENSOR]
        return Columns(
            schema.float_width,
            tuple(c.vocabulary for c in schema.slot("index")),
            tuple(c.vocabulary for c in schema.slot("tokens")),
            grids=tuple(tuple(c.grid or ()) for c in schema.slot("grid")),
            own=tuple(feature_type(c.kind).slot for c in own),
        )

    def attack_spaces(self, pre: "Preprocessor") -> tuple[AttackSpace | None, ...] | None:
        # The float matrix: each column's own space (numbers move within their training range,
        # in standard deviations); columns whose type declares none (binary flags, dates) stay
        # put. Category indices never move; a text, image or audio column's tensor moves as its
        # type says.
        lo, hi, unit, mask, budgets, sweeps, maxes = [], [], [], [], [], [], []
        own: list[AttackSpace | None] = []
        for c in pre.schema.columns:
            t = feature_type(c.kind)
            space = t.attack_space(pre.features[c.name])
            if t.slot in OWN_TENSOR:
                own.append(space)
            elif t.slot == "float":
                width = t.size(pre.features[c.name])
                if space is None:
                    lo.append(np.zeros(width)), hi.append(np.zeros(width)), unit.append(np.ones(width)), mask.append(np.zeros(width, bool))
                else:
                    lo.append(np.broadcast_to(space.lo, (width,))), hi.append(np.broadcast_to(space.hi, (width,)))
                    unit.append(np.broadcast_to(space.unit, (width,)))
                    mask.append(np.ones(width, bool) if space.mask is None else np.broadcast_to(space.mask, (width,)))
                    budgets.append(space.budget)
                    sweeps.append(space.epsilons)
                    maxes.append(space.max_epsilon)
        floats = None
        if budgets:
            floats = AttackSpace(
                np.concatenate(lo), np.concatenate(hi), np.concatenate(unit), np.concatenate(mask), budget=budgets[0], epsilons=sweeps[0],
                max_epsilon=None if None in maxes else min(maxes),
            )  # fmt: skip
        spaces = (floats, None, *own)
        return spaces if any(s is not None and s.moves() for s in spaces) else None

    def augment(self, pre: "Preprocessor", data: Any, *, seed: int) -> Augmentation:
        # Each column's type says what happens to its part of a batch (noise on numbers, edits of
        # a text, an image column's image operations); mixup adds one mixed copy of each row.
        a = data.augment
        noise: list[float] = []
        mix: list[bool] = []
        own: dict[int, Any] = {}
        used: dict[str, Any] = {}
        reads: set[str] = set()  # what the columns read: noise on a table without numbers is refused, not ignored
        k = 0
        for c in pre.schema.columns:
            t, state = feature_type(c.kind), pre.features[c.name]
            reads |= t.augments
            col = t.augment(state, a)
            if t.slot in OWN_TENSOR:
                if col is not None and col.op is not None:
                    own[k] = col.op
                k += 1
            elif t.slot == "float":
                width = t.size(state)
                noise += [col.noise if col is not None else 0.0] * width
                mix += [col is not None and col.mix] * width
            if col is not None and col.used:  # the evidence, one entry per type: {numeric: {noise: 0.1, columns: [...]}}
                used.setdefault(t.name, {**col.used, "columns": []})["columns"].append(c.name)
        batch = TableAugment(torch.tensor(noise, dtype=torch.float32) if any(noise) else None, own, dict(used))
        copies = None
        if a.mixup:
            if not any(mix):
                raise SpecError("data.augment.mixup: the table has no numeric column to mix; remove it")
            mask = torch.tensor(mix)

            def copies(inputs: tuple[torch.Tensor, ...], target: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
                # Class indices keep the row's class (the partner shares it); a regression target is mixed.
                extra, extra_target = mixup_copies(
                    inputs, target, alpha=a.mixup, mix=mask, classes=not target.is_floating_point(), seed=seed
                )
                return tuple(torch.cat([x, e]) for x, e in zip(inputs, extra)), torch.cat([target, extra_target])

            used["rows"] = {"mixup": a.mixup, "copies": 1}
        return Augmentation(batch_inputs=batch if batch else None, copies=copies, used=used, reads=frozenset(reads))

    def edit_space(self, pre: "Preprocessor") -> EditSpace | None:
        # The columns whose type says an edit attack may change them (free text); a text task's
        # one column is such a column too (`Text` inherits this).
        columns = tuple(c.name for c in pre.schema.columns if feature_type(c.kind).edit_space(pre.features.get(c.name)))
        return EditSpace(columns) if columns else None

    def fit(self, pre: "Preprocessor", raw: RawData) -> None:
        pre.fit_columns(self._numbered(self._with_files(pre.schema, raw)), where=raw.origin)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return pre.encode_frame(self._numbered(self._with_files(pre.schema, raw)), where=raw.origin)

    def encode_columns(self, pre: "Preprocessor", columns: Mapping[str, Any], *, where: str) -> tuple[torch.Tensor, ...]:
        """The columns' inputs as `encode` gives them for a DataFrame of those columns (same
        checks, same errors), without building one: each value is one array per column."""
        pre.check_columns(columns, where=where)
        names = pre.schema.input_names
        given = {name: _column(columns[name], name, where) for name in names}
        lengths = {len(v) for v in given.values()}
        if len(lengths) > 1:
            raise DataError(f"{where}: columns have different numbers of rows ({', '.join(f'{k}: {len(v)}' for k, v in given.items())})")
        return pre.encode_columns(given, lengths.pop() if lengths else 0, where=where)

    @staticmethod
    def _numbered(raw: RawData) -> pd.DataFrame:
        """The frame indexed by each row's place in the file, so a feature type's message names
        the row a user can find (`features.row_of`), whatever split the row is in."""
        return raw.frame if raw.rows is None else raw.frame.set_axis(raw.rows, axis=0)

    def _with_files(self, schema: Schema, raw: RawData) -> RawData:
        """`raw` with the files its columns name read as bytes (a table read from a file; see
        `data._files.read_linked_files`); without a folder (a DataFrame, a request) as it is."""
        linked = [c for c in schema.columns if feature_type(c.kind).files and c.name in raw.frame.columns]
        if raw.root is None or not linked:
            return raw
        frame, numbered = raw.frame.copy(), self._numbered(raw)
        for c in linked:
            t = feature_type(c.kind)
            read = read_linked_files(numbered[c.name], Path(raw.root), t.files, where=raw.origin, kinds=getattr(t, "kinds", c.kind))
            frame[c.name] = read.to_numpy()
        return RawData(raw.modality, raw.target, raw.origin, frame=frame, classes=raw.classes, text=raw.text, root=raw.root, rows=raw.rows)

    def target_values(self, pre: "Preprocessor", raw: RawData) -> pd.Series:
        return raw.frame[pre.schema.target]

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        return pre.input_signature()

    def read_input(self, schema: Schema, source: Any) -> RawData:
        if isinstance(source, pd.DataFrame):
            return RawData("table", schema.target, "input", frame=source)
        if isinstance(source, np.ndarray):
            raise DataError("this model takes a table, not an array")
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{path}: this model takes a CSV or Parquet table, not a folder")
        raw = RawData("table", schema.target, str(path), frame=read_table(path), root=str(path.parent))
        return self._with_files(schema, raw)

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        if schema.target not in raw.frame.columns:
            raise DataError(f"{raw.origin}: no target column {schema.target!r} to evaluate against")
        return self.subset(raw, np.flatnonzero(raw.frame[schema.target].notna().to_numpy()))


def _column(values: Any, name: str, where: str) -> np.ndarray | pd.Series:
    """One column of `encode_columns`: an array or Series as given, a list as a DataFrame would
    hold it; refused unless it holds one value per row."""
    if isinstance(values, (np.ndarray, pd.Series)):
        if values.ndim == 1:
            return values
    elif np.ndim(values) == 1:
        return pd.Series(values, name=name)
    raise DataError(f"{where}: column {name!r} must hold one value per row; got shape {list(np.shape(values))}")
