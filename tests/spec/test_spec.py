"""The spec: defaults that work, every example loads, round trips, and one-line errors that
name the file, line, field, what was expected and the value given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trustforge.errors import SpecError
from trustforge.spec import CNNSpec, MLPSpec, RNNSpec, TaskSpec, load_spec, redact_spec, spec_digest, spec_to_dict, spec_to_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def spec_error(tmp_path: Path, text: str) -> str:
    """The message of the SpecError a spec file raises, checked to be one `spec.yaml...` line."""
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}:"), message
    return message


def at_line(message: str, line: int) -> bool:
    return re.match(rf"^[^\n]*spec\.yaml:{line}: ", message) is not None


# ---------------------------------------------------------------------------- defaults


def test_empty_spec_validates_with_working_defaults(tmp_path):
    spec = load_spec({})
    assert spec == TaskSpec()
    assert spec.name == "task" and spec.task == "classification"
    assert spec.data.source == "builtin:digits"
    assert isinstance(spec.model, CNNSpec)
    assert spec.train.optimizer.name == "adamw" and spec.train.optimizer.lr == 0.001
    assert spec.train.early_stopping is not None and spec.train.early_stopping.monitor == "val_loss"
    assert spec.train.precision == "32"
    assert spec.default_metrics()[0] == "accuracy"
    # An empty file, or one with only comments, is the empty spec too.
    assert load_spec(write(tmp_path, "")) == spec
    assert load_spec(write(tmp_path, "# nothing set yet\n", "comments.yaml")) == spec


def test_empty_section_means_its_defaults(tmp_path):
    spec = load_spec(write(tmp_path, "name: x\ntrain:\n  # max_epochs: 3\nmodel:\n"))
    assert spec.train == TaskSpec().train
    assert isinstance(spec.model, CNNSpec)


def test_optimizer_without_name_is_the_default_optimizer(tmp_path):
    spec = load_spec(write(tmp_path, "train:\n  optimizer: {lr: 0.05}\n"))
    assert spec.train.optimizer.name == "adamw" and spec.train.optimizer.lr == 0.05


def test_exponent_numbers_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as text; a spec reads it as YAML 1.2 does.
    spec = load_spec(write(tmp_path, "train:\n  optimizer: {name: sgd, lr: 1e-3}\n  gradient_clip_val: 5E+1\n"))
    assert spec.train.optimizer.lr == pytest.approx(0.001)
    assert spec.train.gradient_clip_val == pytest.approx(50.0)


def test_yes_no_on_off_are_the_words_written_and_only_true_false_are_booleans(tmp_path):
    # YAML 1.1 reads them as booleans: `pii: off`, a value the field lists, arrived as false.
    spec = load_spec(write(tmp_path, "data:\n  protect: {pii: off}\n  clean: {label_issues: off}\n  augment: {hflip: yes}\n"))
    assert spec.data.protect.pii == "off" and spec.data.clean.label_issues == "off"
    assert spec.data.augment.hflip is True  # a boolean field still reads yes/off as pydantic does
    spec = load_spec(write(tmp_path, "data:\n  expect: {columns: {label: {allowed: [yes, no, NO]}}}\n"))
    assert spec.data.expect.columns["label"].allowed == ["yes", "no", "NO"]


def test_every_yaml_block_of_the_readme_is_a_valid_spec(tmp_path):
    """The README's spec blocks load as pasted (the spec reference block once did not: `pii: off`)."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 10
    for i, block in enumerate(blocks):
        if "interactions:" in block and "series:" in block:
            continue  # the list of each modality's section, one per task: a reference, not a spec
        for j, spec in enumerate(_alternatives(block)):
            load_spec(write(tmp_path, spec, f"readme{i}-{j}.yaml"))


def _alternatives(block: str) -> list[str]:
    """A block that gives a top-level section twice shows alternatives: each repeat starts another spec."""
    specs, seen = [[]], set()
    for line in block.splitlines():
        key = re.match(r"^([a-z_]+):", line)
        if key and key.group(1) in seen:
            specs.append([])
            seen = set()
        if key:
            seen.add(key.group(1))
        specs[-1].append(line)
    return ["\n".join(lines) + "\n" for lines in specs]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_a_number_that_is_not_finite_is_refused_naming_the_field(tmp_path, value):
    # Found by a probe: `gradient_clip_val: .inf` validated and was printed (and saved) as null.
    message = spec_error(tmp_path, f"train:\n  gradient_clip_val: {value}\n")
    assert at_line(message, 2) and "train.gradient_clip_val" in message and ("inf" in message or "nan" in message), message
    assert load_spec(write(tmp_path, "model: {kind: mlp}\nevaluate:\n  robustness: {norm: .inf}\n")).evaluate.robustness.norm == "inf"


def test_precision_int_is_accepted_as_text(tmp_path):
    assert load_spec(write(tmp_path, "train: {precision: 32}\n")).train.precision == "32"
    assert load_spec({"train": {"precision": "bf16-mixed"}}).train.precision == "bf16-mixed"
    message = spec_error(tmp_path, "train:\n  precision: 16\n")
    assert at_line(message, 2) and "train.precision" in message and "'32'" in message and "got 16" in message


# ---------------------------------------------------------------------------- examples and round trips


def test_there_are_examples():
    assert len(EXAMPLES) >= 3, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_loads_and_round_trips(path, tmp_path):
    spec = load_spec(path)
    assert spec.name
    again = load_spec(write(tmp_path, spec_to_yaml(spec), "normalised.yaml"))
    assert again == spec
    assert spec_digest(again) == spec_digest(spec)
    assert load_spec(spec_to_dict(spec)) == spec


def test_round_trip_of_a_table_spec_from_another_folder(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            "name: churn\ntask: regression\n"
            "data: {source: 'csv:data/churn.csv', target: spend, drop: [id], split: {test: 0.25, validation: 0.15}}\n"
            "model: {kind: mlp, hidden: [32], activation: gelu, embedding_dim: 4}\n"
            "train: {max_epochs: 3, optimizer: {name: sgd, lr: 0.1, momentum: 0.9, nesterov: true},\n"
            "        scheduler: {name: step, step_size: 2}, early_stopping: null, gradient_clip_val: 1.0}\n"
            "evaluate: {metrics: [mae, r2]}\n",
            "project/spec.yaml",
        )
    )
    text = spec_to_yaml(spec)
    again = load_spec(write(tmp_path, text, "elsewhere/normalised.yaml"))
    assert again == spec and spec_digest(again) == spec_digest(spec)
    assert spec_to_yaml(again) == text
    # The digest is of the content: a changed field changes it.
    changed = spec.model_copy(deep=True)
    changed.train.max_epochs = 4
    assert spec_digest(changed) != spec_digest(spec)


def test_classic_cifar_cnn_spec_validates(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            """
name: classic-cnn
data:
  source: builtin:shapes
  image: {size: [32, 32], channels: 3}
model:
  kind: cnn
  channels: [32, 64]
  kernel_size: 3
  padding: 1
  pool: max
  pool_size: 2
  hidden: [128]
train:
  optimizer: {name: sgd, lr: 0.001, momentum: 0.9}
  loss: cross_entropy
""",
        )
    )
    m, opt = spec.model, spec.train.optimizer
    assert isinstance(m, CNNSpec)
    assert (m.channels, m.kernel_size, m.padding, m.pool, m.pool_size, m.hidden) == ([32, 64], 3, 1, "max", 2, [128])
    assert spec.data.image.size == (32, 32) and spec.data.image.channels == 3
    assert (opt.name, opt.lr, opt.momentum) == ("sgd", 0.001, 0.9)


def test_classic_lstm_spec_validates(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            "name: classic-lstm\nmodel: {kind: rnn, cell: lstm, hidden_size: 256, num_layers: 2}\n"
            "train: {optimizer: {name: adam, lr: 0.001}}\n",
        )
    )
    assert isinstance(spec.model, RNNSpec)
    assert (spec.model.cell, spec.model.hidden_size, spec.model.num_layers) == ("lstm", 256, 2)
    assert (spec.train.optimizer.name, spec.train.optimizer.lr) == ("adam", 0.001)


# ---------------------------------------------------------------------------- data paths


def test_relative_data_paths_resolve_against_the_spec_folder(tmp_path):
    folder = tmp_path / "project"
    spec = load_spec(write(tmp_path, "data: {source: 'csv:data/train.csv', target: y}\nmodel: {kind: mlp}\n", "project/spec.yaml"))
    assert spec.data.source == f"csv:{(folder / 'data' / 'train.csv').resolve()}"
    images = load_spec(write(tmp_path, "data: {source: 'images:../pictures'}\n", "project/img.yaml"))
    assert images.data.source == f"images:{(tmp_path / 'pictures').resolve()}"
    absolute = tmp_path / "abs.parquet"
    assert (
        load_spec(write(tmp_path, f"data: {{source: 'parquet:{absolute}', target: y}}\n", "project/abs.yaml")).data.source
        == f"parquet:{absolute}"
    )
    assert load_spec(write(tmp_path, "data: {source: 'builtin:iris'}\n", "project/b.yaml")).data.source == "builtin:iris"
    # A mapping has no folder: its paths are left as given (relative to the working directory).
    assert load_spec({"data": {"source": "csv:data/train.csv", "target": "y"}}).data.source == "csv:data/train.csv"


@pytest.mark.parametrize("scheme", ["csv", "parquet", "jsonl", "npz", "images", "audio"])
def test_every_path_scheme_and_the_shift_set_resolve_against_the_spec_folder(tmp_path, monkeypatch, scheme):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = f"data: {{source: '{scheme}:../data/train', target: y}}\nevaluate: {{shift: '{scheme}: ../data/shift'}}\n"
    spec = load_spec(write(tmp_path, text, "project/specs/spec.yaml"))
    data = (tmp_path / "project" / "data").resolve()
    assert spec.data.source == f"{scheme}:{data / 'train'}"
    assert spec.evaluate.shift == f"{scheme}:{data / 'shift'}"


def test_a_redacted_spec_names_no_local_path_and_still_validates(tmp_path):
    spec = load_spec(
        write(
            tmp_path, "data: {source: 'csv:data/train.csv', target: y}\nevaluate: {shift: 'images:/srv/pictures/'}\n", "project/spec.yaml"
        )
    )
    out = redact_spec(spec)
    assert (out.data.source, out.evaluate.shift) == ("csv:train.csv", "images:pictures")
    assert spec.data.source == f"csv:{(tmp_path / 'project' / 'data' / 'train.csv').resolve()}"  # the original is kept
    assert TaskSpec.model_validate(spec_to_dict(out)) == out  # what a package's manifest re-validates
    assert redact_spec(load_spec({"data": {"source": "builtin:iris"}})).data.source == "builtin:iris"


def test_the_shift_set_is_checked_like_the_source(tmp_path):
    message = spec_error(tmp_path, "evaluate:\n  shift: builtin:mnist\n")
    assert at_line(message, 2) and "evaluate.shift must name a builtin set (digits, " in message
    message = spec_error(tmp_path, "evaluate:\n  shift: 'ftp:x.csv'\n")
    assert "evaluate.shift must be builtin:NAME, csv:PATH, parquet:PATH, jsonl:PATH, images:DIR, audio:DIR or npz:PATH" in message


# ---------------------------------------------------------------------------- errors


def test_unknown_top_level_key(tmp_path):
    message = spec_error(tmp_path, "name: x\nepochs: 3\n")
    assert at_line(message, 2), message
    assert "epochs" in message and "allowed: name, task, data, model, train, evaluate" in message


def test_unknown_nested_key_names_the_dotted_path_and_suggests(tmp_path):
    message = spec_error(tmp_path, "name: x\ntrain:\n  max_epochs: 3\n  optimzer: {name: sgd}\n")
    assert at_line(message, 4), message
    assert "train.optimzer" in message and "did you mean optimizer?" in message


def test_wrong_type(tmp_path):
    message = spec_error(tmp_path, "train:\n  max_epochs: ten\n")
    assert at_line(message, 2), message
    assert "train.max_epochs must be an integer > 0; got 'ten'" in message


def test_boolean_is_not_a_number(tmp_path):
    # pydantic alone would take true as 1 epoch.
    message = spec_error(tmp_path, "train:\n  max_epochs: true\n")
    assert at_line(message, 2) and "train.max_epochs must be an integer; got true" in message
    message = spec_error(tmp_path, "train:\n  max_epochs: on\n")  # a word in a spec, not YAML 1.1's true
    assert at_line(message, 2) and "train.max_epochs must be an integer > 0; got 'on'" in message


@pytest.mark.parametrize(
    "field, value",
    [
        ("evaluate.explain", "1"),
        ("evaluate.speed", "1"),
        ("evaluate.corruptions", "0"),
        ("train.compile", "1.0"),
        ("data.split.stratify", "0"),
        ("data.protect.seal_run", "1"),
        ("data.protect.seal_run", "'1'"),
    ],
)
def test_a_number_is_not_a_boolean(tmp_path, field, value):
    """pydantic alone would take 1 and 0 (and "1") as true and false; README: only `true` and
    `false` are booleans. Each yes/no field refuses a number, named with its line."""
    section, *rest = field.split(".")
    text = "data:\n  source: builtin:iris\n" if section != "data" else ""
    lines, indent = [f"{section}:"], "  "
    if section == "data":
        lines.append("  source: builtin:iris")
    for i, key in enumerate(rest):
        lines.append(f"{indent}{key}:" + (f" {value}" if i == len(rest) - 1 else ""))
        indent += "  "
    message = spec_error(tmp_path, text + "\n".join(lines) + "\n")
    got = value.strip("'")
    assert f"{field} must be true or false; got {got if value == got else repr(got)}" in message, message
    assert at_line(message, len((text + "\n".join(lines)).splitlines())), message


def test_a_yes_no_field_still_takes_true_false_and_the_words(tmp_path):
    spec = load_spec(
        write(tmp_path, "evaluate:\n  explain: no\n  speed: true\ndata:\n  source: builtin:iris\n  protect: {seal_run: yes}\n")
    )
    assert (spec.evaluate.explain, spec.evaluate.speed, spec.data.protect.seal_run) == (False, True, True)


@pytest.mark.parametrize(
    "text",
    [
        "train:\n  optimizer:\n    name: sgd\n    lr: -3\n",
        "train:\n  optimizer:\n    name: adam\n    lr: -3\n",
        "train:\n  optimizer:\n    lr: -3\n",
    ],
    ids=["sgd", "adam", "default-optimizer"],
)
def test_out_of_range(tmp_path, text):
    message = spec_error(tmp_path, text)
    assert "train.optimizer.lr" in message and "-3" in message
    assert "train.optimizer.lr must be a number in (0, 10]; got -3" in message
    assert at_line(message, text.count("\n")), message


def test_out_of_range_list_item(tmp_path):
    message = spec_error(tmp_path, "model:\n  kind: cnn\n  channels:\n    - 32\n    - -1\n")
    assert at_line(message, 5) and "model.channels[1] must be an integer > 0; got -1" in message


def test_wrong_discriminator_names_model_kind(tmp_path):
    message = spec_error(tmp_path, "name: x\nmodel:\n  kind: resnet\n")
    assert at_line(message, 3), message
    assert "model.kind must be one of 'mlp', 'cnn', 'rnn'," in message and "; got 'resnet'" in message


def test_missing_discriminator(tmp_path):
    message = spec_error(tmp_path, "model: {hidden: [3]}\n")
    assert "model needs kind" in message and "'mlp'" in message and "hidden" in message


def test_field_of_another_union_member(tmp_path):
    message = spec_error(tmp_path, "model: {kind: mlp, channels: [3]}\n")
    assert at_line(message, 1)
    assert "model.channels is not a field of model (kind: mlp); only kind: cnn or audio_cnn has it" in message


def test_momentum_is_refused_on_adam(tmp_path):
    message = spec_error(tmp_path, "train:\n  optimizer: {name: adam, lr: 0.01, momentum: 0.9}\n")
    assert at_line(message, 2) and "train.optimizer.momentum is not a field of train.optimizer (name: adam)" in message
    assert load_spec({"train": {"optimizer": {"name": "sgd", "momentum": 0.9}}}).train.optimizer.momentum == 0.9


def test_nesterov_needs_momentum_and_names_it(tmp_path):
    message = spec_error(tmp_path, "train:\n  optimizer: {name: sgd, nesterov: true}\n")
    assert "train.optimizer.momentum must be > 0 when nesterov is true; got 0" in message


@pytest.mark.parametrize("source", ["s3://bucket/data.csv", "digits", "csv:", "http://x/y.csv"])
def test_bad_source_scheme(tmp_path, source):
    message = spec_error(tmp_path, f"data:\n  source: '{source}'\n")
    assert at_line(message, 2) and "data.source must be builtin:NAME, csv:PATH" in message
    assert f"got {source!r}" in message


def test_rules_across_sections_name_the_field_and_its_line(tmp_path):
    message = spec_error(tmp_path, "task: regression\ndata:\n  split:\n    stratify: true\n")
    assert at_line(message, 4) and "data.split.stratify must be false for task regression" in message
    message = spec_error(tmp_path, "data:\n  split: {test: 0.2, validation: 0}\n")
    assert at_line(message, 2) and "data.split.validation must be > 0 while train.early_stopping is on" in message
    assert load_spec({"data": {"split": {"validation": 0}}, "train": {"early_stopping": None}}).train.early_stopping is None
    message = spec_error(tmp_path, "evaluate:\n  metrics:\n    - accuracy\n    - mae\n")
    assert at_line(message, 4) and "evaluate.metrics[1] must be a classification metric" in message and "got 'mae'" in message
    message = spec_error(tmp_path, "data:\n  split: {test: 0.5, validation: 0.45}\n")
    assert at_line(message, 2) and "data.split test + validation must be < 0.9" in message and "0.95" in message


def test_too_short_tuple(tmp_path):
    message = spec_error(tmp_path, "data:\n  image: {size: [32]}\n")
    assert "data.image.size must have exactly 2 items; got [32]" in message


def test_several_errors_stay_on_one_line_first_in_file_order(tmp_path):
    message = spec_error(tmp_path, "train:\n  seed: -1\n  max_epochs: 0\n  batch_size: 0\n  optimzer: 2\n")
    assert at_line(message, 2) and "train.seed" in message
    assert "(and 3 more: line 3: train.max_epochs must be an integer > 0; got 0; line 4: train.batch_size" in message


def test_duplicate_key_is_refused(tmp_path):
    message = spec_error(tmp_path, "train:\n  max_epochs: 3\n  max_epochs: 30\n")
    assert at_line(message, 3) and "train.max_epochs is given twice (first at line 2)" in message


def test_malformed_yaml_gives_a_line(tmp_path):
    message = spec_error(tmp_path, "name: x\ntrain:\n  max_epochs: 3\n    batch_size: 4\n")
    assert at_line(message, 4) and "malformed YAML" in message
    message = spec_error(tmp_path, "name: x\nmodel: {kind: mlp, hidden: [3, 4}\n")
    assert re.search(r"spec\.yaml:\d+: malformed YAML", message), message


@pytest.mark.parametrize("text, kind", [("- name: x\n- task: regression\n", "a list"), ("just words\n", "text")])
def test_a_spec_must_be_a_mapping(tmp_path, text, kind):
    message = spec_error(tmp_path, text)
    assert "a spec must be a mapping of sections" in message and message.endswith(f"got {kind}")


def test_missing_file_and_mapping_errors(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yaml: spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match=r"is a folder, not a spec file"):
        load_spec(tmp_path)
    # A mapping has no file: the message starts with the field.
    with pytest.raises(SpecError) as info:
        load_spec({"train": {"optimizer": {"name": "sgd", "lr": -3}}})
    assert str(info.value) == "train.optimizer.lr must be a number in (0, 10]; got -3"


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    message = spec_error(tmp_path, "\n".join(lines) + "\nname: *a8\n")
    assert at_line(message, 1) and "a0 is not a field of the spec" in message and len(message) < 1000


@pytest.mark.parametrize(
    "text",
    [
        "name: 'bad name!'\n",
        "task: clustering\n",
        "data: {features: abc}\n",
        "model: cnn\n",
        "model: {kind: cnn, padding: valid}\n",
        "model: {kind: mlp, dropout: 1.5}\n",
        "train: {early_stopping: 3}\n",
        "train: {early_stopping: {monitor: loss}}\n",
        "train: {optimizer: {name: adam, betas: [0.9, 1.5]}}\n",
        "train: {seed: -1}\n",
        "train: {1: 2}\n",
    ],
)
def test_every_message_names_a_path_and_the_value_given(tmp_path, text):
    message = spec_error(tmp_path, text)
    assert at_line(message, 1), message
    body = message.split(": ", 1)[1]
    assert re.match(r"^[a-z_]+(\.[a-z_]+|\[\d+\]|\.\d+)*\b", body), message
    assert "; got " in body or "is not a field" in body, message
    assert "input should" not in message.lower() and "Spec" not in body, message


def test_spec_problem_reads_well_without_the_loader():
    # Model.load validates a manifest's spec with TaskSpec directly; its message names the field too.
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"train\.loss must be auto or mse for task regression; got 'bce'"):
        TaskSpec.model_validate({"task": "regression", "train": {"loss": "bce"}})


def test_model_kinds_are_distinct_types():
    assert isinstance(load_spec({"model": {"kind": "mlp"}}).model, MLPSpec)
    assert isinstance(load_spec({"model": {"kind": "rnn", "cell": "gru"}}).model, RNNSpec)


def test_calibrate_takes_a_method_and_old_booleans(tmp_path):
    assert load_spec(write(tmp_path, "evaluate: {calibrate: none}\n")).evaluate.calibrate == "none"
    assert load_spec(write(tmp_path, "evaluate: {calibrate: false}\n")).evaluate.calibrate == "none"  # specs before issue 12
    assert load_spec(write(tmp_path, "evaluate: {calibrate: true}\n")).evaluate.calibrate == "temperature"
    assert load_spec(write(tmp_path, "{}\n")).evaluate.calibrate == "temperature"
    assert "evaluate.calibrate" in spec_error(tmp_path, "evaluate: {calibrate: platt}\n")


@pytest.mark.parametrize(
    "value, normalised",
    [
        ("0.3", 0.3),
        ("f1", "f1"),
        ("'recall@precision = 0.9'", "recall@precision=0.9"),
        ("precision@recall=0.98", "precision@recall=0.98"),
        ("{cost: {fp: 1, fn: 5}}", {"cost": {"fp": 1.0, "fn": 5.0}}),
    ],
)
def test_threshold_rules_are_normalised_and_survive_a_round_trip(tmp_path, value, normalised):
    spec = load_spec(write(tmp_path, f"evaluate: {{threshold: {value}}}\n"))
    assert spec.evaluate.threshold == normalised
    assert load_spec(spec_to_dict(spec)).evaluate.threshold == normalised


@pytest.mark.parametrize(
    "value, says",
    [
        ("1.0", "a number in (0, 1)"),
        ("0", "a number in (0, 1)"),
        ("true", "got true"),
        ("recall@0.9", "recall@precision=P"),
        ("precision@recall=1.5", "X in (0, 1]"),
        ("'f2'", "got 'f2'"),
        ("{cost: {fp: 1}}", "exactly those keys"),
        ("{cost: {fp: 1, fn: 0}}", "cost.fn must be a finite number > 0"),
        ("{fp: 1, fn: 2}", "exactly those keys"),
    ],
)
def test_a_bad_threshold_names_the_field_and_the_forms(tmp_path, value, says):
    message = spec_error(tmp_path, f"evaluate: {{threshold: {value}}}\n")
    assert "evaluate.threshold" in message and says in message, message


def test_a_decision_on_a_task_without_classes_is_refused(tmp_path):
    for field, value in (("threshold", "f1"), ("positive_class", "'yes'")):
        message = spec_error(tmp_path, f"task: regression\ndata: {{source: 'builtin:diabetes'}}\nevaluate: {{{field}: {value}}}\n")
        assert f"evaluate.{field}" in message and "binary classification" in message, message


def test_an_unquoted_true_as_positive_class_asks_for_quotes_and_yes_is_the_class_yes(tmp_path):
    message = spec_error(tmp_path, "evaluate: {positive_class: true}\n")
    assert "evaluate.positive_class" in message and "quote" in message, message
    assert load_spec(write(tmp_path, "evaluate: {positive_class: yes}\n")).evaluate.positive_class == "yes"
    assert load_spec(write(tmp_path, "evaluate: {positive_class: 'yes'}\n")).evaluate.positive_class == "yes"
    assert load_spec(write(tmp_path, "evaluate: {positive_class: 1}\n")).evaluate.positive_class == "1"


@pytest.mark.parametrize("word, on", [("off", False), ("no", False), ("false", False), ("on", True), ("yes", True)])
def test_a_section_that_is_a_switch_takes_the_yes_no_words(word, on, tmp_path):
    # A probe: `evaluate.robustness: off` was refused ("must be a mapping ... or null"), though
    # yes/no fields take off, and the README turns it off with false.
    path = tmp_path / "w.yaml"
    path.write_text(
        f"name: w\ndata: {{source: 'builtin:iris'}}\nmodel: {{kind: mlp}}\nevaluate: {{robustness: {word}, privacy_audit: {word}}}\n"
    )
    spec = load_spec(path)
    assert (spec.evaluate.robustness is not None) == on and (spec.evaluate.privacy_audit is not None) == on
