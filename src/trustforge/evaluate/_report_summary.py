"""The report's plain-words summary, and the evidence it reads, in today's layout and the older ones.

A run folder written by any version of TrustForge must still render, so each piece of evidence
is read through one `*_view` function that accepts the current keys (calibration before/after
with the served one named, `speed.predict`/`forward`/`load`, `baseline`, `intervals`) and the
older ones (`calibration.ece`/`ece_after`, `speed.latency_ms`), and hands the template and the
plots one shape. Every string built here is plain text: the template escapes it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "GLOSSARY",
    "baseline_view",
    "calibration_view",
    "corruption_view",
    "importance_measures",
    "interval_words",
    "intervals_view",
    "metric_name",
    "speed_view",
    "summary",
]

# Metrics whose values lie in [0, 1]: their charts run from 0 to 1 so a small drop looks small.
BOUNDED_PREFIXES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "ndcg", "hr@", "hit", "map", "mrr")

_NAMES = {
    "accuracy": "accuracy",
    "f1": "F1",
    "f1_macro": "macro F1",
    "f1_weighted": "weighted F1",
    "precision_macro": "macro precision",
    "recall_macro": "macro recall",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "log_loss": "log loss",
    "ece": "ECE",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
    "mape": "MAPE",
    "smape": "sMAPE",
}

_BASELINES = {
    "logistic_regression": "logistic regression",
    "linear_regression": "linear regression",
    "majority_class": "always predicting the most common class",
    "seasonal_naive": "the seasonal-naive forecast",
    "popularity": "recommending the most popular items",
}

_TASK_VERBS = {
    "regression": "Predicts a number",
    "forecasting": "Forecasts the next values of a series",
    "recommendation": "Ranks items for users",
}


def num(v: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def metric_name(key: str) -> str:
    return _NAMES.get(key, key.replace("_", " "))


def bounded(metric: str) -> bool:
    return str(metric).lower().startswith(BOUNDED_PREFIXES)


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _cap(text: str) -> str:
    """First letter up, the rest as is (RMSE stays RMSE)."""
    return text[:1].upper() + text[1:]


def _g(v: Any, digits: int = 3) -> str:
    x = num(v)
    return "n/a" if x is None else f"{x:.{digits}g}"


def _ms(v: Any) -> str:
    x = num(v)
    if x is None:
        return "n/a"
    return f"{x:.3g} ms" if x < 1000 else f"{x / 1000:.3g} s"


def _count(v: Any) -> str:
    x = num(v)
    return "n/a" if x is None else f"{int(x):,}"


# ---------------------------------------------------------------------------- views


def calibration_view(evidence: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Calibration before and after, which one serves, and why, from either layout.

    The current layout names `served`, `ece_before`/`ece_after`, `bins_before`/`bins_after`
    and a `reason`; older runs wrote `ece` (before), `ece_after`, `bins`, `bins_after`, and
    their predictions used the fitted temperature whenever there was one.
    """
    cal = evidence.get("calibration")
    if not isinstance(cal, dict) or not cal:
        return None
    t = num(cal.get("temperature"))
    current = any(k in cal for k in ("served", "ece_before", "bins_before", "method"))
    if current:
        before, after = num(cal.get("ece_before")), num(cal.get("ece_after"))
        bins_before, bins_after = cal.get("bins_before"), cal.get("bins_after")
        served = cal.get("served") if cal.get("served") in ("temperature", "raw") else ("temperature" if t not in (None, 1.0) else "raw")
        method = cal.get("method") if isinstance(cal.get("method"), str) else ("temperature" if t is not None else "none")
    else:
        before, after = num(cal.get("ece")), num(cal.get("ece_after"))
        bins_before, bins_after = cal.get("bins"), cal.get("bins_after")
        served = "temperature" if t is not None and after is not None else "raw"
        method = "temperature" if t is not None else "none"
    fallback = after if served == "temperature" and after is not None else before
    served_ece = num(metrics.get("ece")) if current and num(metrics.get("ece")) is not None else fallback
    return {
        "method": method,
        "served": served,
        "temperature": t,
        "reason": cal.get("reason") if isinstance(cal.get("reason"), str) and cal.get("reason") else None,
        "ece_before": before,
        "ece_after": after,
        "ece_served": served_ece,
        "log_loss_before": num(cal.get("log_loss_before")),
        "log_loss_after": num(cal.get("log_loss_after")),
        "log_loss_served": num(metrics.get("log_loss")),
        "bins_before": bins_before if isinstance(bins_before, list) else None,
        "bins_after": bins_after if isinstance(bins_after, list) else None,
        "legacy": not current,
    }


def _timing(d: Any) -> dict[str, Any] | None:
    if not isinstance(d, dict) or num(d.get("p50_ms")) is None:
        return None
    return {k: d.get(k) for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "calls", "batch")}


def speed_view(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """`predict` (Model.predict end to end), `forward` (the network alone), `load`, and the other figures.

    Older runs timed only the forward pass, as `latency_ms: {p50, p95, p99, n}` at batch 1;
    it becomes `forward` with `legacy` set, so the report can say predict was not measured.
    """
    sp = evidence.get("speed")
    if not isinstance(sp, dict) or not sp:
        return None
    predict, forward = _timing(sp.get("predict")), _timing(sp.get("forward"))
    legacy = False
    lat = sp.get("latency_ms")
    if forward is None and isinstance(lat, dict) and num(lat.get("p50")) is not None:
        forward = {"p50_ms": lat.get("p50"), "p95_ms": lat.get("p95"), "p99_ms": lat.get("p99"), "mean_ms": None, "std_ms": None}
        forward.update(calls=lat.get("n"), batch=1)
        legacy = True
    load = sp.get("load") if isinstance(sp.get("load"), dict) else None
    # `latency_ms` is the forward pass under its old name: shown once, as `forward`.
    skip = {"predict", "forward", "load"} | ({"latency_ms"} if forward is not None else set())
    other = [(k, v) for k, v in flatten({k: v for k, v in sp.items() if k not in skip}) if not isinstance(v, (list, dict))]
    return {
        "predict": predict,
        "forward": forward,
        "load": load,
        "loaded": bool(load and load.get("loaded")),
        "legacy": legacy,
        "other": other,
    }


def baseline_view(evidence: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    b = evidence.get("baseline") if isinstance(evidence.get("baseline"), dict) else metrics.get("baseline")
    if not isinstance(b, dict) or num(b.get("baseline")) is None:
        return None
    diff = b.get("difference") if isinstance(b.get("difference"), dict) else {}
    name = str(b.get("name") or "baseline")
    return {
        "name": name,
        "label": _BASELINES.get(name, name.replace("_", " ")),
        "description": b.get("description") if isinstance(b.get("description"), str) else None,
        "metric": str(b.get("metric") or ""),
        "lower_is_better": bool(b.get("lower_is_better")),
        "model": num(b.get("model")),
        "baseline": num(b.get("baseline")),
        "difference": {
            **{k: num(diff.get(k)) for k in ("value", "low", "high")},
            "degenerate": diff.get("degenerate") is True,
            "note": diff.get("note") if isinstance(diff.get("note"), str) else None,
        },
        "threshold": b.get("threshold") if isinstance(b.get("threshold"), dict) else None,
        "verdict": b.get("verdict") if b.get("verdict") in ("beats", "does_not_beat", "worse") else None,
        "sentence": b.get("sentence") if isinstance(b.get("sentence"), str) and b.get("sentence") else None,
        "metrics": {str(k): v for k, v in (b.get("metrics") or {}).items() if num(v) is not None}
        if isinstance(b.get("metrics"), dict)
        else {},
    }


def _apart(low: Any, high: Any, digits: int) -> tuple[str, str]:
    """low and high to `digits` significant digits, or more where that would print them alike:
    an interval of 0.99995 to 1 is not "1 to 1" (the figures only look degenerate when rounded)."""
    a, b = _g(low, digits), _g(high, digits)
    for d in range(digits + 1, 8):
        if a != b:
            break
        a, b = _g(low, d), _g(high, d)
    return a, b


def interval_span(low: Any, high: Any, digits: int = 3, sep: str = " to ") -> str:
    """ "low to high", each with enough digits that the two differ."""
    return sep.join(_apart(low, high, digits))


def _interval_row(v: dict[str, Any]) -> dict[str, Any]:
    """One interval as the report reads it: the figures, how it was made (`method`, the binomial
    `count` it rests on) and, for a degenerate one, the note said in place of "1 – 1"."""
    count = v.get("count") if isinstance(v.get("count"), dict) else None
    if count is not None and not all(isinstance(count.get(k), int) for k in ("successes", "trials")):
        count = None
    degenerate = v.get("degenerate") is True
    note = v.get("note") if isinstance(v.get("note"), str) and v.get("note") else None
    return {
        "value": num(v.get("value")),
        "low": num(v.get("low")),
        "high": num(v.get("high")),
        "span": interval_span(v.get("low"), v.get("high"), sep=" – "),  # the card's "0.916 – 1"
        "bounds": _apart(v.get("low"), v.get("high"), 4),  # the table's low and high
        "method": v.get("method") if isinstance(v.get("method"), str) else None,
        "count": count,
        "degenerate": degenerate,
        "note": note or ("every resample gives the same value" if degenerate else None),
    }


def intervals_view(evidence: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    iv = evidence.get("intervals") if isinstance(evidence.get("intervals"), dict) else metrics.get("intervals")
    if not isinstance(iv, dict) or not isinstance(iv.get("metrics"), dict):
        return None
    rows = {
        str(k): _interval_row(v)
        for k, v in iv["metrics"].items()
        if isinstance(v, dict) and num(v.get("low")) is not None and num(v.get("high")) is not None
    }
    if not rows:
        return None
    level = num(iv.get("level")) or 0.95
    return {
        "level": level,
        "percent": f"{level * 100:g} %",
        "resamples": iv.get("resamples"),
        "metrics": rows,
        "exact": any(r["method"] == "clopper_pearson" for r in rows.values()),
    }


def interval_words(row: dict[str, Any] | None, digits: int = 3) -> str:
    """A metric's interval in words: "0.916 to 1 (exact binomial, 42 of 42)", "0.85 to 0.96", or
    the degenerate interval's note; "" without one."""
    if not row:
        return ""
    if row.get("degenerate"):
        return str(row.get("note") or "every resample gives the same value")
    text = interval_span(row["low"], row["high"], digits)
    c = row.get("count")
    return text + (f" (exact binomial, {c['successes']} of {c['trials']})" if c else "")


def corruption_view(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The corruption that hurts most at its strongest severity, with the clean value beside it."""
    section = evidence.get("corruptions")
    if not isinstance(section, dict):
        return None
    rows = [r for r in section.get("rows") or [] if isinstance(r, dict) and num(r.get("value")) is not None]
    clean = num(section.get("clean"))
    if not rows or clean is None:
        return None
    lower = bool(section.get("lower_is_better"))
    worst = max(rows, key=lambda r: (num(r["value"]) - clean) if lower else (clean - num(r["value"])))
    return {"metric": str(section.get("metric") or "metric"), "clean": clean, "row": worst, "lower_is_better": lower}


def edited_words(before: Any, after: Any) -> list[dict[str, str]]:
    """The words of a text an edit attack changed, in order: `[{"before", "after"}]` (a word
    dropped or inserted has an empty side). Non-text values give no words."""
    import difflib

    if not isinstance(before, str) or not isinstance(after, str):
        return []
    a, b = before.split(), after.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            out.append({"before": " ".join(a[i1:i2]), "after": " ".join(b[j1:j2])})
    return out


def robustness_view(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The adversarial evaluation as the report and the card show it: per attack its label, its
    score at each budget (with the before-hardening one when a plain twin was attacked), the budget
    at which the score halves (regression: the error doubles), and the median smallest flipping budget."""
    rob = evidence.get("robustness")
    if not isinstance(rob, dict) or not isinstance(rob.get("attacks"), dict):
        return None
    metric = str(rob.get("metric") or "accuracy")
    before = (rob.get("before_hardening") or {}).get("attacks") or {}
    attacks = []
    for name, a in rob["attacks"].items():
        if not isinstance(a, dict):
            continue
        label = str(name).upper() + (f"-{rob['steps']}" if name == "pgd" and rob.get("steps") else "")
        old = {num(p.get("epsilon")): p.get(metric) for p in (before.get(name) or {}).get("points") or [] if isinstance(p, dict)}
        rows = [
            {
                "epsilon": p.get("epsilon"),
                "value": p.get(metric),
                "success_rate": p.get("success_rate"),
                "before": old.get(num(p.get("epsilon"))),
            }
            for p in a.get("points") or []
            if isinstance(p, dict)
        ]
        halving = num(a.get("halving_epsilon"))
        attacks.append({"name": name, "label": label, "rows": rows, "halving": halving, "seconds": num(a.get("seconds"))})
    strongest = next((a for a in attacks if a["name"] == "pgd"), attacks[-1] if attacks else None)
    examples = rob.get("examples") if isinstance(rob.get("examples"), dict) else {}
    table_rows = [r for r in examples.get("rows") or [] if isinstance(r, dict) and r.get("changes")]
    if rob.get("norm") == "edits":  # text: show the words the attack edited, not the whole texts
        table_rows = [
            {**r, "changes": [{**c, "words": edited_words(c.get("before"), c.get("after"))} for c in r["changes"]]} for r in table_rows
        ]
    return {
        "metric": metric,
        "norm": {"inf": "L∞", "2": "L2"}.get(str(rob.get("norm")), str(rob.get("norm") or "")),
        "budget": str(rob.get("budget") or ""),
        "target": str(rob.get("target") or ("the true labels" if metric == "accuracy" else "the true values")),
        "clean": num(rob.get("clean")),
        "before_clean": num((rob.get("before_hardening") or {}).get("clean")),
        "rows": rob.get("rows"),
        "attacks": attacks,
        "strongest": strongest,
        "flip": rob.get("smallest_flip") if isinstance(rob.get("smallest_flip"), dict) else None,
        "hardened": str(rob.get("hardened") or "not hardened"),
        # The defence in words, or None for a model trained without one (the templates say so in a sentence of their own).
        "hardened_by": None if str(rob.get("hardened") or "not hardened") == "not hardened" else str(rob["hardened"]),
        "halves": "halves" if metric == "accuracy" else "doubles",
        "examples": examples,
        "table_examples": table_rows,
    }


_ATTACK_LABELS = {"loss": "loss threshold (Yeom et al.)", "confidence": "calibrated confidence (LiRA-style)"}


def _attack_rows(attacks: Any) -> list[dict[str, Any]]:
    """Per attack of an audit: its label, AUC with its interval, the true-positive rates at 1 % and 0.1 % false positives
    (None where the sample does not resolve them), Yeom's advantage and the note."""
    rows = []
    for name, a in (attacks or {}).items() if isinstance(attacks, dict) else ():
        if not isinstance(a, dict) or num(a.get("auc")) is None:
            continue
        at = a.get("tpr_at_fpr") if isinstance(a.get("tpr_at_fpr"), dict) else {}
        interval = a.get("auc_interval") if isinstance(a.get("auc_interval"), list) and len(a["auc_interval"]) == 2 else [None, None]
        rows.append(
            {
                "name": str(name),
                "label": _ATTACK_LABELS.get(str(name), str(name)),
                "auc": num(a["auc"]),
                "low": num(interval[0]),
                "high": num(interval[1]),
                "tpr_1": num((at.get("0.01") or {}).get("tpr")),
                "tpr_01": num((at.get("0.001") or {}).get("tpr")),
                "advantage": num((a.get("yeom") or {}).get("advantage")) if isinstance(a.get("yeom"), dict) else None,
                "note": str(a.get("note") or ""),
            }
        )
    return rows


def _verdict(attacks: list[dict[str, Any]]) -> str:
    worst = max(attacks, key=lambda a: a["auc"])
    low = worst["low"]
    if low is not None and low > 0.5:
        return f"the {worst['label']} attack tells training rows from unseen ones better than chance (AUC {worst['auc']:.3f})"
    return f"no attack tells training rows from unseen ones measurably better than chance on this sample (best AUC {worst['auc']:.3f})"


def privacy_view(evidence: dict[str, Any], metrics: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The membership-inference audit as the report and the card show it: per attack its AUC with
    its interval, the true-positive rates at 1 % and 0.1 % false positives (None where the sample
    does not resolve them), a verdict in words, and how the model was trained (private or not).

    A private run that attacked its non-private twin too adds `twin`: the same figures for the
    twin, both models' test metric and fit seconds (from `metrics`), side by side."""
    audit = evidence.get("privacy_audit")
    if not isinstance(audit, dict) or not isinstance(audit.get("attacks"), dict):
        return None
    attacks = _attack_rows(audit["attacks"])
    if not attacks:
        return None
    training = audit.get("training") if isinstance(audit.get("training"), dict) else {}
    if training.get("private"):
        parts = [
            f"{k} {training[k]}" for k in ("epsilon", "delta", "max_grad_norm", "noise_multiplier") if num(training.get(k)) is not None
        ]
        # Completes "The model was ..." in the report and stands alone in the card, as the non-private text does.
        trained = "trained with differential privacy" + (f" ({', '.join(parts)})" if parts else "")
    else:
        trained = "trained without differential privacy"
    return {
        "attacks": attacks,
        "members": audit.get("members"),
        "non_members": audit.get("non_members"),
        "verdict": _verdict(attacks),
        "trained": trained,
        "seconds": num(audit.get("seconds")),
        "twin": _twin_view(audit, attacks, metrics or {}),
    }


def _twin_view(audit: dict[str, Any], attacks: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The private model and its non-private twin side by side (None when the audit attacked no twin)."""
    twin = audit.get("plain_twin")
    if not isinstance(twin, dict):
        return None
    twin_attacks = {a["name"]: a for a in _attack_rows(twin.get("attacks"))}
    if not twin_attacks:
        return None
    mine, theirs = audit.get("metric") or {}, twin.get("metric") or {}
    name = str(mine.get("name") or theirs.get("name") or "")
    value, twin_value = num(mine.get("value")), num(theirs.get("value"))
    pairs = [{"label": a["label"], "private": a, "plain": twin_attacks[a["name"]]} for a in attacks if a["name"] in twin_attacks]
    return {
        "metric": name,
        "value": value,
        "twin_value": twin_value,
        "cost": _twin_lead(name, value, twin_value),
        "pairs": pairs,
        "verdict": _verdict(list(twin_attacks.values())),
        "fit_seconds": num(metrics.get("fit_seconds")),
        "twin_fit_seconds": num(metrics.get("plain_twin_fit_seconds")),
        "cost_ratio": num(metrics.get("dp_sgd_cost_ratio")),
    }


def _twin_lead(metric: str, value: float | None, twin_value: float | None) -> float | None:
    """How much better the non-private twin scored than the private model, in `metric`'s own
    direction (above 0: privacy cost the model that much; 0 or below: no measurable cost)."""
    if value is None or twin_value is None:
        return None
    from trustforge.evaluate._compare import metric_direction

    return value - twin_value if metric_direction(metric) == "lower" else twin_value - value


def importance_measures(section: Any) -> dict[str, str]:
    """What each importance chart measures, in one sentence each (the evidence's own when it has one)."""
    out = {
        "ig": "Integrated gradients measure how strongly the model's output for its predicted class responds to each column, "
        "relative to an average input: what the model looks at, whether or not that helps it be right.",
        "permutation": "Permutation importance measures how much the test score drops when one column's values are shuffled "
        "among rows: what the model needs to stay accurate. A column the model uses but that is redundant with another scores low here.",
    }
    measures = section.get("measures") if isinstance(section, dict) else None
    if isinstance(measures, str) and measures:
        out["permutation"] = measures
    elif isinstance(measures, dict):
        out.update({str(k): v for k, v in measures.items() if isinstance(v, str) and v})
    # The report prints each sentence after its chart's label: an evidence sentence that opens with
    # that label ("Permutation importance: how much ...") loses it, so the label is not said twice.
    labels = {"ig": "Integrated gradients: ", "permutation": "Permutation importance: "}
    return {k: v[len(labels[k]) :] if k in labels and v.startswith(labels[k]) else v for k, v in out.items()}


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, leaf) pairs, so evidence of any nesting becomes a table."""
    if not isinstance(d, dict):
        return [(prefix, d)]
    out = []
    for k, v in d.items():
        out.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# ---------------------------------------------------------------------------- summary


def headline_metric(task: Any, metrics: dict[str, Any], baseline: dict[str, Any] | None) -> str | None:
    """The one figure the summary leads with: the baseline's metric, else the task's leaderboard metric."""
    if baseline and baseline["metric"] and (num(metrics.get(baseline["metric"])) is not None or baseline["model"] is not None):
        return baseline["metric"]
    if task is not None:
        name = task.leaderboard_metric(metrics)
        if num(metrics.get(name)) is not None:
            return name
    return next((k for k, v in metrics.items() if num(v) is not None and k not in ("n", "epochs_trained", "best_epoch")), None)


def _interval_text(iv: dict[str, Any] | None, key: str) -> str:
    row = (iv or {}).get("metrics", {}).get(key)
    if not row:
        return ""
    return f" ({row['note']})" if row.get("degenerate") else f" (95 % interval {interval_words(row)})"


def summary(ctx: dict[str, Any], run: dict[str, Any], task: Any) -> list[dict[str, Any]]:
    """Five plain answers: what the model does, how good, how sure, how fast, what to watch.

    Each is {"key", "title", "figure", "figure_label", "text": [sentences], "badge": (text, tone) | None,
    "points": [bullet points]}.
    """
    return [
        _does(ctx),
        _good(ctx, run, task),
        _sure(ctx),
        _fast(ctx),
        _watch(ctx, run),
    ]


def _row(key: str, title: str, figure: str, label: str, text: list[str], badge=None, items=None) -> dict[str, Any]:
    return {
        "key": key,
        "title": title,
        "figure": figure,
        "figure_label": label,
        "text": [t for t in text if t],
        "badge": badge,
        "points": items or [],
    }


def _does(ctx: dict[str, Any]) -> dict[str, Any]:
    task, labels, data, metrics = ctx["task"], ctx["labels"], ctx["data"], ctx["metrics"]
    source = f" ({ctx['source']})" if ctx["source"] else ""
    modality = data.get("modality")
    columns = data.get("columns") if isinstance(data.get("columns"), list) else []
    inputs = f"{len(columns)} table columns" if modality == "table" and columns else f"{modality} inputs" if modality else "its inputs"
    pos = ctx["positive_class"]
    if task == "classification" and len(labels) == 2 and pos in labels:
        other = next(x for x in labels if x != pos)
        text = [f"Tells {pos} (the positive class) from {other} cases, from {inputs}{source}."]
    elif task == "classification" and len(labels) == 2:
        text = [f"Classifies each case as {labels[0]} or {labels[1]}, from {inputs}{source}; no positive class is named in this run."]
    elif task == "classification" and labels:
        shown = ", ".join(labels[:12]) + (f" and {len(labels) - 12} more" if len(labels) > 12 else "")
        text = [f"Classifies {inputs}{source} into {len(labels)} classes: {shown}."]
    else:
        target = (ctx["spec"].get("data") or {}).get("target") if isinstance(ctx["spec"].get("data"), dict) else None
        verb = _TASK_VERBS.get(task, "Learns " + str(task))
        if task == "regression" and isinstance(target, str) and target:
            verb = f"Predicts {target} (a number)"
        text = [f"{verb} from {inputs}{source}."]
    sizes = data.get("split_sizes") if isinstance(data.get("split_sizes"), dict) else {}
    if sizes:
        val = num(sizes.get("validation"))
        text.append(
            f"Trained on {_count(sizes.get('train'))} examples"
            + (f" (+{_count(data['augmented_copies'])} augmented copies)" if num(data.get("augmented_copies")) else "")
            + (f", tuned on {_count(val)}" if val else "")
            + f", and tested on {_count(sizes.get('test') or metrics.get('n'))} held out from "
            + ("both." if val else "training.")
        )
    th = ctx["threshold"]
    if th and pos:
        rule, chosen = th.get("rule"), th.get("chosen_on")
        how = "the default" if chosen == "default" or rule == "0.5" else f"rule {rule}, chosen on the {chosen} split"
        text.append(f"It calls a case {pos} when its probability is at least {_g(th.get('value'))} ({how}).")
        if isinstance(th.get("note"), str) and th["note"] and chosen == "default" and not _is_number(rule):  # why a rule fell back
            text.append(_cap(th["note"].rstrip(".")) + ".")
    elif task == "classification" and labels:
        text.append("Each example gets the class with the highest probability.")
    figure = f"{len(labels)} classes" if task == "classification" and labels else str(task)
    return _row("does", "What it does", figure, "binary" if len(labels) == 2 else "", text)


def _good(ctx: dict[str, Any], run: dict[str, Any], task: Any) -> dict[str, Any]:
    metrics, iv, base = ctx["metrics"], ctx["intervals"], ctx["baseline"]
    key = ctx["headline_metric"]
    if key is None:
        return _row("good", "How good", "n/a", "", ["No test metric was recorded."])
    value = num(metrics.get(key))
    if value is None and base:
        value = base["model"]
    n = metrics.get("n")
    on = f" on the {_count(n)} test examples" if num(n) is not None else " on the test split"
    text = [f"{_cap(metric_name(key))} {_g(value)}{on}{_interval_text(iv, key)}."]
    if not bounded(key) and key in ("rmse", "mae", "log_loss", "mape", "smape"):
        text[0] += " Lower is better."
    pos = ctx["positive_class"]
    if pos and num(metrics.get("recall")) is not None:
        recall, precision = num(metrics["recall"]), num(metrics.get("precision"))
        ci = (iv or {}).get("metrics", {}).get("recall")
        s = f"It finds {recall * 100:.1f} % of {pos} cases (recall {_g(recall)}" + (
            (f"; {ci['note']})" if ci.get("degenerate") else f", 95 % interval {interval_words(ci)})") if ci else ")"
        )
        if precision is not None:
            s += f"; {precision * 100:.1f} % of the cases it calls {pos} are {pos} (precision {_g(precision)})"
        text.append(s + ".")
    badge = None
    majority = majority_view(metrics, iv)
    if majority and not majority["clearly_above"]:
        text.append(majority["sentence"])
    if base:
        sentence = base["sentence"] or _baseline_sentence(base)
        if majority and not majority["clearly_above"]:  # its majority-class caveat is said above, with PR AUC's figure
            sentence = sentence.split(" But always predicting ")[0]
        text.append(sentence)
        d = base["difference"]
        if d["value"] is not None and not base["sentence"]:
            text.append(
                f"{_cap(metric_name(base['metric']))}: model {_g(base['model'])}, baseline {_g(base['baseline'])}, "
                f"difference {d['value']:+.3g}"
                + (
                    f" ({d['note']})"
                    if d["degenerate"] and d["note"]
                    else (f" (95 % interval {d['low']:+.3g} to {d['high']:+.3g})" if d["low"] is not None and d["high"] is not None else "")
                )
                + "."
            )
        badge = {
            "beats": ("beats its baseline", "good"),
            "does_not_beat": ("does not beat its baseline", "warn"),
            "worse": ("worse than its baseline", "bad"),
        }.get(base["verdict"])
        if ctx.get("privacy_cost"):  # a private model pays for its guarantee
            text.append(ctx["privacy_cost"])
            if _pays_for_privacy(ctx):  # not where its non-private twin did no better: the gap is not privacy's
                badge = ("privacy cost: " + badge[0], "warn") if badge else badge
    else:
        text.append("No baseline was trained in this run, so there is no simpler model to compare with.")
    if majority and not majority["clearly_above"]:  # no verdict badge reads as good news beside it
        badge = (majority["badge"], "bad" if majority["below"] else "warn")
    return _row("good", "How good", _g(value), metric_name(key), text, badge)


def privacy_cost(ctx: dict[str, Any]) -> str | None:
    """Why a private model trails its (non-private) baseline, in a sentence: the guarantee's price
    as measured against the non-private twin, in the metric's own unit, and apart from it the
    twin's own gap to the baseline (a simpler model can beat the network with or without privacy);
    where the twin did no better, that privacy shows no measurable cost; without a twin, that the
    run cannot say how much of the gap privacy accounts for. None unless the model is private and
    does not beat its baseline."""
    p, base = ctx.get("privacy"), ctx.get("baseline")
    if not p or not base or base["verdict"] not in ("does_not_beat", "worse"):
        return None
    eps, delta = _g(p.get("epsilon"), 3), _g(p.get("delta"))
    head = f"The baseline is trained without privacy; this model was trained with differential privacy (ε {eps} at δ {delta})"
    twin = _measured_twin(ctx)
    if twin is None:
        return (
            f"{head}, and the clipping and noise that buy the guarantee cost {metric_name(base['metric'])}; no non-private twin "
            "was measured (train.privacy.compare), so how much of the gap to the baseline is privacy's is not known."
        )
    name = metric_name(twin["metric"])
    if twin["cost"] <= 0:  # the twin did no better: what the model trails its baseline by is not privacy's
        return (
            f"{head}, but that shows no measurable cost on this split: the private model scored {name} {_g(twin['value'])} against "
            f"{_g(twin['twin_value'])} for the same network trained without differential privacy (its non-private twin)."
        )
    s = (
        f"{head}: the same network trained without differential privacy (its non-private twin) reaches {name} {_g(twin['twin_value'])} "
        f"against this model's {_g(twin['value'])}, so privacy costs {twin['cost']:.3g} in {name}"
    )
    behind = _twin_lead(twin["metric"], twin["twin_value"], num(base.get("baseline"))) if base.get("metric") == twin["metric"] else None
    if behind is None:
        return s + "."
    if behind > 0:  # the twin trails the baseline too: that part of the gap is the network's, not privacy's
        return s + f"; the twin itself trails the baseline's {_g(base['baseline'])} by {behind:.3g} in {name}, a gap that is not privacy's."
    return s + f"; the twin itself scores at least the baseline's {_g(base['baseline'])}, so the gap to the baseline is privacy's."


def _measured_twin(ctx: dict[str, Any]) -> dict[str, Any] | None:
    """The privacy audit's twin view when both models' test metric were measured, else None."""
    twin = (ctx.get("privacy_audit") or {}).get("twin")
    return twin if twin and twin.get("cost") is not None else None


def _pays_for_privacy(ctx: dict[str, Any]) -> bool:
    """Whether the gap to the baseline may be put down to privacy: no twin was measured (the
    guarantee's known price), or the twin scored better."""
    twin = _measured_twin(ctx)
    return twin is None or twin["cost"] > 0


def majority_view(metrics: dict[str, Any], iv: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Accuracy against always predicting the test split's commonest class, for classification.

    From `majority_class`/`majority_class_accuracy` in metrics.json, else (older runs) from the
    per-class `support` and `labels`. `clearly_above` is whether accuracy (its interval's low end
    where measured) is above that rate; None when accuracy or the class counts were not recorded.
    """
    acc = num(metrics.get("accuracy"))
    name, rate = metrics.get("majority_class"), num(metrics.get("majority_class_accuracy"))
    if rate is None:
        support, labels = metrics.get("support"), metrics.get("labels")
        if isinstance(support, list) and isinstance(labels, list) and len(support) == len(labels) and support:
            counts = [num(c) or 0.0 for c in support]
            if sum(counts) > 0:
                i = max(range(len(counts)), key=counts.__getitem__)
                name, rate = labels[i], counts[i] / sum(counts)
    if acc is None or rate is None or name is None:
        return None
    low = num(((iv or {}).get("metrics", {}).get("accuracy") or {}).get("low"))
    clearly_above = (low if low is not None else acc) > rate
    below = acc < rate
    where = "below" if below else ("level with" if acc == rate else "not clearly above")
    sentence = f"Accuracy {_g(acc)} is {where} always predicting '{name}' ({_g(rate)})"
    if not clearly_above:
        other = next((k for k in ("pr_auc", "roc_auc", "f1_macro", "f1") if num(metrics.get(k)) is not None), None)
        sentence += ": accuracy says little on this " + ("imbalanced split" if rate >= 0.6 else "split")
        sentence += f"; see {metric_name(other)} ({_g(metrics[other])})." if other else "."
    else:
        sentence += "."
    return {
        "name": str(name),
        "rate": rate,
        "accuracy": acc,
        "clearly_above": clearly_above,
        "below": below,
        "sentence": sentence,
        "badge": f"{where} always predicting '{name}'",
    }


def _baseline_sentence(base: dict[str, Any]) -> str:
    verdict = {"beats": "beats", "does_not_beat": "does not clearly beat", "worse": "is worse than"}.get(
        base["verdict"], "is compared with"
    )
    return f"The model {verdict} its baseline, {base['label']}."


def _sure(ctx: dict[str, Any]) -> dict[str, Any]:
    cal = ctx["calibration"]
    if not ctx["class_probabilities"]:
        return _row(
            "sure", "How sure", "—", "", ["Calibration applies to classification only: this model outputs values, not probabilities."]
        )
    if not cal:
        return _row("sure", "How sure", "n/a", "", ["Calibration was not measured in this run."])
    text = []
    if cal["served"] == "temperature":
        text.append(f"Served probabilities are temperature-scaled (T = {_g(cal['temperature'])}, fitted on the validation split).")
    else:
        text.append("Served probabilities are the model's own (no temperature scaling).")
    if cal["reason"]:
        text.append(f"Why: {cal['reason']}" + ("" if cal["reason"].rstrip().endswith((".", "!", "?")) else "."))
    ece = cal["ece_served"]
    if ece is not None:
        text.append(
            f"On the test set, confidence and accuracy differ by {ece * 100:.1f} points on average (ECE {_g(ece)}): "
            + ("close." if ece <= 0.05 else "treat the probabilities with care.")
        )
    if cal["ece_after"] is not None and cal["ece_before"] is not None:
        text.append(f"ECE {_g(cal['ece_before'])} before scaling, {_g(cal['ece_after'])} after.")
    if cal["log_loss_before"] is not None and cal["log_loss_after"] is not None:
        text.append(f"Log loss {_g(cal['log_loss_before'])} before, {_g(cal['log_loss_after'])} after.")
    badge = ("served: temperature-scaled", "info") if cal["served"] == "temperature" else ("served: raw probabilities", "info")
    return _row("sure", "How sure", _g(ece), "ECE (served model)", text, badge)


def _fast(ctx: dict[str, Any]) -> dict[str, Any]:
    sp = ctx["speed_view"]
    if not sp or not (sp["predict"] or sp["forward"]):
        return _row("fast", "How fast", "n/a", "", ["Speed was not measured in this run."])
    text, badge = [], None
    p, f = sp["predict"], sp["forward"]
    if p:
        text.append(
            f"Model.predict, as a user calls it, takes {_ms(p['p50_ms'])} per row at the median "
            f"(p95 {_ms(p['p95_ms'])}; {_count(p['calls'])} timed calls of one raw row each)."
        )
        figure, label = _ms(p["p50_ms"]), "Model.predict p50"
    else:
        figure, label = _ms(f["p50_ms"]), "forward pass p50"
    if f:
        text.append(f"The network alone (forward pass) takes {_ms(f['p50_ms'])}.")
    if not p:
        text.append("Model.predict end to end (reading, preprocessing, decoding), which users call, was not timed in this run.")
    load = sp["load"]
    if sp["loaded"]:
        badge = ("measured on a loaded machine", "warn")
        text.append(
            f"The machine was busy (load average {_g(load.get('load_average'))} on {_count(load.get('cores'))} cores): "
            "an idle one is likely faster."
        )
    return _row("fast", "How fast", figure, label, text, badge)


def _watch(ctx: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    items = []
    ref = ((run["manifest"].get("monitor") or {}).get("reference")) if isinstance(run["manifest"].get("monitor"), dict) else None
    if isinstance(ref, dict):
        rows = ref.get("rows") if isinstance(ref.get("rows"), dict) else {}
        features = ref.get("features") if isinstance(ref.get("features"), dict) else {}
        skipped = ref.get("skipped") if isinstance(ref.get("skipped"), dict) else {}
        why = str(skipped.get("inputs") or "no input features were recorded").rstrip(".")
        modality = ref.get("modality") or "these"
        if features:
            s = f"Drift: served inputs are compared with {_count(rows.get('inputs'))} training rows on {len(features)} features"
        elif ref.get("prediction"):
            s = f"Drift: served inputs are not monitored ({why})"
        else:  # nothing to compare: say so, not "0 training rows on 0 features"
            s = (
                f"Drift: not monitored for {modality} inputs ({why}; nor predictions: "
                f"{str(skipped.get('prediction') or 'none were recorded').rstrip('.')}), so `trustforge monitor` cannot "
                "watch this model" + (", and retraining will not change that" if why.startswith("no monitored features") else "")
            )
        if ref.get("prediction"):
            src = ref.get("predictions_from")
            s += f", and served predictions with {_count(rows.get('predictions'))} predictions " + (
                f"on the {src} split" if isinstance(src, str) else "(the split they came from is not recorded)"
            )
        items.append(s + ".")
    elif run["manifest"]:
        items.append("Drift: the package holds no reference statistics, so `trustforge monitor` cannot watch this model.")
    worst = ctx["corruption_worst"]
    if worst:
        r = worst["row"]
        level = f", {r.get('parameter')} {_g(r.get('level'))}" if r.get("parameter") and len(str(r.get("parameter"))) <= 40 else ""
        items.append(
            f"Weakest under {r.get('corruption')} (severity {r.get('severity')}{level}): "
            f"{metric_name(worst['metric'])} {_g(worst['clean'])} clean, {_g(r.get('value'))} corrupted."
        )
    for part, reason in (run["evidence"].get("skipped") or {}).items() if isinstance(run["evidence"].get("skipped"), dict) else ():
        items.append(f"Skipped: {part}: {reason}")
    for what, missing in (
        ("baseline", not ctx["baseline"]),
        ("95 % intervals", not ctx["intervals"]),
        ("speed", not ctx["speed_view"]),
        ("calibration", ctx["class_probabilities"] and not ctx["calibration"]),
    ):
        if missing:
            items.append(f"Not measured: {what}.")
    cal = ctx["calibration"]
    if cal and cal["served"] == "temperature" and cal["log_loss_after"] is not None and cal["log_loss_before"] is not None:
        if cal["log_loss_after"] > cal["log_loss_before"]:
            items.append(
                f"The served temperature makes test log loss worse ({_g(cal['log_loss_before'])} raw, {_g(cal['log_loss_after'])} scaled)."
            )
    items.extend(ctx["caveats"])
    return _row("watch", "What to watch", str(len(items)), "points to check", [], None, items)


# ---------------------------------------------------------------------------- glossary

GLOSSARY: list[tuple[str, str]] = [
    ("accuracy", "The share of test examples whose predicted class is the true one."),
    (
        "baseline",
        "A simple model trained on the same data split (for example logistic regression or always predicting the most common class). "
        "A model that does not beat its baseline adds complexity without adding accuracy.",
    ),
    (
        "bootstrap interval (95 %)",
        "The test set is resampled with replacement many times and the metric recomputed each time; the middle 95 % of those values "
        "is the interval. A wide interval means the test set is too small to pin the figure down. When every resample gives the same "
        "value (every test example right, say) there is no interval to show, and the report says so instead of printing 1 – 1.",
    ),
    (
        "exact binomial interval (Clopper–Pearson)",
        "For a share of examples (accuracy, precision, recall): the range of true shares that could give the count seen, say 42 of 42, "
        "at least 95 % of the time. It stays honest when every example is right: 42 of 42 gives 0.916 to 1, not 1 to 1.",
    ),
    ("calibration", "Whether stated probabilities mean what they say: of the cases given 80 % confidence, about 80 % should be right."),
    (
        "ECE (expected calibration error)",
        "The average gap between confidence and accuracy, over bins of similar confidence, weighted by how many examples fall in each. "
        "0 is perfect; 0.05 means confidence is off by 5 points on average.",
    ),
    (
        "temperature scaling",
        "Dividing the model's scores by one number T, fitted on the validation split, to make probabilities less (T > 1) or more (T < 1) "
        "confident. It never changes which class is predicted.",
    ),
    ("log loss", "The average of −log(probability given to the true class). It punishes confident mistakes heavily; lower is better."),
    ("precision", "Of the cases the model calls positive, the share that are."),
    ("recall", "Of the positive cases, the share the model finds."),
    ("F1", "The harmonic mean of precision and recall."),
    (
        "ROC AUC",
        "The probability that a random positive case gets a higher score than a random negative one: 0.5 is guessing, 1 is perfect.",
    ),
    (
        "positive class",
        "In a yes/no task, the class the model is looking for (for example malignant); precision, recall and F1 are about it.",
    ),
    (
        "threshold",
        "The probability of the positive class at or above which a case is called positive. 0.5 is the default; a lower one finds more cases at the cost of more false alarms.",
    ),
    ("p50 / p95 / p99", "Percentiles of the time per call: half of the calls are faster than p50, 95 % faster than p95."),
    ("Model.predict", "The call users make: it reads raw input, preprocesses it, runs the network and decodes the answer."),
    ("forward pass", "The network's computation alone, on already prepared tensors; a lower bound on Model.predict."),
    (
        "loaded machine",
        "The load average was at or above the number of cores while timing, so other work competed for the processor and times are inflated.",
    ),
    (
        "PSI (population stability index)",
        "A distance between the binned distribution of a feature in training and in served data. It grows with chance differences in small windows.",
    ),
    (
        "Wasserstein distance",
        "How far values must move to turn one distribution into the other, here divided by the training standard deviation.",
    ),
    (
        "p-value",
        "The probability of a difference at least this large if nothing had changed. A small p-value (below 0.05) is evidence of drift.",
    ),
    ("drift", "A change between the data the model was trained on and the data it now sees, which can make its figures out of date."),
    (
        "corruption",
        "A built-in distortion of the test inputs (noise, blur, missing values) at increasing severity, to see how gracefully the model degrades.",
    ),
    ("integrated gradients", "An attribution method: how much each input feature moved the output away from a neutral baseline input."),
    ("permutation importance", "How much the test score drops when one feature's values are shuffled among rows."),
]
