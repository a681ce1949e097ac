"""Every application scenario at its full settings, beside a simple baseline measured in the same run.

Each row trains one example spec as written (`trustforge.run(spec, register=False)`), then fits
its baseline on the same split and encoding (`trustforge.data.prepare` with the spec's seed)
and prints both, with the issue's quality target. Slow: about 40-60 minutes on 2 CPU cores, most of it fine-tuning MiniLM.

The README's figures live in bench/figures.json (figure and tolerance per example and metric);
each printed row shows its example's recorded figure. With `--check` the run exits 1 when a row
falls below its recorded figure by more than the tolerance, naming the row.

    .venv/bin/python bench/scenarios.py                # all scenarios
    .venv/bin/python bench/scenarios.py speech fraud   # the rows whose names start with these words
    .venv/bin/python bench/scenarios.py sentiment      # both sentiment models and their baselines
    .venv/bin/python bench/scenarios.py --check shapes # and exit 1 if a row is below its README figure
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import trustforge  # noqa: E402
from trustforge.data import Prepared, prepare  # noqa: E402
from trustforge.evaluate import fit_logistic  # noqa: E402
from trustforge.evaluate import majority_class as majority_share  # noqa: E402
from trustforge.spec import load_spec  # noqa: E402

FIGURES_FILE = Path(__file__).resolve().with_name("figures.json")
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mape", "smape", "mse", "log_loss"})


def load_figures(path: Path = FIGURES_FILE, section: str | None = None) -> dict[str, dict]:
    """The README's recorded figures: {example file: {metric: {"figure", "tolerance", "why"}}}; or
    one `section` of the file (its keys that start with "_" are notes)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw = raw[section] if section else raw
    return {k: v for k, v in raw.items() if not k.startswith("_")}


FIGURES = load_figures()
# Examples too slow to train as written in CI: {example: {"settings": what CI trains, "figures": {metric: ...}}}.
REDUCED: dict[str, dict] = load_figures(FIGURES_FILE, "_reduced")


def shortfalls(
    example: str, metrics: Mapping[str, float], figures: Mapping[str, Mapping] | None = None, *, two_sided: bool = False
) -> list[str]:
    """One line per recorded figure of `example` that `metrics` misses: worse than the figure by
    more than its tolerance (lower is better for errors such as MAE and RMSE), or, `two_sided`,
    off the figure by more than the tolerance either way (a README that understates is wrong too).
    A recorded metric absent from `metrics` is a shortfall. Empty when every figure holds."""
    recorded = (FIGURES if figures is None else figures).get(example, {})
    out = []
    for metric, rec in recorded.items():
        figure, tol = float(rec["figure"]), float(rec["tolerance"])
        if metric not in metrics:
            out.append(f"{example} {metric}: not measured (README figure {figure:g})")
            continue
        got = float(metrics[metric])
        if got != got:
            out.append(f"{example} {metric}: NaN (README figure {figure:g})")
            continue
        worse = got - figure if metric in LOWER_IS_BETTER else figure - got
        if worse > tol or (two_sided and -worse > tol):
            side = "below" if worse > 0 else "above"
            if metric in LOWER_IS_BETTER:
                side = "worse than" if worse > 0 else "better than"
            out.append(f"{example} {metric}: {got:.4f}, {side} the README figure {figure:g} by more than {tol:g}")
    return out


@dataclass
class Scenario:
    name: str
    example: str
    metric: str  # the metric compared with the baseline ("lower" ones end with "↓")
    baseline: str  # what the baseline is
    target: str  # the quality target
    measure_baseline: Callable[[dict, dict], float]  # (spec, the run's metrics) -> the baseline's figure


# ---------------------------------------------------------------------------- baselines


def _prepared(spec: dict) -> Prepared:
    return prepare(load_spec(spec))


def _train_parts(data: Prepared):
    return [data.train] + ([data.validation] if data.validation is not None else [])


def logreg_table(metric: str, class_weight: str | None = None) -> Callable[[dict, dict], float]:
    """Logistic regression on the spec's encoded inputs (standardised numbers, one-hot categories),
    fitted on the training and validation splits: the run's own baseline (`evaluate._baselines`)."""

    def measure(spec: dict, _: dict) -> float:
        from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

        data = _prepared(spec)
        model, design, _ = fit_logistic(data, seed=load_spec(spec).train.seed, parts=tuple(_train_parts(data)), class_weight=class_weight)
        x_test, y_test = design.transform(data.test.inputs), data.test.target.numpy()
        if metric == "accuracy":
            return float(accuracy_score(y_test, model.predict(x_test)))
        score = model.predict_proba(x_test)[:, 1]
        return float(average_precision_score(y_test, score) if metric == "pr_auc" else roc_auc_score(y_test, score))

    return measure


def svc_images(spec: dict, _: dict) -> float:
    """An RBF SVC on the standardised, flattened images of the same split."""
    from sklearn.svm import SVC

    data = _prepared(spec)
    x = np.vstack([p.inputs[0].flatten(1).numpy() for p in _train_parts(data)])
    y = np.concatenate([p.target.numpy() for p in _train_parts(data)])
    pred = SVC().fit(x, y).predict(data.test.inputs[0].flatten(1).numpy())
    return float((pred == data.test.target.numpy()).mean())


def logreg_mean_logmel(spec: dict, _: dict) -> float:
    """Logistic regression on each clip's mean log-mel vector (clean training clips, unseen test voices)."""
    from sklearn.linear_model import LogisticRegression

    data = _prepared(spec)

    def mean_logmel(raw) -> np.ndarray:
        return data.preprocessor.encode_inputs(raw)[0][:, 0].mean(dim=-1).numpy()  # (N, n_mels)

    y = data.preprocessor.encode_target(data.train_raw).numpy()
    model = LogisticRegression(max_iter=5000).fit(mean_logmel(data.train_raw), y)
    return float((model.predict(mean_logmel(data.test_raw)) == data.test.target.numpy()).mean())


def from_metrics(key: str) -> Callable[[dict, dict], float]:
    """A baseline the run itself measured on its test split (forecasting, recommendation)."""
    return lambda _spec, metrics: float(metrics[key])


_TFIDF: dict[str, dict[str, float]] = {}


def tfidf_logistic_regression(spec: dict) -> dict[str, float]:
    """scikit-learn's TfidfVectorizer() + logistic regression on the spec's training split (C
    chosen by 5-fold cross-validation on it from a grid), scored on its test split like the
    neural model: {"accuracy", "f1_macro", "C"}. Fitted once per spec in a process."""
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _TFIDF:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.metrics import accuracy_score, f1_score

        data = _prepared(spec)
        column, target = data.schema.text.column, data.schema.target
        train, test = data.train_raw.frame, data.test_raw.frame
        vec = TfidfVectorizer()
        # C chosen as GridSearchCV over the grid would (the same 5 folds and scoring), each fold's
        # path of fits starting from the last (about a third of the time); then one fresh fit with
        # that C on the whole training split, as GridSearchCV refits.
        x = vec.fit_transform(train[column])
        search = LogisticRegressionCV(
            Cs=[0.25, 0.5, 1, 2, 4, 8, 16], cv=5, scoring="accuracy", max_iter=3000, l1_ratios=(0.0,), use_legacy_attributes=False
        )
        c = float(np.ravel(search.fit(x, train[target]).C_)[0])
        pred = LogisticRegression(C=c, max_iter=3000).fit(x, train[target]).predict(vec.transform(test[column]))
        _TFIDF[key] = {
            "accuracy": float(accuracy_score(test[target], pred)),
            "f1_macro": float(f1_score(test[target], pred, average="macro")),
            "C": c,
        }
    return _TFIDF[key]


def tfidf_logreg(metric: str) -> Callable[[dict, dict], float]:
    """One figure of `tfidf_logistic_regression`."""
    return lambda spec, _: tfidf_logistic_regression(spec)[metric]


def majority_class(spec: dict, _: dict) -> float:
    """The test split's share of the training split's most frequent class (`evaluate._baselines`)."""
    data = _prepared(spec)
    top, _ = majority_share(data)
    return float((data.test.target.numpy() == top).mean())


def from_example(example: str, key: str) -> Callable[[dict, dict], float]:
    """Another example's figure on the same split (the pretrained text model against the from-scratch one)."""
    return lambda _spec, _metrics: float(run_example(example)[key])


def gbm_tfidf_mixed(metric: str) -> Callable[[dict, dict], float]:
    """Gradient boosting over the columns beside an SVD of the text's TF-IDF, on the same split
    (bench/mixed_inputs.py, where the text-only and columns-only rows are measured too)."""

    def measure(spec: dict, _: dict) -> float:
        import mixed_inputs

        data = _prepared(spec)
        target = data.schema.target
        proba = mixed_inputs.gbm_tfidf(data.train_raw.frame, data.test_raw.frame, target, load_spec(spec).train.seed)
        return mixed_inputs.scores(data.test_raw.frame[target].to_numpy(), proba)[metric]

    return measure


# ---------------------------------------------------------------------------- the table

SCENARIOS = [
    *[
        Scenario(
            "mixed table (bird strikes)",
            "birdstrikes_mixed.yaml",
            metric,
            "gradient boosting + TF-IDF",
            "beats text only and columns only (bench/mixed_inputs.py)",
            gbm_tfidf_mixed(metric),
        )
        for metric in ("accuracy", "roc_auc")
    ],
    Scenario(
        "speech recognition",
        "speech_digits.yaml",
        "accuracy",
        "logistic regression on mean log-mel",
        "accuracy ≥ 0.95 on unseen voices",
        logreg_mean_logmel,
    ),
    Scenario(
        "forecasting",
        "forecast_air_passengers.yaml",
        "mae↓",
        "seasonal-naive forecast",
        "MAE below seasonal-naive",
        from_metrics("baseline_seasonal_naive_mae"),
    ),
    Scenario(
        "recommendation, explicit",
        "recommend_explicit.yaml",
        "rmse↓",
        "bias-only model",
        "RMSE below bias-only",
        from_metrics("baseline_bias_rmse"),
    ),
    Scenario(
        "recommendation, implicit",
        "recommend_implicit.yaml",
        "hr@10",
        "popularity",
        "HR@10 above popularity",
        from_metrics("baseline_popularity_hr@10"),
    ),
    Scenario(
        "recommendation, implicit",
        "recommend_implicit.yaml",
        "ndcg@10",
        "popularity",
        "NDCG@10 above popularity",
        from_metrics("baseline_popularity_ndcg@10"),
    ),
    Scenario(
        "fraud detection", "fraud_mlp.yaml", "pr_auc", "logistic regression", "PR-AUC well above the positive rate", logreg_table("pr_auc")
    ),
    Scenario(
        "credit risk",
        "credit_risk_mlp.yaml",
        "roc_auc",
        "logistic regression (balanced)",
        "ranks defaulters like LR",
        logreg_table("roc_auc", "balanced"),
    ),
    *[
        Scenario(
            "sentiment (text)",
            "sentiment_text.yaml",
            metric,
            "TF-IDF + logistic regression",
            "accuracy and F1 above the baseline",
            tfidf_logreg(metric),
        )
        for metric in ("accuracy", "f1_macro")
    ],
    *[
        Scenario(
            "sentiment, pretrained",
            "sentiment_minilm.yaml",
            metric,
            "the from-scratch text model",
            "above the from-scratch model",
            from_example("sentiment_text.yaml", metric),
        )
        for metric in ("accuracy", "f1_macro")
    ],
    Scenario("Chinese text", "chinese_text.yaml", "accuracy", "majority class", "trains and predicts with char tokens", majority_class),
    Scenario("medical diagnosis", "breast_cancer_mlp.yaml", "accuracy", "logistic regression", "accuracy ≥ 0.97", logreg_table("accuracy")),
    Scenario("image recognition, digits", "digits_cnn.yaml", "accuracy", "SVC", "accuracy ≥ 0.985", svc_images),
    Scenario("image recognition, shapes", "shapes_cnn.yaml", "accuracy", "SVC", "well above chance (0.10)", svc_images),
    Scenario(
        "classic tutorial CNN", "classic_cifar_cnn.yaml", "accuracy", "largest class (chance)", "learns the real labels", majority_class
    ),
    Scenario("classic LSTM", "classic_lstm.yaml", "accuracy", "largest class (chance)", "reads digits row by row", majority_class),
]


_RUNS: dict[str, dict] = {}


def run_example(example: str) -> dict:
    """The test metrics of one example trained as written (once per process), with `_seconds`."""
    if example not in _RUNS:
        spec = yaml.safe_load((ROOT / "examples" / example).read_text(encoding="utf-8"))
        t0 = time.perf_counter()
        _RUNS[example] = dict(trustforge.run(spec, register=False, progress=False).metrics)
        _RUNS[example]["_seconds"] = time.perf_counter() - t0
    return _RUNS[example]


def failures(rows: list[Scenario], run: Callable[[str], Mapping[str, float]] | None = None) -> list[str]:
    """Every recorded figure of the rows' examples that their run misses (see `shortfalls`), each
    line naming its rows: "fraud detection (fraud_mlp.yaml) pr_auc: 0.5500, below ..."."""
    run = run or run_example
    out = []
    for example in dict.fromkeys(s.example for s in rows):
        names = ", ".join(dict.fromkeys(s.name for s in rows if s.example == example))
        out += [f"{names} ({example}) {line.split(' ', 1)[1]}" for line in shortfalls(example, run(example))]
    return out


def main(argv: list[str]) -> int:
    """Print every selected row; with `--check`, return 1 when a row falls below its recorded
    README figure by more than its tolerance, naming the row on stderr."""
    check = "--check" in argv
    selected = [a for a in argv if a != "--check"]
    rows = [s for s in SCENARIOS if not selected or any(s.name.startswith(w) for w in selected)]
    print(f"{'scenario':28} {'example':30} {'metric':9} {'TrustForge':>10} {'README':>7} {'baseline':>9}  {'better':6} baseline / target")
    for s in rows:
        spec = yaml.safe_load((ROOT / "examples" / s.example).read_text(encoding="utf-8"))
        metrics = run_example(s.example)
        key = s.metric.rstrip("↓")
        ours, base = float(metrics[key]), s.measure_baseline(spec, metrics)
        better = ours < base if s.metric.endswith("↓") else ours > base
        recorded = FIGURES.get(s.example, {}).get(key)
        readme = f"{recorded['figure']:7g}" if recorded else f"{'-':>7}"
        print(
            f"{s.name:28} {s.example:30} {s.metric:9} {ours:10.4f} {readme} {base:9.4f}  {'yes' if better else 'NO':6} "
            f"{s.baseline} / {s.target}  ({metrics['_seconds']:.0f} s)",
            flush=True,
        )
    if not check:
        return 0
    missed = failures(rows)
    for line in missed:
        print(f"below its README figure: {line}", file=sys.stderr)
    print(
        f"check: {len(missed)} figure(s) below the README's (bench/figures.json)"
        if missed
        else "check: every row holds its README figure (bench/figures.json)"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
