"""model.kind auto with evaluate.robustness: a tree ensemble it packages is not attacked (its
output is piecewise constant), and `validate` and `train` say so rather than leave it to
evidence.json alone."""

from __future__ import annotations

import json

import pytest
from _cli import run_main

WHY = "a tree ensemble; if it does, the run skips the attacks"


@pytest.mark.parametrize(
    "model,robustness,noted",
    [
        ("{kind: auto, register_baseline: true}", "{epsilons: [0.1]}", True),
        ("{kind: auto, register_baseline: true}", "{}", True),  # robustness on by default
        ("{kind: auto, candidates: [linear, hist_gradient_boosting]}", "{}", True),  # no network: a baseline is packaged
        ("{kind: auto, candidates: [linear, hist_gradient_boosting, mlp]}", "{}", False),  # the best network is packaged
        ("{kind: auto, register_baseline: true, candidates: [linear, mlp]}", "{}", False),  # no tree among the candidates
        ("{kind: auto, register_baseline: true}", "false", False),
    ],
)
def test_validate_notes_that_auto_may_package_trees_robustness_skips(tmp_path, workspace, model, robustness, noted):
    spec = tmp_path / "auto.yaml"
    spec.write_text(f"name: a\ndata: {{source: 'builtin:iris'}}\nmodel: {model}\nevaluate: {{robustness: {robustness}}}\n")
    code, out, err = run_main("validate", "--no-data", spec, home=workspace)
    assert code == 0 and out.startswith("name: a"), err
    assert (WHY in err) is noted, err
    if noted:
        assert err.startswith("note: evaluate.robustness: model.kind auto may package hist_gradient_boosting (") and err.count("\n") == 1


def test_train_says_the_chosen_tree_ensemble_was_not_attacked(tmp_path, workspace):
    spec = tmp_path / "auto.yaml"
    spec.write_text(
        "name: auto-trees\ndata: {source: 'builtin:breast_cancer'}\n"
        "model: {kind: auto, candidates: [hist_gradient_boosting], register_baseline: true, time_budget: 3600}\n"
        "train: {seed: 5}\nevaluate: {corruptions: false, explain: false, privacy_audit: null, robustness: {epsilons: [0.1]}}\n"
    )
    code, out, err = run_main("train", spec, "-q", "--no-register", home=workspace)
    assert code == 0, err
    assert "hist_gradient_boosting is best on the validation split" in out
    note = (
        "note: evaluate.robustness skipped for the chosen model, hist_gradient_boosting: the model is a tree ensemble: its output "
        "is piecewise constant, with no input gradient to attack or attribute along (see evidence.json)"
    )
    assert note in err, err
    run_dir = next((workspace / "runs").glob("auto-trees-*"))
    evidence = json.loads((run_dir / "evidence.json").read_text())
    assert "robustness" not in evidence and evidence["skipped"]["robustness"].startswith("the model is a tree ensemble")
