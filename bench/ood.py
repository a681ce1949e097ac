"""Out-of-distribution detection on two examples as written: AUROC against foreign inputs, and false alarms.

Trains examples/digits_cnn.yaml and examples/breast_cancer_mlp.yaml (evidence off), then scores
the test split against foreign inputs of the same size (`trustforge.testing.foreign_images`:
uniform noise, drawn shapes, inverted digits; `shifted_rows`: three numeric columns of each row
moved +5 standard deviations). Prints per score and for the detector as served (the largest
score over its threshold): the AUROC, the share of foreign rows flagged at the package's
thresholds, and the false-alarm rate on the test split. Then the guard's cost in serving: calls
per second of `Model.predict_columns` with the detector (`OodDetector.predict_columns`, as the
server's workers run it) over calls without it, in the same process, one row and 32 rows. About
a minute on 2 CPU cores.

    .venv/bin/python bench/ood.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import trustforge  # noqa: E402
from trustforge.data import prepare  # noqa: E402
from trustforge.monitor import OodDetector  # noqa: E402
from trustforge.settings import Settings  # noqa: E402
from trustforge.testing import foreign_images, shifted_rows  # noqa: E402

QUIET = {"speed": False, "corruptions": False, "explain": False}


def _judge(model, detector, source):
    return detector.judge(model.module, model.preprocessor.encode_inputs(model.read_input(source)))


def _energy(model, source) -> np.ndarray:
    import torch

    return (-torch.logsumexp(model.outputs(model.read_input(source)), dim=1)).numpy()


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))], np.r_[inside, outside]))


def measure(example: str, home: Path) -> None:
    spec = yaml.safe_load((ROOT / "examples" / example).read_text())
    spec["evaluate"] = {**spec.get("evaluate", {}), **QUIET}
    result = trustforge.run(spec, settings=Settings.from_env(home), progress=False, register=False)
    model = result.load_model()
    detector = OodDetector.for_model(model)
    entry = model.manifest["monitor"]["ood"]
    data = prepare(model.spec)
    if data.test_raw.images is not None:
        test = data.test_raw.images
        foreign = foreign_images(test, seed=1)
    else:
        test = data.test_raw.frame.drop(columns=[model.schema.target])
        foreign = {"+5 std on 3 columns": shifted_rows(test, data.train_raw.frame, seed=1)}
    inside = _judge(model, detector, test)
    held = entry.get("validation_false_alarms") or entry.get("train_false_alarms")
    print(
        f"{example}: accuracy {result.metrics['accuracy']:.4f}; thresholds from {entry['threshold_from']} "
        f"({held['rows']} rows, {held['flagged'] / held['rows']:.3f} flagged, asked {model.spec.monitor.ood.false_alarm_rate}); "
        f"test split {len(test)} rows, {inside.flagged.mean():.3f} flagged"
    )
    for name, rows in foreign.items():
        outside = _judge(model, detector, rows)
        per = ", ".join(f"{k} {_auroc(inside.scores[k], outside.scores[k]):.4f}" for k in inside.scores)
        if model.task.probabilities:  # the energy score (Liu et al., 2020) for comparison: -logsumexp of the logits
            per += f", energy (not used) {_auroc(_energy(model, test), _energy(model, rows)):.4f}"
        print(f"  {name:>20}: AUROC detector {_auroc(inside.combined, outside.combined):.4f} ({per}); flagged {outside.flagged.mean():.3f}")
    if data.test_raw.images is None:  # a table: what the guard costs a served call
        cost(model, detector, test)


def cost(model, detector, frame) -> None:
    """Calls per second with the guard over calls without it, same process, same rows."""
    import time

    for n in (1, 32):
        cols = {c: frame[c].to_numpy()[:n] for c in frame.columns}
        rates = {}
        for name, call in (("plain", lambda: model.predict_columns(cols)), ("guarded", lambda: detector.predict_columns(model, cols))):
            for _ in range(20):
                call()
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < 1.0:
                call()
                calls += 1
            rates[name] = calls / (time.perf_counter() - start)
        print(
            f"  cost, {n} row(s): {rates['plain']:.0f} plain vs {rates['guarded']:.0f} guarded calls/s: x{rates['guarded'] / rates['plain']:.2f}"
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for example in ("digits_cnn.yaml", "breast_cancer_mlp.yaml"):
            measure(example, Path(tmp) / example)


if __name__ == "__main__":
    main()
