"""Making a model fit for private training (DP-SGD needs each sample's own gradient).

Batch norm mixes the samples of a batch (each sample's normalised value depends on its
peers), so a per-sample gradient does not exist; Opacus' `ModuleValidator.fix` replaces it by
GroupNorm (gcd(32, channels) groups), and swaps the recurrent and attention layers it has
drop-in replacements for (`DPLSTM`, `DPGRU`, `DPMultiheadAttention`). The replacement happens
when the model is built from a spec that asks for privacy, so a package rebuilds the same
architecture before loading its weights.
"""

from __future__ import annotations

import logging

from torch import nn

from trustforge._extras import require
from trustforge.errors import ModelError

__all__ = ["private_compatible"]


def private_compatible(model: nn.Module) -> nn.Module:
    """`model` with the layers DP-SGD cannot train replaced (batch norm → group norm).

    Returns:
        A new module (the input is left as it was); the same one's layers when nothing needed replacing.

    Raises:
        ModelError: a layer Opacus can neither fix nor compute per-sample gradients for (named,
            with its type), e.g. a trainable layer that keeps buffers.
    """
    require("privacy", "train.privacy (DP-SGD)")
    from opacus.validators import ModuleValidator  # imported here: opacus is only needed for private training

    was_training = model.training
    model.train()  # the validator refuses a model in eval mode
    # Opacus logs every replacement at INFO; the run says what it did in its own words.
    opacus_log = logging.getLogger("opacus.validators")
    level = opacus_log.level
    opacus_log.setLevel(logging.WARNING)
    try:
        fixed = ModuleValidator.fix(model)
    finally:
        opacus_log.setLevel(level)
    problems = [f"{name} ({type(m).__name__})" for name, m in _trainable(fixed) if _refused(m)]
    problems += [
        f"{name} ({type(m).__name__}): a trainable layer with buffers" for name, m in _trainable(fixed) if list(m.buffers(recurse=False))
    ]
    if problems:
        raise ModelError(
            "train.privacy: this model has layers DP-SGD cannot train (Opacus computes no per-sample gradient for them): "
            + "; ".join(problems)
            + ". Use another model.kind or set train.privacy to null"
        )
    fixed.train(was_training)
    return fixed


def _trainable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The submodules that hold trainable parameters of their own."""
    return [(name or "model", m) for name, m in model.named_modules() if any(p.requires_grad for p in m.parameters(recurse=False))]


def _refused(module: nn.Module) -> bool:
    """Opacus' validators still object to the layer after its fixers ran."""
    from opacus.validators import ModuleValidator

    validator = ModuleValidator.VALIDATORS.get(type(module))
    return bool(validator is not None and validator(module))
