"""The HTML report and model card, rendered from real trained runs with plausible evidence.

The evidence producers (speed, calibration, shift, explanations) are tested in their own files;
here a helper trains a tiny model and writes evidence.json in the documented layout with
figures measured on that model (sklearn curves, Captum attributions), so the report is
exercised on real data, not hand-typed numbers.
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

import trustforge
from trustforge.data import prepare
from trustforge.evaluate import compare_runs, compute_metrics, outputs_to_proba
from trustforge.evaluate._report import write_report
from trustforge.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

CHROMIUM = Path("/usr/bin/chromium")
IMAGE_PLOTS = {"learning_curves", "confusion_matrix", "roc", "pr", "reliability", "corruptions", "explanations"}
TABLE_PLOTS = {"learning_curves", "confusion_matrix", "roc", "pr", "reliability", "corruptions", "feature_importance"}


# ---------------------------------------------------------------------------- fixture runs


def _bins(proba: np.ndarray, y: np.ndarray, n: int = 10) -> tuple[list[dict], float]:
    conf, correct = proba.max(1), (proba.argmax(1) == y).astype(float)
    edges = np.linspace(0, 1, n + 1)
    bins, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        c, a = (float(conf[sel].mean()), float(correct[sel].mean())) if sel.any() else (0.0, 0.0)
        bins.append({"lo": float(lo), "hi": float(hi), "confidence": c, "accuracy": a, "count": int(sel.sum())})
        ece += sel.mean() * abs(c - a)
    return bins, float(ece)


def _make_run(root: Path, spec: dict) -> Path:
    """Train `spec` and write evidence.json (+ explanations.safetensors) measured on the model."""
    from captum.attr import IntegratedGradients, Saliency

    r = trustforge.run(spec, progress=False, register=False, settings=Settings.from_env(home=root))
    for name in ("evidence.json", "explanations.safetensors"):  # this helper writes its own, below
        (r.run_dir / name).unlink(missing_ok=True)
    module = r.load_model().module
    d = prepare(r.spec)
    classes, x, y = d.schema.classes, d.test.inputs, d.test.target.numpy()

    def proba_of(inputs, t=1.0):
        with torch.no_grad():
            return outputs_to_proba(module(*inputs) / t, len(classes))

    proba = proba_of(x)
    onehot = np.eye(len(classes))[y]
    roc, pr = {}, {}
    for k, label in enumerate(classes):
        fpr, tpr, _ = roc_curve(onehot[:, k], proba[:, k])
        prec, rec, _ = precision_recall_curve(onehot[:, k], proba[:, k])
        roc[label] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "auc": float(auc(fpr, tpr))}
        pr[label] = {"precision": prec.tolist(), "recall": rec.tolist(), "ap": float(average_precision_score(onehot[:, k], proba[:, k]))}
    bins, ece = _bins(proba, y)
    nll = {t: -np.log(proba_of(x, t)[np.arange(len(y)), y] + 1e-12).mean() for t in np.linspace(0.5, 3, 11)}
    temperature = float(min(nll, key=nll.get))
    bins_after, ece_after = _bins(proba_of(x, temperature), y)
    one = tuple(t[:1] for t in x)
    times = []
    with torch.no_grad():
        for _ in range(60):
            t0 = time.perf_counter()
            module(*one)
            times.append((time.perf_counter() - t0) * 1e3)
    p50, p95, p99 = (float(v) for v in np.percentile(times[10:], [50, 95, 99]))
    package_bytes = sum(p.stat().st_size for p in r.package.rglob("*") if p.is_file())
    speed = {
        "train_samples_per_s": len(d.train.target) * len(r.history) / r.timings["fit_seconds"],
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99, "n": 50},
        "throughput_samples_per_s": 1e3 / p50,
        "batch_size": 1,
        "parameters": sum(p.numel() for p in module.parameters()),
        "package_bytes": package_bytes,
        "peak_memory_mb": 123.4,
        "peak_memory_method": "VmHWM",
    }

    def accuracy(inputs):
        return float((proba_of(inputs).argmax(1) == y).mean())

    clean = accuracy(x)
    rng = np.random.default_rng(0)
    rows = [
        {
            "corruption": "gaussian_noise",
            "severity": s,
            "parameter": "noise std",
            "level": lvl,
            "value": (v := accuracy((x[0] + torch.from_numpy(rng.normal(0, lvl, tuple(x[0].shape)).astype(np.float32)),) + x[1:])),
            "drop": clean - v,
        }
        for s, lvl in ((1, 0.08), (2, 0.18), (3, 0.38))
    ]
    metrics = {k: v for k, v in r.metrics.items() if isinstance(v, float)}
    shifted = compute_metrics("classification", y, proba=proba_of((x[0] * 0.7,) + x[1:]), classes=classes)
    shifted = {k: v for k, v in shifted.items() if k in metrics}
    evidence = {
        "speed": speed,
        "calibration": {"ece": ece, "ece_after": ece_after, "temperature": temperature, "bins": bins, "bins_after": bins_after},
        "curves": {"roc": {"per_class": roc}, "pr": {"per_class": pr}},
        "shift": {
            "source": "builtin:dimmed <b>test</b>",
            "n": len(y),
            "in_distribution": metrics,
            "shifted": shifted,
            "delta": {k: shifted[k] - metrics[k] for k in shifted},
        },
        "corruptions": {"metric": "accuracy", "lower_is_better": False, "clean": clean, "rows": rows},
        "data": {
            "source": r.spec.data.source,
            "modality": d.schema.modality,
            "rows": d.schema.rows,
            "classes": classes,
            "columns": [{"name": c.name, "kind": c.kind} for c in d.schema.columns],
            "split_sizes": {"train": len(d.train.target), "validation": len(d.validation.target), "test": len(y)},
        },
    }
    pred = proba.argmax(1)
    if d.schema.modality == "image":
        idx = np.array([i for k in range(4) for i in np.flatnonzero(y == k)[:2]])  # two per class, classes 0-3
        images = x[0][idx].clone().requires_grad_(True)
        target = torch.from_numpy(pred[idx])
        ig, delta = IntegratedGradients(module).attribute(images, target=target, n_steps=50, return_convergence_delta=True)
        sal = Saliency(module).attribute(images, target=target, abs=True)
        save_file(
            {"images": images.detach().numpy(), "ig": ig.detach().numpy(), "saliency": sal.detach().numpy()},
            str(r.run_dir / "explanations.safetensors"),
        )
        evidence["explanations"] = {
            "method": "integrated_gradients",
            "n_steps": 50,
            "baseline": "zeros",
            "completeness_gap": float(delta.abs().max()),
            "examples": [{"index": int(i), "label": int(y[i]), "predicted": int(pred[i])} for i in idx],
        }
    else:
        names = d.schema.numeric
        inputs = x[0][:100].clone()
        ig = IntegratedGradients(module).attribute(
            inputs, target=torch.from_numpy(pred[:100]), n_steps=20, additional_forward_args=tuple(t[:100] for t in x[1:])
        )
        attribution = ig.abs().mean(0).detach().numpy()
        permutation = {}
        for j, name in enumerate(names):
            shuffled = x[0].clone()
            shuffled[:, j] = shuffled[torch.from_numpy(rng.permutation(len(y))), j]
            permutation[name] = clean - accuracy((shuffled,) + x[1:])
        evidence["explanations"] = {
            "columns": [{"name": n, "kind": "numeric", "ig": float(a), "permutation": permutation[n]} for n, a in zip(names, attribution)],
            "completeness_gap": 1e-4,
        }
    (r.run_dir / "evidence.json").write_text(json.dumps(evidence), encoding="utf-8")
    _as_before_issue_12(r.run_dir)
    return r.run_dir


_ISSUE_12_KEYS = ("baseline", "intervals", "positive_class", "threshold")


def _as_before_issue_12(run_dir: Path) -> None:
    """metrics.json as runs wrote it before issue 12's keys: these fixture runs stand for old run folders."""
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({k: v for k, v in metrics.items() if k not in _ISSUE_12_KEYS}), encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report-ws")
    image = _make_run(root, {"name": "digits", "model": {"kind": "cnn", "channels": [8, 16]}, "train": {"max_epochs": 3}})
    table = _make_run(
        root,
        {
            "name": "cancer",
            "data": {"source": "builtin:breast_cancer", "target": "target"},
            "model": {"kind": "mlp"},
            "train": {"max_epochs": 3},
        },
    )
    return {"image": image, "table": table, "root": root}


@pytest.fixture(scope="module")
def reports(runs) -> dict[str, Path]:
    return {k: write_report(runs[k]) for k in ("image", "table")}


def _plots(html: str) -> dict[str, bytes]:
    found = re.findall(r'<img data-plot="([a-z_]+)" alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {name: base64.b64decode(data) for name, alt, data in found if alt.strip()}


# ---------------------------------------------------------------------------- tests


def test_report_is_self_contained(reports):
    for path in reports.values():
        html = path.read_text(encoding="utf-8")
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I), "external src/href"
        assert not re.search(r"@import|url\(\s*['\"]?\s*(?:https?:)?//", html, re.I), "external CSS"
        assert "<script" not in html.lower()
        assert not re.search(r"https?://", html), "no URL at all, even as text"
        # Every img is embedded, and the only links are in-page anchors.
        assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', html))
        assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))


@pytest.mark.parametrize("kind, expected", [("image", IMAGE_PLOTS), ("table", TABLE_PLOTS)])
def test_every_plot_present_and_decodes_to_a_real_image(reports, kind, expected):
    html = reports[kind].read_text(encoding="utf-8")
    plots = _plots(html)
    assert set(plots) == expected
    assert html.count("<img ") == len(plots), "every <img> carries data-plot and a non-empty alt"
    for name, png in plots.items():
        img = Image.open(io.BytesIO(png))
        img.load()
        assert img.format == "PNG" and img.width > 100 and img.height > 100, name
        extrema = img.convert("L").getextrema()
        assert extrema[1] - extrema[0] > 50, f"{name} is (nearly) uniform"


def test_report_holds_the_runs_figures(runs, reports):
    html = reports["image"].read_text(encoding="utf-8")
    metrics = json.loads((runs["image"] / "metrics.json").read_text())
    evidence = json.loads((runs["image"] / "evidence.json").read_text())
    for section in ("summary", "data", "training", "metrics", "calibration", "speed", "generalisation", "explanations", "model-card"):
        assert f'id="{section}"' in html
    assert f"{metrics['accuracy']:.4g}" in html
    assert f"{evidence['calibration']['temperature']:.4g}" in html
    assert f"{evidence['speed']['latency_ms']['p50']:.4g}" in html
    assert "gaussian_noise" in html
    # This fixture run predates baselines, intervals, attacks and the privacy audit: those, and nothing else, are "not measured".
    assert re.findall(r'class="missing">([^<]*)<', html) == [
        "Not measured: the run holds no baseline (a simpler model trained on the same split).",
        "Not measured: the run holds no bootstrap intervals.",
        "Not measured: the run holds no adversarial evaluation (evaluate.robustness).",
        "Not measured: the run holds no membership-inference audit (evaluate.privacy_audit).",
    ]
    # Untrusted values from data files are escaped, never markup.
    assert "<b>test</b>" not in html and "&lt;b&gt;test&lt;/b&gt;" in html


def test_model_card_follows_mitchell_et_al(runs, reports):
    card = (runs["image"] / "model_card.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", card, re.M)
    assert headings == [
        "Model details",
        "Intended use",
        "Factors",
        "Metrics",
        "Evaluation data",
        "Training data",
        "Quantitative analyses",
        "Ethical considerations",
        "Caveats and recommendations",
    ]
    metrics = json.loads((runs["image"] / "metrics.json").read_text())
    assert f"| accuracy | {metrics['accuracy']:.4g} |" in card
    assert "builtin:digits" in card and "TO DO (owner)" in card
    for section in ("Intended use", "Ethical considerations"):  # what only the owner can know is a placeholder
        body = card.split(f"## {section}")[1].split("\n## ")[0]
        assert "TO DO" in body
    assert "<b>" not in card, "untrusted values are inert in Markdown too"
    # The same card, as HTML, ends the report.
    assert "<h4>Intended use</h4>" in reports["image"].read_text(encoding="utf-8")


def test_missing_evidence_renders_as_not_measured(runs, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(runs["image"], bare)
    for name in ("evidence.json", "explanations.safetensors", "epochs.csv", "status.json"):
        (bare / name).unlink()
    html = write_report(bare, tmp_path / "out" / "bare.html").read_text(encoding="utf-8")
    assert set(_plots(html)) == {"confusion_matrix"}
    for what in (
        "no epochs.csv",
        "no ROC curves",
        "no calibration evidence",
        "no speed evidence",
        "no second test set",
        "no corruption results",
        "no explanations",
    ):
        assert f"Not measured: the run holds {what}" in html or f"Not measured: {what}" in html, what
    assert (bare / "model_card.md").is_file()


def test_a_skipped_part_of_the_evidence_says_why_in_its_section(runs, tmp_path):
    """evidence.json records why a part was skipped (a recommender's ids have no noise model): its
    section says that reason, not that the run holds nothing."""
    run = tmp_path / "skipped"
    shutil.copytree(runs["image"], run)
    (run / "explanations.safetensors").unlink(missing_ok=True)
    evidence = json.loads((run / "evidence.json").read_text())
    for part in ("corruptions", "explanations"):
        evidence.pop(part, None)
    evidence["skipped"] = {
        "corruptions": "user and item ids have no noise model; the unknown-id fallback is tested instead",
        "explanations": "an id embedding has no features to attribute a score to",
    }
    (run / "evidence.json").write_text(json.dumps(evidence))
    html = write_report(run, tmp_path / "out" / "skipped.html").read_text(encoding="utf-8")
    assert "Not measured: user and item ids have no noise model; the unknown-id fallback is tested instead." in html
    assert "Not measured: an id embedding has no features to attribute a score to." in html
    assert "holds no corruption results" not in html and "holds no explanations" not in html


def test_regression_run_without_evidence(runs):
    root = runs["root"]
    r = trustforge.run(
        {
            "name": "diab",
            "task": "regression",
            "data": {"source": "builtin:diabetes", "target": "target"},
            "model": {"kind": "mlp"},
            "train": {"max_epochs": 2},
        },
        progress=False,
        register=False,
        settings=Settings.from_env(home=root),
    )
    for name in ("evidence.json", "explanations.safetensors"):
        (r.run_dir / name).unlink(missing_ok=True)
    _as_before_issue_12(r.run_dir)
    html = write_report(r.run_dir).read_text(encoding="utf-8")
    assert set(_plots(html)) == {"learning_curves"}
    assert "apply to classification only" in html and f"{r.metrics['rmse']:.4g}" in html
    a = _answers(html)
    assert a["does"].startswith(
        "What it does regression Predicts target (a number) from its inputs (builtin:diabetes)"
    )  # no evidence.json: no column list
    assert f"RMSE {r.metrics['rmse']:.3g} on the" in a["good"] and "Lower is better" in a["good"]
    assert "classification only" in a["sure"] and "Not measured: baseline" in a["watch"]
    rows = compare_runs([runs["image"], r.run_dir, runs["table"]])
    assert [row["metric"] for row in rows] == ["accuracy", "accuracy", "rmse"]


def test_compare_runs_best_first(runs):
    rows = compare_runs([runs["image"], runs["table"]])
    assert len(rows) == 2  # digits and breast cancer: two leaderboards, never one ranking
    assert len({row["group"] for row in rows}) == 2 and [row["rank"] for row in rows] == [1, 1]
    for row in rows:
        evidence = json.loads((runs["image" if row["name"] == "digits" else "table"] / "evidence.json").read_text())
        assert row["latency_p50_ms"] == pytest.approx(evidence["speed"]["latency_ms"]["p50"])
        assert row["parameters"] == evidence["speed"]["parameters"] > 0
        assert row["package_bytes"] == evidence["speed"]["package_bytes"] > 0
        assert row["fit_seconds"] > 0 and row["run"].startswith(row["name"])


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for this file's browser tests (each opens its own page)."""
    if not CHROMIUM.exists():
        pytest.skip("install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def test_report_renders_in_headless_chromium(reports, chromium):
    path = reports["image"]
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    try:
        requests = []
        page.on("request", lambda req: requests.append(req.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        shot = page.screenshot(full_page=True)
        plots = page.eval_on_selector_all(
            "img[data-plot]",
            """els => els.map(e => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
                 return {name: e.dataset.plot, w: e.naturalWidth, h: e.naturalHeight, complete: e.complete,
                         visible: r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'}; })""",
        )
    finally:
        page.close()
    assert {p["name"] for p in plots} == IMAGE_PLOTS
    for plot in plots:
        assert plot["complete"] and plot["w"] > 0 and plot["h"] > 0 and plot["visible"], plot
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    img = Image.open(io.BytesIO(shot))
    assert img.height > 2000 and img.convert("L").getextrema() != (255, 255)


@pytest.mark.parametrize("spectrogram", [False, True])
def test_spectrogram_explanations_are_drawn_with_low_frequencies_at_the_bottom(spectrogram):
    from trustforge.evaluate._report_plots import image_explanations

    rng = np.random.default_rng(0)
    tensors = {"images": rng.normal(size=(2, 1, 8, 12)), "ig": rng.normal(size=(2, 1, 8, 12)), "saliency": rng.random((2, 8, 12))}
    explanations = {"examples": [{"label": 0, "predicted": 0}, {"label": 1, "predicted": 1}]}
    if spectrogram:
        explanations["input"] = "log-mel spectrogram (mel bands × frames)"
    run = {"tensors": tensors, "evidence": {"explanations": explanations}, "metrics": {"labels": ["a", "b"]}}
    fig = image_explanations(run)
    drawn = [im for ax in fig.axes for im in ax.get_images()]
    assert len(drawn) == 6  # 2 examples × (input, IG, saliency)
    assert {im.origin for im in drawn} == ({"lower"} if spectrogram else {"upper"})


def test_the_leaderboard_metric_and_the_cards_are_the_tasks():
    from trustforge.evaluate import TASKS

    assert [TASKS[t].leaderboard_metric({}) for t in TASKS] == ["accuracy", "rmse", "rmse", "ndcg@10"]
    assert TASKS["recommendation"].leaderboard_metric({"rmse": 0.9}) == "rmse"  # explicit feedback
    assert all(TASKS[t].report_metrics for t in TASKS)


# ---------------------------------------------------------------------------- the business summary
#
# The evidence keys of issue 12 (positive class, threshold, calibration before/after with the served
# one named, speed of Model.predict, baseline, intervals, importance intervals) are written by other
# stages; here they are injected into copies of real runs, so the report is tested on both layouts.


def _answers(html: str) -> dict[str, str]:
    """The summary's five answers as plain text, by key."""
    found = re.findall(r'<div class="answer" data-answer="([a-z]+)">(.*?)</dd>\s*</div>', html, re.S)
    return {k: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", v)).strip() for k, v in found}


def _with_contract_keys(run_dir: Path, dest: Path, *, verdict: str = "does_not_beat", loaded: bool = True) -> Path:
    """A copy of a real run whose metrics.json and evidence.json also hold issue 12's keys."""
    shutil.copytree(run_dir, dest)
    metrics = json.loads((dest / "metrics.json").read_text())
    evidence = json.loads((dest / "evidence.json").read_text())
    labels = metrics["labels"]
    old = evidence["calibration"]
    evidence["calibration"] = {
        "method": "temperature",
        "served": "raw",
        "temperature": None,
        "reason": "the validation split is separable: every example is right, so the fit runs to its bound <T=0.05>",
        "ece_before": old.get("ece_before", old.get("ece")),
        "ece_after": None,
        "log_loss_before": 0.0123,
        "log_loss_after": None,
        "bins_before": old.get("bins_before", old.get("bins")),
        "bins_after": None,
    }
    metrics["ece"], metrics["log_loss"] = old.get("ece_before", old.get("ece")), 0.0123
    timing = {"p50_ms": 1.234, "p95_ms": 2.5, "p99_ms": 3.1, "mean_ms": 1.4, "std_ms": 0.3, "calls": 200, "batch": 1}
    evidence["speed"]["predict"] = timing
    evidence["speed"]["forward"] = {**timing, "p50_ms": 0.0567}
    evidence["speed"]["load"] = {"load_average": 3.5 if loaded else 0.2, "cores": 2, "loaded": loaded}
    key = "accuracy"
    baseline = {
        "name": "logistic_regression",
        "description": "scikit-learn LogisticRegression on the same standardised features",
        "metric": key,
        "lower_is_better": False,
        "model": metrics[key],
        "baseline": metrics[key] + 0.01,
        "difference": {"value": -0.01, "low": -0.035, "high": 0.012},
        "verdict": verdict,
        "sentence": "The model does not beat logistic regression <i>on accuracy</i>.",
        "metrics": {"accuracy": metrics[key] + 0.01},
    }
    intervals = {"level": 0.95, "resamples": 1000, "metrics": {key: {"value": metrics[key], "low": 0.9123, "high": 0.9987}}}
    if len(labels) == 2:  # the positive class is the minority, malignant: its own recall and precision lead
        cm = np.asarray(metrics["confusion_matrix"], dtype=float)
        metrics["recall"], metrics["precision"] = cm[0, 0] / cm[0].sum(), cm[0, 0] / cm[:, 0].sum()
        metrics["f1"] = 2 * metrics["recall"] * metrics["precision"] / (metrics["recall"] + metrics["precision"])
        intervals["metrics"]["recall"] = {"value": metrics["recall"], "low": 0.8765, "high": 1.0}
        metrics["positive_class"] = labels[0]
        metrics["threshold"] = {"value": 0.3125, "rule": "recall@precision=0.9", "chosen_on": "validation", "note": None}
    metrics["baseline"], metrics["intervals"] = baseline, intervals
    evidence["baseline"], evidence["intervals"] = baseline, intervals
    section = (evidence.get("explanations") or {}).get("feature_importance")
    if section:
        for r in section["columns"]:
            r.update(repeats=50, low=r["permutation"] - 0.002, high=r["permutation"] + 0.003)
        section["measures"] = "Permutation importance: the drop in log loss when one column is shuffled, over 50 repeats."
    manifest = json.loads((dest / "package" / "manifest.json").read_text())
    manifest["monitor"]["reference"]["predictions_from"] = "validation"
    (dest / "package" / "manifest.json").write_text(json.dumps(manifest))
    (dest / "metrics.json").write_text(json.dumps(metrics))
    (dest / "evidence.json").write_text(json.dumps(evidence))
    return dest


def _example(name: str) -> dict:
    import yaml

    spec = yaml.safe_load((Path(__file__).parents[2] / "examples" / name).read_text())
    spec["train"]["max_epochs"] = 3  # the examples' own specs, trained briefly
    return spec


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict[str, Path]:
    """The digits and breast-cancer examples with the evidence the pipeline itself writes."""
    root = tmp_path_factory.mktemp("examples-ws")
    out = {}
    for key, name in (("digits", "digits_cnn.yaml"), ("cancer", "breast_cancer_mlp.yaml")):
        r = trustforge.run(_example(name), progress=False, register=True, settings=Settings.from_env(home=root))
        out[key] = r.run_dir
    return out


def test_summary_comes_first_and_answers_five_questions(examples):
    html = write_report(examples["cancer"]).read_text(encoding="utf-8")
    assert html.index('id="summary"') < html.index('id="data"') < html.index('id="glossary"') < html.index('id="model-card"')
    answers = _answers(html)
    assert list(answers) == ["does", "good", "sure", "fast", "watch"]
    metrics = json.loads((examples["cancer"] / "metrics.json").read_text())
    assert "builtin:breast_cancer" in answers["does"] and "455" in answers["does"]  # the example trains on every non-test row
    assert f"{metrics['accuracy']:.3g}" in answers["good"]
    assert "Drift:" in answers["watch"]


def test_summary_renders_the_new_evidence_keys(examples, tmp_path):
    run = _with_contract_keys(examples["cancer"], tmp_path / "cancer")
    html = write_report(run).read_text(encoding="utf-8")
    a = _answers(html)
    metrics = json.loads((run / "metrics.json").read_text())
    # What it does: the positive class and the threshold with its rule.
    assert "Tells malignant (the positive class) from benign" in a["does"]
    assert "at least 0.312" in a["does"] and "recall@precision=0.9" in a["does"] and "validation split" in a["does"]
    # How good: headline with its interval, the positive class's recall, the baseline sentence and difference.
    assert f"Accuracy {metrics['accuracy']:.3g} on the 114 test examples (95 % interval 0.912 to 0.999)" in a["good"]
    assert f"finds {metrics['recall'] * 100:.1f} % of malignant cases" in a["good"] and "95 % interval 0.876 to 1)" in a["good"]
    assert "does not beat its baseline" in a["good"] and "The model does not beat logistic regression" in a["good"]
    assert "[-0.035, 0.012]" in html  # the difference and its interval, in the baseline section
    assert "&lt;i&gt;on accuracy&lt;/i&gt;" in html and "<i>on accuracy" not in html  # the sentence is data: escaped
    # How sure: which one serves and why, with the served ECE.
    assert "raw probabilities" in a["sure"] and "separable" in a["sure"] and f"{metrics['ece']:.3g}" in a["sure"]
    assert "&lt;T=0.05&gt;" in html
    # How fast: Model.predict as users see it, marked as measured on a loaded machine.
    assert "1.23 ms" in a["fast"] and "Model.predict" in a["fast"] and "measured on a loaded machine" in a["fast"]
    assert "latency_ms" not in html  # the forward pass's old name is not a second, contradicting figure
    assert "load average 3.5 on 2 cores" in a["fast"]
    # What to watch: the drift reference's split.
    assert "predictions on the validation split" in a["watch"] and "Not measured: baseline" not in a["watch"]
    # Technical sections: the baseline table, the interval table, the positive class in the per-class table.
    assert "malignant <b>(positive class)</b>" in html
    assert "0.9123" in html and "1,000 resamples" in html
    assert "No temperature-scaled model to compare" in html
    card = (run / "model_card.md").read_text(encoding="utf-8")
    assert "Positive class: **malignant**" in card and "Model.predict p50 1.23 ms" in card and "loaded machine" in card


def test_the_threshold_says_why_a_rule_fell_back_and_nothing_else(examples, tmp_path):
    run = _with_contract_keys(examples["cancer"], tmp_path / "cancer")
    metrics = json.loads((run / "metrics.json").read_text())
    cases = (
        (
            {"value": 0.5, "rule": "0.5", "chosen_on": "default", "note": "the default (evaluate.threshold is not set)"},
            "(the default).",
            None,
        ),
        (
            {"value": 0.5, "rule": "f1", "chosen_on": "default", "note": "no validation split to choose one on"},
            "(the default).",
            "No validation split",
        ),
        (
            {"value": 0.25, "rule": "f1", "chosen_on": "validation", "note": "chosen on 90 validation rows"},
            "chosen on the validation split).",
            None,
        ),
    )
    for threshold, how, why in cases:
        metrics["threshold"] = threshold
        (run / "metrics.json").write_text(json.dumps(metrics))
        does = _answers(write_report(run).read_text(encoding="utf-8"))["does"]
        assert how in does and ("90 validation rows" not in does) and ("evaluate.threshold is not set" not in does)
        assert (why in does) if why else does.endswith(how)


def test_summary_shows_a_degenerate_interval_as_its_note(examples, tmp_path):
    """Every test row right: recall's exact binomial interval with its count, ROC AUC's note (no
    "1 – 1"), and a paired difference of 0 in every resample said in words, not as [0, 0]."""
    run = _with_contract_keys(examples["cancer"], tmp_path / "degenerate")
    note = "every resample gives the same value: the test split is too small to show the uncertainty"
    same = "every resample gives the same difference, 0: the model and the baseline score alike on every test row"
    for name in ("metrics.json", "evidence.json"):
        d = json.loads((run / name).read_text())
        d["recall"] = 1.0 if name == "metrics.json" else d.get("recall")
        d["roc_auc"] = 1.0 if name == "metrics.json" else d.get("roc_auc")
        iv = d["intervals"]["metrics"]
        iv["recall"] = {"value": 1.0, "low": 0.9159, "high": 1.0, "method": "clopper_pearson", "count": {"successes": 42, "trials": 42}}
        iv["roc_auc"] = {"value": 1.0, "low": 1.0, "high": 1.0, "method": "percentile_bootstrap", "degenerate": True, "note": note}
        iv["f1"] = {"value": 0.99999, "low": 0.99995, "high": 1.0, "method": "percentile_bootstrap"}  # narrow, not degenerate
        d["baseline"]["difference"] = {"value": 0.0, "low": 0.0, "high": 0.0, "degenerate": True, "note": same}
        d["baseline"]["sentence"] = None
        (run / name).write_text(json.dumps(d))
    html = write_report(run).read_text(encoding="utf-8")
    a = _answers(html)
    assert "95 % interval 0.916 to 1 (exact binomial, 42 of 42)" in a["good"]
    cards = re.findall(r'<div class="ci">(.*?)</div>', html)
    assert "95 %: 0.916 – 1 (42 of 42)" in cards and note in cards and "95 %: 1 – 1" not in cards
    assert "95 %: 0.99995 – 1" in cards  # rounding does not make a narrow interval look degenerate
    assert f"none: {note}" in html and "exact binomial, 42 of 42" in html
    assert f"0 ({same}" in html and "[0, 0]" not in html and same in a["good"]
    card = (run / "model_card.md").read_text(encoding="utf-8")
    assert f"| roc\\_auc | 1 | none | none | {note} |" in card and "difference 0 (every resample" in card


def test_verdicts_are_badged(examples, tmp_path):
    for verdict, badge in (("beats", "beats its baseline"), ("worse", "worse than its baseline")):
        run = _with_contract_keys(examples["cancer"], tmp_path / verdict, verdict=verdict, loaded=False)
        a = _answers(write_report(run).read_text(encoding="utf-8"))
        assert badge in a["good"] and "loaded machine" not in a["fast"]


def test_accuracy_below_always_predicting_the_majority_class_is_said_plainly(examples, tmp_path):
    """An imbalanced split: accuracy 0.91 beats logistic regression yet trails always predicting 'legit'."""
    run = _with_contract_keys(examples["cancer"], tmp_path / "imbalanced", verdict="beats", loaded=False)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(accuracy=0.91, majority_class="legit", majority_class_accuracy=0.9855, pr_auc=0.42)
    (run / "metrics.json").write_text(json.dumps(metrics))
    good = html_lib.unescape(_answers(write_report(run).read_text(encoding="utf-8"))["good"])
    assert "below always predicting 'legit' (0.986)" in good and "imbalanced split; see PR AUC (0.42)" in good
    assert "beats its baseline" not in good  # the badge no longer reads as good news
    # an older run without the keys: the rate comes from the per-class support
    del metrics["majority_class"], metrics["majority_class_accuracy"]
    metrics["support"] = [5, 95]
    (run / "metrics.json").write_text(json.dumps(metrics))
    good = html_lib.unescape(_answers(write_report(run).read_text(encoding="utf-8"))["good"])
    assert f"always predicting '{metrics['labels'][1]}' (0.95)" in good


def test_old_run_folders_still_render_and_say_what_they_lack(runs):
    html = write_report(runs["image"]).read_text(encoding="utf-8")
    a = _answers(html)
    evidence = json.loads((runs["image"] / "evidence.json").read_text())
    # Old calibration: the fitted temperature served; the served ECE is the one after scaling.
    assert "temperature-scaled" in a["sure"] and f"ECE {evidence['calibration']['ece_after']:.3g}" in a["sure"]
    # Old speed: only the forward pass was timed, and the report says Model.predict was not.
    assert f"{evidence['speed']['latency_ms']['p50']:.3g} ms" in a["fast"] and "was not timed in this run" in a["fast"]
    assert "No baseline was trained" in a["good"] and "Not measured: 95 % intervals" in a["watch"]


def test_no_empty_plots():
    from trustforge.evaluate._report_plots import corruptions, learning_curves, reliability

    rows = [{"epoch": 1.0, "train_loss": 0.9, "val_loss": None}, {"epoch": 2.0, "train_loss": 0.5, "val_loss": None}]
    fig = learning_curves({"epochs": rows})
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "loss (lower is better)"
    assert learning_curves({"epochs": []}) is None
    empty_bins = [{"lo": 0.0, "hi": 0.5, "confidence": None, "accuracy": None, "count": 0}]
    assert reliability({"evidence": {"calibration": {"ece": 0.1, "bins": empty_bins}}, "metrics": {}}) is None
    assert corruptions({"evidence": {"corruptions": {"metric": "accuracy", "clean": 0.9, "rows": []}}}) is None


def test_calibration_before_and_after_side_by_side_with_the_served_one_marked():
    from trustforge.evaluate._report_plots import reliability

    bins = [
        {"lo": 0.8, "hi": 0.9, "confidence": 0.85, "accuracy": 0.8, "count": 5},
        {"lo": 0.9, "hi": 1.0, "confidence": 0.97, "accuracy": 1, "count": 9},
    ]
    cal = {"method": "temperature", "served": "temperature", "temperature": 1.7, "ece_before": 0.08, "ece_after": 0.02}
    fig = reliability({"evidence": {"calibration": {**cal, "bins_before": bins, "bins_after": bins}}, "metrics": {}})
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 and "raw model" in titles[0] and "SERVED" not in titles[0]
    assert "T = 1.7" in titles[1] and "SERVED" in titles[1] and "0.020" in titles[1]
    fig = reliability({"evidence": {"calibration": {**cal, "served": "raw", "bins_before": bins, "bins_after": bins}}, "metrics": {}})
    assert "SERVED" in fig.axes[0].get_title() and "SERVED" not in fig.axes[1].get_title()


@pytest.mark.parametrize(
    "metric, clean, values, expected",
    [("accuracy", 0.99, [0.985, 0.98, 0.975], (0, 1.02)), ("f1_macro", 0.9, [0.5, 0.2], (0, 1.02)), ("rmse", 3.0, [3.2, 4.0], (0, 4.4))],
)
def test_corruption_axes_do_not_magnify_noise(metric, clean, values, expected):
    from trustforge.evaluate._report_plots import corruptions

    rows = [{"corruption": "noise", "severity": i + 1, "value": v} for i, v in enumerate(values)]
    fig = corruptions({"evidence": {"corruptions": {"metric": metric, "clean": clean, "rows": rows}}})
    low, high = fig.axes[0].get_ylim()
    assert (low, high) == pytest.approx(expected)
    assert low <= min(values) and high >= clean


def test_importance_charts_say_what_each_measures(examples, tmp_path):
    from trustforge.evaluate._report import load_run
    from trustforge.evaluate._report_plots import feature_importance

    run = _with_contract_keys(examples["cancer"], tmp_path / "cancer")
    html = write_report(run).read_text(encoding="utf-8")
    assert "Integrated gradients measure how strongly" in html
    assert "the drop in log loss when one column is shuffled, over 50 repeats" in html  # the evidence's own sentence
    assert "Permutation importance:</b> Permutation importance" not in html  # its label, said once
    assert re.search(r"The two charts (mostly agree|rank features differently) \(rank correlation -?[0-9.]+\)", html)
    fig = feature_importance(load_run(run))
    permutation = fig.axes[1]
    assert "95 % interval" in permutation.get_title()
    from matplotlib.container import ErrorbarContainer

    # The interval over repeats is drawn on permutation importance, and only there (IG has none).
    assert [any(isinstance(c, ErrorbarContainer) for c in ax.containers) for ax in fig.axes] == [False, True]


def test_an_importance_sentence_does_not_repeat_its_charts_label():
    """The evidence's sentence opens with "Permutation importance: "; the report prints it after that label."""
    from trustforge.evaluate._report_summary import importance_measures

    section = {"measures": "Permutation importance: how much the mean log-likelihood falls when one column's values are shuffled."}
    assert importance_measures(section)["permutation"] == "how much the mean log-likelihood falls when one column's values are shuffled."
    assert importance_measures(None)["permutation"].startswith("Permutation importance measures how much")  # a sentence, kept whole


def test_model_card_fields_come_from_the_spec(tmp_path):
    spec = _example("breast_cancer_mlp.yaml")
    spec["train"]["max_epochs"] = 1
    spec["evaluate"] = {
        "card": {
            "owner": "Oncology ML team <ml@example.org>",
            "intended_use": "Second reader for <b>screening</b> reports; never the only reader.",
            "limitations": "Trained on one 1990s Wisconsin cohort.",
        },
        "speed": False,
        "explain": False,
        "corruptions": False,
    }
    r = trustforge.run(spec, progress=False, register=False, settings=Settings.from_env(home=tmp_path / "ws"))
    for _ in range(2):  # regenerating keeps them: they live in the run's spec, not in the report
        html = write_report(r.run_dir).read_text(encoding="utf-8")
    card = (r.run_dir / "model_card.md").read_text(encoding="utf-8")
    intended = card.split("## Intended use")[1].split("\n## ")[0]
    assert "Second reader for" in intended and "TO DO" not in intended
    assert "Oncology ML team" in card and "Wisconsin cohort" in card and "<b>" not in card
    assert "&lt;b&gt;screening&lt;/b&gt;" in html and "<b>screening" not in html
    assert "**TO DO** (`evaluate.card.license`)" in card  # what the spec leaves out stays a TO DO


def test_card_fields_are_short_strict_strings():
    from trustforge.errors import TrustForgeError

    with pytest.raises(TrustForgeError, match="evaluate.card.owners"):
        trustforge.load_spec({"evaluate": {"card": {"owners": "x"}}})
    with pytest.raises(TrustForgeError, match="evaluate.card.owner"):
        trustforge.load_spec({"evaluate": {"card": {"owner": "x" * 201}}})


def test_glossary_defines_the_reports_terms(examples):
    html = write_report(examples["digits"]).read_text(encoding="utf-8")
    glossary = html.split('id="glossary"')[1].split("</section>")[0]
    terms = re.findall(r"<dt>([^<]+)</dt>", glossary)
    for term in (
        "ECE",
        "log loss",
        "ROC AUC",
        "PSI",
        "Wasserstein",
        "p-value",
        "bootstrap interval",
        "threshold",
        "positive class",
        "baseline",
        "p50",
    ):
        assert any(term in t for t in terms), term


# ---------------------------------------------------------------------------- in a browser


def _screenshot(browser, html_path: Path, shots: Path) -> dict:
    """Open a report in a new page of headless Chromium at 1280×900, save its first viewport and full page, and measure it."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        requests = []
        page.on("request", lambda req: requests.append(req.url))
        page.goto(html_path.resolve().as_uri(), wait_until="load")
        page.screenshot(path=str(shots / f"{html_path.stem}-first-view.png"))
        page.screenshot(path=str(shots / f"{html_path.stem}-full.png"), full_page=True)
        facts = page.evaluate(
            """() => ({
                scrollWidth: document.documentElement.scrollWidth,
                answers: [...document.querySelectorAll('#summary .answer dt')].map(e => ({
                    text: e.textContent, bottom: e.getBoundingClientRect().bottom})),
                watch: document.querySelector('#summary .answer[data-answer=watch]').getBoundingClientRect().top,
                images: [...document.images].map(e => ({name: e.dataset.plot, w: e.naturalWidth, h: e.naturalHeight,
                    complete: e.complete, shown: e.getBoundingClientRect().width}))
            })"""
        )
    finally:
        page.close()
    facts["requests"] = requests
    return facts


@pytest.mark.parametrize("which", ["digits", "cancer"])
@pytest.mark.parametrize("keys", ["pipeline", "contract"])
def test_example_reports_in_chromium(examples, chromium, tmp_path_factory, which, keys):
    shots = tmp_path_factory.mktemp("report-screenshots")
    run = examples[which] if keys == "pipeline" else _with_contract_keys(examples[which], shots / "run")
    html = write_report(run, shots / f"{which}-{keys}.html")
    facts = _screenshot(chromium, html, shots)
    # A business reader sees the five answers without scrolling (the last one begins in view).
    assert [a["text"] for a in facts["answers"]] == ["What it does", "How good", "How sure", "How fast", "What to watch"]
    assert facts["watch"] < 900, facts["answers"]
    # The page fits 1280 px: no horizontal scroll.
    assert facts["scrollWidth"] <= 1280
    # No broken image: every <img> decoded to a real size and is laid out.
    assert len(facts["images"]) >= 5
    for img in facts["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["shown"] > 0, img
    assert all(u.startswith(("file:", "data:")) for u in facts["requests"]), facts["requests"]
    first = Image.open(shots / f"{html.stem}-first-view.png")
    assert first.size == (1280, 900) and first.convert("L").getextrema()[0] < 60  # dark header and text, not blank


def test_a_served_temperature_that_hurts_log_loss_is_a_point_to_watch(examples, tmp_path):
    run = _with_contract_keys(examples["digits"], tmp_path / "digits")
    evidence = json.loads((run / "evidence.json").read_text())
    evidence["calibration"].update(served="temperature", temperature=0.05, reason=None, log_loss_after=0.1, ece_after=0.02)
    evidence["calibration"]["bins_after"] = evidence["calibration"]["bins_before"]
    (run / "evidence.json").write_text(json.dumps(evidence))
    a = _answers(write_report(run).read_text(encoding="utf-8"))
    assert "temperature-scaled (T = 0.05" in a["sure"] and "Log loss 0.0123 before, 0.1 after" in a["sure"]
    assert "makes test log loss worse (0.0123 raw, 0.1 scaled)" in a["watch"]


def test_text_attack_examples_show_the_edited_words_not_a_table_caption(runs, tmp_path):
    """The character-edit attack's examples: its own caption, and only the words that changed, before → after."""
    from trustforge.evaluate._report_summary import edited_words

    assert edited_words("a truly great film", "a truly graet flim") == [{"before": "great film", "after": "graet flim"}]
    assert edited_words("bad plot", "bad plot") == [] and edited_words(0.5, 0.7) == []
    run = tmp_path / "text"
    shutil.copytree(runs["table"], run)
    evidence = json.loads((run / "evidence.json").read_text(encoding="utf-8"))
    points = [{"epsilon": 1.0, "accuracy": 0.6, "success_rate": 0.3}, {"epsilon": 2.0, "accuracy": 0.4, "success_rate": 0.5}]
    evidence["robustness"] = {
        "metric": "accuracy", "norm": "edits", "budget": "character edits per row", "epsilons": [1.0, 2.0], "rows": 60,
        "clean": 0.8, "hardened": "not hardened", "attacks": {"char-edit": {"points": points, "seconds": 1.0, "halving_epsilon": 2.0}},
        "examples": {"attack": "char-edit", "epsilon": 2.0, "rows": [{"label": "pos", "adversarial_prediction": "neg", "changes": [
            {"column": "review", "before": "a truly great film", "after": "a truly graet film", "units": "raw"}]}]},
    }  # fmt: skip
    (run / "evidence.json").write_text(json.dumps(evidence), encoding="utf-8")
    html = write_report(run).read_text(encoding="utf-8")
    section = html[html.index('id="robustness"') :]
    assert "categories and flags never move" not in section and "the words it edited, before → after" in section
    assert "review: <q>great</q> → <q>graet</q>" in section and "a truly great film" not in section


@pytest.mark.parametrize("private", [True, False])
def test_the_privacy_audit_says_how_the_model_was_trained_in_a_sentence(private):
    # The report writes "The model was {trained}: {verdict}."; it read "The model was differentially private training (...)".
    from trustforge.evaluate._report_summary import privacy_view

    training = {"private": True, "epsilon": 3.0, "delta": 1e-05, "max_grad_norm": 1.0, "noise_multiplier": 5.5} if private else {}
    audit = {"attacks": {"loss": {"auc": 0.51, "auc_interval": [0.47, 0.55]}}, "members": 100, "non_members": 100, "training": training}
    trained = privacy_view({"privacy_audit": audit})["trained"]
    expected = (
        "trained with differential privacy (epsilon 3.0, delta 1e-05, max_grad_norm 1.0, noise_multiplier 5.5)"
        if private
        else "trained without differential privacy"
    )
    assert trained == expected
