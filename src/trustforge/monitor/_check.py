"""The offline drift check: a file of inputs against a model's training statistics, window by window.

`check_drift` is what `trustforge monitor` runs: it resolves the model (a registry URI through
the given registry, whose audit log then gets one entry per window with drift, or a package
folder), reads the file as the model reads its inputs, feeds it through a `DriftMonitor` in
tumbling windows (a last, shorter window of at least `MIN_WINDOW_ROWS` rows too) and returns
every window's result with the figures a summary needs. The caller prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from trustforge.errors import DataError, ModelError
from trustforge.monitor._history import DriftHistory, history_dir
from trustforge.monitor._monitor import MIN_WINDOW_ROWS, DriftMonitor, WindowResult
from trustforge.monitor._reference import supports

if TYPE_CHECKING:
    from trustforge.package import Model
    from trustforge.registry import Registry

__all__ = ["DriftCheck", "check_drift", "explain"]


@dataclass(frozen=True)
class DriftCheck:
    """The outcome of `check_drift`.

    Attributes:
        model: how the model was named (the registry URI of the version, or the folder).
        windows: every tested window, in order (the last one may be partial).
        window: rows per full window.
        rule: the tests that decide a window, in words (e.g. "ks for numeric, chi2 for
            categorical features, Bonferroni over 9 tests per window").
        explanation: what decides a window and what the PSI and Wasserstein figures mean at
            this window size, one sentence per line (what `trustforge monitor` prints).
        ignored: the columns of the file the model does not take, left out (as `predict` and
            the server ignore them).
        untested: the last rows of the file, fewer than `MIN_WINDOW_ROWS` after the last full
            window, that no window tested.
    """

    model: str
    windows: list[WindowResult]
    window: int
    rule: str
    explanation: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    untested: int = 0

    @property
    def drifted(self) -> list[WindowResult]:
        """The windows with drift."""
        return [w for w in self.windows if w.drift]

    @property
    def drift(self) -> bool:
        """Whether any window drifted."""
        return any(w.drift for w in self.windows)

    def counts(self) -> dict[str, int]:
        """Feature (or `prediction`) → in how many windows it drifted; most often first."""
        counts: dict[str, int] = {}
        for w in self.drifted:
            for name in w.drifted:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def check_drift(
    source: "str | Path | Model",
    data: Any,
    *,
    registry: "Registry | None" = None,
    public_key: str | Path | None = None,
    window: int | None = None,
    logger: logging.Logger | None = None,
) -> DriftCheck:
    """Test the inputs in `data` (and the model's predictions for them) for drift, window by window.

    Args:
        source: a registry URI (`models:/NAME/3`, `models:/NAME@alias`; needs `registry`), a
            package folder, or a loaded `Model`.
        data: what `Model.read_input` reads: a CSV/Parquet file, an image folder, ...
        registry: the registry a URI is resolved and loaded through; each window with drift is
            one entry in its audit log, acted by its principal, and every tested window is
            appended to the model's drift history in the registry's workspace (`_history`).
        public_key: PEM public key of the workspace that signed a package folder made elsewhere.
        window: rows per window (default: the package spec's `monitor.window`).
        logger: where the monitor's one warning line per drifted window goes (default
            `trustforge.monitor`).

    Raises:
        ModelError: the package has no drift reference statistics, its inputs are of a kind drift
            is not monitored for (series, interactions), or a URI came without a registry.
        DataError: the data cannot be read as the model's inputs, or has fewer rows than a window needs.
        TrustForgeError: the model cannot be resolved, verified or loaded.
    """
    from trustforge.package import Model

    audit, actor, history = None, "monitor", None
    if isinstance(source, Model):
        model, name = source, f"models:/{source.name}"
    elif str(source).startswith("models:/"):
        if registry is None:
            raise ModelError(f"{source}: a registry URI needs a registry to resolve it")
        version = registry.get(str(source))
        model, name = registry.load_model(version.uri), version.uri
        audit, actor = registry.audit, registry.principal.name
        history = DriftHistory(history_dir(registry.settings.home), version.name, model=version.uri, source="monitor")
    else:
        model, name = Model.load(source, public_key=public_key), str(source)
    record = history.record if history is not None else None
    mon = DriftMonitor.for_model(model, audit=audit, actor=actor, uri=name, window=window, history=None, logger=logger, record=record)
    reference = (model.manifest.get("monitor") or {}).get("reference")
    if mon is None and isinstance(reference, dict) and not supports(str(reference.get("modality"))):
        raise ModelError(  # retraining cannot help: this version has no drift statistics for these inputs
            f"{source}: drift is not monitored for {reference.get('modality')} inputs: this version of trustforge "
            "computes no drift statistics for them (nor for this task's predictions), so retraining will not add any"
        )
    if mon is None:
        raise ModelError(
            f"{source}: the package has no drift reference statistics (trained before monitoring "
            "existed, with monitor.reference: false, or for inputs without monitored features); retrain it to add them"
        )
    raw, ignored = model.without_extra_columns(model.read_input(data))
    if len(raw) < MIN_WINDOW_ROWS:
        raise DataError(f"{data}: {len(raw)} rows; a drift window needs at least {MIN_WINDOW_ROWS}")
    windows = mon.observe(raw, model.predict(raw))
    last = mon.flush()
    windows += [last] if last is not None else []
    untested = len(raw) - sum(w.rows for w in windows)
    explanation = explain(windows, mon.config.correction, mon.reference)
    return DriftCheck(name, windows, mon.window, _rule(mon), explanation, [str(c) for c in ignored], untested)


def _rule(mon: DriftMonitor) -> str:
    cfg = mon.config
    return f"{cfg.numeric_test} for numeric, {cfg.categorical_test} for categorical features" + (
        f", Bonferroni over {len(mon.monitored)} tests per window and a missing-share test per numeric feature with missing values"
        if cfg.correction == "bonferroni"
        else ""
    )


_TESTS = {"ks": "KS", "chi2": "chi-square", "psi": "PSI", "wasserstein": "Wasserstein", "missing": "all-missing"}
_FIGURES = {"psi": "PSI", "wasserstein": "Wasserstein"}


def _g(x: float) -> str:
    return f"{x:.2g}" if x < 0.01 else f"{x:.2f}"


def explain(windows: list[WindowResult], correction: str = "bonferroni", reference: Mapping[str, Any] | None = None) -> list[str]:
    """What decides these windows and what their PSI and Wasserstein figures mean, in sentences.

    Read from the first window (the full windows share their thresholds; a last, partial one
    has higher no-drift levels, being shorter). With the `reference`, also what the
    prediction is compared with when that is not a validation split.
    """
    if not windows:
        return []
    w = windows[0]
    named: list[tuple[str, Mapping[str, Any]]] = list(w.features.items())
    if w.prediction is not None:
        named.append(("the predicted value", w.prediction))
    by_test: dict[str, list[str]] = {}
    for name, r in named:
        if r.get("decided_by") is not None:
            what = "the prediction" if name == "the predicted value" else f"{r['kind']} features"
            by_test.setdefault(r["decided_by"], [])
            if what not in by_test[r["decided_by"]]:
                by_test[r["decided_by"]].append(what)
    family = sum(len([1 for _, r in named if r.get("decided_by") == t]) for t in by_test)
    missing_tests = sum("missing_test" in r for _, r in named)
    family += missing_tests
    order = list(_TESTS)
    by_test = dict(sorted(by_test.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    parts = [f"{_TESTS.get(t, t)} ({', '.join(whats)})" for t, whats in by_test.items()]
    if missing_tests:
        parts.append(
            f"Fisher's exact test of the missing share against training's ({missing_tests} numeric feature{'s' if missing_tests > 1 else ''} with missing values)"
        )
    lines = []
    if parts:
        levels = sorted({r["level"] for _, r in named if r.get("decided_by") is not None and r.get("level") is not None})
        level = "/".join(_g(x) for x in levels) or "-"
        corrected = (
            f"each at its level {level} / {family} tests (Bonferroni: a window without drift alarms with probability at most {level})"
            if correction == "bonferroni" and family > 1
            else f"each at level {level}"
        )
        effect = [t for t in by_test if t in _FIGURES]
        extra = (
            f"; {' and '.join(_FIGURES[t] for t in effect)} at the larger of the spec's threshold and the no-drift level at {w.rows} rows"
            if effect
            else ""
        )
        lines.append(f"decided by: {'; '.join(parts)}, {corrected}{extra}.")
    else:
        lines.append("decided by: nothing (no feature could be tested).")
    spans = []
    for fig, label in _FIGURES.items():
        figs = [r[fig] for _, r in named if r.get(fig) is not None and r[fig]["role"] == "descriptive"]
        if figs:
            lo, hi = min(f["threshold"] for f in figs), max(f["threshold"] for f in figs)
            spans.append(f"{label} {_g(lo)}" + (f"-{_g(hi)}" if _g(hi) != _g(lo) else "") + f" (spec {_g(figs[0]['limit'])})")
            level = figs[0]["level"]
    if spans:
        lines.append(
            f"{' and '.join(s.split(' ')[0] for s in spans)} are descriptive (they decide nothing); their thresholds at {w.rows} rows "
            f"are the larger of the spec's value and what a window without drift exceeds with probability {_g(level)}: "
            f"{', '.join(spans)}; about 1 figure in {round(1 / level)} is over its threshold by chance."
        )
    source = (reference or {}).get("predictions_from")
    if w.prediction is not None and source == "train":
        lines.append(
            "The prediction is compared with the model's predictions on its own training rows (the run had no validation "
            "split): optimistic, as a model fits its training rows better than new ones."
        )
    elif w.prediction is not None and reference is not None and source is None:
        lines.append(
            "The prediction is compared with predictions on the validation and test splits (a package made before the reference recorded `predictions_from`)."
        )
    return lines
