"""Text evidence: built-in corruptions of texts, and token attributions by integrated gradients.

Corruptions (they join `CORRUPTIONS["text"]` in `_shift`, at severities 1, 2, 3):

| name      | parameter                                                         | 1    | 2    | 3    |
|-----------|-------------------------------------------------------------------|------|------|------|
| `typos`   | chance per character of a typo: swapped with the next one or dropped | 0.02 | 0.05 | 0.10 |
| `dropped_words` | chance per word (per character in CJK scripts) of being dropped | 0.10 | 0.20 | 0.35 |

Both draw from the caller's seeded generator and never leave a text empty (a text keeps at
least one character or word), because an empty text is refused by the model's input check,
which would measure validation rather than robustness.

Token attributions: integrated gradients along the model's token-embedding layer (Captum's
`LayerIntegratedGradients`): token ids are integers, so the path runs from the embedding of
the padding token at every position to the text's own embeddings, with the attention mask of
the real text held fixed; the pretrained model's [CLS] and [SEP] stay themselves in the
baseline, so its attributions go to the words. Each token's score is its attribution summed
over the embedding width; the scores add up to f(text) − f(baseline) up to the reported
completeness gap, which the adaptive step count of `_explain._integrated_gradients` drives
below the tolerance where `max_steps` allows.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["typos", "drop_words", "explain_tokens", "explain_text_model", "TEXT_MAX_STEPS"]

# A text model's forward and backward passes cost far more than a small image CNN's: cap the
# steps lower than for images; the gap reached is reported either way.
TEXT_MAX_STEPS = 512
_ROWS_PER_PASS = 64  # interpolated texts per forward pass (bounds the activations held for backward)
# Scripts written without spaces: each character counts as a word.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_UNIT = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


# ---------------------------------------------------------------------------- corruptions


def _texts(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]


def _typo(text: str, rate: float, rng: np.random.Generator) -> str:
    chars = list(text)
    hits = rng.random(len(chars)) < rate
    kinds = rng.random(len(chars)) < 0.5  # True: swap with the next character, False: drop
    out: list[str] = []
    i = 0
    while i < len(chars):
        if hits[i] and not chars[i].isspace():
            if kinds[i] and i + 1 < len(chars):
                out += [chars[i + 1], chars[i]]
                i += 2
                continue
            i += 1  # dropped
            continue
        out.append(chars[i])
        i += 1
    result = "".join(out)
    return result if result.strip() else text.strip()[:1]


def _drop(text: str, rate: float, rng: np.random.Generator) -> str:
    units = list(_UNIT.finditer(text))
    if len(units) < 2:
        return text
    drop = rng.random(len(units)) < rate
    if drop.all():
        drop[rng.integers(len(units))] = False  # keep one word
    out, last = [], 0
    for m, d in zip(units, drop):
        if d:
            out.append(text[last : m.start()])
            last = m.end()
    out.append(text[last:])
    return re.sub(r"[ \t]{2,}", " ", "".join(out)).strip()


def _corrupt_texts(
    fn: Callable[[str, float, np.random.Generator], str],
) -> Callable[[pd.DataFrame, float, np.random.Generator], pd.DataFrame]:
    def apply(frame: pd.DataFrame, level: float, rng: np.random.Generator) -> pd.DataFrame:
        out = frame.copy()
        for c in _texts(frame):
            out[c] = [v if not isinstance(v, str) else fn(v, level, rng) for v in frame[c].tolist()]
        return out

    return apply


typos = _corrupt_texts(_typo)
typos.__doc__ = "Typos in every text column: each character, with chance `rate`, swapped with the next one or dropped."
drop_words = _corrupt_texts(_drop)
drop_words.__doc__ = "Each word (each character of CJK scripts) of every text column dropped with chance `rate`; one word always stays."


# ---------------------------------------------------------------------------- attributions


def explain_tokens(
    module: nn.Module,
    ids: torch.Tensor,
    targets: torch.Tensor,
    *,
    decode: Callable[[torch.Tensor], list[str]],
    classes: list[str] | None,
    keep_ids: tuple[int, ...] = (),
    per_class: int = 2,
    n_steps: int = 50,
    seed: int,
    tolerance: float | None = 1e-3,
    max_steps: int = TEXT_MAX_STEPS,
    top: int = 10,
) -> dict[str, Any]:
    """Integrated-gradients attributions of each token of a few test texts.

    Args:
        module: a text model with a `token_embedding` layer, called as module(ids, mask).
        ids: encoded test texts (N, T), padding (id 0) last.
        targets: true class indices (N,) (classification), or any values (regression: rows
            are then a seeded sample of `2 * per_class`).
        decode: one row of ids → its tokens (padding left out), as `TextCodec.decode`.
        classes: class names (None for regression).
        keep_ids: ids kept as themselves in the baseline ([CLS] and [SEP] of WordPiece).
        per_class: texts explained per true class.
        n_steps, tolerance, max_steps: as in `_explain.explain_images`.
        seed: picks the texts.
        top: tokens listed per class and per example.

    Returns:
        {"top_tokens": [{"class", "token", "attribution", "occurrences"}] (the tokens that moved the
        explained texts most toward the class they were predicted as, summed over those texts,
        `top` per class), "method", "layer", "baseline", "target", "n_steps", "integration",
        "tolerance", "max_steps", "completeness_gap", "completeness_gap_mean", "examples":
        [{"index", "label", "predicted", "n_steps", "completeness_gap", "tokens",
        "attributions", "top"}]}; "index" is the row in `ids`.
    """
    from captum.attr import LayerIntegratedGradients

    from trustforge.evaluate._explain import INTEGRATION, _attribution_target, _integrated_gradients, _pick_per_class

    module.eval()
    if classes is not None:
        index = _pick_per_class(targets, per_class, seed)
    else:
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(ids), generator=gen)[: 2 * per_class].sort().values
    x = ids[index]  # (E, T)
    mask = x != 0
    longest = max(1, int(mask.sum(dim=1).max()))
    x, mask = x[:, :longest], mask[:, :longest]
    baseline = torch.where(torch.isin(x, torch.tensor(keep_ids, dtype=x.dtype)), x, torch.zeros_like(x))
    with torch.no_grad():
        out = module(x, mask)  # (E, K)
    predicted = (out[:, 0] > 0).long() if out.shape[-1] == 1 else out.argmax(dim=-1)
    target = _attribution_target(module, x, predicted, mask)
    lig = LayerIntegratedGradients(module, module.token_embedding)
    attr, gaps, steps = _integrated_gradients(
        module,
        x,
        baseline,
        target,
        extra=(mask,),
        n_steps=n_steps,
        tolerance=tolerance,
        max_steps=max_steps,
        attribution=lig,
        rows_per_pass=_ROWS_PER_PASS,
    )
    scores = attr.sum(dim=-1)  # (E, T, D) → (E, T): one score per token

    def name(i: int) -> Any:
        return classes[i] if classes is not None and 0 <= i < len(classes) else i

    examples, totals = [], {}
    for row, (i, p, s, g) in enumerate(zip(index.tolist(), predicted.tolist(), steps.tolist(), gaps.tolist())):
        n_real = int(mask[row].sum())
        tokens = decode(x[row])
        a = scores[row, :n_real].tolist()
        order = sorted(range(n_real), key=lambda j: -a[j])[:top]
        examples.append(
            {
                "index": int(i),
                "label": int(targets[i]) if classes is not None else float(targets[i]),
                "predicted": int(p),
                "n_steps": int(s),
                "completeness_gap": float(g),
                "tokens": tokens,
                "attributions": [float(v) for v in a],
                "top": [[tokens[j], float(a[j])] for j in order],
            }
        )
        per_token = totals.setdefault(name(p), {})
        for tok, v in zip(tokens, a):
            count, total = per_token.get(tok, (0, 0.0))
            per_token[tok] = (count + 1, total + v)
    top_tokens = []
    for cls, per_token in totals.items():
        best = sorted(per_token.items(), key=lambda kv: -kv[1][1])[:top]
        top_tokens += [
            {"class": cls, "token": tok, "attribution": float(total), "occurrences": int(count)}
            for tok, (count, total) in best
            if total > 0
        ]
    return {
        "top_tokens": top_tokens,
        "method": "integrated_gradients",
        "layer": "token embedding (Captum LayerIntegratedGradients)",
        "baseline": "padding token at every real position" + (" (special tokens kept)" if keep_ids else ""),
        "target": "predicted class" if classes is not None and out.shape[-1] > 1 else "output 0",
        "n_steps": int(n_steps),
        "integration": INTEGRATION,
        "tolerance": tolerance,
        "max_steps": int(max_steps),
        "completeness_gap": float(gaps.max()) if len(gaps) else 0.0,
        "completeness_gap_mean": float(gaps.mean()) if len(gaps) else 0.0,
        "examples": examples,
    }


def explain_text_model(model: Any, ids: torch.Tensor, targets: torch.Tensor, *, per_class: int, seed: int) -> dict[str, Any]:
    """`explain_tokens` for a loaded text model (`trustforge.Model`): its module, tokens and classes.

    A module without a `token_embedding` layer has nothing to integrate along; the result then
    says so under "skipped" instead of failing the run's evidence.
    """
    from trustforge.data import text_codec as codec

    if not isinstance(getattr(model.module, "token_embedding", None), nn.Embedding):
        return {"skipped": f"{type(model.module).__name__} has no token-embedding layer to attribute along"}
    c = codec(model.preprocessor)
    keep = tuple(c.vocabulary.index(t) for t in ("[CLS]", "[SEP]")) if c.tokenizer == "wordpiece" else ()
    return explain_tokens(
        model.module, ids, targets, decode=c.decode, classes=model.schema.classes, keep_ids=keep, per_class=per_class, seed=seed
    )
