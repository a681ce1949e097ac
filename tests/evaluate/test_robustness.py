"""Adversarial evaluation (`evaluate._robustness`): equal to ART on the digits example, within a
table's valid region, and refused with one clear error where no gradient path exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.datasets import load_breast_cancer
from torch import nn

import trustforge
from trustforge.data import input_kind, prepare
from trustforge.errors import DataError, SpecError
from trustforge.evaluate import attack_refusal, hardening, robustness
from trustforge.settings import Settings
from trustforge.spec import EvaluateSpec, RobustnessSpec

ROOT = Path(__file__).resolve().parents[2]
EPSILONS = (0.05, 0.1, 0.2, 0.3)
QUIET = {"speed": False, "explain": False, "corruptions": False}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """examples/digits_cnn.yaml as it trains (40 epochs, about 10 s), with its robustness evidence."""
    spec = yaml.safe_load((ROOT / "examples" / "digits_cnn.yaml").read_text())
    spec["evaluate"].update(QUIET, robustness={"rows": 500})  # every one of the 359 test images
    result = trustforge.run(spec, progress=False, settings=Settings.from_env(home=tmp_path_factory.mktemp("ws")))
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    return result, evidence


@pytest.mark.slow  # about 25 s: training the example, then ART's PGD-20 at four budgets
def test_fgsm_and_pgd_accuracies_equal_art_on_the_digits_example(digits):
    """Issue 14: within 0.5 points of ART at every budget (ART 1.20.1 gave FGSM 0.916 / 0.602 /
    0.078 / 0.028 and PGD-20 0.911 / 0.507 / 0 / 0 on this model)."""
    pytest.importorskip("art")
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    result, evidence = digits
    rob = evidence["robustness"]
    assert rob["epsilons"] == list(EPSILONS) and rob["budget"] == "a fraction of the pixel range [0, 1]"
    model = result.load_model()
    test = prepare(result.spec).test_raw
    pre = model.preprocessor
    (encoded,) = pre.encode_inputs(test)
    mean = pre.input_state.mean.reshape(-1, 1, 1).numpy()
    std = pre.input_state.std.reshape(-1, 1, 1).numpy()
    pixels = (encoded.numpy() * std + mean).astype(np.float32)
    y = pre.encode_target(test).numpy()
    assert rob["rows"] == len(y) == 359
    clf = PyTorchClassifier(
        model=model.module,
        loss=nn.CrossEntropyLoss(),
        input_shape=pixels.shape[1:],
        nb_classes=10,
        clip_values=(0.0, 1.0),
        preprocessing=(mean, std),
    )
    onehot = np.eye(10)[y]
    assert rob["clean"] == pytest.approx(float((clf.predict(pixels).argmax(1) == y).mean()), abs=1e-9)
    for name, make in (
        ("fgsm", lambda e: FastGradientMethod(clf, eps=e)),
        ("pgd", lambda e: ProjectedGradientDescent(clf, eps=e, eps_step=e / 4, max_iter=20, verbose=False)),
    ):
        ours = [p["accuracy"] for p in rob["attacks"][name]["points"]]
        art = [float((clf.predict(make(e).generate(pixels, y=onehot)).argmax(1) == y).mean()) for e in EPSILONS]
        assert np.abs(np.array(ours) - np.array(art)).max() <= 0.005, (name, ours, art)
    pgd = [p["accuracy"] for p in rob["attacks"]["pgd"]["points"]]
    assert pgd[0] > 0.8 and pgd[-1] < 0.05  # the attack bites, and harder with the budget
    # The budget at which accuracy halves lies between the swept budgets around half the clean accuracy.
    assert 0.05 < rob["attacks"]["pgd"]["halving_epsilon"] < 0.2
    # The median smallest flipping budget is where about half the rows are flipped.
    flip = rob["smallest_flip"]
    assert flip["attack"] == "pgd" and 0.05 < flip["median"] < 0.2 and flip["resisted"] == 0.0
    ex = rob["examples"]
    assert ex["rows"] and all(r["label"] != r["adversarial_prediction"] for r in ex["rows"])
    x0, x1 = np.array(ex["rows"][0]["original"]), np.array(ex["rows"][0]["adversarial"])
    assert x0.shape == (1, 8, 8) and 0 <= x1.min() and x1.max() <= 1 and np.abs(x1 - x0).max() <= ex["epsilon"] + 1e-3
    assert rob["hardened"] == "not hardened"


def test_a_plain_twin_adds_the_before_hardening_curve(digits):
    """`baseline_module`: the same rows, the same attacks, on the twin's network."""
    result, _ = digits
    model = result.load_model()
    test = prepare(result.spec).test_raw
    settings = RobustnessSpec(attacks=["fgsm"], epsilons=[0.1], rows=60)
    twin = result.load_model().module
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # another network on the same inputs
    ev = robustness(model, test, settings, seed=0, baseline_module=twin)
    before = ev["before_hardening"]
    assert set(before) >= {"clean", "attacks"} and "examples" not in before
    assert before["attacks"]["fgsm"]["points"][0]["epsilon"] == 0.1
    assert before["clean"] != ev["clean"]
    assert ev["rows"] == 60 and ev["of_rows"] == 359
    again = robustness(model, test, settings, seed=0)
    assert again["attacks"]["fgsm"]["points"] == ev["attacks"]["fgsm"]["points"]  # seeded: the same rows, the same figures


def test_the_default_l2_sweep_is_scaled_to_the_rows_size_and_bites(digits):
    """L2 without epsilons: the kind's budgets times sqrt(64 pixels), so its largest reaches as far
    as L∞ 0.3 on every pixel (the L∞ defaults left accuracy at 0.87 there)."""
    result, _ = digits
    model = result.load_model()
    test = prepare(result.spec).test_raw
    ev = robustness(model, test, RobustnessSpec(norm="2", attacks=["pgd"], steps=10, rows=100), seed=0, examples=0)
    assert ev["epsilons"] == [0.4, 0.8, 1.6, 2.4]
    assert "for L2, ε is the L2 norm of the whole change of a row (64 movable elements)" in ev["budget"]
    accuracy = [p["accuracy"] for p in ev["attacks"]["pgd"]["points"]]
    assert ev["clean"] > 0.9 and accuracy[-1] < 0.2, accuracy


def _mixed_table(tmp_path: Path) -> Path:
    """Breast-cancer measurements with a categorical and a binary column derived from them (so they carry signal)."""
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    frame = x.iloc[:, :6].copy()
    frame["size_band"] = pd.cut(x["worst area"], [0, 500, 900, 1500, 1e9], labels=["small", "medium", "large", "huge"]).astype(str)
    frame["smooth"] = np.where(x["mean smoothness"] > x["mean smoothness"].median(), "yes", "no")
    frame["target"] = np.where(y == 1, "benign", "malignant")
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_table_attack_stays_in_the_training_range_and_leaves_categories_alone(tmp_path, workspace):
    spec = {
        "name": "mixed-table",
        "task": "classification",
        "data": {"source": f"csv:{_mixed_table(tmp_path)}", "target": "target", "split": {"test": 0.3, "validation": 0.0}},
        "model": {"kind": "mlp", "hidden": [32]},
        "train": {"max_epochs": 15, "batch_size": 32, "early_stopping": None, "seed": 3},
        "evaluate": {**QUIET, "robustness": {"epsilons": [0.5, 2.0], "steps": 10}},
    }
    result = trustforge.run(spec, progress=False)
    rob = json.loads((result.run_dir / "evidence.json").read_text())["robustness"]
    assert rob["budget"] == "standard deviations of the column" and rob["epsilons"] == [0.5, 2.0]
    assert rob["clean"] > 0.85  # it learned the task
    acc = [p["accuracy"] for p in rob["attacks"]["pgd"]["points"]]
    assert acc[-1] < acc[0] < rob["clean"] + 1e-9

    model = result.load_model()
    pre = model.preprocessor
    kinds = {c.name: c.kind for c in model.schema.columns}
    assert kinds["size_band"] == "categorical" and kinds["smooth"] == "binary"
    for row in rob["examples"]["rows"]:
        for change in row["changes"]:
            assert kinds[change["column"]] == "numeric", change  # categories and flags never move
            state = pre.features[change["column"]]
            tol = 1e-5 * max(abs(state.low), abs(state.high), 1.0)  # float32 encoding, decoded
            assert change["units"] == "raw" and state.low - tol <= change["after"] <= state.high + tol
            assert abs(change["after"] - change["before"]) <= 2.0 * state.std + tol

    # The adversarial tensors themselves: numbers within the training range, category indices untouched.
    from trustforge.models import pgd

    test = prepare(result.spec).test_raw
    inputs = pre.encode_inputs(test)
    spaces = input_kind(model.schema).attack_spaces(pre)
    loss = model.task.loss(model.spec, 2, pre.encode_target(test))
    adv = pgd(model.module, inputs, pre.encode_target(test), loss, spaces, epsilon=5.0, steps=5, step_size=2.0)
    floats, space = adv[0].numpy(), spaces[0]
    free = floats[:, space.mask]  # the columns that may move: numbers, within their training range
    assert (free >= space.lo[space.mask] - 1e-5).all() and (free <= space.hi[space.mask] + 1e-5).all()
    assert torch.equal(adv[1], inputs[1])
    moved = np.abs(floats - inputs[0].numpy()).max(axis=0) > 0
    assert not moved[~space.mask].any() and moved[space.mask].any()


def test_epsilon_and_steps_are_checked_by_the_spec():
    for bad, field in (
        ({"epsilons": [0.0]}, "epsilon must be > 0"),
        ({"epsilons": [50]}, "at most the input's largest"),
        ({"steps": 0}, "steps"),
    ):
        with pytest.raises(Exception, match=field) as info:
            EvaluateSpec.model_validate({"robustness": bad})
        assert "robustness" in str(info.value)
    assert EvaluateSpec.model_validate({"robustness": False}).robustness is None
    assert EvaluateSpec().robustness.attacks == ["fgsm", "pgd"]
    assert EvaluateSpec.model_validate({"robustness": {"norm": 2}}).robustness.norm == "2"  # YAML's `norm: 2` is a number


def test_an_image_specs_epsilon_range_is_the_pixel_range():
    """On an image spec the L∞ range is (0, 1], checked at spec load and stated as such (not a table's 10)."""
    from trustforge.spec import load_spec

    raw = yaml.safe_load((ROOT / "examples" / "digits_cnn.yaml").read_text())
    for bad, says in (([-0.1], "must be > 0"), ([0.5, 2], "must be at most 1 for image inputs (L∞, a fraction of the pixel range")):
        with pytest.raises(SpecError) as info:
            load_spec({**raw, "evaluate": {"robustness": {"epsilons": bad}}})
        message = str(info.value)
        assert "evaluate.robustness.epsilons" in message and says in message and "10" not in message, message
    assert load_spec({**raw, "evaluate": {"robustness": {"epsilons": [1]}}}).evaluate.robustness.epsilons == [1.0]
    table = yaml.safe_load((ROOT / "examples" / "breast_cancer_mlp.yaml").read_text())
    assert load_spec({**table, "evaluate": {"robustness": {"epsilons": [2]}}}).evaluate.robustness.epsilons == [2.0]


def test_a_budget_above_the_inputs_largest_is_refused():
    """Standard deviations: 10 at most (L∞), 10·sqrt(movable columns) for L2; columns that stay put do not count."""
    from trustforge.data import AttackSpace, movable_elements
    from trustforge.evaluate._robustness import _check_budgets

    space = AttackSpace(
        np.full(4, -3.0), np.full(4, 3.0), np.ones(4), np.array([1, 1, 1, 0], bool), budget="standard deviations", max_epsilon=10.0
    )
    inputs = (torch.zeros(5, 4),)
    assert movable_elements((space, None), inputs) == 3
    _check_budgets((space,), [0.5, 10.0], inputs, l2=False)
    with pytest.raises(SpecError, match=r"evaluate.robustness.epsilons \(--epsilon\): ε 11 is above .* 10 in standard deviations, L∞"):
        _check_budgets((space,), [0.5, 11.0], inputs, l2=False)
    _check_budgets((space,), [17.3], inputs, l2=True)  # 10·sqrt(3) = 17.32
    with pytest.raises(SpecError, match="ε 17.4 is above .* L2 .*3 movable elements"):
        _check_budgets((space,), [17.4], inputs, l2=True)


def test_hardening_reads_the_spec_defensively():
    class Adv:
        attack, epsilon, steps, ratio = "pgd", 0.1, 7, 1.0

    class Train:
        adversarial = Adv()

    assert hardening(type("S", (), {"train": Train()})()) == "PGD adversarial training against PGD-7, L∞, ε 0.1"
    assert hardening(type("S", (), {"train": object()})()) == "not hardened"


def test_hardening_names_the_defence_from_its_real_fields():
    """Each method in its own words: TRADES with its β and norm, PGD with its batch share; no field of the other method."""
    from trustforge.spec import TrainSpec

    def said(adv: dict) -> str:
        return hardening(type("S", (), {"train": TrainSpec(adversarial=adv)})())

    assert said({"method": "trades", "steps": 5, "norm": 2, "epsilon": 0.3}) == "TRADES (β 6) against PGD-5, L2, ε 0.3"
    pgd = said({"method": "pgd", "attack": "fgsm", "epsilon": 0.1, "ratio": 0.5})
    assert pgd == "PGD adversarial training (50% of each batch) against FGSM, L∞, ε 0.1" and "β" not in pgd
    assert "ratio" not in said({"method": "trades"}) and said({"step_size": 0.02}).endswith("ε 0.1, step 0.02")


def test_a_recommender_records_why_it_is_not_attacked(tmp_path, workspace):
    result = trustforge.run(recommender_spec(tmp_path), progress=False)
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    assert "robustness" not in evidence and "no gradient path" in evidence["skipped"]["robustness"]
    assert attack_refusal(result.load_model()) == evidence["skipped"]["robustness"]


def test_a_forecaster_is_skipped_for_its_undeclared_range_not_for_a_missing_gradient():
    """A GRU over float windows is differentiable: the honest reason is that series windows declare no valid range."""
    from types import SimpleNamespace

    model = SimpleNamespace(schema=SimpleNamespace(modality="series"), preprocessor=None, task=SimpleNamespace(name="forecasting"))
    reason = attack_refusal(model)
    assert reason.startswith("series inputs declare no attack space yet") and "valid range is not declared" in reason
    assert "no gradient path" not in reason


def recommender_spec(tmp_path: Path) -> dict:
    """A matrix factorisation on a small generated ratings table (one epoch: it only needs to exist)."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 1200), rng.integers(0, 30, 1200)
    ratings = np.clip(np.round(3 + (users % 3 == items % 3) * 1.5 + rng.normal(0, 0.5, 1200)), 1, 5)
    path = tmp_path / "ratings.csv"
    pd.DataFrame({"user": users, "item": items, "rating": ratings, "t": np.arange(1200)}).to_csv(path, index=False)
    return {
        "name": "tiny-mf",
        "task": "recommendation",
        "data": {
            "source": f"csv:{path}",
            "interactions": {"user": "user", "item": "item", "rating": "rating", "time": "t", "feedback": "explicit"},
        },
        "model": {"kind": "mf", "factors": 4},
        "train": {"max_epochs": 1, "seed": 0},
        "evaluate": {**QUIET},
    }


def test_sample_keeps_every_class():
    from trustforge.evaluate._robustness import _sample

    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    idx = _sample(y, 100, seed=1, stratify=True)
    assert len(idx) == 100 and set(np.unique(y[idx])) == {0, 1, 2}
    assert np.array_equal(idx, _sample(y, 100, seed=1, stratify=True))
    with pytest.raises(DataError):
        _sample(np.array([]), 10, seed=0, stratify=True)


def test_the_report_draws_the_curve_and_the_card_states_the_halving_budget(digits):
    from trustforge.evaluate import write_report

    result, evidence = digits
    html = write_report(result.run_dir).read_text(encoding="utf-8")
    assert 'data-plot="robustness"' in html and 'data-plot="adversarial_examples"' in html
    section = html[html.index('id="robustness"') :]
    assert "fraction of the pixel range" in section and "The model was not adversarially trained." in section and "PGD-20" in section
    card = (result.run_dir / "model_card.md").read_text(encoding="utf-8")
    half = evidence["robustness"]["attacks"]["pgd"]["halving_epsilon"]
    assert f"accuracy halves under PGD-20 at ε {half:.3g}" in card and "Not adversarially trained." in card


def test_the_report_and_card_name_the_defence_of_a_hardened_model(digits, tmp_path):
    """A hardened model's sentence names its defence (no "The model is adversarial training: …")."""
    import shutil

    from trustforge.evaluate import write_report

    result, evidence = digits
    run_dir = Path(shutil.copytree(result.run_dir, tmp_path / "run"))
    hardened = json.loads(json.dumps(evidence))
    hardened["robustness"]["hardened"] = "TRADES (β 6) against PGD-5, L2, ε 0.3"
    (run_dir / "evidence.json").write_text(json.dumps(hardened))
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert "The model was adversarially trained: TRADES (β 6) against PGD-5, L2, ε 0.3." in html and "The model is " not in html
    card = (run_dir / "model_card.md").read_text(encoding="utf-8")
    assert "Adversarially trained: TRADES (β 6) against PGD-5, L2, ε 0.3." in card and "Hardened against" not in card


def test_audio_moves_its_spectrogram_within_each_bands_training_range():
    """The audio kind's space: the standardised log-mel spectrogram, each band within the range training saw."""
    from types import SimpleNamespace

    from trustforge.data import INPUT_KINDS
    from trustforge.data._audio import FrontEnd  # the front end the audio kind fits
    from trustforge.models import pgd

    rng = np.random.default_rng(0)
    t = np.arange(4000) / 8000
    tones = [np.sin(2 * np.pi * f * t) * 0.5 + rng.normal(0, 0.02, len(t)) for f in (300, 600, 900, 1200) for _ in range(4)]
    waves = np.stack(tones).astype(np.float32)
    front = FrontEnd(sample_rate=8000, samples=4000, n_fft=256, hop_length=128, n_mels=16)
    state = front.fit(waves)
    x = front.encode(waves, state)  # (N, 1, 16, frames)
    (space,) = INPUT_KINDS["audio"].attack_spaces(SimpleNamespace(input_state=state))
    assert space.lo.shape == (1, 16, 1) and "log-mel spectrogram" in space.budget and space.epsilons == (0.1, 0.25, 0.5, 1.0)
    assert (x.numpy() >= space.lo - 1e-5).all() and (x.numpy() <= space.hi + 1e-5).all()  # the training range, per band
    y = torch.tensor([i // 4 for i in range(16)])
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    (adv,) = pgd(net, (x,), y, nn.CrossEntropyLoss(), [space], epsilon=3.0, steps=3, step_size=2.0)
    assert (adv.numpy() >= space.lo - 1e-5).all() and (adv.numpy() <= space.hi + 1e-5).all()
    assert float((adv - x).abs().max()) > 0.5  # it moved


def test_a_regression_model_is_scored_by_its_error_under_attack(workspace):
    spec = {
        "name": "diabetes",
        "task": "regression",
        "data": {"source": "builtin:diabetes", "split": {"test": 0.25, "validation": 0.0}},
        "model": {"kind": "mlp", "hidden": [32]},
        "train": {"max_epochs": 30, "early_stopping": None, "seed": 1},
        "evaluate": {**QUIET, "robustness": {"attacks": ["pgd"], "steps": 5}},
    }
    result = trustforge.run(spec, progress=False)
    rob = json.loads((result.run_dir / "evidence.json").read_text())["robustness"]
    assert rob["metric"] == "rmse" and rob["target"] == "the true values" and "smallest_flip" not in rob
    assert rob["clean"] == pytest.approx(result.metrics["rmse"], rel=1e-4)  # the error in the target's units, as metrics.json
    errors = [p["rmse"] for p in rob["attacks"]["pgd"]["points"]]
    assert rob["clean"] < errors[0] < errors[-1]  # ascending the squared error raises it, more with the budget
    html = trustforge.evaluate.write_report(result.run_dir).read_text(encoding="utf-8")
    assert "against the true values, on" in html and "against the true labels" not in html


def test_a_run_with_too_few_test_rows_says_robustness_was_not_measured(tmp_path, workspace):
    """30 rows leave 6 in the test split: fewer than `trustforge attack` accepts (MIN_ATTACK_ROWS),
    so the evidence and the report state why there is no figure instead of one from 6 rows."""
    from trustforge.evaluate import write_report
    from trustforge.spec import MIN_ATTACK_ROWS

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=30), "b": rng.normal(size=30)})
    frame["target"] = np.where(frame["a"] > 0, "yes", "no")
    frame.to_csv(tmp_path / "small.csv", index=False)
    spec = {
        "name": "small",
        "task": "classification",
        "data": {"source": f"csv:{tmp_path / 'small.csv'}", "target": "target", "split": {"test": 0.2, "validation": 0.0}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 2, "early_stopping": None},
        "evaluate": {**QUIET, "robustness": {}},
    }
    result = trustforge.run(spec, progress=False)
    evidence = json.loads((result.run_dir / "evidence.json").read_text())
    reason = f"6 test rows, at least {MIN_ATTACK_ROWS} needed"
    assert "robustness" not in evidence and evidence["skipped"]["robustness"] == reason
    assert f"Not measured: {reason}." in write_report(result.run_dir).read_text(encoding="utf-8")
    assert f"Robustness against attacks: not measured ({reason})." in (result.run_dir / "model_card.md").read_text(encoding="utf-8")
