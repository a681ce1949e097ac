"""What a kind of input hands a network: the shapes of its encoded tensors, by kind of tensor.

`InputKind.shape(schema)` answers with one of these; `trustforge.models` builds a network
for the shape it is given and refuses, naming the field, one it does not read. A network
never asks which data set or modality the tensors came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Columns", "Grid", "Ids", "Spectrogram", "Steps", "Tokens"]


@dataclass(frozen=True)
class Columns:
    """A table's row: floats (D,), category indices (K,), then one tensor of its own per text
    column (token ids over `vocabularies`) and per image or audio column (a grid of `grids`
    (C, H, W)), in the order `own` names their slots ("tokens" or "grid")."""

    floats: int
    cardinalities: tuple[int, ...]
    vocabularies: tuple[int, ...]
    grids: tuple[tuple[int, ...], ...] = ()
    own: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.own and self.vocabularies and not self.grids:  # text columns only
            object.__setattr__(self, "own", ("tokens",) * len(self.vocabularies))


@dataclass(frozen=True)
class Grid:
    """An image (C, H, W)."""

    shape: tuple[int, int, int]


@dataclass(frozen=True)
class Steps:
    """A sequence of `steps` float vectors of `features` (a series window, an .npz sequence)."""

    steps: int
    features: int


@dataclass(frozen=True)
class Tokens:
    """One text's token ids over a vocabulary of `vocabulary` ids (0 is padding)."""

    vocabulary: int


@dataclass(frozen=True)
class Spectrogram:
    """Mono waveforms whose log-mel front end (`front_end`, see data._audio.FrontEnd) runs in the network."""

    front_end: dict[str, Any]
    shape: tuple[int, int, int]  # (1, n_mels, frames) after the front end


@dataclass(frozen=True)
class Ids:
    """(user, item) index pairs over vocabularies of `users` and `items` ids (0: unknown)."""

    users: int
    items: int
