"""The baselines' linear models: L2-penalised logistic regression and ridge regression.

Both solve scikit-learn's objectives (`LogisticRegression(C=1)` with the lbfgs solver,
`Ridge(alpha=1)`) with the same solver settings, and the tests hold their probabilities and
predictions to scikit-learn's. They are here, not imported from scikit-learn, because importing
scikit-learn (which imports scipy.stats) costs about 0.9 s, a seventh of what `trustforge train`
takes from launch to exit on breast cancer (issue 12's target); SciPy's L-BFGS-B, which
scikit-learn's lbfgs solver calls, costs 0.16 s to import. Only the objective and its gradient
are written here.

Logistic regression minimises, over the weights W and the unpenalised intercepts b,

    Σᵢ sᵢ·lossᵢ / S + ‖W‖² / (2·C·S),    S = Σᵢ sᵢ

(scikit-learn's scaling of C·Σᵢ sᵢ·lossᵢ + ½‖W‖², the same minimiser), where sᵢ is the row's
class weight (1, or n / (k·nₖ) for `class_weight="balanced"`), the loss is the binomial log loss
of one logit for two classes and the multinomial log loss of one logit per class otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LogisticModel", "RidgeModel"]


def _matmul(x: Any, w: np.ndarray) -> np.ndarray:
    return np.asarray(x @ w)


class LogisticModel:
    """`fit(x, y)` then `predict_proba(x)` / `predict(x)`; `classes_` and `n_iter_` as scikit-learn names them.

    x is a dense array or a SciPy sparse matrix of shape (n, d); y holds class labels.
    """

    def __init__(self, *, c: float = 1.0, max_iter: int = 100, class_weight: str | None = None, tol: float = 1e-4) -> None:
        if class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', not {class_weight!r}")
        self.c, self.max_iter, self.class_weight, self.tol = float(c), int(max_iter), class_weight, float(tol)

    def fit(self, x: Any, y: np.ndarray) -> LogisticModel:
        from scipy.optimize import minimize

        y = np.asarray(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"logistic regression needs at least two classes in y, got {k}")
        n, d = x.shape
        counts = np.bincount(codes, minlength=k).astype(np.float64)
        s = (n / (k * counts))[codes] if self.class_weight == "balanced" else np.ones(n)
        total = s.sum()
        outputs = 1 if k == 2 else k
        onehot = codes.astype(np.float64)[:, None] if k == 2 else np.eye(k)[codes]
        xt = x.T

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w = theta[: d * outputs].reshape(d, outputs)
            b = theta[d * outputs :]
            z = _matmul(x, w) + b
            if k == 2:
                loss = np.logaddexp(0.0, z) - onehot * z
                p = np.exp(-np.logaddexp(0.0, -z))  # the sigmoid, without overflow
            else:
                top = z.max(axis=1, keepdims=True)
                log_norm = top + np.log(np.exp(z - top).sum(axis=1, keepdims=True))
                loss = log_norm - (onehot * z).sum(axis=1, keepdims=True)
                p = np.exp(z - log_norm)
            residual = (p - onehot) * (s / total)[:, None]
            value = float((s * loss.sum(axis=1)).sum() / total + (w * w).sum() / (2 * self.c * total))
            grad_w = _matmul(xt, residual) + w / (self.c * total)
            return value, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

        theta0 = np.zeros(d * outputs + outputs)
        options = {"maxiter": self.max_iter, "maxls": 50, "gtol": self.tol, "ftol": 64 * np.finfo(float).eps}
        result = minimize(objective, theta0, method="L-BFGS-B", jac=True, options=options)
        self.coef_ = result.x[: d * outputs].reshape(d, outputs).T
        self.intercept_ = result.x[d * outputs :]
        self.n_iter_ = np.array([int(result.nit)])
        return self

    def decision_function(self, x: Any) -> np.ndarray:
        return _matmul(x, self.coef_.T) + self.intercept_

    def predict_proba(self, x: Any) -> np.ndarray:
        z = self.decision_function(x)
        if len(self.classes_) == 2:
            p1 = np.exp(-np.logaddexp(0.0, -z[:, 0]))
            return np.column_stack([1.0 - p1, p1])
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


class RidgeModel:
    """Ridge regression, scikit-learn's `Ridge(alpha)`: minimises ‖y − Xw − b‖² + alpha·‖w‖² with an
    unpenalised intercept (the centred problem). Up to `EXACT_FEATURES` features it is solved
    exactly through the d × d Gram matrix; above that (a bag of tokens) by SciPy's LSQR on the
    centred matrix, never densified."""

    EXACT_FEATURES = 2_000

    def __init__(self, *, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def fit(self, x: Any, y: np.ndarray) -> RidgeModel:
        y = np.asarray(y, dtype=np.float64)
        n, d = x.shape
        mean = np.asarray(x.mean(axis=0)).ravel()
        centred_y = y - y.mean()
        if d <= self.EXACT_FEATURES:
            gram = np.asarray((x.T @ x).toarray() if hasattr(x, "toarray") else x.T @ x, dtype=np.float64)
            gram = gram - n * np.outer(mean, mean)  # the centred Gram matrix
            rhs = np.asarray(x.T @ centred_y).ravel() - mean * centred_y.sum()
            self.coef_ = np.linalg.solve(gram + self.alpha * np.eye(d), rhs)
        else:
            from scipy.sparse.linalg import LinearOperator, lsqr

            centred = LinearOperator(
                (n, d),
                matvec=lambda w: np.asarray(x @ w).ravel() - mean @ w,
                rmatvec=lambda r: np.asarray(x.T @ r).ravel() - mean * r.sum(),
                dtype=np.float64,
            )
            self.coef_ = lsqr(centred, centred_y, damp=np.sqrt(self.alpha), atol=1e-10, btol=1e-10, iter_lim=10 * d)[0]
        self.intercept_ = float(y.mean() - mean @ self.coef_)
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(x @ self.coef_).ravel() + self.intercept_
