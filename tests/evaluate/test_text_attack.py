"""The character-edit attack on text (DeepWordBug-style) against small text classifiers trained
here: 600 generated reviews (and 120 more to attack) whose class rests on two sentiment words among filler words, so a
bag of words reads them perfectly and a typo in each of the two words breaks a negative review.

Figures on this data (seed 0, the 120 test rows, budgets 1, 2, 4, 8): a word-bag text model
goes from accuracy 1.0 to 0.5 at 2 edits; the negatives flip and the positives cannot, since a
review stripped of known sentiment words reads as positive to this model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import trustforge
from trustforge.data import EditSpace, input_kind
from trustforge.errors import DataError, SpecError
from trustforge.evaluate._text_attack import _NEAR, ATTACK, UNIT, _Attack, _edits, check_budgets, edit_attack
from trustforge.settings import Settings

POS = ["great", "excellent", "lovely", "superb", "wonderful", "delightful"]
NEG = ["awful", "terrible", "horrible", "dreadful", "lousy", "disgusting"]
FILL = "the a this that food service place staff meal room price was is very quite really and but our my visit".split()
TRAIN = {"max_epochs": 8, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.01}, "early_stopping": None, "seed": 0}
FAST_EVIDENCE = {"speed": False, "corruptions": False, "explain": False}
BUDGETS = [1, 2, 4, 8]


def _reviews(n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        y = i % 2
        words = list(rng.choice(FILL, size=rng.integers(5, 9)))
        for _ in range(2):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POS if y else NEG)))
        rows.append({"review": " ".join(words), "sentiment": "positive" if y else "negative", "stars": float(rng.integers(1, 6))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edits")
    frame = _reviews(720)
    return frame, folder


def _train(reviews, name: str, data: dict, task: str = "classification", epochs: int = 8, **model):
    frame, folder = reviews
    source = folder / f"{name}.csv"
    frame.iloc[:600][[c for c in frame.columns if c in data.pop("columns", frame.columns)]].to_csv(source, index=False)
    spec = {
        "name": name,
        "task": task,
        "data": {"source": f"csv:{source}", **data},
        "train": {**TRAIN, "max_epochs": epochs},
        "evaluate": FAST_EVIDENCE,
    }
    if model:
        spec["model"] = model
    result = trustforge.run(spec, settings=Settings.from_env(home=folder / "ws"), progress=False, register=False)
    return result.load_model()


@pytest.fixture(scope="module")
def text_model(reviews):
    text = {"column": "review", "tokenizer": "word", "max_length": 32}
    return _train(reviews, "bag", {"target": "sentiment", "text": text}, kind="mlp", embedding_dim=16, hidden=[])


def _test_rows(model, reviews):
    frame, _ = reviews
    return model.read_input(frame.iloc[600:])  # 120 reviews no model saw


def _attack(model, reviews, seed=0, rows=120):
    raw = _test_rows(model, reviews)
    return edit_attack(model, raw, input_kind(model.schema).edit_space(model.preprocessor), budgets=BUDGETS, rows=rows, seed=seed)


def _levenshtein(a: str, b: str) -> int:
    d = np.arange(len(b) + 1)
    for i, ca in enumerate(a, 1):
        prev, d[0] = d.copy(), i
        for j, cb in enumerate(b, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ca != cb))
    return int(d[-1])


def test_levenshtein_of_the_test_counts_a_swap_as_two():
    assert _levenshtein("great", "graet") == 2 and _levenshtein("great", "gret") == 1 and _levenshtein("", "ab") == 2


@pytest.mark.parametrize("word", ["great", "Terrible", "ok", "a", "2024", "质量"])
def test_each_candidate_edit_costs_its_levenshtein_distance_within_what_is_left(word):
    rng = np.random.default_rng(0)
    for left in (1, 2, 5):
        for _ in range(20):
            for new, cost in _edits(word, left, rng):
                assert new != word and cost <= left
                assert _levenshtein(word, new) == cost  # a swap of two different characters is 2
                if cost == 1 and len(new) == len(word):  # a substitution: a neighbouring key
                    k = next(i for i, (a, b) in enumerate(zip(word, new)) if a != b)
                    assert new[k].lower() in (_NEAR.get(word[k].lower()) or set(word))
    assert _edits(word, 0, rng) == []
    assert {c for _, c in _edits("great", 1, rng)} == {1}  # no swap within one edit


def test_accuracy_falls_with_the_edit_budget(text_model, reviews):
    ev = _attack(text_model, reviews)
    assert ev["attack"] == ATTACK and ev["unit"] == UNIT == "character edits" and ev["rows"] == 120
    assert ev["budgets"] == [0, *BUDGETS]
    acc, success = ev["accuracy"], ev["success_rate"]
    assert len(acc) == len(success) == len(BUDGETS) + 1
    assert acc[0] >= 0.95  # clean: two known sentiment words per review
    assert all(b <= a for a, b in zip(acc, acc[1:])), acc  # never rises with the budget
    assert acc[-1] <= acc[0] - 0.3, acc  # the negatives (half the rows) flip
    assert all(b >= a for a, b in zip(success, success[1:])) and success[0] == 0.0 and success[-1] >= 0.3
    assert 1 <= ev["median_smallest_budget"] <= BUDGETS[-1]
    assert 1 <= len(ev["examples"]) <= 5 and ev["seconds"] > 0


def test_examples_really_fool_the_model_within_the_budget(text_model, reviews):
    ev = _attack(text_model, reviews)
    adversarial = pd.DataFrame({"review": [e["adversarial"] for e in ev["examples"]]})
    predicted = list(text_model.predict(adversarial)["prediction"])  # read again through the public path
    for e, p in zip(ev["examples"], predicted):
        assert e["prediction_before"] == e["label"] != e["prediction_after"] == p
        assert e["original"] != e["adversarial"]
        assert _levenshtein(e["original"], e["adversarial"]) == e["edits"] <= BUDGETS[-1]


def test_every_adversarial_text_is_within_the_budget(text_model, reviews):
    raw = _test_rows(text_model, reviews)
    for budget in (1, 3):
        attack = _Attack(text_model, raw, ("review",), np.random.default_rng(0))
        flipped_at, texts = attack.run(budget)
        edits = [_levenshtein(o[0], t[0]) for o, t in zip(attack.original, texts)]
        assert max(edits) <= budget and max(edits) >= 1  # some text was edited, none beyond the budget
        flipped = np.isfinite(flipped_at)
        assert all(edits[i] <= flipped_at[i] <= budget for i in np.flatnonzero(flipped))
        # The flipped rows really are misread, and the rows left alone (wrong already, or
        # unflipped) keep the model's own answer for them.
        proba = text_model.predict_proba(pd.DataFrame({"review": [t[0] for t in texts]}))
        pred = attack.decide(proba)
        assert (pred[flipped] != attack.labels[flipped]).all()
        assert flipped.sum() == ((attack.pred0 == attack.labels) & (pred != attack.labels)).sum()


def test_same_seed_same_result(text_model, reviews):
    a, b = _attack(text_model, reviews, seed=3, rows=60), _attack(text_model, reviews, seed=3, rows=60)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


@pytest.mark.parametrize("budgets", [[], [0], [1, -2], [1.5], [True], None, "3"])
def test_an_empty_or_bad_budget_is_one_clear_error(budgets, text_model, reviews):
    with pytest.raises(SpecError, match=r"evaluate\.robustness\.budgets must"):
        check_budgets(budgets)
    with pytest.raises(SpecError, match=r"evaluate\.robustness\.budgets"):
        edit_attack(text_model, _test_rows(text_model, reviews), EditSpace(("review",)), budgets=budgets, rows=10, seed=0)


def test_budgets_are_sorted_and_unique():
    assert check_budgets([4, 1, 4, np.int64(2)]) == [1, 2, 4]


def test_rows_must_be_positive(text_model, reviews):
    with pytest.raises(SpecError, match=r"evaluate\.robustness\.rows must be a positive integer; got 0"):
        edit_attack(text_model, _test_rows(text_model, reviews), EditSpace(("review",)), budgets=[1], rows=0, seed=0)


def test_the_text_kind_declares_its_column_and_the_table_its_text_columns(text_model, reviews):
    assert input_kind(text_model.schema).edit_space(text_model.preprocessor) == EditSpace(("review",), "character edits")
    table = _train(reviews, "mixed", {"target": "sentiment"})  # review inferred as text, stars numeric
    assert {c.name: c.kind for c in table.schema.columns} == {"review": "text", "stars": "numeric"}
    space = input_kind(table.schema).edit_space(table.preprocessor)
    assert space == EditSpace(("review",))
    raw = _test_rows(table, reviews)
    ev = edit_attack(table, raw, space, budgets=[2, 8], rows=60, seed=0)
    assert ev["accuracy"][-1] <= ev["accuracy"][0] - 0.2, ev["accuracy"]
    attack = _Attack(table, raw, space.columns, np.random.default_rng(0))
    _, texts = attack.run(8)
    assert any(t != o for t, o in zip(texts, attack.original))
    with pytest.raises(ValueError, match="at least one text column"):
        EditSpace(())


def test_a_model_that_reads_no_text_or_is_not_a_classifier_is_one_clear_error(reviews):
    numbers = _train(reviews, "numbers", {"target": "sentiment", "columns": ["stars", "sentiment"]}, epochs=1)
    assert input_kind(numbers.schema).edit_space(numbers.preprocessor) is None
    with pytest.raises(DataError, match="reads no text"):
        edit_attack(numbers, _test_rows(numbers, reviews), None, budgets=[1], rows=10, seed=0)
    text = {"column": "review", "tokenizer": "word", "max_length": 32}
    regression = _train(reviews, "stars", {"target": "stars", "text": text, "columns": ["review", "stars"]}, task="regression", epochs=1)
    space = input_kind(regression.schema).edit_space(regression.preprocessor)
    with pytest.raises(DataError, match="needs a classification model.*task is regression"):
        edit_attack(regression, _test_rows(regression, reviews), space, budgets=[1], rows=10, seed=0)


def test_robustness_runs_the_edit_attack_on_text_in_the_gradient_attacks_shape(text_model, reviews):
    from trustforge.evaluate import attack_refusal, robustness
    from trustforge.evaluate._report_summary import robustness_view
    from trustforge.spec import RobustnessSpec

    assert attack_refusal(text_model) is None
    raw = _test_rows(text_model, reviews)
    ev = robustness(text_model, raw, RobustnessSpec(budgets=[1, 2], rows=60), seed=3)
    direct = edit_attack(
        text_model, raw, input_kind(text_model.schema).edit_space(text_model.preprocessor), budgets=[1, 2], rows=60, seed=3
    )
    points = ev["attacks"]["char-edit"]["points"]
    assert [p["epsilon"] for p in points] == [1.0, 2.0]
    assert [p["accuracy"] for p in points] == direct["accuracy"][1:] and ev["clean"] == direct["accuracy"][0]
    assert ev["norm"] == "edits" and "character edits" in ev["budget"]
    view = robustness_view({"robustness": ev})
    assert view["norm"] == "edits" and view["attacks"][0]["label"] == "CHAR-EDIT"
    if ev.get("examples"):  # flipped reviews are shown as text changes, not as images
        change = ev["examples"]["rows"][0]["changes"][0]
        assert change["column"] == "review" and change["before"] != change["after"]


def test_an_empty_budget_in_the_spec_is_one_clear_error():
    from pydantic import ValidationError

    from trustforge.spec import RobustnessSpec

    for bad in ([], [0], [-1]):
        with pytest.raises(ValidationError, match="budgets"):
            RobustnessSpec(budgets=bad)


@pytest.mark.parametrize(
    "field, value, flag",
    [("epsilons", [0.1], "--epsilon"), ("norm", "2", "--norm"), ("attacks", ["fgsm"], "--attack"), ("steps", 5, "--steps")],
)
def test_a_gradient_attacks_setting_on_a_text_model_is_one_error_naming_it(text_model, reviews, field, value, flag):
    """Silently ignored before: the text model meets the character-edit attack, whose budgets are `budgets`."""
    from trustforge.evaluate import robustness
    from trustforge.spec import RobustnessSpec

    with pytest.raises(SpecError, match=rf"evaluate\.robustness\.{field} \({flag}\) applies to the gradient attacks.*text model"):
        robustness(text_model, _test_rows(text_model, reviews), RobustnessSpec(**{field: value}), seed=0)
