"""Text data: jsonl sources, tokenizers and vocabularies, the text modality, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from trustforge.data import Preprocessor, prepare
from trustforge.data._text import (
    PAD,
    UNK,
    TextCodec,
    base_model_dir,
    char_tokens,
    learn_vocabulary,
    read_jsonl,
    with_ngrams,
    word_tokens,
)
from trustforge.data._text_sets import chinese_reviews
from trustforge.errors import DataError, SpecError
from trustforge.evaluate._shift import CORRUPTIONS, corrupt
from trustforge.evaluate._text import drop_words, typos
from trustforge.spec import load_spec

POS = ["great taste and fresh", "love it, great value", "fresh and tasty, would buy again", "great product love it"]
NEG = ["stale and bland", "awful taste, never again", "arrived broken and stale", "bland, not worth it"]


def _reviews_csv(tmp_path, n=60, extra=None):
    rows = [(POS[i % 4] if i % 2 == 0 else NEG[i % 4], "pos" if i % 2 == 0 else "neg") for i in range(n)]
    frame = pd.DataFrame(rows, columns=["body", "label"])
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra, columns=["body", "label"])], ignore_index=True)
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    return path


def _spec(source, **text):
    return load_spec({"data": {"source": source, "target": "label", "text": {"column": "body", **text}}, "model": {"kind": "transformer"}})


# ---------------------------------------------------------------------------- tokenizers


def test_word_tokens_split_words_and_punctuation_after_nfkc_and_lowercase():
    assert word_tokens("Great VALUE, don't miss!") == ["great", "value", ",", "don", "'", "t", "miss", "!"]
    assert word_tokens("Ｇｒｅａｔ") == ["great"]  # full-width letters fold to ASCII (NFKC)
    assert word_tokens("Great", lowercase=False) == ["Great"]


def test_char_tokens_work_for_chinese():
    assert char_tokens("质量很好，非常满意！") == ["质", "量", "很", "好", ",", "非", "常", "满", "意", "!"]
    assert char_tokens("  好  用 \n 啊 ") == ["好", " ", "用", " ", "啊"]  # white space runs become one space


def test_learned_vocabulary_counts_min_freq_and_max_size():
    lists = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    assert learn_vocabulary(lists, min_freq=1, max_vocab=100) == [PAD, UNK, "a", "b", "c", "d"]  # ties in code-point order
    assert learn_vocabulary(lists, min_freq=2, max_vocab=100) == [PAD, UNK, "a", "b"]
    assert learn_vocabulary(lists, min_freq=1, max_vocab=3) == [PAD, UNK, "a"]


def test_codec_truncates_to_max_length_and_pads_with_zero():
    vocab = [PAD, UNK, "great", "taste", "and", "fresh"]
    codec = TextCodec({"tokenizer": "word", "max_length": 3, "lowercase": True}, vocab)
    ids = codec.encode(["great taste and fresh", "fresh", "unseen great"])
    assert ids.dtype == torch.int64 and ids.shape == (3, 3)
    assert ids.tolist() == [[2, 3, 4], [5, 0, 0], [1, 2, 0]]  # first 3 tokens; padding 0; unknown 1
    assert codec.tokens("unseen great") == [UNK, "great"]
    assert codec.decode(ids[2]) == [UNK, "great"]


def test_ngrams_follow_the_token_that_ends_them_and_count_toward_max_length():
    assert with_ngrams(["a", "b", "c"], 1) == ["a", "b", "c"]
    assert with_ngrams(["a", "b", "c"], 2) == ["a", "b", "a b", "c", "b c"]
    assert with_ngrams(["a", "b", "c"], 3) == ["a", "b", "a b", "c", "b c", "a b c"]
    vocab = [PAD, UNK, "not", "good", "not good", "bad"]
    codec = TextCodec({"tokenizer": "word", "max_length": 4, "lowercase": True, "ngrams": 2}, vocab)
    assert codec.tokens("Not good at all") == ["not", "good", "not good", UNK]  # at, "good at", all, ... cut
    assert codec.encode(["not bad"]).tolist() == [[2, 5, 1, 0]]  # "not bad" was never seen: unknown
    with pytest.raises(SpecError, match="data.text.ngrams must be 1 for tokenizer wordpiece"):
        load_spec(
            {"data": {"source": "builtin:reviews", "text": {"tokenizer": "wordpiece", "ngrams": 2}}, "model": {"kind": "text_pretrained"}}
        )


def test_wordpiece_matches_the_models_own_tokenizer_and_keeps_sep_last():
    from tokenizers import Tokenizer

    reference = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    vocab = (base_model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    codec = TextCodec({"tokenizer": "wordpiece", "max_length": 512, "lowercase": True}, vocab)
    texts = ["Don't let these little cans fool you.", "Ｃａｆé au lait, 好吃!", "tastes like cardboard :("]
    got = codec.encode(texts)
    for row, e in zip(got, reference.encode_batch(texts)):
        assert row[: len(e.ids)].tolist() == e.ids and not row[len(e.ids) :].any()
    short = TextCodec({"tokenizer": "wordpiece", "max_length": 6, "lowercase": True}, vocab)
    ids = short.encode(["one two three four five six seven"])[0].tolist()
    assert ids[0] == vocab.index("[CLS]") and ids[-1] == vocab.index("[SEP]") and len(ids) == 6


# ---------------------------------------------------------------------------- the text modality


def test_vocabulary_comes_from_the_training_split_only(tmp_path):
    # One review holds a word no other row has; wherever the split puts it, the vocabulary
    # holds exactly the training split's tokens.
    path = _reviews_csv(tmp_path, extra=[("zanzibar quince", "pos")] * 3)
    data = prepare(_spec(f"csv:{path}"))
    pre = data.preprocessor
    assert data.schema.modality == "text" and data.schema.columns[0].kind == "text"
    train_texts = data.train_raw.frame["body"]
    train_tokens = {t for text in train_texts for t in word_tokens(text)}
    vocab = pre.vocabularies["body"]
    assert vocab[:2] == [PAD, UNK] and set(vocab[2:]) == train_tokens
    assert data.schema.columns[0].vocabulary == len(vocab)
    test_tokens = {t for text in data.test_raw.frame["body"] for t in word_tokens(text)}
    for t in test_tokens - train_tokens:  # a token only the test split has is unknown to the model
        row = next(i for i, text in enumerate(data.test_raw.frame["body"]) if t in word_tokens(text))
        position = word_tokens(data.test_raw.frame["body"][row]).index(t)
        assert data.test.inputs[0][row, position] == 1


def test_preprocessor_state_round_trips_through_json(tmp_path):
    data = prepare(_spec(f"csv:{_reviews_csv(tmp_path)}", tokenizer="char", max_length=16))
    meta, tensors = data.preprocessor.state()
    again = Preprocessor.from_state(json.loads(json.dumps(meta)), tensors)
    assert torch.equal(again.encode_inputs(data.test_raw)[0], data.test.inputs[0])
    assert data.test.inputs[0].shape[1] == 16


def test_jsonl_source_reads_objects_and_skips_blank_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [json.dumps({"body": POS[i % 4] if i % 2 == 0 else NEG[i % 4], "label": "pos" if i % 2 == 0 else "neg"}) for i in range(40)]
    path.write_text("\n".join(lines[:20]) + "\n\n" + "\n".join(lines[20:]) + "\n", encoding="utf-8")
    frame = read_jsonl(path)
    assert list(frame.columns) == ["body", "label"] and len(frame) == 40
    data = prepare(_spec(f"jsonl:{path}"))
    assert data.schema.rows == 40


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"body": "ok", "label": "pos"}\n{"body": "broken", "label": \n', ":2: not valid JSON"),
        ('{"body": "ok", "label": "pos"}\n["a", "list"]\n', ":2: must be one JSON object per line; got a JSON list"),
        ("", "the file has no rows"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl") as e:
        read_jsonl(path)
    assert message in str(e.value)


def test_a_missing_text_column_is_named(tmp_path):
    path = _reviews_csv(tmp_path)
    spec = load_spec({"data": {"source": f"csv:{path}", "target": "label", "text": {"column": "review"}}, "model": {"kind": "transformer"}})
    with pytest.raises(DataError, match=r"no text column 'review'.*columns are: body, label"):
        prepare(spec)


def test_a_text_column_must_be_named_for_file_sources(tmp_path):
    spec = load_spec({"data": {"source": f"csv:{_reviews_csv(tmp_path)}", "target": "label", "text": {}}, "model": {"kind": "transformer"}})
    with pytest.raises(DataError, match="data.text.column must name the text column"):
        prepare(spec)


@pytest.mark.parametrize("bad", ["", "   \t ", None])
def test_an_empty_text_at_training_time_is_refused_with_its_row(tmp_path, bad):
    path = _reviews_csv(tmp_path, n=30, extra=[(bad, "pos")])
    with pytest.raises(DataError, match=r"column 'body' has 1 missing or empty text\(s\) \(row \d+\)"):
        prepare(_spec(f"csv:{path}"))


@pytest.mark.parametrize("at", [7, 150])
def test_an_empty_text_is_named_by_its_row_in_the_file_whichever_split_it_falls_in(tmp_path, at):
    path = _reviews_csv(tmp_path, n=200)
    frame = pd.read_csv(path)
    frame.loc[at, "body"] = None
    frame.loc[2, "label"] = None  # a row without a target before it, left out
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"\(row {at + 1}\); every text"):
        prepare(_spec(f"csv:{path}"))


def test_a_nested_json_value_is_not_a_text(tmp_path):
    path = tmp_path / "nested.jsonl"
    rows = [{"body": POS[0], "label": "pos"}, {"body": NEG[0], "label": "neg"}] * 10 + [{"body": {"a": 1}, "label": "pos"}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="holds a dict, not a text"):
        prepare(_spec(f"jsonl:{path}"))


def test_wordpiece_needs_a_pretrained_model_and_stays_within_512():
    with pytest.raises(SpecError, match="data.text.tokenizer must be wordpiece for model.kind text_pretrained"):
        load_spec({"data": {"source": "builtin:reviews"}, "model": {"kind": "text_pretrained"}})
    with pytest.raises(SpecError, match="data.text.max_length must be <= 512"):
        load_spec(
            {
                "data": {"source": "builtin:reviews", "text": {"tokenizer": "wordpiece", "max_length": 600}},
                "model": {"kind": "text_pretrained"},
            }
        )
    with pytest.raises(SpecError, match="data.text.lowercase must be true for tokenizer wordpiece"):
        load_spec(
            {
                "data": {"source": "builtin:reviews", "text": {"tokenizer": "wordpiece", "lowercase": False}},
                "model": {"kind": "text_pretrained"},
            }
        )


# ---------------------------------------------------------------------------- builtin sets


def test_builtin_reviews_are_both_tables_of_modeldata():
    from trustforge.data import load_source

    raw = load_source("builtin:reviews", target=None, image_size=(32, 32), channels=3, seed=7)
    assert raw.modality == "text" and raw.text == "review" and raw.target == "score"
    assert len(raw) == 5000 and list(raw.frame.columns) == ["review", "score"]
    assert raw.frame["score"].value_counts().to_dict() == {"great": 3258, "other": 1742}


def test_generated_chinese_reviews_are_fixed_and_balanced():
    a, b = chinese_reviews(), chinese_reviews()
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2400 and 0.45 < (a["sentiment"] == "positive").mean() < 0.6
    assert a["review"].str.contains(r"[\u4e00-\u9fff]").all()
    assert a["review"].nunique() > 2000  # varied, not a handful of templates


# ---------------------------------------------------------------------------- corruptions


def test_text_corruptions_are_seeded_never_empty_and_scale_with_severity():
    frame = pd.DataFrame({"body": ["the quick brown fox jumps over the lazy dog"] * 200 + ["好"] * 5})
    once = typos(frame, 0.1, np.random.default_rng(3))
    assert once.equals(typos(frame, 0.1, np.random.default_rng(3)))
    assert (once["body"].str.strip() != "").all()
    changed = [(frame["body"] != typos(frame, r, np.random.default_rng(3))["body"]).mean() for r in (0.02, 0.05, 0.10)]
    assert changed[0] < changed[1] < changed[2]
    dropped = drop_words(frame, 0.35, np.random.default_rng(3))["body"]
    kept = dropped[:200].str.split().str.len().mean()
    assert 9 * 0.5 < kept < 9 * 0.8  # about 65 % of 9 words stay
    assert (dropped[200:] == "好").all()  # a one-word text keeps its word
    zh = drop_words(pd.DataFrame({"t": ["质量很好非常满意"] * 50}), 0.5, np.random.default_rng(0))["t"]
    assert zh.str.len().between(1, 7).all() and zh.str.len().mean() < 6  # Chinese drops characters


def test_corrupting_text_data_touches_only_its_text_column(tmp_path):
    data = prepare(_spec(f"csv:{_reviews_csv(tmp_path)}"))
    assert set(CORRUPTIONS["text"]) == {"typos", "dropped_words"}
    bad = corrupt(data.test_raw, "typos", 3, seed=1)
    assert bad.modality == "text" and bad.text == "body"
    assert bad.frame["label"].equals(data.test_raw.frame["label"])
    assert not bad.frame["body"].equals(data.test_raw.frame["body"])
