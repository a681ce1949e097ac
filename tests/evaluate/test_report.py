"""The HTML report and model card, rendered from real trained runs with plausible evidence.

The evidence producers (speed, calibration, shift, explanations) are tested in their own files;
here a helper trains a tiny model and writes evidence.json in the documented layout with
figures measured on that model (sklearn curves, Captum attributions), so the report is
exercised on real data, not hand-typed numbers.
"""

from __future__ import annotations

import base64
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
    return r.run_dir


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
    assert "gaussian_noise" in html and 'class="missing"' not in html
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
    html = write_report(r.run_dir).read_text(encoding="utf-8")
    assert set(_plots(html)) == {"learning_curves"}
    assert "apply to classification only" in html and f"{r.metrics['rmse']:.4g}" in html
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


def test_report_renders_in_headless_chromium(reports):
    if not CHROMIUM.exists():
        pytest.skip("install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    path = reports["image"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            requests = []
            page.on("request", lambda req: requests.append(req.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            shot = page.screenshot(full_page=True, path="/tmp/report.png")
            plots = page.eval_on_selector_all(
                "img[data-plot]",
                """els => els.map(e => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
                     return {name: e.dataset.plot, w: e.naturalWidth, h: e.naturalHeight, complete: e.complete,
                             visible: r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'}; })""",
            )
        finally:
            browser.close()
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
