"""Data expectations (`data.expect`): the checks, their policies, inference from training,
the package, `predict` and `evaluate`; and pandera beside our checks on the same table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _cli import run_main

from trustforge.data import Expectations, check_raw, expectations_of, prepare
from trustforge.data._expect import Rule
from trustforge.data._raw import RawData
from trustforge.errors import DataError, SpecError
from trustforge.spec import load_spec

QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False, "privacy_audit": False, "calibrate": "none"}


def table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Two numbers, a city and an id; the label depends on `size` and the city."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 100, n).round(2)
    city = rng.choice(["paris", "lyon", "nice"], n)
    label = np.where((size > 50) ^ (city == "nice"), "yes", "no")
    return pd.DataFrame(
        {"id": [f"A{i:04d}" for i in range(n)], "size": size, "weight": rng.normal(10, 2, n).round(3), "city": city, "label": label}
    )


def spec(csv: Path, expect: dict | None) -> dict:
    return {
        "name": "expect-t",
        "task": "classification",
        "data": {"source": f"csv:{csv}", "target": "label", "drop": ["id"], "expect": expect},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2, "batch_size": 32, "early_stopping": None, "seed": 1},
        "evaluate": QUIET,
    }


# ---------------------------------------------------------------------------- the checks


def frame_with_problems() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [1.0, 250.0, "heavy", None, 5.0],  # row 2 out of range, row 3 wrong type, row 4 missing
            "city": ["paris", "rome", "nice", "lyon", "lyon"],  # row 2: not allowed; rows 4 and 5 share a key
            "code": ["AB-1", "AB-2", "zz", "AB-4", "AB-4"],  # row 3 breaks the pattern, row 5 repeats row 4
        }
    )


def declared(policy: str | dict = "warn") -> Expectations:
    return Expectations(
        (
            Rule("size", type="numeric", min=0, max=100, max_missing=0.0),
            Rule("city", allowed=("paris", "lyon", "nice")),
            Rule("code", pattern=r"AB-\d", unique=True),
        ),
        rows=(None, 4),
        keys=(("city", "code"),),
        policy={c: policy for c in ("type", "range", "allowed", "pattern", "missing", "unique", "rows", "keys")}
        if isinstance(policy, str)
        else policy,
    )


def test_each_check_names_the_row_and_column_of_each_violation():
    report = declared().check(frame_with_problems())
    found = {(v.check, v.column, v.row) for v in report.violations}
    assert found == {
        ("range", "size", 2),
        ("type", "size", 3),
        ("missing", "size", 4),
        ("allowed", "city", 2),
        ("pattern", "code", 3),
        ("unique", "code", 5),
        ("keys", "city,code", 5),
        ("rows", "<table>", None),
    }
    assert report.counts() == {"<table>": 1, "size": 3, "city": 1, "code": 2, "city,code": 1}
    lines = report.lines("in.csv")
    assert "in.csv: row 2, column 'size': '250.0' is outside [0, 100]" in lines[1] or any(
        "row 2, column 'size'" in s and "outside [0, 100]" in s for s in lines
    )
    assert any(s.startswith("in.csv: row 2, column 'city': 'rome' is not allowed") for s in lines)


def test_policies_fail_warn_and_drop_row():
    raw = RawData("table", "y", "test", frame=frame_with_problems())
    with pytest.raises(DataError, match=r"data expectation\(s\) failed .*row 3, column 'size'"):
        check_raw(declared("fail"), raw, where="in.csv")
    warned, report = check_raw(declared("warn"), raw, where="in.csv")
    assert len(warned.frame) == 5 and pd.isna(warned.frame["size"][2])  # the wrong-typed value is read as missing
    assert report.blank == {"size": {2}}
    # drop_row: rows 2, 3, 4, 5 leave; the row count (which cannot be met by dropping) fails
    policy = {**dict.fromkeys(("type", "range", "allowed", "pattern", "missing", "unique", "keys"), "drop_row"), "rows": "warn"}
    kept, report = check_raw(declared(policy), raw, where="in.csv")
    assert kept.frame["code"].tolist() == ["AB-1"] and kept.rows.tolist() == [0]
    with pytest.raises(DataError, match="the table: has 5 rows; expected <= 4"):
        check_raw(declared({**policy, "rows": "drop_row"}), raw, where="in.csv")


def test_row_count_bounds_check_the_training_table_not_a_batch_to_score():
    ex = Expectations.declared(
        load_spec({"data": {"source": "builtin:iris", "expect": {"rows": {"min": 500}, "policy": "fail"}}}).data.expect
    )
    one = RawData("table", "y", "test", frame=pd.DataFrame({"x": [1.0]}))
    with pytest.raises(DataError, match="has 1 rows; expected >= 500"):
        check_raw(ex, one, where="train.csv")
    served = expectations_of({"expect": ex.to_json()})  # what predict and the server check
    assert served.rows == (None, None)
    kept, report = check_raw(served, one, where="request")
    assert len(kept.frame) == 1 and not report.violations


@pytest.mark.parametrize(
    "kind, values, bad",
    [
        ("numeric", ["1", None, "x", True, 2.5, "1e3"], [3, 4]),
        ("datetime", ["2024-03-01", None, "soon", "2024-02-30", "2024-03-01T14:30", "03/01/2024"], [3, 4, 6]),
        ("text", ["anything", 3, None], []),
        # a file of the type: a name with its suffix (a table file), or contents that begin as such a file does
        ("image", ["a.png", 31.5, None, b"\x89PNG\r\n\x1a\n....", "iVBORw0KGgoAAAANSUhEUgAA", b"RIFF....", "b.wav", True], [2, 6, 7, 8]),
        ("audio", ["a.wav", "x.FLAC", 7, b"RIFF....", "a.png", "UklGRiQAAABXQVZF"], [3, 5]),
        ("binary", ["yes", "no", None, "yes", "maybe", 1], [5, 6]),  # beyond the two most frequent values
    ],
)
def test_the_type_check_asks_the_feature_type(kind, values, bad):
    report = Expectations((Rule("v", type=kind),)).check(pd.DataFrame({"v": pd.Series(values, dtype=object)}))
    assert [v.row for v in report.violations] == bad and {v.check for v in report.violations} <= {"type"}


def test_a_missing_fraction_over_the_limit_is_one_column_violation():
    ex = Expectations((Rule("x", max_missing=0.25),))
    report = ex.check(pd.DataFrame({"x": [1.0, None, None, 4.0]}))
    assert [(v.check, v.row) for v in report.violations] == [("missing", None)] and "50.0% of values missing" in report.violations[
        0
    ].message
    assert ex.check(pd.DataFrame({"x": [1.0, None, 3.0, 4.0]})).violations == []


@pytest.mark.parametrize("seed", range(12))
def test_a_numpy_column_is_checked_as_the_same_values_through_pandas(seed):
    """Columns of numpy numbers take an array path in the check (a served request's columns);
    the same values as pandas' nullable and object columns take pandas' own: same violations."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    floats = rng.choice([-2.0, 0.0, 0.5, 1.0, 3.5, np.nan], n)
    ints = rng.integers(-3, 4, n)
    ex = Expectations(
        (
            Rule("f", type="numeric", min=0.0, max=3.0, max_missing=0.0),
            Rule("f", min=-1.0, max_missing=0.5, policy="drop_row"),
            Rule("i", type="numeric", min=-2, max=2, allowed=("-2", "0", "1", "2", "3"), unique=True),
        )
    )

    def verdict(frame: pd.DataFrame) -> list[tuple]:
        report = ex.check(frame)
        return sorted((v.check, v.column, -1 if v.row is None else v.row, v.message, v.policy) for v in report.violations) + [
            sorted(report.drop)
        ]

    plain = verdict(pd.DataFrame({"f": floats, "i": ints}))
    assert plain == verdict(pd.DataFrame({"f": pd.Series(floats, dtype="Float64"), "i": pd.Series(ints, dtype="Int64")}))
    assert plain == verdict(
        pd.DataFrame({"f": pd.Series([None if np.isnan(v) else float(v) for v in floats], dtype=object), "i": ints.astype(object)})
    )


def test_numbers_and_their_text_agree_for_allowed_values():
    ex = Expectations((Rule("k", allowed=("1", "2")),))
    assert ex.check(pd.DataFrame({"k": [1.0, 2.0, np.nan]})).violations == []
    assert ex.check(pd.DataFrame({"k": ["1", "2.0", 2]})).violations == []
    assert [v.row for v in ex.check(pd.DataFrame({"k": [1, 3]})).violations] == [2]


def test_same_violating_rows_as_pandera():
    pa = pytest.importorskip("pandera.pandas", reason="pandera is in the dev extra (pip install -e .[dev])")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1.5, 400),
            "c": rng.choice(["a", "b", "c", "d"], 400, p=[0.4, 0.3, 0.25, 0.05]),
            "s": rng.choice(["AB-1", "AB-22", "ab-3", "X"], 400),
        }
    )
    ours = Expectations((Rule("x", min=-3, max=3), Rule("c", allowed=("a", "b", "c")), Rule("s", pattern=r"AB-\d+"))).check(frame)
    schema = pa.DataFrameSchema(
        {
            "x": pa.Column(float, pa.Check.in_range(-3, 3)),
            "c": pa.Column(str, pa.Check.isin(["a", "b", "c"])),
            "s": pa.Column(str, pa.Check.str_matches(r"^AB-\d+$")),
        }
    )
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        schema.validate(frame, lazy=True)
    theirs = caught.value.failure_cases
    for column in ("x", "c", "s"):
        expected = sorted(int(i) + 1 for i in theirs.loc[theirs["column"] == column, "index"])
        assert expected, column
        assert sorted(v.row for v in ours.violations if v.column == column) == expected, column


# ---------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "column, where",
    [
        ({"type": "number"}, "data.expect.columns.size.type"),
        ({"min": 5, "max": 1}, "data.expect.columns.size.max"),
        ({"pattern": "(unclosed"}, "data.expect.columns.size.pattern"),
        ({"max_missing": 1.5}, "data.expect.columns.size.max_missing"),
        ({"policy": "ignore"}, "data.expect.columns.size.policy"),
        # NaN was written out as null (the rule vanished); an infinite bound holds every number
        ({"min": float("nan")}, "data.expect.columns.size.min must be a finite number; got nan"),
        ({"min": 0, "max": float("inf")}, "data.expect.columns.size.max must be a finite number; got inf"),
        ({"min": float("-inf")}, "data.expect.columns.size.min must be a finite number"),
    ],
)
def test_the_spec_refuses_bad_rules_naming_the_field(column, where):
    with pytest.raises(SpecError, match=re.escape(where)):
        load_spec({"data": {"source": "builtin:iris", "expect": {"columns": {"size": column}}}, "model": {"kind": "mlp"}})


def test_the_spec_refuses_row_bounds_out_of_order_and_nan_bounds_in_yaml(tmp_path):
    with pytest.raises(SpecError, match=re.escape("data.expect.rows.max must be >= min (500); got 10")):
        load_spec({"data": {"source": "builtin:iris", "expect": {"rows": {"min": 500, "max": 10}}}, "model": {"kind": "mlp"}})
    assert load_spec({"data": {"source": "builtin:iris", "expect": {"rows": {"min": 10, "max": 10}}}}).data.expect.rows.max == 10
    path = tmp_path / "s.yaml"
    path.write_text("data:\n  source: builtin:iris\n  expect:\n    columns: {sepal_length: {min: .nan, max: .inf}}\n")
    with pytest.raises(SpecError, match=r"s\.yaml:4: data\.expect\.columns\.sepal_length\.min must be a finite number"):
        load_spec(path)


@pytest.mark.parametrize("kind", ["image", "audio", "binary", "categorical", "text"])
def test_a_declared_type_is_checked_at_validate_and_train_on_a_numeric_column(tmp_path, kind):
    # each passed on a float column with no violation; only datetime failed
    from trustforge.data import validate_data

    csv = tmp_path / "t.csv"
    table().to_csv(csv, index=False)
    s = load_spec(spec(csv, {"columns": {"size": {"type": kind}}}))
    # image, audio, binary: the values are none of theirs; categorical, text: the column is read as numeric
    message = (
        rf"column 'size': is read as numeric, not {kind} \(declare it in data\.features"
        if kind in ("categorical", "text")
        else rf"row 1, column 'size': '\d+\.\d+' is not a value of an? {kind} column"
    )
    for check in (validate_data, prepare):
        with pytest.raises(DataError, match=message):
            check(s)
    warn = load_spec(spec(csv, {"columns": {"size": {"type": kind}}, "policy": {"type": "warn"}}))
    if kind in ("image", "audio"):  # under warn every value is read as missing, and a column of no values is refused
        with pytest.raises(DataError, match="column 'size' has no values"):
            prepare(warn)
    else:
        assert prepare(warn).expect_report.counts()["size"] >= 1
    if kind in ("categorical", "text"):  # declared as its type in data.features, the column is one
        declared = spec(csv, {"columns": {"city": {"type": kind}}})
        declared["data"]["features"] = {"city": kind}
        assert prepare(load_spec(declared)).expect_report.violations == []


def test_a_two_valued_column_read_as_binary_meets_a_declared_numeric_or_categorical_type(tmp_path):
    csv = tmp_path / "t.csv"
    frame = table().assign(smoker=lambda f: (f["size"] > 30).astype(int), member=lambda f: np.where(f["weight"] > 10, "yes", "no"))
    frame.to_csv(csv, index=False)
    s = load_spec(spec(csv, {"columns": {"smoker": {"type": "numeric"}, "member": {"type": "categorical"}}}))
    prepared = prepare(s)
    assert {c.name: c.kind for c in prepared.schema.columns}["smoker"] == "binary"
    assert prepared.expect_report.violations == []


def test_inferred_rules_come_from_the_fitted_feature_states(tmp_path):
    csv = tmp_path / "t.csv"
    table().to_csv(csv, index=False)
    data = prepare(load_spec(spec(csv, {"tolerance": 0.1, "columns": {"city": {"allowed": ["paris", "lyon", "nice"]}}})))
    ex = Expectations.from_json(json.loads(json.dumps(data.expect)))  # as the manifest holds it
    inferred = {r.column: r for r in ex.rules if r.origin == "inferred"}
    assert set(inferred) == {"size", "weight", "city"}
    size = inferred["size"]
    assert size.type == "numeric" and size.max_missing == 0.0
    train_sizes = data.train_raw.frame["size"]
    width = size.max - size.min
    # the range holds every training value (from the K lowest/highest values' mean and spread: no single
    # training value), widened by 10 % of its width
    assert size.min < train_sizes.min() and size.max > train_sizes.max()
    assert size.min > train_sizes.min() - 0.2 * width
    assert inferred["city"].allowed == ("lyon", "nice", "paris")
    assert [r.column for r in ex.rules if r.origin == "declared"] == ["city"]
    assert data.expect_report.violations == []


def test_expectations_are_inferred_by_default_and_null_or_infer_false_turns_them_off(tmp_path):
    csv = tmp_path / "t.csv"
    table().to_csv(csv, index=False)
    raw = spec(csv, None)
    del raw["data"]["expect"]  # a spec that says nothing about expectations
    data = prepare(load_spec(raw))
    ex = Expectations.from_json(data.expect)
    assert {r.column for r in ex.rules} == {"size", "weight", "city"} and {r.origin for r in ex.rules} == {"inferred"}
    assert ex.policy["range"] == "warn" and ex.model_types  # the type check stays the feature type's own refusal
    assert data.expect_report is None  # nothing declared: nothing checked on the training data it was inferred from
    assert prepare(load_spec(spec(csv, None))).expect is None
    assert prepare(load_spec(spec(csv, {"infer": False}))).expect is None


def test_inferred_ranges_hold_every_training_and_test_value_of_skewed_columns():
    # breast cancer's columns are skewed: the means of the 20 extreme values alone leave 133 training values outside
    data = prepare(load_spec({"task": "classification", "data": {"source": "builtin:breast_cancer"}}))
    ex = Expectations.from_json(data.expect)
    assert len(ex.rules) == 30 and ex.check(data.train_raw.frame).violations == []
    train = data.train_raw.frame
    for rule in ex.rules:  # no stored bound is a training value
        assert not train[rule.column].isin([rule.min, rule.max]).any()
    # its own test split: only row 153, a genuine outlier beyond the training range (2 of 3,420 values)
    assert {v.row for v in ex.check(data.test_raw.frame, rows=data.test_raw.rows).violations} == {153}


@pytest.mark.parametrize(
    "raw",
    [
        {"task": "classification", "data": {"source": "builtin:shapes"}},  # images
        {"task": "classification", "data": {"source": "builtin:chinese_reviews"}},  # a text set
        {"task": "forecasting", "data": {"source": "builtin:air_passengers"}},  # a series
    ],
    ids=["images", "text", "series"],
)
def test_inputs_without_table_columns_get_no_inferred_rules(raw):
    data = prepare(load_spec({**raw, "model": {"kind": "mlp"}}))
    assert data.expect is None and data.expect_report is None


def test_training_checks_declared_rules_and_drops_rows(tmp_path):
    frame = table()
    frame.loc[[3, 7], "size"] = -5.0
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    rule = {"columns": {"size": {"min": 0, "max": 100}}, "infer": False}
    with pytest.raises(DataError, match=r"row 4, column 'size'.*row 8, column 'size'"):
        prepare(load_spec(spec(csv, {**rule, "policy": "fail"})))
    data = prepare(load_spec(spec(csv, {**rule, "policy": "drop_row"})))
    assert data.schema.rows == 198 and data.expect_report.counts() == {"size": 2}


def test_a_series_checks_its_declared_expectations_too():
    # a kind that splits its own way (forecasting) still gets the declared checks before its split
    raw = {"task": "forecasting", "data": {"source": "builtin:air_passengers", "expect": {"rows": {"min": 1000}}}, "model": {"kind": "mlp"}}
    with pytest.raises(DataError, match=r"the table: has 144 rows; expected >= 1000"):
        prepare(load_spec({**raw, "data": {**raw["data"], "expect": {"rows": {"min": 1000}, "policy": "fail"}}}))
    data = prepare(load_spec(raw))  # rows: warn by default
    assert data.expect_report.counts() == {"<table>": 1} and data.expect["rows"] == [1000, None]


# ---------------------------------------------------------------------------- predict and evaluate


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """One package whose checks warn and one whose checks fail (same data, tiny MLP)."""
    from trustforge.pipeline import run
    from trustforge.settings import Settings

    root = tmp_path_factory.mktemp("expect")
    csv = root / "train.csv"
    frame = table()
    frame.loc[[3, 7, 11], "id"] = "B"  # three ids break a declared pattern (its own policy: warn) in training only
    frame.to_csv(csv, index=False)
    out = {}
    for policy in ("warn", "fail"):
        home = root / f"ws-{policy}"
        declared = {"columns": {"id": {"pattern": "A[0-9]{4}", "policy": "warn"}}, "policy": policy}
        result = run(spec(csv, declared), settings=Settings.from_env(home), progress=False, register=False)
        out[policy] = (result.package, home, result)
    return root, out


def bad_rows(root: Path) -> Path:
    frame = table(6, seed=9).drop(columns="label")
    frame["size"] = frame["size"].astype(object)
    frame.loc[1, "size"] = 250.0  # outside the training range
    frame.loc[2, "city"] = "berlin"  # unseen category
    frame.loc[3, "size"] = "heavy"  # wrong type
    frame.loc[4, "weight"] = None  # missing value (training had none)
    path = root / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_package_holds_declared_and_inferred_expectations_and_training_counts(packages):
    from trustforge.evaluate import write_report

    _, out = packages
    package, _, result = out["warn"]
    manifest = json.loads((package / "manifest.json").read_text())
    assert [r["column"] for r in manifest["expect"]["rules"] if r["origin"] == "declared"] == ["id"]
    assert {r["column"] for r in manifest["expect"]["rules"] if r["origin"] == "inferred"} == {"size", "weight", "city"}
    assert manifest["expect"]["policy"]["range"] == "warn"
    # what training broke: in the metrics, the run folder (one line each) and the report
    assert result.metrics["expect_violations"] == 3 and result.metrics["expect_violations_by_column"] == {"id": 3}
    saved = json.loads((result.run_dir / "expectations.json").read_text())
    assert (
        saved["lines"][0] == "training data: row 4, column 'id': 'B' does not match 'A[0-9]{4}' (declared pattern expectation, policy warn)"
    )
    html = write_report(result.run_dir).read_text()
    assert "<b>Data expectations</b>" in html and "3 violations (id: 3)" in html


def test_predict_warns_one_line_per_violation_and_fails_under_fail(packages):
    root, out = packages
    bad = bad_rows(root)
    package, home, _ = out["warn"]
    code, stdout, stderr = run_main("predict", package, bad, "-o", root / "p.csv", home=home)
    assert code == 0, stderr
    lines = [s for s in stderr.splitlines() if "expectation, policy warn" in s]
    assert len(lines) == 4, stderr
    assert any("row 2, column 'size'" in s and "outside" in s for s in lines)
    assert any("row 3, column 'city'" in s and "'berlin' is unseen in training" in s for s in lines)
    assert any("row 4, column 'size'" in s and "not a value of a numeric column" in s for s in lines)
    assert any("row 5, column 'weight'" in s and "is missing" in s for s in lines)
    assert "4 expectation violations by column: size (2), weight (1), city (1)" in " ".join(stderr.split())
    assert len(pd.read_csv(root / "p.csv")) == 6

    package, home, _ = out["fail"]
    code, _, stderr = run_main("predict", package, bad, "-o", root / "q.csv", home=home)
    assert code != 0 and "4 data expectation(s) failed" in stderr and "row 3, column 'city'" in stderr
    assert not (root / "q.csv").exists()


def test_evaluate_checks_labelled_data(packages):
    root, out = packages
    frame = table(40, seed=5)
    frame.loc[0, "city"] = "berlin"
    path = root / "labelled.csv"
    frame.to_csv(path, index=False)
    package, home, _ = out["fail"]
    code, _, stderr = run_main("evaluate", package, path, home=home)
    assert code != 0 and "row 1, column 'city'" in stderr
    package, home, _ = out["warn"]
    code, stdout, stderr = run_main("evaluate", package, path, home=home)
    assert code == 0 and "row 1, column 'city'" in stderr and '"n": 40' in stdout
    assert '"expect_violations": 1' in stdout and '"expect_violations_by_column": {"city": 1}' in stdout


def test_predict_and_evaluate_refuse_a_repeated_header_name(packages):
    root, out = packages
    package, home, _ = out["warn"]
    path = root / "twice.csv"
    frame = table(10, seed=4)[["size", "weight", "city", "label"]]
    frame.insert(1, "size_again", frame["size"] + 1)
    frame.to_csv(path, index=False, header=["size", "size", "weight", "city", "label"])
    for command in (("predict", package, path, "-o", root / "t.csv"), ("evaluate", package, path)):
        code, _, stderr = run_main(*command, home=home)
        assert code != 0 and "twice.csv: column 'size' appears more than once in the header" in " ".join(stderr.split()), stderr
        assert "Traceback" not in stderr
    assert not (root / "t.csv").exists()


def test_by_default_predict_is_quiet_on_ordinary_data_and_names_an_out_of_range_value(tmp_path):
    """No `data.expect` in the spec: the training data and its own test split print no note; one value
    outside the training range prints one line naming row and column; the server flags it by header."""
    from prometheus_client import CollectorRegistry

    from trustforge.pipeline import run
    from trustforge.serve._expect import check_request, expect_counter
    from trustforge.settings import Settings

    csv = tmp_path / "train.csv"
    table().to_csv(csv, index=False)
    raw = spec(csv, None)
    del raw["data"]["expect"]
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(raw))
    home = tmp_path / "ws"
    package = run(load_spec(raw), settings=Settings.from_env(home), progress=False, register=False).package
    code, _, stderr = run_main("predict", package, csv, "-o", tmp_path / "p.csv", home=home)
    assert code == 0 and "note" not in stderr, stderr
    code, _, stderr = run_main("evaluate", package, spec_file, home=home)
    assert code == 0 and "note" not in stderr, stderr
    new = table(5, seed=3).drop(columns="label")
    new.loc[2, "size"] = 250.0
    new.to_csv(tmp_path / "new.csv", index=False)
    code, _, stderr = run_main("predict", package, tmp_path / "new.csv", "-o", tmp_path / "q.csv", home=home)
    notes = [s for s in stderr.splitlines() if s.startswith("note")]
    assert code == 0 and len(notes) == 1 and "row 3, column 'size': '250.0' is outside" in notes[0], stderr

    class Served:  # what the server's guard reads of a loaded model
        manifest = json.loads((package / "manifest.json").read_text())

    counter, model = expect_counter(CollectorRegistry()), Served()
    ordinary = {"size": [10.0, 60.0], "weight": [9.5, 11.0], "city": ["paris", "nice"]}
    assert check_request(counter, model, "m", ordinary).headers() == {}
    flagged = check_request(counter, model, "m", {**ordinary, "size": [10.0, 250.0]})
    assert flagged.headers() == {"trustforge-expect-violations": "1", "trustforge-expect-columns": "size=1"}
