"""Benchmark: what explanations add to a 1,000-sample evaluation of the digits CNN.

What it measures
    The digits CNN of examples/digits_cnn.yaml (GELU, average pooling: a smooth network, so
    Gauss-Legendre integration with 50 steps already meets the gap; trained once, not timed). The evaluation set is the 1,797 digits images' first 1,000, encoded with the run's
    preprocessor. Times (time.perf_counter, medians over --repeats after one warm-up):

    * plain      - forward over the 1,000 images + `compute_metrics` (the full test metric set).
    * pipeline   - plain + what the pipeline explains: `explain_images` on `per_class` (2)
                   examples of each of the 10 classes (20 images: integrated gradients with the
                   adaptive steps that keep the completeness gap < 1e-3, and saliency maps).
                   This is what the report shows: a per-class sample, not all 1,000 images.
    * fixed50    - plain + `explain_images` on the same 20 with a fixed 50 steps (tolerance off:
                   on this smooth network the same as the pipeline's first pass).
    * all1000    - plain + saliency on all 1,000 and integrated gradients on all 1,000 at a
                   fixed 50 steps (what "explain the whole evaluation" would cost).

    The printout gives each median, the added time over plain as a ratio, and the target:
    explanations add less than 3× the plain evaluation time (ratio (X - plain) / plain < 3).

How to run
    .venv/bin/python bench/explain_cost.py [--repeats N] [--threads T]
    On an idle machine; another busy process makes torch's threads wait for each other.
    The exit status is 0 whatever the result (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch
from captum.attr import IntegratedGradients, Saliency

import trustforge
from trustforge.evaluate import compute_metrics, outputs_to_proba
from trustforge.evaluate._explain import explain_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor")

    with tempfile.TemporaryDirectory() as home:
        os.environ["TRUSTFORGE_HOME"] = home
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        spec = trustforge.load_spec(os.path.join(root, "examples", "digits_cnn.yaml"))
        spec.evaluate.explain = spec.evaluate.corruptions = spec.evaluate.speed = False  # timed below instead
        r = trustforge.run(spec, progress=False, register=False)
        model = r.load_model()
        raw = trustforge.data.load_data(r.spec)
    module = model.module.eval()
    x = model.preprocessor.encode_images(raw.images[:1000]).float()  # (1000, 1, 8, 8)
    classes = list(model.schema.classes)
    y = torch.tensor([classes.index(str(v)) for v in raw.labels[:1000]])

    def plain():
        with torch.no_grad():
            out = module(x)
        return compute_metrics("classification", y.numpy(), proba=outputs_to_proba(out, len(classes)), classes=classes)

    info = {}

    def pipeline():
        plain()
        part, _ = explain_images(module, x, y, seed=0)
        info["pipeline"] = part

    def fixed50():
        plain()
        part, _ = explain_images(module, x, y, seed=0, tolerance=None)
        info["fixed50"] = part

    def all1000():
        plain()
        with torch.no_grad():
            pred = module(x).argmax(1)
        Saliency(module).attribute(x, target=pred, abs=True).amax(dim=1)
        _, delta = IntegratedGradients(module).attribute(
            x,
            baselines=torch.zeros_like(x),
            target=pred,
            n_steps=50,
            method="gausslegendre",
            internal_batch_size=8192,
            return_convergence_delta=True,
        )
        info["all1000"] = float(delta.abs().max())

    cases = {"plain": plain, "pipeline": pipeline, "fixed50": fixed50, "all1000": all1000}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for k, fn in cases.items():
        fn()  # warm-up
    for _ in range(args.repeats):
        for k, fn in cases.items():  # interleaved, so load drift hits every case alike
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"digits CNN, 1000 images, {args.threads} thread(s), medians of {args.repeats} repeats, accuracy {r.metrics['accuracy']:.3f}")
    print(f"  plain evaluation (forward + metrics):        {med['plain'] * 1e3:8.1f} ms")
    gap_p = info["pipeline"]["completeness_gap"]
    steps = [e["n_steps"] for e in info["pipeline"]["examples"]]
    rows = [
        (
            "pipeline",
            f"explain_images, 2 per class = 20 images, adaptive steps (median {int(np.median(steps))}, max {max(steps)}), gap {gap_p:.1e}",
        ),
        ("fixed50", f"explain_images, 20 images, fixed 50 steps, gap {info['fixed50']['completeness_gap']:.1e}"),
        ("all1000", f"IG (50 steps) + saliency on all 1000 images, gap {info['all1000']:.1e}"),
    ]
    for k, what in rows:
        added = (med[k] - med["plain"]) / med["plain"]
        verdict = "OK" if added < 3 else "FAIL"
        print(f"  + {what}: {med[k] * 1e3:8.1f} ms; added {added:6.2f}x plain (target < 3x) {verdict}")
    added = (med["pipeline"] - med["plain"]) / med["plain"]
    print("explained: a per-class sample of 20 images (what the report shows), not all 1000; all 1000 measured above")
    print(f"ratio added/plain (pipeline explanations): {added:.2f} (target < 3x)")


if __name__ == "__main__":
    main()
