"""The report's figures, each drawn from a loaded run (see `_report.load_run`).

Each function returns a `matplotlib.figure.Figure`, or None when the run holds no evidence
for it. Figures are built directly (no `pyplot`), so no global figure state is created or
leaks between reports, and they render with the Agg canvas whatever backend is configured.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trustforge.evaluate._report_summary import bounded, calibration_view, metric_name, num

__all__ = ["PLOTS", "importance_agreement", "learning_metric_columns"]

_MAX_LEGEND = 12  # beyond this many classes a legend hides the curves it explains


def learning_metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The validation metrics an epochs.csv logged with at least one value (val_loss is drawn with the loss)."""
    return [k for k in rows[0] if k.startswith("val_") and k != "val_loss" and any(r.get(k) is not None for r in rows)] if rows else []


def _series(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """epochs.csv's rows as one series, or one per member of an ensemble (its `member` column), each
    with its own epochs: (a label suffix, the rows)."""
    if not rows or rows[0].get("member") is None:
        return [("", rows)]
    members = dict.fromkeys(r.get("member") for r in rows)
    return [(f", member {m:g}" if isinstance(m, (int, float)) else "", [r for r in rows if r.get("member") == m]) for m in members]


def learning_curves(run: dict[str, Any]) -> Figure | None:
    rows = run["epochs"]
    losses = [c for c in ("train_loss", "val_loss") if rows and any(r.get(c) is not None for r in rows)]
    if not losses:
        return None
    series = [(label, part, [r.get("epoch") or i + 1 for i, r in enumerate(part)]) for label, part in _series(rows)]
    metric_cols = learning_metric_columns(rows)
    # No validation metric: one panel, never an empty second one (the report says why in a line).
    fig = Figure(figsize=(9, 3.2) if metric_cols else (5, 3.2))
    axes = np.atleast_1d(fig.subplots(1, 2 if metric_cols else 1))
    ax_loss = axes[0]
    for label, part, x in series:
        for col, style in zip(losses, ("-o", "-s")):
            ax_loss.plot(x, [r.get(col) for r in part], style, ms=3, label=col.replace("_", " ") + label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (lower is better)")
    ax_loss.legend()
    if metric_cols:
        ax_metric = axes[1]
        for label, part, x in series:
            for col in metric_cols:
                ax_metric.plot(x, [r.get(col) for r in part], "-o", ms=3, label=metric_name(col[4:]) + " (validation)" + label)
        ax_metric.set(xlabel="epoch", title="validation metric")
        if all(bounded(c[4:]) for c in metric_cols):
            ax_metric.set_ylim(0, 1.02)
        ax_metric.legend(loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    fig.tight_layout()
    return fig


def confusion_matrix(run: dict[str, Any]) -> Figure | None:
    cm = run["metrics"].get("confusion_matrix")
    labels = [str(x) for x in run["metrics"].get("labels") or []]
    if not cm or len(cm) != len(labels):
        return None
    cm = np.asarray(cm, dtype=np.float64)  # (K, K): rows truth, columns prediction
    k = len(labels)
    # Colour by row share, so a rare class's mistakes show as clearly as a common one's.
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(max(3.5, 0.45 * k + 1.5), 12)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(
        range(k), labels=labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right" if max(map(len, labels)) > 3 else "center"
    )
    ax.set_yticks(range(k), labels=labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(cm[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=8 if k > 12 else 10,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    return fig


def _curves(run: dict[str, Any], kind: str) -> dict[str, Any]:
    per_class = (((run["evidence"].get("curves") or {}).get(kind) or {}).get("per_class")) or {}
    return {str(k): v for k, v in per_class.items() if isinstance(v, dict)}


def roc_curves(run: dict[str, Any]) -> Figure | None:
    curves = _curves(run, "roc")
    if not curves:
        return None
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    for label, c in curves.items():
        auc = c.get("auc")
        ax.plot(c.get("fpr", []), c.get("tpr", []), lw=1.2, label=f"{label} (AUC {auc:.3f})" if isinstance(auc, (int, float)) else label)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=_curve_title(run, curves, "ROC"), xlim=(0, 1), ylim=(0, 1.02))
    _legend(ax, len(curves), "lower right")
    fig.tight_layout()
    return fig


def pr_curves(run: dict[str, Any]) -> Figure | None:
    curves = _curves(run, "pr")
    if not curves:
        return None
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    for label, c in curves.items():
        ap = c.get("ap")
        ax.plot(
            c.get("recall", []), c.get("precision", []), lw=1.2, label=f"{label} (AP {ap:.3f})" if isinstance(ap, (int, float)) else label
        )
    ax.set(xlabel="recall", ylabel="precision", title=_curve_title(run, curves, "precision–recall"), xlim=(0, 1), ylim=(0, 1.02))
    _legend(ax, len(curves), "lower left")
    fig.tight_layout()
    return fig


def _curve_title(run: dict[str, Any], curves: dict[str, Any], name: str) -> str:
    positive = run["metrics"].get("positive_class")
    if positive is not None and list(curves) == [str(positive)]:
        return f"{name}, positive class {positive}"
    return f"{name} (one vs rest)" if len(curves) > 1 else name


def _legend(ax, n: int, loc: str) -> None:
    if n <= _MAX_LEGEND:
        ax.legend(loc=loc, fontsize=7 if n > 4 else 9)
    ax.grid(alpha=0.3)


def reliability(run: dict[str, Any]) -> Figure | None:
    """Before and after temperature scaling side by side, the served one marked; one panel when nothing was fitted."""
    cal = calibration_view(run["evidence"], run["metrics"])
    if not cal:
        return None
    t = cal["temperature"]
    panels = [("raw model", cal["bins_before"], cal["ece_before"], cal["served"] != "temperature")]
    if cal["bins_after"]:
        scaled = f"temperature-scaled (T = {t:.3g})" if t is not None else "temperature-scaled"
        panels.append((scaled, cal["bins_after"], cal["ece_after"], cal["served"] == "temperature"))
    panels = [p for p in panels if p[1] and any(isinstance(b, dict) and b.get("count") for b in p[1])]
    if not panels:
        return None
    fig = Figure(figsize=(4.4 * len(panels), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, bins, ece, served) in zip(axes, panels):
        bins = [b for b in bins if isinstance(b, dict) and b.get("count")]
        lo = np.array([b["lo"] for b in bins], dtype=float)
        hi = np.array([b["hi"] for b in bins], dtype=float)
        acc = np.array([b["accuracy"] for b in bins], dtype=float)
        conf = np.array([b["confidence"] for b in bins], dtype=float)
        ax.bar(lo, acc, width=hi - lo, align="edge", color="#4c78a8" if served else "#9fb3c8", edgecolor="white", label="accuracy")
        ax.plot((lo + hi) / 2, conf, "D", color="#e45756", ms=5, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8, label="perfect calibration")
        ece_text = f"\nECE {ece:.3f}" if isinstance(ece, (int, float)) else ""
        ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.set_title(title + (" — SERVED" if served else "") + ece_text, fontsize=10, fontweight="bold" if served else "normal")
        if served:
            for side in ax.spines.values():
                side.set(color="#1d7a46", linewidth=2)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def corruptions(run: dict[str, Any]) -> Figure | None:
    section = run["evidence"].get("corruptions") or {}
    rows = [r for r in section.get("rows") or [] if isinstance(r, dict)] if isinstance(section, dict) else []
    clean = section.get("clean") if isinstance(section, dict) else None
    by_name: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if isinstance(r.get("severity"), (int, float)) and isinstance(r.get("value"), (int, float)):
            by_name.setdefault(str(r.get("corruption")), []).append((r["severity"], r["value"]))
    if not by_name:
        return None
    metric = str(section.get("metric", "metric"))
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    for name, points in by_name.items():
        points = sorted(points)
        if isinstance(clean, (int, float)):
            points = [(0, clean), *points]
        ax.plot(*zip(*points), "-o", ms=4, label=name)
    values = [v for pts in by_name.values() for _, v in pts] + ([clean] if num(clean) is not None else [])
    # A bounded metric runs from 0 to 1, so a drop of 0.005 looks like one; otherwise the axis
    # holds 0 (or the lowest value) and the clean value with room, never a zoom on noise.
    if bounded(metric) and min(values) >= 0 and max(values) <= 1:
        ax.set_ylim(0, 1.02)
    else:
        low, high = min(0.0, min(values)), max(values)
        ax.set_ylim(low, high + 0.1 * (high - low or 1.0))
    if num(clean) is not None:
        ax.axhline(clean, color="grey", lw=0.8, ls=":", label="clean")
    better = "lower is better" if section.get("lower_is_better") else "higher is better"
    ax.set(xlabel="severity (0 = clean)", ylabel=metric_name(metric), title=f"{metric_name(metric)} under corruption ({better})")
    ax.set_xticks(sorted({0, *(s for pts in by_name.values() for s, _ in pts)}))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def robustness_curves(run: dict[str, Any]) -> Figure | None:
    """Score against the attack budget per attack, from the clean score at 0; dashed: the plain
    twin before hardening, where the run attacked one."""
    rob = run["evidence"].get("robustness")
    if not isinstance(rob, dict) or not isinstance(rob.get("attacks"), dict):
        return None
    metric = str(rob.get("metric") or "accuracy")
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    drawn = False
    for source, style, suffix in ((rob, "-o", ""), (rob.get("before_hardening") or {}, "--s", " (before hardening)")):
        clean = num(source.get("clean"))
        for name, a in (source.get("attacks") or {}).items():
            points = [(num(p.get("epsilon")), num(p.get(metric))) for p in (a or {}).get("points") or [] if isinstance(p, dict)]
            points = sorted((e, v) for e, v in points if e is not None and v is not None)
            if not points:
                continue
            if clean is not None:
                points = [(0.0, clean), *points]
            ax.plot(*zip(*points), style, ms=4, label=str(name).upper() + suffix)
            drawn = True
    if not drawn:
        return None
    if bounded(metric):
        ax.set_ylim(0, 1.02)
    norm = {"inf": "L∞", "2": "L2"}.get(str(rob.get("norm")), str(rob.get("norm") or ""))
    ax.set(xlabel=f"ε ({norm}; {rob.get('budget') or 'budget'})", ylabel=metric_name(metric), title=f"{metric_name(metric)} under attack")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def adversarial_examples(run: dict[str, Any]) -> Figure | None:
    """A few test inputs the attack flipped: the original, the adversarial input and their difference."""
    rob = run["evidence"].get("robustness")
    ex = rob.get("examples") if isinstance(rob, dict) else None
    rows = [r for r in (ex or {}).get("rows") or [] if isinstance(r, dict) and "original" in r and "adversarial" in r]
    if not rows:
        return None
    fig = Figure(figsize=(4.2, 1.5 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for i, r in enumerate(rows):
        x0, x1 = np.asarray(r["original"], dtype=np.float64), np.asarray(r["adversarial"], dtype=np.float64)
        if x0.ndim != 3 or x0.shape != x1.shape:
            return None
        # Inputs in budget units above their lower bound: pixels in [0, 1] are drawn as they
        # are; other grids (a spectrogram in standard deviations) on the pair's own range.
        lo, hi = min(x0.min(), x1.min()), max(x0.max(), x1.max())
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        for j, x in enumerate((x0, x1)):
            axes[i, j].imshow(_as_picture((x - lo) / ((hi - lo) or 1.0)), cmap="gray", vmin=0, vmax=1, origin=_origin(run))
        d = (x1 - x0).mean(axis=0)
        m = float(np.abs(d).max()) or 1.0
        axes[i, 2].imshow(d, cmap="coolwarm", vmin=-m, vmax=m, origin=_origin(run))
        axes[i, 0].set_title(f"true {r.get('label')}", fontsize=7)
        axes[i, 1].set_title(f"adversarial: {r.get('adversarial_prediction')}", fontsize=7)
        axes[i, 2].set_title("change", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout(pad=0.4)
    return fig


def membership_roc(run: dict[str, Any]) -> Figure | None:
    """The membership-inference ROC per attack on log-log axes (the low false-positive corner is
    where an attack is dangerous, Carlini et al. 2022), with chance as the diagonal; a private
    model's non-private twin dashed in the same colours beside it."""
    audit = run["evidence"].get("privacy_audit")
    if not isinstance(audit, dict) or not isinstance(audit.get("attacks"), dict):
        return None
    fig = Figure(figsize=(4.4, 3.6))
    ax = fig.subplots()
    floor = None
    twin = audit.get("plain_twin") if isinstance(audit.get("plain_twin"), dict) else {}
    sets = [("", "-", audit["attacks"])]
    if isinstance(twin.get("attacks"), dict):  # a private model's non-private twin, dashed beside it
        sets = [("private: ", "-", audit["attacks"]), ("non-private twin: ", "--", twin["attacks"])]
    for who, style, attacks in sets:
        for i, (name, a) in enumerate(attacks.items()):
            r = (a or {}).get("roc") if isinstance(a, dict) else None
            if not isinstance(r, dict):
                continue
            points = [(num(f), num(t)) for f, t in zip(r.get("fpr") or [], r.get("tpr") or [])]
            points = [(f, t) for f, t in points if f is not None and t is not None and f > 0]
            if not points:
                continue
            floor = min(floor or 1.0, points[0][0])
            ax.plot(*zip(*points), style, color=f"C{i}", label=f"{who}{name} (AUC {num(a.get('auc')) or 0:.3f})")
    if floor is None:
        return None
    ax.plot([floor, 1], [floor, 1], ":", color="grey", label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false-positive rate", ylabel="true-positive rate")
    ax.set_title("membership inference ROC (log-log)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def _as_picture(a: np.ndarray) -> np.ndarray:
    return a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)  # (C, H, W) → (H, W) or (H, W, 3)


def _origin(run: dict[str, Any]) -> str:
    # A spectrogram is drawn with its low frequencies at the bottom, an image as it is stored.
    return "lower" if (run["evidence"].get("data") or {}).get("modality") == "audio" else "upper"


def _example_labels(run: dict[str, Any], n: int) -> list[str]:
    ex = run["evidence"].get("explanations") or {}
    examples = ex.get("examples") if isinstance(ex, dict) else None
    classes = [str(c) for c in run["metrics"].get("labels") or []]

    def name(v: Any) -> Any:  # explainers may record class indices; show the class names
        return classes[v] if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(classes) else v

    labels = []
    for i in range(n):
        e = examples[i] if isinstance(examples, list) and i < len(examples) and isinstance(examples[i], dict) else {}
        true = next((e[k] for k in ("label", "true", "target", "y_true") if k in e), None)
        pred = next((e[k] for k in ("predicted", "prediction", "y_pred") if k in e), None)
        parts = [f"true {name(true)}" if true is not None else None, f"pred {name(pred)}" if pred is not None else None]
        labels.append(", ".join(p for p in parts if p) or f"example {i + 1}")
    return labels


def image_explanations(run: dict[str, Any]) -> Figure | None:
    t = run["tensors"]
    images = t.get("images")
    if images is None or images.ndim != 4 or not len(images):
        return None
    maps = [(name, t[name]) for name in ("ig", "saliency") if name in t and len(t[name]) == len(images)]
    n = min(len(images), 40)
    per_row = min(n, 3)  # 3 examples × 3 panels: wide enough to read once scaled to the page
    cols, rows = per_row * (1 + len(maps)), math.ceil(n / per_row)
    fig = Figure(figsize=(1.6 * cols, 1.9 * rows))
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    labels = _example_labels(run, n)
    # A spectrogram is drawn as one: the first mel band (lowest frequency) at the bottom.
    ex = run["evidence"].get("explanations") or {}
    spectrogram = isinstance(ex, dict) and str(ex.get("input", "")).startswith("log-mel")
    draw = {"origin": "lower", "aspect": "auto"} if spectrogram else {}
    for i in range(n):
        r, c0 = divmod(i, per_row)
        c0 *= 1 + len(maps)
        ax = axes[r, c0]
        ax.imshow(
            _displayable(images[i]),
            cmap="magma" if spectrogram else "gray" if images.shape[1] == 1 else None,
            interpolation="nearest",
            **draw,
        )
        ax.set_title(labels[i], fontsize=9)
        for j, (name, m) in enumerate(maps, start=1):
            a = np.asarray(m[i], dtype=np.float64)
            a = a.sum(axis=0) if a.ndim == 3 else a  # (C, H, W) → (H, W): channel attributions add up
            ax = axes[r, c0 + j]
            if name == "ig":  # signed: red for, blue against the prediction, on one symmetric scale
                v = float(np.abs(a).max()) or 1.0
                ax.imshow(a, cmap="bwr", vmin=-v, vmax=v, interpolation="nearest", **draw)
                ax.set_title("IG", fontsize=9)
            else:  # saliency is a gradient magnitude
                ax.imshow(np.abs(a), cmap="magma", interpolation="nearest", **draw)
                ax.set_title("saliency", fontsize=9)
    fig.tight_layout(pad=0.4)
    return fig


def _displayable(img: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W) or (H, W, 3) in [0, 1], whatever the normalisation of the input."""
    a = np.asarray(img, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)


def feature_importance(run: dict[str, Any]) -> Figure | None:
    ex = run["evidence"].get("explanations") or {}
    found = _importances(ex) if isinstance(ex, dict) else []
    if not found:
        return None
    top = 15
    fig = Figure(figsize=(4.6 * len(found), 0.28 * min(top, max(len(v) for _, v, _ in found)) + 1.4))
    axes = np.atleast_1d(fig.subplots(1, len(found)))
    for ax, (title, values, spread) in zip(axes, found):
        items = sorted(values.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top][::-1]
        names = [str(k) for k, _ in items]
        err = None
        if spread and all(k in spread for k, _ in items):  # the 95 % interval over repeats, as error bars
            err = np.array([[max(v - spread[k][0], 0.0) for k, v in items], [max(spread[k][1] - v, 0.0) for k, v in items]])
        ax.barh(names, [v for _, v in items], color="#4c78a8", xerr=err, error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333"})
        ax.set_title(title + (" with 95 % interval" if err is not None else ""), fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


_IMPORTANCE_TITLES = {"ig": "integrated gradients (mean |attribution|)", "permutation": "permutation importance (score drop)"}


def _spread(r: dict[str, Any], k: str) -> tuple[float, float] | None:
    """A record's interval for importance `k`: `{k}_low`/`{k}_high`, or `low`/`high` for permutation."""
    for lo, hi in ((f"{k}_low", f"{k}_high"), ("low", "high") if k == "permutation" else (None, None)):
        if lo and num(r.get(lo)) is not None and num(r.get(hi)) is not None:
            return float(r[lo]), float(r[hi])
    return None


def _importances(ex: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, float], dict[str, tuple[float, float]]]]:
    """Feature importances, with a readable title per kind and, where recorded, each feature's interval.

    Either `{"columns": [{"name", "ig", "permutation", "low", "high", ...}]}` (the explainer's records)
    or any {feature: number} mapping under a key that names importance.
    """
    records = ex.get("columns")
    if isinstance(records, list) and records and all(isinstance(r, dict) and "name" in r for r in records):
        return [
            (
                title,
                {str(r["name"]): float(r[k]) for r in records if num(r.get(k)) is not None},
                {str(r["name"]): sp for r in records if (sp := _spread(r, k)) is not None},
            )
            for k, title in _IMPORTANCE_TITLES.items()
            if any(num(r.get(k)) is not None for r in records)
        ]
    out = []
    for k, v in ex.items():
        name = f"{prefix} {k}".strip().replace("_", " ")
        if isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()) and "importance" in name.lower():
            out.append((name, {str(f): float(x) for f, x in v.items()}, {}))
        elif isinstance(v, dict):
            out.extend(_importances(v, name))
    return out


def importance_agreement(run: dict[str, Any]) -> float | None:
    """Spearman rank correlation of the two importance charts over the features both rank, or None."""
    ex = run["evidence"].get("explanations") or {}
    found = _importances(ex) if isinstance(ex, dict) else []
    if len(found) < 2:
        return None
    a, b = found[0][1], found[1][1]
    common = [k for k in a if k in b]
    if len(common) < 3:
        return None
    ra = np.argsort(np.argsort([abs(a[k]) for k in common]))
    rb = np.argsort(np.argsort([abs(b[k]) for k in common]))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


# name → (figure function, alt text). The name is the <img data-plot> attribute tests look for.
def tune_history(run: dict[str, Any]) -> Figure | None:
    """The study's optimisation history (tune.json): each finished trial's value and the best so far."""
    study = run.get("tune") or {}
    rows = [r for r in study.get("history") or [] if isinstance(r, dict)]
    done = [r for r in rows if r.get("value") is not None]
    if not done:
        return None
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    ax.plot([r["trial"] for r in done], [r["value"] for r in done], "o", ms=4, alpha=0.7, label="completed trial")
    pruned = [r["trial"] for r in rows if r.get("state") == "pruned"]
    best = [(r["trial"], r["best"]) for r in rows if r.get("best") is not None]
    ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="C3", label="best so far")
    if pruned:
        ax.plot(pruned, [best[-1][1]] * len(pruned), "x", color="grey", ms=4, label="pruned (no final value)")
    ax.set(
        xlabel="trial", ylabel=f"{study.get('metric', 'value')} (validation)", title=f"optimisation history ({study.get('direction', '')})"
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


PLOTS: dict[str, tuple[Callable[[dict[str, Any]], Figure | None], str]] = {
    "learning_curves": (learning_curves, "Training and validation loss and the validation metric per epoch"),
    "confusion_matrix": (confusion_matrix, "Confusion matrix of the test split, true class by predicted class"),
    "roc": (roc_curves, "ROC curves per class, one vs rest, with their areas"),
    "pr": (pr_curves, "Precision-recall curves per class, one vs rest, with average precision"),
    "reliability": (
        reliability,
        "Reliability diagram: accuracy against confidence for the raw and the temperature-scaled model, the served one marked",
    ),
    "corruptions": (corruptions, "Test metric under each built-in corruption by severity"),
    "explanations": (image_explanations, "Explained test images: input, integrated gradients and saliency per example"),
    "feature_importance": (feature_importance, "Global feature importance, attribution-based and by permutation"),
    "robustness": (robustness_curves, "Test score against the attack budget, per attack (dashed: before hardening)"),
    "adversarial_examples": (adversarial_examples, "Test inputs the attack flipped: original, adversarial input and the change"),
    "tune_history": (tune_history, "Optimisation history of the hyperparameter study: each trial's validation value and the best so far"),
    "membership_roc": (membership_roc, "Membership-inference ROC per attack, training rows against test rows, log-log"),
}
