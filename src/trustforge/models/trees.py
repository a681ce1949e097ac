"""Gradient-boosted trees as tensors: scikit-learn's HistGradientBoosting, evaluated by torch.

Why tensors and not skops or ONNX (skl2onnx): the package format, its signature, encryption,
verification on load and the server all already handle one thing, a torch module whose state is
in `weights.safetensors`. A fitted ensemble is only numbers (per node: the feature, the
threshold, where missing values go, the two children, the leaf value), so it becomes buffers of
a module and rides every guarantee unchanged. skops would add a second, pickle-like loader with
its own trust list to audit; skl2onnx would add a second runtime beside torch for one model
kind and would not give the module the rest of the evidence (speed, explanations) reads.

All trees are evaluated at once, one level per step, by gathers (the approach of Microsoft's
Hummingbird, "GEMM-free tree traversal"): every row starts at each tree's root; a step reads the
node's feature and threshold and moves to the left or right child; a leaf points to itself, so
after `depth` steps every row sits on its leaf in every tree. Comparisons are in float64, as
scikit-learn's are, so a threshold between two float32 values splits them the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TreeEnsemble"]


class TreeEnsemble(nn.Module):
    """A sum of regression trees per output, plus a constant (scikit-learn's baseline prediction).

    The shapes are fixed by the spec (`max_iter`, `max_leaf_nodes`), so a package rebuilds the
    module before reading its tensors; trees that early stopping did not grow are single leaves of 0.

    Args:
        n_features: columns the trees read: the D floats, then the K categorical codes (as numbers).
        n_out: outputs (logits per class, 1 for binary cross-entropy or regression; for 2 classes
            with cross-entropy the logits are (0, z)).
        trees: number of trees (iterations × trees per iteration).
        nodes: nodes per tree (2 · max_leaf_nodes − 1).
    """

    gradient_free = True  # piecewise constant: evidence that follows input gradients skips it (evaluate.gather)

    def __init__(self, n_features: int, n_out: int, *, trees: int, nodes: int):
        super().__init__()
        self.n_features = n_features
        self.register_buffer("feature", torch.zeros(trees, nodes, dtype=torch.long))
        self.register_buffer("threshold", torch.full((trees, nodes), np.inf, dtype=torch.float64))
        self.register_buffer("missing_left", torch.zeros(trees, nodes, dtype=torch.bool))
        self.register_buffer("left", torch.zeros(trees, nodes, dtype=torch.long))  # a leaf points to itself
        self.register_buffer("right", torch.zeros(trees, nodes, dtype=torch.long))
        self.register_buffer("value", torch.zeros(trees, nodes, dtype=torch.float64))
        self.register_buffer("output", torch.zeros(trees, dtype=torch.long))  # the output column each tree adds to
        self.register_buffer("bias", torch.zeros(n_out, dtype=torch.float64))
        self.register_buffer("depth", torch.zeros((), dtype=torch.long))
        self._steps = 0  # `depth` as a plain number: the walk's length is fixed, so a trace or an export follows it

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN202 - torch's hook
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._steps = int(self.depth)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None, *own: torch.Tensor) -> torch.Tensor:
        parts = [x.flatten(1).double()]
        if x_cat is not None and x_cat.shape[1]:
            parts.append(x_cat.double())
        rows = torch.cat(parts, dim=1)  # (B, F) float64
        t, n = self.feature.shape
        base = torch.arange(t, device=rows.device) * n  # (T,): each tree's first node in the flattened arrays
        # (B, T): every row at every root; sizes from the rows, never numbers taken from them, so a
        # trace serves any batch size.
        idx = torch.zeros_like(rows[:, :1], dtype=torch.long) + torch.zeros_like(base)
        feature, threshold = self.feature.flatten(), self.threshold.flatten()
        missing, left, right = self.missing_left.flatten(), self.left.flatten(), self.right.flatten()
        for _ in range(self._steps):
            at = idx + base  # (B, T) flat node ids
            v = rows.gather(1, feature[at])  # (B, T) the value each node tests
            gap = torch.isnan(v)  # boolean algebra, not `where` over booleans (ONNX Runtime has no such kernel)
            go_left = (gap & missing[at]) | (~gap & (v <= threshold[at]))
            idx = torch.where(go_left, left[at], right[at])
        leaves = self.value.flatten()[idx + base]  # (B, T)
        out = torch.zeros_like(rows[:, :1]) + self.bias  # (B, n_out)
        out = out.index_add(1, self.output, leaves)
        return out.float()

    @torch.no_grad()
    def load_fitted(self, estimator: Any, classes: np.ndarray | None, logit_pair: bool) -> None:
        """Copy a fitted `HistGradientBoostingClassifier`/`Regressor`'s trees into the buffers.

        Args:
            classes: the output column of each of the estimator's classes (None: regression).
            logit_pair: two outputs for a binary classifier's one logit z: (0, z).
        """
        t_max, n_max = self.feature.shape
        per_iter = len(estimator._predictors[0])
        base = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel()  # (per_iter,)
        columns = _columns(per_iter, classes, logit_pair)
        bias = np.zeros(len(self.bias))
        if classes is not None and not logit_pair and len(self.bias) > 1:
            bias[:] = -1e4  # a class the training split never held: never predicted
        bias[columns] = base
        grown = [tree for trees in estimator._predictors for tree in trees]
        if len(grown) > t_max:
            raise ValueError(f"{len(grown)} trees do not fit {t_max}")
        arrays = {k: getattr(self, k).numpy().copy() for k in ("feature", "threshold", "missing_left", "left", "right", "value")}
        output = np.zeros(t_max, dtype=np.int64)
        depth = 0
        for i, tree in enumerate(grown):
            nodes = tree.nodes
            if len(nodes) > n_max:
                raise ValueError(f"a tree of {len(nodes)} nodes does not fit {n_max}")
            if np.any(nodes["is_categorical"]):
                raise ValueError("categorical splits are not supported; categories are read as their codes")
            leaf = nodes["is_leaf"].astype(bool)
            own = np.arange(len(nodes))
            arrays["feature"][i, : len(nodes)] = np.where(leaf, 0, nodes["feature_idx"])
            arrays["threshold"][i, : len(nodes)] = np.where(leaf, np.inf, nodes["num_threshold"])
            arrays["missing_left"][i, : len(nodes)] = nodes["missing_go_to_left"].astype(bool)
            arrays["left"][i, : len(nodes)] = np.where(leaf, own, nodes["left"])
            arrays["right"][i, : len(nodes)] = np.where(leaf, own, nodes["right"])
            arrays["value"][i, : len(nodes)] = np.where(leaf, nodes["value"], 0.0)
            output[i] = columns[i % per_iter]
            depth = max(depth, int(nodes["depth"].max()))
        for i in range(len(grown), t_max):  # trees early stopping did not grow: one leaf of 0 at the root
            arrays["left"][i, 0] = arrays["right"][i, 0] = 0
            output[i] = columns[0]
        for k, a in arrays.items():
            getattr(self, k).copy_(torch.from_numpy(a))
        self.output.copy_(torch.from_numpy(output))
        self.bias.copy_(torch.from_numpy(bias))
        self.depth.fill_(depth)
        self._steps = depth


def _columns(per_iter: int, classes: np.ndarray | None, logit_pair: bool) -> np.ndarray:
    """The output column each of an iteration's trees adds to."""
    if classes is None:
        return np.zeros(per_iter, dtype=np.int64)  # regression: one value
    if per_iter == 1:  # a binary classifier's one logit, of its second class
        return np.array([1 if logit_pair else 0], dtype=np.int64)
    return np.asarray(classes, dtype=np.int64)  # one tree per class per iteration
