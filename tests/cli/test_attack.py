"""`trustforge attack MODEL`: the sweep as a table or JSON, and one clear error for a bad flag or a model without a gradient path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _cli import run_main

import trustforge
from trustforge.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits example trained briefly (3 epochs), without evidence: a package to attack."""
    home = tmp_path_factory.mktemp("ws")
    spec = yaml.safe_load((ROOT / "examples" / "digits_cnn.yaml").read_text())
    spec["train"]["max_epochs"] = 3
    spec["evaluate"].update(speed=False, explain=False, corruptions=False, robustness=False)
    result = trustforge.run(spec, progress=False, register=True, settings=Settings.from_env(home=home))
    return result, home


def test_attack_prints_the_sweep_from_a_registry_uri(digits):
    result, home = digits
    code, out, err = run_main("attack", "models:/digits-cnn/1", "--attack", "fgsm", "--epsilon", "0.05,0.2", "--rows", "100", home=home)
    assert code == 0, err
    assert "FGSM" in out and "ε 0.05" in out and "ε 0.2" in out and "pixel range" in out and "100 rows" in out


def test_attack_json_matches_the_flags(digits):
    result, home = digits
    code, out, err = run_main(
        "attack", result.package, "--attack", "pgd", "--steps", "3", "--epsilon", "0.1", "--rows", "50", "--json", home=home
    )
    assert code == 0, err
    ev = json.loads(out)
    assert ev["rows"] == 50 and ev["steps"] == 3 and list(ev["attacks"]) == ["pgd"]
    point = ev["attacks"]["pgd"]["points"][0]
    assert point["epsilon"] == 0.1 and 0 <= point["accuracy"] <= ev["clean"]


@pytest.mark.parametrize(
    "flags, named",
    [(["--epsilon", "0"], "--epsilon"), (["--epsilon", "abc"], "--epsilon"), (["--epsilon", "11"], "--epsilon"),
     (["--steps", "0"], "--steps"), (["--attack", "cw"], "--attack"), (["--norm", "1"], "--norm"),
     (["--rows", "0"], "--rows must be an integer in [10, 100000]; got 0")],
)  # fmt: skip
def test_a_bad_flag_is_one_error_naming_it(digits, flags, named):
    # A usage error, exit 2 as Typer's own (a probe saw 3), in the spec's words, not pydantic's.
    result, home = digits
    code, out, err = run_main("attack", result.package, *flags, home=home)
    assert code == 2 and err.startswith(f"error: {named}") and len(err.strip().splitlines()) == 1, (flags, err)
    assert "Input should" not in err and "evaluate.robustness" not in err, err


def test_a_recommender_is_refused(tmp_path, workspace):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "evaluate"))
    from test_robustness import recommender_spec

    result = trustforge.run(recommender_spec(tmp_path), progress=False)
    code, out, err = run_main("attack", result.package, home=workspace)
    assert code != 0 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (out, err)
    assert "cannot attack this model" in err and "no gradient path" in err and "Traceback" not in out + err


def test_data_of_another_kind_is_one_error_naming_both(digits, workspace):
    """A spec whose data the model does not take is refused before encoding, both ways round
    (an image model given a table, a table model given images), naming what each is."""
    from types import SimpleNamespace

    from trustforge.commands.attack import _labelled
    from trustforge.data import prepare
    from trustforge.errors import DataError
    from trustforge.spec import load_spec

    result, home = digits
    code, out, err = run_main("attack", "models:/digits-cnn/1", "--data", str(ROOT / "examples" / "breast_cancer_mlp.yaml"), home=home)
    assert code != 0 and err.startswith("error: --data breast_cancer_mlp.yaml") and len(err.strip().splitlines()) == 1, err
    assert "the model takes image inputs" in err and "the spec's data are table inputs" in err and "Traceback" not in out + err
    table = prepare(load_spec(ROOT / "examples" / "breast_cancer_mlp.yaml")).schema
    with pytest.raises(DataError, match=r"the model takes table inputs.*the spec's data are image inputs"):
        _labelled(SimpleNamespace(schema=table, pii_key=None, manifest={}), ROOT / "examples" / "digits_cnn.yaml")


@pytest.mark.parametrize(
    "change, named",
    [
        ({"train": {"seed": 8}}, "train.seed 8 (the package's: 7)"),
        ({"data": {"split": {"test": 0.3}}}, "data.split.test 0.3 (the package's: 0.2)"),
    ],
    ids=["seed", "test-fraction"],
)
def test_the_training_data_split_another_way_is_refused_as_evaluate_refuses_it(digits, tmp_path, change, named):
    """A probe attacked rows the model trained on: the data set the model was trained on, split
    another way, is refused as `trustforge evaluate` refuses it, naming the field that differs."""
    result, home = digits
    spec = yaml.safe_load((ROOT / "examples" / "digits_cnn.yaml").read_text())
    for section, fields in change.items():
        for name, value in fields.items():
            spec[section][name] = {**spec[section][name], **value} if isinstance(value, dict) else value
    (tmp_path / "resplit.yaml").write_text(yaml.safe_dump(spec))
    code, out, err = run_main("attack", "models:/digits-cnn/1", "--data", tmp_path / "resplit.yaml", "--rows", "10", home=home)
    assert code == 3 and err.startswith(f"error: --data resplit.yaml: {named}") and len(err.strip().splitlines()) == 1, err
    assert "rows the model was trained on" in err and "under attack" not in out


def test_a_data_file_with_fewer_rows_than_rows_takes_is_refused(digits, tmp_path):
    """A probe's one-row CSV printed a full table "(1 rows, clean 1.0000)" though --rows must be at
    least 10: the same minimum holds for --data, naming the file and its row count."""
    import numpy as np
    from PIL import Image

    result, home = digits
    for n in (1, 9):
        folder = tmp_path / f"few{n}"
        for i in range(n):  # an image folder of the model's kind: one subfolder per class
            (folder / str(i % 2)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 16 * i, np.uint8)).save(folder / str(i % 2) / f"{i}.png")
        code, out, err = run_main("attack", result.package, "--data", folder, "--rows", "10", home=home)
        assert code == 3 and len(err.strip().splitlines()) == 1 and "under attack" not in out, err
        assert err.startswith(f"error: --data few{n} holds {n} labelled row(s); an attack needs at least 10"), err


def test_attack_sets_torchs_threads_as_train_does(digits, monkeypatch):
    """Torch's default (a thread per core) made the attack 4-20x slower on a busy machine: a small
    model is attacked on one thread unless OMP_NUM_THREADS or --threads says otherwise."""
    import torch

    result, home = digits
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        code, out, err = run_main("attack", result.package, "--attack", "fgsm", "--epsilon", "0.1", "--rows", "20", home=home)
        assert code == 0, err
        assert torch.get_num_threads() == 1  # the digits CNN is far under a million parameters
        code, out, err = run_main(
            "attack", result.package, "--attack", "fgsm", "--epsilon", "0.1", "--rows", "20", "--threads", "2", home=home
        )
        assert code == 0, err
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_epsilon_beyond_the_pixel_range_is_refused(digits):
    """ε above 1 (the whole pixel range) attacks nothing more: one error naming the flag and the field."""
    result, home = digits
    code, out, err = run_main("attack", result.package, "--epsilon", "1,5", "--rows", "20", home=home)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in out + err, err
    assert (
        "evaluate.robustness.epsilons (--epsilon): ε 5 is above the largest budget" in err and "1 in a fraction of the pixel range" in err
    )
    # L2: the limit is 1 on each of the 64 pixels, an L2 norm of 8.
    code, out, err = run_main("attack", result.package, "--norm", "2", "--epsilon", "8,9", "--rows", "20", home=home)
    assert code == 2 and "ε 9 is above the largest budget of this model's inputs, 8 in" in err, err
    code, out, err = run_main("attack", result.package, "--norm", "2", "--epsilon", "8", "--attack", "fgsm", "--rows", "20", home=home)
    assert code == 0, err


def test_an_edit_budget_on_an_image_model_is_one_error_naming_it(digits, monkeypatch):
    """--budget (evaluate.robustness.budgets) counts character edits: refused on an image model, not
    ignored, and before the data is prepared (as --epsilon on a text model: a probe saw its notes first)."""
    import trustforge.commands.attack as attack_command

    def prepared(*args, **kwargs):
        raise AssertionError("the data was prepared before the flag was refused")

    monkeypatch.setattr(attack_command, "_labelled", prepared)
    result, home = digits
    code, out, err = run_main("attack", result.package, "--budget", "2", "--rows", "20", home=home)
    # a usage error, exit 2 as the other bad flags (a probe saw 3, a data error's)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in out + err, err
    assert "evaluate.robustness.budgets (--budget) applies to text models" in err


def test_rows_default_to_the_specs(digits):
    """No --rows: RobustnessSpec's default (None: 200 for gradient attacks), as a run attacks; the digits test split has 359 images."""
    from trustforge.commands.attack import _settings
    from trustforge.spec import RobustnessSpec

    assert _settings(None, None, None, None, None, False, None).rows is RobustnessSpec().rows is None
    result, home = digits
    code, out, err = run_main("attack", result.package, "--attack", "fgsm", "--epsilon", "0.1", "--json", home=home)
    assert code == 0, err
    assert 190 <= json.loads(out)["rows"] <= 200  # a stratified sample of 200 (each class rounded), not 359 nor 500


def test_the_text_attack_counts_its_budget_in_character_edits():
    """The edit attack's table and flip line speak of edits, not of epsilon (a probe saw "epsilon")."""
    from rich.console import Console

    from trustforge.commands.attack import _flip_line, _table

    ev = {
        "metric": "accuracy",
        "norm": "edits",
        "epsilons": [1.0, 8.0],
        "rows": 30,
        "clean": 0.8,
        "attacks": {"char-edit": {"points": [{"epsilon": 1.0, "accuracy": 0.7}, {"epsilon": 8.0, "accuracy": 0.2}],
                                  "halving_epsilon": 4.0, "samples_per_second": 10.0}},
        "smallest_flip": {"attack": "char-edit", "median": 3.0},
    }  # fmt: skip
    assert _flip_line(ev) == "median smallest number of character edits that flips a prediction (char-edit): 3"
    console = Console(width=200, record=True)
    console.print(_table(ev, "x.csv"))
    text = console.export_text()
    assert "1 edit " in text and "8 edits" in text and "edits halving" in text and "ε" not in text, text
    gradient = {**ev, "norm": "inf", "smallest_flip": {"attack": "pgd", "median": 0.12}}
    assert _flip_line(gradient) == "median smallest epsilon that flips a prediction (pgd): 0.12"
