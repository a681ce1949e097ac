"""Drift monitoring: served inputs and predictions against statistics saved at training time.

Training saves reference statistics in the package (`run_reference`, under the manifest's
`monitor.reference`, so the signature covers them). A `DriftMonitor` built from a loaded
model tests tumbling windows of served rows against them, feature by feature (KS, chi-square,
PSI, Wasserstein; thresholds from the spec's `monitor:` section; each result names the test
that decides it, and PSI and Wasserstein carry the threshold that means something at the
window's size, see `_null`), and raises one log line and one audit entry per window with drift:

    monitor = DriftMonitor.for_model(model, audit=registry.audit)   # None: no reference
    monitor.observe(raw, model.predict(raw))                        # per served batch
    monitor.status(); monitor.scores()

Offline, `check_drift(source, data)` runs a whole file through a monitor and returns every
window (what `trustforge monitor` prints).

Every window tested for a registry model (by `check_drift` or a server) is also appended to the
model's drift history in the workspace (`DriftHistory`; read with `read_drift_history`).

Out-of-distribution detection (`_ood`): `run_ood` fits a detector on a trained network at
training time (saved in the package); `OodDetector.for_model(model)` applies it to served rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustforge._lazy import lazy_names
from trustforge.monitor._history import DriftHistory, drift_history_models, history_dir, read_drift_history
from trustforge.monitor._ood import OOD_FORMAT, OodDetector, OodResult, fit_ood, head_layer, run_ood
from trustforge.monitor._reference import featurize, reference_statistics, run_reference, supports

if TYPE_CHECKING:
    from trustforge.monitor._check import DriftCheck, check_drift, explain
    from trustforge.monitor._detectors import chi2_test, ks_test, psi, psi_categorical, psi_numeric, wasserstein
    from trustforge.monitor._monitor import AUDIT_ACTION, MIN_WINDOW_ROWS, DriftMonitor, WindowResult

# The tests (SciPy) are imported on first use: training only saves the reference statistics,
# and importing scipy.stats costs half a second.
_LAZY = {
    **dict.fromkeys(("DriftCheck", "check_drift", "explain"), "trustforge.monitor._check"),
    **dict.fromkeys(("chi2_test", "ks_test", "psi", "psi_categorical", "psi_numeric", "wasserstein"), "trustforge.monitor._detectors"),
    **dict.fromkeys(("AUDIT_ACTION", "MIN_WINDOW_ROWS", "DriftMonitor", "WindowResult"), "trustforge.monitor._monitor"),
}

__all__ = [
    "check_drift",
    "DriftCheck",
    "explain",
    "DriftMonitor",
    "WindowResult",
    "AUDIT_ACTION",
    "MIN_WINDOW_ROWS",
    "DRIFT_EXIT_CODE",
    "DriftHistory",
    "read_drift_history",
    "drift_history_models",
    "history_dir",
    "reference_statistics",
    "run_reference",
    "featurize",
    "supports",
    "ks_test",
    "chi2_test",
    "psi",
    "psi_numeric",
    "psi_categorical",
    "wasserstein",
    "OodDetector",
    "OodResult",
    "OOD_FORMAT",
    "fit_ood",
    "run_ood",
    "head_layer",
]

# `trustforge monitor` exits with this code when a window drifted (errors use 1-9, 70, 74).
DRIFT_EXIT_CODE = 10


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
