"""Mixed inputs: one model over a table of numbers, categories, a date and free text.

`builtin:birdstrikes` (FAA wildlife strikes, 19,302 rows; target `disrupted`, ~10 % yes) is
trained four ways on the same split (the spec's seed):

- mixed: `examples/birdstrikes_mixed.yaml`, every column through its feature type's encoder;
- text only: the same spec with `data.features: [remarks]`;
- columns only: the same spec with `data.drop: [remarks]`;
- gradient boosting + TF-IDF: scikit-learn's HistGradientBoostingClassifier over the columns
  (categories as native categorical features, the date as year, month and weekday) beside a
  64-dimensional SVD of the remarks' TF-IDF (word 1-2-grams), fitted on the same training rows.

It prints accuracy, ROC-AUC and F1 of the class `yes` on the test rows, and the mixed model's
ratio to the best baseline. About 3-6 minutes on 2 CPU cores.

    .venv/bin/python bench/mixed_inputs.py
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import trustforge  # noqa: E402
from trustforge.data import prepare  # noqa: E402
from trustforge.spec import load_spec  # noqa: E402

EXAMPLE = ROOT / "examples" / "birdstrikes_mixed.yaml"
POSITIVE = "yes"


def variants() -> dict[str, dict]:
    """The three TrustForge specs: mixed, text only, columns only."""
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    text_only, columns_only = copy.deepcopy(base), copy.deepcopy(base)
    text_only["data"]["features"] = ["remarks"]
    columns_only["data"]["drop"] = ["remarks"]
    return {"mixed": base, "text only": text_only, "columns only": columns_only}


def scores(y_true: np.ndarray, proba_yes: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = proba_yes >= 0.5
    truth = y_true == POSITIVE
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "roc_auc": float(roc_auc_score(truth, proba_yes)),
        "f1_yes": float(f1_score(truth, pred)),
    }


def gbm_tfidf(train: pd.DataFrame, test: pd.DataFrame, target: str, seed: int) -> np.ndarray:
    """P(yes) on `test` from gradient boosting over the columns and an SVD of the remarks' TF-IDF."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    text = "remarks"
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    svd = TruncatedSVD(64, random_state=seed)
    t_train = svd.fit_transform(tfidf.fit_transform(train[text].fillna("")))
    t_test = svd.transform(tfidf.transform(test[text].fillna("")))

    def columns(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.drop(columns=[text, target]).copy()
        date = pd.to_datetime(out.pop("date"), errors="coerce")
        out["year"], out["month"], out["weekday"] = date.dt.year, date.dt.month, date.dt.day_of_week
        for c in out.columns:
            if out[c].dtype == object:
                out[c] = out[c].astype("category")
        return out

    c_train, c_test = columns(train), columns(test)
    for c in c_train.columns:
        if isinstance(c_train[c].dtype, pd.CategoricalDtype):
            c_test[c] = pd.Categorical(c_test[c], categories=c_train[c].cat.categories)
    x_train = pd.concat([c_train.reset_index(drop=True), pd.DataFrame(t_train).add_prefix("svd")], axis=1)
    x_test = pd.concat([c_test.reset_index(drop=True), pd.DataFrame(t_test).add_prefix("svd")], axis=1)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    model.fit(x_train, train[target].to_numpy())
    return model.predict_proba(x_test)[:, list(model.classes_).index(POSITIVE)]


def main() -> int:
    os.environ.setdefault("TRUSTFORGE_HOME", tempfile.mkdtemp(prefix="tf-bench-mixed-"))
    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for name, spec in variants().items():
        t0 = time.perf_counter()
        result = trustforge.run(spec, register=False, progress=False)
        model = result.load_model()
        data = prepare(load_spec(spec))
        proba = model.predict_proba(data.test_raw)[:, model.classes.index(POSITIVE)]
        rows[name] = scores(data.test_raw.frame[data.schema.target].to_numpy(), proba)
        seconds[name] = time.perf_counter() - t0
    spec = load_spec(variants()["mixed"])
    data = prepare(spec)
    target = data.schema.target
    t0 = time.perf_counter()
    proba = gbm_tfidf(data.train_raw.frame, data.test_raw.frame, target, spec.train.seed)
    rows["gradient boosting + TF-IDF"] = scores(data.test_raw.frame[target].to_numpy(), proba)
    seconds["gradient boosting + TF-IDF"] = time.perf_counter() - t0

    print(
        f"builtin:birdstrikes, target disrupted, test rows {len(data.test_raw)} (seed {spec.train.seed}, "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')} threads)"
    )
    print(f"{'model':<28} {'accuracy':>9} {'ROC-AUC':>9} {'F1 yes':>9} {'seconds':>8}")
    for name, r in rows.items():
        print(f"{name:<28} {r['accuracy']:>9.4f} {r['roc_auc']:>9.4f} {r['f1_yes']:>9.4f} {seconds[name]:>8.1f}")
    best = max((r["roc_auc"], n) for n, r in rows.items() if n != "mixed")
    print(f"mixed / best baseline ({best[1]}) ROC-AUC: {rows['mixed']['roc_auc'] / best[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
