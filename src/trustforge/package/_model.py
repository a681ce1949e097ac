"""`Model`: a verified package, ready to predict and evaluate."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from trustforge.data import (
    Preprocessor,
    RawData,
    Schema,
    input_kind,
    masking_key,
    needs_masking_key,
    protect_columns,
    protect_frame,
    recommend_items,
)
from trustforge.errors import DataError, IntegrityError, SecurityError, UsageError, checked_argument, described
from trustforge.evaluate import Task, outputs_to_proba, task_of
from trustforge.models import build_model
from trustforge.package._format import OOD_FILE, UnsafeNoVerify, VerifiedPackage, _workspace_keyring, read_package
from trustforge.secure import Keyring
from trustforge.spec import TaskSpec

__all__ = ["Model"]

# How a registered model is named (`models:/NAME/3`); the registry parses and resolves it.
_URI_SCHEME = "models:/"


class Model:
    """A trained model loaded from a package that passed verification.

    Use `Model.load(path)`; the constructor is for the pipeline, which already holds the parts.
    """

    def __init__(
        self,
        spec: TaskSpec,
        preprocessor: Preprocessor,
        module: torch.nn.Module,
        manifest: dict[str, Any],
        path: Path | None = None,
        ood_tensors: dict[str, torch.Tensor] | None = None,
    ):
        self.spec = spec
        # The out-of-distribution detector's tensors, as the package holds them (None: it has
        # none); `trustforge.monitor.OodDetector.for_model` applies them with the manifest's
        # `monitor.ood` entry to this model's network.
        self.ood_tensors = ood_tensors
        self.preprocessor = preprocessor
        self.module = module.eval()
        self.manifest = manifest
        self.path = path
        # The workspace masking key, for a package trained on data masked with keyed hashes
        # (`data.protect.pii: hash`): its inputs are hashed the same way (`Model.load` sets it).
        self.pii_key: bytes | None = None

    @property
    def schema(self) -> Schema:
        return self.preprocessor.schema

    @property
    def classes(self) -> list[str] | None:
        return self.schema.classes

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.spec.name)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        keyring: Keyring | None = None,
        public_key: str | os.PathLike[str] | UnsafeNoVerify | None = None,
    ) -> "Model":
        """Verify every file of the package (plain or sealed), then build the model from it.

        Verification comes first and is complete: the signature, then every file's digest,
        then the manifest JSON, then the tensors. A sealed package is decrypted in memory.

        Args:
            path: the package folder (plain or sealed). A registered model loads through the
                registry instead, which checks the reader's role: `Registry().load_model(uri)`.
            keyring: the workspace keyring; default: the workspace in the environment.
            public_key: a PEM public key file for a package signed elsewhere, or
                `UnsafeNoVerify()` to skip the signature only (logs a warning).

        Raises:
            IntegrityError: a file is missing, unlisted, changed or malformed, or the signature
                does not verify (the file is named in the message). No model is returned.
            SecurityError: no key to verify with, or a sealed package under another KEK.
            UsageError: `path` is a model URI (`models:/NAME`), naming `Registry().load_model`.
        """
        checked_argument(path, (str, os.PathLike), "Model.load(path)", "a package folder (a str or os.PathLike)", IntegrityError)
        checked_argument(
            public_key,
            (str, os.PathLike, UnsafeNoVerify, type(None)),
            "Model.load(public_key)",
            "the path of a PEM public key file (a str or os.PathLike) or UnsafeNoVerify()",
            SecurityError,
        )
        checked_argument(keyring, (Keyring, type(None)), "Model.load(keyring)", "a trustforge.secure.Keyring", SecurityError)
        _not_a_uri(path)
        pkg = read_package(path, keyring=keyring, public_key=public_key)
        if keyring is None and public_key is None and needs_masking_key(pkg.manifest.get("pii")):
            keyring = _workspace_keyring(Path(path))  # the workspace's masking key hashes its inputs
        return cls.from_package(pkg, keyring=keyring)

    @classmethod
    def from_package(cls, pkg: VerifiedPackage, *, keyring: Keyring | None = None) -> "Model":
        """Build the model from a package that already passed verification.

        Args:
            keyring: the workspace keyring, whose masking key hashes the inputs of a package
                trained on hashed data (`data.protect.pii: hash`); without it such a model
                refuses to predict, naming the key it needs.
        """
        m = pkg.manifest
        try:
            spec = TaskSpec.model_validate(m["spec"], context={"stored": True})  # as it was trained (TaskSpec's budget rule)
            pre = Preprocessor.from_state(m["preprocessing"], pkg.tensors("preprocess.safetensors"))
            # Initial weights are overwritten below; forking keeps the caller's RNG untouched.
            with torch.random.fork_rng(devices=[]):
                module = build_model(spec, pre.schema)
        except IntegrityError:
            raise
        except Exception as exc:  # a manifest that verifies but does not describe a model we can build
            raise IntegrityError(
                f"{pkg.path / 'manifest.json'}: inconsistent package ({exc.__class__.__name__}: {str(exc)[:120]})"
            ) from None
        _check_decision(pkg, pre.schema.classes)
        weights = pkg.tensors("weights.safetensors")
        try:
            module.load_state_dict(weights, strict=True)
        except RuntimeError:
            raise IntegrityError(f"{pkg.path / 'weights.safetensors'}: weights do not fit the model the manifest describes") from None
        ood = pkg.tensors(OOD_FILE) if OOD_FILE in (m.get("files") or {}) else None
        model = cls(spec, pre, module, m, pkg.path, ood_tensors=ood)
        if keyring is not None and needs_masking_key(m.get("pii")):
            model.pii_key = masking_key(keyring)
        return model

    # ------------------------------------------------------------------ inputs

    def read_input(self, source: str | os.PathLike[str] | pd.DataFrame | np.ndarray | Mapping[str, Any]) -> RawData:
        """Turn a DataFrame, a mapping of columns, an array, a file or a folder into checked raw data, as the model's kind of
        input reads it (a table, a text column, an image folder, WAV files, a series, ...).

        Raises:
            DataError: an array of booleans, or with a value that is not finite or beyond the
                float32 range the model computes in (it would become infinity, then NaN).
        """
        _check_source(source, "Model.read_input(source)")
        if isinstance(source, np.ndarray):
            _check_array(source)
        elif isinstance(source, Mapping):  # {column: values}, as a table of those columns
            source = _frame_of(source)
        raw = input_kind(self.schema).read_input(self.schema, source)
        pii = self.manifest.get("pii")  # trained on masked data: inputs are masked the same way (`data.protect`)
        return raw if not pii or raw.frame is None else replace(raw, frame=protect_frame(raw.frame, pii, self.pii_key))

    def without_extra_columns(self, raw: RawData) -> tuple[RawData, list[str]]:
        """`raw` without the table columns the model does not take, and their names; the target
        and `data.drop` columns stay (the model passes over them), as the server ignores extra
        fields. Inputs that are not a table come back as they are."""
        frame = raw.frame
        inputs = [str(s.get("name")) for s in (self.manifest.get("signature") or {}).get("inputs") or [] if isinstance(s, dict)]
        if frame is None or not inputs:
            return raw, []
        kept = {*inputs, self.schema.target, *self.schema.ignored}
        extra = [c for c in frame.columns if str(c) not in kept]
        return (replace(raw, frame=frame.drop(columns=extra)) if extra else raw), extra

    def _raw(self, data: Any, method: str) -> RawData:
        """`data` as raw data (read by `read_input` unless it is already), a wrong type of argument
        named with the method it was given to."""
        if isinstance(data, RawData):
            return data
        _check_source(data, f"Model.{method}(data)")
        return self.read_input(data)

    # ------------------------------------------------------------------ predicting

    @property
    def task(self) -> Task:
        """The model's task: what its outputs mean, how they decode, how they are scored."""
        return task_of(self.schema)

    @property
    def temperature(self) -> float:
        """The calibration temperature fitted at training time (1.0 when none was fitted)."""
        t = (self.manifest.get("calibration") or {}).get("temperature")
        return float(t) if t else 1.0

    @property
    def decision(self) -> dict[str, Any] | None:
        """The binary decision the package predicts by: ``{"positive_class": name, "threshold":
        {"value", "rule", "chosen_on", "note"}}``; the positive class is predicted when its
        probability is >= the threshold's value. None (the most probable class) for packages
        written before format 4 and for tasks that are not binary classification."""
        return self.manifest.get("decision")

    def outputs(self, raw: RawData, batch_size: int = 1024) -> torch.Tensor:
        """Model outputs for checked inputs; classification logits are divided by `temperature`."""
        return self.forward(self.preprocessor.encode_inputs(raw), batch_size)

    @torch.no_grad()
    def forward(self, inputs: tuple[torch.Tensor, ...], batch_size: int = 1024) -> torch.Tensor:
        """Model outputs for encoded inputs, `batch_size` rows at a time; classification logits
        are divided by `temperature`."""
        n = len(inputs[0])
        if 0 < n <= batch_size:
            out = self.module(*inputs).float()
        elif n == 0:  # no rows: the outputs' width from one row of zeros, so an empty result has every column
            out = self.module(*(torch.zeros((1, *t.shape[1:]), dtype=t.dtype) for t in inputs)).float()[:0]
        else:
            outs = [self.module(*(t[i : i + batch_size] for t in inputs)).float() for i in range(0, n, batch_size)]
            out = torch.cat(outs) if outs else torch.empty(0, 1)
        return self.task.calibrate(out, self.temperature)

    def predict_columns(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Predictions as arrays, from inputs as arrays: what `predict` returns, column by
        column, for the input `predict` would get as a DataFrame of `columns` (or, for a model
        that takes one tensor, such as images, that tensor: `{"image": array}`).

        The same checks and errors as `predict` (missing or unexpected columns, non-finite
        values, the missing-value policy) and the same decision (the binary threshold, the
        calibration temperature). A table's columns go straight to the package's tensors and
        the outputs straight to arrays, no DataFrame on the way (the server's path); other
        kinds of input (text, images, audio, series, interactions) are read as `predict`
        reads them, and forecasts and recommendations are built by `predict`.

        Args:
            columns: input name -> one value per row (an array, a Series or a list).

        Returns:
            Output name -> array: `prediction` and, for classification, `proba_<class>`.
        """
        if not isinstance(columns, Mapping):
            raise DataError(
                f"Model.predict_columns(columns): must be a mapping of input name to values (one per row); got {described(columns)}"
            )
        task, kind = self.task, input_kind(self.schema)
        columns = protect_columns(columns, self.manifest.get("pii"), self.pii_key)
        inputs = kind.encode_columns(self.preprocessor, columns, where="input") if task.row_outputs else None
        if inputs is not None:
            return task.output_columns(self, self.forward(inputs))
        data = _as_input(columns)
        if not task.row_outputs:
            frame = self.predict(data)
            return {str(c): frame[c].to_numpy() for c in frame.columns}
        return task.output_columns(self, self.outputs(self.read_input(data)))

    def predict_proba(self, data: Any) -> np.ndarray:
        """Class probabilities (N, K) in the order of `classes`."""
        if not self.task.probabilities:
            raise DataError("predict_proba needs a classification model")
        raw = self._raw(data, "predict_proba")
        return outputs_to_proba(self.outputs(raw), len(self.classes))

    def predict(self, data: Any) -> pd.DataFrame:
        """Predictions as a table: `prediction` and, for classification, `proba_<class>` columns.

        A binary classifier predicts its positive class when that class's probability is at
        least the package's threshold (`decision`); other classifiers, and packages from before
        format 4, predict the most probable class.

        Image inputs read from a folder get a leading `path` column. A forecasting model takes
        one series (at least `lookback` values) and returns its next `horizon` values, one row
        per step: `step` (1..horizon), `time` (when the series has a time column, unless
        data.series.step is rows) and `prediction`; a gap in the time steps of the values it
        reads is refused, naming it (never under step rows).
        """
        raw = self._raw(data, "predict")
        return self.task.predict(self, raw)

    def imputed(self, data: Any) -> dict[str, int]:
        """How many input values `predict` fills in from what training learned (the training
        median, the most frequent category, ...) instead of reading them, per table column;
        predictions of those rows rest on values the caller did not give. Empty for inputs
        that are not tables. Predictions are unchanged by asking."""
        raw = self._raw(data, "imputed")
        return self.preprocessor.imputed(raw.frame) if raw.frame is not None else {}

    def evaluate(self, data: Any) -> dict[str, Any]:
        """The task's full metric set on labelled data (the target column or class folders).
        Table rows without a target value are left out; `rows_without_target` counts them (absent: none)."""
        raw = self._raw(data, "evaluate")
        given = len(raw)
        raw = input_kind(raw).labelled(self.schema, raw)  # unlabelled rows dropped, or an error naming what is missing
        metrics = self.task.evaluate(self, raw)
        if len(raw) < given:
            metrics["rows_without_target"] = given - len(raw)
        return metrics

    def recommend(self, users: Any, k: int = 10, *, exclude_known: bool = True) -> pd.DataFrame:
        """The top `k` items for each user, best first (recommendation models only).

        Args:
            users: user ids: a list, array or Series, one id, or a DataFrame / CSV / Parquet
                file with the user column.
            exclude_known: leave out items the user met in training or validation.

        Returns:
            One row per (user, rank): the user column, `rank`, the item column, `score` and
            `source`. A user training never saw gets the most popular training items
            (`source` "popularity", no score); a user listed twice gets one list (the frame's
            `attrs["repeated_users"]` counts the repeats); see `data._interactions.recommend`.

        Raises:
            DataError: not a recommendation model, `users` of another type (None), k < 1, or no users.
        """
        if not hasattr(self.module, "score_all"):  # only recommenders score every item
            raise DataError(f"recommend needs a recommendation model; this one is for task {self.schema.task}")
        ok = (str, int, np.integer, os.PathLike, pd.DataFrame, pd.Series, np.ndarray, list, tuple)
        if not isinstance(users, ok) or isinstance(users, bool):  # None failed deep inside as a bare TypeError
            raise DataError(
                "Model.recommend(users): must be user ids (a list, array or Series, one id) or a DataFrame / CSV / "
                f"Parquet file with the user column; got {described(users)}"
            )
        return recommend_items(self.preprocessor, users, k, self.module.score_all, exclude_known=exclude_known)


def _not_a_uri(path: str | os.PathLike[str]) -> None:
    """Refuse a model URI given for a package folder, naming what loads it: the registry, which
    resolves the version and checks the reader's role before it verifies and decrypts the package
    (`Registry.load_model`). A folder that happens to be named `models:` is still read."""
    text = os.fspath(path)
    if isinstance(text, str) and text.startswith(_URI_SCHEME) and not os.path.isdir(text):
        raise UsageError(
            f"Model.load(path): {text[:80]!r} is a model URI, not a package folder; load a registered model with "
            f"trustforge.registry.Registry().load_model({text[:80]!r})"
        )


def _check_source(source: Any, where: str) -> None:
    """Refuse, as a DataError naming the argument, what no kind of input reads (it failed deep
    inside a reader as a bare TypeError)."""
    if isinstance(source, (str, os.PathLike, pd.DataFrame, np.ndarray, Mapping)):
        return
    rows = " (a list of rows: pass pd.DataFrame(rows, columns=...) or np.array(rows))" if isinstance(source, (list, tuple)) else ""
    raise DataError(
        f"{where}: must be a DataFrame, a mapping of column to values, a numpy array, or the path of a file or folder; "
        f"got {described(source)}{rows}"
    )


def _as_input(columns: Mapping[str, Any]) -> pd.DataFrame | np.ndarray:
    """What `predict` takes for `columns`: the one tensor of a model that takes one (an array of
    rank 2 or more), else a DataFrame of the columns."""
    if len(columns) == 1:
        (only,) = columns.values()
        if isinstance(only, np.ndarray) and only.ndim >= 2:
            return only
    return pd.DataFrame(dict(columns), copy=False)


def _check_decision(pkg: VerifiedPackage, classes: list[str] | None) -> None:
    """A manifest's decision names one of two classes and a threshold in (0, 1), or there is none."""
    d = pkg.manifest.get("decision")
    if d is None:
        return
    try:
        value = d["threshold"]["value"]
        ok = len(classes or []) == 2 and d["positive_class"] in classes and type(value) is float and 0 < value < 1
    except (TypeError, KeyError):
        ok = False
    if not ok:
        raise IntegrityError(f"{pkg.path / 'manifest.json'}: inconsistent package (decision {str(d)[:80]})")


def _frame_of(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A mapping {column: values} as a table (a single value is a one-row column); columns of
    unequal lengths are a DataError naming the odd one."""
    cols = {str(k): [v] if np.ndim(v) == 0 else v for k, v in columns.items()}
    lengths = {k: len(v) for k, v in cols.items()}
    usual = Counter(lengths.values()).most_common(1)[0][0] if lengths else 0
    odd = next((k for k, n in lengths.items() if n != usual), None)
    if odd is not None:
        raise DataError(f"input columns: {odd!r} has {lengths[odd]} values where the other columns have {usual}")
    try:
        return pd.DataFrame(cols)
    except (TypeError, ValueError) as exc:
        raise DataError(f"input columns: not a table ({str(exc)[:120]})") from None


def _check_array(arr: np.ndarray) -> None:
    """Refuse array inputs the model cannot read as float32 numbers, naming the first bad element."""
    if arr.dtype.kind == "b":
        raise DataError("input array: holds booleans; the model takes numbers")
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        return
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~(np.abs(arr.astype(np.float64, copy=False)) <= np.finfo(np.float32).max)
    if bad.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape))
        raise DataError(f"input array: element {list(index)} is {arr[index].item()!r}; values must be finite and within float32 range")
