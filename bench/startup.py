"""Benchmark: how long TrustForge's commands take from launch to exit, as a user waits for them.

What it measures
    Whole-process runs of the installed command line (`python -m trustforge.cli ...`, the same
    entry point as the `trustforge` script), timed with time.perf_counter around
    `subprocess.run`, repeated, summarised by the median:

    * `trustforge train examples/breast_cancer_mlp.yaml -q` in a fresh workspace per run: launch
      to exit, against the run's own fit time (`fit_seconds` in its metrics.json). Target:
      launch to exit < 3 x fit + 5 s (the issue measured 88-140 s against a 1.3 s fit).
    * `trustforge package verify PACKAGE` on the package that training wrote (signature, every
      file's digest, the manifest). Target: < 1 s (the issue measured 15 s; it imported torch).
    * `trustforge --help` (and `--version` where the command has it), for the floor every
      command pays: the interpreter, Typer and the command line itself.

    Baselines measured in the same run: `python -c pass` (the interpreter's own start) and
    `python -c "import torch"` (what any command that touches a model pays at least), so the
    figures can be read against what no TrustForge change can remove.

    Each figure is printed with the 1-minute load average seen before its runs and the number
    of cores; a figure taken with the load above the cores is marked "(loaded)" and is slower
    than the command is: run the benchmark on an idle machine. Beside each wall time is the
    command's CPU time (user + system, from getrusage of the children), which a loaded machine
    inflates much less and so tells roughly what the command costs on an idle one.

How to run
    .venv/bin/python bench/startup.py [--runs N] [--train-runs M] [--threads T]

    Defaults: 5 runs of each short command, 3 trainings. Takes about a minute on an idle
    2-core machine. The exit status is 0 whatever the result: this is a benchmark, not a test.
    It prints OK or FAIL against each target; its last lines are the two ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "breast_cancer_mlp.yaml"


def _env(home: Path, threads: int | None) -> dict[str, str]:
    """The commands' environment: their own workspace; OMP_NUM_THREADS only when asked for, so
    by default each run makes its own choice of threads (`train.threads`), as a user's would."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(TRUSTFORGE_HOME=str(home), PYTHONPATH=str(ROOT / "src"))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one whole-process run (its CPU seconds are appended to `CPU`)."""
    cpu0 = _cpu_of_children()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - t0
    CPU.append(_cpu_of_children() - cpu0)
    return wall, done


# CPU seconds (user + system) of each run, in order. On a loaded machine the wall time waits for
# the other processes; the CPU time is close to what the command takes on an idle one.
CPU: list[float] = []


def _load() -> str:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return f"load {load:.2f} on {cores} cores" + (" (loaded)" if load > cores else "")


def _median_of(label: str, args: list[str], env: dict[str, str], runs: int, ok_codes: tuple[int, ...] = (0,)) -> float | None:
    load = _load()
    times = []
    first = len(CPU)
    for _ in range(runs):
        seconds, done = _timed(args, env)
        if done.returncode not in ok_codes:
            print(f"{label:<34} exit {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}")
            return None
        times.append(seconds)
    med = statistics.median(times)
    cpu = statistics.median(CPU[first:])
    print(f"{label:<34} median {med:6.3f} s, cpu {cpu:6.3f} s  (wall min {min(times):.3f}, max {max(times):.3f}, {runs} runs; {load})")
    return med


def _ready_median(workers: int, env: dict[str, str], runs: int) -> float | None:
    """Median seconds from `trustforge serve models:/breast-cancer-mlp/1 --workers W` to its first
    200 from /v2/health/ready (polled every 20 ms); each server is then stopped with SIGINT."""
    import signal
    import socket
    import urllib.request

    load, times = _load(), []
    for i in range(runs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ["-m", "trustforge.cli", "serve", "models:/breast-cancer-mlp/1", "--port", str(port), "--workers", str(workers)]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            while proc.poll() is None and time.perf_counter() - t0 < 300:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                        if r.status == 200:
                            times.append(time.perf_counter() - t0)
                            break
                except OSError:
                    time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        if len(times) <= i:
            print(f"serve --workers {workers}: not ready (exit {proc.returncode}): {err.strip()[-300:]}")
            return None
        time.sleep(1)  # the stopped server's workers are gone before the next one starts
    med = statistics.median(times)
    print(
        f"{'serve --workers ' + str(workers) + ' ready':<34} median {med:6.3f} s  (min {min(times):.3f}, max {max(times):.3f}, {runs} runs; {load})"
    )
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each short command")
    parser.add_argument("--train-runs", type=int, default=3, help="trainings of the breast-cancer example")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the commands (default: the run's own choice)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tf-startup-"))
    try:
        env = _env(tmp / "ws", args.threads)
        print(f"python {sys.version.split()[0]}; {_load()}; OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}")
        print("-- baselines")
        _median_of("python -c pass", ["-c", "pass"], env, args.runs)
        torch_s = _median_of('python -c "import torch"', ["-c", "import torch"], env, args.runs)

        print("-- commands")
        _median_of("trustforge --help", ["-m", "trustforge.cli", "--help"], env, args.runs)
        version = subprocess.run([sys.executable, "-m", "trustforge.cli", "--version"], capture_output=True, env=env)
        if version.returncode == 0:
            _median_of("trustforge --version", ["-m", "trustforge.cli", "--version"], env, args.runs)

        trains: list[tuple[float, float]] = []
        package = None
        first = len(CPU)
        load = _load()
        for i in range(args.train_runs):
            home = tmp / f"train-{i}"
            seconds, done = _timed(["-m", "trustforge.cli", "train", str(SPEC), "-q"], _env(home, args.threads))
            if done.returncode != 0:
                print(f"train failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
                return
            run_dir = next((home / "runs").iterdir())
            fit = float(json.loads((run_dir / "metrics.json").read_text())["fit_seconds"])
            trains.append((seconds, fit))
            package = package or run_dir / "package"
        wall = statistics.median(t for t, _ in trains)
        fit = statistics.median(f for _, f in trains)
        train_cpu = statistics.median(CPU[first:])
        print(
            f"{'trustforge train breast_cancer':<34} median {wall:6.3f} s, cpu {train_cpu:6.3f} s  "
            f"(fit {fit:.3f} s; runs {', '.join(f'{t:.2f}' for t, _ in trains)}; {load})"
        )

        verify_env = _env(tmp / "train-0", args.threads)  # the workspace whose keys signed the package
        verify = _median_of("trustforge package verify", ["-m", "trustforge.cli", "package", "verify", str(package)], verify_env, args.runs)

        print("-- serve: launch to ready (GET /v2/health/ready answers 200), the model registered by the first training")
        ready = {w: _ready_median(w, verify_env, args.runs) for w in (0, 1, 2)}

        print("-- against the targets")
        if torch_s is not None:
            print(f"import torch alone: {torch_s:.3f} s (the floor of any command that loads a model)")
        if verify is not None:
            print(f"{'OK' if verify < 1.0 else 'FAIL'}  package verify: {verify:.3f} s, ratio to the 1 s target {verify / 1.0:.3f}")
        bound = 3 * fit + 5
        print(f"{'OK' if wall < bound else 'FAIL'}  train launch to exit: {wall:.3f} s against 3 x fit {fit:.3f} s + 5 s = {bound:.3f} s")
        print(f"ratio verify / 1 s: {verify / 1.0 if verify is not None else float('nan'):.3f} (target < 1)")
        print(f"ratio train / (3 x fit + 5 s): {wall / bound:.3f} (target < 1)")
        if torch_s is not None:
            for w, r in ready.items():
                if r is not None:
                    print(f"ratio serve --workers {w} ready / import torch: {r / torch_s:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
