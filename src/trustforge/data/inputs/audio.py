"""Audio clips: mono waveforms, turned into standardised log-mel spectrograms (see `data._audio`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trustforge.data import _audio
from trustforge.data._attack_space import STD_EPSILONS, AttackSpace
from trustforge.data._augment import SPECTROGRAM_FIELDS, Augmentation, spectrogram_augment
from trustforge.data._duplicates import RowKeys, array_keys
from trustforge.data._profile import clip_profile
from trustforge.data._raw import RawData
from trustforge.data._schema import Schema
from trustforge.data.inputs._base import InputKind
from trustforge.data.inputs._shapes import Spectrogram
from trustforge.errors import DataError

if TYPE_CHECKING:
    from trustforge.data._encoders import Preprocessor

__all__ = ["Audio", "SPECTROGRAM_BUDGET"]

SPECTROGRAM_BUDGET = "standard deviations of each band of the log-mel spectrogram (the attack moves the spectrogram, not the waveform)"


class Audio(InputKind):
    name = "audio"
    default_model = "audio_cnn"
    # The spectrogram is the "image": a shift moves it by mel bands (a voice a little higher or
    # lower) and by frames (a word said a little earlier or later).
    image_like = True
    state_type = _audio.FrontEndState
    budget = SPECTROGRAM_BUDGET

    def infer_schema(self, raw: RawData, *, task: str, data: Any) -> tuple[Schema, RawData]:
        return _audio.infer_audio_schema(raw, task=task, audio=data.audio), raw

    def subset(self, raw: RawData, idx: np.ndarray) -> RawData:
        paths = [raw.paths[i] for i in idx] if raw.paths else []
        return RawData(
            "audio",
            raw.target,
            raw.origin,
            labels=raw.labels[idx],
            classes=raw.classes,
            paths=paths,
            waveforms=raw.waveforms[idx],
            sample_rate=raw.sample_rate,
            groups=raw.groups[idx] if raw.groups is not None else None,
        )

    def row_keys(self, raw: RawData, schema: Schema) -> RowKeys:
        return replace(array_keys(raw.waveforms, blocks="rms"), labels=raw.labels)

    def profile(self, raw: RawData, schema: Schema) -> dict[str, Any]:
        return clip_profile(raw.waveforms, raw.sample_rate)

    def training_copies(self, raw: RawData, data: Any, seed: int) -> RawData:
        """Noisy copies of the training clips, made before the front end (`data.audio.augment`)."""
        a = data.audio.augment
        return _audio.augment_clips(raw, copies=a.copies, snr_db=a.snr_db, gain_db=a.gain_db, shift=a.shift, seed=seed)

    def augment(self, pre: "Preprocessor", data: Any, *, seed: int) -> Augmentation:
        # Per batch on the spectrogram: shifts by bands and frames, SpecAugment's masks. The
        # waveform copies (`data.audio.augment`) are made before the front end (`training_copies`).
        # The spectrogram's size is the fitted front end's (None: asked before fitting, nothing to check against).
        size = tuple(_audio.front_end(pre.schema).input_shape[1:]) if pre is not None else None
        op = spectrogram_augment(data.augment, size=size)
        used = {"spectrogram": op.used} if op else {}
        w = data.audio.augment
        if w.copies:
            used["waveform"] = {"copies": w.copies, "time_shift": w.shift, "gain_db": w.gain_db, "snr_db": list(w.snr_db)}
        return Augmentation(batch=op, used=used, reads=SPECTROGRAM_FIELDS)

    def fit(self, pre: "Preprocessor", raw: RawData) -> _audio.FrontEndState:
        return _audio.fit(pre, raw)

    def encode(self, pre: "Preprocessor", raw: RawData) -> tuple[torch.Tensor, ...]:
        return _audio.encode(pre, raw)

    def shape(self, schema: Schema) -> Spectrogram:
        front = _audio.front_end(schema)
        return Spectrogram(front.to_json(), tuple(front.input_shape))

    def signature(self, pre: "Preprocessor") -> list[dict[str, Any]]:
        # Mono waveforms in [-1, 1]; the log-mel front end runs inside.
        a = _audio.front_end(pre.schema)
        return [{"name": "waveform", "datatype": "FP32", "shape": [-1, a.samples], "sample_rate": a.sample_rate}]

    def attack_spaces(self, pre: "Preprocessor") -> tuple[AttackSpace] | None:
        # The attack moves the standardised log-mel spectrogram (what the network reads), not the
        # waveform: each band within its training range, ε in standard deviations of the band.
        state = pre.input_state
        if state.low is None or state.high is None:  # a package made before the range was recorded
            return None
        band = (1, -1, 1)  # (C=1, n_mels, frames=1) broadcasts over the frames
        lo, hi = state.low.double().numpy().reshape(band), state.high.double().numpy().reshape(band)
        return (AttackSpace(lo, hi, np.ones_like(lo), budget=self.budget, epsilons=STD_EPSILONS, max_epsilon=self.max_epsilon),)

    def read_input(self, schema: Schema, source: Any) -> RawData:
        return _audio.read_audio_input(schema, source)

    def labelled(self, schema: Schema, raw: RawData) -> RawData:
        if raw.labels is None or any(label == "" for label in raw.labels):
            raise DataError(f"{raw.origin}: evaluation needs labelled clips (one sub-folder of WAV files per class)")
        return raw
