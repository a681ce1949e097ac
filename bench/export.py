"""Benchmark: eager PyTorch against the `trustforge package export` artefacts, batch 1 and 256.

What it measures
    For the breast-cancer MLP (examples/breast_cancer_mlp.yaml) and the digits CNN
    (examples/digits_cnn.yaml), trained here as written (seed 7; the slow evaluation extras
    off, which do not change the model), the network's forward pass on the test split's rows
    (repeated to fill a batch of 256) four ways, in this one process, on one thread each:

    * eager        - the package's torch module under `torch.no_grad()` (the baseline)
    * onnx         - `package export --format onnx` in ONNX Runtime (CPU, 1 intra-op thread)
    * onnx-int8    - `--quantize int8` (ONNX Runtime's dynamic quantisation of MatMul/Gemm)
    * torchscript  - `--format torchscript` (the traced module, loaded from the bytes this
                     run just wrote and verified: TrustForge never loads other TorchScript)

    Each round times every variant in turn (enough calls for ~20 ms each), so load from other
    processes on a shared machine hits all of them alike; the figure is the median of the
    rounds' per-call milliseconds, and the speed-up is eager / variant. Preprocessing (the
    package's scalers) is outside the timing: it is the same for all four.
    It also prints each artefact's test accuracy change against eager (points), which
    `package export` checked and recorded in the artefact's evidence.

How to run
    OMP_NUM_THREADS=1 .venv/bin/python bench/export.py [--rounds N] [--only cancer|digits]

    About 1-2 minutes on 2 idle cores (most of it training the two examples). Exit status 0
    whatever the figures: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import yaml

from trustforge.package import Model, OnnxModule, encode_manifest, export_model, export_path, read_export, split_for_export
from trustforge.pipeline import run
from trustforge.secure import Keyring
from trustforge.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"cancer": "breast_cancer_mlp.yaml", "digits": "digits_cnn.yaml"}
QUIET = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
VARIANTS = [("onnx", None), ("onnx", "int8"), ("torchscript", None)]


def per_call(fn, x, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*x)
    return (time.perf_counter() - t0) / calls


def bench_one(key: str, root: Path, rounds: int) -> dict[tuple[int, str], float]:
    """Train, export and time one example; returns (batch, variant) -> speed-up over eager."""
    settings = Settings.from_env(root / key)
    spec = yaml.safe_load((ROOT / "examples" / EXAMPLES[key]).read_text())
    spec["evaluate"] = {**spec.get("evaluate", {}), **QUIET}
    t0 = time.perf_counter()
    result = run(spec, settings=settings, progress=False, register=False)
    keyring = Keyring.load_or_init(settings.keys_dir)
    model = Model.load(result.package, keyring=keyring)
    raw, note = split_for_export(model, cache_dir=settings.cache_dir)
    digest = hashlib.sha256(encode_manifest(model.manifest)).hexdigest()
    runners, changes = {"eager": model.module}, {"eager": 0.0}
    for fmt, q in VARIANTS:
        label = fmt + ("-" + q if q else "")
        dest = export_path(result.package, fmt, q)
        ev = export_model(model, raw, dest, keyring, fmt=fmt, quantize=q, package_digest=digest, data_note=note, speed=False)
        changes[label] = ev["check"]["accuracy_change_points"]
        _, blob = read_export(dest, keyring, digest)  # verified: what runs is what was signed
        if fmt == "onnx":
            runners[label] = OnnxModule(blob)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runners[label] = torch.jit.load(io.BytesIO(blob)).eval()  # bytes this run wrote and verified
    print(
        f"\n{EXAMPLES[key]}: trained and exported in {time.perf_counter() - t0:.0f} s; test accuracy {result.metrics['accuracy']:.4f} ({note})"
    )
    inputs = tuple(model.preprocessor.encode_inputs(raw))
    torch.set_num_threads(1)
    print(f"{'batch':>5}  {'variant':<12} {'ms/call':>9} {'speed-up':>9} {'accuracy change':>16}")
    speedups = {}
    for b in (1, 256):
        idx = torch.arange(b) % len(inputs[0])
        x = tuple(t[idx] for t in inputs)
        times: dict[str, list[float]] = {k: [] for k in runners}
        with torch.no_grad():
            calls = {}
            for k, fn in runners.items():
                fn(*x)
                calls[k] = int(min(2000, max(1, 0.02 / max(per_call(fn, x, 1), 1e-6))))
            for _ in range(rounds):
                for k, fn in runners.items():
                    times[k].append(per_call(fn, x, calls[k]))
        base = statistics.median(times["eager"])
        for k in runners:
            m = statistics.median(times[k])
            speedups[(b, k)] = base / m
            print(f"{b:>5}  {k:<12} {m * 1e3:>9.4f} {base / m:>8.2f}x {changes[k]:>+15.2f} points")
    return speedups


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--only", choices=sorted(EXAMPLES), default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for key in [args.only] if args.only else ["cancer", "digits"]:
            results[key] = bench_one(key, Path(tmp), args.rounds)
    print()
    for key, s in results.items():
        cells = ", ".join(f"{v} x{s[(1, v)]:.2f} / x{s[(256, v)]:.2f}" for v in ("onnx", "onnx-int8", "torchscript"))
        print(f"ratio eager/variant at batch 1 / 256 ({EXAMPLES[key]}, median of {args.rounds} rounds, 1 thread): {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
