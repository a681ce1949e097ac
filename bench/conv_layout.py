"""Benchmark: TrustForge's convolution models with channels-last activations against the default layout.

What it measures
    For each conv model of the examples, the milliseconds of one training step (forward,
    cross-entropy, backward, AdamW step) and of one prediction (`torch.no_grad()`), on a
    random batch, two ways in the same process:

    * default  - the layers called in turn on the default (B, C, H, W) layout, as `nn.Sequential` does;
    * channels - `trustforge.models._layers.run_channels_last`, what the models run on the CPU.

    The two run alternately, rounds after one warm-up round, and the script prints the median
    times and the ratio default / channels (above 1: channels-last is faster). Both sides
    compute the same values; the script checks that the predictions agree to 1e-4.

How to run
    .venv/bin/python bench/conv_layout.py [--rounds N] [--threads T] [--batch B]

    About 40 s on 2 idle cores. The exit status is 0: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from trustforge.models._layers import run_channels_last
from trustforge.models.audio import AudioCNN
from trustforge.models.cnn import CNN
from trustforge.models.conv_encoder import ConvEncoder

# (name, model factory, input shape, the Sequential the forward runs): each as in its example.
CASES = {
    "shapes_cnn": (
        lambda: CNN((3, 32, 32), 10, channels=[32, 64, 128], batch_norm=True, global_pool=True, hidden=[128], dropout=0.1),
        (3, 32, 32),
    ),
    "classic_cifar_cnn": (lambda: CNN((3, 32, 32), 10, channels=[32, 64], padding=1, hidden=[128]), (3, 32, 32)),
    "digits_cnn": (lambda: CNN((1, 8, 8), 10, channels=[32, 64], hidden=[64]), (1, 8, 8)),
    "image column (ConvEncoder)": (lambda: nn.Sequential(ConvEncoder(3), nn.Linear(32, 10)), (3, 32, 32)),
    "audio column (ConvEncoder)": (lambda: nn.Sequential(ConvEncoder(1), nn.Linear(32, 10)), (1, 40, 51)),
    "speech_digits (AudioCNN, not converted)": (lambda: AudioCNN((1, 40, 51), 10, channels=[16, 32, 64]), (1, 40, 51)),
}


def _sequentials(model: nn.Module) -> list[nn.Sequential]:
    return [m for m in model.modules() if isinstance(m, nn.Sequential) and any(isinstance(c, nn.Conv2d) for c in m)]


def _as_default(model: nn.Module) -> None:
    """Make each conv Sequential's channels-last forward the plain one, for the `default` side."""
    for seq in _sequentials(model):
        seq._plain = True


def _patch() -> None:
    """`run_channels_last` as the models call it, but plain for a Sequential marked `_plain`."""
    import trustforge.models._layers as layers
    import trustforge.models.cnn as cnn
    import trustforge.models.conv_encoder as enc

    def run(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        return seq(x) if getattr(seq, "_plain", False) else run_channels_last(seq, x)

    layers.run_channels_last = cnn.run_channels_last = enc.run_channels_last = run


def _time(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, steps: int) -> tuple[float, float]:
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    train = (time.perf_counter() - start) / steps * 1e3
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        predict = (time.perf_counter() - start) / steps * 1e3
    return train, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _patch()
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, median of {args.rounds} rounds")
    print(f"{'model':42s} {'train ms':>18s} {'ratio':>6s} {'predict ms':>18s} {'ratio':>6s}")
    for name, (make, shape) in CASES.items():
        torch.manual_seed(0)
        x, y = torch.randn(args.batch, *shape), torch.randint(0, 10, (args.batch,))
        models = {}
        for side in ("default", "channels"):
            torch.manual_seed(0)
            model = make()
            if side == "default":
                _as_default(model)
            models[side] = (model, torch.optim.AdamW(model.parameters(), 1e-3))
        with torch.no_grad():
            a, b = (m.eval()(x) for m, _ in models.values())
        assert torch.allclose(a, b, atol=1e-4), f"{name}: the two layouts disagree"
        times: dict[str, list[tuple[float, float]]] = {"default": [], "channels": []}
        for r in range(args.rounds + 1):
            for side, (model, opt) in models.items():
                t = _time(model, x, y, opt, args.steps)
                if r:
                    times[side].append(t)
        med = {s: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for s, v in times.items()}
        d, c = med["default"], med["channels"]
        print(f"{name:42s} {d[0]:8.1f} → {c[0]:7.1f} {d[0] / c[0]:5.2f}× {d[1]:8.1f} → {c[1]:7.1f} {d[1] / c[1]:5.2f}×")


if __name__ == "__main__":
    main()
