"""Benchmark: data expectations (`data.expect`) against pandera on the same table and rules.

What it measures
    A table of 8 numeric columns (range checks) and one category column (an allowed-values
    check), about 1 % of values outside each rule, at 1, 1,000 and 100,000 rows: the median
    seconds of `Expectations.check` (row-level violations with row and column) and of pandera's
    `DataFrameSchema.validate(lazy=True)` (its failure cases), and the ratio pandera / ours. The
    two must find the same violating rows; the printout says whether they do. Also pandera's
    import time after pandas (the server would pay it once) and the 1-row figure, which is what
    a served request costs.

How to run
    .venv/bin/python bench/expect.py [--repeats N]    (pandera comes with the dev extra)
    The exit status is 0 whatever the result (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from trustforge.data import Expectations
from trustforge.data._expect import Rule

CITIES = ("a", "b", "c")


def frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    d = {f"x{i}": rng.normal(0, 1.2, n) for i in range(8)}
    d["c"] = rng.choice(["a", "b", "c", "d"], n, p=[0.33, 0.33, 0.33, 0.01])
    return pd.DataFrame(d)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    t = time.perf_counter()
    import pandera.pandas as pa

    print(f"pandera import after pandas: {time.perf_counter() - t:.3f} s")
    ours = Expectations(tuple([*(Rule(f"x{i}", min=-3, max=3) for i in range(8)), Rule("c", allowed=CITIES)]))
    theirs = pa.DataFrameSchema(
        {
            **{f"x{i}": pa.Column(float, pa.Check.in_range(-3, 3), nullable=True) for i in range(8)},
            "c": pa.Column(str, pa.Check.isin(CITIES)),
        }
    )
    rng = np.random.default_rng(0)
    print(f"{'rows':>8} {'ours ms':>9} {'pandera ms':>11} {'ratio':>7}  same rows")
    for n in (1, 1_000, 100_000):
        f = frame(n, rng)
        repeats = args.repeats if n < 100_000 else max(3, args.repeats // 5)
        a, b = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            report = ours.check(f)
            a.append(time.perf_counter() - t)
            t = time.perf_counter()
            try:
                theirs.validate(f, lazy=True)
                cases = pd.DataFrame(columns=["column", "index"])
            except pa.errors.SchemaErrors as exc:
                cases = exc.failure_cases
            b.append(time.perf_counter() - t)
        same = sorted((v.column, v.row) for v in report.violations) == sorted(
            (str(c), int(i) + 1) for c, i in zip(cases["column"], cases["index"])
        )
        ma, mb = statistics.median(a) * 1000, statistics.median(b) * 1000
        print(f"{n:>8} {ma:>9.3f} {mb:>11.3f} {mb / ma:>7.1f}  {same}")


if __name__ == "__main__":
    main()
