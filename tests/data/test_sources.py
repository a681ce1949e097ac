"""Tests for data sources: the table of schemes (resolution, redaction), builtin sets, CSV, Parquet and
image folders, and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from trustforge.data import (
    BUILTIN_SOURCES,
    SOURCE_FORMS,
    SOURCES,
    default_model_kind,
    list_images,
    load_data,
    load_source,
    read_image,
    read_table,
    redact_source,
    resolve_source,
    source_holds,
)
from trustforge.errors import DataError
from trustforge.spec import load_spec, redact_spec


def load(source: str, target: str | None = None, size: tuple[int, int] = (16, 16), channels: int = 3, seed: int = 0):
    return load_source(source, target=target, image_size=size, channels=channels, seed=seed)


def small_frame(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 70, n),
            "income": rng.normal(50.0, 10.0, n),
            "city": rng.choice(["paris", "rome", "oslo"], n),
            "label": rng.choice(["good", "bad"], n),
        }
    )


# ---------------------------------------------------------------------------- builtin


def test_builtin_digits_is_one_channel_8x8_with_10_classes() -> None:
    raw = load("builtin:digits")
    assert raw.modality == "image" and raw.target == "label"
    assert raw.images.shape == (1797, 1, 8, 8) and raw.images.dtype == np.float32
    assert raw.images.min() == 0.0 and raw.images.max() == 1.0
    assert raw.classes == [str(i) for i in range(10)]
    assert sorted(set(raw.labels.tolist())) == raw.classes and len(raw.labels) == 1797


def test_builtin_shapes_is_rgb_32x32() -> None:
    raw = load("builtin:shapes", seed=3)
    assert raw.modality == "image"
    assert raw.images.shape == (3000, 3, 32, 32) and raw.images.dtype == np.float32
    assert len(raw.classes) == 10 and set(raw.labels.tolist()) == set(raw.classes)


@pytest.mark.parametrize(
    ("name", "rows", "classes"),
    [
        ("breast_cancer", 569, ["malignant", "benign"]),
        ("wine", 178, ["class_0", "class_1", "class_2"]),
        ("iris", 150, ["setosa", "versicolor", "virginica"]),
        ("diabetes", 442, None),
    ],
)
def test_builtin_tables_have_a_target_column_with_readable_classes(name, rows, classes) -> None:
    raw = load(f"builtin:{name}")
    assert raw.modality == "table" and raw.target == "target"
    assert len(raw) == rows and "target" in raw.frame.columns
    assert raw.classes == classes
    if classes is None:  # diabetes: a regression target
        assert pd.api.types.is_float_dtype(raw.frame["target"])
    else:
        assert set(raw.frame["target"]) == set(classes)
    assert all(isinstance(c, str) for c in raw.frame.columns)


def test_builtin_sources_are_all_loadable_names() -> None:
    # The foundation's sets; each application area adds its own (tested in its own file).
    assert set(BUILTIN_SOURCES) >= {
        "digits",
        "breast_cancer",
        "wine",
        "iris",
        "diabetes",
        "shapes",
        "air_passengers",
        "seasonal",
        "fraud",
        "credit_default",
    }


def test_unknown_builtin_and_scheme_are_data_errors() -> None:
    with pytest.raises(DataError, match="mnist"):
        load("builtin:mnist")
    with pytest.raises(DataError, match="ftp"):
        load("ftp:x.csv")


# ---------------------------------------------------------------------------- tables


def test_csv_source_reads_the_table(tmp_path: Path) -> None:
    frame = small_frame()
    frame.to_csv(tmp_path / "d.csv", index=False)
    raw = load(f"csv:{tmp_path / 'd.csv'}", target="label")
    assert raw.modality == "table" and raw.target == "label" and raw.origin == f"csv:{tmp_path / 'd.csv'}"
    pd.testing.assert_frame_equal(raw.frame, frame, check_dtype=False)


def test_parquet_source_keeps_the_types(tmp_path: Path) -> None:
    frame = small_frame()
    frame["flag"] = frame["age"] > 40
    frame.to_parquet(tmp_path / "d.parquet")
    raw = load(f"parquet:{tmp_path / 'd.parquet'}", target="label")
    pd.testing.assert_frame_equal(raw.frame, frame, check_dtype=False)
    assert raw.frame["flag"].dtype == bool and pd.api.types.is_integer_dtype(raw.frame["age"])
    # read_table picks the reader from the suffix when not told.
    pd.testing.assert_frame_equal(read_table(tmp_path / "d.parquet"), frame, check_dtype=False)


@pytest.mark.parametrize("scheme", ["csv", "parquet"])
def test_missing_file_names_the_file(tmp_path: Path, scheme: str) -> None:
    path = tmp_path / f"nowhere.{scheme}"
    with pytest.raises(DataError, match=f"nowhere.{scheme}.*not found"):
        load(f"{scheme}:{path}", target="y")


@pytest.mark.parametrize(
    "content",
    [b"a,b\n1,2\n3,4,5,6\n", b"", bytes(range(256)) * 8],
    ids=["ragged", "empty", "binary"],
)
def test_unreadable_csv_names_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match="bad.csv"):
        load(f"csv:{path}", target="a")


def test_csv_with_a_header_only_is_refused(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"h\.csv.*no rows"):
        load(f"csv:{tmp_path / 'h.csv'}", target="a")


def test_a_repeated_header_name_is_refused_naming_the_file_and_column(tmp_path: Path) -> None:
    # pandas would read the second `age` as `age.1`, and training would use both as different columns
    (tmp_path / "d.csv").write_text("age,age,color,code,label\n" + "31,40,red,x,yes\n" * 12)
    with pytest.raises(DataError, match=r"d\.csv: column 'age' appears more than once in the header; give each column its own name"):
        load(f"csv:{tmp_path / 'd.csv'}", target="label")
    with pytest.raises(DataError, match=r"d\.csv: column 'age' appears more than once"):
        read_table(tmp_path / "d.csv")
    # a name that only looks renamed is a name of its own
    (tmp_path / "v.csv").write_text("age,age.1,label\n" + "31,40,yes\n" * 12)
    assert list(read_table(tmp_path / "v.csv").columns) == ["age", "age.1", "label"]
    (tmp_path / "d.jsonl").write_text('{"age": 31, "label": "yes"}\n{"age": 31, "age": 40, "label": "no"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: key 'age' appears more than once"):
        read_table(tmp_path / "d.jsonl")


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1" + b"\x00\x13garbage" * 20)
    with pytest.raises(DataError, match="garbage.parquet"):
        load(f"parquet:{tmp_path / 'garbage.parquet'}", target="label")
    small_frame().to_parquet(tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.parquet"):
        load(f"parquet:{tmp_path / 'cut.parquet'}", target="label")


def test_csv_without_the_target_column_names_it_and_the_file(tmp_path: Path) -> None:
    small_frame().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"d\.csv.*'outcome'.*columns are: age, income, city, label"):
        load(f"csv:{tmp_path / 'd.csv'}", target="outcome")
    with pytest.raises(DataError, match="data.target is required"):
        load(f"csv:{tmp_path / 'd.csv'}", target=None)


def test_digest_follows_the_content(tmp_path: Path) -> None:
    frame = small_frame()
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False)
    a = load(f"csv:{tmp_path / 'a.csv'}", target="label")
    b = load(f"csv:{tmp_path / 'b.csv'}", target="label")
    assert a.digest() == b.digest()
    frame.loc[3, "income"] += 1.0
    frame.to_csv(tmp_path / "b.csv", index=False)
    assert load(f"csv:{tmp_path / 'b.csv'}", target="label").digest() != a.digest()


# ---------------------------------------------------------------------------- images


def image_folder(root: Path) -> Path:
    """cat/: two red RGB PNGs of different sizes; dog/: a mid-grey JPEG and a README to skip."""
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(root / "cat" / "a.png")
    Image.new("RGBA", (7, 9), (255, 0, 0, 255)).save(root / "cat" / "b.png")
    Image.new("L", (5, 7), 128).save(root / "dog" / "c.JPG", format="JPEG")
    (root / "dog" / "README.txt").write_text("not an image")
    return root


def test_image_folder_is_converted_to_rgb_and_resized(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    raw = load(f"images:{root}", size=(16, 12), channels=3)
    assert raw.modality == "image" and raw.target == "label"
    assert raw.images.shape == (3, 3, 16, 12) and raw.images.dtype == np.float32
    assert raw.classes == ["cat", "dog"] and raw.labels.tolist() == ["cat", "cat", "dog"]
    assert raw.paths == ["cat/a.png", "cat/b.png", "dog/c.JPG"]
    np.testing.assert_allclose(raw.images[0].mean(axis=(1, 2)), [1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(raw.images[2].mean(axis=(1, 2)), [128 / 255] * 3, atol=3 / 255)


def test_image_folder_is_converted_to_grayscale(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    raw = load(f"images:{root}", size=(8, 8), channels=1)
    assert raw.images.shape == (3, 1, 8, 8)
    # ITU-R 601 luma of pure red: 0.299.
    np.testing.assert_allclose(raw.images[0], 76 / 255, atol=1e-6)
    assert 0.0 <= raw.images.min() and raw.images.max() <= 1.0


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(tmp_path / "scan.png")
    for channels in (1, 3):
        x = read_image(tmp_path / "scan.png", (4, 4), channels)
        assert x.shape == (channels, 4, 4)
        np.testing.assert_allclose(x, 40000 / 65535, atol=1e-4)


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG garbage, not an image" * 4)
    with pytest.raises(DataError, match=r"broken\.png.*not a readable image"):
        load(f"images:{root}")


def test_image_folder_needs_two_classes(tmp_path: Path) -> None:
    (tmp_path / "one" / "cat").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "one" / "cat" / "a.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "one" / "loose.png")
    with pytest.raises(DataError, match=r"one.*at least 2.*found 1"):
        load(f"images:{tmp_path / 'one'}")


def test_empty_class_folder_names_it(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    (root / "bird").mkdir()
    (root / "bird" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"bird.*no PNG or JPEG"):
        load(f"images:{root}")


def test_missing_image_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.*not found"):
        load(f"images:{tmp_path / 'nothere'}")


def test_list_images_finds_nested_files_and_refuses_an_empty_folder(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "pets")
    assert [p.name for p in list_images(root)] == ["a.png", "b.png", "c.JPG"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no PNG or JPEG"):
        list_images(tmp_path / "empty")


# ---------------------------------------------------------------------------- the sources table


def test_every_scheme_is_one_entry_of_the_table() -> None:
    assert list(SOURCES) == ["builtin", "csv", "parquet", "jsonl", "images", "audio", "npz"]
    assert SOURCE_FORMS == "builtin:NAME, csv:PATH, parquet:PATH, jsonl:PATH, images:DIR, audio:DIR or npz:PATH"
    assert SOURCES["builtin"].names == BUILTIN_SOURCES and not SOURCES["builtin"].is_path
    assert all(s.is_path for k, s in SOURCES.items() if k != "builtin")
    assert [k for k, s in SOURCES.items() if s.frame is not None] == ["csv", "parquet", "jsonl"]


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("csv:/home/x/data.csv", "csv:data.csv"),
        ("parquet:../tables/t.parquet", "parquet:t.parquet"),
        ("jsonl:/srv/texts.jsonl", "jsonl:texts.jsonl"),
        ("npz:/data/seq.npz", "npz:seq.npz"),
        ("images:/home/x/pictures/", "images:pictures"),
        ("audio:C:\\Users\\x\\clips", "audio:clips"),
        ("builtin:iris", "builtin:iris"),
        ("builtin:spoken_digits", "builtin:spoken_digits"),
        ("not a source", "not a source"),
    ],
)
def test_redaction_keeps_only_the_file_or_folder_name(source, shown) -> None:
    assert redact_source(source) == shown


def test_resolution_makes_relative_paths_absolute_and_leaves_names(tmp_path) -> None:
    assert resolve_source("npz:seq/x.npz", tmp_path) == f"npz:{(tmp_path / 'seq' / 'x.npz').resolve()}"
    assert resolve_source("audio:/abs/clips", tmp_path) == "audio:/abs/clips"
    assert resolve_source("builtin:digits", tmp_path) == "builtin:digits"
    with pytest.raises(DataError, match="must be builtin:NAME"):
        resolve_source("ftp:x", tmp_path)


def test_read_table_picks_the_format_by_suffix_from_the_table(tmp_path) -> None:
    frame = small_frame(5)
    frame.to_parquet(tmp_path / "t.pq")
    frame.to_json(tmp_path / "t.ndjson", orient="records", lines=True)
    frame.to_csv(tmp_path / "t.data", index=False)
    frame.to_json(tmp_path / "t.json", orient="records")  # a JSON array, not JSON Lines
    for name in ("t.pq", "t.ndjson"):
        assert list(read_table(tmp_path / name).columns) == list(frame.columns)
    assert list(read_table(tmp_path / "t.data", "csv").columns) == list(frame.columns)  # a scheme names the format (csv:t.data)
    # Another suffix is refused, naming it and the formats read; it was read as CSV (a JSON file's
    # header was "repeated", an .xlsx file not UTF-8).
    for name, named in (("t.json", ".json is not a table format read here"), ("t.data", ".data is not a table format read here")):
        with pytest.raises(DataError, match=re.escape(f"{name}: {named}; use .csv, .parquet (.pq) or .jsonl (.ndjson)")):
            read_table(tmp_path / name)
    with pytest.raises(DataError, match="a file without a suffix is not read as a table"):
        read_table(tmp_path / "t")
    with pytest.raises(DataError, match="not a table format"):
        read_table(tmp_path / "t.pq", "images")


def _write_sources(folder: Path) -> None:
    """One small data set per path scheme under `folder`."""
    import soundfile as sf

    folder.mkdir(parents=True)
    small_frame(20).to_parquet(folder / "table.parquet")
    rng = np.random.default_rng(0)
    np.savez(folder / "seq.npz", X=rng.normal(size=(12, 5, 2)).astype(np.float32), y=np.array(["a", "b"] * 6))
    for cls, level in (("dark", 30), ("light", 220)):
        (folder / "pictures" / cls).mkdir(parents=True)
        (folder / "clips" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), level + i, np.uint8)).save(folder / "pictures" / cls / f"{i}.png")
            t = np.arange(1600) / 1600
            sf.write(
                str(folder / "clips" / cls / f"{i}.wav"),
                (0.3 * np.sin(2 * np.pi * (level + 10 * i) * t)).astype(np.float32),
                1600,
                subtype="PCM_16",
            )


@pytest.mark.parametrize(
    ("source", "modality", "rows"),
    [
        ("parquet:../data/table.parquet", "table", 20),
        ("npz:../data/seq.npz", "sequence", 12),
        ("images:../data/pictures", "image", 6),
        ("audio:../data/clips", "audio", 6),
    ],
)
def test_relative_paths_in_a_spec_resolve_against_its_folder_not_the_cwd(tmp_path, monkeypatch, source, modality, rows) -> None:
    _write_sources(tmp_path / "project" / "data")
    spec_file = tmp_path / "project" / "specs" / "task.yaml"
    spec_file.parent.mkdir()
    target = "label" if modality == "table" else None
    spec_file.write_text(
        yaml.safe_dump(
            {
                "data": {"source": source, "target": target, "image": {"size": [8, 8]}, "audio": {"sample_rate": 1600, "seconds": 1.0}},
                "model": {"kind": "mlp"},
            }
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # from here `../data/...` names nothing
    spec = load_spec(spec_file)
    scheme, _, rest = source.partition(":")
    assert spec.data.source == f"{scheme}:{(tmp_path / 'project' / 'data' / Path(rest).name).resolve()}"
    raw = load_data(spec)
    assert raw.modality == modality and len(raw) == rows
    assert redact_spec(spec).data.source == f"{scheme}:{Path(rest).name}"


@pytest.mark.parametrize(
    ("source", "holds"),
    [
        ("builtin:iris", "table"),
        ("builtin:reviews", "table"),
        ("builtin:seasonal", "table"),
        ("builtin:digits", "image"),
        ("builtin:shapes", "image"),
        ("builtin:spoken_digits", "audio"),
        ("csv:x.csv", "table"),
        ("jsonl:x.jsonl", "table"),
        ("images:pics", "image"),
        ("audio:clips", "audio"),
        ("npz:x.npz", "sequence"),
    ],
)
def test_what_a_source_holds_is_known_without_reading_it(source, holds) -> None:
    assert source_holds(source) == holds


def test_builtin_text_sets_are_known_as_text_without_reading_them() -> None:
    from trustforge.data import source_holds_text

    assert source_holds_text("builtin:reviews") and source_holds_text("builtin:chinese_reviews")
    assert not any(source_holds_text(s) for s in ("builtin:iris", "csv:reviews.csv", "reviews", "builtin:nope"))


@pytest.mark.parametrize(
    ("task", "source", "kind"),
    [
        ("classification", "builtin:digits", "cnn"),
        ("classification", "images:pics", "cnn"),
        ("classification", "builtin:spoken_digits", "audio_cnn"),
        ("classification", "audio:clips", "audio_cnn"),
        ("classification", "npz:x.npz", "rnn"),
        ("regression", "csv:x.csv", "tabm"),
        ("classification", "builtin:reviews", "mlp"),
        ("forecasting", "builtin:seasonal", "rnn"),
        ("recommendation", "builtin:movielens_small", "mf"),
        ("classification", "ftp:x.csv", "tabm"),  # not a source: the spec's validator refuses it, not this
    ],
)
def test_the_default_model_follows_from_what_the_source_holds(task, source, kind) -> None:
    assert default_model_kind(task, source) == kind


def test_a_users_file_for_recommendations_is_any_table_format_of_the_table(tmp_path) -> None:
    from trustforge.data._interactions import _user_ids

    frame = pd.DataFrame({"userId": ["u1", "u2", "u1"]})
    frame.to_json(tmp_path / "users.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "users.pq")
    for name in ("users.jsonl", "users.pq"):
        assert list(_user_ids(str(tmp_path / name), "userId")) == ["u1", "u2", "u1"]


def test_sklearn_toy_sets_are_read_without_importing_sklearn_and_equal_its_loaders():
    import subprocess
    import sys

    from sklearn import datasets

    from trustforge.data._sources import _breast_cancer_frame, _digits_arrays

    frame, names = _breast_cancer_frame()
    ref = datasets.load_breast_cancer(as_frame=True)
    pd.testing.assert_frame_equal(frame, ref.frame, check_exact=True)
    assert names == [str(n) for n in ref.target_names] == ["malignant", "benign"]
    images, target = _digits_arrays()
    ref = datasets.load_digits()
    assert np.array_equal(images, ref.images) and np.array_equal(target, ref.target) and target.dtype == ref.target.dtype

    # In a fresh interpreter: the two builtins load, and scikit-learn (a second to import) stays out.
    code = (
        "import sys; from trustforge.data import load_source; "
        "[load_source(s, target=None, image_size=(8, 8), channels=1, seed=7) for s in ('builtin:breast_cancer', 'builtin:digits')]; "
        "print('sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_an_image_folder_names_the_files_it_does_not_read(tmp_path: Path, caplog) -> None:
    """A `.gif` and a `.bmp` among the PNGs were left out without a word."""
    from PIL import Image

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "1.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "2.gif")
    Image.new("RGB", (8, 8)).save(tmp_path / "3.bmp")
    with caplog.at_level("WARNING", logger="trustforge.data"):
        assert [p.name for p in list_images(tmp_path)] == ["1.png"]
    assert "2 file(s) not read, not PNG or JPEG images (.bmp, .gif)" in caplog.text
