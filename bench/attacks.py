"""Benchmark: TrustForge's FGSM and PGD-20 against ART's on the same work.

What it measures
    The digits CNN of examples/digits_cnn.yaml (trained once with the pipeline, not timed) and
    its 359 test images, L∞ ε 0.1 (a fraction of the pixel range), PGD with 20 steps of ε/4
    from no random start: the issue 14 reference setting. Both sides attack the same network
    with the same standardisation (ART: `PyTorchClassifier(clip_values=(0, 1),
    preprocessing=(mean, std))` on pixels; ours: `trustforge.models.fgsm` / `pgd` on the
    encoded inputs within the image kind's attack space), on one thread.

    Each side runs once to warm up, then --repeats times; the printout gives the median
    samples per second of each, the ratio ours / ART (target: >= 1) and both accuracies (they
    must agree: the same attack).

How to run
    .venv/bin/python bench/attacks.py [--repeats N]
    On an idle machine: another busy process slows whichever side it overlaps.
    The exit status is 0 whatever the result (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
import yaml
from torch import nn

import trustforge
from trustforge.data import input_kind, prepare
from trustforge.models import fgsm, pgd
from trustforge.settings import Settings

EPSILON = 0.1
STEPS = 20


def _median_rate(fn, n: int, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    spec = yaml.safe_load(open("examples/digits_cnn.yaml"))
    spec["evaluate"].update(speed=False, explain=False, corruptions=False, robustness=False)
    with tempfile.TemporaryDirectory() as home:
        result = trustforge.run(spec, progress=False, settings=Settings.from_env(home=home))
        model = result.load_model()
    test = prepare(result.spec).test_raw
    pre, net = model.preprocessor, model.module.eval()
    (encoded,) = pre.encode_inputs(test)
    y = pre.encode_target(test)
    spaces = input_kind(model.schema).attack_spaces(pre)
    mean = pre.input_state.mean.reshape(-1, 1, 1).numpy()
    std = pre.input_state.std.reshape(-1, 1, 1).numpy()
    pixels = (encoded.numpy() * std + mean).astype(np.float32)
    onehot = np.eye(10)[y.numpy()]
    clf = PyTorchClassifier(
        model=net,
        loss=nn.CrossEntropyLoss(),
        input_shape=pixels.shape[1:],
        nb_classes=10,
        clip_values=(0.0, 1.0),
        preprocessing=(mean, std),
    )
    loss = nn.CrossEntropyLoss()
    n = len(y)

    def ours_fgsm():
        return fgsm(net, (encoded,), y, loss, spaces, epsilon=EPSILON)[0]

    def ours_pgd():
        return pgd(net, (encoded,), y, loss, spaces, epsilon=EPSILON, steps=STEPS, step_size=EPSILON / 4)[0]

    art_fgsm = FastGradientMethod(clf, eps=EPSILON, batch_size=n)
    art_pgd = ProjectedGradientDescent(clf, eps=EPSILON, eps_step=EPSILON / 4, max_iter=STEPS, batch_size=n, verbose=False)

    def acc_ours(adv):
        with torch.no_grad():
            return float((net(adv).argmax(1) == y).float().mean())

    def acc_art(adv):
        return float((clf.predict(adv).argmax(1) == y.numpy()).mean())

    print(f"digits CNN, {n} test images, L-inf eps {EPSILON}, one thread, median of {args.repeats}")
    for name, ours, art in (
        ("FGSM", ours_fgsm, lambda: art_fgsm.generate(pixels, y=onehot)),
        (f"PGD-{STEPS}", ours_pgd, lambda: art_pgd.generate(pixels, y=onehot)),
    ):
        r_ours, adv_ours = _median_rate(ours, n, args.repeats)
        r_art, adv_art = _median_rate(art, n, args.repeats)
        print(
            f"{name:7s} ours {r_ours:9.1f} samples/s  ART {r_art:9.1f} samples/s  ratio {r_ours / r_art:5.2f}  "
            f"accuracy ours {acc_ours(adv_ours):.4f} ART {acc_art(adv_art):.4f}"
        )


if __name__ == "__main__":
    main()
