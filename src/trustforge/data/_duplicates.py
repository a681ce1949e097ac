"""Repeated rows: found, counted and handled by the spec's policy (`data.duplicates`), never silently.

Four findings, each with a policy of `drop`, `fail` or `warn`:

- exact duplicates: rows whose inputs and target repeat an earlier row;
- near duplicates: rows that do so once each value is normalised by its feature type
  (`FeatureType.near_form`: text without case, punctuation and extra spaces, numbers to 4
  significant digits; arrays of pixels or samples scaled and coarsened), but not exactly;
- conflicting duplicates: rows with the same inputs and different targets (one of them is
  mislabelled, or the inputs miss what decides the target);
- duplicates across splits: validation or test rows whose inputs also sit in the training
  split. A model can recall them rather than generalise, so the held-out score is inflated;
  the default removes them from the held-out side (training keeps its copy) and says how many.

Rows are compared on the model's inputs: the schema's input columns (so not the target, nor
the `data.drop` columns, which are no inputs), less the ID-like ones (`id_like`: a record
number or code of its own on every row). An ID column would make every row distinct, hiding
copies that differ only in it, and a model learns nothing from it that carries to new rows;
the findings name the columns left out (`ignored_columns`).

Rows are compared by a 64-bit hash of their inputs (pandas' `hash_pandas_object` for tables,
BLAKE2b of the array bytes otherwise), so a finding costs one pass over the data and no
pairwise comparison. We write this rather than take a deduplication library: the exact and
normalised hashes are a few lines over what the feature types already know, and the library
candidates (dedupe, recordlinkage) learn fuzzy record matches, a different and costlier job.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data.features import feature_type
from trustforge.errors import DataError

__all__ = [
    "ID_DISTINCT",
    "Duplicates",
    "RowKeys",
    "across_splits",
    "array_keys",
    "dedupe",
    "id_like",
    "id_like_columns",
    "screen_duplicates",
    "table_keys",
]

log = logging.getLogger("trustforge.data")

EXAMPLES = 10  # row numbers a finding lists at most
ID_DISTINCT = 0.99  # share of distinct values among the present ones that makes a column ID-like
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key|index|record|row)s?$|^(id|uuid|guid)[_\W]|[a-z]Id$", re.IGNORECASE)
MOST = 0.5  # share of a held-out split that repeats training above which `drop` keeps the repeats (see `across_splits`)


@dataclass(frozen=True)
class RowKeys:
    """What rows are compared by: one integer per row for its inputs (equal inputs, equal
    integers), one for its normalised inputs, and its target as text (None: unlabelled)."""

    inputs: np.ndarray  # int64 (N,)
    near: np.ndarray  # int64 (N,)
    labels: np.ndarray | None = None
    ignored: tuple[tuple[str, str], ...] = ()  # (column, why) input columns left out of the comparison (ID-like)

    def subset(self, idx: np.ndarray) -> "RowKeys":
        return RowKeys(self.inputs[idx], self.near[idx], None if self.labels is None else self.labels[idx], self.ignored)


def id_like(name: str, values: np.ndarray, distinct: int, n: int) -> str | None:
    """Why a column is ID-like (None: it is not).

    Args:
        values: the column as `FeatureType.profile_values` gives it (float64 with NaN, or object labels).
        distinct: its distinct present values; n: its present values.
    """
    if n < 20:
        return None
    ratio = distinct / n
    if values.dtype == object:
        text = pd.Series(values).dropna().astype(str)
        codes = bool(len(text)) and bool((~text.str.contains(r"\s")).mean() >= 0.99)
        if ratio >= ID_DISTINCT and codes:
            return "every value distinct, short codes"
    else:
        present = values[~np.isnan(values)]
        whole = bool(len(present)) and bool(np.all(present == np.round(present)))
        if ratio >= ID_DISTINCT and whole:
            # A count or an amount in whole units can be all distinct too; a numbering is dense or counts up.
            if len(present) > 1 and np.all(np.diff(present) > 0):
                return "every value a distinct whole number, counting up row by row"
            if float(present.max() - present.min()) <= 2 * len(present):
                return "every value a distinct whole number, densely numbered"
    if ratio >= 0.9 and _ID_NAME.search(str(name)):
        return "named like an id, values nearly all distinct"
    return None


def id_like_columns(frame: pd.DataFrame, schema: Schema) -> dict[str, str]:
    """The schema's input columns that are ID-like, with why (see `id_like`)."""
    out = {}
    for c in schema.columns:
        values = feature_type(c.kind).profile_values(frame[c.name])
        if values is None:
            continue
        present = pd.Series(values).dropna() if values.dtype == object else pd.Series(values[~np.isnan(values)])
        reason = id_like(c.name, values, int(present.nunique()), len(present))
        if reason:
            out[c.name] = reason
    return out


def table_keys(frame: pd.DataFrame, schema: Schema) -> RowKeys:
    """Keys of a table's rows over its input columns less the ID-like ones; the normal form of each column is its feature type's.

    Where every input column is ID-like, all are compared (rows left with nothing to compare would all be copies).
    """
    ids = id_like_columns(frame, schema)
    columns = [c for c in schema.columns if c.name not in ids] or list(schema.columns)
    names = [c.name for c in columns]
    ignored = tuple((c.name, ids[c.name]) for c in schema.columns if c.name not in names)
    near = pd.DataFrame({c.name: feature_type(c.kind).near_form(frame[c.name]).to_numpy() for c in columns})
    return RowKeys(_ids(_hash_rows(frame[names])), _ids(_hash_rows(near)), ignored=ignored)


def _hash_rows(frame: pd.DataFrame) -> np.ndarray:
    try:
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()
    except TypeError:  # unhashable values (a JSON object in a cell): compared by their text; the column's type refuses them later
        return pd.util.hash_pandas_object(frame.astype(str).where(frame.notna(), None), index=False).to_numpy()


def array_keys(values: np.ndarray, *, blocks: str = "mean") -> RowKeys:
    """Keys of rows that are one array each (N, ...): images, clips, sequences.

    Near form: the row cut into at most 64 blocks, each block summarised (`blocks`: "mean" for
    pixels and sequences, "rms" for a waveform, whose mean is about 0 whatever it says) in units
    of half the spread of those summaries over the whole data, rounded. A copy with a little
    noise usually lands on the same form (8 to 9 in 10 at the levels tried: pixel noise of
    0.01 on digits, 50 dB below full scale on speech) and distinct rows do not (none among 200
    digits, 1 pair among the 640 spoken digits); a copy straddling a rounding edge is missed,
    so near duplicates of arrays are a lower bound.
    """
    flat = np.ascontiguousarray(values.reshape(len(values), -1))
    exact = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in flat]
    if not flat.shape[1] or not len(flat):
        return RowKeys(_ids(np.array(exact, dtype=object)), _ids(np.array(exact, dtype=object)))
    parts = np.array_split(flat.astype(np.float64), min(64, flat.shape[1]), axis=1)
    if blocks == "rms":
        coarse = np.stack([np.sqrt(np.mean(np.square(b), axis=1)) for b in parts], axis=1)
    else:
        coarse = np.stack([b.mean(axis=1) for b in parts], axis=1)
    near_form = np.round(coarse / (0.5 * (float(coarse.std()) or 1.0))).astype(np.int64)
    near = [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in np.ascontiguousarray(near_form)]
    return RowKeys(_ids(np.array(exact, dtype=object)), _ids(np.array(near, dtype=object)))


def _ids(values: np.ndarray) -> np.ndarray:
    return pd.factorize(values)[0].astype(np.int64)


@dataclass
class Duplicates:
    """The findings and what was done; `to_json` is the profile's `duplicates` section.

    Counts are rows: `exact` rows repeat an earlier row, `near` rows repeat one only once
    normalised; `conflicting` rows share their inputs with a row of another target (in
    `conflicting_groups` groups). `removed` counts the rows each policy dropped from the data
    set; `across_splits` counts held-out rows whose inputs sit in training, per split.
    """

    policy: dict[str, str]
    rows: int = 0
    exact: int = 0
    near: int = 0
    conflicting: int = 0
    conflicting_groups: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)
    across_splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    ignored_columns: list[dict[str, str]] = field(default_factory=list)  # input columns left out of the comparison, and why

    def to_json(self) -> dict[str, Any]:
        if self.skipped:
            return {"skipped": self.skipped, "policy": self.policy}
        return {
            "policy": self.policy,
            "rows": self.rows,
            "compared_on": "the model's input columns, less ID-like ones (data.drop columns are no inputs)",
            "ignored_columns": self.ignored_columns,
            "exact": self.exact,
            "near": self.near,
            "conflicting": self.conflicting,
            "conflicting_groups": self.conflicting_groups,
            "removed": self.removed,
            "examples": self.examples,
            "across_splits": self.across_splits,
        }

    def _say(self, sentence: str) -> None:
        # Notes go into profile.json and the report, so they name no file (a source can be a local path).
        self.notes.append(sentence)
        log.warning("data: %s", sentence)


def _policy(spec: Any) -> dict[str, str]:
    names = ("exact", "near", "conflicting", "across_splits")
    return (
        {n: getattr(spec, n) for n in names}
        if spec is not None
        else {"exact": "warn", "near": "warn", "conflicting": "warn", "across_splits": "drop"}
    )


def _later_copies(key: np.ndarray) -> np.ndarray:
    """Whether each row repeats the key of an earlier row."""
    _, first = np.unique(key, return_index=True)
    later = np.ones(len(key), dtype=bool)
    later[first] = False
    return later


def _pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One id per distinct (a, b) pair of ids (both in [0, N), so the product fits int64)."""
    return _ids(a.astype(np.int64) * (int(b.max()) + 1 if len(b) else 1) + b.astype(np.int64))


def _rows(where: np.ndarray, file_rows: np.ndarray | None) -> list[int]:
    """1-based row numbers (of the file when known) of the first `EXAMPLES` positions in `where`."""
    idx = np.flatnonzero(where)[:EXAMPLES]
    return [int(file_rows[i]) + 1 if file_rows is not None else int(i) + 1 for i in idx]


def dedupe(kind: Any, raw: RawData, schema: Schema, spec: Any) -> tuple[RawData, RowKeys | None, Duplicates]:
    """The data set with the within-data policies of `spec` (`data.duplicates`) applied.

    Args:
        kind: the data's `InputKind`, which says how its rows compare (`row_keys`) and subsets them.
        schema: its schema; `rows` is updated when rows are dropped.

    Returns:
        The rows kept, their keys (for `across_splits`), and the findings.
    """
    keys = kind.row_keys(raw, schema)
    keep, found = screen_duplicates(keys, spec, origin=raw.origin, file_rows=raw.rows)
    if keep is None or keys is None or len(keep) == len(raw):
        return raw, keys, found
    schema.rows = len(keep)
    return kind.subset(raw, keep), keys.subset(keep), found


def screen_duplicates(
    keys: RowKeys | None, spec: Any, *, origin: str, file_rows: np.ndarray | None = None
) -> tuple[np.ndarray | None, Duplicates]:
    """Find repeated rows in the whole data set and apply the within-data policies.

    Args:
        keys: the rows' keys (`InputKind.row_keys`); None where the kind cannot compare rows.
        spec: the spec's `data.duplicates` (None: the defaults).
        origin: the source, for messages.
        file_rows: each row's 0-based place in the file (`RawData.rows`), for the row numbers quoted.

    Returns:
        The positions of the rows to keep (sorted; None: all, rows not compared), and the findings.

    Raises:
        DataError: a finding whose policy is `fail`, naming the count, the field and example rows.
    """
    policy = _policy(spec)
    if keys is None:
        return None, Duplicates(policy, skipped="rows of this kind of input are not compared")
    n = len(keys.inputs)
    found = Duplicates(policy, rows=n, ignored_columns=[{"column": c, "why": why} for c, why in keys.ignored])
    if keys.ignored:
        found._say(
            f"rows compared without the ID-like column(s) {', '.join(repr(c) for c, _ in keys.ignored)}: "
            "a value of its own on each row would hide copies (drop them from the model with data.drop)"
        )
    labels = keys.labels if keys.labels is not None else np.zeros(n, dtype=object)
    label_ids = _ids(np.asarray(labels, dtype=object))
    exact = _later_copies(_pair(keys.inputs, label_ids))
    near = _later_copies(_pair(keys.near, label_ids)) & ~exact
    # Conflicting: inputs shared by rows of more than one target.
    frame = pd.DataFrame({"g": keys.inputs, "y": label_ids})
    targets = frame.groupby("g")["y"].nunique()
    bad = targets.index[targets.to_numpy() > 1].to_numpy()
    conflicting = np.isin(keys.inputs, bad)
    found.exact, found.near = int(exact.sum()), int(near.sum())
    found.conflicting, found.conflicting_groups = int(conflicting.sum()), int(len(bad))
    found.examples = {k: _rows(m, file_rows) for k, m in (("exact", exact), ("near", near), ("conflicting", conflicting)) if m.any()}

    what = {
        "exact": (exact, "row(s) repeat an earlier row exactly (inputs and target)"),
        "near": (near, "row(s) repeat an earlier row once normalised (case, spacing, rounding), not exactly"),
        "conflicting": (conflicting, f"row(s) in {found.conflicting_groups} group(s) share their inputs but not their target"),
    }
    drop = np.zeros(n, dtype=bool)
    for name, (mask, sentence) in what.items():
        count = int(mask.sum())
        if not count:
            continue
        rows = ", ".join(map(str, found.examples[name][:5]))
        if policy[name] == "fail":
            raise DataError(
                f"{origin}: {count} {sentence}, e.g. row(s) {rows} (data.duplicates.{name}: fail); "
                f"set data.duplicates.{name}: drop to remove them, or warn to keep them"
            )
        if policy[name] == "drop":
            newly = mask & ~drop
            drop |= mask
            found.removed[name] = int(newly.sum())
            found._say(f"{count} {sentence}; removed {int(newly.sum())} (data.duplicates.{name}: drop)")
        else:
            found._say(f"{count} {sentence}, e.g. row(s) {rows}; kept (data.duplicates.{name}: warn)")
    if drop.all():
        raise DataError(f"{origin}: data.duplicates removed every row")
    return np.flatnonzero(~drop), found


def across_splits(
    keys: RowKeys | None,
    found: Duplicates,
    train: np.ndarray,
    held_out: dict[str, np.ndarray],
    *,
    origin: str,
    file_rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The held-out splits with the rows whose inputs also sit in an earlier split handled by policy.

    Each held-out split is compared with training and with the held-out splits before it in
    `held_out` (test with training and validation: validation picks the epoch, the threshold
    and the temperature, so a test row that repeats one is not unseen either). Rows match on
    their exact inputs, or on their normalised inputs when `near` is `drop` (then a near copy
    is as good as a copy). Both counts are recorded either way. `drop` keeps them, saying so, where
    more than `MOST` of a split repeats: then the inputs take few distinct values (a table of a
    few categories), every new row repeats one too, and a repeat is no leak.

    Args:
        keys: keys of the rows the split indices point into (after `screen_duplicates`).
        train: positions of the training rows; held_out: split name -> positions, in order.

    Raises:
        DataError: the policy is `fail` and a held-out row sits in an earlier split.
    """
    if keys is None:
        return held_out
    policy = found.policy["across_splits"]
    by_near = found.policy["near"] == "drop"
    seen_exact, seen_near = set(keys.inputs[train].tolist()), set(keys.near[train].tolist())
    out = {}
    earlier = ["training"]
    for name, idx in held_out.items():
        if not len(idx):
            out[name] = idx
            continue
        where = " or ".join(earlier) + " split"
        exact = np.fromiter((k in seen_exact for k in keys.inputs[idx].tolist()), dtype=bool, count=len(idx))
        near = np.fromiter((k in seen_near for k in keys.near[idx].tolist()), dtype=bool, count=len(idx))
        hit = near if by_near else exact
        rows = file_rows[idx] if file_rows is not None else idx
        entry: dict[str, Any] = {
            "rows": int(len(idx)),
            "exact": int(exact.sum()),
            "near": int((near & ~exact).sum()),
            "match": "near" if by_near else "exact",
            "against": list(earlier),
        }
        entry["examples"] = _rows(hit, rows)
        count = int(hit.sum())
        kept = idx
        if count and policy == "fail":
            raise DataError(
                f"{origin}: {count} of the {len(idx)} {name} row(s) have inputs that also sit in the {where}, "
                f"e.g. row(s) {', '.join(map(str, entry['examples'][:5]))} (data.duplicates.across_splits: fail); "
                "set data.duplicates.across_splits: drop to remove them from the held-out side"
            )
        if count and policy == "drop" and count > MOST * len(idx):
            # Most held-out rows repeat: the inputs take few distinct values (a handful of
            # categories), so a repeat is what new data looks like too, not a leak. Removing
            # them would leave a held-out split of the few odd rows out.
            entry["kept_because"] = "most rows repeat: the inputs take few distinct values"
            found._say(
                f"{count} of the {len(idx)} {name} row(s) have inputs that also sit in the {where}; kept, as more than "
                f"{MOST:.0%} repeat: the inputs take few distinct values, so new data repeats them too"
            )
        elif count and policy == "drop":
            kept = idx[~hit]
            found._say(
                f"{count} of the {len(idx)} {name} row(s) had inputs that also sit in the {where}; "
                f"removed from {name} (data.duplicates.across_splits: drop)"
            )
        elif count:
            found._say(
                f"{count} of the {len(idx)} {name} row(s) have inputs that also sit in the {where}, so the "
                f"{name} score is optimistic; kept (data.duplicates.across_splits: warn)"
            )
        entry["removed"] = int(len(idx) - len(kept))
        found.across_splits[name] = entry
        out[name] = kept
        seen_exact.update(keys.inputs[kept].tolist())
        seen_near.update(keys.near[kept].tolist())
        earlier.append(name)
    return out
