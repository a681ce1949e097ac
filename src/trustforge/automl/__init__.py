"""Automatic model choice (`model.kind: auto`, `trustforge train --preset`): candidates per input
kind, fitted on the training split and ranked on the validation split, the test split sealed."""

from trustforge.automl._auto import (
    CANDIDATES,
    Candidate,
    SealedSplit,
    auto_spec,
    candidate_spec,
    candidates_for,
    choose,
    cross_validate,
    fit_candidate,
    run_auto,
)

__all__ = [
    "CANDIDATES",
    "Candidate",
    "SealedSplit",
    "auto_spec",
    "candidate_spec",
    "candidates_for",
    "choose",
    "cross_validate",
    "fit_candidate",
    "run_auto",
]
