"""The kind of input a source holds, known from the spec alone, and the model it gets by default.

A table (csv, parquet, jsonl and the builtin tables and text sets) is read column by column
through the feature types, whatever mix of numbers, categories, dates and texts it holds, so
its default model is the MLP that combines the columns' encoders. Images, audio clips and
numeric sequences are whole-row inputs with networks of their own.
"""

from __future__ import annotations

__all__ = ["default_model_kind", "source_input_kind"]

# The builtin sets that are not tables; every other builtin set is a table.
_BUILTIN_KINDS = {"digits": "image", "shapes": "image", "spoken_digits": "audio"}
_SCHEME_KINDS = {"images": "image", "audio": "audio", "npz": "sequence"}
_DEFAULT_MODELS = {"image": "cnn", "audio": "audio_cnn", "sequence": "rnn", "series": "rnn", "interactions": "mf", "table": "mlp"}


def source_input_kind(task: str, source: str) -> str:
    """"table", "image", "audio", "sequence", "series" (task forecasting) or "interactions"
    (task recommendation) for a spec's task and `data.source`."""
    if task == "forecasting":
        return "series"
    if task == "recommendation":
        return "interactions"
    scheme, _, rest = source.partition(":")
    if scheme.strip() == "builtin":
        return _BUILTIN_KINDS.get(rest.strip(), "table")
    return _SCHEME_KINDS.get(scheme.strip(), "table")


def default_model_kind(task: str, source: str) -> str:
    """The `model.kind` a spec gets when it names none."""
    return _DEFAULT_MODELS[source_input_kind(task, source)]
