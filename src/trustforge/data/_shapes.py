"""Deterministic generator for the ``builtin:shapes`` colour image data set.

Each image shows one geometric shape in a random foreground colour on a random
background colour. The class is the shape only: colours, position and scale are
drawn independently of the label, so a model has to look at geometry to score
above chance.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "ring",
    "square",
    "frame",
    "triangle",
    "diamond",
    "cross",
    "plus",
    "hbar",
    "vbar",
)

# Shape extent as a fraction of the image side.
_MIN_EXTENT, _MAX_EXTENT = 0.35, 0.75
# Minimum Euclidean RGB distance between foreground and background; 0.45 of
# the maximum sqrt(3) keeps every shape clearly visible even under noise.
_MIN_COLOUR_DIST = 0.45
# Geometry in shape-normalised coordinates, where the shape spans [-1, 1]^2.
_HOLE = 0.55  # inner radius / half-side of ring and frame
_ARM = 0.25  # half-width of the cross and plus arms
_BAR = 0.32  # half-thickness of hbar and vbar


def _mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean foreground mask of one class in normalised coordinates.

    Args:
        label: Class index into ``SHAPE_CLASSES``.
        u: Horizontal coordinates, shape centre at 0 and extent [-1, 1].
        v: Vertical coordinates (growing downwards), same convention.

    Returns:
        Boolean array of the same shape as ``u``.
    """
    au, av = np.abs(u), np.abs(v)
    box = np.maximum(au, av) <= 1.0
    name = SHAPE_CLASSES[label]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "ring":
        rr = u * u + v * v
        return (rr <= 1.0) & (rr >= _HOLE**2)
    if name == "square":
        return box
    if name == "frame":
        return box & (np.maximum(au, av) >= _HOLE)
    if name == "triangle":
        # Apex at the top (v = -1), base along the bottom edge (v = 1).
        return (v <= 1.0) & (au <= (v + 1.0) / 2.0)
    if name == "diamond":
        return au + av <= 1.0
    if name == "cross":
        # Distance to a diagonal is |u -+ v| / sqrt(2); clip the bars to the box.
        half = _ARM * np.sqrt(2.0)
        return box & ((np.abs(u - v) <= half) | (np.abs(u + v) <= half))
    if name == "plus":
        return box & ((au <= _ARM) | (av <= _ARM))
    if name == "hbar":
        return (au <= 1.0) & (av <= _BAR)
    return (au <= _BAR) & (av <= 1.0)  # vbar


def _colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw background/foreground RGB pairs at least ``_MIN_COLOUR_DIST`` apart.

    Rejection sampling on the foreground only keeps the draw independent of the
    labels, and the loop order is fixed, so the result is reproducible.
    """
    bg = rng.random((n, 3))
    fg = rng.random((n, 3))
    bad = np.linalg.norm(fg - bg, axis=1) < _MIN_COLOUR_DIST
    while bad.any():
        fg[bad] = rng.random((int(bad.sum()), 3))
        bad = np.linalg.norm(fg - bg, axis=1) < _MIN_COLOUR_DIST
    return bg, fg


def make_shapes(n_samples: int = 3000, seed: int = 0, size: int = 32, noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Generate the ``builtin:shapes`` data set.

    Every image holds one shape from ``SHAPE_CLASSES`` with a random centre and
    an extent of 35-75 % of the side, fully inside the image, drawn in a random
    foreground colour over a random background colour (colours independent of
    the class), plus additive Gaussian pixel noise, clipped to [0, 1].

    Args:
        n_samples: Number of images. Each class gets ``n_samples // 10`` images;
            the remainder goes one each to the first classes.
        seed: Seed for ``np.random.default_rng``; no global random state is used,
            so equal arguments give bit-identical outputs.
        size: Image side in pixels (at least 8).
        noise: Standard deviation of the pixel noise (0 disables it).

    Returns:
        ``(images, labels)``: float32 array of shape ``(n_samples, 3, size,
        size)`` with values in [0, 1], and int64 labels of shape
        ``(n_samples,)``, in shuffled order.

    Raises:
        ValueError: If an argument is out of range.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    k = len(SHAPE_CLASSES)
    counts = np.full(k, n_samples // k)
    counts[: n_samples % k] += 1
    labels = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), counts))

    # Half-extent in pixels; the centre range keeps the whole shape inside.
    half = rng.uniform(_MIN_EXTENT, _MAX_EXTENT, n_samples) * size / 2.0
    cx = rng.uniform(half, size - half)
    cy = rng.uniform(half, size - half)
    bg, fg = _colours(rng, n_samples)

    grid = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    mask = np.empty((n_samples, size, size), dtype=bool)
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        h = half[idx, None, None].astype(np.float32)
        u = (grid[None, None, :] - cx[idx, None, None].astype(np.float32)) / h
        v = (grid[None, :, None] - cy[idx, None, None].astype(np.float32)) / h
        mask[idx] = _mask(c, *np.broadcast_arrays(u, v))

    images = np.where(
        mask[:, None],
        fg.astype(np.float32)[:, :, None, None],
        bg.astype(np.float32)[:, :, None, None],
    )
    if noise > 0:
        images += noise * rng.standard_normal(images.shape, dtype=np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return images, labels
