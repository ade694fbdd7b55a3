"""Models hosted by MLServer in tests, imported by name from each model's
settings (only the MLServer process imports this module):
- `LinearModel`, the linear model of tests/_linear.py, for tests/test_interop.py:
  `parameters.extra` say which weights (`seed`) and what to answer (`scores`:
  probabilities [N, K] as FP32, `labels`: labels [N] as INT64);
- `OnnxModel`, an ONNX file run by onnxruntime (`parameters.extra.path`), for
  the end-to-end example of tests/test_end_to_end.py."""

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


class OnnxModel(MLModel):
    """An ONNX file (`parameters.extra.path`) run by onnxruntime, answering scores:
    a suspect as a model shop might deploy it."""

    async def load(self) -> bool:
        import onnxruntime  # pylint: disable=g-import-not-at-top

        self._session = onnxruntime.InferenceSession(
            self.settings.parameters.extra["path"], providers=["CPUExecutionProvider"]
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        (scores,) = self._session.run(None, {self._session.get_inputs()[0].name: x})
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("scores", scores.astype(np.float32))],
        )
