"""The conformance suite: every model kind goes through the same life and must survive it.

`check_model_kind(spec)` takes one small spec and checks, in order:

1. the data stage prepares it and `build_model` builds the model;
2. a few epochs of the real Trainer (the pipeline's own trainer, loss and callbacks) lower the
   training loss;
3. the trained model is written as a signed package, which verifies and loads back;
4. the loaded model predicts the same outputs as the model before saving (to 1e-5).

`CASES` holds one small spec per registered model kind; `tests/test_conformance.py` runs them
all and fails when a kind in the spec's `model.kind` union has no case, so a new architecture
cannot land without passing the suite. Third-party code can call `check_model_kind` on its
own specs the same way.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, get_args

import torch

__all__ = [
    "CASES",
    "FEATURE_CASES",
    "ConformanceResult",
    "check_feature_type",
    "check_model_kind",
    "model_kinds",
    "write_media_table",
    "foreign_images",
    "shifted_rows",
]


def _case(kind: str, source: str, model: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec = {
        "name": f"conformance-{kind}",
        "data": {"source": source},
        "model": {"kind": kind, **model},
        "train": {"max_epochs": 3, "batch_size": 64, "early_stopping": None, "seed": 3},
        "evaluate": {"calibrate": False, "speed": False, "corruptions": False, "explain": False},
    }
    for section, values in extra.items():
        spec[section] = {**spec.get(section, {}), **values} if isinstance(values, dict) else values
    return spec


# One small, fast spec per model kind (a kind may have several cases, e.g. one per modality).
CASES: dict[str, dict[str, Any]] = {
    "mlp-table": _case("mlp", "builtin:breast_cancer", {"hidden": [16]}),
    "mlp-image": _case("mlp", "builtin:digits", {"hidden": [32]}),
    # A table of every column type (a date, categories, numbers, free text) through their encoders.
    "mlp-mixed": _case("mlp", "builtin:birdstrikes", {"hidden": [16], "embedding_dim": 8}),
    # The fitted baselines (auto17): fitted by their solver, then packaged like any network.
    "linear": _case("linear", "builtin:iris", {}),
    "hist_gradient_boosting": _case("hist_gradient_boosting", "builtin:wine", {"max_iter": 10, "max_leaf_nodes": 8}),
    # The tabular kinds (issue 17): a binary table (one logit), a regression and a multi-class one.
    "tabm": _case("tabm", "builtin:breast_cancer", {"k": 4, "hidden": [16], "numeric_embedding": "periodic"}),
    # The default model of a table reads every column type, as the MLP does (dates, categories, numbers, text).
    "tabm-mixed": _case("tabm", "builtin:birdstrikes", {"k": 4, "hidden": [16], "embedding_dim": 8}),
    "tabm-regression": _case("tabm", "builtin:diabetes", {"k": 4, "hidden": [16], "embedding_dim": 4}, task="regression"),
    "ft_transformer": _case("ft_transformer", "builtin:wine", {"d_token": 8, "n_heads": 2, "n_layers": 1}),
    # Networks trained apart, averaged as probabilities: two kinds, one with its own learning rate.
    "ensemble": _case(
        "ensemble",
        "builtin:wine",
        {
            "members": [
                {"model": {"kind": "tabm", "k": 2, "hidden": [16]}},
                {"model": {"kind": "mlp", "hidden": [16]}, "train": {"optimizer": {"name": "adam", "lr": 0.01}}},
            ]
        },
    ),
    "cnn": _case("cnn", "builtin:digits", {"channels": [8], "hidden": [16]}),
    "rnn": _case("rnn", "builtin:digits", {"hidden_size": 16}),
    # Forecasting windows of a series (task forecasting: (N, lookback, 1) in, (N, horizon) out).
    "rnn-series": _case(
        "rnn",
        "builtin:seasonal",
        {"cell": "gru", "hidden_size": 16},
        task="forecasting",
        data={"series": {"lookback": 24, "horizon": 3, "season": 12}},
    ),
    # Spoken digits are generated with espeak-ng on first use (a few seconds).
    "audio_cnn": _case("audio_cnn", "builtin:spoken_digits", {"channels": [8, 16]}, data={"audio": {"hop_length": 320}}),
    # Recommenders on explicit ratings (MSE): the implicit objective pairs each interaction with a
    # sampled negative, which the whole-split loss here cannot reproduce; tests/models covers it.
    # Text: characters of the generated Chinese reviews; the pretrained MiniLM on its WordPiece tokens.
    "transformer-text": _case(
        "transformer",
        "builtin:chinese_reviews",
        {"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32},
        data={"text": {"tokenizer": "char", "max_length": 32}},
    ),
    "mlp-text": _case(
        "mlp",
        "builtin:chinese_reviews",
        {"embedding_dim": 16, "hidden": []},
        data={"text": {"tokenizer": "char", "ngrams": 2, "max_length": 64}},
        train={"optimizer": {"name": "adam", "lr": 0.01}},
    ),
    "text_pretrained": _case(
        "text_pretrained",
        "builtin:chinese_reviews",
        {"freeze": True},
        data={"text": {"tokenizer": "wordpiece", "max_length": 24}},
        train={"max_epochs": 2},
    ),
    "mf": _case(
        "mf",
        "builtin:movielens_small",
        {"factors": 8},
        task="recommendation",
        train={"batch_size": 1024, "optimizer": {"name": "adam", "lr": 0.01}},
    ),
    "two_tower": _case(
        "two_tower",
        "builtin:movielens_small",
        {"embedding_dim": 8, "hidden": [8], "output_dim": 8},
        task="recommendation",
        train={"batch_size": 1024, "optimizer": {"name": "adam", "lr": 0.01}},
    ),
}


def model_kinds() -> list[str]:
    """Every `model.kind` the spec accepts."""
    from trustforge.spec import TaskSpec

    union = TaskSpec.model_fields["model"].annotation  # the union of the model sections, one per kind
    # `auto` builds no model of its own: it resolves to one of the others (trustforge.automl).
    return sorted(cls.model_fields["kind"].default for cls in get_args(union) if cls.model_fields["kind"].default != "auto")


@dataclass
class ConformanceResult:
    """What `check_model_kind` measured.

    Attributes:
        kind: the model kind.
        loss_before / loss_after: training loss (eval mode, whole training split) before and after training.
        max_abs_diff: the largest difference between outputs before saving and after loading.
        package: where the package was written.
    """

    kind: str
    loss_before: float
    loss_after: float
    max_abs_diff: float
    package: Path


def check_model_kind(
    spec: Mapping[str, Any], workdir: str | Path | None = None, *, atol: float = 1e-5, cache_dir: str | Path | None = None
) -> ConformanceResult:
    """Build, train a little, package, verify, load and compare one spec's model.

    Args:
        spec: a (small) spec as a mapping.
        workdir: where the run folder and package go (default: a new temporary folder).
        atol: the largest output difference allowed between the saved and the loaded model.
        cache_dir: where generated data sets are kept (`builtin:spoken_digits`; default: the
            workspace's cache, as `prepare` finds it).

    Raises:
        AssertionError: a step of the life did not hold (the message says which).
        TrustForgeError: the spec, data or package is bad (as in a normal run).
    """
    from trustforge.data import prepare
    from trustforge.evaluate import fit_fitted, task_of
    from trustforge.models import build_model, output_size
    from trustforge.package import Model, build_manifest, write_package
    from trustforge.secure import Keyring
    from trustforge.spec import FITTED_KINDS, load_spec, spec_digest
    from trustforge.train import Trainer, fit_members, seeded

    task = load_spec(copy.deepcopy(dict(spec)))
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tf-conformance-"))
    run_dir = root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    data = prepare(task, cache_dir=Path(cache_dir) if cache_dir is not None else None)
    with seeded(task.train.seed):
        model = build_model(task, data.schema)
    trainer = Trainer.from_spec(task, data, task_of(task), run_dir=run_dir, callbacks=(), progress=False, resume_meta=None)

    def training_loss() -> float:
        model.eval()
        with torch.no_grad():
            n = len(data.train)
            out = torch.cat([model(*(t[i : i + 1024] for t in data.train.inputs)).float() for i in range(0, n, 1024)])
            return float(trainer.loss_fn(out, data.train.target))

    before = training_loss()
    if task.model.kind in FITTED_KINDS:  # a baseline: fitted by its own solver, as a run does (pipeline)
        fit_fitted(task, data, model)
        trainer.model = model
    elif task.model.kind == "ensemble":  # its members, each on its own, as a run trains them (pipeline)
        fit_members(task, data, model, task_of(task))
        trainer.model = model
    else:
        trainer.fit(model, data.train, data.validation)
    after = training_loss()
    assert after < before, f"{task.model.kind}: training did not lower the loss ({before:.4f} -> {after:.4f})"

    model.eval()
    expected = trainer.predict(data.test.inputs, mixed_precision=False)
    keyring = Keyring.load_or_init(root / "keys")
    manifest = build_manifest(task, data, model, {}, run=run_dir.name, spec_digest=spec_digest(task), n_out=output_size(task, data.schema))
    package = root / "package"
    write_package(
        package,
        manifest,
        {
            "weights.safetensors": dict(model.state_dict()),
            "preprocess.safetensors": data.preprocessor.state()[1],
        },
        keyring=keyring,
    )
    loaded = Model.load(package, keyring=keyring)  # verifies the signature and every digest first
    got = loaded.outputs(data.test_raw)
    assert got.shape == expected.shape, f"{task.model.kind}: outputs {tuple(got.shape)} after loading, {tuple(expected.shape)} before"
    diff = float((got - expected).abs().max()) if got.numel() else 0.0
    assert diff <= atol, f"{task.model.kind}: loaded model's outputs differ by {diff:.2e} (> {atol:g})"
    return ConformanceResult(task.model.kind, before, after, diff, package)


# ---------------------------------------------------------------------------- feature types


def _feature_cases() -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 60
    words = ["late", "gate", "bird", "engine", "smoke", "no", "damage", "landing", "wing", "crack"]
    return {
        "numeric": pd.Series(np.where(rng.random(n) < 0.1, np.nan, rng.normal(50.0, 12.0, n)), name="height"),
        "binary": pd.Series(rng.choice(["no", "yes", None], size=n, p=[0.6, 0.3, 0.1]), name="repaired"),
        "categorical": pd.Series(rng.choice(["day", "night", "dusk", None], size=n), name="time_of_day"),
        "text": pd.Series([" ".join(rng.choice(words, size=int(rng.integers(3, 9)))) if i % 9 else None for i in range(n)], name="remarks"),
        "datetime": pd.Series(
            [
                (pd.Timestamp("2019-01-01") + pd.Timedelta(hours=int(h))).isoformat() if h % 11 else None
                for h in rng.integers(0, 24 * 700, size=n)
            ],
            name="reported",
        ),
        # Files as a table read from disk holds them: their contents (see data._files.read_linked_files).
        "image": pd.Series([_png(rng) if i % 10 else None for i in range(n)], name="photo", dtype=object),
        "audio": pd.Series([_wav(rng) if i % 10 else None for i in range(n)], name="recording", dtype=object),
    }


def write_media_table(folder: str | Path, rows: int = 120, seed: int = 0) -> Path:
    """A small labelled table whose rows name an image and a sound file beside a number, for
    tests and examples of image and audio columns: `folder/table.csv` with columns `photo`
    (img/N.png, 16×16 RGB), `clip` (snd/N.wav, 0.5 s at 8 kHz), `size` and `label` (pos/neg).
    A positive row has a red square in its image and a 440 Hz tone (else 880 Hz); `size` is noise.

    Returns:
        The path of the CSV file.
    """
    import numpy as np
    import pandas as pd
    import soundfile as sf

    from trustforge.data import encode_png

    root = Path(folder)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "snd").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(4000) / 8000.0
    records = []
    for i in range(rows):
        positive = i % 2 == 1
        image = rng.random((3, 16, 16)) * 0.25
        if positive:
            top, left = rng.integers(0, 8, size=2)
            image[0, top : top + 8, left : left + 8] = 1.0
        (root / "img" / f"{i}.png").write_bytes(encode_png(image))
        wave = 0.3 * np.sin(2 * np.pi * (440.0 if positive else 880.0) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(root / "snd" / f"{i}.wav", wave.astype("float32"), 8000, subtype="PCM_16")
        records.append(
            {"photo": f"img/{i}.png", "clip": f"snd/{i}.wav", "size": round(float(rng.normal()), 3), "label": "pos" if positive else "neg"}
        )
    path = root / "table.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def _png(rng: Any) -> bytes:
    from trustforge.data import encode_png

    return encode_png(rng.random((3, 12, 10)))


def _wav(rng: Any) -> bytes:
    import io

    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, (0.2 * rng.standard_normal(4000)).astype("float32"), 8000, format="WAV", subtype="PCM_16")
    return out.getvalue()


# One column per registered feature type, with missing values, as a table would hold it.
# `tests/test_conformance.py` fails for a registered type without a case here.
FEATURE_CASES: dict[str, Any] = _feature_cases()


def check_feature_type(name: str, column: Any, workdir: str | Path | None = None) -> None:
    """Take one column through a feature type's life: inference → fit → encode → a signed
    package → verify → reload → the same tensors; and its signature, drift values,
    corruption, bounds and example values are well formed.

    Raises:
        AssertionError: a step did not hold (the message names it).
    """
    import json

    import numpy as np
    import pandas as pd

    from trustforge.data import Preprocessor, RawData, infer_schema
    from trustforge.data.features import FEATURE_TYPES, FeatureOptions, infer_type
    from trustforge.package import read_package, write_package
    from trustforge.secure import Keyring

    t = FEATURE_TYPES[name]
    assert infer_type(column, FeatureOptions(), where="case").name == name, f"{name}: inference does not pick the type for its own case"
    frame = pd.DataFrame({column.name: column, "y": ["a", "b"] * (len(column) // 2)})
    raw = RawData("table", "y", "case", frame=frame)
    schema, raw = infer_schema(raw, task="classification", features={column.name: name}, drop=[], max_categories=50)
    pre = Preprocessor(schema).fit(raw)
    state = pre.features[column.name]
    assert type(state).from_json(json.loads(json.dumps(state.to_json()))) == state, f"{name}: state does not round-trip through JSON"
    before = pre.encode_inputs(raw)

    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="tf-feature-"))
    keyring = Keyring.load_or_init(root / "keys")
    meta, tensors = pre.state()
    write_package(
        root / "package", {"name": f"feature-{name}", "preprocessing": meta}, {"preprocess.safetensors": tensors}, keyring=keyring
    )
    pkg = read_package(root / "package", keyring=keyring)
    again = Preprocessor.from_state(pkg.manifest["preprocessing"], pkg.tensors("preprocess.safetensors"))
    after = again.encode_inputs(raw)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after)), f"{name}: tensors differ after reload"
    slot = {"float": 0, "index": 1, "tokens": 2, "grid": 2}[t.slot]
    if t.slot == "float":
        assert before[slot].shape[1] == t.size(state), f"{name}: size mismatch"
    elif t.slot == "grid":
        assert tuple(before[slot].shape[1:]) == tuple(t.grid(state)), f"{name}: grid {tuple(before[slot].shape[1:])} != {t.grid(state)}"
    if t.slot in ("float", "index"):  # its block (`FeatureType.block`) of two columns encodes as one column at a time, twice
        one = t.encode(state, column, where="case")
        twice = t.block([state, state], [column.name, column.name]).encode([column, column], where="case")
        expected = np.concatenate([one, one], axis=1) if t.slot == "float" else np.stack([one, one], axis=1)
        assert np.array_equal(twice, expected, equal_nan=True), f"{name}: its block encodes differently from one column at a time"

    sig = t.signature(column.name, state)
    assert sig["name"] == column.name and sig["shape"] == [-1], f"{name}: bad signature {sig}"
    if t.drift is not None:
        values = t.monitor_values(column)
        assert len(values) == len(column), f"{name}: drift values have the wrong length"
    rng = np.random.default_rng(1)
    corrupted = t.corrupt(state, column, 0.5, rng)
    assert len(corrupted) == len(column), f"{name}: corruption changed the number of rows"
    again.encode_inputs(RawData("table", "y", "case", frame=frame.assign(**{column.name: corrupted.to_numpy()})))
    examples = t.example(state, 5, rng)
    again.encode_inputs(RawData("table", "y", "case", frame=pd.DataFrame({column.name: examples, "y": ["a"] * 5})))
    space = t.attack_space(state)  # AttackSpace checks its own range and unit
    assert space is None or t.slot in ("float", "grid"), f"{name}: an attack space on a column with no gradient path"


# ---------------------------------------------------------------------------- out-of-distribution inputs


def foreign_images(images: Any, seed: int = 0) -> dict[str, Any]:
    """Inputs an 8x8 digit model was never meant to read, one set per kind, as many as `images`
    (N, 1, H, W) in [0, 1]: uniform noise, simple shapes drawn on the grid (filled squares,
    rings and full lines, in turn) and the images inverted (1 - x). The foreign sets of the
    out-of-distribution tests and `bench/ood.py`."""
    import numpy as np

    images = np.asarray(images, dtype=np.float32)
    n, _, h, w = images.shape
    rng = np.random.default_rng(seed)
    shapes = np.zeros_like(images)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        if i % 3 == 0:
            a, b = rng.integers(0, max(1, h // 2), 2)
            side = rng.integers(max(2, h // 3), max(3, h // 2 + 1))
            shapes[i, :, a : a + side, b : b + side] = 1
        elif i % 3 == 1:
            cy, cx = rng.uniform(0.3 * h, 0.6 * h), rng.uniform(0.3 * w, 0.6 * w)
            shapes[i, :] = np.abs(np.hypot(yy - cy, xx - cx) - rng.uniform(0.2 * h, 0.4 * h)) < 0.7
        elif rng.random() < 0.5:
            shapes[i, :, rng.integers(0, h), :] = 1
        else:
            shapes[i, :, :, rng.integers(0, w)] = 1
    return {"noise": rng.uniform(0, 1, images.shape).astype(np.float32), "shapes": shapes, "inverted": 1 - images}


def shifted_rows(frame: Any, reference: Any, *, std: float = 5.0, columns: int = 3, seed: int = 0) -> Any:
    """A copy of `frame` with `columns` random numeric columns of each row moved up by `std`
    standard deviations of that column in `reference` (rows far outside the training ranges)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "f" and c in reference.columns]
    out = frame.copy()
    values = out[numeric].to_numpy(dtype=float, copy=True)
    scale = reference[numeric].std().to_numpy()
    for i in range(len(out)):
        cols = rng.choice(len(numeric), min(columns, len(numeric)), replace=False)
        values[i, cols] += std * scale[cols]
    out[numeric] = values
    return out
