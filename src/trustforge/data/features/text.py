"""Free-text columns: token ids over a vocabulary learned from the training split.

Tokenised as `data.text` says (`word`, `char` or MiniLM's `wordpiece`; see `data._text`),
cut to `max_length` tokens and padded with id 0; read by a bag of token embeddings (the mean,
fastText-style) beside the other columns of the row. A missing or empty text in a table of
several columns is no tokens at all, so the row is predicted from its other columns (a text
task of one column refuses it instead; see `data._text`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trustforge.data import _text
from trustforge.data._augment import TEXT_FIELDS, ColumnAugment, token_augment
from trustforge.data.features._base import FeatureOptions, FeatureState, FeatureType

__all__ = ["Text", "TextState"]

_WORDS = re.compile(r"\w+")
_LETTER = re.compile(r"[^\W\d_]")  # a letter of any script (Latin, Chinese, ...), not a digit
# A column is read as text (not as a category or an id) when most values hold letters and are
# long: on average at least 3 words with letters or 20 characters (a Chinese sentence has few
# word breaks but many characters). Digits alone (03/01/2024, 10,250.0) do not make text.
_MIN_WORDS, _MIN_CHARS = 3.0, 20.0


@dataclass(frozen=True)
class TextState(FeatureState):
    tokenizer: str
    max_length: int
    lowercase: bool
    ngrams: int
    vocabulary: tuple[str, ...]  # id order; 0 is padding, 1 unknown (word/char)

    @property
    def options(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "max_length": self.max_length, "lowercase": self.lowercase, "ngrams": self.ngrams}


def _texts(col: pd.Series) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v) for v in col.tolist()]


class Text(FeatureType):
    name = "text"
    slot = "tokens"
    encoder = "bag"
    drift = "numeric"
    datatype = "BYTES"
    state_type = TextState
    corruption = "each word dropped with that probability"
    augments = TEXT_FIELDS

    def __init__(self) -> None:
        self._codecs: dict[int, tuple[TextState, _text.TextCodec]] = {}

    def detect(self, col: pd.Series, options: FeatureOptions) -> bool:
        if pd.api.types.is_numeric_dtype(col) or col.nunique() <= options.max_categories:
            return False
        sample = col.astype(str).head(2000)
        if sample.map(lambda t: bool(_LETTER.search(t))).mean() < 0.5:  # numbers, codes or dates written as text
            return False
        words = sample.map(lambda t: sum(1 for w in _WORDS.findall(t) if _LETTER.search(w)))
        return bool(words.mean() >= _MIN_WORDS or sample.str.len().mean() >= _MIN_CHARS)

    def fit(self, col: pd.Series, options: FeatureOptions, *, where: str) -> TextState:
        defaults = {"tokenizer": "word", "max_length": 128, "lowercase": True, "ngrams": 1, "min_freq": 1, "max_vocab": 20000}
        o = {**defaults, **options.text, **options.column}  # the column's own options (data.features) last
        texts = [t for t in _texts(col) if t.strip()]
        if o["tokenizer"] == "wordpiece":
            vocabulary = _text.wordpiece_vocabulary()
        else:
            vocabulary = _text.learn_vocabulary((_text.split_text(t, o) for t in texts), min_freq=o["min_freq"], max_vocab=o["max_vocab"])
        return TextState(o["tokenizer"], int(o["max_length"]), bool(o["lowercase"]), int(o["ngrams"]), tuple(vocabulary))

    def codec(self, state: TextState) -> _text.TextCodec:
        """The codec of `state`, built once (a vocabulary index or the WordPiece pipeline is costly)."""
        entry = self._codecs.get(id(state))
        if entry is None or entry[0] is not state:  # an id can be reused once a state is gone
            entry = self._codecs[id(state)] = (state, _text.TextCodec(state.options, list(state.vocabulary)))
        return entry[1]

    def encode(self, state: TextState, col: pd.Series, *, where: str) -> np.ndarray:
        texts = _texts(col)
        ids = self.codec(state).encode([t if t.strip() else "" for t in texts]).numpy()
        if state.tokenizer == "wordpiece":  # an empty text is no tokens, not [CLS] [SEP]
            ids[[not t.strip() for t in texts]] = 0
        return ids

    def augment(self, state: TextState, augment: Any) -> ColumnAugment | None:
        op = token_augment(augment, state.vocabulary, wordpiece=state.tokenizer == "wordpiece")
        return ColumnAugment(op=op, used=op.used) if op else None

    def profile(self, col: pd.Series) -> dict[str, Any]:
        # Lengths only: a free text may name a person, so no value of it is printed.
        texts = [t for t, ok in zip(_texts(col), col.notna().to_numpy()) if ok]
        if not texts:
            return {}
        chars = np.array([len(t) for t in texts], dtype=np.float64)
        words = np.array([len(_WORDS.findall(t)) for t in texts], dtype=np.float64)
        return {
            "mean_chars": float(chars.mean()),
            "median_chars": float(np.median(chars)),
            "mean_words": float(words.mean()),
            "empty": int(sum(1 for t in texts if not t.strip())),
        }

    def profile_values(self, col: pd.Series) -> None:
        return None  # a text is compared with the target by the model, not as a single value

    def near_form(self, col: pd.Series) -> pd.Series:
        # Case, punctuation and spacing aside: "Great film!" and "great  film" are one text.
        out = [" ".join(_WORDS.findall(t.casefold())) for t in _texts(col)]
        return pd.Series(out, index=col.index, dtype=object).where(col.notna(), None)

    def size(self, state: TextState) -> int:
        return len(state.vocabulary)

    def example(self, state: TextState, rows: int, rng: np.random.Generator) -> list[str]:
        words = [t for t in state.vocabulary[2:200] if " " not in t] or ["text"]
        sep = "" if state.tokenizer == "char" else " "
        return [sep.join(words[i] for i in rng.integers(0, len(words), size=8)) for _ in range(rows)]

    def monitor_values(self, col: pd.Series) -> np.ndarray:
        # Length in characters, whatever the script: a shift to longer or shorter texts (another
        # channel, another form) shows here.
        return np.array([len(t.strip()) if t.strip() else np.nan for t in _texts(col)], dtype=np.float64)

    def edit_space(self, state: TextState | None) -> bool:
        return True  # a text is attacked in its characters (evaluate._text_attack)

    def corrupt(self, state: TextState, col: pd.Series, fraction: float, rng: np.random.Generator) -> pd.Series:
        # Each word dropped with probability `fraction`: truncated or hastily typed texts.
        out = []
        for t in _texts(col):
            words = t.split()
            kept = [w for w in words if rng.random() >= fraction]
            out.append(" ".join(kept))
        return pd.Series(out, index=col.index, name=col.name, dtype=object)
