"""The linear model of tests/_linear.py as an MLServer model, for
tests/test_interop.py. MLServer imports `LinearModel` by name from each
model's settings, whose `parameters.extra` say which weights (`seed`) and what
to answer (`scores`: probabilities [N, K] as FP32, `labels`: labels [N] as
INT64). Only the MLServer process imports this module."""

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest
from mlserver.types import InferenceResponse

import _linear


class LinearModel(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra
        self._seed, self._answer = int(extra["seed"]), extra["answer"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        z = _linear.logits(NumpyCodec.decode_input(payload.inputs[0]), self._seed)
        if self._answer == "scores":
            e = np.exp(z - z.max(-1, keepdims=True))
            output = NumpyCodec.encode_output(
                "probabilities", (e / e.sum(-1, keepdims=True)).astype(np.float32)
            )
        else:
            output = NumpyCodec.encode_output("label", z.argmax(-1).astype(np.int64))
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id, outputs=[output]
        )
