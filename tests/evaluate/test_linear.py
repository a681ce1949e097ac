"""The baselines' own linear models against scikit-learn's, which they replace to keep `train` fast."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from trustforge.evaluate._intervals import clopper_pearson
from trustforge.evaluate._linear import LogisticModel, RidgeModel


@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_binary_logistic_matches_scikit_learn(class_weight):
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    ours = LogisticModel(max_iter=500, class_weight=class_weight).fit(x, y)
    ref = LogisticRegression(max_iter=500, class_weight=class_weight).fit(x, y)
    assert np.abs(ours.predict_proba(x) - ref.predict_proba(x)).max() < 2e-3
    assert (ours.predict(x) == ref.predict(x)).mean() >= 0.995
    assert ours.n_iter_[0] < 500


def test_multiclass_logistic_on_sparse_input_matches_scikit_learn():
    x, y = load_digits(return_X_y=True)
    x = sparse.csr_matrix(x / 16.0)
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    ours = LogisticModel(max_iter=500).fit(x, labels)
    ref = LogisticRegression(max_iter=500).fit(x, labels)
    assert list(ours.classes_) == list(ref.classes_)
    assert np.abs(ours.predict_proba(x) - ref.predict_proba(x)).max() < 5e-3
    assert (ours.predict(x) == ref.predict(x)).mean() >= 0.995


def test_logistic_refuses_one_class():
    with pytest.raises(ValueError, match="two classes"):
        LogisticModel().fit(np.ones((4, 2)), np.zeros(4))


@pytest.mark.parametrize("dense", [True, False])
def test_ridge_matches_scikit_learn(dense, monkeypatch):
    x, y = load_diabetes(return_X_y=True)
    ref = Ridge(alpha=1.0).fit(x, y)
    if not dense:  # the iterative path, as for a bag of tokens
        monkeypatch.setattr(RidgeModel, "EXACT_FEATURES", 2)
        x = sparse.csr_matrix(x)
    ours = RidgeModel(alpha=1.0).fit(x, y)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-4 * np.abs(ref.coef_).max()
    assert abs(ours.intercept_ - ref.intercept_) < 1e-6 * abs(ref.intercept_)


def test_clopper_pearson_equals_the_beta_quantiles():
    from scipy.stats import beta

    for k, n in [(1, 10), (112, 114), (50, 100), (3, 1000)]:
        low, high = clopper_pearson(k, n)
        assert low == pytest.approx(beta.ppf(0.025, k, n - k + 1), abs=1e-12)
        assert high == pytest.approx(beta.ppf(0.975, k + 1, n - k), abs=1e-12)
    assert clopper_pearson(0, 5)[0] == 0.0 and clopper_pearson(5, 5)[1] == 1.0


def test_the_baseline_and_intervals_import_neither_scikit_learn_nor_scipy_stats():
    """What the train command pays for its yardstick: no scikit-learn and no scipy.stats (issue 12)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from trustforge.evaluate._linear import LogisticModel, RidgeModel; "
        "from trustforge.evaluate._intervals import clopper_pearson; from trustforge.evaluate._explain import _student_t; "
        "x = np.random.default_rng(0).normal(size=(60, 3)); y = (x[:, 0] > 0).astype(int); "
        "LogisticModel().fit(x, y).predict_proba(x); RidgeModel().fit(x, x[:, 1]).predict(x); clopper_pearson(5, 9); _student_t(4); "
        "print(sorted(m for m in ('sklearn', 'scipy.stats') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
