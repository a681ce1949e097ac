"""What the evidence does with each kind of input, one small class per kind.

`gather` (see `_evidence`) asks the class of the data's kind, looked up by the schema's
`modality` in `KIND_EVIDENCE`, for four things: the corruption table, how a shift set named by
`evaluate.shift` is read, how the model is explained, and which parts of the evidence do not
apply (with the reason, so the evidence says why a part is absent). A new kind of input is one
class here plus one entry in `KIND_EVIDENCE`; how a corruption reaches a kind's inputs, and how a
shift set is checked, are in `_shift` beside the corruptions themselves.

Models are duck-typed (`trustforge.Model`: `evaluate`, `outputs`, `module`, `preprocessor`,
`schema`): `package` comes after `evaluate` in the flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from safetensors.torch import save_file

from trustforge._fs import create_private
from trustforge.data import Prepared, RawData, as_text, load_source, read_interactions
from trustforge.evaluate._sequence_noise import forecast_noise_table, sequence_noise_table
from trustforge.evaluate._shift import CORRUPTIONS, corruption_table
from trustforge.evaluate._tasks import outputs_to_proba, task_of
from trustforge.spec import TaskSpec

__all__ = ["KIND_EVIDENCE", "KindEvidence", "EXPLANATIONS"]

EXPLANATIONS = "explanations.safetensors"


class KindEvidence:
    """The evidence of one kind of input. The defaults suit a kind read from a data source and
    corrupted by the built-in corruptions of its name (`_shift.CORRUPTIONS`), with no explainer."""

    name: ClassVar[str]

    def corruptions(self, spec: TaskSpec, model: Any, raw: RawData, metric: str) -> dict[str, Any] | None:
        """The metric under corruption of the test split `raw`; None when the kind has no noise model."""
        pre = model.preprocessor
        # A model told to refuse missing values (data.missing.*: error) is not scored on them: it
        # would stop, by design, at the first one.
        refuses = "error" in (getattr(pre, "numeric_missing", None), getattr(pre, "categorical_missing", None))
        names = None
        if refuses and raw.modality == "table":
            names = [n for n in CORRUPTIONS.get("table", {}) if n != "missing"]
        table = corruption_table(
            model.evaluate,
            raw,
            metric=metric,
            severities=tuple(spec.evaluate.severities),
            seed=spec.train.seed,
            corruptions=names,
            features=pre.column_features() or None,
        )
        if names is not None:
            table["skipped"] = {"missing": "the model refuses missing values (data.missing: error), so it is not scored on them"}
        return table

    def read_shift(self, spec: TaskSpec, model: Any) -> RawData:
        """The second test set named by `evaluate.shift`, as the model's kind of data."""
        d = spec.data
        # A builtin training set names its own target; a shift file must hold the same column.
        return load_source(
            spec.evaluate.shift,
            target=d.target or model.schema.target,
            image_size=tuple(d.image.size),
            channels=d.image.channels,
            seed=spec.train.seed,
            sample_rate=d.audio.sample_rate,
            seconds=d.audio.seconds,
        )

    def explain(self, spec: TaskSpec, data: Prepared, model: Any, run_dir: Path) -> dict[str, Any] | None:
        """The explanations section (tensors, if any, go to `run_dir / EXPLANATIONS`); None when none is made."""
        return None

    def not_applicable(self, spec: TaskSpec) -> dict[str, str]:
        """The parts of the evidence that do not apply to this kind of input, each with the reason."""
        return {}


class TableEvidence(KindEvidence):
    name = "table"

    def explain(self, spec: TaskSpec, data: Prepared, model: Any, run_dir: Path) -> dict[str, Any] | None:
        from trustforge.evaluate._explain import feature_importance

        groups = data.preprocessor.column_groups()  # whole columns, whatever their feature type
        probabilities = task_of(spec).probabilities

        def score(out: torch.Tensor, target: torch.Tensor) -> float:
            if probabilities:
                # Mean log-likelihood of the true class, not accuracy: accuracy ties on small test sets.
                p = outputs_to_proba(out, len(data.schema.classes))
                picked = p[np.arange(len(p)), target.numpy()]
                return float(np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
            y = target.numpy().astype(np.float64)
            return -float(np.sqrt(np.mean((out.reshape(len(y), -1)[:, 0].numpy() - y) ** 2)))  # higher is better

        measures = (
            "the mean log-likelihood the model gives the true class"
            if probabilities
            else "minus the root mean squared error (standardised target units)"
        )
        return {
            "feature_importance": feature_importance(
                model.module,
                data.test.inputs,
                data.test.target,
                [g[0] for g in groups],
                score_of_outputs=score,
                measures=measures,
                seed=spec.train.seed,
                groups=groups,
            )
        }


class TextEvidence(KindEvidence):
    name = "text"

    def read_shift(self, spec: TaskSpec, model: Any) -> RawData:
        return as_text(super().read_shift(spec, model), model.schema.text.column)  # a table holding the model's text column

    def explain(self, spec: TaskSpec, data: Prepared, model: Any, run_dir: Path) -> dict[str, Any] | None:
        from trustforge.evaluate._text import explain_text_model  # token attributions along the embedding layer

        return explain_text_model(
            model, data.test.inputs[0], data.test.target, per_class=spec.evaluate.explain_per_class, seed=spec.train.seed
        )


class ImageEvidence(KindEvidence):
    name = "image"
    input_label: ClassVar[str | None] = None  # what the report says the attribution maps are drawn over

    def explain(self, spec: TaskSpec, data: Prepared, model: Any, run_dir: Path) -> dict[str, Any] | None:
        if not task_of(spec).probabilities:  # attributions are to a class
            return None
        from trustforge.evaluate._explain import explain_images

        info, tensors = explain_images(
            model.module, data.test.inputs[0], data.test.target, per_class=spec.evaluate.explain_per_class, seed=spec.train.seed
        )
        create_private(run_dir / EXPLANATIONS)  # 0600 from its creation; save_file truncates it, keeping the mode
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(run_dir / EXPLANATIONS))
        if self.input_label is not None:
            info["input"] = self.input_label
        return info


class AudioEvidence(ImageEvidence):
    """Explained like an image over its log-mel spectrogram (N, 1, n_mels, frames), the model's input."""

    name = "audio"
    input_label = "log-mel spectrogram (mel bands × frames)"  # the report draws it with low frequencies at the bottom


def _table_as_series(raw: RawData) -> RawData:
    return RawData("series", raw.target, raw.origin, frame=raw.frame)


class SeriesEvidence(KindEvidence):
    name = "series"
    # A CSV/Parquet shift file reads as a table; it holds another series. Other kinds are left
    # as read, for the shift set's check to refuse with their name.
    SHIFT_READS: ClassVar[dict[str, Callable[[RawData], RawData]]] = {"table": _table_as_series}

    def corruptions(self, spec: TaskSpec, model: Any, raw: RawData, metric: str) -> dict[str, Any] | None:
        # Noise on what the model reads, not on what it is scored on.
        return forecast_noise_table(
            model.outputs, model.preprocessor, raw, severities=tuple(spec.evaluate.severities), seed=spec.train.seed
        )

    def read_shift(self, spec: TaskSpec, model: Any) -> RawData:
        shifted = super().read_shift(spec, model)
        as_series = self.SHIFT_READS.get(shifted.modality)
        return as_series(shifted) if as_series is not None else shifted

    def not_applicable(self, spec: TaskSpec) -> dict[str, str]:
        out = {"calibration": "task forecasting predicts values, not class probabilities: there is nothing to calibrate"}
        if spec.evaluate.explain:
            out["explanations"] = "no attribution method for forecasting windows yet; the input-noise table shows sensitivity"
        return out


class SequenceEvidence(KindEvidence):
    name = "sequence"

    def corruptions(self, spec: TaskSpec, model: Any, raw: RawData, metric: str) -> dict[str, Any] | None:
        return sequence_noise_table(model.evaluate, raw, metric=metric, severities=tuple(spec.evaluate.severities), seed=spec.train.seed)

    def not_applicable(self, spec: TaskSpec) -> dict[str, str]:
        if spec.evaluate.explain:
            return {"explanations": "no attribution method for numeric sequences yet; the noise table shows sensitivity"}
        return {}


class InteractionsEvidence(KindEvidence):
    name = "interactions"

    def corruptions(self, spec: TaskSpec, model: Any, raw: RawData, metric: str) -> dict[str, Any] | None:
        return None  # see not_applicable

    def read_shift(self, spec: TaskSpec, model: Any) -> RawData:
        return read_interactions(spec.evaluate.shift, spec.data.interactions)  # another table with the same columns

    def not_applicable(self, spec: TaskSpec) -> dict[str, str]:
        out = {"calibration": "task recommendation scores and ranks items; it predicts no class probabilities to calibrate"}
        if spec.evaluate.corruptions:
            out["corruptions"] = "user and item ids have no noise model; the unknown-id fallback is tested instead"
        if spec.evaluate.explain:
            out["explanations"] = "an id embedding has no features to attribute a score to"
        return out


KIND_EVIDENCE: dict[str, KindEvidence] = {
    k.name: k
    for k in (
        TableEvidence(),
        TextEvidence(),
        ImageEvidence(),
        AudioEvidence(),
        SeriesEvidence(),
        SequenceEvidence(),
        InteractionsEvidence(),
    )
}
