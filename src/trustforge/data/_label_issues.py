"""Label errors: confident learning over out-of-fold predicted probabilities, and what a run does with them.

`find_label_issues(labels, pred_probs)` flags the rows whose given label the probabilities
contradict, by the method of Northcutt, Jiang and Chuang ("Confident learning: estimating
uncertainty in dataset labels", JAIR 2021) as cleanlab's `cleanlab.filter.find_label_issues`
implements it with its defaults (`filter_by="prune_by_noise_rate"`, `frac_noise=1`,
`min_examples_per_class=1`):

1. a per-class threshold: the mean probability of class k over the rows labelled k;
2. the confident joint C[i][j]: rows labelled i whose probability of j reaches j's threshold
   (the largest probability when several do), its diagonal at least 1, calibrated so that
   each row sums to the count of label i and the whole to the number of rows;
3. from each given class i, the C[i][j] rows (j ≠ i) with the largest margin p_j − p_i are
   flagged, keeping at least one row per class;
4. a row whose given label is (within 1e-6) the most probable class is never flagged.

It is written here rather than imported: these ~80 lines of numpy are all of cleanlab that the
product needs, and importing `cleanlab.filter` costs about 2.4 s (it pulls in scikit-learn,
which `evaluate._linear` already avoids for the same reason) and adds a dependency.
`tests/data/test_label_issues.py` holds the flags to be identical to cleanlab's on the same
probabilities, and `bench/label_issues.py` runs both side by side.

The probabilities must be out of fold (each row predicted by a model that did not train on
it): `trustforge.train.cross_fit` makes them with the run's own model kind. Flagged rows are
ranked by self-confidence (the probability of the given label, lowest first), as cleanlab's
`order_label_issues(rank_by="self_confidence")`; the suggested label is the most probable class.

`clean_training(spec, data, issues)` then applies `data.clean.label_issues` to the training
split (`report`: as is, `drop`: without the flagged rows, `relabel`: with their suggested
labels) and re-encodes it from the rows as read, so the kind's training copies (augmented
audio clips) follow. The fitted preprocessor is kept: it learned no labels but the class names.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trustforge.data._prepared import Prepared, TensorData
from trustforge.data._raw import RawData
from trustforge.data.features import label_strings
from trustforge.data.inputs import input_kind
from trustforge.errors import DataError

__all__ = [
    "LabelIssues",
    "find_label_issues",
    "clean_training",
    "row_names",
    "label_issues_refusal",
    "label_issue_warnings",
    "report_label_issues",
    "FLAGGED_WARNING",
]

log = logging.getLogger("trustforge.data")

# More flagged rows than this share of the training split says more about the out-of-fold models
# than about the labels: with 5 % of labels flipped the finder flags about 5 % (README, Label errors).
FLAGGED_WARNING = 0.2


def label_issues_refusal(spec: Any, *, probabilities: bool, classes: Any, modality: str, has_rows: bool) -> None:
    """Refuse a `data.clean.label_issues` this spec cannot have, before any model is trained
    (`train.clean_labels` and `trustforge validate` both call it).

    Args:
        probabilities: the task scores classes (its `probabilities`); classes: the schema's.
        modality: the schema's; has_rows: the prepared data keeps its training rows as read.

    Raises:
        SpecError: the task has no class labels to clean (regression, forecasting, ...), the spec
            trains privately (`train.privacy`), or the input keeps no training rows.
    """
    from trustforge.errors import SpecError

    if spec.data.clean.label_issues == "off":
        return
    if not probabilities or not classes:
        raise SpecError(f"data.clean.label_issues needs class labels (task classification); got task {spec.task}: set it to off")
    if spec.train.privacy is not None:
        # The pass chooses training rows with non-private models: the run's ε would no longer
        # describe what the released model reveals about the rows it was given.
        raise SpecError("data.clean.label_issues cannot be used with train.privacy (its models are not private); set it to off")
    if not has_rows:
        raise SpecError(f"data.clean.label_issues: the {modality} input keeps no training rows to check; set it to off")


def label_issue_warnings(
    rows_by_class: dict[str, int], folds: int, *, found: int | None = None, out_of_fold_accuracy: float | None = None
) -> list[str]:
    """What makes the label-issue pass untrustworthy, one sentence each: a class with fewer training
    rows than `data.clean.folds` (some folds' models never see it, so its rows are judged by models
    that cannot predict it), and, once found, more than `FLAGGED_WARNING` of the rows flagged.

    Args:
        rows_by_class: training rows per given class.
        found: rows flagged (None: before the pass, as `validate` asks).
    """
    out = []
    few = {c: n for c, n in rows_by_class.items() if n < folds}
    if few:
        shown = ", ".join(f"{c!r} ({n})" for c, n in list(few.items())[:5]) + (", ..." if len(few) > 5 else "")
        out.append(
            f"data.clean.label_issues: {len(few)} class(es) have fewer training rows than data.clean.folds ({folds}): {shown}; "
            "the out-of-fold models see too few of them to judge their labels (lower data.clean.folds or add rows)"
        )
    rows = sum(rows_by_class.values())
    if found is not None and rows and found / rows > FLAGGED_WARNING:
        acc = f" (out-of-fold accuracy {out_of_fold_accuracy:.2f})" if out_of_fold_accuracy is not None else ""
        out.append(
            f"data.clean.label_issues flagged {found} of {rows} training rows ({found / rows:.0%}), more than "
            f"{FLAGGED_WARNING:.0%}: the out-of-fold models are likely too weak to trust{acc}; raise data.clean.epochs or "
            "check the model before using drop or relabel"
        )
    return out


def report_label_issues(data: Prepared, found: dict[str, Any]) -> Prepared:
    """Say what the label-issue pass found: one summary line (found N of M training rows, and how
    many were dropped or relabelled) and its warnings (`label_issue_warnings`) on the console, the
    warnings added to `found` (label_issues.json), and the counts kept for the run's metrics
    (`Prepared.label_issues`)."""
    policy, rows, n = found.get("policy"), int(found.get("rows_checked", 0)), int(found.get("found", 0))
    dropped = int(found.get("train_rows_before", rows)) - int(found.get("train_rows_after", rows))
    relabelled = int(found.get("relabelled", 0))
    warnings = label_issue_warnings(
        dict(found.get("rows_by_given_class") or {}),
        int(found.get("folds", 0)),
        found=n,
        out_of_fold_accuracy=found.get("out_of_fold_accuracy"),
    )
    found["warnings"] = warnings
    done = {"drop": f"dropped {dropped}", "relabel": f"relabelled {relabelled}"}.get(str(policy), "kept (report)")
    log.warning(
        "data: label issues: found %d of %d training rows likely mislabelled; %s (data.clean.label_issues: %s)",
        n,
        rows,
        done,
        policy,
    )
    for line in warnings:
        log.warning("%s", line)
    summary = {"policy": policy, "rows_checked": rows, "found": n, "dropped": dropped, "relabelled": relabelled, "warnings": warnings}
    return dataclasses.replace(data, label_issues=summary)


_EPS = 1e-6  # cleanlab's FLOATING_POINT_COMPARISON
_LOWEST_THRESHOLD = 2 * _EPS  # cleanlab's CONFIDENT_THRESHOLDS_LOWER_BOUND


@dataclass
class LabelIssues:
    """The rows of the training split flagged as likely mislabelled.

    Attributes:
        mask: (N,) bool, True for a flagged row.
        ranked: the flagged rows' positions, most likely mislabelled first.
        given: (N,) int, the label each row came with (class index).
        suggested: (N,) int, the most probable class of each row.
        self_confidence: (N,) float, the out-of-fold probability of the given label.
        confident_joint: (K, K) int, calibrated counts of (given label, confident true label).
    """

    mask: np.ndarray
    ranked: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray
    confident_joint: np.ndarray

    def __len__(self) -> int:
        return int(self.mask.sum())

    def to_json(
        self, classes: list[str], names: list[str], *, policy: str, listed: int, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What `label_issues.json` and the report hold: counts, and the `listed` most likely
        mislabelled rows with their given and suggested labels (no input values)."""
        k = len(classes)
        rows = [
            {
                "row": names[i],
                "given": classes[self.given[i]],
                "suggested": classes[self.suggested[i]],
                "given_probability": round(float(self.self_confidence[i]), 4),
            }
            for i in self.ranked[:listed]
        ]
        return {
            "policy": policy,
            "method": "confident learning (prune by noise rate), out-of-fold probabilities",
            "rows_checked": int(len(self.mask)),
            "found": len(self),
            "fraction": round(len(self) / max(len(self.mask), 1), 4),
            "listed": len(rows),
            "by_given_class": {classes[c]: int(((self.given == c) & self.mask).sum()) for c in range(k)},
            "rows_by_given_class": {classes[c]: int((self.given == c).sum()) for c in range(k)},
            "rows": rows,
            **(extra or {}),
        }


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> LabelIssues:
    """Confident learning's label issues (cleanlab's `find_label_issues` with its defaults).

    Args:
        labels: (N,) given class indices in [0, K).
        pred_probs: (N, K) out-of-fold class probabilities (rows sum to 1).

    Raises:
        DataError: the shapes disagree or a label is outside [0, K).
    """
    labels = np.asarray(labels).astype(np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(labels) or p.shape[1] < 2:
        raise DataError(f"label issues: probabilities of shape {p.shape} do not match {len(labels)} labels of 2 or more classes")
    n, k = p.shape
    if n and (labels.min() < 0 or labels.max() >= k):
        raise DataError(f"label issues: labels must be class indices in [0, {k}); got {labels.min()}..{labels.max()}")
    counts = np.bincount(labels, minlength=k)

    # 1. Per-class thresholds: the mean probability of k over rows labelled k (2, unreachable, for an absent class).
    thresholds = np.array([p[labels == c, c].mean() if counts[c] else 2.0 for c in range(k)])
    thresholds = np.clip(thresholds, _LOWEST_THRESHOLD, None)

    # 2. The confident joint, rows given label, columns the confident guess of the true label.
    confident = p >= thresholds - _EPS
    n_confident = confident.sum(axis=1)
    guess = np.where(n_confident > 1, p.argmax(axis=1), confident.argmax(axis=1))
    some = n_confident > 0
    by_guess = np.zeros((k, k), dtype=np.int64)
    np.add.at(by_guess, (guess[some], labels[some]), 1)
    # Transposed, as cleanlab's (a confusion matrix's .T): the calibration's total is then summed
    # in the same order, so a count that lands on x.5 rounds the same way.
    joint = by_guess.T
    np.fill_diagonal(joint, joint.diagonal().clip(min=1))
    joint = _calibrate(joint, counts)

    # 3. Prune by noise rate: prune[j, i] rows given i whose true label is j, at least one row kept per class.
    prune = _keep_one_per_class(joint.T)
    mask = np.zeros(n, dtype=bool)
    for i in range(k):
        rows = np.flatnonzero(labels == i)
        if len(rows) <= 1:
            continue
        for j in range(k):
            take = int(prune[j, i])
            if j != i and take > 0:
                margin = p[rows, j] - p[rows, i]
                mask[rows[np.argsort(-margin)[:take]]] = True

    # 4. Never a row whose given label is the most probable class.
    nudged = p.copy()
    nudged[np.arange(n), labels] += _EPS
    mask[nudged.argmax(axis=1) == labels] = False

    self_confidence = p[np.arange(n), labels]
    flagged = np.flatnonzero(mask)
    ranked = flagged[np.argsort(self_confidence[flagged], kind="stable")]
    return LabelIssues(mask, ranked, labels, p.argmax(axis=1), self_confidence, joint)


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    # cleanlab's `round_preserving_sum`: round, then move the difference onto the entries whose
    # rounding lost (or gained) the most, so the integers keep the floats' (rounded) total.
    ints = values.round()
    target = np.sum(values).round()
    total = np.sum(ints).round()
    while abs(total - target) > _EPS:
        diff = np.round(target - total)
        step = -1 if diff < 0 else 1
        changes = min(int(abs(diff)), len(values))
        for idx in np.argsort(values - ints)[::-step][:changes]:
            ints[idx] += step
        total = np.sum(ints).round()
    return ints.astype(np.int64)


def _round_rows(m: np.ndarray) -> np.ndarray:
    return np.stack([_round_preserving_sum(row) for row in np.asarray(m, dtype=np.float64)])


def _calibrate(joint: np.ndarray, counts: np.ndarray) -> np.ndarray:
    # Each row i sums to the count of label i; the whole to the number of rows.
    cal = (joint.T / np.clip(joint.sum(axis=1), 1e-100, None) * counts).T
    cal = cal / np.clip(cal.sum(), 1e-100, None) * counts.sum()
    return _round_rows(cal)


def _keep_one_per_class(prune: np.ndarray) -> np.ndarray:
    # cleanlab's `_keep_at_least_n_per_class` (n = 1, frac_noise = 1): raise the diagonal to 1,
    # taking what that adds from the column's off-diagonal counts, then truncate to integers.
    diagonal = np.diagonal(prune)
    new_diagonal = np.maximum(diagonal, 1)
    per_col = np.maximum(np.count_nonzero(prune, axis=0) - 1.0, 1.0)
    out = prune - (new_diagonal - diagonal) / per_col
    out[out < 0] = 0
    np.fill_diagonal(out, new_diagonal)
    return _round_rows(out.astype(np.int64))


# ---------------------------------------------------------------------------- applying a policy


def row_names(raw: RawData) -> list[str]:
    """How the report names each row of a split: the row of the table file (1-based, its header
    not counted), the file's name for images and clips read from files, else the row's place in
    the training split. Never a path."""
    if raw.rows is not None:
        return [f"row {int(r) + 1}" for r in raw.rows]
    if raw.paths and len(raw.paths) == len(raw):
        return [Path(p).name for p in raw.paths]
    return [f"training row {i + 1}" for i in range(len(raw))]


def clean_training(spec: Any, data: Prepared, issues: LabelIssues, policy: str) -> Prepared:
    """`data` with the training split cleaned by `policy` (`report`: unchanged, `drop`: without the
    flagged rows, `relabel`: the flagged rows with their suggested labels), re-encoded from the
    rows as read. The flags are positions in `data.train_raw`."""
    if policy == "report" or not len(issues):
        return data
    raw = data.train_raw
    if raw is None or len(raw) != len(issues.mask):
        raise DataError(f"data.clean.label_issues: {policy} needs the training rows as read, one per flag")
    kind = input_kind(raw)
    if policy == "drop":
        new = kind.subset(raw, np.flatnonzero(~issues.mask))
    elif policy == "relabel":
        classes = list(data.schema.classes or [])
        new = _relabelled(raw, kind.labels(raw), {int(i): classes[issues.suggested[i]] for i in np.flatnonzero(issues.mask)})
    else:
        raise DataError(f"data.clean.label_issues must be off, report, drop or relabel; got {policy!r}")
    train_in = kind.training_copies(new, spec.data, spec.train.seed)
    pre = data.preprocessor
    return dataclasses.replace(data, train=TensorData(pre.encode_inputs(train_in), pre.encode_target(train_in)), train_raw=new)


def _relabelled(raw: RawData, labels: np.ndarray | None, new_labels: dict[int, str]) -> RawData:
    # The suggested class goes in as a value the column already holds for that class (an int
    # column stays int), so the target encodes as the other rows of that class do.
    if raw.frame is not None and raw.target in raw.frame.columns:
        column = raw.frame[raw.target]
        as_text = label_strings(column)
        value_of = {text: column.iloc[i] for i, text in reversed(list(enumerate(as_text)))}
        frame = raw.frame.copy()
        at = list(new_labels)
        frame.loc[frame.index[at], raw.target] = [value_of.get(new_labels[i], new_labels[i]) for i in at]
        return dataclasses.replace(raw, frame=frame)
    if raw.labels is None or labels is None:
        raise DataError(f"{raw.origin}: data.clean.label_issues: relabel needs labelled rows")
    out = np.array(raw.labels, dtype=object)
    for i, label in new_labels.items():
        out[i] = label
    return dataclasses.replace(raw, labels=out.astype(str) if raw.labels.dtype.kind in "US" else out)
