"""The README's example figures: one recorded copy (bench/figures.json), quoted as recorded by the
README's Examples table, guarded near the claim by a CI test, and checked by `bench/scenarios.py
--check`.

The guards themselves sit beside the tests that already train each example (a full-settings run
is not repeated for the guard): tests/test_examples.py, tests/test_*_scenario.py and
tests/test_text_scenarios.py call `assert_near_readme`. The two foundation examples no other test
trained at full settings, shapes and the classic LSTM, are guarded here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _figures import FIGURES, REDUCED, assert_near_readme, scenarios  # scenarios: bench/scenarios.py

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def readme_rows() -> dict[str, str]:
    """The Examples table of the README: {example file: its whole row}."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^(\| `examples/([\w.]+)` \|.*)$", text, flags=re.M)
    assert rows, "README has no Examples table"
    return {name: line for line, name in rows}


def figures_cell(row: str) -> str:
    """The third column of a row: the example's own figures (the fourth is the baseline's)."""
    return row.split("|")[3]


def quoted(metric: str, figure: float) -> set[str]:
    """The ways the README may write a figure: MAE with one decimal, MAPE in percent, the rest
    with three decimals, or two (recall 0.85)."""
    if metric == "mae":
        return {f"MAE {figure:.1f}"}
    if metric == "mape":
        return {f"MAPE {100 * figure:.1f} %"}
    return {f"{figure:.3f}", f"{figure:.2f}"} if round(figure, 2) == figure else {f"{figure:.3f}"}


def readme_line(start: str) -> str:
    """The README line that starts with `start` (a row of another table that quotes a figure)."""
    lines = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0]


def test_every_readme_example_has_its_figures_recorded():
    rows = readme_rows()
    assert set(rows) <= set(FIGURES), set(rows) - set(FIGURES)
    assert all((EXAMPLES / name).is_file() for name in FIGURES)
    for example in set(FIGURES) - set(rows):  # quoted outside the Examples table (the mixed-input table)
        assert all("quoted_in" in rec for rec in FIGURES[example].values()), example


@pytest.mark.parametrize("example", sorted(FIGURES))
def test_the_readme_quotes_the_recorded_figures_and_no_others(example):
    rows = readme_rows()
    for metric, rec in FIGURES[example].items():
        # A figure may be quoted in another row (the from-scratch model's ROC-AUC is the MiniLM
        # row's baseline; the mixed-input table); "quoted_in" is the start of that README line.
        cell = readme_line(rec["quoted_in"]) if "quoted_in" in rec else figures_cell(rows[example])
        assert any(q in cell for q in quoted(metric, rec["figure"])), (example, metric, rec["figure"], cell)
    if example not in rows:
        return
    # Every figure in the example's own cell is a recorded one (the settings in brackets, such as
    # "SGD lr 0.001, 30 epochs", are conditions, not figures).
    cell = re.sub(r"\((?:SGD|seed|torch)[^)]*\)", "", figures_cell(rows[example]))
    stated = {float(x) for x in re.findall(r"\b0\.\d{2,3}\b", cell)}
    recorded = {round(r["figure"], 3) for r in FIGURES[example].values()} | {round(100 * r["figure"], 1) for r in FIGURES[example].values()}
    assert stated <= recorded, (example, stated, recorded)


def test_every_recorded_figure_has_a_tolerance_of_a_few_points_at_most():
    for example, figures in FIGURES.items():
        for metric, rec in figures.items():
            assert 0 < rec["tolerance"] <= (0.05 if rec["figure"] <= 1 else 0.15 * rec["figure"]), (example, metric, rec)
            assert rec["why"], (example, metric)


def test_every_example_figure_is_guarded_by_a_test():
    """Some test file calls `assert_near_readme` on each example (the guards are the slow tests
    that train it at the settings its figure was measured with), or with `reduced=True` where the
    example is too slow for CI and the README quotes the reduced settings' figures too."""
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py")}
    for example, figures in FIGURES.items():
        reduced = all(r.get("ci") == "reduced" for r in figures.values())
        call = rf"assert_near_readme\(\s*\"{re.escape(example)}\"" + (r"[^)]*reduced=True" if reduced else r"(?![^)]*reduced=True)")
        guards = [p.name for p, text in sources.items() if re.search(call, text)]
        assert guards, f"no test guards the README figures of {example}"
        assert reduced == (example in REDUCED), example


@pytest.mark.parametrize("example", sorted(REDUCED))
def test_the_readme_quotes_the_reduced_settings_ci_guards(example):
    """An example too slow for CI: the README says what CI trains instead, with its figures."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    notes = [p for p in re.split(r"\n(?=- )|\n\n", text) if example in p and "CI" in p and not p.startswith("|")]
    assert notes, f"the README does not say what CI trains for {example}"
    for metric, rec in REDUCED[example]["figures"].items():
        assert any(any(q in note for q in quoted(metric, rec["figure"])) for note in notes), (example, metric, rec)


# ---------------------------------------------------------------------------- the comparison


def test_a_figure_within_its_tolerance_holds_and_one_below_it_fails():
    figures = {"x.yaml": {"accuracy": {"figure": 0.90, "tolerance": 0.02, "why": ""}}}
    assert scenarios.shortfalls("x.yaml", {"accuracy": 0.885}, figures) == []
    assert scenarios.shortfalls("x.yaml", {"accuracy": 0.99}, figures) == []  # --check: better is fine
    (line,) = scenarios.shortfalls("x.yaml", {"accuracy": 0.87}, figures)
    assert line.startswith("x.yaml accuracy: 0.8700, below the README figure 0.9")
    (line,) = scenarios.shortfalls("x.yaml", {"accuracy": 0.95}, figures, two_sided=True)  # the tests: near, either way
    assert "above the README figure" in line
    assert scenarios.shortfalls("x.yaml", {}, figures) == ["x.yaml accuracy: not measured (README figure 0.9)"]
    assert scenarios.shortfalls("x.yaml", {"accuracy": float("nan")}, figures) == ["x.yaml accuracy: NaN (README figure 0.9)"]


def test_an_error_metric_fails_when_it_rises_above_its_figure():
    figures = {"f.yaml": {"mae": {"figure": 14.7, "tolerance": 2.0, "why": ""}}}
    assert scenarios.shortfalls("f.yaml", {"mae": 12.0}, figures) == []
    (line,) = scenarios.shortfalls("f.yaml", {"mae": 17.0}, figures)
    assert "mae: 17.0000, worse than the README figure 14.7" in line


def test_check_exits_non_zero_naming_the_row_below_its_figure(monkeypatch, capsys):
    """`bench/scenarios.py --check` with the runs and baselines replaced by fixed figures: fraud's
    PR-AUC 0.55 is below its README 0.617 by more than 0.02; digits holds."""
    runs = {"fraud_mlp.yaml": {"pr_auc": 0.55, "roc_auc": 0.935, "_seconds": 1.0}, "digits_cnn.yaml": {"accuracy": 0.996, "_seconds": 1.0}}
    monkeypatch.setattr(scenarios, "run_example", lambda example: runs[example])
    rows = [
        scenarios.Scenario(s.name, s.example, s.metric, s.baseline, s.target, lambda spec, m: 0.5)
        for s in scenarios.SCENARIOS
        if s.example in runs
    ]
    monkeypatch.setattr(scenarios, "SCENARIOS", rows)
    assert scenarios.failures(rows, runs.__getitem__) == [
        "fraud detection (fraud_mlp.yaml) pr_auc: 0.5500, below the README figure 0.617 by more than 0.02"
    ]

    assert scenarios.main(["fraud", "image", "--check"]) == 1
    out, err = capsys.readouterr()
    assert "below its README figure: fraud detection (fraud_mlp.yaml) pr_auc" in err and "digits" not in err
    assert "0.617" in out  # each row prints its README figure beside the run's

    assert scenarios.main(["fraud", "image"]) == 0  # without --check it only prints
    assert scenarios.main(["image", "--check"]) == 0
    assert "every row holds its README figure" in capsys.readouterr().out


# ---------------------------------------------------------------------------- guards trained here


# The example as written, evidence off (the test metrics are computed before any evidence, and
# are the same with it on): the session's `as_written` run (tests/conftest.py), which
# tests/evaluate/test_baselines.py reads too.


@pytest.mark.slow  # about 45 s on two cores
def test_shapes_example_holds_its_readme_figure(as_written):
    result = as_written("shapes_cnn.yaml")
    assert_near_readme("shapes_cnn.yaml", result.metrics)
    assert result.load_model().name == "shapes-cnn"


@pytest.mark.slow
def test_classic_lstm_example_holds_its_readme_figure(as_written):
    result = as_written("classic_lstm.yaml")
    assert_near_readme("classic_lstm.yaml", result.metrics)
    assert result.load_model().name == "classic-lstm"
