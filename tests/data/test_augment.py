"""Tests for the seeded image augmentation (random shifts and horizontal flips)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trustforge.data import ImageAugment


def batch(b: int = 64, c: int = 3, h: int = 9, w: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))  # (B, C, H, W)


def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """`img` (C, H, W) moved down by dy and right by dx, zeros coming in."""
    _, h, w = img.shape
    s = max(abs(dy), abs(dx))
    padded = F.pad(img, (s, s, s, s))
    return padded[:, s - dy : s - dy + h, s - dx : s - dx + w]


def test_no_shift_and_no_flip_is_the_identity() -> None:
    aug = ImageAugment()
    assert not aug and not ImageAugment(shift=0, hflip=False)
    x = batch()
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    assert torch.equal(aug(x, gen), x)
    assert torch.equal(gen.get_state(), state)  # and it draws nothing


def test_shift_keeps_the_shape_and_moves_each_image_by_at_most_s() -> None:
    s = 2
    x = batch(b=24)
    out = ImageAugment(shift=s)(x, torch.Generator().manual_seed(0))
    assert ImageAugment(shift=s)
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = set()
    for img, moved in zip(x, out):
        match = [(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1) if torch.equal(shifted(img, dy, dx), moved)]
        assert len(match) == 1, "each output is the input translated by at most `shift` pixels"
        offsets.add(match[0])
    assert len(offsets) > 5  # the offsets vary from image to image


def test_same_generator_state_gives_the_same_output() -> None:
    aug = ImageAugment(shift=3, hflip=True)
    x = batch()
    a = aug(x, torch.Generator().manual_seed(42))
    b = aug(x, torch.Generator().manual_seed(42))
    c = aug(x, torch.Generator().manual_seed(43))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_hflip_flips_about_half_and_only_flips() -> None:
    x = batch(b=1000, c=1, h=4, w=5)
    out = ImageAugment(hflip=True)(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped ^ kept).all()  # every image is either mirrored or untouched
    assert 430 <= int(flipped.sum()) <= 570


def test_shift_and_flip_together_keep_the_shape() -> None:
    x = batch(b=8, c=1, h=8, w=8)
    out = ImageAugment(shift=8, hflip=True)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
