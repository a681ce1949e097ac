"""`data.protect`: personal data masked, hashed, dropped or refused before anything is fitted."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from _pii_table import pii_table

from trustforge.data import RawData, mask_message, masking_key_id, prepare, protect, protect_columns, protect_frame
from trustforge.errors import DataError, SecurityError, SpecError
from trustforge.spec import load_spec

KEY = bytes(range(32))


def _spec(pii: str, **protect_extra):
    return load_spec(
        {
            "task": "classification",
            "data": {"source": "csv:people.csv", "target": "label", "protect": {"pii": pii, **protect_extra}},
            "model": {"kind": "mlp"},
        }
    )


@pytest.fixture(scope="module")
def people():
    frame, planted = pii_table(120, seed=3)
    frame["phone"] = frame["phone"].astype(np.int64)  # phone numbers read as numbers are still personal
    return frame, planted


def _raw(frame):
    return RawData("table", "label", "people.csv", frame=frame)


def _values(planted):
    return [v for vs in planted.values() for v in vs]


def test_mask_replaces_every_cell_of_a_personal_column_and_every_span_elsewhere(people):
    frame, planted = people
    raw, record = protect(_raw(frame), _spec("mask").data.protect)
    out = raw.frame
    assert record["personal"] == {"name": "PERSON", "email": "EMAIL", "id_number": "CN_ID", "phone": "CN_MOBILE"}
    for column, tag in record["personal"].items():
        assert set(out[column]) == {f"<{tag}>"}, column
    assert out["note"].str.contains("<CN_MOBILE>").sum() == 60 and out["note"].str.contains("<EMAIL>").sum() == 30
    assert record["masked"]["note"] == {"CN_MOBILE": 60, "EMAIL": 30}
    pd.testing.assert_frame_equal(out[["city", "age", "topic", "label"]], frame[["city", "age", "topic", "label"]])  # the rest untouched
    text = out.to_csv(index=False)
    assert not [v for v in _values(planted) if v in text]
    assert "label" not in record["scanned"]  # the target is what the model predicts: never masked


def test_missing_values_of_a_personal_column_stay_missing(people):
    frame, _ = people
    holes = frame.assign(email=frame["email"].where(frame.index % 7 != 0))
    raw, _ = protect(_raw(holes), _spec("mask").data.protect)
    assert raw.frame["email"].isna().sum() == holes["email"].isna().sum() > 0
    assert set(raw.frame["email"].dropna()) == {"<EMAIL>"}


def test_drop_leaves_the_personal_columns_out_and_tags_the_free_text(people):
    frame, planted = people
    raw, record = protect(_raw(frame), _spec("drop").data.protect)
    assert list(raw.frame.columns) == ["city", "age", "note", "topic", "label"]
    assert record["dropped"] == ["name", "email", "id_number", "phone"]
    assert not [v for v in _values(planted) if v in raw.frame.to_csv(index=False)]


def test_hash_is_a_keyed_token_that_joins_and_changes_with_the_key(people):
    frame, planted = people
    raw, record = protect(_raw(frame), _spec("hash").data.protect, key=KEY)
    emails = raw.frame["email"]
    assert emails.str.fullmatch(r"<EMAIL:[0-9a-f]{16}>").all()
    assert emails.nunique() == frame["email"].nunique()  # one person, one token
    assert record["key_id"] == masking_key_id(KEY)
    # The same email in the free text gets the same token as in its own column: joins keep working.
    row = int(np.flatnonzero(frame["note"].str.contains("@"))[0])
    assert emails[row] in raw.frame["note"][row]
    other, _ = protect(_raw(frame), _spec("hash").data.protect, key=bytes(32))
    assert not set(other.frame["email"]) & set(emails)
    assert not [v for v in _values(planted) if v in raw.frame.to_csv(index=False)]


def test_hash_without_a_key_is_one_clear_error(people):
    frame, _ = people
    with pytest.raises(SecurityError, match=r"data.protect.pii hash needs the workspace masking key: run `trustforge keys init`"):
        protect(_raw(frame), _spec("hash").data.protect)
    with pytest.raises(SecurityError, match="needs the masking key of the workspace that trained it"):
        protect_frame(frame, {"masker": "hash", "personal": {"email": "EMAIL"}, "scanned": ["email"]}, None)


def test_a_model_trained_on_hashes_refuses_inputs_hashed_under_another_key(people):
    frame, _ = people
    _, record = protect(_raw(frame), _spec("hash").data.protect, key=KEY, features=["email", "age"])  # email named: a feature
    assert protect_frame(frame.head(3), record, KEY)["email"].str.startswith("<EMAIL:").all()
    with pytest.raises(SecurityError, match="another masking key"):
        protect_frame(frame.head(3), record, bytes(32))


def test_fail_names_the_columns_and_no_value(people):
    frame, planted = people
    with pytest.raises(DataError) as err:
        protect(_raw(frame), _spec("fail").data.protect)
    message = str(err.value)
    assert "'name' (PERSON)" in message and "'phone' (CN_MOBILE)" in message and "'note' (CN_MOBILE, EMAIL)" in message
    assert "'city'" not in message
    assert not [v for v in _values(planted) if v in message]
    clean = frame[["city", "age", "label"]]
    raw, record = protect(_raw(clean), _spec("fail").data.protect)  # nothing personal: the data as it is
    assert raw.frame is clean and record["masked"] == {} and record["personal"] == {}


def test_entities_and_columns_narrow_what_is_scanned(people):
    frame, _ = people
    raw, record = protect(_raw(frame), _spec("mask", entities=["email"]).data.protect)
    assert record["personal"] == {"email": "EMAIL"} and record["entities"] == ["EMAIL"]
    assert (raw.frame["name"] == frame["name"]).all() and not raw.frame["note"].str.contains("<CN_MOBILE>").any()
    raw, record = protect(_raw(frame), _spec("mask", columns=["note"]).data.protect)
    assert record["scanned"] == ["note"] and (raw.frame["email"] == frame["email"]).all()
    with pytest.raises(DataError, match=r"no column 'nope' \(data.protect.columns\)"):
        protect(_raw(frame), _spec("mask", columns=["nope"]).data.protect)


def test_the_spec_names_a_wrong_policy_or_entity():
    with pytest.raises(SpecError, match=r"data.protect.pii"):
        _spec("scramble")
    with pytest.raises(SpecError, match=r"data.protect.entities\[1\].*must be an entity type"):
        _spec("mask", entities=["EMAIL", "SHOE_SIZE"])
    assert load_spec({}).data.protect.pii == "off"


@pytest.mark.parametrize("columns", [[], ["label"]], ids=["empty", "only-the-target"])
def test_columns_that_scan_nothing_are_refused(people, columns, tmp_path):
    """A probe's `columns: []` (or only the target) scanned nothing, yet the manifest and the card
    read as if the data had been found clean: refused by the spec, so `validate` and `train` both
    refuse it, naming the field; a target the source names is caught when the data is read."""
    from _cli import run_main

    with pytest.raises(SpecError, match=r"^data.protect.columns (must name at least one column|names only the target 'label')"):
        _spec("mask", columns=columns)
    frame, _ = people
    untargeted = load_spec(
        {"task": "classification", "data": {"source": "csv:people.csv", "protect": {"pii": "mask", "columns": ["label"]}}}
    )
    with pytest.raises(DataError, match=r"data.protect.columns names only the target 'label', which is never scanned"):
        protect(_raw(frame), untargeted.data.protect)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"task: classification\ndata: {{source: 'csv:people.csv', target: label, protect: {{pii: mask, columns: {columns}}}}}\n"
    )
    code, out, err = run_main("validate", spec, "--no-data", home=tmp_path)
    assert code == SpecError.exit_code and err.startswith("error: ") and "data.protect.columns" in err, err


def test_off_changes_nothing_and_records_nothing(people):
    frame, _ = people
    raw = _raw(frame)
    assert protect(raw, _spec("off").data.protect) == (raw, None)


def test_a_source_without_columns_is_refused_when_pii_is_on():
    images = RawData("image", "label", "images:shapes", images=np.zeros((2, 3, 4, 4), np.float32), labels=np.array(["a", "b"]))
    with pytest.raises(DataError, match="needs a table or text source"):
        protect(images, _spec("mask").data.protect)


def test_prepare_masks_before_the_schema_so_no_vocabulary_holds_a_value(people, tmp_path):
    frame, planted = people
    spec = load_spec(
        {
            "task": "classification",
            "data": {"source": "csv:people.csv", "target": "label", "protect": {"pii": "hash"}, "drop": ["name", "email", "id_number"]},
            "model": {"kind": "mlp"},
        }
    )
    data = prepare(spec, _raw(frame), key=KEY)
    assert data.protection["policy"] == "hash"
    meta, _ = data.preprocessor.state()
    text = repr(meta)
    assert re.search(r"'[0-9a-f]{16}'", text)  # the free text's vocabulary holds the hashes' tokens ...
    assert not [v for v in _values(planted) if v in text]  # ... never a value


def _table_spec(protect_, **data):
    return load_spec(
        {
            "task": "classification",
            "data": {"source": "csv:people.csv", "target": "label", "protect": protect_, **data},
            "model": {"kind": "mlp"},
        }
    )


def test_hashed_personal_columns_stay_hashed_in_the_data_but_are_not_features(people, caplog):
    """A per-person token is an identifier, not a feature: the model would learn to look people up."""
    frame, planted = people
    with caplog.at_level("WARNING", logger="trustforge.data"):
        data = prepare(_table_spec({"pii": "hash"}), _raw(frame), key=KEY)
    excluded = ["name", "email", "id_number", "phone"]
    assert data.protection["excluded"] == excluded
    assert [c.name for c in data.schema.columns] == ["city", "age", "note", "topic"]  # no per-person column is read
    assert "left out of the model's features" in caplog.text and not [v for v in _values(planted) if v in caplog.text]
    # Rows given to the model leave those columns out too; the free text's spans are still hashed.
    rows = protect_frame(frame.head(4), data.protection, KEY)
    assert not set(excluded) & set(rows.columns) and rows["note"].str.contains(r"<(?:CN_MOBILE|EMAIL):[0-9a-f]{16}>").any()
    # Named in data.features, a hashed column is a feature (the user's explicit choice) and stays hashed.
    data = prepare(_table_spec({"pii": "hash"}, features=["email", "age", "city"]), _raw(frame), key=KEY)
    assert data.protection["excluded"] == ["name", "id_number", "phone"] and [c.name for c in data.schema.columns] == [
        "email",
        "age",
        "city",
    ]
    assert not [v for v in _values(planted) if v in repr(data.preprocessor.state()[0])]
    # A column data.drop names that pii: drop has already left out is not an error.
    data = prepare(_table_spec({"pii": "drop"}, drop=["email", "topic"]), _raw(frame), key=None)
    assert data.protection["dropped"] == excluded and [c.name for c in data.schema.columns] == ["city", "age", "note"]


def test_error_messages_quote_no_detected_value_of_a_protected_model(people):
    _, record = protect(_raw(people[0]), _spec("mask").data.protect)
    message = "inputs 'age' must hold numbers; got text 'zeb.quixote@secretmail.org' at row 1"
    assert mask_message(message, record) == "inputs 'age' must hold numbers; got text '<EMAIL>' at row 1"
    assert mask_message(message, None) == message  # a model trained without data.protect: as it is


def test_protect_columns_masks_the_servers_arrays(people):
    frame, _ = people
    _, record = protect(_raw(frame), _spec("mask").data.protect)
    columns = {c: frame[c].head(5).to_numpy() for c in ("email", "note", "age")}
    out = protect_columns(columns, record, None)
    assert list(out["email"]) == ["<EMAIL>"] * 5 and out["age"] is columns["age"]
    assert not any("@" in v for v in out["note"])
    assert protect_columns(columns, None, None) is columns


def test_a_refusal_or_a_missing_key_leaves_no_run_behind(people, tmp_path, monkeypatch):
    import trustforge

    frame, _ = people
    frame.to_csv(tmp_path / "people.csv", index=False)
    home = tmp_path / "ws"
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    spec = {"task": "classification", "data": {"source": f"csv:{tmp_path / 'people.csv'}", "target": "label", "protect": {"pii": "fail"}}}
    with pytest.raises(DataError, match="data.protect.pii is fail and personal data was found in 'name'"):
        trustforge.run(spec, progress=False, register=False)
    monkeypatch.delenv("TRUSTFORGE_KEK", raising=False)
    (home / "keys" / "kek.key").unlink()  # a workspace whose key-encryption key is gone
    spec["data"]["protect"] = {"pii": "hash"}
    with pytest.raises(SecurityError, match="no key-encryption key"):
        trustforge.run(spec, progress=False, register=False)
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # refused before any folder was made


HEADER = "zeb.quixote@secretmail.org"  # a column named after a person's email: personal data in the header


def _with_header(frame):
    """`frame` with its `age` column named `HEADER` (position 6 of the table, from 1)."""
    return frame.rename(columns={"age": HEADER})


@pytest.mark.parametrize("pii", ["mask", "hash", "drop"])
def test_a_personal_header_is_renamed_as_scan_shows_it_and_never_recorded(people, pii):
    frame = _with_header(people[0])
    assert list(frame.columns).index(HEADER) == 5
    raw, record = protect(_raw(frame), _spec(pii).data.protect, key=KEY)
    assert "<column 6: EMAIL>" in raw.frame.columns and HEADER not in raw.frame.columns
    assert (raw.frame["<column 6: EMAIL>"] == frame[HEADER]).all()  # its values (ages) are no personal data: as they were
    assert HEADER not in repr(record) and "<column 6: EMAIL>" in record["scanned"]
    assert list(record["headers"]) == ["<column 6: EMAIL>"]
    # Rows given to the model later with the original header are matched to the renamed column.
    rows = protect_frame(frame.head(5).drop(columns=["label"]), record, KEY)
    assert (rows["<column 6: EMAIL>"] == frame[HEADER].head(5)).all() and HEADER not in rows.columns
    served = protect_columns({HEADER: frame[HEADER].head(3).to_numpy(), "city": frame["city"].head(3).to_numpy()}, record, KEY)
    assert list(served) == ["<column 6: EMAIL>", "city"]


def test_a_hashed_header_matches_only_under_its_key(people):
    frame = _with_header(people[0])
    _, record = protect(_raw(frame), _spec("hash").data.protect, key=KEY)
    assert re.fullmatch(r"<EMAIL:[0-9a-f]{16}>", record["headers"]["<column 6: EMAIL>"])
    other = frame.head(3).rename(columns={HEADER: "someone.else@secretmail.org"})  # another person's header: not this column
    assert "<column 6: EMAIL>" not in protect_frame(other, record, KEY).columns


def test_fail_and_errors_name_a_personal_header_as_scan_shows_it(people):
    frame = _with_header(people[0][["city", "age", "label"]])
    with pytest.raises(DataError) as err:
        protect(_raw(frame), _spec("fail").data.protect)
    assert "found in '<column 2: EMAIL>' (its header)" in str(err.value) and HEADER not in str(err.value)
    with pytest.raises(DataError) as err:
        protect(_raw(frame), _spec("mask", columns=["nope"]).data.protect)
    assert "columns are: city, <column 2: EMAIL>, label" in str(err.value) and HEADER not in str(err.value)


def test_prepare_reads_a_personal_header_the_spec_names_by_its_new_name(people):
    frame = _with_header(people[0])
    data = prepare(_table_spec({"pii": "mask"}, features=[HEADER, "city"]), _raw(frame))
    assert [c.name for c in data.schema.columns] == ["<column 6: EMAIL>", "city"]
    data = prepare(_table_spec({"pii": "mask"}, drop=[HEADER, "topic"]), _raw(frame))
    assert "<column 6: EMAIL>" in data.schema.ignored and HEADER not in repr(data.preprocessor.state()[0])


def test_two_personal_headers_of_one_type_under_mask_are_matched_by_order_and_said_so(people, caplog):
    """Under `mask` a header is kept as its type's tag: two email headers are `<EMAIL>` and
    `<EMAIL>#2`, matched later by their order, which training says; under `hash` each header's
    keyed token matches it wherever it stands, and nothing is said."""
    frame = _with_header(people[0]).rename(columns={"city": "ann.other@secretmail.org"})
    with caplog.at_level("WARNING", logger="trustforge.data"):
        _, record = protect(_raw(frame), _spec("mask").data.protect, key=KEY)
    assert sorted(record["headers"].values()) == ["<EMAIL>", "<EMAIL>#2"]
    assert "matched to these columns by their order" in caplog.text and HEADER not in caplog.text
    assert "<column 6: EMAIL>" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="trustforge.data"):
        _, record = protect(_raw(frame), _spec("hash").data.protect, key=KEY)
    swapped = frame.head(3)[list(reversed(frame.columns))].drop(columns=["label"])
    assert "by their order" not in caplog.text
    rows = protect_frame(swapped, record, KEY)
    assert (rows["<column 6: EMAIL>"].to_numpy() == frame[HEADER].head(3).to_numpy()).all()  # found by its header, not its place
