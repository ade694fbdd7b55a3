"""Small ONNX classifiers built by hand, and the numpy model they must agree with.

`reference_scores` is a linear model over NHWC pixels in [0, 1]. `linear_onnx`
writes the same model as an ONNX graph that takes its inputs the way a
deployed model might (NCHW, normalised, uint8, a fixed batch size), undoing
the format inside the graph, so that it agrees with the reference exactly
when (and only when) the verifier sends what the graph expects.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper
from onnx import numpy_helper

from fingerprinting import artifact


def weights(input_shape, num_classes, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(int(np.prod(input_shape)), num_classes)).astype(np.float32)
    # centred on mid-grey, so that the labels of random images vary with the image
    return w, (rng.normal(size=num_classes) - 0.5 * w.sum(0)).astype(np.float32)


def reference_scores(x_uint8, w, b):
    x = np.asarray(x_uint8, np.float32).reshape(len(x_uint8), -1) / 255.0
    return x @ w + b


def linear_onnx(
    path,
    w,
    b,
    input_shape_HxWxC,
    *,
    layout="nhwc",
    mean=None,
    std=None,
    uint8=False,
    batch=None,
    extra_input=False,
    rank2=False,
):
    """Writes the reference model as an ONNX file taking the inputs described."""
    h, wd, c = input_shape_HxWxC
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    dims = [batch or "N"] + ([c, h, wd] if layout == "nchw" else [h, wd, c])
    if rank2:
        dims = [batch or "N", h * wd * c]
    x_type = TensorProto.UINT8 if uint8 else TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", x_type, dims)]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, [1]))
    cur = "x"
    if uint8:  # the graph takes 0..255 and scales them itself
        nodes.append(helper.make_node("Cast", [cur], ["xf"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Div", ["xf", const("k255", 255.0)], ["x01"]))
        cur = "x01"
    if std is not None:  # undo (x - mean) / std
        shape = [1, c, 1, 1] if layout == "nchw" else [1, 1, 1, c]
        s = np.broadcast_to(np.asarray(std, np.float32), (c,)).reshape(shape)
        m = np.broadcast_to(np.asarray(mean, np.float32), (c,)).reshape(shape)
        nodes.append(helper.make_node("Mul", [cur, const("std", s)], ["xs"]))
        nodes.append(helper.make_node("Add", ["xs", const("mean", m)], ["xm"]))
        cur = "xm"
    if layout == "nchw" and not rank2:  # flatten in NHWC order, like the reference
        nodes.append(helper.make_node("Transpose", [cur], ["xt"], perm=[0, 2, 3, 1]))
        cur = "xt"
    nodes.append(helper.make_node("Flatten", [cur], ["flat"], axis=1))
    nodes.append(helper.make_node("MatMul", ["flat", const("w", w)], ["mm"]))
    nodes.append(helper.make_node("Add", ["mm", const("b", b)], ["scores"]))
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch or "N", len(b)])]
    graph = helper.make_graph(nodes, "linear", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def fingerprint_of(w, b, input_shape, num_classes, n=30, decoys=20, seed=0):
    """A fingerprint whose keys are the reference model's labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n + decoys, *input_shape), dtype=np.uint8)
    labels = reference_scores(x, w, b).argmax(-1).astype(np.int32)
    return artifact.Fingerprint(
        x=x[:n],
        original=x[:n],
        keys=labels[:n],
        truth=labels[:n],
        conferrability=np.ones(n, np.float32),
        meta={"num_classes": num_classes, "input_shape": list(input_shape), "theta": 0.75},
        decoy_x=x[n:],
        decoy_truth=labels[n:],
    )
