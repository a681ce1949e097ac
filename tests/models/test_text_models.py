"""Text models: padding never matters, each kind learns, packages rebuild them exactly,
a frozen encoder's package checks its base weights, token attributions add up."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import trustforge
from trustforge.errors import IntegrityError
from trustforge.models.bag import BagOfEmbeddings
from trustforge.models.rnn import RNN
from trustforge.models.text_pretrained import PretrainedTextClassifier
from trustforge.models.transformer import TransformerEncoder
from trustforge.package import Model
from trustforge.settings import Settings

# Small but real: 600 of the generated Chinese reviews, read character by character (majority 0.52).
QUICK = {"max_epochs": 6, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 0.003}, "early_stopping": None}
FAST_EVIDENCE = {"speed": False, "corruptions": False, "explain": False, "robustness": False}
TEXTS = pd.DataFrame({"review": ["质量很好，物流很快，非常满意！", "做工粗糙，客服不理人，再也不买了。", "价格一点也不贵，推荐购买"]})


def _padded(ids: torch.Tensor, extra: int) -> torch.Tensor:
    return torch.cat([ids, torch.zeros(len(ids), extra, dtype=ids.dtype)], dim=1)


def _ids() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 50, (4, 12), generator=g)
    for row, n in enumerate((12, 7, 3, 1)):  # texts of different lengths, padding last
        ids[row, n:] = 0
    return ids


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_transformer_ignores_padding(pooling):
    torch.manual_seed(0)
    model = TransformerEncoder(3, vocab_size=50, d_model=16, nhead=2, num_layers=2, dim_feedforward=32, pooling=pooling).eval()
    ids = _ids()
    out = model(ids)
    assert out.shape == (4, 3)
    torch.testing.assert_close(model(_padded(ids, 20)), out)  # more padding, same outputs
    torch.testing.assert_close(model(ids[2:3]), out[2:3])  # alone in its batch, same output
    torch.testing.assert_close(model(_padded(ids, 5), _padded(ids, 5) != 0), out)  # an explicit mask


def test_transformer_without_positions_reads_a_bag_of_tokens():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 9, 13, 21, 30]])
    shuffled = ids[:, [3, 0, 4, 2, 1]]
    free = TransformerEncoder(2, vocab_size=50, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, positions="none").eval()
    torch.testing.assert_close(free(shuffled), free(ids))  # order-free: the same words, the same output
    ordered = TransformerEncoder(2, vocab_size=50, d_model=16, nhead=2, num_layers=1, dim_feedforward=32).eval()
    assert not torch.allclose(ordered(shuffled), ordered(ids))  # sinusoidal positions: order matters


def test_bag_of_embeddings_is_the_mean_embedding_under_the_head():
    torch.manual_seed(0)
    model = BagOfEmbeddings(3, vocab_size=50, embedding_dim=8, hidden=[], word_dropout=0.5).eval()  # no blanking in eval
    ids = _ids()
    out = model(ids)
    torch.testing.assert_close(model(_padded(ids, 9)), out)  # padding is not counted
    expected = model.net(model.token_embedding(ids[1:2, :7]).mean(dim=1))
    torch.testing.assert_close(out[1:2], expected)  # linear head over the mean of the 7 real tokens
    torch.testing.assert_close(model(ids[:, [2, 0, 1] + list(range(3, 12))][:1]), out[:1])  # order-free


def test_transformer_reads_float_sequences():
    model = TransformerEncoder(2, n_features=5, d_model=16, nhead=4, num_layers=1, dim_feedforward=32).eval()
    x = torch.randn(3, 9, 5)
    assert model(x).shape == (3, 2)
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        TransformerEncoder(2, vocab_size=10, n_features=5)


@pytest.mark.parametrize(
    "cell, bidirectional, pooling", [("gru", True, "last"), ("lstm", False, "last"), ("gru", True, "max"), ("lstm", True, "mean")]
)
def test_rnn_over_tokens_ignores_padding(cell, bidirectional, pooling):
    torch.manual_seed(0)
    model = RNN(8, 2, cell=cell, hidden_size=6, bidirectional=bidirectional, pooling=pooling, vocab_size=50).eval()
    ids = _ids()
    out = model(ids)
    torch.testing.assert_close(model(_padded(ids, 20)), out)
    torch.testing.assert_close(model(ids[1:2, :7]), out[1:2])  # the unpadded text alone: its own last step


def test_frozen_encoder_keeps_no_weights_in_its_state_and_checks_its_base():
    torch.manual_seed(0)
    model = PretrainedTextClassifier(2, freeze=True, hidden=[8])
    state = model.state_dict()
    assert not [k for k in state if k.startswith("encoder.")]
    assert set(state) == {"base_sha256", "head.0.weight", "head.0.bias", "head.3.weight", "head.3.bias"}
    assert all(not p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert not model.encoder.training and model.head.training  # no dropout in a frozen encoder

    ids = torch.tensor([[101, 2023, 2003, 2204, 102, 0], [101, 6659, 102, 0, 0, 0]])
    other = PretrainedTextClassifier(2, freeze=True, hidden=[8]).eval()
    other.load_state_dict(state, strict=True)
    torch.testing.assert_close(other(ids), model.eval()(ids))

    tampered = dict(state)
    tampered["base_sha256"] = state["base_sha256"].clone()
    tampered["base_sha256"][0] ^= 1
    with pytest.raises(IntegrityError, match="is not the base model this head was trained on"):
        other.load_state_dict(tampered, strict=True)


def test_a_frozen_encoder_encodes_each_text_once_and_only_where_nothing_watches_it(monkeypatch):
    """The pooled vector of a text seen before comes from the cache (whatever its padding), equal to
    a fresh encoding; a new text (an augmented copy) is encoded; hooks on the encoder (attributions),
    gradients in eval mode, and a fine-tuned encoder always run it."""
    torch.manual_seed(0)
    ids = torch.tensor([[101, 2023, 2003, 2204, 102, 0], [101, 6659, 102, 0, 0, 0]])
    loaded = PretrainedTextClassifier(2, freeze=True, hidden=[8]).eval()  # as a package loads it to predict or serve
    with torch.no_grad():
        loaded(ids)
    assert loaded._pooled == {}  # never trained here: it keeps no text it was asked about
    model = PretrainedTextClassifier(2, freeze=True, hidden=[8]).train().eval()
    with torch.no_grad():
        fresh = model._encode(ids, None)
    encoded: list[int] = []
    real = model._encode
    monkeypatch.setattr(model, "_encode", lambda x, m: (encoded.append(len(x)), real(x, m))[1])
    with torch.no_grad():
        first = model(ids)
        again = model(_padded(ids, 3)[[1, 0]])  # the same texts, padded longer, in another order
        augmented = model(torch.tensor([[101, 2023, 2003, 6659, 102]]))  # one word piece changed: a new text
    assert encoded == [2, 1]
    torch.testing.assert_close(again, first[[1, 0]])
    torch.testing.assert_close(first, model.head(fresh), rtol=0, atol=1e-6)
    model.train()
    model(ids).sum().backward()  # training reads the cache too; the head still learns
    assert encoded == [2, 1] and model.head[0].weight.grad is not None

    model.eval()
    seen = []
    handle = model.token_embedding.register_forward_hook(lambda *a: seen.append(1))
    with torch.no_grad():
        model(ids)
    handle.remove()
    model(ids)  # eval with gradients on (Captum's integrated gradients): along the encoder
    assert seen == [1] and encoded == [2, 1, 2, 2]
    assert augmented.shape == (1, 2)

    tuned = PretrainedTextClassifier(2, freeze=False).eval()
    with torch.no_grad():
        tuned(ids)
    assert tuned._pooled == {}


def test_fine_tuned_encoder_keeps_every_weight():
    model = PretrainedTextClassifier(2, freeze=False)
    keys = set(model.state_dict())
    assert "encoder.embeddings.word_embeddings.weight" in keys and "head.0.weight" in keys
    assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------------------- learning, packaging


KINDS = {
    "transformer": {"kind": "transformer", "d_model": 32, "nhead": 4, "num_layers": 1, "dim_feedforward": 64},
    "rnn": {"kind": "rnn", "cell": "gru", "hidden_size": 16, "embedding_dim": 16, "bidirectional": True, "pooling": "max"},
}


@pytest.fixture(scope="module")
def chinese(tmp_path_factory):
    """The data section of a spec over 600 generated Chinese reviews, and a workspace for the module."""
    from trustforge.data._text_sets import chinese_reviews

    folder = tmp_path_factory.mktemp("zh")
    chinese_reviews().iloc[:600].to_csv(folder / "zh.csv", index=False)
    data = {
        "source": f"csv:{folder / 'zh.csv'}",
        "target": "sentiment",
        "text": {"column": "review", "tokenizer": "char", "max_length": 32},
    }
    return data, Settings.from_env(home=folder / "ws")


def _train(kind, chinese):
    data, settings = chinese
    spec = {"name": f"zh-{kind}", "data": data, "model": KINDS[kind], "train": QUICK, "evaluate": FAST_EVIDENCE}
    return trustforge.run(spec, settings=settings, progress=False, register=False)


@pytest.fixture(scope="module")
def transformer_run(chinese):
    return _train("transformer", chinese)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_text_model_learns_and_its_package_predicts_the_same(kind, chinese, transformer_run):
    result = transformer_run if kind == "transformer" else _train(kind, chinese)
    assert result.metrics["accuracy"] > 0.72, result.metrics  # majority class: 0.52
    model = result.load_model()
    before = model.predict(TEXTS)
    again = Model.load(result.package, keyring=result.keyring).predict(TEXTS)
    pd.testing.assert_frame_equal(before, again)
    assert list(before["prediction"]) == ["positive", "negative", "positive"]
    manifest = json.loads((result.package / "manifest.json").read_text())
    assert manifest["signature"]["inputs"] == [
        {"name": "review", "kind": "text", "datatype": "BYTES", "shape": [-1], "tokenizer": "char", "max_length": 32}
    ]
    assert manifest["preprocessing"]["vocabularies"]["review"][:2] == ["<pad>", "<unk>"]


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    """The data section of a spec over 160 English product reviews (the encoder's language)."""
    from trustforge.data._text_sets import _reviews

    folder = tmp_path_factory.mktemp("en")
    _reviews().sample(n=160, random_state=0).to_csv(folder / "reviews.csv", index=False)
    data = {
        "source": f"csv:{folder / 'reviews.csv'}",
        "target": "score",
        "text": {"column": "review", "tokenizer": "wordpiece", "max_length": 40},
    }
    return data, Settings.from_env(home=folder / "ws")


def _minilm(english, freeze: bool, epochs: int, lr: float):
    data, settings = english
    spec = {
        "name": f"minilm-{'frozen' if freeze else 'tuned'}",
        "data": data,
        "model": {"kind": "text_pretrained", "freeze": freeze},
        "train": {"max_epochs": epochs, "batch_size": 16, "optimizer": {"name": "adamw", "lr": lr}, "early_stopping": None},
        "evaluate": FAST_EVIDENCE,
    }
    return trustforge.run(spec, settings=settings, progress=False, register=False)


ENGLISH = pd.DataFrame(
    {"review": ["absolutely delicious, my favourite snack, will buy again", "stale, tasteless and overpriced. very disappointed"]}
)


def _weights(package) -> set[str]:
    from safetensors.torch import load_file

    return set(load_file(str(package / "weights.safetensors")))


@pytest.mark.slow  # builds the 22.7M-parameter encoder three times (about 30 s on two cores)
def test_the_frozen_encoder_learns_a_head_and_packages_only_the_head(english):
    result = _minilm(english, freeze=True, epochs=4, lr=0.003)
    assert not [k for k in _weights(result.package) if k.startswith("encoder.")]
    assert (result.package / "weights.safetensors").stat().st_size < 100_000  # 22.7M encoder weights stay out
    model = result.load_model()
    predicted = model.predict(ENGLISH)
    pd.testing.assert_frame_equal(predicted, Model.load(result.package, keyring=result.keyring).predict(ENGLISH))
    assert predicted["proba_great"][0] > predicted["proba_great"][1]  # delighted reads as `great`, disappointed not


@pytest.mark.slow  # builds the 22.7M-parameter encoder three times (about 30 s on two cores)
def test_the_fine_tuned_encoder_packages_every_weight(english):
    result = _minilm(english, freeze=False, epochs=1, lr=0.0001)
    assert "encoder.embeddings.word_embeddings.weight" in _weights(result.package)
    assert (result.package / "weights.safetensors").stat().st_size > 80_000_000
    predicted = result.load_model().predict(ENGLISH)
    pd.testing.assert_frame_equal(predicted, Model.load(result.package, keyring=result.keyring).predict(ENGLISH))


# ---------------------------------------------------------------------------- attributions


def test_token_attributions_add_up_and_point_at_sentiment(transformer_run):
    from trustforge.evaluate._text import explain_text_model

    model = transformer_run.load_model()
    raw = model.read_input(pd.DataFrame({"review": ["非常满意，推荐购买", "非常失望，再也不买了"]}))
    ids = model.preprocessor.encode_inputs(raw)[0]
    info = explain_text_model(model, ids, torch.tensor([1, 0]), per_class=1, seed=0)
    assert info["completeness_gap"] < 1e-2
    for e in info["examples"]:
        x = ids[e["index"] : e["index"] + 1]
        mask = x != 0
        with torch.no_grad():
            diff = model.module(x, mask)[0, e["predicted"]] - model.module(torch.zeros_like(x), mask)[0, e["predicted"]]
        assert sum(e["attributions"]) == pytest.approx(float(diff), abs=1e-2)  # completeness
        assert len(e["tokens"]) == len(e["attributions"]) == int(mask.sum())
    top = {e["predicted"]: e["top"][0][0] for e in info["examples"]}
    assert top[1] in "满意推荐购买" and top[0] in "失望再也不买了"  # the words that carry the sentiment
    assert {r["class"] for r in info["top_tokens"]} == {"negative", "positive"}
