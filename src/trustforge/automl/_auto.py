"""`model.kind: auto`: try the model kinds that suit the input, pick by the VALIDATION split.

`choose` fits every candidate of the input kind's list (`CANDIDATES`) on the training split,
scores it on the validation split, times its fit and its one-row latency, and ranks them; with
`model.ensemble: N` it also scores the validation-weighted average of the best N. The test split
is sealed while it runs: `choose` replaces it with `SealedSplit`, which raises on any access, so
a selection that read the test split would fail rather than leak (tests/automl prove it).

`run_auto` then trains the chosen spec as an ordinary run (`pipeline.run`), with the leaderboard
and the verdict in its metrics, its manifest and its report. A fitted baseline (linear,
hist_gradient_boosting) that wins is packaged only with `model.register_baseline: true`; without
it the run packages the best network and the verdict says plainly that the baseline won. An
ensemble of networks that tops the leaderboard is packaged as `model.kind: ensemble`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from trustforge.data import masking_key, needs_masking_key, prepare, source_input_kind
from trustforge.errors import ModelError, SpecError
from trustforge.evaluate import fit_fitted, outputs_to_proba, task_of
from trustforge.models import build_model
from trustforge.spec import FITTED_KINDS, MEMBER_KINDS, TaskSpec, load_spec
from trustforge.train import Trainer, seeded

__all__ = [
    "Candidate",
    "CANDIDATES",
    "SealedSplit",
    "choose",
    "cross_validate",
    "run_auto",
    "auto_spec",
    "candidate_spec",
    "candidates_for",
    "fit_candidate",
]


@dataclass(frozen=True)
class Candidate:
    """One model kind worth trying on a kind of input, with its model settings per preset.

    Attributes:
        kind: the `model.kind`.
        fast, best: `model` fields for `model.preset: fast` and `best` (the kind's defaults where empty).
        baseline: fitted by its own solver (linear, hist_gradient_boosting), not trained by epochs.
    """

    kind: str
    fast: Mapping[str, Any] = field(default_factory=dict)
    best: Mapping[str, Any] = field(default_factory=dict)
    baseline: bool = False


# The candidates per kind of input (`data.source_input_kind`), in the order they are tried (the
# baselines first: cheap, and a yardstick for the rest). Adding a model kind is one line here; a
# kind this installation's spec does not know is left out (tab17's tabm and ft_transformer).
CANDIDATES: dict[str, list[Candidate]] = {
    "table": [
        Candidate("linear", baseline=True),
        Candidate("hist_gradient_boosting", best={"max_iter": 300, "learning_rate": 0.05}, baseline=True),
        Candidate("mlp", {"hidden": [128, 64], "dropout": 0.1}, {"hidden": [256, 128], "dropout": 0.1}),
        Candidate("tabm"),
        Candidate("ft_transformer"),
    ],
    "image": [Candidate("cnn"), Candidate("mlp")],
    "sequence": [Candidate("rnn"), Candidate("transformer"), Candidate("mlp")],
    "audio": [Candidate("audio_cnn")],
}

# Per preset: the most epochs a trained candidate runs (under the spec's own train.max_epochs) and
# its early stopping on the validation loss, so a candidate that stops learning stops spending.
_EPOCHS = {"fast": 30, "best": 200}
_PATIENCE = {"fast": 5, "best": 15}
_LATENCY_CALLS = 21


class SealedSplit:
    """Stands in for the test split while candidates are chosen: any use of it raises.

    Raises:
        RuntimeError: on any attribute, length or iteration: the selection read the test split.
    """

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr: str) -> Any:
        raise RuntimeError(f"the {self._name} split is sealed while model.kind auto chooses (it read .{attr})")

    def __len__(self) -> int:
        raise RuntimeError(f"the {self._name} split is sealed while model.kind auto chooses")

    def __iter__(self) -> Any:
        raise RuntimeError(f"the {self._name} split is sealed while model.kind auto chooses")


def _sealed(data: Any) -> Any:
    return dataclasses.replace(data, test=SealedSplit("test"), test_raw=SealedSplit("test"))


def known_kinds() -> set[str]:
    from trustforge.models import MODEL_KINDS

    return set(MODEL_KINDS) - {"auto"}


def candidates_for(spec: TaskSpec) -> list[Candidate]:
    """The candidates of the spec's input kind, or those `model.candidates` names (in its order).

    Raises:
        SpecError: `model.candidates` names a kind that does not suit this input.
    """
    held = source_input_kind(spec.task, spec.data.source)
    listed = [c for c in CANDIDATES.get(held, []) if c.kind in known_kinds()]
    named = spec.model.candidates
    if named is None:
        if not listed:
            raise SpecError(f"model.kind auto has no candidates for {held} data; name a model kind")
        return listed
    by_kind = {c.kind: c for c in listed}
    out = []
    for i, kind in enumerate(named):
        if kind not in by_kind:
            fits = ", ".join(by_kind) or "none"
            raise SpecError(f"model.candidates[{i}] {kind!r} does not suit {held} data (the candidates for it: {fits})")
        out.append(by_kind[kind])
    return out


def candidate_spec(spec: TaskSpec, cand: Candidate) -> TaskSpec:
    """The spec of one candidate: the auto spec with its model replaced (and, for a trained kind,
    the preset's epoch cap and early stopping on the validation loss)."""
    preset = spec.model.preset
    raw = spec.model_dump(mode="json")
    raw["model"] = {"kind": cand.kind, **(cand.fast if preset == "fast" else cand.best)}
    if not cand.baseline:
        raw["train"]["max_epochs"] = min(int(raw["train"]["max_epochs"]), _EPOCHS[preset])
        if raw["train"].get("early_stopping") is None:
            raw["train"]["early_stopping"] = {"monitor": "val_loss", "patience": _PATIENCE[preset]}
    return load_spec(raw)


def _score(spec: TaskSpec, data: Any, out: torch.Tensor) -> tuple[float, float, dict[str, float]]:
    """(headline metric, tie-break loss, all logged) of validation outputs; both oriented so larger is better."""
    task = task_of(spec)
    headline = task.headline_metric(spec)
    target = data.validation.target
    logged = task.validation_metrics(spec, data.preprocessor, (headline,))(out, target)
    value = float(logged[headline])
    if task.probabilities:
        proba = outputs_to_proba(out, len(data.schema.classes))
        picked = np.clip(proba[np.arange(len(target)), target.numpy()], 1e-12, 1.0)
        logloss = float(-np.log(picked).mean())
        logged = {**logged, "log_loss": logloss}
        return value, -logloss, logged
    return -value if not task.higher_is_better(headline) else value, 0.0, logged


@torch.no_grad()
def _latency_ms(model: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> float:
    """Median milliseconds of one forward pass on one row (after a warm-up call)."""
    model.eval()
    row = tuple(t[:1] for t in inputs)
    model(*row)
    times = []
    for _ in range(_LATENCY_CALLS):
        t0 = time.perf_counter()
        model(*row)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


@torch.no_grad()
def _predict(model: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    model.eval()
    n = len(inputs[0])
    return torch.cat([model(*(t[i : i + 4096] for t in inputs)).float() for i in range(0, n, 4096)])


def fit_candidate(cspec: TaskSpec, data: Any, *, progress: bool = False) -> tuple[torch.nn.Module, float, int]:
    """Build and fit one candidate's spec on the training split (validation for early stopping only).

    Returns:
        (the fitted module in eval mode, fit seconds, epochs trained (0 for a fitted baseline)).
    """
    with seeded(cspec.train.seed):
        model = build_model(cspec, data.schema)
    t0 = time.perf_counter()
    if cspec.model.kind in FITTED_KINDS:
        fit_fitted(cspec, data, model)
        epochs = 0
    else:
        trainer = Trainer.from_spec(cspec, data, task_of(cspec), progress=progress)
        epochs = len(trainer.fit(model, data.train, data.validation))
    return model.eval(), time.perf_counter() - t0, epochs


def choose(spec: TaskSpec, data: Any, *, progress: bool = False) -> dict[str, Any]:
    """Fit every candidate on the training split and rank them by the validation split.

    The test split is replaced by `SealedSplit` for the whole choice.

    Args:
        spec: a spec with `model.kind: auto`.
        data: its prepared data (`data.prepare`), with a validation split.

    Returns:
        The selection: {"metric", "preset", "budget_seconds", "leaderboard": [rows, best first],
        "chosen": the kind to package, "best": the kind that won on validation, "verdict": a sentence,
        "chosen_model": the chosen candidate's `model` section}.

    Raises:
        SpecError: no validation split, or no candidate could be fitted.
    """
    if spec.model.kind != "auto":
        raise SpecError(f"model.kind must be auto to choose a model; got {spec.model.kind!r}")
    if data.validation is None or len(data.validation) == 0:
        raise SpecError("data.split.validation must be > 0 for model.kind auto (candidates are chosen on the validation split)")
    data = _sealed(data)  # from here on, the test split raises on any use
    pool, splits = _splits(spec, data)
    scoring = dataclasses.replace(data, validation=pool)  # the rows the scores are of: validation, or train + validation out of fold
    budget = spec.model.budget()
    task = task_of(spec)
    metric = task.headline_metric(spec)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    outputs: dict[str, torch.Tensor] = {}
    models: dict[str, Any] = {}
    trained: dict[str, dict[str, Any]] = {}  # a network's epochs and stopping, should it become an ensemble's member
    for cand in candidates_for(spec):
        row: dict[str, Any] = {"kind": cand.kind, "baseline": cand.baseline}
        if rows and time.perf_counter() - started > budget:  # the first candidate always runs
            rows.append({**row, "skipped": f"the time budget ({budget:g} s) was spent"})
            continue
        cspec = candidate_spec(spec, cand)
        try:
            model, fit_seconds, epochs, out = _fit_scored(cspec, data, pool, splits, progress)
        except (ModelError, SpecError) as e:  # the kind does not read this data (e.g. trees over text columns)
            rows.append({**row, "skipped": str(e)})
            continue
        value, tie, logged = _score(cspec, scoring, out)
        outputs[cand.kind], models[cand.kind] = out, cspec.model.model_dump(mode="json")
        trained[cand.kind] = cspec.train.model_dump(mode="json", include={"max_epochs", "early_stopping"})
        rows.append(
            {
                **row,
                f"val_{metric}": logged[metric],
                **({"val_log_loss": logged["log_loss"]} if "log_loss" in logged else {}),
                "fit_seconds": round(fit_seconds, 4),
                "epochs": epochs,
                "latency_ms": round(_latency_ms(model, data.validation.inputs), 4),
                "parameters": int(sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())),
                "_rank": (value, tie),
            }
        )
    fitted = [r for r in rows if "_rank" in r]
    if not fitted:
        reasons = "; ".join(f"{r['kind']}: {r['skipped']}" for r in rows)
        raise SpecError(f"model.kind auto: no candidate could be fitted ({reasons})")
    if spec.model.ensemble >= 2 and len(fitted) >= 2:
        rows.append(
            _ensemble_row(spec, data, sorted(fitted, key=lambda r: r["_rank"], reverse=True)[: spec.model.ensemble], outputs, metric)
        )
    scored = _with_ties(sorted((r for r in rows if "_rank" in r), key=lambda r: r["_rank"], reverse=True), metric, len(pool))
    ranked = scored + [r for r in rows if "_rank" not in r]
    for i, r in enumerate(ranked):
        r.pop("_rank", None)
        if "skipped" not in r:
            r["rank"] = i + 1
    packable = [r for r in ranked if "skipped" not in r and not r.get("ensemble")]
    best = packable[0]
    networks = [r for r in packable if not r["baseline"]]
    chosen = best if best["baseline"] is False or spec.model.register_baseline or not networks else networks[0]
    chosen_model = models[chosen["kind"]]
    top = ranked[0]
    if top.get("ensemble") and all(kind in MEMBER_KINDS for kind in top["weights"]):
        # The weighted ensemble won on validation and every member is a network: it is the packaged model.
        top["packaged"], chosen = True, top
        chosen_model = {
            "kind": "ensemble",
            "members": [{"model": models[kind], "train": trained[kind]} for kind in top["weights"]],
            "weights": list(top["weights"].values()),
        }
    return {
        "metric": f"val_{metric}",
        "preset": spec.model.preset,
        "budget_seconds": budget,
        "seconds": round(time.perf_counter() - started, 3),
        "selected_on": "validation" if splits is None else f"{len(splits)}-fold cross-validation over the training and validation rows",
        "scored_rows": len(pool),
        "leaderboard": ranked,
        "best": best["kind"],
        "chosen": chosen["kind"],
        "chosen_model": chosen_model,
        "verdict": _verdict(best, chosen, ranked, metric) + _ensemble_short(spec.model.ensemble, len(fitted)),
    }


def _splits(spec: TaskSpec, data: Any) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]] | None]:
    """The rows candidates are scored on, and the folds (None: the validation split as it is).

    Folds (`model.folds` > 1) score out of fold over the training and validation rows: ten times
    the rows of a 10 % validation split, for K times the fitting. They are not the default: on the
    ten benchmark tables (bench/auto.py, 3 seeds) 5 folds did not bring the choice nearer the best
    candidate on test than the validation split with its standard-error ties did; again once the
    candidates stopped early on their own training rows (`bench/auto.py --folds 5`, stopped after
    14 of the 30 table-seeds: 8 within the bar, against 10 of the same 14 on the validation split).
    The test rows take no part either way.
    """
    if spec.model.folds <= 1:
        return data.validation, None
    return _pooled_folds(data, spec.model.folds, spec.train.seed)


def _pooled_folds(data: Any, k: int, seed: int) -> tuple[Any, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The training and validation rows as one split, and `k` seeded folds of it (train, held-out indices)."""
    n = len(data.train) + len(data.validation)
    pool = dataclasses.replace(
        data.train,
        inputs=tuple(torch.cat([a, b]) for a, b in zip(data.train.inputs, data.validation.inputs)),
        target=torch.cat([data.train.target, data.validation.target]),
    )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = [order[i::k] for i in range(k)]
    return pool, [(torch.cat([f for j, f in enumerate(folds) if j != i]), folds[i]) for i in range(k)]


def cross_validate(
    spec: TaskSpec, data: Any, folds: int, *, after_fold: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
) -> tuple[Any, torch.Tensor]:
    """Out-of-fold outputs of `spec`'s model over the training and validation rows (never the test rows).

    Each of `folds` models is fitted as a candidate is (`fit_candidate`, stopping early on part of
    its own training rows) on the other folds and predicts its own. `after_fold(i, outputs,
    targets)`, when given, is called after fold `i` (from 0) with the outputs and targets of the
    rows scored so far (a tuning trial reports its running score there, and may stop by raising).

    Returns:
        (the pooled rows, as a split, with their targets; the outputs on them, in that order).
    """
    if data.validation is None or len(data.validation) == 0:
        raise SpecError("cross-validation needs a validation split (data.split.validation > 0): its rows join the folds")
    pool, splits = _pooled_folds(data, folds, spec.train.seed)
    return pool, _fit_scored(spec, data, pool, splits, False, after_fold=after_fold)[3]


def _take(part: Any, idx: torch.Tensor) -> Any:
    return dataclasses.replace(part, inputs=tuple(t[idx] for t in part.inputs), target=part.target[idx])


def _fit_scored(
    cspec: TaskSpec, data: Any, pool: Any, splits: Any, progress: bool, *, after_fold: Callable[..., None] | None = None
) -> tuple[torch.nn.Module, float, int, torch.Tensor]:
    """Fit a candidate and return (the last model, fit seconds, epochs, its outputs on the scored rows)."""
    if splits is None:
        model, seconds, epochs = fit_candidate(cspec, _stopping_apart(cspec, data), progress=progress)
        return model, seconds, epochs, _predict(model, data.validation.inputs)
    out: torch.Tensor | None = None
    seconds, epochs = 0.0, 0
    scored: list[torch.Tensor] = []
    for train_idx, held_idx in splits:  # each fold's model stops early on part of its own training rows, as above
        fold = dataclasses.replace(data, train=_take(pool, train_idx), validation=_take(pool, held_idx))
        model, s, e = fit_candidate(cspec, _stopping_apart(cspec, fold), progress=progress)
        held = _predict(model, fold.validation.inputs)
        if out is None:
            out = torch.empty((len(pool), *held.shape[1:]), dtype=held.dtype)
        out[held_idx] = held
        seconds, epochs = seconds + s, epochs + e
        if after_fold is not None:
            scored.append(held_idx)
            done = torch.cat(scored)
            after_fold(len(scored) - 1, out[done], pool.target[done])
    return model, seconds, epochs, out


# The share of the training rows a trained candidate stops early on during the choice.
_STOP_SHARE = 0.15


def _stopping_apart(cspec: TaskSpec, data: Any) -> Any:
    """The data a trained candidate is fitted on during the choice: it stops early on a seeded
    15 % of the training rows (stratified by class), not on the validation split that ranks it.

    Why: early stopping keeps the epoch with the best validation loss, so a network's validation
    score was chosen on those very rows and is optimistic, the more so the noisier the network
    from epoch to epoch, while a fitted baseline never sees them. On the benchmark tables
    (bench/auto.py) the FT-Transformer won on validation and lost on test that way. The chosen
    kind is then trained as an ordinary run, stopping on the validation split as usual. A fitted
    baseline, or a spec without early stopping, takes the training split as it is.
    """
    target = data.train.target
    n = len(target)
    if cspec.model.kind in FITTED_KINDS or cspec.train.early_stopping is None or n < 20:
        return data
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cspec.train.seed + 1))
    if target.dim() == 1 and not torch.is_floating_point(target):  # classes: the same share of each
        by_class = [order[target[order] == c] for c in target.unique()]
        stop_idx = torch.cat([rows[: int(len(rows) * _STOP_SHARE)] for rows in by_class])
    else:
        stop_idx = order[: max(1, int(n * _STOP_SHARE))]
    if len(stop_idx) == 0:
        return data
    keep = torch.ones(n, dtype=torch.bool)
    keep[stop_idx] = False
    return dataclasses.replace(data, train=_take(data.train, keep.nonzero().squeeze(1)), validation=_take(data.train, stop_idx))


def _with_ties(rows: list[dict[str, Any]], metric: str, n: int) -> list[dict[str, Any]]:
    """Rows ranked by the validation metric, where accuracies within one standard error of the best
    count as tied and the validation log loss orders them.

    Why: on a small validation split accuracy moves in steps of 1/n (30 rows: 3.3 points), so one
    row can decide between candidates the split cannot tell apart; the log loss, a proper scoring
    rule, reads every row's probability and is the steadier judge among those. The standard error
    is sqrt(p(1 - p) / n) at the best accuracy p (0 when p is 1: then only equal scores tie).
    """
    if not rows or metric != "accuracy" or "val_log_loss" not in rows[0]:
        return rows
    best = rows[0]["val_accuracy"]
    se = math.sqrt(best * (1 - best) / max(n, 1))
    tied = [r for r in rows if r["val_accuracy"] >= best - se - 1e-12]
    for r in tied:
        r["tied_within_se"] = len(tied) > 1
    rest = [r for r in rows if r not in tied]
    return sorted(tied, key=lambda r: r["val_log_loss"]) + rest


def _ensemble_row(spec: TaskSpec, data: Any, top: list[dict[str, Any]], outputs: dict[str, torch.Tensor], metric: str) -> dict[str, Any]:
    """The validation score of the best few averaged (probabilities, or values), weighted by their validation score."""
    task = task_of(spec)
    scores = np.array([r[f"val_{metric}"] for r in top], dtype=np.float64)
    weights = scores if task.higher_is_better(metric) else 1.0 / np.maximum(scores, 1e-12)
    weights = weights / weights.sum()
    if task.probabilities:
        k = len(data.schema.classes)
        proba = sum(w * outputs_to_proba(outputs[r["kind"]], k) for w, r in zip(weights, top))
        out = torch.log(torch.as_tensor(np.clip(proba, 1e-12, 1.0), dtype=torch.float32))
        if out.shape[1] == 2 and outputs[top[0]["kind"]].shape[1] == 1:  # binary cross-entropy: one logit
            out = (out[:, 1] - out[:, 0])[:, None]
    else:
        out = sum(float(w) * outputs[r["kind"]] for w, r in zip(weights, top))
    value, tie, logged = _score(spec, data, out)
    return {
        "kind": "ensemble(" + "+".join(r["kind"] for r in top) + ")",
        "baseline": False,
        "ensemble": True,
        "weights": {r["kind"]: round(float(w), 4) for w, r in zip(weights, top)},
        f"val_{metric}": logged[metric],
        **({"val_log_loss": logged["log_loss"]} if "log_loss" in logged else {}),
        "fit_seconds": round(sum(r["fit_seconds"] for r in top), 4),
        "latency_ms": round(sum(r["latency_ms"] for r in top), 4),
        "packaged": False,
        "_rank": (value, tie),
    }


def _ensemble_short(ensemble: int, fitted: int) -> str:
    """A sentence when `model.ensemble` asks for more candidates than were fitted (default candidates
    for this input, or some skipped for time or data), else ""."""
    if ensemble < 2 or fitted >= ensemble:
        return ""
    made = f"the ensemble is of those {fitted}" if fitted >= 2 else "no ensemble was scored"
    return f" model.ensemble is {ensemble}, and {fitted} candidate{'' if fitted == 1 else 's'} could be fitted: {made}."


def _verdict(best: dict[str, Any], chosen: dict[str, Any], ranked: list[dict[str, Any]], metric: str) -> str:
    key = f"val_{metric}"
    runner_up = next((r for r in ranked if key in r and r is not best and not r.get("ensemble")), None)
    if runner_up is not None and best.get("tied_within_se") and runner_up.get("tied_within_se"):  # the log loss decided
        # Say what decided: the winner may have the lower accuracy of the two (a probe read
        # "tabm is best (0.8417; linear (0.8667) ...)" as a contradiction).
        line = (
            f"{best['kind']} is chosen on the validation split ({metric} {best[key]:.4f}; {runner_up['kind']} has "
            f"{runner_up[key]:.4f}, within one standard error of the best {metric}, so the validation log loss decides: "
            f"{best['val_log_loss']:.4f} against {runner_up['val_log_loss']:.4f})"
        )
    else:
        line = f"{best['kind']} is best on the validation split ({metric} {best[key]:.4f})"
    top = ranked[0]
    if top.get("ensemble") and chosen is top:
        return line + (
            f"; the ensemble {top['kind']} scored {top[key]:.4f} there, better still, and it is the packaged model "
            "(model.kind ensemble: each member trained again, the weighted mean of their predictions)."
        )
    if top.get("ensemble"):
        line += f"; the ensemble {top['kind']} scored {top[key]:.4f} there but is not packaged (a baseline cannot be an ensemble's member)"
    if best["kind"] == chosen["kind"]:
        if best["baseline"]:
            return line + f": a {_label(best['kind'])} beat every network on validation, and it is the packaged model."
        return line + ", and it is the packaged model."
    return (
        line + f": a {_label(best['kind'])} beat every network on validation. The package holds the best network, "
        f"{chosen['kind']} ({metric} {chosen[key]:.4f}); set model.register_baseline: true to package the {_label(best['kind'])} instead."
    )


def _label(kind: str) -> str:
    return {"linear": "linear baseline", "hist_gradient_boosting": "gradient-boosted baseline"}.get(kind, kind)


def auto_spec(spec: TaskSpec | Mapping[str, Any] | Any, preset: str | None) -> TaskSpec:
    """The spec with `--preset` applied: `model.kind: auto` with that preset (a spec that is auto already keeps its other fields)."""
    spec = load_spec(spec)
    if preset is None:
        return spec
    raw = spec.model_dump(mode="json")
    model = raw["model"] if raw["model"]["kind"] == "auto" else {"kind": "auto"}
    raw["model"] = {**model, "preset": preset}
    if raw["data"]["split"]["validation"] == 0:
        raise SpecError("data.split.validation must be > 0 for --preset (candidates are chosen on the validation split); got 0")
    return load_spec(raw)


def run_auto(
    spec: TaskSpec | Mapping[str, Any] | Any,
    *,
    settings: Any = None,
    progress: bool = True,
    register: bool = True,
    threads: int | None = None,
) -> Any:
    """Choose the model of a `model.kind: auto` spec on validation, then train it as a run.

    Returns:
        The `pipeline.RunResult` of the chosen spec; its metrics hold `model_choice` (the leaderboard).

    Raises:
        TrustForgeError: as `pipeline.run`, and SpecError when no candidate can be fitted.
    """
    from trustforge.pipeline import run
    from trustforge.secure import Keyring
    from trustforge.settings import Settings
    from trustforge.train import apply_threads, restores_threads

    spec = load_spec(spec)
    candidates_for(spec)  # named candidates that do not suit the input: refused before the data is read
    settings = settings or Settings.from_env()
    # The chosen spec differs from this one only in its model section (and epochs), which
    # preparing never reads: the data prepared for the choice is the run's too (`prepare_key`).
    key = masking_key(Keyring.load_or_init(settings.keys_dir, kek_b64=settings.kek)) if needs_masking_key(spec.data.protect.pii) else None
    data = prepare(spec, cache_dir=settings.cache_dir, key=key)

    @restores_threads
    def select() -> dict[str, Any]:
        # Table candidates are small networks: one thread unless asked (train.choose_threads' rule for them).
        apply_threads(spec.train.threads if threads is None else threads, torch.nn.Module(), from_env=settings.threads_from_env)
        return choose(spec, data, progress=False)

    selection = select()
    raw = spec.model_dump(mode="json")
    # An ensemble's run takes its first member's training settings; each member sets its own epochs and stopping.
    chosen_kind = selection["chosen_model"]["members"][0]["model"]["kind"] if selection["chosen_model"]["kind"] == "ensemble" else None
    chosen = next(c for c in candidates_for(spec) if c.kind == (chosen_kind or selection["chosen"]))
    final = candidate_spec(spec, chosen).model_dump(mode="json")
    final["model"] = selection["chosen_model"]
    final["name"] = raw["name"]
    selection = {k: v for k, v in selection.items() if k != "chosen_model"}
    selection["auto_spec"] = raw["model"]
    return run(final, settings=settings, progress=progress, register=register, threads=threads, selection=selection, prepared=data)
