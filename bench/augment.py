"""Augmentation on the examples: test accuracy with and without it, same seed and split.

Each example is trained as written and again with every augmentation switched off
(`data.augment: {}`, and `data.audio.augment.copies: 0` for speech), in the same process, and
the change in test accuracy is printed. The variants in EXTRA add operations to an example
(`--only-extra` runs only those, `--no-extra` none). The rest of the evidence is skipped: test
accuracy is scored before it. Slow: about 25 minutes on 2 loaded CPU cores, most of it shapes.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/augment.py          # every row
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/augment.py speech   # rows whose names start with this
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import trustforge  # noqa: E402


def off(spec: dict) -> dict:
    """The spec with every augmentation switched off."""
    s = copy.deepcopy(spec)
    s["data"]["augment"] = {}
    if "audio" in s["data"]:
        s["data"]["audio"]["augment"] = {"copies": 0}
    return s


def with_augment(spec: dict, **fields: object) -> dict:
    s = copy.deepcopy(spec)
    s["data"].setdefault("augment", {}).update(fields)
    return s


ROWS = {
    "shapes": "shapes_cnn.yaml",
    "speech": "speech_digits.yaml",
    "breast": "breast_cancer_mlp.yaml",  # no augmentation as written: the table operations as extras
    "sentiment": "sentiment_text.yaml",  # and the text operations
}

# Extra variants measured beside "as written" and "off": {row: {label: data.augment fields added}}.
EXTRA: dict[str, dict[str, dict]] = {
    "shapes": {"+rotate 10, crop 0.9, cutout 8": {"rotate": 10, "crop": 0.9, "cutout": 8}},
    "speech": {"+SpecAugment (freq 6, time 8)": {"freq_mask": 6, "time_mask": 8}},
    "breast": {"+noise 0.1": {"noise": 0.1}, "+mixup 0.2": {"mixup": 0.2}},
    "sentiment": {"+delete 0.1, swap 0.05": {"delete": 0.1, "swap": 0.05}, "+replace 0.1": {"replace": 0.1}},
}


# Test accuracy is scored before the rest of the evidence, which these runs skip to save time.
QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False, "privacy_audit": False}


def accuracy(spec: dict, home: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    spec = {**spec, "evaluate": {**spec.get("evaluate", {}), **QUIET}}
    os.environ["TRUSTFORGE_HOME"] = str(home)
    result = trustforge.run(spec, register=False, progress=False)
    return float(result.metrics["accuracy"]), time.perf_counter() - t0


def main(argv: list[str]) -> int:
    words = [a for a in argv if not a.startswith("-")]
    extras = "--no-extra" not in argv
    home = Path(tempfile.mkdtemp(prefix="tf-augment-bench-"))
    out = {}
    for row, example in ROWS.items():
        if words and not any(row.startswith(w) for w in words):
            continue
        spec = yaml.safe_load((ROOT / "examples" / example).read_text(encoding="utf-8"))
        variants = {} if "--only-extra" in argv else {"as written": spec, "off": off(spec)}
        if extras:
            variants.update({label: with_augment(spec, **f) for label, f in EXTRA.get(row, {}).items()})
        figures = {}
        for label, s in variants.items():
            acc, secs = accuracy(s, home)
            figures[label] = acc
            print(f"{example:22s} {label:34s} accuracy {acc:.4f}  ({secs:.0f} s)", flush=True)
        if "off" in figures:
            gain = figures["as written"] - figures["off"]
            print(f"{example:22s} {'augmentation raised accuracy by':34s} {gain:+.4f}", flush=True)
        out[example] = figures
    print(json.dumps(out, indent=1))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
