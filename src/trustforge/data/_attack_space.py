"""Where an attack may move one encoded input tensor, and in what units its budget is counted.

A kind of input (`InputKind.attack_spaces`) or a table column's feature type
(`FeatureType.attack_space`) declares it; the attacks of `trustforge.models` read it and
never ask which kind of input they perturb. Encoded values are what the network reads
(standardised pixels, standardised numbers); the budget is counted in the input's own units
(a fraction of the pixel range, standard deviations of a column), so one epsilon means the
same thing whatever the standardisation was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = [
    "AttackSpace",
    "EditSpace",
    "IMAGE_EPSILONS",
    "STD_EPSILONS",
    "IMAGE_MAX_EPSILON",
    "STD_MAX_EPSILON",
    "movable_elements",
    "largest_budget",
]

# Default sweeps: the literature's image budgets (MNIST-style L-inf 0.05 to 0.3 of the range),
# and for standardised numbers a tenth of a standard deviation up to one.
IMAGE_EPSILONS = (0.05, 0.1, 0.2, 0.3)
STD_EPSILONS = (0.1, 0.25, 0.5, 1.0)
# The largest L∞ budget that means anything: the whole pixel range (beyond it every pixel can
# already reach either end), and 10 standard deviations (far outside any training range, which
# clipping to that range caps anyway).
IMAGE_MAX_EPSILON = 1.0
STD_MAX_EPSILON = 10.0


@dataclass(frozen=True, eq=False)
class AttackSpace:
    """The valid region of one input tensor and the unit of its budget.

    Arrays (NumPy, so that the data stage needs no torch to declare them) broadcast against
    one row's shape (a leading batch axis is added when they are applied): per channel
    `(C, 1, 1)` for images, per column `(D,)` for a table's float matrix.

    Attributes:
        lo, hi: the smallest and largest valid encoded value of each element.
        unit: encoded units per unit of budget: `x_adv = x + delta · unit` with `delta` within epsilon.
        mask: which elements may move (bool), None for all. Elements that may not move keep
            their values (a binary flag, the columns of a date, a column left alone).
        budget: what one unit of epsilon is, for the evidence ("a fraction of the pixel range [0, 1]").
        epsilons: the budgets an evaluation sweeps by default, in that unit (what is a small and
            a large move differs by unit, so the kind that knows the unit says).
        max_epsilon: the largest L∞ budget that means anything in that unit (1 for a fraction
            of a range, 10 standard deviations); None for no limit. An L2 budget's limit is it
            times sqrt(the movable elements of a row).
    """

    lo: np.ndarray
    hi: np.ndarray
    unit: np.ndarray
    mask: np.ndarray | None = None
    budget: str = ""
    epsilons: tuple[float, ...] = ()
    max_epsilon: float | None = None

    def __post_init__(self) -> None:
        for name in ("lo", "hi", "unit"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float32))
        if self.mask is not None:
            object.__setattr__(self, "mask", np.asarray(self.mask, dtype=bool))
        if bool((self.hi < self.lo).any()):
            raise ValueError("an attack space's hi lies below its lo")
        if bool((self.unit <= 0).any()):
            raise ValueError("an attack space's unit must be positive")

    def moves(self) -> bool:
        """Whether any element may move."""
        return self.mask is None or bool(self.mask.any())


@dataclass(frozen=True)
class EditSpace:
    """Where an edit attack on text may act: raw text, not encoded tensors.

    Token ids have no gradient path, so a text is attacked in its own characters, through the
    model's prediction path (`evaluate._text_attack`); the tokenizer, whatever it is (words,
    characters, WordPiece), then reads the edited text as it would any request.

    Attributes:
        columns: the text columns of a row the attack may edit (the text input of a text task,
            the text columns of a table).
        unit: what one unit of budget is, for the evidence.
    """

    columns: tuple[str, ...]
    unit: str = "character edits"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.columns:
            raise ValueError("an edit space needs at least one text column")


def movable_elements(spaces: Sequence[AttackSpace | None], inputs: Sequence[Any]) -> int:
    """How many elements of one row an attack may move, over all of a row's encoded inputs
    (`inputs`: one array or tensor per space, with a leading batch axis)."""
    n = 0
    for space, t in zip(spaces, inputs):
        if space is None or not space.moves():
            continue
        shape = tuple(t.shape[1:])
        n += int(np.prod(shape)) if space.mask is None else int(np.broadcast_to(space.mask, shape).sum())
    return max(n, 1)


def largest_budget(spaces: Sequence[AttackSpace | None], inputs: Sequence[Any], *, l2: bool) -> tuple[float, str] | None:
    """The largest attack budget that means anything for these inputs, and how it is counted; None
    when no space that moves declares one.

    L∞: the smallest `max_epsilon` of the spaces that move (an image column's pixel range bounds a
    table's budget too). L2: that times sqrt(the movable elements of a row), a change of that
    size on every element. Adversarial training (`train.adversarial.epsilon`) and the robustness
    evaluation (`evaluate.robustness.epsilons`) refuse a budget above it, by this function.
    """
    limits = [s.max_epsilon for s in spaces if s is not None and s.moves() and s.max_epsilon is not None]
    if not limits:
        return None
    lead = next(s for s in spaces if s is not None and s.moves())
    if not l2:
        return min(limits), f"{lead.budget}, L∞"
    movable = movable_elements(spaces, inputs)
    return min(limits) * float(np.sqrt(movable)), f"{lead.budget}, L2 (the L∞ limit {min(limits):g} on each of {movable} movable elements)"
