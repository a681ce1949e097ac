"""Out-of-distribution detection: is a served input something the model was trained to read?

Fitted once at training time on the network's *penultimate features* (the input of the layer
that produces its outputs), saved in the package as plain tensors and JSON, and applied where
the network runs (the server's worker processes), in the same forward pass as the prediction.

Up to three scores, each with a threshold set on the validation split:

- **mahalanobis** (Lee et al., 2018): a class-conditional Gaussian with one covariance shared by
  all classes, fitted on the training split's features; a row's score is its squared
  Mahalanobis distance to the nearest class mean. Regression and forecasting models have no
  classes: one Gaussian (the same score with one mean). The covariance is shrunk towards a
  scaled identity with the Ledoit-Wolf intensity (2004): with a few hundred rows and 16 to 384
  feature dimensions the sample covariance is near-singular, and its inverse would amplify
  directions the training data never varied in. A class mean is kept only over at least
  `MIN_ROWS` rows, so the package never holds one row's own features.
- **input**: the same distance, class-free, on each encoded input tensor whose range the input
  kind declares (`InputKind.attack_spaces`: a table's float columns, an image's pixels) and
  that has at most `MAX_INPUT_DIMS` values per row. Lee et al. combine several layers' features
  for this reason: the last layer of a classifier keeps what separates classes, and can map
  something foreign (uniform noise) near a class mean; the input keeps what is not there at all.
- **range**: how far a row's encoded inputs lie beyond their declared range, in the unit the
  input kind gives (a table's numeric column in its standard deviations, beyond its training
  minimum or maximum); 0 for every row inside it, so images in [0, 1] never trip it.

Why these and not the energy score (Liu et al., 2020): energy reads the logits only, and a
classifier can be confident on what it never saw: on the digits CNN its AUROC is 0.92 / 0.67 /
0.95 against noise / drawn shapes / inverted digits, and 0.52 against the shifted table rows
below (`bench/ood.py` prints it beside the others). The distances need no outlier data at
training time and separate every foreign set of the issue. Measured on the
examples as written (`bench/ood.py`): digits CNN, AUROC 1.0000 / 0.9998 / 1.0000 against noise,
shapes and inverted digits (feature score alone 0.9975 / 1.0000 / 0.9999), 3.9 % of test digits
flagged at the 5 % rate; breast-cancer MLP, AUROC 0.9979 against rows moved +5 standard
deviations on three columns (feature score alone 0.9787).

A row is flagged when any score exceeds its threshold. Each threshold is the (1 - a/m)
quantile of its score on the validation split (m scores, a the false-alarm rate asked for), so
that by the union bound at most a of in-distribution rows are flagged; the rate measured on
validation (and, in the evidence, on the test split) is recorded beside it. Without a
validation split the training split is used, and the record says so (optimistic: a network
fits its own training rows more tightly).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["OOD_FORMAT", "FOREIGN", "OodDetector", "OodResult", "fit_ood", "run_ood", "head_layer", "test_figures"]

OOD_FORMAT = 1
MIN_ROWS = 20  # every stored mean summarises at least this many training rows (as the drift reference's numbers do)
MAX_FIT_ROWS = 20_000  # rows of the training split the Gaussian is fitted on (a seeded sample beyond)
_BATCH = 1024
_TOLERANCE = 1e-4
_JITTER = 1e-9  # added to a covariance's diagonal, relative to its trace, so it always inverts
MAX_INPUT_DIMS = 512  # an input tensor with more values per row gets no input Gaussian


# ---------------------------------------------------------------------------- the network's features


def head_layer(module: nn.Module, inputs: Sequence[torch.Tensor]) -> str | None:
    """The name of the linear layer whose output is the network's output, or None.

    Found by running the network once on a few rows and watching every `nn.Linear`: the last
    one called whose output holds exactly the network's output values. Works for any network
    whose last step is a linear layer (possibly reshaped after), whatever its architecture.
    """
    linears = {m: name for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    calls: list[tuple[str, torch.Tensor, int]] = []

    def hook(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
            calls.append((linears[m], out.detach(), args[0].dim()))

    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        with torch.no_grad():
            final = module(*(t[:4] for t in inputs))
    finally:
        for h in handles:
            h.remove()
    if not isinstance(final, torch.Tensor):
        return None
    for name, out, dims in reversed(calls):
        if dims == 2 and out.numel() == final.numel() and torch.equal(out.reshape(-1).float(), final.detach().reshape(-1).float()):
            return name
    return None


@contextlib.contextmanager
def _capture(module: nn.Module, layer: str) -> Iterator[tuple[list[torch.Tensor], list[tuple[torch.Tensor, ...]]]]:
    """Collect the named layer's inputs (the features) and the network's inputs, call by call."""
    features: list[torch.Tensor] = []
    inputs: list[tuple[torch.Tensor, ...]] = []
    h1 = module.get_submodule(layer).register_forward_hook(lambda m, args, out: features.append(args[0].detach().float().cpu()))
    h2 = module.register_forward_pre_hook(
        lambda m, args: inputs.append(tuple(a.detach().cpu() if isinstance(a, torch.Tensor) else None for a in args))
    )
    try:
        yield features, inputs
    finally:
        h1.remove()
        h2.remove()


def _features(module: nn.Module, layer: str, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    was_training = module.training
    module.eval()
    try:
        with _capture(module, layer) as (feats, _), torch.no_grad():
            for i in range(0, len(inputs[0]), _BATCH):
                module(*(t[i : i + _BATCH].to(device) for t in inputs))
    finally:
        module.train(was_training)
    return torch.cat(feats).double() if feats else torch.empty(0, 0, dtype=torch.float64)


# ---------------------------------------------------------------------------- the scores


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64, copy=False)


class _Gaussian:
    """Squared Mahalanobis distance to the nearest of some means under one precision matrix.

    NumPy in float64, with what does not depend on the rows computed once: a served batch is
    a few rows, where each torch call's fixed cost would exceed the arithmetic."""

    def __init__(self, means: torch.Tensor | np.ndarray, precision: torch.Tensor | np.ndarray):
        self.precision = _numpy(precision)
        means = _numpy(means)
        self.mp2 = 2 * (means @ self.precision).T  # (D, K): 2 P m_k
        self.mpm = ((means @ self.precision) * means).sum(1)  # (K,): m_k' P m_k

    def __call__(self, rows: torch.Tensor | np.ndarray) -> np.ndarray:
        f = _numpy(rows).reshape(len(rows), -1)
        if not len(f):
            return np.zeros(0)
        # (f - m)' P (f - m) = f'Pf - 2 f'Pm + m'Pm, for every mean at once
        fp = f @ self.precision
        d = (fp * f).sum(1, keepdims=True) - f @ self.mp2 + self.mpm[None, :]
        return np.maximum(d.min(1), 0.0)


def _range(inputs: Sequence[torch.Tensor | None], spaces: dict[int, tuple[np.ndarray, ...]]) -> np.ndarray:
    """How far each row lies beyond its inputs' valid range, in their units (0 inside it) (N,)."""
    n = len(next(t for t in inputs if t is not None))
    out = np.zeros(n)
    for i, (lo, hi, unit, mask) in spaces.items():
        x = _numpy(inputs[i])  # (N, *row); the bounds broadcast against one row
        # less than _TOLERANCE units out is rounding in the encoding (a pixel of exactly 1.0), not a shift
        beyond = np.maximum((np.maximum(lo - x, x - hi) / unit - _TOLERANCE), 0.0) * mask
        if n and beyond[0].size:
            out = np.maximum(out, beyond.reshape(n, -1).max(1))
    return out


def _ledoit_wolf(centred: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The Ledoit-Wolf (2004) shrunk covariance of centred rows, and the shrinkage intensity."""
    n, d = centred.shape
    s = centred.T @ centred / n
    mu = torch.trace(s) / d
    target = mu * torch.eye(d, dtype=s.dtype)
    delta = ((s - target) ** 2).sum() / d
    x2 = centred**2
    beta = ((x2.T @ x2) / n - s**2).sum() / (d * n)
    shrink = float(min(1.0, max(0.0, (beta / delta).item()))) if delta > 0 else 1.0
    return (1 - shrink) * s + shrink * target, shrink


# ---------------------------------------------------------------------------- fitting


def fit_ood(
    module: nn.Module,
    train: tuple[Sequence[torch.Tensor], torch.Tensor],
    validation: tuple[Sequence[torch.Tensor], torch.Tensor] | None,
    spaces: Sequence[Any] | None,
    *,
    classes: int | None,
    false_alarm_rate: float = 0.05,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Fit the detector of a trained network: its manifest entry and its tensors.

    Args:
        module: the trained network.
        train: the training split's encoded inputs and targets.
        validation: the validation split's, which the thresholds are set on (None: the training split's).
        spaces: the input kind's `attack_spaces` (one per input tensor, None where it has no
            range), for the range score; None for no range score.
        classes: the number of classes of a classifier (targets are class indices), None for
            a model without classes (one Gaussian).
        false_alarm_rate: the share of in-distribution rows flagged, at most.
        seed: draws the rows fitted on when the training split holds more than `MAX_FIT_ROWS`.

    Returns:
        `(entry, tensors)`: the JSON entry (`skipped` with the reason and `tensors` None when
        the network has no final linear layer to read features from).
    """
    inputs, target = train
    if not 0 < false_alarm_rate < 1:
        raise ValueError("false_alarm_rate must be in (0, 1)")
    layer = head_layer(module, inputs) if len(inputs[0]) else None
    if layer is None:
        return {"format": OOD_FORMAT, "skipped": "the network's output does not come from a linear layer over per-row features"}, None
    if len(target) > MAX_FIT_ROWS:
        keep = torch.randperm(len(target), generator=torch.Generator().manual_seed(seed))[:MAX_FIT_ROWS]
        inputs, target = tuple(t[keep] for t in inputs), target[keep]
    feats = _features(module, layer, inputs)
    if feats.dim() != 2 or len(feats) != len(target):
        return {"format": OOD_FORMAT, "skipped": "the network's last linear layer does not read one feature vector per row"}, None
    if len(feats) < MIN_ROWS:
        return {"format": OOD_FORMAT, "skipped": f"fewer than {MIN_ROWS} training rows"}, None
    present: list[int] = []
    if classes and target.dim() == 1 and not target.is_floating_point():
        labels = target.long()
        # A class mean is kept only over at least MIN_ROWS rows: the package holds no row's own features.
        present = [k for k in range(classes) if int((labels == k).sum()) >= MIN_ROWS]
    if present:
        keep = torch.isin(labels, torch.tensor(present))
        means = torch.stack([feats[labels == k].mean(0) for k in present])
        centred = feats[keep] - means[torch.searchsorted(torch.tensor(present), labels[keep])]
    else:
        means = feats.mean(0, keepdim=True)
        centred = feats - means
    cov, shrink = _ledoit_wolf(centred)
    cov = cov + _JITTER * torch.eye(len(cov), dtype=cov.dtype) * max(float(torch.trace(cov)), 1e-12)
    precision = torch.linalg.inv(cov)
    tensors: dict[str, torch.Tensor] = {"means": means, "precision": precision}
    ranges: dict[int, bool] = {}
    gaussians: list[int] = []
    for i, space in enumerate(spaces or ()):
        if space is None:
            continue
        mask = np.ones_like(space.lo, dtype=bool) if space.mask is None else np.broadcast_to(space.mask, space.lo.shape)
        if not mask.any():
            continue
        for key, value in (("lo", space.lo), ("hi", space.hi), ("unit", space.unit), ("mask", mask.astype(np.float64))):
            tensors[f"range_{key}_{i}"] = torch.from_numpy(np.array(np.broadcast_to(value, space.lo.shape), dtype=np.float64))
        ranges[i] = True
        flat = inputs[i].reshape(len(inputs[i]), -1).double()
        if flat.shape[1] <= MAX_INPUT_DIMS:  # a Gaussian of the input itself (a CIFAR image's 3,072 values: too large to keep)
            mean = flat.mean(0, keepdim=True)
            cov_i, _ = _ledoit_wolf(flat - mean)
            tensors[f"input_mean_{i}"] = mean
            tensors[f"input_precision_{i}"] = torch.linalg.inv(
                cov_i + _JITTER * torch.eye(len(cov_i), dtype=cov_i.dtype) * max(float(torch.trace(cov_i)), 1e-12)
            )
            gaussians.append(i)
    entry: dict[str, Any] = {
        "format": OOD_FORMAT,
        "layer": layer,
        "features": int(feats.shape[1]),
        "classes": len(present) or None,
        "classes_left_out": (classes - len(present)) if present and classes else 0,
        "shrinkage": _number(shrink),
        "fitted_rows": len(feats),
        "range_inputs": sorted(ranges),
        "input_gaussians": gaussians,
    }
    detector = OodDetector(entry, tensors)
    held, source = (validation, "validation") if validation is not None and len(validation[1]) else ((inputs, target), "train")
    scores = detector.scores(_features(module, layer, held[0]), held[0])
    # The rate is shared among the scores that vary on in-distribution rows: a range score that
    # is 0 on every held-out row (images in [0, 1]) flags none of them at threshold 0.
    per = false_alarm_rate / max(1, sum(bool((v > 0).any()) for v in scores.values()))
    thresholds = {}
    for name, values in scores.items():
        # the smallest threshold that flags at most a share `per` of the held-out rows
        t = float(np.quantile(values, 1 - per, method="higher"))
        thresholds[name] = _number(t)
    entry["thresholds"] = thresholds
    entry["threshold_from"] = source
    flags = detector.with_thresholds(thresholds).flags(scores)[0]
    entry[f"{source}_false_alarms"] = {
        "rows": len(flags),
        "flagged": int(flags.sum()),
    }
    return entry, tensors


def run_ood(spec: Any, data: Any, module: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None] | None:
    """The detector of a training run (`spec.monitor.ood`), for `write_model_package(ood=...)`;
    None when the spec turns it off.

    Args:
        spec: the run's `TaskSpec`.
        data: its `Prepared` data (training and validation splits, the preprocessor).
        module: the trained network.
    """
    from trustforge.data import input_kind

    cfg = spec.monitor.ood
    if not cfg.enabled:
        return None
    classes = data.schema.classes if spec.task == "classification" else None
    try:
        spaces = input_kind(data.schema).attack_spaces(data.preprocessor)
    except (NotImplementedError, AttributeError, KeyError, ValueError):
        # no declared input range (a kind of input that does not say): the feature score alone
        spaces = None
    validation = (data.validation.inputs, data.validation.target) if data.validation is not None else None
    entry, tensors = fit_ood(
        module,
        (data.train.inputs, data.train.target),
        validation,
        spaces,
        classes=len(classes) if classes else None,
        false_alarm_rate=cfg.false_alarm_rate,
        seed=spec.train.seed,
    )
    if tensors is not None and len(data.test):
        entry["test"] = test_figures(OodDetector(entry, tensors), module, data.test.inputs, spaces, seed=spec.train.seed)
    return entry, tensors


FOREIGN = {
    "noise": "each element drawn uniformly within its valid range",
    "inverted": "each element mirrored within its valid range (lo + hi - x: 1 - x for pixels)",
    "shifted": "3 elements of each row moved 5 units (pixel ranges, standard deviations) beyond their value",
}


def test_figures(detector: OodDetector, module: nn.Module, inputs: Sequence[torch.Tensor], spaces: Any, *, seed: int = 0) -> dict[str, Any]:
    """The detector on the test split: its false-alarm rate, and its AUROC against foreign
    inputs made from the test rows within the ranges the input kind declares (`FOREIGN`; none
    without a declared range, such as token ids). For the evidence; at most `MAX_FIT_ROWS` rows."""
    inputs = tuple(t[:MAX_FIT_ROWS] for t in inputs)
    inside = detector.judge(module, inputs)
    out: dict[str, Any] = {"rows": len(inside.flagged), "flagged": int(inside.flagged.sum())}
    gen = torch.Generator().manual_seed(seed)
    made: dict[str, list[torch.Tensor]] = {name: list(inputs) for name in FOREIGN}
    for i, space in enumerate(spaces or ()):
        if space is None or not space.moves() or not inputs[i].is_floating_point():
            continue
        x = inputs[i]
        lo, hi, unit = (torch.as_tensor(np.asarray(v), dtype=x.dtype).expand(x.shape[1:]) for v in (space.lo, space.hi, space.unit))
        mask = (
            torch.ones(x.shape[1:], dtype=torch.bool)
            if space.mask is None
            else torch.as_tensor(np.broadcast_to(space.mask, x.shape[1:]).copy())
        )
        noise = lo + (hi - lo) * torch.rand(x.shape, generator=gen, dtype=x.dtype)
        made["noise"][i] = torch.where(mask, noise, x)
        made["inverted"][i] = torch.where(mask, lo + hi - x, x)
        flat = mask.reshape(-1).nonzero().reshape(-1)
        pick = flat[torch.rand(len(x), len(flat), generator=gen).argsort(1)[:, :3]]
        moved = torch.zeros(len(x), mask.numel(), dtype=x.dtype).scatter_(1, pick, 5.0)
        made["shifted"][i] = x + moved.reshape(x.shape) * unit
    if any(made[name][i] is not inputs[i] for name in FOREIGN for i in range(len(inputs))):
        out["auroc"] = {name: _number(_auroc(inside.combined, detector.judge(module, tuple(made[name])).combined)) for name in FOREIGN}
        out["foreign"] = FOREIGN
    return out


def _number(x: float) -> float | int:
    """A figure for the manifest: an integral value as an int, any other at full precision.

    The manifest must not hold a training value (see `_reference`); a rate, threshold or AUROC
    written as 0.0 or rounded to 4 digits could equal one, an int or a 17-digit figure does not."""
    x = float(x)
    return int(x) if x.is_integer() else x


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(a foreign row scores above an in-distribution one), ties counting half (Mann-Whitney)."""
    ins = np.sort(inside)
    below = np.searchsorted(ins, outside, side="left")
    at_or_below = np.searchsorted(ins, outside, side="right")
    return float(np.mean(below + 0.5 * (at_or_below - below)) / len(ins)) if len(ins) and len(outside) else float("nan")


# ---------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class OodResult:
    """The verdict on a batch of rows: scores, flags and, for each flagged row, why."""

    scores: dict[str, np.ndarray]
    flagged: np.ndarray  # (N,) bool
    reasons: list[str | None]
    combined: np.ndarray  # (N,) the largest score over its threshold (`OodDetector.combined`)

    @property
    def rows(self) -> list[int]:
        """The flagged rows' indices."""
        return [int(i) for i in np.flatnonzero(self.flagged)]


class OodDetector:
    """The detector saved in a package: scores rows and flags those beyond its thresholds.

    Build it from a loaded model with `OodDetector.for_model(model)` (None when the package has
    none), then `predict_columns(model, columns)` to predict and judge in one forward pass.
    """

    def __init__(self, entry: dict[str, Any], tensors: dict[str, torch.Tensor]):
        self.entry = entry
        self.layer: str = entry["layer"]
        self.gaussian = _Gaussian(tensors["means"], tensors["precision"])
        self.spaces = {
            i: tuple(_numpy(tensors[f"range_{k}_{i}"]) for k in ("lo", "hi", "unit", "mask")) for i in entry.get("range_inputs", [])
        }
        self.gaussians = {
            i: _Gaussian(tensors[f"input_mean_{i}"], tensors[f"input_precision_{i}"]) for i in entry.get("input_gaussians", [])
        }
        self._tensors = tensors
        self.thresholds: dict[str, float] = dict(entry.get("thresholds") or {})
        self._lock = threading.Lock()  # hooks on a shared module: one batch at a time

    @classmethod
    def for_model(cls, model: Any) -> OodDetector | None:
        """The detector of a loaded `Model`'s package, or None (no detector, skipped, or a
        backend without the network's layers, such as ONNX)."""
        entry = ((model.manifest.get("monitor") or {}).get("ood")) or {}
        tensors = getattr(model, "ood_tensors", None)
        module = getattr(model, "module", None)
        if "layer" not in entry or not tensors or not isinstance(module, nn.Module):
            return None
        try:
            module.get_submodule(entry["layer"])
        except AttributeError:
            return None
        return cls(entry, tensors)

    def with_thresholds(self, thresholds: dict[str, float]) -> OodDetector:
        return OodDetector({**self.entry, "thresholds": thresholds}, self._tensors)

    def scores(self, features: torch.Tensor, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """Each score of each row, from the network's features and encoded inputs."""
        out = {"mahalanobis": self.gaussian(features)}
        if self.gaussians:
            n = len(features)
            per = [g(inputs[i]) for i, g in self.gaussians.items()]
            out["input"] = np.max(per, axis=0) if n else np.zeros(0)
        if self.spaces:
            out["range"] = _range(inputs, self.spaces)
        return out

    def combined(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """One score per row: the largest of its scores over their thresholds (above 1: flagged).
        A threshold of 0 (the range score of images) counts any positive score as 1e6."""
        n = len(next(iter(scores.values())))
        out = np.zeros(n)
        for name, values in scores.items():
            t = self.thresholds.get(name)
            if t is None:
                continue
            out = np.maximum(out, values / t if t > 0 else np.where(values > 0, 1e6, 0.0))
        return out

    def flags(self, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str | None]]:
        """Which rows exceed a threshold, and for each flagged row the scores that did."""
        n = len(next(iter(scores.values())))
        flagged = np.zeros(n, dtype=bool)
        why: list[list[str]] = [[] for _ in range(n)]
        for name, values in scores.items():
            t = self.thresholds.get(name)
            if t is None:
                continue
            over = values > t
            flagged |= over
            for i in np.flatnonzero(over):
                why[i].append(f"{name} score {values[i]:.4g} > threshold {t:.4g}")
        return flagged, ["; ".join(w) if w else None for w in why]

    def judge(self, module: nn.Module, inputs: Sequence[torch.Tensor]) -> OodResult:
        """Score and flag encoded inputs (runs the network)."""
        feats = _features(module, self.layer, inputs)
        scores = self.scores(feats, inputs)
        flagged, reasons = self.flags(scores)
        return OodResult(scores, flagged, reasons, self.combined(scores))

    def predict_columns(self, model: Any, columns: dict[str, Any]) -> tuple[dict[str, np.ndarray], OodResult | None]:
        """`model.predict_columns(columns)` and the verdict on its rows, from the same forward pass.

        The verdict is None when the prediction did not run the network once per row (a
        forecast or a recommendation).
        """
        with self._lock, _capture(model.module, self.layer) as (feats, inputs):
            out = model.predict_columns(columns)
        if not feats or not inputs:
            return out, None
        features = torch.cat(feats)
        encoded = tuple(
            torch.cat([call[i] for call in inputs]) if all(call[i] is not None for call in inputs) else None for i in range(len(inputs[0]))
        )
        n = len(next(iter(out.values()))) if out else -1
        if len(features) != n or features.dim() != 2 or any(t is not None and len(t) != n for t in encoded):
            return out, None
        scores = self.scores(features, encoded)
        flagged, reasons = self.flags(scores)
        return out, OodResult(scores, flagged, reasons, self.combined(scores))
