"""The report a reviewer opens in a browser and the model card (leaderboards of runs: `_compare.py`).

`write_report` reads only what a run folder holds (spec.yaml, metrics.json, epochs.csv,
status.json, and the optional evidence.json and explanations.safetensors) and writes one
self-contained HTML file: every plot is a PNG embedded as base64, the CSS is inline, and
nothing refers to the network, so the file can be mailed, archived and opened offline.

The page opens with a summary for a business reader (`_report_summary.summary`: what the model
does, how good against its baseline, how sure, how fast, what to watch), then the technical
sections, a glossary and the model card. The owner's facts in the card (owner, intended use,
limitations, licence) come from the run's spec (`evaluate.card`), so a regenerated card keeps them.

Every value read from a run folder is treated as untrusted: Jinja2 escapes it in the HTML,
and the Markdown card passes it through `_md`, which neutralises markup characters.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape
from matplotlib.figure import Figure

from trustforge._fs import atomic_write_text
from trustforge.data import redact_source
from trustforge.errors import RunError, TrustForgeError
from trustforge.evaluate._compare import fit_seconds
from trustforge.evaluate._profile_view import profile_view
from trustforge.evaluate._report_plots import PLOTS, importance_agreement, learning_metric_columns
from trustforge.evaluate._report_summary import (
    GLOSSARY,
    baseline_view,
    calibration_view,
    corruption_view,
    flatten,
    headline_metric,
    importance_measures,
    intervals_view,
    metric_name,
    num,
    privacy_cost,
    privacy_view,
    robustness_view,
    speed_view,
    summary,
)
from trustforge.evaluate._tasks import TASKS, Task

__all__ = ["write_report", "render_report", "report_summary", "card_html", "load_run"]

_TEMPLATES = Path(__file__).parent / "templates"


def write_report(run_dir: Path, dest: Path | None = None) -> Path:
    """Render a run's evidence as one self-contained HTML file, and its model card as Markdown.

    Args:
        run_dir: a run folder. spec.yaml and metrics.json are required; epochs.csv,
            status.json, evidence.json and explanations.safetensors are optional, and each
            missing piece of evidence becomes a short "not measured" note.
        dest: where to write the HTML (default `run_dir/report.html`).

    Returns:
        The path of the HTML file. `run_dir/model_card.md` is written beside it.

    Raises:
        TrustForgeError: the folder is not a run (no spec.yaml or metrics.json), or one of its
            files is not valid JSON/YAML/safetensors.
    """
    run_dir = Path(run_dir)
    html, card = render_report(run_dir)
    dest = Path(dest) if dest is not None else run_dir / "report.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "model_card.md", card)
    atomic_write_text(dest, html)
    return dest


def render_report(run_dir: Path, model_uri: str | None = None) -> tuple[str, str]:
    """The report's HTML and the model card's Markdown of a run, as `write_report` writes them,
    without writing anything (the dashboard shows a run that has no report.html yet).
    `model_uri`: the registered version of this run, named when status.json names none.

    Raises:
        TrustForgeError: as `write_report`.
    """
    run = load_run(Path(run_dir))
    ctx = _context(run)
    if model_uri and not ctx.get("model_uri"):
        ctx["model_uri"] = model_uri
    env = _environment()
    card = env.get_template("model_card.md.j2").render(**ctx)
    ctx["card_html"] = _markdown_to_html(card)
    ctx["plots"] = _plots(run)
    return env.get_template("report.html.j2").render(**ctx), card


def report_summary(run_dir: Path) -> dict[str, Any]:
    """The report's summary for a business reader, without plots: {"summary": the five answers
    (what the model does, how good, how sure, how fast, what to watch; see
    `_report_summary.summary`), "headline": [(metric, value, label, interval or None)],
    "baseline": the baseline view or None}.

    Raises:
        TrustForgeError: the folder has no spec.yaml or metrics.json, or a file is corrupt.
    """
    ctx = _context(load_run(Path(run_dir)))
    return {k: ctx[k] for k in ("summary", "headline", "baseline")}


def card_html(markdown: str) -> Markup:
    """A model card's Markdown (the subset the card uses) as safe HTML: every line is escaped
    before a tag is added, so a card edited by anyone cannot inject markup."""
    return _markdown_to_html(markdown)


def load_run(run_dir: Path) -> dict[str, Any]:
    """Everything a report needs from a run folder, as plain data (tensors as numpy arrays)."""
    if not (run_dir / "spec.yaml").is_file() or not (run_dir / "metrics.json").is_file():
        raise TrustForgeError(f"{run_dir}: not a run folder (it needs spec.yaml and metrics.json)")
    try:
        spec = yaml.safe_load((run_dir / "spec.yaml").read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RunError(f"{run_dir / 'spec.yaml'}: not valid YAML ({e})") from None
    tensors: dict[str, np.ndarray] = {}
    path = run_dir / "explanations.safetensors"
    if path.is_file():
        from safetensors.numpy import load_file  # safetensors only: no pickle from a run folder

        try:
            tensors = load_file(str(path))
        except Exception as e:  # the library raises several types for a corrupt header
            raise TrustForgeError(f"{path}: not a valid safetensors file ({e})") from None
    manifest = _json_object(run_dir / "package" / "manifest.json") or {}
    return {
        "dir": run_dir,
        "spec": spec if isinstance(spec, dict) else {},
        "metrics": _json_object(run_dir / "metrics.json") or {},
        "epochs": _epochs(run_dir / "epochs.csv"),
        "status": _json_object(run_dir / "status.json") or {},
        "evidence": _json_object(run_dir / "evidence.json") or {},
        "label_issues": _json(run_dir / "label_issues.json"),  # data.clean.label_issues (None: off)
        "profile": _json_object(run_dir / "profile.json") or {},
        "tune": _json(run_dir / "tune.json"),  # the hyperparameter study this model came from (trustforge tune)
        "tensors": tensors,
        "manifest": manifest,
    }


# ---------------------------------------------------------------------------- reading


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None


def _json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path` (None: no such file); a file holding anything else is refused naming it."""
    found = _json(path)
    if found is not None and not isinstance(found, dict):
        raise RunError(f"{path}: not a JSON object (holds a {type(found).__name__}); the file is corrupt")
    return found


def _epochs(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: _float(v) for k, v in row.items() if k})
    return rows


def _float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _latency_p50(speed: Any) -> float | None:
    # The speed dict's nesting is E1's to choose; the first p50 latency in it is batch size 1.
    for key, value in flatten(speed or {}):
        if "p50" in key.lower() and "latency" in key.lower() and _float(value) is not None:
            return _float(value)
    return None


def _fit_seconds(run: dict[str, Any]) -> float | None:
    # The figure `compare`, `runs` and the dashboard show (one reading, so they never disagree).
    return fit_seconds(run["metrics"], run["evidence"], run["epochs"])


def _package_bytes(run: dict[str, Any]) -> int | None:
    for key, value in flatten(run["evidence"].get("speed") or {}):
        if key.split(".")[-1] in ("package_bytes", "package_size_bytes") and _float(value) is not None:
            return int(value)
    package = run["dir"] / "package"
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) if package.is_dir() else None


def _parameters(run: dict[str, Any]) -> int | None:
    for key, value in flatten(run["evidence"].get("speed") or {}):
        if key.split(".")[-1] == "parameters" and _float(value) is not None:
            return int(value)
    value = (run["manifest"].get("model") or {}).get("parameters")
    return int(value) if isinstance(value, (int, float)) else None


# ---------------------------------------------------------------------------- context


def _context(run: dict[str, Any]) -> dict[str, Any]:
    spec, metrics, ev = run["spec"], run["metrics"], run["evidence"]
    task = spec.get("task", "classification")
    t = _task(spec)
    data = ev.get("data") or {}
    labels = [str(x) for x in metrics.get("labels") or data.get("classes") or []]
    cal = calibration_view(ev, metrics)
    speed = speed_view(ev)
    base = baseline_view(ev, metrics)
    intervals = intervals_view(ev, metrics)
    positive = str(metrics["positive_class"]) if metrics.get("positive_class") is not None else None
    threshold = (
        metrics.get("threshold")
        if isinstance(metrics.get("threshold"), dict) and num(metrics["threshold"].get("value")) is not None
        else None
    )
    headline = [(k, metrics[k]) for k in (t.report_metrics if t is not None else ()) if num(metrics.get(k)) is not None]
    if positive:  # the positive class's own figures lead a binary task's cards
        headline = [(k, metrics[k]) for k in ("recall", "precision", "f1") if num(metrics.get(k)) is not None] + headline
    if cal and cal["ece_served"] is not None and "ece" not in dict(headline):
        headline.append(("ece", cal["ece_served"]))
    if speed and (speed["predict"] or speed["forward"]):
        headline.append(("predict_p50_ms" if speed["predict"] else "forward_p50_ms", (speed["predict"] or speed["forward"])["p50_ms"]))
    skip = {"positive_class"}
    scalars = [(k, v) for k, v in metrics.items() if num(v) is not None and k not in skip]
    ex = ev.get("explanations") or None
    ctx = {
        "name": spec.get("name") or run["dir"].name,
        "run": run["dir"].name,
        "task": task,
        # Confusion matrix, ROC/PR curves, calibration and the card's classification metrics.
        "class_probabilities": t is not None and t.probabilities,
        "model": spec.get("model") or {},
        "model_kind": (spec.get("model") or {}).get("kind", "unknown"),
        "model_uri": run["status"].get("model_uri"),
        "state": run["status"].get("state"),
        "created": run["status"].get("updated") or run["manifest"].get("created"),
        "spec": spec,
        "train": spec.get("train") or {},
        "card": _card(spec),
        "metrics": metrics,
        "headline": [(k, v, _card_label(k, positive), (intervals or {}).get("metrics", {}).get(k)) for k, v in headline],
        "scalars": scalars,
        "data": data,
        "label_issues": run.get("label_issues"),
        "tune": run.get("tune"),
        "data_profile": profile_view(run.get("profile")),
        "source": _source(data, spec),
        "labels": labels,
        "positive_class": positive,
        "threshold": threshold,
        "per_class": _per_class(metrics, labels),
        "epochs": run["epochs"],
        "learning_note": _learning_note(run),
        "speed": flatten(ev["speed"]) if ev.get("speed") else None,
        "speed_view": speed,
        "calibration": cal,
        "baseline": base,
        "model_choice": metrics.get("model_choice") if isinstance(metrics.get("model_choice"), dict) else None,  # model.kind auto
        "intervals": intervals,
        "shift": _shift_table(ev.get("shift")),
        "corruptions": _table(ev.get("corruptions")),
        "corruption_worst": corruption_view(ev),
        "robustness": robustness_view(ev),
        # Why a part of the evidence is absent, as the run recorded it (evidence.json "skipped"): a section says that, not "holds no"
        "skipped": {str(k): str(v) for k, v in ev["skipped"].items() if v} if isinstance(ev.get("skipped"), dict) else {},
        "robustness_skipped": (ev.get("skipped") or {}).get("robustness") if isinstance(ev.get("skipped"), dict) else None,
        "privacy": _privacy(metrics),
        "privacy_audit": privacy_view(ev, metrics),
        "privacy_audit_skipped": (ev.get("skipped") or {}).get("privacy_audit") if isinstance(ev.get("skipped"), dict) else None,
        "explanations": ex,
        "explanation_table": _table(ex),
        "importance_measures": _measures(ex),
        "importance_agreement": importance_agreement(run),
        "token_examples": _token_examples(ex),
        "parameters": _parameters(run),
        "package_bytes": _package_bytes(run),
        "fit_seconds": _fit_seconds(run),
        "lineage": run["manifest"].get("lineage") or {},
        "personal_data": _personal_data(run),
        "glossary": GLOSSARY,
        "fmt": _fmt,
        "md": _md,
        "metric_name": metric_name,
    }
    ctx["caveats"] = _caveats(run, labels, cal)
    ctx["headline_metric"] = headline_metric(t, metrics, base)
    ctx["privacy_cost"] = privacy_cost(ctx)  # a private model's distance to its non-private baseline, named
    ctx["summary"] = summary(ctx, run, t)
    return ctx


def _privacy(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The DP-SGD guarantee a private run recorded (`privacy_*` in its metrics), or None for a run trained without it."""
    if not isinstance(metrics.get("privacy_epsilon"), (int, float)):
        return None
    keys = ("epsilon", "delta", "target_epsilon", "accountant", "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "sampling")
    return {k: metrics.get(f"privacy_{k}") for k in keys}


def _personal_data(run: dict[str, Any]) -> dict[str, Any] | None:
    """What `data.protect` did (the manifest's `pii` entry: counts, types and column names, never a
    value), for the report's Data section and the card; None when the run did not protect its data."""
    pii = run["manifest"].get("pii")
    if not isinstance(pii, dict):
        policy = ((run["spec"].get("data") or {}).get("protect") or {}).get("pii") if isinstance(run["spec"].get("data"), dict) else None
        # A sealed run's manifest is not read here: its spec still says what was asked.
        return {"policy": policy, "sealed": True} if policy and policy != "off" else None
    personal = {str(c): str(t) for c, t in (pii.get("personal") or {}).items()}
    masked: dict[str, int] = {}
    for counts in (pii.get("masked") or {}).values():
        for kind, n in (counts or {}).items():
            masked[str(kind)] = masked.get(str(kind), 0) + int(n or 0)
    return {
        "policy": pii.get("policy"),
        "sealed": False,
        "scanned": len(pii.get("scanned") or ()),
        "personal": personal,
        "types": sorted(set(personal.values())),
        "dropped": list(pii.get("dropped") or ()),
        "excluded": list(pii.get("excluded") or ()),
        "masked": dict(sorted(masked.items())),
        "masked_total": sum(masked.values()),
    }


def _measures(ex: Any) -> dict[str, str]:
    """What each importance chart measures: the evidence's own sentence (on the section or its importance part) or the default."""
    if not isinstance(ex, dict):
        return importance_measures(None)
    inner = ex.get("feature_importance")
    return importance_measures(inner if isinstance(inner, dict) and inner.get("measures") else ex)


def _card(spec: dict[str, Any]) -> dict[str, str | None]:
    """The owner's facts from the spec's `evaluate.card` (absent in older runs: each stays a TO DO)."""
    card = (spec.get("evaluate") or {}).get("card") if isinstance(spec.get("evaluate"), dict) else None
    card = card if isinstance(card, dict) else {}
    return {
        k: str(card[k]) if isinstance(card.get(k), str) and card[k].strip() else None
        for k in ("owner", "intended_use", "limitations", "license")
    }


def _card_label(key: str, positive: str | None) -> str:
    name = metric_name(key)
    if positive and key in ("recall", "precision", "f1"):
        return f"{name} ({positive})"
    return {"predict_p50_ms": "Model.predict p50 (ms)", "forward_p50_ms": "forward pass p50 (ms)", "ece": "ECE (served)"}.get(key, name)


def _learning_note(run: dict[str, Any]) -> str | None:
    """Why the learning-curve chart has no validation panel (the panel is left out, never drawn empty)."""
    if not run["epochs"] or learning_metric_columns(run["epochs"]):
        return None
    split = ((run["spec"].get("data") or {}).get("split") or {}) if isinstance(run["spec"].get("data"), dict) else {}
    if isinstance(split, dict) and split.get("validation") == 0:
        return "No validation metric was logged: the spec holds no validation split (data.split.validation: 0), so only the training loss is drawn."
    return "No validation metric was logged, so only the loss is drawn."


def _task(spec: dict[str, Any]) -> Task | None:
    """The run's task (a spec without one is classification), or None for a name this version does not know."""
    return TASKS.get(str(spec.get("task", "classification")))


def _source(data: dict[str, Any], spec: dict[str, Any]) -> str | None:
    # The report leaves this machine: the run's spec.yaml holds the resolved local path, so it
    # is cut to the file's name like the evidence's own (older runs' evidence too).
    source = data.get("source") or (spec.get("data") or {}).get("source")
    return redact_source(str(source)) if source else None


def _per_class(metrics: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
    """Per-class precision and recall from the confusion matrix (rows: truth, columns: prediction)."""
    cm = metrics.get("confusion_matrix")
    if not cm or len(cm) != len(labels):
        return []
    cm = np.asarray(cm, dtype=np.float64)
    out = []
    for i, label in enumerate(labels):
        tp, support, predicted = cm[i, i], cm[i].sum(), cm[:, i].sum()
        out.append(
            {
                "label": label,
                "support": int(support),
                "precision": tp / predicted if predicted else None,
                "recall": tp / support if support else None,
            }
        )
    return out


def _table(section: Any) -> dict[str, Any] | None:
    """Any JSON evidence section as one table: a list of records, or a (nested) mapping flattened."""
    if not section:
        return None
    if isinstance(section, dict):
        records = next((v for v in section.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)), None)
        # `measures` sentences are printed above their charts; the table keeps the figures.
        flat = flatten({k: v for k, v in section.items() if v is not records})
        notes = [(k, v) for k, v in flat if not isinstance(v, list) and not k.endswith("measures")]
    else:
        records, notes = section if isinstance(section, list) else None, []
    if records:
        columns = list(dict.fromkeys(k for r in records for k in r))
        return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in records], "notes": notes}
    return {"columns": ["measure", "value"], "rows": [list(p) for p in notes], "notes": []}


def _shift_table(section: Any) -> dict[str, Any] | None:
    """The second test set beside the first, one metric a row; any other shape as a generic table."""
    if not (isinstance(section, dict) and isinstance(section.get("in_distribution"), dict) and isinstance(section.get("shifted"), dict)):
        return _table(section)
    inside, shifted, delta = section["in_distribution"], section["shifted"], section.get("delta") or {}
    names = [k for k in dict.fromkeys([*inside, *shifted]) if k != "n"]
    notes = [(k, section[k]) for k in ("source", "n") if k in section]
    return {
        "columns": ["metric", "test", "shift set", "difference"],
        "rows": [[k, inside.get(k), shifted.get(k), delta.get(k)] for k in names],
        "notes": notes,
    }


def _token_examples(ex: Any) -> list[list[tuple[str, str]]]:
    """Text attributions as (token, CSS background) pairs: red supports the prediction, blue opposes it."""
    out = []
    for e in (ex or {}).get("examples", []) if isinstance(ex, dict) else []:
        if isinstance(e, dict) and isinstance(e.get("tokens"), list) and isinstance(e.get("attributions"), list):
            a = np.asarray([_float(x) or 0.0 for x in e["attributions"]])
            scale = float(np.abs(a).max()) or 1.0
            out.append([(str(t), f"rgba({'220,50,47' if x > 0 else '38,139,210'},{abs(x) / scale:.2f})") for t, x in zip(e["tokens"], a)])
    return out


def _caveats(run: dict[str, Any], labels: list[str], cal: dict[str, Any] | None) -> list[str]:
    """What the evidence itself says a user should watch out for."""
    out, m, ev = [], run["metrics"], run["evidence"]
    n = m.get("n")
    if isinstance(n, int) and n < 500:
        out.append(f"The test set holds only {n} examples; metric differences of a few points may be noise.")
    for row in _per_class(m, labels):
        if row["recall"] is not None and isinstance(m.get("accuracy"), (int, float)) and row["recall"] < m["accuracy"] - 0.15:
            out.append(f"Class {row['label']} is recognised less often than the rest (recall {row['recall']:.2f}).")
    if cal and cal["ece_served"] is not None and cal["ece_served"] > 0.05:
        out.append(f"The served probabilities are miscalibrated (ECE {cal['ece_served']:.3f}); treat them as scores, not as chances.")
    max_epochs = (run["spec"].get("train") or {}).get("max_epochs")
    if m.get("epochs_trained") == max_epochs and m.get("best_epoch") == max_epochs:
        out.append("Validation loss was still improving at the last epoch; longer training may help.")
    if not ev.get("shift"):
        out.append("No second test set was evaluated: performance on data unlike the training data is unknown.")
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    """A number for people: integers as is, floats to `digits` significant places, None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def _md(value: Any) -> str:
    """An untrusted value made inert in Markdown: no HTML, no table breaks, no links, one line."""
    text = re.sub(r"\s+", " ", _fmt(value))
    return re.sub(r"([\\`*_\[\]<>|#!])", r"\\\1", text)


def _environment() -> Environment:
    # Autoescape everything but the Markdown card, which is not HTML: `_md` escapes its values instead.
    return Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=lambda name: not (name or "").endswith(".md.j2"),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _markdown_to_html(text: str) -> Markup:
    """The card's Markdown subset (headings, bullets, tables, quotes, bold, code) as HTML.

    Every line is escaped before any tag is added, so nothing in it can become markup.
    """
    out, in_list, in_table = [], False, False
    for raw in text.splitlines() + [""]:
        line = str(escape(raw.rstrip()))
        line = re.sub(r"\\([\\`*_\[\]|#!]|&lt;|&gt;)", lambda mm: {"|": "&#124;"}.get(mm.group(1), mm.group(1)), line)
        line = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", line)
        line = re.sub(r"`([^`]+)`", r"<code>\1</code>", line)
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if m := re.match(r"(#{1,4}) (.*)", line):
            level = min(len(m.group(1)) + 2, 6)
            out.append(f"<h{level}>{m.group(2)}</h{level}>")
        elif line.startswith("- "):
            out.append(("" if in_list else "<ul>") + f"<li>{line[2:]}</li>")
            in_list = True
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            tag = "td" if in_table else "th"
            out.append(("" if in_table else "<table>") + "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
            in_table = True
        elif line.startswith("&gt; "):
            out.append(f'<p class="todo">{line[5:]}</p>')
        elif line:
            out.append(f"<p>{line}</p>")
    return Markup("\n".join(out))


# ---------------------------------------------------------------------------- plots


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(run: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Every plot the evidence allows, by name: {"png": base64, "alt": text}. Absent evidence, absent plot."""
    out = {}
    for name, (fn, alt) in PLOTS.items():
        fig = fn(run)
        if fig is not None:
            out[name] = {"png": _png(fig), "alt": alt}
    return out
