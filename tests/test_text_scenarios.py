"""The text examples end to end: each trains through the CLI or the Python API, packages,
verifies, loads and predicts. The from-scratch sentiment model trains as written (it fits in
well under a minute), once, from the CLI, and that run is also held against TF-IDF + logistic
regression. The MiniLM example against the from-scratch one at full settings fine-tunes 22 M
weights for tens of minutes on a CPU, so that comparison is in bench/scenarios.py (`sentiment`
rows), not in CI."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _figures import assert_near_readme
from typer.testing import CliRunner

import trustforge
from trustforge.cli import app
from trustforge.data._text_sets import _reviews

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT / "bench"))
from scenarios import tfidf_logistic_regression  # noqa: E402  (the baseline bench/scenarios.py prints)


def _example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def _reviews_subset(folder: Path, n: int) -> str:
    """A stratified sample of `n` of the 5,000 builtin reviews, as a CSV source (same columns)."""
    frame = _reviews()
    sample = frame.groupby("score").sample(frac=n / len(frame), random_state=0)
    path = folder / "reviews.csv"
    sample.to_csv(path, index=False)
    return f"csv:{path}"


def _small(raw: dict, source: str | None = None, **train) -> dict:
    raw = json.loads(json.dumps(raw))
    if source is not None:  # the same reviews from a file: the text column must be named
        raw["data"]["source"] = source
        raw["data"]["target"] = "score"
        raw["data"]["text"]["column"] = "review"
    raw["train"].update(train)
    # The character-edit attack on a few rows: it costs a model call per candidate edit (tests/evaluate/test_text_attack.py measures it).
    raw["evaluate"] = {
        **raw.get("evaluate", {}),
        "speed": False,
        "corruptions": False,
        "explain": False,
        "robustness": {"budgets": [1, 2], "rows": 10},
    }
    return raw


# ---------------------------------------------------------------------------- small settings


def test_chinese_text_example_trains_from_the_cli_and_predicts_a_jsonl_file(tmp_path):
    spec = tmp_path / "chinese_text.yaml"
    spec.write_text(yaml.safe_dump(_small(_example("chinese_text.yaml"), max_epochs=4), allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "-q", "--no-register", str(spec)])
    assert trained.exit_code == 0, trained.output
    package = Path(re.search(r"package: (\S+)", trained.output).group(1))
    metrics = json.loads((package.parent / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.75, metrics  # majority class 0.52

    reviews = tmp_path / "new.jsonl"
    reviews.write_text(
        "\n".join(
            json.dumps({"review": r}, ensure_ascii=False) for r in ["物流很快，质量很好，非常满意！", "做工粗糙，客服不理人，再也不买了。"]
        )
        + "\n",
        encoding="utf-8",
    )
    predicted = runner.invoke(app, ["predict", str(package), str(reviews), "-o", str(tmp_path / "out.csv")])
    assert predicted.exit_code == 0, predicted.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["prediction", "proba_negative", "proba_positive"]
    assert list(out["prediction"]) == ["positive", "negative"]


def test_an_empty_review_at_prediction_time_is_one_clear_error(tmp_path):
    raw = _small(_example("chinese_text.yaml"), max_epochs=1)
    result = trustforge.run(raw, progress=False, register=False)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"review": ["质量很好", "   "]}).to_csv(bad, index=False)
    out = CliRunner().invoke(app, ["predict", str(result.package), str(bad)])
    assert out.exit_code == 3
    assert "column 'review' has 1 missing or empty text(s) (row 2)" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "bad.predictions.csv").exists()
    missing = tmp_path / "missing.csv"
    pd.DataFrame({"text": ["质量很好"]}).to_csv(missing, index=False)
    out = CliRunner().invoke(app, ["predict", str(result.package), str(missing)])
    assert out.exit_code == 3 and "no text column 'review'" in out.output


@pytest.fixture(scope="module")
def sentiment_from_the_cli(tmp_path_factory):
    """`trustforge train` on the sentiment example's own data and training (it fits in well under
    a minute), evidence off but a small attack: (CLI result, package, spec). Trained once: the CLI
    test and the full-settings test below both read it (the test metrics come before any evidence)."""
    root = tmp_path_factory.mktemp("sentiment")
    spec = root / "sentiment_text.yaml"
    raw = _small(_example("sentiment_text.yaml"))
    spec.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTFORGE_HOME", str(root / "ws"))
        mp.chdir(root)
        trained = CliRunner().invoke(app, ["train", "-q", "--no-register", str(spec)])
    package = Path(re.search(r"package: (\S+)", trained.output).group(1)) if trained.exit_code == 0 else None
    return trained, package, raw


def test_sentiment_text_example_learns_from_the_cli(tmp_path, monkeypatch, sentiment_from_the_cli):
    trained, package, _ = sentiment_from_the_cli
    assert trained.exit_code == 0, trained.output
    monkeypatch.setenv("TRUSTFORGE_HOME", str(package.parents[2]))  # the workspace that signed it (WS/runs/RUN/package)
    metrics = json.loads((package.parent / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.78, metrics  # majority class (great) 0.65
    assert metrics["roc_auc"] > 0.83, metrics
    model = trustforge.Model.load(package)
    reviews = tmp_path / "new.jsonl"
    reviews.write_text(
        '{"review": "the best coffee i have ever had, delicious and smooth"}\n{"review": "stale and tasteless, a waste of money"}\n',
        encoding="utf-8",
    )
    proba = model.predict(reviews)["proba_great"]
    assert proba[0] > proba[1]


def test_sentiment_minilm_example_learns_with_small_settings(tmp_path):
    raw = _small(_example("sentiment_minilm.yaml"), _reviews_subset(tmp_path, 400), max_epochs=2)
    raw["data"]["text"]["max_length"] = 64
    result = trustforge.run(raw, progress=False, register=False)
    # The settings CI trains instead of the example's 25 minutes; the README quotes their figures.
    assert_near_readme("sentiment_minilm.yaml", result.metrics, reduced=True)  # majority class 0.65
    model = result.load_model()
    proba = model.predict(
        pd.DataFrame({"review": ["Delicious, fresh and the best tea I have tried.", "Arrived stale and tasted awful. Never again."]})
    )["proba_great"]
    assert proba[0] > proba[1]


# ---------------------------------------------------------------------------- full settings


@pytest.mark.slow
def test_sentiment_text_example_beats_tfidf_logistic_regression(sentiment_from_the_cli):
    """The example as written (the run the CLI test above made: its settings are the example's)."""
    trained, package, raw = sentiment_from_the_cli
    assert trained.exit_code == 0, trained.output
    written = _example("sentiment_text.yaml")
    assert {k: raw[k] for k in ("data", "model", "train")} == {k: written[k] for k in ("data", "model", "train")}  # as written
    m = json.loads((package.parent / "metrics.json").read_text())
    baseline = tfidf_logistic_regression(_example("sentiment_text.yaml"))
    assert_near_readme("sentiment_text.yaml", m)
    assert m["accuracy"] > baseline["accuracy"] and m["f1_macro"] > baseline["f1_macro"], (m, baseline)


@pytest.mark.slow
def test_chinese_text_example_reads_characters_well():
    result = trustforge.run(EXAMPLES / "chinese_text.yaml", progress=False, register=False)
    assert_near_readme("chinese_text.yaml", result.metrics)  # majority class 0.52
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    rows = {(r["corruption"], r["severity"]): r for r in evidence["corruptions"]["rows"]}
    assert set(rows) == {(c, s) for c in ("typos", "dropped_words") for s in (1, 2, 3)}
    assert rows[("typos", 3)]["drop"] >= rows[("typos", 1)]["drop"]  # harsher typos, larger drop
    assert evidence["explanations"]["completeness_gap"] < 1e-2
    assert {r["class"] for r in evidence["explanations"]["top_tokens"]} == {"negative", "positive"}
