"""model.kind auto: the time `data.prepare` takes within one `run_auto`, and the whole run's time.

`run_auto` on one small table with two fitted candidates (linear, HistGradientBoosting),
unregistered, the slow evidence off, so preparing is a visible part of the run. Every call of
`data.prepare` (from automl or the pipeline) is counted and timed. The first run pays the
imports and is not printed.

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/auto_prepare.py [--table builtin:breast_cancer] [--runs 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import trustforge.automl._auto as auto
import trustforge.data as tdata
import trustforge.pipeline as pipeline
from trustforge.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="builtin:breast_cancer")
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args()
    calls: list[float] = []
    real = tdata.prepare

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = real(*a, **k)
        calls.append(time.perf_counter() - t0)
        return out

    auto.prepare = timed
    pipeline.prepare = timed
    spec = {
        "name": "auto-prepare-bench",
        "data": {"source": args.table},
        "model": {"kind": "auto", "candidates": ["linear", "hist_gradient_boosting"]},
        "train": {"seed": 1},
        "evaluate": {"corruptions": False, "explain": False, "robustness": None},
    }
    for i in range(args.runs):
        calls.clear()
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            result = auto.run_auto(spec, settings=Settings.from_env(Path(d) / "ws"), progress=False, register=False)
            total = time.perf_counter() - t0
        if i:
            row = {"run_s": round(total, 3), "prepare_calls": len(calls), "prepare_s": round(sum(calls), 3)}
            print(json.dumps({**row, "accuracy": result.metrics.get("accuracy")}), flush=True)


if __name__ == "__main__":
    main()
