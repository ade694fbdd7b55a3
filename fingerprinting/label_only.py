"""A source the defender can only query: `models.source_api=SPEC [flags]`.

When the model to protect is not at hand as weights (a vendor's model, a
model in another framework behind an API), the defender names it like a
suspect: a prediction URL, `package.module:function`, an ONNX file or a
checkpoint, followed by the input-format flags it needs
(`"model.onnx --layout=nchw --mean=0.5 --std=0.25"`). Then:

- its answers are all the defender has: every surrogate (the defender's and,
  in the evaluation, the thieves') learns its top-1 labels;
- C-BIM runs on the training surrogates and references alone, without the
  source's gradients;
- the fingerprint's keys are its own answers on the final inputs.

Every answer is kept in WORKDIR/models/source-api/ (keyed by the SHA-256 of
the queried pixels), so that a resumed run asks nothing twice: queries to a
remote API cost money and time, and may be noticed.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np

from fingerprinting import ensemble
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import input_format
from fingerprinting import progress
from fingerprinting import suspects
from fingerprinting import zoo as zoo_lib

GROUP = "source-api"


def is_label_only(config) -> bool:
    return bool(config.models.get("source_api", "").strip())


def parse(config) -> tuple[str, suspects.InputFormat]:
    """The spec and input format `models.source_api` names."""
    entry = input_format.parse_line(config.models.source_api.strip(), "models.source_api")
    return entry.spec, input_format.InputFormat.from_flags(entry.flags)


class AnswerCache:
    """The source's labels for each batch of pixels ever sent, on disk."""

    def __init__(self, directory: str):
        self.directory = directory

    def _path(self, x_uint8: np.ndarray) -> str:
        h = hashlib.sha256(str(x_uint8.shape).encode() + x_uint8.tobytes()).hexdigest()
        return os.path.join(self.directory, f"answers-{h[:32]}.npy")

    def get(self, x_uint8: np.ndarray) -> np.ndarray | None:
        path = self._path(x_uint8)
        if not os.path.exists(path):
            return None
        labels = np.load(path, allow_pickle=False)
        return labels if labels.shape == (len(x_uint8),) else None

    def put(self, x_uint8: np.ndarray, labels: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(labels, np.int64), allow_pickle=False)
        files.write_bytes_atomic(self._path(x_uint8), buf.getvalue())


def connect(config, splits) -> tuple[str, suspects.Suspect] | None:
    """The suspect that `models.source_api` names, checked against the data as far
    as it declares its shapes (an ONNX file does), before anything is written or
    asked; None for a white-box source."""
    if not is_label_only(config):
        return None
    spec, fmt = parse(config)
    suspect = suspects.load_suspect(spec, pixels=fmt)
    suspects.check_fits(suspect, splits.num_classes, splits.input_shape, "the data")
    suspect.num_classes = splits.num_classes  # answers out of range are refused
    return spec, suspect


def open_source(api, workdir: str, splits) -> zoo_lib.LabelOnlyGroup | None:
    """The label-only source `connect` gave (None for a white-box one), its test
    accuracy measured (from the cache when a run already asked)."""
    if api is None:
        return None
    spec, suspect = api
    directory = os.path.join(workdir, "models", GROUP)
    os.makedirs(directory, exist_ok=True)
    cache = AnswerCache(directory)

    def labels_fn(x_float: np.ndarray) -> np.ndarray:
        x = fp_lib.to_uint8(x_float)
        labels = cache.get(x)
        if labels is None:
            labels = suspect.predict(x)
            cache.put(x, labels)
        return labels

    test = splits.test
    acc = float((labels_fn(test.x) == np.asarray(test.y)).mean())
    files.write_json_atomic(
        os.path.join(directory, "result.json"),
        {
            "test_accuracy": [acc],
            "kind": "source",
            "architecture": spec,
            "access": "label_only",
            "num_classes": splits.num_classes,
            "input_shape": list(splits.input_shape),
        },
    )
    progress.log(f"source: {spec}, label-only, test accuracy {acc:.3f}")
    group = ensemble.Group(GROUP, spec, None, 1)
    return zoo_lib.LabelOnlyGroup("source", group, None, np.asarray([acc]), labels_fn=labels_fn)
