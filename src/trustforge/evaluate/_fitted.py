"""The fitted baselines as packaged models: fit `model.kind: linear` and `hist_gradient_boosting`.

A spec whose model is a baseline gets it fitted here by its own solver, on the training split's
encoded inputs (the tensors every torch model reads), and the fitted numbers copied into the
torch module `build_model` made (`models.LinearTable`, `models.TreeEnsemble`). From there the run
is a run like any other: the module is evaluated, packaged as weights-only safetensors, signed,
sealed, served and verified on load, with no pickle anywhere.

- linear: the yardstick's own fit, reused (`fit_logistic`, `fit_ridge`: the same `Design` and
  solver as the run's baseline evidence), its weights moved into a `Linear` over standardised
  floats, one-hot categories and each text column's bag of tokens.
- hist_gradient_boosting: scikit-learn's `HistGradientBoostingClassifier`/`Regressor` on the float
  inputs and the categorical codes (as numbers: the tensors hold the codes, and trees split them
  as ordered values), its trees copied node by node.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from trustforge.data import Prepared
from trustforge.errors import ModelError
from trustforge.evaluate._baselines import fit_logistic, fit_ridge

__all__ = ["fit_fitted", "table_matrix"]


def table_matrix(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The rows the trees read: the floats, then the categorical codes as numbers (N, D + K), float64."""
    parts = [inputs[0].flatten(1).double().numpy()]
    if len(inputs) > 1 and inputs[1].ndim == 2 and inputs[1].shape[1]:
        parts.append(inputs[1].double().numpy())
    return np.hstack(parts)


def fit_fitted(spec: Any, data: Prepared, module: torch.nn.Module) -> dict[str, Any]:
    """Fit the spec's baseline model kind on the training split and load it into `module` (in place).

    Returns:
        {"fit_seconds", "fit_rows", ...}: what the fit took and read.

    Raises:
        ModelError: the kind is not a fitted one, or the data does not suit it.
    """
    kind = spec.model.kind
    t0 = time.perf_counter()
    if kind == "linear":
        details = _fit_linear(spec, data, module)
    elif kind == "hist_gradient_boosting":
        details = _fit_trees(spec, data, module)
    else:
        raise ModelError(f"model.kind {kind!r} is trained by epochs, not fitted by a solver")
    module.eval()
    return {"fit_seconds": time.perf_counter() - t0, **details}


def _fit_linear(spec: Any, data: Prepared, module: Any) -> dict[str, Any]:
    n_out = module.linear.out_features
    classes = data.schema.classes
    if classes:
        balanced = spec.train.class_weights == "balanced" or spec.train.sampler == "balanced"
        fitted, design, details = fit_logistic(data, seed=spec.train.seed, class_weight="balanced" if balanced else None, c=spec.model.c)
        coef, intercept = np.atleast_2d(fitted.coef_), np.atleast_1d(fitted.intercept_)
    else:
        fitted, design, details = fit_ridge(data, seed=spec.train.seed, alpha=spec.model.alpha)
        coef, intercept = fitted.coef_[None, :], np.array([fitted.intercept_])
    n_float = module.mean.numel()
    mean, scale = np.zeros(n_float), np.ones(n_float)
    width = module.linear.in_features
    offsets = [n_float + int(o) for o in module.offsets.tolist()]
    bags = np.cumsum([n_float + sum(module.cardinalities), *module.vocab_sizes]).tolist()  # each text column's first slot
    columns: list[int] = []  # the module's design column of each of the solver's columns
    for part, info in design.parts:
        if part == "float" and info[0] == 0:
            mean, scale = info[1], info[2]
            columns += range(n_float)
        elif part == "onehot" and info[0] == 1:
            for j, size in enumerate(info[1]):
                columns += range(offsets[j], offsets[j] + size)
        elif part == "bag" and info[0] >= 2:  # the j-th text column's tokens (ids the training split never held get no slot)
            start = int(bags[info[0] - 2])
            columns += range(start, start + info[1])
        else:
            raise ModelError("model.kind 'linear' reads table numbers, categories and text only")
    weights = np.zeros((coef.shape[0], width))
    weights[:, columns] = coef
    out_w, out_b = np.zeros((n_out, width)), np.zeros(n_out)
    if not classes or n_out == 1:  # regression, or binary cross-entropy's one logit
        out_w[0], out_b[0] = weights[0], intercept[0]
    elif len(fitted.classes_) == 2:  # one logit z for two classes: logits (0, z) on their columns
        if n_out > 2:
            raise ModelError(f"the training split holds 2 of the {n_out} classes; a linear model needs at least 3 of them here")
        out_w[1], out_b[1] = weights[0], intercept[0]
    else:
        out_b[:] = -1e4  # a class the training split never held: never predicted
        rows = np.asarray(fitted.classes_, dtype=np.int64)
        out_w[rows], out_b[rows] = weights, intercept
    module.load_fitted(mean, scale, out_w, out_b)
    return {**details, "solver": "lbfgs" if classes else "ridge"}


def _fit_trees(spec: Any, data: Prepared, module: Any) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    m = spec.model
    x = table_matrix(data.train.inputs)
    options = dict(
        max_iter=m.max_iter,
        learning_rate=m.learning_rate,
        max_leaf_nodes=m.max_leaf_nodes,
        min_samples_leaf=m.min_samples_leaf,
        l2_regularization=m.l2_regularization,
        early_stopping=m.early_stopping,
        random_state=spec.train.seed,
    )
    classes = data.schema.classes
    if classes:
        y = data.train.target.numpy().astype(np.int64)
        est = HistGradientBoostingClassifier(**options).fit(x, y)
        n_out = len(module.bias)
        if len(est.classes_) == 2 and n_out > 2:
            raise ModelError(f"the training split holds 2 of the {n_out} classes; gradient boosting needs at least 3 of them here")
        module.load_fitted(est, np.asarray(est.classes_, dtype=np.int64), logit_pair=n_out == 2)
    else:
        est = HistGradientBoostingRegressor(**options).fit(x, data.train.target.numpy().astype(np.float64).ravel())
        module.load_fitted(est, None, logit_pair=False)
    return {"fit_rows": int(len(x)), "features": int(x.shape[1]), "iterations": int(est.n_iter_)}
