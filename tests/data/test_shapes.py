"""Tests for the ``builtin:shapes`` generator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from trustforge.data._shapes import SHAPE_CLASSES, make_shapes


@pytest.fixture(scope="module")
def shapes() -> tuple[np.ndarray, np.ndarray]:
    return make_shapes(3000, seed=0)


def _shape_features(images: np.ndarray, k: int = 10) -> np.ndarray:
    """Colour-, position- and scale-free features: the foreground mask cropped
    to its bounding box, resampled to k x k, plus the box's log aspect ratio."""
    n, _, s, _ = images.shape
    # A 3x3 box blur cuts the pixel noise so the threshold below finds the shape.
    p = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    smooth = sum(p[:, :, i : i + s, j : j + s] for i in range(3) for j in range(3)) / 9
    edge = np.concatenate(
        [smooth[:, :, 0], smooth[:, :, -1], smooth[:, :, :, 0], smooth[:, :, :, -1]],
        axis=2,
    )
    bg = np.median(edge, axis=2)  # the shape covers at most a little of the border
    fg = np.linalg.norm(smooth - bg[:, :, None, None], axis=1) > 0.2
    out = np.zeros((n, k * k + 1))
    for i in range(n):
        rows, cols = np.flatnonzero(fg[i].any(1)), np.flatnonzero(fg[i].any(0))
        if rows.size == 0:
            continue
        ri = np.linspace(rows[0], rows[-1], k).round().astype(int)
        ci = np.linspace(cols[0], cols[-1], k).round().astype(int)
        out[i, :-1] = fg[i][np.ix_(ri, ci)].ravel()
        out[i, -1] = np.log((rows[-1] - rows[0] + 1) / (cols[-1] - cols[0] + 1))
    return out


def test_classes() -> None:
    assert len(SHAPE_CLASSES) == 10
    assert len(set(SHAPE_CLASSES)) == 10


def test_shapes_dtypes_range(shapes) -> None:
    x, y = shapes
    assert x.shape == (3000, 3, 32, 32) and x.dtype == np.float32
    assert y.shape == (3000,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    x, y = make_shapes(7, seed=1, size=24, noise=0.0)
    assert x.shape == (7, 3, 24, 24) and y.shape == (7,)
    x, y = make_shapes(0)
    assert x.shape == (0, 3, 32, 32) and y.shape == (0,)


def test_determinism(shapes) -> None:
    x, y = shapes
    x2, y2 = make_shapes(3000, seed=0)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, y3 = make_shapes(3000, seed=1)
    assert not np.array_equal(x, x3)
    assert not np.array_equal(y, y3)


def test_class_balance_and_shuffle(shapes) -> None:
    _, y = shapes
    assert np.bincount(y, minlength=10).tolist() == [300] * 10
    _, y = make_shapes(1003, seed=2)
    assert np.bincount(y, minlength=10).tolist() == [101] * 3 + [100] * 7
    assert (np.diff(y) != 0).sum() > 500  # interleaved, not sorted by class


def test_noiseless_images_are_two_coloured_and_visible() -> None:
    x, _ = make_shapes(200, seed=3, noise=0.0)
    for img in x:
        colours, counts = np.unique(img.reshape(3, -1).T, axis=0, return_counts=True)
        assert len(colours) == 2  # background + a shape that is really drawn
        assert np.linalg.norm(colours[0] - colours[1]) >= 0.45 - 1e-6
        assert counts.min() >= 10  # the shape covers a visible area


def test_invalid_arguments() -> None:
    for kwargs in ({"n_samples": -1}, {"size": 4}, {"noise": -0.1}):
        with pytest.raises(ValueError):
            make_shapes(**kwargs)


def test_colour_does_not_predict_class(shapes) -> None:
    x, y = shapes
    mean_colour = x.mean(axis=(2, 3))
    clf = LogisticRegression(max_iter=1000).fit(mean_colour[:2000], y[:2000])
    acc = clf.score(mean_colour[2000:], y[2000:])
    print(f"\nmean-colour logistic regression accuracy: {acc:.3f} (chance 0.1)")
    assert acc < 0.25


def test_shape_is_learnable(shapes) -> None:
    x, y = shapes
    features = _shape_features(x)
    clf = SVC().fit(features[:2000], y[:2000])
    acc = clf.score(features[2000:], y[2000:])
    print(f"\nshape-feature SVC accuracy: {acc:.3f} (chance 0.1)")
    assert acc >= 0.5
