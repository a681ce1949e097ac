"""The generated table of the drift-monitoring tests (a module of its own: `conftest` is ambiguous).

The table mixes the feature kinds a monitor meets: continuous (normal, log-normal, uniform,
gamma), a discrete count (Poisson, many ties), a binary flag and a categorical colour. Fresh
draws from the same generator are held-out data with no shift; `shift=NAME` moves one column
by one standard deviation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["x1", "x2", "x3", "x4", "x5", "k", "flag", "color"]


def make_table(n: int, seed: int, shift: str | None = None) -> pd.DataFrame:
    """`n` rows of the generated table (target `y`); `shift` adds one std to that column."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {
            "x1": rng.normal(0, 1, n),
            "x2": rng.lognormal(0, 0.5, n),
            "x3": rng.uniform(-2, 2, n),
            "x4": rng.gamma(2.0, 1.5, n),
            "x5": rng.normal(10, 3, n),
            "k": rng.poisson(3, n),
            "flag": rng.integers(0, 2, n),
            "color": rng.choice(["red", "green", "blue", "grey"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    logit = 1.5 * f.x1 - f.x3 + 0.8 * (f.color == "red") + 0.3 * (f.k - 3) + 0.2 * (f.x5 - 10)
    f["y"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    if shift is not None:
        f[shift] = f[shift] + f[shift].std()
    return f


SPEC = {
    "name": "drift-table",
    "data": {"source": "csv:train.csv", "target": "y"},
    "model": {"kind": "mlp", "hidden": [32]},
    "train": {"max_epochs": 3},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
    "monitor": {"window": 100},
}
