"""The kind of input a source holds, known from the spec alone, and the model it gets by default.

A table (csv, parquet, jsonl and the builtin tables and text sets) is read column by column
through the feature types, whatever mix of numbers, categories, dates and texts it holds, so
its default model is TabM, the ensemble of MLPs that combines the columns' encoders (measured
against scikit-learn in bench/tabular.py); a text set's is the MLP over a bag of tokens. Images, audio clips and
numeric sequences are whole-row inputs with networks of their own.
"""

from __future__ import annotations

from trustforge.data._sources import source_holds, source_holds_text
from trustforge.data.inputs import INPUT_KINDS
from trustforge.errors import DataError

__all__ = ["default_model_kind", "source_input_kind"]


def source_input_kind(task: str, source: str) -> str:
    """ "table", "image", "audio", "sequence", "series" (task forecasting) or "interactions"
    (task recommendation) for a spec's task and `data.source`."""
    if task == "forecasting":
        return "series"
    if task == "recommendation":
        return "interactions"
    try:
        return source_holds(source)  # the sources table knows, per scheme and per builtin set
    except DataError:  # not a source at all: the spec's source validator says so
        return "table"


def default_model_kind(task: str, source: str, *, text: bool = False) -> str:
    """The `model.kind` a spec gets when it names none; `text`: the spec sets `data.text` (a
    text column is the input), which, like a builtin text set, is read as text, not columns."""
    kind = source_input_kind(task, source)
    if kind == "table" and (text or source_holds_text(source)):
        kind = "text"
    return INPUT_KINDS[kind].default_model
