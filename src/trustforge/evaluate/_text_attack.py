"""A black-box character-edit attack on text classifiers, after DeepWordBug (Gao et al., 2018).

Token ids have no gradient path, so a text is attacked in its own characters, through the
model's prediction path (what `Model.predict_proba` does, on edited copies of the test rows:
the preprocessor's encoding, then `Model.forward` with the package's calibration): the attack
works for any text model (a bag of embeddings, an RNN, a Transformer, the pretrained MiniLM)
and any tokenizer (words, characters, WordPiece), for a text task and for the text columns of a
table (`data.EditSpace` names them), because the model reads an edited text as it would read
any request.

The variant, stated for the evidence:

1. **Scoring** (DeepWordBug's step 1): each word's importance is the drop of the true class's
   probability when the word is removed (leave-one-out, a deletion score; DeepWordBug's
   Replace-1 score puts an unknown token there instead, which not every tokenizer has). A word
   is a run of letters and digits, or one character of a script written without spaces
   (Chinese, Japanese, Korean); punctuation and white space are never edited.
2. **Transforming** (DeepWordBug's step 2): words are taken in order of importance, each edited
   once. Where DeepWordBug applies one random transformation per word, this variant draws a
   few candidates per word from the same four transformations (swap two adjacent characters,
   substitute a character with a neighbouring key on a QWERTY keyboard, delete a character,
   insert a random letter) and keeps greedily the one that lowers the true class's probability
   most, until the prediction flips or the budget is spent.
3. **Budget**: the Levenshtein distance between the original and the edited text, summed over
   a row's text columns: a substitution, deletion or insertion costs 1 and a swap of adjacent
   characters 2 (it is two substitutions), as DeepWordBug counts it. An edit that would exceed
   the remaining budget is not drawn.

One attack runs per row under the largest budget; under a smaller budget `b` a row counts as
broken when that run flipped it having spent at most `b` edits (the run's prefix is an attack
within `b`), so accuracy never rises with the budget. Only rows the model classifies correctly
are attacked; the others count as wrong at every budget. Each step sends every active row's
candidates to the model in one call (the leave-one-out scores likewise), so the cost is a few
batched predictions per budget unit, not one per candidate. Randomness (the rows sampled, the
candidates drawn) comes from `seed` only.

Measured on `examples/sentiment_text.yaml` as it trains (test accuracy 0.806), 200 of its test
reviews, seed 7, one CPU thread: accuracy 0.80 clean, 0.745 / 0.675 / 0.54 / 0.26 within 1 / 2 /
4 / 8 character edits, median 5 edits to flip, 12 s (17 s before candidates were deduplicated).
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from trustforge.data import EditSpace, RawData, input_kind
from trustforge.errors import DataError, SpecError
from trustforge.evaluate._tasks import outputs_to_proba

__all__ = ["edit_attack", "ATTACK", "UNIT"]

ATTACK = "char-edit (DeepWordBug-style)"
UNIT = "character edits"
_EXAMPLES = 5
_PER_OP = 2  # candidates drawn per transformation and word: 8 per step, enough to find a flip, few to score
_CHUNK = 4096  # texts per prediction call (bounds the encoded tensors held at once)
# Scripts written without spaces: each character is a word of its own.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_PIECES = re.compile(rf"([{_CJK}]|[^\W_{_CJK}]+)")  # split with the words kept: odd pieces are words
_ROWS = "qwertyuiop", "asdfghjkl", "zxcvbnm"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _keyboard() -> dict[str, str]:
    """Each lowercase letter's neighbouring keys (same row and the rows above and below) on QWERTY."""
    near: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for i, ch in enumerate(row):
            keys = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            for other in (r - 1, r + 1):
                if 0 <= other < len(_ROWS):
                    keys += [_ROWS[other][j] for j in (i - 1, i, i + 1) if 0 <= j < len(_ROWS[other])]
            near[ch] = "".join(keys)
    digits = "1234567890"
    for i, d in enumerate(digits):
        near[d] = "".join(digits[j] for j in (i - 1, i + 1) if 0 <= j < len(digits))
    return near


_NEAR = _keyboard()


def check_budgets(budgets: Sequence[int]) -> list[int]:
    """The budgets sorted and unique, or a `SpecError` naming `evaluate.robustness.budgets`."""
    values = list(budgets) if isinstance(budgets, (list, tuple)) else None
    if not values:
        raise SpecError(
            f"evaluate.robustness.budgets must be a non-empty list of positive integers (character edits per text); got {budgets!r}"
        )
    for b in values:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise SpecError(f"evaluate.robustness.budgets must hold positive integers (character edits per text); got {b!r}")
    return sorted({int(b) for b in values})


def edit_attack(model: Any, raw: RawData, space: EditSpace | None, *, budgets: Sequence[int], rows: int, seed: int) -> dict[str, Any]:
    """Accuracy of a text classifier under the character-edit attack, per edit budget.

    Args:
        model: a `trustforge.Model` for classification (the path of its `predict_proba`:
            `preprocessor.encode_inputs`, then `forward`; and its `task`, `classes` and
            `decision`, by which a prediction is made and flips).
        raw: labelled test data, as the model's kind of input reads it (a text table, or a table).
        space: the text columns to edit (`InputKind.edit_space` of the model's preprocessor);
            None when the model reads no text.
        budgets: character edits per text (Levenshtein distance, summed over the row's text
            columns); positive integers.
        rows: rows attacked at most (a seeded sample of larger test sets).
        seed: the only source of randomness.

    Returns:
        Evidence: `attack`, `unit`, `budgets` (0 first: the clean accuracy), `accuracy` and
        `success_rate` (among the rows classified correctly before the attack) per budget,
        `median_smallest_budget` (the edits each flipped row's run had spent when it flipped,
        an upper bound of its Levenshtein distance, over the rows flipped within the largest
        budget; None when none is), up to 5 `examples` of flipped rows (original and
        adversarial text, label, prediction before and after, `edits`: their Levenshtein
        distance), `rows` and `seconds`.

    Raises:
        SpecError: `budgets` empty, or not all positive integers; `rows` < 1.
        DataError: the model is not a classifier, or reads no text.
    """
    start = time.perf_counter()
    levels = check_budgets(budgets)
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise SpecError(f"evaluate.robustness.rows must be a positive integer; got {rows!r}")
    if not model.task.probabilities:
        raise DataError(
            f"the text attack needs a classification model (it flips predicted classes); this model's task is {model.task.name}"
        )
    if space is None or not space.columns:
        raise DataError("the text attack edits text, and this model reads no text column (its input kind declares no edit space)")
    rng = np.random.default_rng(seed)
    if len(raw) > rows:
        raw = input_kind(raw).subset(raw, np.sort(rng.choice(len(raw), size=rows, replace=False)))
    attack = _Attack(model, raw, space.columns, rng)
    flipped_at, adversarial = attack.run(levels[-1])

    n = len(raw)
    correct = attack.pred0 == attack.labels
    accuracy = [float(correct.mean()) if n else 0.0]
    success = [0.0]
    for b in levels:
        broken = correct & (flipped_at <= b)
        accuracy.append(float((correct & ~broken).mean()) if n else 0.0)
        success.append(float(broken.sum() / correct.sum()) if correct.any() else 0.0)
    within = flipped_at[np.isfinite(flipped_at)]
    examples = [attack.example(i, adversarial[i]) for i in np.flatnonzero(np.isfinite(flipped_at))[:_EXAMPLES]]
    return {
        "attack": ATTACK,
        "unit": space.unit,
        "budgets": [0, *levels],
        "accuracy": accuracy,
        "success_rate": success,
        "median_smallest_budget": float(np.median(within)) if len(within) else None,
        "examples": examples,
        "rows": n,
        "seconds": round(time.perf_counter() - start, 3),
    }


class _Attack:
    """The attack's state over the sampled rows: each row's texts as pieces (words at odd places)."""

    def __init__(self, model: Any, raw: RawData, columns: tuple[str, ...], rng: np.random.Generator):
        self.model, self.raw, self.columns, self.rng = model, raw, columns, rng
        self.frame = raw.frame.reset_index(drop=True)
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise DataError(f"{raw.origin}: no text column {missing[0]!r} to attack")
        self.labels = model.preprocessor.encode_target(raw).numpy()
        # A missing text (a table's optional column) stays missing: None here, its value as given.
        self.original = [[_text_of(self.frame[c].iloc[i]) for c in columns] for i in range(len(self.frame))]
        proba = self.proba([(i, t) for i, t in enumerate(self.original)])
        self.p0 = proba[np.arange(len(proba)), self.labels] if len(proba) else np.zeros(0)
        self.pred0 = self.decide(proba)

    # -------------------------------------------------------------- the model's prediction path

    def proba(self, candidates: list[tuple[int, list[str | None]]]) -> np.ndarray:
        """Class probabilities of rows `i` with their texts replaced, in `_CHUNK`s."""
        out = []
        for s in range(0, len(candidates), _CHUNK):
            part = candidates[s : s + _CHUNK]
            frame = self.frame.iloc[[i for i, _ in part]].reset_index(drop=True)
            for j, c in enumerate(self.columns):
                values = frame[c].to_numpy(dtype=object, copy=True)
                for k, (_, texts) in enumerate(part):
                    if texts[j] is not None:
                        values[k] = texts[j]
                frame[c] = values
            out.append(self._unique_proba(replace(self.raw, frame=frame, rows=None)))
        k = len(self.model.classes)
        return np.concatenate(out) if out else np.zeros((0, k))

    def _unique_proba(self, raw: RawData) -> np.ndarray:
        """`Model.predict_proba(raw)`, running the network once per distinct encoded input:
        many candidates read the same once tokenised (a word left out beyond the model's
        `max_length`, two typos that both become the unknown token), and the forward pass of a
        Transformer is most of the attack's cost."""
        model = self.model
        inputs = model.preprocessor.encode_inputs(raw)
        n = len(inputs[0])
        keys = np.concatenate([np.ascontiguousarray(t.reshape(n, -1).numpy()).view(np.uint8).reshape(n, -1) for t in inputs], axis=1)
        seen: dict[bytes, int] = {}
        first: list[int] = []
        inverse = np.empty(n, dtype=np.int64)
        for i, row in enumerate(keys):
            inverse[i] = seen.setdefault(row.tobytes(), len(seen))
            if inverse[i] == len(first):
                first.append(i)
        index = torch.tensor(first, dtype=torch.int64)
        proba = outputs_to_proba(model.forward(tuple(t[index] for t in inputs)), len(model.classes))
        return proba[inverse]

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return self.model.task.decide(proba, self.model.classes, self.model.decision)

    # -------------------------------------------------------------- the attack

    def run(self, budget: int) -> tuple[np.ndarray, list[list[str | None]]]:
        """Attack every correctly classified row within `budget` edits: the edits spent when its
        prediction flipped (inf: it did not) and its final texts."""
        n = len(self.original)
        flipped_at = np.full(n, np.inf)
        texts = [list(t) for t in self.original]
        active = [i for i in range(n) if self.pred0[i] == self.labels[i]]
        pieces = {i: [_PIECES.split(t) if t is not None else [] for t in self.original[i]] for i in active}
        order = self._ranked(active, pieces)
        spent = dict.fromkeys(active, 0)
        step = 0
        while active:
            batch: list[tuple[int, list[str | None]]] = []
            drawn: dict[int, list[tuple[int, int, str, int]]] = {}
            for i in active:
                edited = self._next(order[i], step, pieces[i], budget - spent[i])
                if edited:
                    drawn[i] = [(j, w, word, cost) for j, w, word, cost, _ in edited]
                    batch += [(i, t) for *_, t in edited]
            if not batch:
                break
            proba = self.proba(batch)
            p_true = proba[np.arange(len(batch)), self.labels[[i for i, _ in batch]]]
            pred = self.decide(proba)
            at = 0
            for i in drawn:
                m = len(drawn[i])
                best = at + int(np.lexsort(([c for *_, c in drawn[i]], p_true[at : at + m]))[0])  # lowest p, then cheapest
                j, w, word, cost = drawn[i][best - at]
                pieces[i][j][w] = word
                texts[i] = batch[best][1]
                spent[i] += cost
                if pred[best] != self.labels[i]:
                    flipped_at[i] = spent[i]
                at += m
            active = [i for i in drawn if not np.isfinite(flipped_at[i]) and spent[i] < budget]
            step += 1
        return flipped_at, texts

    def _next(self, order: list[tuple[int, int]], step: int, pieces: list[list[str]], left: int) -> list[tuple]:
        """The candidates (column, piece, new word, cost, the row's texts) of the next word in
        `order` (from `step` on) that some edit within `left` can change; words that none can
        are dropped from `order`. Empty when no word is left."""
        while step < len(order):
            j, w = order[step]
            edited = [(j, w, word, cost, _with(pieces, j, w, word)) for word, cost in _edits(pieces[j][w], left, self.rng)]
            # A text edited down to nothing would be refused by the model's input check, not scored.
            edited = [e for e in edited if (e[4][j] or "").strip()]
            if edited:
                return edited
            order.pop(step)
        return []

    def _ranked(self, rows: list[int], pieces: dict[int, list[list[str]]]) -> dict[int, list[tuple[int, int]]]:
        """Each row's words (column, piece index) by the drop in the true class's probability
        when the word is left out, largest first (ties: first word first)."""
        batch, where = [], []
        words = {i: [(j, w) for j, p in enumerate(pieces[i]) for w in range(1, len(p), 2)] for i in rows}
        for i in rows:
            for j, w in words[i]:
                texts = _with(pieces[i], j, w, "")
                if texts[j] is not None and texts[j].strip():  # a text left empty would be refused, not scored
                    batch.append((i, texts))
                    where.append((i, j, w))
        drop = {key: 0.0 for i in rows for key in ((i, j, w) for j, w in words[i])}
        if batch:
            proba = self.proba(batch)
            for (i, j, w), p in zip(where, proba[np.arange(len(batch)), self.labels[[i for i, _ in batch]]]):
                drop[(i, j, w)] = float(self.p0[i] - p)
        return {i: sorted(words[i], key=lambda jw, i=i: -drop[(i, *jw)]) for i in rows}

    def example(self, i: int, adversarial: list[str | None]) -> dict[str, Any]:
        classes = self.model.classes
        proba = self.proba([(int(i), adversarial)])
        return {
            "original": _joined(self.columns, self.original[i]),
            "adversarial": _joined(self.columns, adversarial),
            "label": classes[self.labels[i]],
            "prediction_before": classes[self.pred0[i]],
            "prediction_after": classes[self.decide(proba)[0]],
            "edits": int(sum(_levenshtein(a or "", b or "") for a, b in zip(self.original[i], adversarial))),
        }


def _text_of(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _with(pieces: list[list[str]], j: int, w: int, word: str) -> list[str | None]:
    """The row's texts with word `w` of column `j` replaced by `word`."""
    out: list[str | None] = []
    for k, p in enumerate(pieces):
        if not p:
            out.append(None)
        elif k == j:
            out.append("".join(p[:w]) + word + "".join(p[w + 1 :]))
        else:
            out.append("".join(p))
    return out


def _edits(word: str, left: int, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Up to `_PER_OP` candidates of each transformation of `word` costing at most `left`
    edits, as (new word, cost), distinct and unlike `word`."""
    if left < 1 or not word:
        return []
    n = len(word)
    out: dict[str, int] = {}
    if left >= 2 and n >= 2:  # swap two adjacent characters: two substitutions
        spots = [k for k in range(n - 1) if word[k] != word[k + 1]]
        for k in rng.permutation(spots)[:_PER_OP] if spots else []:
            out.setdefault(word[:k] + word[k + 1] + word[k] + word[k + 2 :], 2)
    for k in rng.integers(0, n, size=_PER_OP):  # a neighbouring key (another character of the word off the keyboard)
        ch = word[k]
        near = _NEAR.get(ch.lower()) or "".join(sorted(set(word) - {ch}))
        if near:
            sub = near[rng.integers(0, len(near))]
            out.setdefault(word[:k] + (sub.upper() if ch.isupper() else sub) + word[k + 1 :], 1)
    for k in rng.integers(0, n, size=_PER_OP):  # delete a character
        out.setdefault(word[:k] + word[k + 1 :], 1)
    for k in rng.integers(0, n + 1, size=_PER_OP):  # insert a random letter
        out.setdefault(word[:k] + _LETTERS[rng.integers(0, 26)] + word[k:], 1)
    out.pop(word, None)
    return list(out.items())


def _joined(columns: tuple[str, ...], texts: list[str | None]) -> str:
    """One text as is; several columns as `column: text` lines."""
    if len(columns) == 1:
        return texts[0] or ""
    return "\n".join(f"{c}: {t}" for c, t in zip(columns, texts) if t is not None)


def _levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
