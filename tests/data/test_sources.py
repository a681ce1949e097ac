"""Tests for data sources: builtin sets, CSV, Parquet and image folders, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from trustforge.data import BUILTIN_SOURCES, list_images, load_source, read_image, read_table
from trustforge.errors import DataError


def load(source: str, target: str | None = None, size: tuple[int, int] = (16, 16), channels: int = 3, seed: int = 0):
    return load_source(source, target=target, image_size=size, channels=channels, seed=seed)


def small_frame(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": rng.integers(20, 70, n),
        "income": rng.normal(50.0, 10.0, n),
        "city": rng.choice(["paris", "rome", "oslo"], n),
        "label": rng.choice(["good", "bad"], n),
    })


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
    assert set(BUILTIN_SOURCES) >= {"digits", "breast_cancer", "wine", "iris", "diabetes", "shapes",
                                    "air_passengers", "seasonal", "fraud", "credit_default"}


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
