"""An MLP trained by this tool, exported to ONNX the way a PyTorch owner's
model usually arrives: channels first, taking pixels normalised by
(x - 0.5) / 0.25 (the MLP's own first step, so the graph starts after it)."""

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper
from onnx import numpy_helper

MEAN, STD = 0.5, 0.25  # fingerprinting.models.small.MLP's normalisation


def mlp_to_onnx(params, input_shape_HxWxC, path):
    """Writes the MLP with `params` (one member's, unstacked) as an NCHW graph."""
    h, w, c = input_shape_HxWxC
    layers = sorted(k for k in params if k.startswith("Dense_")) + ["head"]
    nodes = [
        helper.make_node("Transpose", ["input"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["nhwc"], ["a0"], axis=1),
    ]
    inits = []
    for i, name in enumerate(layers):
        kernel = np.asarray(params[name]["kernel"], np.float32)
        bias = np.asarray(params[name]["bias"], np.float32)
        inits += [numpy_helper.from_array(kernel, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"m{i}"]))
        last = name == "head"
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], ["logits" if last else f"z{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"a{i + 1}"]))
    k = np.asarray(params["head"]["bias"]).shape[0]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)
