"""Adversarial evaluation: how a packaged model's test score falls under gradient attacks.

FGSM and PGD (`trustforge.models.fgsm` / `pgd`) run on the package's network in its real input
space: the kind of input says where each encoded tensor may move and in what unit the budget is
counted (`InputKind.attack_spaces`, built from the feature types' bounds), so this module never
asks which kind of input it attacks. Classification is attacked against the true labels with
the task's own loss on raw logits (cross-entropy, or BCE on one logit) and scored as the package
predicts (its temperature and binary threshold); regression ascends its squared error and is
scored by the RMSE in the target's units.

The evidence per attack and per epsilon: the score, the attack's success rate (the share of the
rows the model got right that the attack turns wrong), the epsilon at which accuracy halves
(linear between the swept budgets), the seconds it took; for the strongest attack asked, the
median smallest epsilon that flips a prediction (a per-sample bisection seeded from the sweep)
and a few adversarial inputs beside their originals.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from trustforge.data import AttackSpace, RawData, first_row, input_kind, largest_budget, movable_elements
from trustforge.errors import DataError, SpecError
from trustforge.evaluate._tasks import outputs_to_proba
from trustforge.models import fgsm, pgd
from trustforge.spec import MIN_ATTACK_ROWS

__all__ = ["robustness", "attack_refusal", "hardening"]

# Per-sample bisection halvings after the sweep's bracket: the bracket is at most the gap
# between two swept budgets, so 5 halvings leave a 1/32 of it (0.003 of the pixel range on digits).
_HALVINGS = 5
# Rows bisected at most (a seeded sample of those the sweep flipped): the median of 100 is
# within a few percent of the median of all, at a fifth of the cost on a 500-row sample.
_BISECT_ROWS = 100
_EXAMPLES = 3
# Character edits per text swept by default: one typo up to a few words' worth (DeepWordBug's budgets run 1-30).
_EDIT_BUDGETS = (1, 2, 4, 8)
# Rows attacked when evaluate.robustness.rows is not set: a text row costs a model call per candidate edit.
_GRADIENT_ROWS = 200
_EDIT_ROWS = 100
_BATCH = 256
# Above this many attacked numbers per example, an example is not copied into evidence.json
# (a 3×64×64 image is 12,288; a table row is a few dozen).
_EXAMPLE_SIZE = 20_000


# Why a kind of input has no attack space, honestly: a gradient path may well exist (a GRU over
# float windows is differentiable), what is missing is the valid region an attack must stay in.
_NO_SPACE = {
    "series": "a series' windows are differentiable, but their valid range is not declared (no bounds an attack could stay within)",
    "sequence": "numeric sequences are differentiable, but their valid range is not declared (no bounds an attack could stay within)",
    "interactions": "user and item ids are lookups: no gradient path reaches them, and no edit attack applies",
    "table": "no column of this table may move (categories, flags and dates stay), and no text column can be edited",
}


def attack_refusal(model: Any) -> str | None:
    """Why gradient attacks cannot run on `model` (no input with a gradient path, or a task
    with no per-row label or value to attack), else None."""
    kind = input_kind(model.schema)
    if kind.attack_spaces(model.preprocessor) is None:
        if kind.edit_space(model.preprocessor) is not None:  # text: the character-edit attack (`_text_attack`)
            if not model.task.probabilities:
                return f"the text attack flips predicted classes; task {model.task.name} has none"
            return None
        return f"{kind.name} inputs declare no attack space yet: " + _NO_SPACE.get(
            kind.name, "none of their encoded tensors says where it may move, and no edit attack applies"
        )
    if model.task.name not in ("classification", "regression"):
        return f"task {model.task.name} has no per-row label or value that a gradient attack could flip"
    return None


def hardening(spec: Any) -> str:
    """What the model was hardened against, from `train.adversarial` (absent from older specs):
    "not hardened", or the defence in a few words from its real fields, e.g. "TRADES (β 6)
    against PGD-5, L2, ε 0.3" or "PGD adversarial training (50% of each batch) against FGSM, L∞, ε 0.1".
    """
    adv = getattr(getattr(spec, "train", None), "adversarial", None)
    if not adv:
        return "not hardened"

    def field(name: str, default: Any = None) -> Any:
        return getattr(adv, name, default)

    method = str(field("method", "pgd")).lower()
    if method == "trades":
        head = f"TRADES (β {field('beta', 6.0):g})"
    else:
        ratio = field("ratio", 1.0)
        head = "PGD adversarial training" + (f" ({float(ratio):.0%} of each batch)" if ratio is not None and float(ratio) != 1 else "")
    name = str(field("attack", "pgd")).lower()
    steps = field("steps")
    attack = "FGSM" if name == "fgsm" else f"PGD-{steps}" if steps is not None else name.upper()
    parts = [attack, {"inf": "L∞", "2": "L2"}.get(str(field("norm", "inf")), str(field("norm")))]
    if field("epsilon") is not None:
        parts.append(f"ε {float(field('epsilon')):g}")
    if field("step_size") is not None and name != "fgsm":
        parts.append(f"step {float(field('step_size')):g}")
    return f"{head} against " + ", ".join(parts)


def robustness(
    model: Any,
    raw: RawData,
    settings: Any,
    *,
    seed: int,
    baseline_module: torch.nn.Module | None = None,
    examples: int = _EXAMPLES,
) -> dict[str, Any]:
    """Attack `model` on the labelled rows of `raw` and measure what the attacks do.

    Args:
        model: a `trustforge.Model` (its `module`, `preprocessor`, `task`, `spec`, `temperature`, `decision`).
        raw: labelled data of the model's kind (the test split).
        settings: a `spec.RobustnessSpec` (attacks, norm, epsilons or None for the kind's
            defaults, steps, step_size as a fraction of epsilon or None for 1/4, random_start, rows).
        seed: draws the row sample and PGD's random starts.
        baseline_module: the network of a plain twin trained on the same data (adversarial
            training passes it); its curves are added as `before_hardening`.

    Returns:
        ``{"skipped": reason}`` where no attack applies or `raw` holds fewer than
        `MIN_ATTACK_ROWS` rows, else the evidence (see the module docstring):
        ``{"metric", "norm", "budget", "epsilons", "rows", "steps", "step_size", "random_start",
        "clean", "attacks": {name: {"points": [{"epsilon", metric, "success_rate"}], "seconds",
        "samples_per_second", "halving_epsilon"}}, "smallest_flip", "examples", "hardened",
        "before_hardening"?}``.
    """
    reason = attack_refusal(model)
    if reason is not None:
        return {"skipped": reason}
    if len(raw) < MIN_ATTACK_ROWS:  # as `trustforge attack` refuses: a sweep over a few rows is no figure
        return {"skipped": f"{len(raw)} test rows, at least {MIN_ATTACK_ROWS} needed"}
    pre, task = model.preprocessor, model.task
    spaces = input_kind(model.schema).attack_spaces(pre)
    inputs = pre.encode_inputs(raw) if spaces is not None else ()
    _check_settings(settings, spaces, inputs)
    if spaces is None:  # text: edits under a budget in characters, not gradients (attack_refusal let it through)
        return _edit_evidence(model, raw, settings, seed=seed, examples=examples)
    lead = next(s for s in spaces if s is not None and s.moves())
    l2 = str(settings.norm) == "2"
    movable = movable_elements(spaces, inputs)
    if settings.epsilons:
        epsilons = sorted(float(e) for e in settings.epsilons)
    else:
        # The kind's defaults are L∞ budgets (a change of ε on each element); the L2 norm of that
        # change on every movable element is ε·sqrt(n), so an L2 sweep scaled so reaches as far.
        scale = float(np.sqrt(movable)) if l2 else 1.0
        epsilons = sorted(float(f"{float(e) * scale:.4g}") for e in (lead.epsilons or (0.1, 0.25, 0.5, 1.0)))
    target = pre.encode_target(raw)
    total = len(target)
    idx = _sample(target.numpy(), settings.rows or _GRADIENT_ROWS, seed, stratify=task.probabilities)
    inputs, target = tuple(t[idx] for t in inputs), target[idx]
    n_classes = len(model.classes or [])
    judge = _Judge(model, target)
    loss_fn = task.loss(model.spec, n_classes, target)  # per-row weights do not change a row's direction
    fraction = settings.step_size if settings.step_size is not None else 0.25
    attack = _Attack(spaces, loss_fn, settings.norm, settings.steps, fraction, settings.random_start, seed)

    evidence: dict[str, Any] = {
        "metric": judge.metric,
        "norm": settings.norm,
        "budget": lead.budget + (f"; for L2, ε is the L2 norm of the whole change of a row ({movable} movable elements)" if l2 else ""),
        "epsilons": epsilons,
        "rows": len(target),
        "of_rows": total,
        "steps": settings.steps,
        "step_size": f"epsilon × {fraction:g}",
        "random_start": bool(settings.random_start),
        "target": "the true labels" if task.probabilities else "the true values",
        "hardened": hardening(model.spec),
    }
    evidence.update(_curves(model.module, inputs, target, judge, attack, settings.attacks, epsilons, keep=True, examples=examples))
    if baseline_module is not None:
        before = _curves(baseline_module.eval(), inputs, target, judge, attack, settings.attacks, epsilons, keep=False, examples=0)
        evidence["before_hardening"] = before
    if examples and "_adv" in evidence:
        evidence["examples"] = _examples(pre, inputs, evidence.pop("_adv"), spaces, judge, examples)
    evidence.pop("_adv", None)
    return evidence


def _edit_evidence(model: Any, raw: RawData, settings: Any, *, seed: int, examples: int) -> dict[str, Any]:
    """The character-edit attack's evidence (`_text_attack.edit_attack`) in the shape of the
    gradient attacks' (one attack, `epsilons` the edit budgets), so the report, the card and
    `trustforge attack` show both alike."""
    from trustforge.evaluate._text_attack import edit_attack

    space = input_kind(model.schema).edit_space(model.preprocessor)
    budgets = list(getattr(settings, "budgets", None) or _EDIT_BUDGETS)
    found = edit_attack(model, raw, space, budgets=budgets, rows=settings.rows or _EDIT_ROWS, seed=seed)
    levels, accuracy, success = found["budgets"][1:], found["accuracy"], found["success_rate"]
    points = [{"epsilon": float(b), "accuracy": a, "success_rate": r} for b, a, r in zip(levels, accuracy[1:], success[1:])]
    judge = SimpleNamespace(metric="accuracy", higher_is_better=True)
    seconds = float(found["seconds"])
    evidence: dict[str, Any] = {
        "metric": "accuracy",
        "norm": "edits",
        "budget": f"{found['unit']} per row (Levenshtein distance; a swap of two neighbours counts 2)",
        "epsilons": [float(b) for b in levels],
        "rows": found["rows"],
        "of_rows": len(raw),
        "target": "the true labels",
        "clean": accuracy[0],
        "hardened": hardening(model.spec),
        "attacks": {
            "char-edit": {
                "method": found["attack"],
                "points": points,
                "seconds": round(seconds, 4),
                "samples_per_second": round(found["rows"] / max(seconds, 1e-9), 1),
                "halving_epsilon": _halving(accuracy[0], points, judge),
            }
        },
        "smallest_flip": {
            "attack": "char-edit",
            "method": "edits spent when the prediction flipped (an upper bound of the Levenshtein distance), "
            "over the rows the largest budget flipped",
            "median": found["median_smallest_budget"],
            "beyond": float(levels[-1]),
            "rows": found["rows"],
        },
    }
    shown = found["examples"][:examples]
    if shown:
        rows = [
            {
                "label": ex.get("label"),
                "adversarial_prediction": ex.get("prediction_after"),
                "changes": [
                    {"column": c, "before": ex["original"][c], "after": ex["adversarial"][c], "units": "raw"} for c in ex["original"]
                ]
                if isinstance(ex.get("original"), dict)
                else [{"column": ", ".join(space.columns), "before": ex.get("original"), "after": ex.get("adversarial"), "units": "raw"}],
            }
            for ex in shown
        ]
        evidence["examples"] = {"attack": "char-edit", "epsilon": float(levels[-1]), "rows": rows}
    return evidence


# ---------------------------------------------------------------------------- the parts


# The settings of one family of attack only, with the flag of `trustforge attack` that sets each.
_GRADIENT_FIELDS = {
    "attacks": "--attack",
    "norm": "--norm",
    "epsilons": "--epsilon",
    "steps": "--steps",
    "step_size": "--step-size",
    "random_start": "--random-start",
}
_EDIT_FIELDS = {"budgets": "--budget"}


def check_robustness_settings(spec: Any, preprocessor: Any, raw: RawData) -> None:
    """Refuse `evaluate.robustness` settings that `robustness` would refuse once the model is
    trained (a setting of the other family of attack, a budget above the inputs' largest), by the
    same checks: what `trustforge validate` and `train` run before any training. Nothing is
    checked where the run attacks nothing (robustness off, a tree ensemble, a kind or task no
    attack applies to), as the run then refuses nothing either.

    Args:
        spec: the run's spec; preprocessor: its encoders fitted on the training split; raw: rows
            of its data (one is encoded, for the shape of a row).

    Raises:
        SpecError: the field is named, as `trustforge attack` names its flag.
    """
    from trustforge.evaluate._tasks import task_of

    settings = spec.evaluate.robustness
    if settings is None or spec.model.kind == "hist_gradient_boosting":  # piecewise constant: `gather` skips it
        return
    if attack_refusal(SimpleNamespace(schema=preprocessor.schema, preprocessor=preprocessor, task=task_of(spec))) is not None:
        return
    spaces = input_kind(preprocessor.schema).attack_spaces(preprocessor)
    inputs = preprocessor.encode_inputs(first_row(raw)) if spaces is not None and settings.epsilons else ()
    _check_settings(settings, spaces, inputs)


def check_attack_fields(model: Any, settings: Any) -> None:
    """Refuse a setting of the other family of attack for `model` (`--epsilon` on a text model,
    attacked by edits; `--budget` on the others) from its kind of input alone, before any data
    is read (`trustforge attack` runs it first; `robustness` checks it again).

    Raises:
        SpecError: naming the field and its flag.
    """
    _check_fields_fit(settings, text=input_kind(model.schema).attack_spaces(model.preprocessor) is None)


def _check_settings(settings: Any, spaces: Sequence[AttackSpace | None] | None, inputs: tuple[torch.Tensor, ...]) -> None:
    """The checks of `settings` against the inputs attacked: `spaces` (None: a text model, attacked
    by edits) and encoded rows (their shape: how many elements a row may move)."""
    _check_fields_fit(settings, text=spaces is None)
    if spaces is not None and settings.epsilons:
        _check_budgets(spaces, sorted(float(e) for e in settings.epsilons), inputs, str(settings.norm) == "2")


def _check_fields_fit(settings: Any, *, text: bool) -> None:
    """Refuse a setting of the other family of attack (one that differs from its default: a
    spec written out in full repeats the defaults), rather than ignore it silently."""
    fields = getattr(type(settings), "model_fields", {})
    for name, flag in (_GRADIENT_FIELDS if text else _EDIT_FIELDS).items():
        if name not in fields or getattr(settings, name, None) == fields[name].get_default(call_default_factory=True):
            continue
        if text:
            raise SpecError(
                f"evaluate.robustness.{name} ({flag}) applies to the gradient attacks on images, tables and audio; "
                "this text model meets the character-edit attack, set its budgets with evaluate.robustness.budgets (--budget)"
            )
        raise SpecError(
            f"evaluate.robustness.{name} ({flag}) applies to text models (character edits per row); this model's inputs are "
            "attacked by gradient, set their budgets with evaluate.robustness.epsilons (--epsilon)"
        )


def _check_budgets(spaces: Sequence[AttackSpace | None], epsilons: Sequence[float], inputs: Sequence[Any], l2: bool) -> None:
    """Refuse a budget above the largest that means anything for these inputs (`data.largest_budget`)."""
    limit = largest_budget(spaces, inputs, l2=l2)
    over = [e for e in epsilons if limit is not None and e > limit[0] + 1e-9]
    if over:
        raise SpecError(
            f"evaluate.robustness.epsilons (--epsilon): ε {over[0]:g} is above the largest budget of this model's inputs, "
            f"{limit[0]:.4g} in {limit[1]}; a larger one attacks nothing more"
        )


class _Attack:
    """One configured attack run, batch by batch, on any network."""

    def __init__(
        self, spaces: Sequence[AttackSpace | None], loss_fn: Callable, norm: str, steps: int, fraction: float, rs: bool, seed: int
    ):
        self.spaces, self.loss_fn, self.norm, self.steps, self.fraction, self.rs, self.seed = (
            spaces,
            loss_fn,
            norm,
            steps,
            fraction,
            rs,
            seed,
        )

    def __call__(self, name: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], target: torch.Tensor, eps: Any):
        out: list[tuple[torch.Tensor, ...]] = []
        gen = torch.Generator().manual_seed(self.seed)  # the same starts for every network and budget
        eps_t = torch.as_tensor(eps, dtype=torch.float32)
        for i in range(0, len(target), _BATCH):
            part = tuple(t[i : i + _BATCH] for t in inputs)
            e = eps_t if eps_t.ndim == 0 else eps_t[i : i + _BATCH]
            if name == "fgsm":
                adv = fgsm(module, part, target[i : i + _BATCH], self.loss_fn, self.spaces, epsilon=e, norm=self.norm)
            else:
                adv = pgd(
                    module, part, target[i : i + _BATCH], self.loss_fn, self.spaces, epsilon=e, steps=self.steps,
                    step_size=self.fraction, norm=self.norm, random_start=self.rs, generator=gen, relative_step=True,
                )  # fmt: skip
            out.append(adv)
        return tuple(torch.cat([o[j] for o in out]) for j in range(len(inputs)))


class _Judge:
    """Scores outputs as the package predicts: classes through its temperature and threshold;
    values decoded to the target's units."""

    def __init__(self, model: Any, target: torch.Tensor):
        self.model, self.target = model, target
        self.classify = bool(model.task.probabilities)
        self.metric = "accuracy" if self.classify else "rmse"
        self.higher_is_better = self.classify

    @torch.no_grad()
    def outputs(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.cat([module(*(t[i : i + _BATCH] for t in inputs)).float() for i in range(0, len(self.target), _BATCH)])

    def right(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[float, np.ndarray, np.ndarray]:
        """(score, per-row correct (or absolute error), per-row prediction)."""
        out = self.outputs(module, inputs)
        if self.classify:
            m = self.model
            proba = outputs_to_proba(m.task.calibrate(out, m.temperature), len(m.classes))
            pred = m.task.decide(proba, m.classes, m.decision)
            ok = pred == self.target.numpy()
            return float(ok.mean()), ok, pred
        decode = self.model.preprocessor.decode_regression
        pred = decode(out.reshape(len(out), -1)[:, 0].numpy().astype(np.float64))
        err = np.abs(pred - decode(self.target.numpy().astype(np.float64)))
        return float(np.sqrt(np.mean(err**2))), err, pred

    def label(self, value: Any) -> Any:
        return str(self.model.classes[int(value)]) if self.classify else round(float(value), 6)


def _curves(module, inputs, target, judge: _Judge, attack: _Attack, names, epsilons, *, keep: bool, examples: int) -> dict[str, Any]:
    module.eval()
    clean, ok0, _ = judge.right(module, inputs)
    out: dict[str, Any] = {"clean": clean, "attacks": {}}
    flips: dict[str, list[np.ndarray]] = {}
    for name in names:
        points, flipped, t0 = [], [], time.perf_counter()
        for eps in epsilons:
            adv = attack(name, module, inputs, target, eps)
            score, ok, pred = judge.right(module, adv)
            point: dict[str, Any] = {"epsilon": eps, judge.metric: score}
            if judge.classify:
                lost = ok0 & ~ok
                point["success_rate"] = float(lost.sum() / max(int(ok0.sum()), 1))
                flipped.append(lost)
                if keep and examples and name == names[-1] and "_adv" not in out and point["success_rate"] >= 0.5:
                    out["_adv"] = (name, eps, adv, lost, pred)
            points.append(point)
        seconds = time.perf_counter() - t0
        out["attacks"][name] = {
            "points": points,
            "seconds": round(seconds, 4),
            "samples_per_second": round(len(target) * len(epsilons) / max(seconds, 1e-9), 1),
            "halving_epsilon": _halving(clean, points, judge),
        }
        flips[name] = flipped
    if keep and examples and judge.classify and "_adv" not in out:  # no budget flipped half: show the largest
        name, eps = names[-1], epsilons[-1]
        adv = attack(name, module, inputs, target, eps)
        _, ok, pred = judge.right(module, adv)
        out["_adv"] = (name, eps, adv, ok0 & ~ok, pred)
    if judge.classify:
        strongest = "pgd" if "pgd" in names else names[-1]
        out["smallest_flip"] = _smallest_flip(module, inputs, target, judge, attack, strongest, epsilons, ok0, flips[strongest])
    return out


def _halving(clean: float, points: list[dict[str, Any]], judge: _Judge) -> float | None:
    """The budget at which accuracy falls to half its clean value (regression: the error doubles),
    linear between swept budgets; None when no swept budget gets there."""
    key = judge.metric
    goal = clean / 2 if judge.higher_is_better else clean * 2
    prev_e, prev_v = 0.0, clean
    for p in points:
        v = p[key]
        if (v <= goal) if judge.higher_is_better else (v >= goal):
            if v == prev_v:
                return float(p["epsilon"])
            return float(prev_e + (p["epsilon"] - prev_e) * (prev_v - goal) / (prev_v - v))
        prev_e, prev_v = p["epsilon"], v
    return None


def _smallest_flip(module, inputs, target, judge, attack, name, epsilons, ok0, flipped) -> dict[str, Any]:
    """Per correctly predicted row, the smallest budget at which `name` flips it: bracketed by the
    sweep (the largest budget that did not flip it, the smallest that did), then halved
    `_HALVINGS` times with a per-row budget. Rows no swept budget flips count as beyond the sweep."""
    eps = np.asarray(epsilons, dtype=np.float64)
    right = np.flatnonzero(ok0)
    method = (
        f"per-row bisection ({_HALVINGS} halvings) with {name.upper()} inside the bracket the sweep found, "
        f"on at most {_BISECT_ROWS} of the rows predicted right"
    )
    if not len(right):
        return {"attack": name, "method": method, "median": None, "resisted": None, "rows": 0}
    grid = np.stack(flipped, axis=1)[right] if flipped else np.zeros((len(right), 0), bool)  # (R, E)
    hit = grid.any(axis=1)
    first = np.where(hit, grid.argmax(axis=1), len(eps))
    hi = np.where(hit, eps[np.minimum(first, len(eps) - 1)], np.inf)
    lo = np.where(first > 0, eps[np.maximum(first - 1, 0)], 0.0)
    lo = np.where(hit, lo, eps[-1])
    resisted = float((~hit).mean())  # of all the right rows: no swept budget flipped them
    if len(right) > _BISECT_ROWS:  # a seeded sample of the right rows, flipped or not, keeps the median unbiased
        keep = np.sort(np.random.default_rng(attack.seed).choice(len(right), _BISECT_ROWS, replace=False))
        right, hi, lo, hit = right[keep], hi[keep], lo[keep], hit[keep]
    hit_at = np.flatnonzero(hit)
    rows = right[hit_at]
    if len(rows):
        sub_in = tuple(t[rows] for t in inputs)
        sub_t = target[rows]
        a, b = lo[hit_at].copy(), hi[hit_at].copy()
        for _ in range(_HALVINGS):
            mid = (a + b) / 2
            adv = attack(name, module, sub_in, sub_t, torch.as_tensor(mid, dtype=torch.float32))
            out = judge.outputs(module, adv)
            proba = outputs_to_proba(judge.model.task.calibrate(out, judge.model.temperature), len(judge.model.classes))
            now_wrong = judge.model.task.decide(proba, judge.model.classes, judge.model.decision) != sub_t.numpy()
            b = np.where(now_wrong, mid, b)
            a = np.where(now_wrong, a, mid)
        hi[hit_at] = b
    median = float(np.median(hi))
    return {
        "attack": name,
        "method": method,
        "median": None if not np.isfinite(median) else round(median, 5),
        "beyond": float(eps[-1]),
        "resisted": resisted,
        "rows": int(len(right)),  # the rows bisected
    }


def _examples(pre, inputs, held, spaces, judge: _Judge, n: int) -> dict[str, Any]:
    """Up to `n` flipped rows beside their originals: grid inputs (images, spectrograms) as values
    in budget units above the lower bound (pixels in [0, 1] for images), table rows as the changed
    columns decoded back to raw units through each column's fitted state."""
    name, eps, adv, lost, pred = held
    rows = np.flatnonzero(lost)[:n]
    items: list[dict[str, Any]] = []
    groups = pre.column_groups() if hasattr(pre, "column_groups") and pre.schema.columns else []
    for r in rows:
        item: dict[str, Any] = {"label": judge.label(judge.target[r]), "adversarial_prediction": judge.label(pred[r])}
        for j, space in enumerate(spaces):
            if space is None or not space.moves():
                continue
            x0, x1 = inputs[j][r].numpy(), adv[j][r].numpy()
            if x0.ndim >= 2 and x0.size <= _EXAMPLE_SIZE:  # a grid: (C, H, W)
                lo, unit = np.broadcast_to(space.lo, x0.shape), np.broadcast_to(space.unit, x0.shape)
                item["original"] = np.round((x0 - lo) / unit, 4).tolist()
                item["adversarial"] = np.round((x1 - lo) / unit, 4).tolist()
            elif x0.ndim == 1:
                item["changes"] = _changed_columns(pre, groups, j, x0, x1)
        items.append(item)
    return {"attack": name, "epsilon": eps, "budget": spaces and next(s for s in spaces if s is not None).budget, "rows": items}


def _changed_columns(pre, groups, tensor: int, x0: np.ndarray, x1: np.ndarray) -> list[dict[str, Any]]:
    """The columns of one table row that an attack moved, in the column's raw units where its
    state says how it was standardised (mean and std), else in encoded units."""
    out = []
    for name, _kind, t, cols in groups:
        if t != tensor or cols is None:
            continue
        before, after = x0[cols], x1[cols]
        if np.allclose(before, after, atol=1e-6):
            continue
        state = pre.features.get(name)
        mean, std = getattr(state, "mean", None), getattr(state, "std", None)
        raw = isinstance(mean, (int, float)) and isinstance(std, (int, float)) and len(cols) == 1

        def scale(v: float) -> float:  # 7 significant digits: what float32 holds, without its noise
            return float(f"{float(v) * std + mean if raw else float(v):.7g}")

        out.append(
            {
                "column": name,
                "before": scale(before[0]) if len(cols) == 1 else np.round(before, 4).tolist(),
                "after": scale(after[0]) if len(cols) == 1 else np.round(after, 4).tolist(),
                "units": "raw" if raw else "encoded",
            }
        )
    return out


def _sample(target: np.ndarray, rows: int, seed: int, *, stratify: bool) -> np.ndarray:
    """At most `rows` row indices, seeded; for classes, each class in proportion (at least one each)."""
    n = len(target)
    if n == 0:
        raise DataError("the attack needs labelled rows; the data has none")
    rng = np.random.default_rng(seed)
    if n <= rows:
        return np.arange(n)
    if not stratify:
        return np.sort(rng.choice(n, rows, replace=False))
    picked = []
    classes, counts = np.unique(target, return_counts=True)
    for c, k in zip(classes, counts):
        take = max(1, int(round(rows * k / n)))
        picked.append(rng.choice(np.flatnonzero(target == c), min(take, k), replace=False))
    picked = np.concatenate(picked)
    if len(picked) > max(rows, len(classes)):  # rounding up small classes overshot: drop at random
        picked = rng.choice(picked, max(rows, len(classes)), replace=False)
    return np.sort(picked)
