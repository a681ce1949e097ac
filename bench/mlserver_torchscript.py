"""A tiny MLServer runtime for bench/serve_load.py: one TorchScript network, one FP32 input.

MLServer ships no TorchScript runtime, so the benchmark gives it this one (named by
`implementation` in the model-settings.json it writes). It runs inside .venv-mlserver, never in
TrustForge's venv. `load` reads the traced file named by `parameters.uri` with torch at one
thread (as TrustForge's worker); `predict` runs the network on the request's one input, which
MLServer's adaptive batching has already stacked from several requests, and returns the class
probabilities as one FP32 output; MLServer splits the batch back per request.
"""

from __future__ import annotations

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class TorchScriptRuntime(MLModel):
    async def load(self) -> bool:
        torch.set_num_threads(1)
        self._module = torch.jit.load(await get_model_uri(self._settings), map_location="cpu").eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = torch.from_numpy(NumpyCodec.decode_input(payload.inputs[0]).astype("float32", copy=False))
        with torch.inference_mode():
            proba = self._module(x).numpy()
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output("probabilities", proba)],
        )
