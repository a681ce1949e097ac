"""The tune: section's errors: one line naming the field, before any trial runs."""

from __future__ import annotations

import pytest

from trustforge.errors import SpecError
from trustforge.spec import load_spec

BASE = {"name": "iris", "data": {"source": "builtin:iris"}, "model": {"kind": "mlp"}}


def _error(space: dict) -> str:
    with pytest.raises(SpecError) as e:
        load_spec({**BASE, "tune": {"space": space}})
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "space, starts, says",
    [
        ({"train.optimizer.lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "tune.space.train.optimizer.lr.low", "log scale"),
        ({"train.optimizer.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "tune.space.train.optimizer.lr.high", "range is empty"),
        ({"train.max_epochs": {"type": "int", "low": 9, "high": 3}}, "tune.space.train.max_epochs.high", "range is empty"),
        ({"train.optimiser.lr": {"type": "float", "low": 0.001, "high": 0.01}}, "tune.space.train.optimiser.lr", "no 'optimiser'"),
        ({"model.hidden": {"type": "categorical", "choices": [[64], ["wide"]]}}, "tune.space.model.hidden.choices[1]", "model.hidden"),
        ({"train.max_epochs": {"type": "float", "low": 1.5, "high": 3}}, "tune.space.train.max_epochs.low", "integer"),
        (
            {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 20}},
            "tune.space.train.optimizer.lr.high",
            "less than or equal to 10",
        ),
        ({"train.optimizer.lr": {"type": "floats", "low": 0.001, "high": 0.01}}, "tune.space.train.optimizer.lr.type", "categorical"),
        (
            {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True, "step": 0.001}},
            "tune.space.train.optimizer.lr.step",
            "log",
        ),
        ({"train.privacy.epsilon": {"type": "float", "low": 1, "high": 3}}, "tune.space.train.privacy.epsilon", "trade away protection"),
        ({"name": {"type": "categorical", "choices": ["a", "b"]}}, "tune.space.name", "dotted spec field"),
        ({"tune.trials": {"type": "int", "low": 1, "high": 3}}, "tune.space.tune.trials", "cannot be tuned"),
        (
            {"train.optimizer.lr": {"low": 0.001, "high": 0.01}},
            "tune.space.train.optimizer.lr",
            "needs type: one of 'float', 'int', 'categorical'",
        ),
    ],
)
def test_space_errors_name_the_field(space, starts, says):
    msg = _error(space)
    assert msg.split(" ")[0].endswith(starts) or starts in msg.split(" ")[0], msg
    assert says in msg, msg


def test_a_valid_space_loads_and_round_trips():
    spec = load_spec(
        {
            **BASE,
            "tune": {
                "space": {
                    "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                    "model.hidden": {"type": "categorical", "choices": [[64], [128, 64]]},
                    "train.batch_size": {"type": "int", "low": 16, "high": 128, "step": 16},
                },
                "pruner": "hyperband",
            },
        }
    )
    assert spec.tune.sampler == "tpe" and spec.tune.pruner == "hyperband"
    from trustforge.spec import spec_to_dict

    assert load_spec(spec_to_dict(spec)) == spec


@pytest.mark.parametrize(
    "bound, value, says",
    [
        ("low", float("nan"), "got nan"),
        ("high", float("inf"), "got inf"),
        ("low", float("-inf"), "got -inf"),
        ("step", float("inf"), "got inf"),
    ],
)
def test_a_nan_or_infinite_bound_is_refused_by_name(bound, value, says):
    param = {"type": "float", "low": 0.001, "high": 0.1, bound: value}
    msg = _error({"train.optimizer.lr": param})
    assert msg.startswith(f"tune.space.train.optimizer.lr.{bound} must be a finite number; {says}"), msg


def test_a_nan_bound_in_yaml_is_one_line_naming_the_field(tmp_path):
    path = tmp_path / "nan.yaml"
    path.write_text(
        "name: iris\ndata: {source: 'builtin:iris'}\nmodel: {kind: mlp}\n"
        "tune: {space: {train.optimizer.lr: {type: float, low: .nan, high: 0.1}}}\n"
    )
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert "tune.space.train.optimizer.lr.low must be a finite number; got nan" in str(e.value), str(e.value)


def test_metric_must_be_a_validation_log():
    from trustforge.tune import tune_metric

    with pytest.raises(SpecError, match="tune.metric"):
        load_spec({**BASE, "tune": {"space": {"train.max_epochs": {"type": "int", "low": 1, "high": 2}}, "metric": "accuracy"}})
    # a val_ name the trainer does not log each epoch: the spec is refused on load (validate, train and tune alike)
    for metric in ("val_f1", "val_bogus"):
        with pytest.raises(SpecError, match=f"tune.metric must be a validation log .*; got '{metric}'"):
            load_spec({**BASE, "tune": {"space": {"train.max_epochs": {"type": "int", "low": 1, "high": 2}}, "metric": metric}})
    ok = load_spec({**BASE, "tune": {"space": {"train.max_epochs": {"type": "int", "low": 1, "high": 2}}}})
    assert tune_metric(ok) == ("val_accuracy", "maximize")
    stops = {**BASE, "train": {"early_stopping": {"monitor": "val_f1"}}}
    assert tune_metric(
        load_spec({**stops, "tune": {"space": {"train.max_epochs": {"type": "int", "low": 1, "high": 2}}, "metric": "val_f1"}})
    ) == (
        "val_f1",
        "maximize",
    )


@pytest.mark.parametrize("no_data", [False, True])
def test_validate_refuses_the_tune_metric_that_tune_refuses(tmp_path, workspace, no_data):
    from _cli import run_main

    spec = tmp_path / "bogus.yaml"
    spec.write_text(
        "name: b\ndata: {source: 'builtin:iris'}\nmodel: {kind: mlp}\n"
        "tune: {metric: val_bogus, space: {train.optimizer.lr: {type: float, low: 0.001, high: 0.1}}}\n"
    )
    code, out, err = run_main("validate", *(["--no-data"] if no_data else []), spec, home=workspace)
    assert code == SpecError.exit_code and out == "", (code, out, err)
    assert "tune.metric must be a validation log" in err and "val_bogus" in err and len(err.strip().splitlines()) == 1, err


def test_storage_urls_and_errors_never_show_credentials(tmp_path):
    from trustforge.errors import TuneError, UsageError
    from trustforge.settings import Settings
    from trustforge.tune import describe_storage, open_storage, storage_url

    settings = Settings.from_env(tmp_path / "ws")
    assert storage_url(None, settings, "s") == f"journal:{settings.home / 'studies' / 's.journal'}"
    assert storage_url("registry", settings, "s") == settings.db_url
    assert describe_storage("postgresql://alice:s3cret@db.example:5432/studies") == {"kind": "postgresql", "database": "studies"}
    assert describe_storage(f"sqlite:///{tmp_path / 'a.db'}") == {"kind": "sqlite", "database": "a.db"}
    with pytest.raises(UsageError, match="--storage must be") as e:
        storage_url("mysql://bob:pw123456@h/db", settings, "s")
    assert "pw123456" not in str(e.value)
    with pytest.raises(TuneError, match="cannot open the study storage") as e:
        open_storage("postgresql://alice:s3cretpw@127.0.0.1:1/nodb")
    msg = str(e.value)
    assert "s3cretpw" not in msg and "alice" not in msg and "127.0.0.1" not in msg
    assert msg.endswith("(postgresql nodb): the database could not be reached or opened (OperationalError)"), msg


@pytest.mark.parametrize("form", ["journal:{d}/j.log", "sqlite:///{d}/x.db", "{d}/x.journal"])
def test_a_storage_in_a_missing_folder_is_refused_naming_storage_and_the_folder(tmp_path, form):
    from trustforge.errors import UsageError
    from trustforge.settings import Settings
    from trustforge.tune import storage_url

    missing = tmp_path / "nonexistent" / "dir"
    with pytest.raises(UsageError) as e:
        storage_url(form.format(d=missing), Settings.from_env(tmp_path / "ws"), "s")
    msg = str(e.value)
    assert msg.startswith("--storage") and str(missing) in msg and "\n" not in msg, msg
    assert not (tmp_path / "nonexistent").exists()  # nothing created on the way


@pytest.mark.parametrize(
    "option, code, says",
    [
        (["--study", "../x"], 2, "error: --study must be 1-128 letters"),
        (["--storage", "foo://bar"], 2, "error: --storage must be sqlite:///PATH"),
        (
            ["--storage", "journal:nodir/x.journal"],
            2,
            "error: --storage names a journal file whose folder does not exist (nodir/x.journal)",
        ),
        (["--storage", "journal:adir"], 2, "error: --storage names a folder (adir), not a journal file"),
        (["--storage", "sqlite:///adir"], 2, "error: --storage names a folder (adir), not a sqlite file"),
        (
            ["--storage", "journal:s.yaml"],
            12,
            "error: cannot open the study storage (journal s.yaml): the file is not an Optuna journal",
        ),
        (["--storage", "sqlite:///s.yaml"], 12, "error: cannot open the study storage (sqlite s.yaml): file is not a database"),
    ],
)
def test_bad_study_and_storage_values_are_one_line_with_the_reason(tmp_path, workspace, option, code, says):
    """A bad --study or --storage value is a usage error (exit 2); a storage that does not open says
    which and why, not an exception's class name; nothing is written."""
    from _cli import run_main

    (tmp_path / "adir").mkdir()
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndata: {source: 'builtin:iris'}\nmodel: {kind: mlp}\ntune: {space: {train.max_epochs: {type: int, low: 1, high: 2}}}\n"
    )
    before = spec.read_bytes()
    result = run_main("tune", spec, *option, "--no-register", home=workspace, cwd=tmp_path)
    assert result.code == code and result.stderr.startswith(says) and result.stderr.count("\n") == 1, result
    assert spec.read_bytes() == before and not list((tmp_path / "adir").iterdir()) and not (workspace / "runs").exists()


def test_a_study_name_that_is_not_a_plain_name_is_refused_before_anything_is_written(tmp_path, workspace):
    from trustforge.errors import UsageError
    from trustforge.tune import tune

    spec = {**BASE, "tune": {"space": {"train.max_epochs": {"type": "int", "low": 1, "high": 2}}, "trials": 1}}
    for bad in ("../../etc", "a/b", ".hidden", "", "x" * 129, "a b", "..", "c:\\x"):
        with pytest.raises(UsageError, match="--study must be") as e:
            tune(spec, study=bad, register=False)
        assert "\n" not in str(e.value)
    assert not list(tmp_path.rglob("*.journal")) and not (workspace / "runs").exists()


def test_median_pruning_starts_after_its_own_few_trials_not_tpes_start_up():
    from trustforge.tune._study import _pruner

    ts = load_spec({**BASE, "tune": {"space": {"model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}}}).tune
    assert (ts.startup_trials, ts.prune_after_trials, ts.warmup_epochs) == (10, 3, 2)
    pruner = _pruner(ts, {})
    assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (3, 2)
    ts = ts.model_copy(update={"prune_after_trials": 7})
    assert _pruner(ts, {})._n_startup_trials == 7
    with pytest.raises(SpecError, match="tune.prune_after_trials"):
        load_spec({**BASE, "tune": {"space": {"model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}, "prune_after_trials": -1}})


def test_parameter_importances_are_seeded_fanova_and_find_the_parameter_that_matters():
    """The report says fANOVA; Optuna 5's default evaluator is PED-ANOVA (and warned on small studies)."""
    import warnings

    import optuna

    from trustforge.tune._study import _importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: 10 * t.suggest_float("lr", 0, 1) ** 2 + 0.1 * t.suggest_float("dropout", 0, 1), n_trials=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no evaluator warning reaches the user's terminal
        first = _importances(study)
    assert first == _importances(study) and first["lr"] > 0.8 > first["dropout"]
    fanova = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert first == pytest.approx(dict(fanova))


@pytest.mark.parametrize(
    "path, param, says",
    [
        ("data.split.validation", {"type": "categorical", "choices": [0.05, 0.4]}, "which rows validate the trials"),
        ("data.split.test", {"type": "float", "low": 0.1, "high": 0.3}, "which rows validate the trials"),
        ("train.seed", {"type": "int", "low": 1, "high": 1000}, "which rows validate the trials"),
        ("data.source", {"type": "categorical", "choices": ["builtin:iris", "builtin:wine"]}, "which rows validate the trials"),
        ("data.duplicates.across_splits", {"type": "categorical", "choices": ["drop", "warn"]}, "which rows validate the trials"),
        ("data.expect.infer", {"type": "categorical", "choices": [True, False]}, "which rows validate the trials"),
        ("data.series.lookback", {"type": "int", "low": 4, "high": 8}, "which rows validate the trials"),
        ("task", {"type": "categorical", "choices": ["classification"]}, "dotted spec field"),
        ("data.target", {"type": "categorical", "choices": ["species"]}, "what the trials learn from or predict"),
        ("data.drop", {"type": "categorical", "choices": [[], ["petal_width"]]}, "what the trials learn from or predict"),
        ("data.protect.pii", {"type": "categorical", "choices": ["off", "mask"]}, "trade away protection"),
        ("train.adversarial.epsilon", {"type": "float", "low": 0.01, "high": 0.1}, "trade away protection"),
        ("evaluate.metrics", {"type": "categorical", "choices": [["accuracy"], ["f1"]]}, "the evidence"),
        ("monitor.correction", {"type": "categorical", "choices": ["none", "bonferroni"]}, "the evidence"),
        ("data.bogus", {"type": "int", "low": 2, "high": 9}, "not a training choice"),
    ],
)
def test_a_space_may_not_change_the_rows_the_data_its_protection_or_the_evidence(path, param, says):
    """Trials are ranked on their validation rows: a field that changes them (or what the data
    holds, its protection, the evidence) is refused at load, naming the field; an allow-list, so a
    field not listed is refused too."""
    msg = _error({path: param})
    assert msg.startswith(f"tune.space.{path} cannot be tuned: ") or says == "dotted spec field", msg
    assert says in msg, msg


def test_a_field_under_a_null_section_is_named():
    with pytest.raises(SpecError, match=r"tune.space.train.early_stopping.patience is under train.early_stopping, which is null"):
        load_spec(
            {
                **BASE,
                "train": {"early_stopping": None},
                "tune": {"space": {"train.early_stopping.patience": {"type": "int", "low": 1, "high": 3}}},
            }
        )


def test_fields_that_only_shape_training_may_be_tuned():
    space = {
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "train.optimizer.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "train.max_epochs": {"type": "int", "low": 1, "high": 3},
        "train.batch_size": {"type": "categorical", "choices": [16, 32]},
        "data.augment.noise": {"type": "float", "low": 0.0, "high": 0.2},
        "data.numeric.scaling": {"type": "categorical", "choices": ["standard", "robust"]},
        "data.missing.numeric": {"type": "categorical", "choices": ["median", "mean"]},
        "data.max_categories": {"type": "int", "low": 2, "high": 9},  # an encoding choice (categorical or text), not rows
    }
    assert set(load_spec({**BASE, "tune": {"space": space}}).tune.space) == set(space)


@pytest.mark.parametrize(
    "field, param",
    [
        ("train.label_smoothing", {"type": "categorical", "choices": [0.0, 0.6]}),
        ("train.class_weights", {"type": "categorical", "choices": ["none", "balanced"]}),
        ("train.loss", {"type": "categorical", "choices": ["auto", "cross_entropy"]}),
    ],
)
def test_val_loss_cannot_rank_trials_that_vary_the_loss_itself(field, param):
    """Each trial's val_loss is computed with its own criterion (smoothing raises its floor): refused naming both
    fields and a comparable metric; the same space ranked on val_accuracy loads."""
    space = {field: param, "train.max_epochs": {"type": "int", "low": 1, "high": 3}}
    with pytest.raises(SpecError) as e:
        load_spec({**BASE, "tune": {"space": space, "metric": "val_loss"}})
    msg = str(e.value)
    assert msg.startswith("tune.metric") and f"varies {field}" in msg and "val_accuracy" in msg and "\n" not in msg, msg
    assert load_spec({**BASE, "tune": {"space": space, "metric": "val_accuracy"}}).tune.metric == "val_accuracy"
    assert load_spec({**BASE, "tune": {"space": space}}).tune.space  # the default ranks on val_accuracy


@pytest.mark.parametrize(
    "text", [b"hello\n", b"hello", b"\n", b'{"op_code": 0}\nhello\n'], ids=["line", "no-newline", "empty-line", "bad-2nd"]
)
def test_an_existing_file_that_is_not_a_journal_is_refused_and_left_unchanged(tmp_path, workspace, text):
    """Optuna skips a bad last line and appends after it: a user's one-line file must be refused before that (exit 12)."""
    from _cli import run_main

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ndata: {source: 'builtin:iris'}\nmodel: {kind: mlp}\ntune: {space: {train.max_epochs: {type: int, low: 1, high: 2}}}\n"
    )
    notes = tmp_path / "notes.txt"
    notes.write_bytes(text)
    result = run_main("tune", spec, "--storage", "journal:notes.txt", "--no-register", home=workspace, cwd=tmp_path)
    assert result.code == 12 and result.stderr.count("\n") == 1, result
    assert "the file is not an Optuna journal" in result.stderr and "of notes.txt is not a JSON record" in result.stderr, result
    assert notes.read_bytes() == text and not (workspace / "runs").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory&uri=true"])
def test_an_in_memory_sqlite_storage_is_a_usage_error(tmp_path, url):
    """Each worker would open its own empty database (then a KeyError deep in Optuna, exit 70): refused, exit 2."""
    from trustforge.errors import UsageError
    from trustforge.settings import Settings
    from trustforge.tune import storage_url

    with pytest.raises(UsageError, match="in-memory SQLite database: each worker would open its own") as e:
        storage_url(url, Settings.from_env(tmp_path / "ws"), "s")
    assert str(e.value).startswith(f"--storage {url!r}") and e.value.exit_code == 2


SIZES = {"type": "categorical", "choices": [[16, 16], [32, 32]]}
SECONDS = {"type": "float", "low": 0.5, "high": 1.0}
RANGES = {
    "data.image.size": SIZES,
    "data.audio.seconds": SECONDS,
    "data.augment.masks": {"type": "int", "low": 1, "high": 2},
    "data.numeric.scaling": {"type": "categorical", "choices": ["standard", "robust"]},
    "data.missing.numeric": {"type": "categorical", "choices": ["median", "mean"]},
    "data.max_categories": {"type": "int", "low": 10, "high": 50},
}


@pytest.mark.parametrize(
    "data, field, says",
    [
        ({"source": "builtin:iris"}, "data.image.size", "no image feature to read it (builtin:iris holds table data)"),
        ({"source": "builtin:iris"}, "data.audio.seconds", "no audio feature to read it (builtin:iris holds table data)"),
        ({"source": "builtin:digits"}, "data.audio.seconds", "no audio feature to read it (builtin:digits holds image data)"),
        ({"source": "builtin:spoken_digits"}, "data.image.size", "no image feature to read it (builtin:spoken_digits holds audio data)"),
        ({"source": "csv:rows.csv", "target": "y", "text": {"column": "t"}}, "data.image.size", "(its input is a text column"),
        (
            {"source": "builtin:iris"},
            "data.augment.rotate",
            "no input that reads it (only image inputs do) (builtin:iris holds table data)",
        ),
        ({"source": "builtin:digits"}, "data.augment.delete", "(only text inputs do) (builtin:digits holds image data)"),
        ({"source": "builtin:digits"}, "data.augment.masks", "(only audio inputs do)"),
        ({"source": "builtin:reviews"}, "data.augment.noise", "(only table inputs do) (its input is a text column, read as text)"),
        ({"source": "npz:seq.npz"}, "data.image.size", "(npz:seq.npz holds sequence data)"),
        # read by a table's numeric, binary and categorical columns only
        ({"source": "builtin:digits"}, "data.numeric.scaling", "no numeric column to read it (builtin:digits holds image data)"),
        ({"source": "builtin:digits"}, "data.missing.numeric", "no table column to read it (builtin:digits holds image data)"),
        ({"source": "builtin:shapes"}, "data.max_categories", "no table column to read it (builtin:shapes holds image data)"),
        ({"source": "builtin:spoken_digits"}, "data.missing.numeric", "no table column to read it (builtin:spoken_digits holds audio"),
        ({"source": "builtin:reviews"}, "data.max_categories", "no table column to read it (its input is a text column, read as text)"),
        ({"source": "npz:seq.npz"}, "data.numeric.scaling", "no numeric column to read it (npz:seq.npz holds sequence data)"),
    ],
)
def test_a_media_section_the_data_cannot_hold_is_refused(data, field, says):
    """`tune.space: {data.image.size: ...}` on a table of numbers loaded, and every trial ran the
    same model: nothing reads data.image without an image feature (data.audio, and each
    data.augment field, likewise)."""
    spec = {**BASE, "data": data, "model": {"kind": "auto"} if "text" in data else {"kind": "mlp"}}
    with pytest.raises(SpecError) as e:
        load_spec({**spec, "tune": {"space": {field: RANGES.get(field, SECONDS)}}})
    assert str(e.value).startswith(f"tune.space.{field} does nothing for this spec: it has ") and says in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "source, field",
    [
        ("builtin:digits", "data.image.size"),
        ("builtin:spoken_digits", "data.audio.seconds"),
        ("csv:rows.csv", "data.image.size"),
        ("csv:rows.csv", "data.augment.rotate"),
        ("builtin:digits", "data.augment.rotate"),
        ("builtin:spoken_digits", "data.augment.masks"),
        ("builtin:iris", "data.augment.noise"),
        ("builtin:iris", "data.numeric.scaling"),
        ("builtin:iris", "data.missing.numeric"),
        ("csv:rows.csv", "data.max_categories"),
    ],
)
def test_a_media_section_the_data_may_hold_stays_tunable(source, field):
    # A table file's columns may be images or audio clips (their types are inferred from the data).
    model = {"kind": "audio_cnn"} if "spoken" in source else {"kind": "cnn"} if "digits" in source else {"kind": "mlp"}
    data = {"source": source, **({"target": "y"} if source.startswith("csv") else {})}
    spec = load_spec({**BASE, "data": data, "model": model, "tune": {"space": {field: RANGES.get(field, SECONDS)}}})
    assert field in spec.tune.space


def test_the_label_finders_settings_are_tunable_only_where_it_runs():
    space = {"data.clean.folds": {"type": "int", "low": 3, "high": 6}}
    with pytest.raises(SpecError, match=r"tune.space.data.clean.folds does nothing for this spec: data.clean.label_issues is off"):
        load_spec({**BASE, "data": {"source": "builtin:iris"}, "model": {"kind": "mlp"}, "tune": {"space": space}})
    data = {"source": "builtin:iris", "clean": {"label_issues": "report"}}
    assert "data.clean.folds" in load_spec({**BASE, "data": data, "model": {"kind": "mlp"}, "tune": {"space": space}}).tune.space


def test_a_field_that_does_not_exist_is_named_so_whatever_the_data():
    # A probe: `data.numeric.scaler` (no such field) was "does nothing for this spec" on digits.
    space = {"data.numeric.scaler": {"type": "categorical", "choices": ["a", "b"]}}
    for source in ("builtin:digits", "builtin:iris"):
        model = {"kind": "cnn"} if source == "builtin:digits" else {"kind": "mlp"}
        with pytest.raises(SpecError, match=r"tune.space.data.numeric.scaler is not a spec field: data.numeric has no 'scaler'"):
            load_spec({**BASE, "data": {"source": source}, "model": model, "tune": {"space": space}})
