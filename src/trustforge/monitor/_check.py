"""The offline drift check: a file of inputs against a model's training statistics, window by window.

`check_drift` is what `trustforge monitor` runs: it resolves the model (a registry URI through
the given registry, whose audit log then gets one entry per window with drift, or a package
folder), reads the file as the model reads its inputs, feeds it through a `DriftMonitor` in
tumbling windows (a last, shorter window of at least `MIN_WINDOW_ROWS` rows too) and returns
every window's result with the figures a summary needs. The caller prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustforge.errors import DataError, ModelError
from trustforge.monitor._monitor import MIN_WINDOW_ROWS, DriftMonitor, WindowResult

if TYPE_CHECKING:
    from trustforge.package import Model
    from trustforge.registry import Registry

__all__ = ["DriftCheck", "check_drift"]


@dataclass(frozen=True)
class DriftCheck:
    """The outcome of `check_drift`.

    Attributes:
        model: how the model was named (the registry URI of the version, or the folder).
        windows: every tested window, in order (the last one may be partial).
        window: rows per full window.
        rule: the tests that decide a window, in words (e.g. "ks for numeric, chi2 for
            categorical features, Bonferroni over 9 tests per window").
    """

    model: str
    windows: list[WindowResult]
    window: int
    rule: str

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
            one entry in its audit log, acted by its principal.
        public_key: PEM public key of the workspace that signed a package folder made elsewhere.
        window: rows per window (default: the package spec's `monitor.window`).
        logger: where the monitor's one warning line per drifted window goes (default
            `trustforge.monitor`).

    Raises:
        ModelError: the package has no drift reference statistics, or a URI came without a registry.
        DataError: the data cannot be read as the model's inputs, or has fewer rows than a window needs.
        TrustForgeError: the model cannot be resolved, verified or loaded.
    """
    from trustforge.package import Model

    audit, actor = None, "monitor"
    if isinstance(source, Model):
        model, name = source, f"models:/{source.name}"
    elif str(source).startswith("models:/"):
        if registry is None:
            raise ModelError(f"{source}: a registry URI needs a registry to resolve it")
        version = registry.get(str(source))
        model, name = registry.load_model(version.uri), version.uri
        audit, actor = registry.audit, registry.principal.name
    else:
        model, name = Model.load(source, public_key=public_key), str(source)
    mon = DriftMonitor.for_model(model, audit=audit, actor=actor, uri=name, window=window, history=None, logger=logger)
    if mon is None:
        raise ModelError(
            f"{source}: the package has no drift reference statistics (trained before monitoring "
            "existed, with monitor.reference: false, or for inputs without monitored features); retrain it to add them"
        )
    raw = model.read_input(data)
    if len(raw) < MIN_WINDOW_ROWS:
        raise DataError(f"{data}: {len(raw)} rows; a drift window needs at least {MIN_WINDOW_ROWS}")
    windows = mon.observe(raw, model.predict(raw))
    last = mon.flush()
    windows += [last] if last is not None else []
    return DriftCheck(name, windows, mon.window, _rule(mon))


def _rule(mon: DriftMonitor) -> str:
    cfg = mon.config
    return f"{cfg.numeric_test} for numeric, {cfg.categorical_test} for categorical features" + (
        f", Bonferroni over {len(mon.monitored)} tests per window" if cfg.correction == "bonferroni" else ""
    )
