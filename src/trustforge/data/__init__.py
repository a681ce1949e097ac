"""Data: sources, schema inference, cleaning, splits and encoders with saved state.

`prepare(spec)` is the stage's entry point: it reads the source, infers the schema, splits
with the spec's seed, fits the encoders on the training split only and returns tensors.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trustforge.data._attack_space import STD_MAX_EPSILON, AttackSpace, EditSpace, largest_budget, movable_elements
from trustforge.data._audio import add_noise as audio_noise
from trustforge.data._audio import change_gain as audio_gain
from trustforge.data._audio import read_audio_input
from trustforge.data._audio import time_shift as audio_time_shift
from trustforge.data._augment import FIELDS_READ_BY, Augmentation, ImageAugment, TokenAugment, check_declared
from trustforge.data._duplicates import across_splits, dedupe
from trustforge.data._encoders import Preprocessor
from trustforge.data._expect import (
    Expectations,
    ExpectReport,
    check_declared_types,
    check_raw,
    expectations_of,
    fit_expectations,
    validate_data,
)
from trustforge.data._files import IMAGE_SUFFIXES, encode_png, list_images, read_image, read_table
from trustforge.data._interactions import BUILTIN_INTERACTIONS, NegativeSampler, read_interactions
from trustforge.data._interactions import encode_inputs as encode_interactions
from trustforge.data._interactions import encode_target as interaction_targets
from trustforge.data._interactions import item_popularity as interaction_popularity
from trustforge.data._interactions import known_keys as known_interactions
from trustforge.data._interactions import predictions as interaction_predictions
from trustforge.data._interactions import ratings as interaction_ratings
from trustforge.data._interactions import recommend as recommend_items
from trustforge.data._kinds import default_model_kind, source_input_kind
from trustforge.data._label_issues import (
    LabelIssues,
    clean_training,
    find_label_issues,
    label_issue_warnings,
    label_issues_refusal,
    report_label_issues,
    row_names,
)
from trustforge.data._prepared import Prepared, TensorData
from trustforge.data._profile import profile_data
from trustforge.data._protect import (
    data_for_schema,
    header_names,
    mask_message,
    masking_key,
    protect,
    protect_columns,
    protect_frame,
    renamed_in_spec,
)
from trustforge.data._protect import key_id as masking_key_id
from trustforge.data._protect import needs_key as needs_masking_key
from trustforge.data._raw import RawData
from trustforge.data._schema import Column, Schema, label_strings, no_target_note
from trustforge.data._sequences import check_sequences, read_npz, read_sequence_input
from trustforge.data._sequences import with_noise as sequences_with_noise
from trustforge.data._series import (
    forecast_inputs,
    forecast_table,
    prepare_series,
    read_series_input,
    training_overlap,
    window_forecasts,
    with_input_noise,
)
from trustforge.data._sources import (
    BUILTIN_SOURCES,
    SOURCE_FORMS,
    SOURCES,
    Source,
    interaction_roles,
    load_source,
    redact_source,
    require_present,
    resolve_source,
    source_holds,
    source_holds_text,
    written_source,
)
from trustforge.data._splits import split_indices
from trustforge.data._text import as_text, base_model_dir
from trustforge.data._text import codec as text_codec
from trustforge.data.inputs import INPUT_KINDS, Columns, Grid, Ids, InputKind, Spectrogram, Steps, Tokens, infer_schema, input_kind
from trustforge.errors import SpecError

if TYPE_CHECKING:  # the spec's validators import this package's tables (SOURCES); importing spec here would be circular
    from trustforge.spec import TaskSpec

__all__ = [
    "Expectations",
    "ExpectReport",
    "check_raw",
    "expectations_of",
    "validate_data",
    "Checked",
    "check_data",
    "fit_preprocessor",
    "label_issues_refusal",
    "label_issue_warnings",
    "report_label_issues",
    "AttackSpace",
    "STD_MAX_EPSILON",
    "EditSpace",
    "largest_budget",
    "first_row",
    "movable_elements",
    "BUILTIN_INTERACTIONS",
    "BUILTIN_SOURCES",
    "FIELDS_READ_BY",
    "INPUT_KINDS",
    "audio_gain",
    "audio_noise",
    "audio_time_shift",
    "encode_interactions",
    "interaction_predictions",
    "interaction_popularity",
    "interaction_ratings",
    "interaction_targets",
    "known_interactions",
    "base_model_dir",
    "read_interactions",
    "sequences_with_noise",
    "text_codec",
    "with_input_noise",
    "Columns",
    "Grid",
    "Ids",
    "Spectrogram",
    "Steps",
    "Tokens",
    "recommend_items",
    "InputKind",
    "input_kind",
    "default_model_kind",
    "source_input_kind",
    "source_holds_text",
    "SOURCES",
    "SOURCE_FORMS",
    "Source",
    "interaction_roles",
    "redact_source",
    "require_present",
    "resolve_source",
    "written_source",
    "source_holds",
    "NegativeSampler",
    "IMAGE_SUFFIXES",
    "encode_png",
    "Column",
    "Augmentation",
    "ImageAugment",
    "TokenAugment",
    "Prepared",
    "Preprocessor",
    "RawData",
    "Schema",
    "TensorData",
    "infer_schema",
    "label_strings",
    "no_target_note",
    "list_images",
    "load_data",
    "load_source",
    "prepare",
    "prepare_key",
    "split_settings",
    "protect",
    "protect_frame",
    "protect_columns",
    "renamed_in_spec",
    "needs_masking_key",
    "masking_key_id",
    "masking_key",
    "mask_message",
    "read_image",
    "read_table",
    "split_indices",
    "subset",
    "as_text",
    "read_audio_input",
    "check_sequences",
    "read_npz",
    "read_sequence_input",
    "read_series_input",
    "prepare_series",
    "forecast_inputs",
    "forecast_table",
    "training_overlap",
    "window_forecasts",
    "LabelIssues",
    "find_label_issues",
    "clean_training",
    "row_names",
]


def load_data(spec: TaskSpec, *, cache_dir: Path | None = None) -> RawData:
    """Read the spec's data source (generated sets are kept in `cache_dir`)."""
    own = _spec_kind(spec).load(spec, cache_dir=cache_dir)
    if own is not None:
        return own
    d = spec.data
    raw = load_source(
        d.source,
        target=d.target,
        image_size=tuple(d.image.size),
        channels=d.image.channels,
        seed=spec.train.seed,
        sample_rate=d.audio.sample_rate,
        seconds=d.audio.seconds,
        cache_dir=cache_dir,
    )
    return as_text(raw, d.text.column) if d.text is not None else raw  # one column of a table as the text input


def _spec_kind(spec: TaskSpec) -> InputKind:
    # What the source holds for this task (a table read as a series for forecasting, say).
    return input_kind(source_input_kind(spec.task, spec.data.source))


def subset(raw: RawData, idx: np.ndarray) -> RawData:
    """The rows `idx` of `raw` (a view of its arrays where possible)."""
    return input_kind(raw).subset(raw, idx)


def first_row(raw: RawData) -> RawData:
    """`raw`'s first row (none when it has none): what a check encodes for the shape of one row."""
    return subset(raw, np.arange(min(1, len(raw))))


@dataclass
class Checked:
    """What `check_data` leaves: the data after every refusal `prepare` makes before it fits anything.

    Attributes:
        raw: the data as protected (`data.protect`), checked (`data.expect`), typed and deduplicated.
        protection: the record of `data.protect` (None when off).
        declared: the declared expectations (None when none).
        expect_report: what they found.
        own: a kind that splits its own way (a series, interactions): its prepared data; the rest is None.
        kind: the input kind of `raw`.
        schema: the inferred schema.
        keys, duplicates: `dedupe`'s row keys and findings.
        split: the training, validation and test rows (cross-split duplicates already held out).
        renamed: a header holding personal data -> the name `data.protect` gave its column (in
            memory only: the header itself is never written anywhere).
    """

    raw: RawData
    protection: dict | None
    declared: Expectations | None
    expect_report: ExpectReport | None
    own: Prepared | None = None
    kind: InputKind | None = None
    schema: Schema | None = None
    keys: Any = None
    duplicates: Any = None
    split: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    renamed: dict[str, str] = field(default_factory=dict)


def check_data(
    spec: TaskSpec, raw: RawData | None = None, *, cache_dir: Path | None = None, key: bytes | None = None, where: str | None = None
) -> Checked:
    """Every check `prepare` runs before it fits an encoder, in its order: read, protect personal
    data (`data.protect`), the declared expectations, type the columns, `data.duplicates`, the split
    (enough rows per class), cross-split duplicates. `prepare` calls it; so does `trustforge
    validate` (`validate_data`), so the two cannot disagree. `where` names the data in the
    expectations' findings (default: its origin).

    Raises:
        DataError: the source, a column or a value cannot be used.
        SecurityError: `data.protect.pii: hash` without a key.
    """
    raw = raw if raw is not None else load_data(spec, cache_dir=cache_dir)
    if spec.evaluate.shift:  # read after training, for the evidence: a missing file is refused before, not after
        require_present(spec.evaluate.shift, "evaluate.shift")
    headers = list(raw.frame.columns) if raw.frame is not None else []
    raw, protection = protect(raw, spec.data.protect, key=key, features=spec.data.features)
    # hashed personal columns are not features; a personal header the spec names, as `protect` renamed it (data._protect)
    renamed = {str(c): n for c, n in header_names(headers, protection, key).items()}
    d = data_for_schema(spec.data, protection, renamed)
    declared = Expectations.declared(d.expect) if d.expect is not None else None
    if declared is not None and declared.empty:  # the default `{}`: nothing declared, only what training shows
        declared = None
    # The declared expectations, on the whole (already protected) table before the split: their
    # findings quote values, so they must never see personal data. The inferred ones come from
    # the training split itself, so they are not checked on it.
    raw, expect_report = check_raw(declared, raw, where=where or raw.origin)
    expect_report = expect_report if declared is not None else None
    own = _spec_kind(spec).prepare(spec, raw)
    if own is not None:  # a series split by time, interactions held out per user: the declared expectations only
        check_declared(spec.data.augment, frozenset(), f"{_spec_kind(spec).name} input")
        return Checked(raw, protection, declared, expect_report, own=own, renamed=renamed)
    kind = input_kind(raw)
    schema, raw = kind.infer_schema(raw, task=spec.task, data=d)
    if expect_report is not None:  # a declared type against the type each column is read as
        check_declared_types(declared, schema, expect_report, where=where or raw.origin)
    raw, keys, duplicates = dedupe(kind, raw, schema, d.duplicates)  # data.duplicates within the data set
    strat = kind.labels(raw) if _stratified(spec) else None
    # Rows with a group (e.g. a speaker) are split group by group; see `split_indices`.
    tr, va, te = split_indices(
        len(raw), test=d.split.test, validation=d.split.validation, stratify=strat, seed=spec.train.seed, groups=raw.groups
    )
    held = across_splits(keys, duplicates, tr, {"validation": va, "test": te}, origin=raw.origin, file_rows=raw.rows)
    va, te = held["validation"], held["test"]  # held-out rows whose inputs sit in training, by data.duplicates.across_splits
    return Checked(raw, protection, declared, expect_report, None, kind, schema, keys, duplicates, (tr, va, te), renamed)


def fit_preprocessor(spec: TaskSpec, c: Checked) -> tuple[Preprocessor, RawData, Augmentation]:
    """The encoders fitted on the training split, that split, and `data.augment` as its inputs
    read it: a declared field that no input reads is refused (`check_declared`), and so are mixed
    copies (`mixup`) under `train.privacy`. Nothing is encoded yet.

    Raises:
        SpecError: an augmentation this data cannot take.
    """
    d, kind, schema = spec.data, c.kind, c.schema
    assert kind is not None and schema is not None and c.split is not None  # not for a kind that splits its own way
    pre = Preprocessor(schema, numeric_missing=d.missing.numeric, categorical_missing=d.missing.categorical)
    train_raw = subset(c.raw, c.split[0])
    pre.fit(train_raw)
    aug = kind.augment(pre, d, seed=spec.train.seed)
    kinds = sorted({col.kind for col in schema.columns})
    check_declared(d.augment, aug.reads, f"{kind.name} input" + (f" of {', '.join(kinds)} columns" if kinds else ""))
    if (
        aug.copies is not None and spec.train.privacy is not None
    ):  # a row and its mixed copy would be two samples of one person to the accountant
        raise SpecError("data.augment.mixup: mixed copies of training rows break train.privacy's per-row guarantee; remove one of them")
    return pre, train_raw, aug


def prepare_key(spec: TaskSpec) -> str:
    """A digest of what `prepare` reads of a spec: its task, its data section, `train.seed` and
    whether `train.privacy` is on (never the model section). Specs with one key prepare the same
    data, so `model.kind auto` prepares once for its choice and for the run of the chosen spec."""
    parts = {
        "task": spec.task,
        "data": spec.data.model_dump(mode="json"),
        "seed": spec.train.seed,
        "privacy": spec.train.privacy is not None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _stratified(spec: TaskSpec) -> bool:
    s = spec.data.split.stratify
    return s if s is not None else spec.task == "classification"


def split_settings(spec: TaskSpec) -> dict[str, Any]:
    """What decides which rows of a data set `prepare` holds out, by dotted spec field: the split
    fractions and whether it is stratified (as applied: the default resolved), `train.seed`, the
    duplicate policies (`across_splits` removes held-out rows) and a series' or interactions'
    own split. On one data set (equal digests), specs with equal settings hold out the same rows."""
    d = spec.data
    sections: dict[str, Any] = {
        "data.split": {"test": d.split.test, "validation": d.split.validation, "stratify": _stratified(spec)},
        "data.duplicates": d.duplicates.model_dump(mode="json"),
        "data.series": d.series.model_dump(mode="json") if d.series is not None else None,
        "data.interactions": d.interactions.model_dump(mode="json") if d.interactions is not None else None,
    }
    out: dict[str, Any] = {}
    for section, fields in sections.items():
        if isinstance(fields, dict):
            out.update({f"{section}.{name}": value for name, value in fields.items()})
        else:
            out[section] = fields
    out["train.seed"] = spec.train.seed
    return out


def prepare(spec: TaskSpec, raw: RawData | None = None, *, cache_dir: Path | None = None, key: bytes | None = None) -> Prepared:
    """Read, type, split and encode the data of `spec`.

    Personal data is dealt with first (`data.protect`, see `data._protect`), so nothing fitted
    below ever sees it; `key` is the workspace masking key (`data.protect.pii: hash` only).
    The checks before fitting are `check_data`'s (what `trustforge validate` runs too). The
    result records `prepare_key(spec)` (None when `raw` is given) and the seconds it took.

    Raises:
        DataError: the source, a column or a value cannot be used.
        SecurityError: `data.protect.pii: hash` without a key.
    """
    t0 = time.perf_counter()
    out = _prepare(spec, raw, cache_dir=cache_dir, key=key)
    out.prepared_from = prepare_key(spec) if raw is None else None
    out.prepare_seconds = time.perf_counter() - t0
    return out


def _prepare(spec: TaskSpec, raw: RawData | None, *, cache_dir: Path | None, key: bytes | None) -> Prepared:
    c = check_data(spec, raw, cache_dir=cache_dir, key=key)
    d = spec.data
    if c.own is not None:
        own = c.own
        own.protection, own.renamed = c.protection, c.renamed
        own.expect, own.expect_report = _saved(c.declared), c.expect_report
        own.profile = own.profile or {"skipped": "this kind of data is split its own way (by time, per user); not profiled yet"}
        return own
    raw, kind, schema = c.raw, c.kind, c.schema
    assert kind is not None and schema is not None and c.split is not None
    tr, va, te = c.split
    pre, train_raw, aug = fit_preprocessor(spec, c)

    def encode(part: RawData) -> TensorData:
        return TensorData(pre.encode_inputs(part), pre.encode_target(part))

    # Augmentation touches the training split only: copies made here (waveforms before the front
    # end, mixed rows after encoding) and per-batch operations the trainer applies to training batches.
    train_in = kind.training_copies(train_raw, d, spec.train.seed)
    test_raw = subset(raw, te)
    train = encode(train_in)
    if aug.copies is not None:
        train = TensorData(*aug.copies(train.inputs, train.target))
    return Prepared(
        schema=schema,
        preprocessor=pre,
        train=train,
        validation=encode(subset(raw, va)) if len(va) else None,
        test=encode(test_raw),
        data_digest=raw.digest(),
        test_raw=test_raw,
        augment=aug.batch if aug.batch is not None else ImageAugment(),
        train_raw=train_raw,
        protection=c.protection,
        renamed=c.renamed,
        expect=_saved(fit_expectations(d.expect, pre, train_raw.frame)),
        expect_report=c.expect_report,
        batch_transform=aug.batch_inputs,
        augmentation=aug.used,
        profile=profile_data(kind, raw, schema, {"train": tr, "validation": va, "test": te}, c.duplicates),
    )


def _saved(ex: Expectations | None) -> dict | None:
    """What the package keeps (None: no rule at all, e.g. images, text sets or a series: no `expect` in the manifest)."""
    return ex.to_json() if ex is not None and not ex.empty else None
