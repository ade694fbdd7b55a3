"""The model owner's own model as the source: `models.source=package.module:function`
or `models.source="model.onnx [--layout=nchw --mean=M --std=S --pixels=float]"`.

The function takes no argument and returns `(apply_fn, variables)`:
`apply_fn(variables, x)` maps a batch of images, float32 NHWC in [0, 1] (the
data set's shape), to logits [N, K]; `variables` is any pytree of arrays (a
Flax model's variables, say). Any JAX function of that shape will do:

    def source():
        model = MyNet(num_classes=10)
        variables = restore_my_checkpoint("/models/mynet")
        return (lambda v, x: model.apply(v, x, train=False)), variables

An ONNX file (what `torch.onnx.export` writes) becomes a JAX function by
jaxonnxruntime, which runs the graph's operators as jax.numpy code: jittable
and differentiable. The flags say what the graph takes, as for suspects
(`input_format`); the images are put in that form inside the function, so
gradients flow from the graph's first output (taken as logits) back to the
pixels. A graph taking uint8 pixels has no gradient: query it as a
label-only source instead (`models.source_api`).

Either way the source is then white box, as one trained here: it joins C-BIM's
ensemble, its gradients guide the attack, and its labels are the keys. It is
never trained or written by this tool; a work directory records the SHA-256
of its parameters and refuses a function that later returns other weights.
Removal attacks retrain or re-initialise the source's architecture, which a
function does not give, so they need a built-in architecture.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from jaxonnxruntime import call_onnx

from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import input_format


class SourceError(errors.ConfigError):
    """A source function that cannot be imported, or does not fit the data."""


def is_onnx(spec: str) -> bool:
    return bool(spec.split()) and spec.split()[0].lower().endswith(".onnx")


def is_external(spec: str) -> bool:
    """`package.module:function` (the only spec with a ':' among source names)
    or an ONNX file with its input-format flags."""
    if is_onnx(spec):
        return True
    head, sep, attr = spec.partition(":")
    return bool(sep) and attr.isidentifier() and all(p.isidentifier() for p in head.split("."))


class ExternalModel:
    """The user's apply function behind the interface of this tool's models
    (`apply(variables, x, train=..., mutable=...)`, variables under 'params').
    Hashed by identity, so that jit treats it as one static model."""

    def __init__(self, spec: str, apply_fn):
        self.spec, self.apply_fn = spec, apply_fn

    def apply(self, variables, x, train: bool = False, mutable=None):
        del train  # the user's function is called in inference mode only
        logits = self.apply_fn(variables["params"], x)
        return (logits, {}) if mutable else logits

    def init(self, *args, **kwargs):
        raise SourceError(
            f"{self.spec} gives no initializer: training a fresh model of the source's "
            "architecture needs a built-in one"
        )


def _load_onnx(spec: str) -> tuple[Any, Any]:
    """(apply_fn, variables) of an ONNX graph, in JAX."""
    entry = input_format.parse_line(spec, "models.source")
    fmt = input_format.InputFormat.from_flags(entry.flags)
    try:
        graph = onnx.load(entry.spec)
    except Exception as e:  # noqa: BLE001 (protobuf raises its own kinds on garbage)
        raise SourceError(
            f"models.source={entry.spec}: not an ONNX model ({type(e).__name__})"
        ) from None
    weights = {i.name for i in graph.graph.initializer}  # older exports list them as inputs
    inputs = [i for i in graph.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise SourceError(
            f"models.source={entry.spec}: the graph takes {len(inputs)} inputs; a classifier "
            "takes one batch of images"
        )
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    elem = inputs[0].type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise SourceError(
            f"models.source={entry.spec}: its input is not float32 pixels, so it has no "
            "gradient; give it as models.source_api (label-only) instead"
        )
    if len(dims) != 4 or 0 in dims[1:]:
        raise SourceError(
            f"models.source={entry.spec}: its input must be a batch of images of fixed "
            f"size (rank 4, static channels, height and width); it declares {dims}"
        )
    example = np.zeros([1, *dims[1:]], np.float32)
    try:
        with jax.numpy_rank_promotion("allow"):  # ONNX broadcasts as numpy does
            fn, params = call_onnx.call_onnx_model(graph, [example])
    except Exception as e:  # noqa: BLE001 (an operator the converter lacks, say)
        raise SourceError(
            f"models.source={entry.spec}: jaxonnxruntime cannot run it as JAX "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
            "give it as models.source_api (label-only) instead"
        ) from None

    def apply_fn(variables, x):
        with jax.numpy_rank_promotion("allow"):
            return fn(variables, [fmt.prepare_float(x)])[0]

    return apply_fn, params


@functools.lru_cache(maxsize=4)
def _load(spec: str) -> tuple[Any, Any]:
    if is_onnx(spec):
        return _load_onnx(spec)
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SourceError(f"models.source={spec}: cannot import it ({e})") from None
    try:
        apply_fn, variables = fn()
    except (TypeError, ValueError) as e:
        raise SourceError(
            f"models.source={spec}: expected a function of no argument returning "
            f"(apply_fn, variables) ({e})"
        ) from None
    if not callable(apply_fn):
        raise SourceError(f"models.source={spec}: its apply_fn is not callable")
    return apply_fn, variables


def model(spec: str) -> ExternalModel:
    return ExternalModel(spec, _load(spec)[0])


def stacked_variables(spec: str) -> dict:
    """The source's variables as a one-member group: {'params': ...} with a member axis."""
    variables = jax.tree_util.tree_map(jnp.asarray, _load(spec)[1])
    return ensemble.stack([{"params": variables}])


def check_source(spec: str, input_shape, num_classes: int) -> None:
    """Loads the source a spec names and refuses one that does not fit the data."""
    check_fits(model(spec), stacked_variables(spec), input_shape, num_classes)


def check_fits(m: ExternalModel, variables: dict, input_shape, num_classes: int) -> None:
    """Refuses a source that does not take the data's images or give its classes,
    by tracing it on one image (no computation)."""
    x = jax.ShapeDtypeStruct((2, *input_shape), jnp.float32)
    try:
        out = jax.eval_shape(lambda v, xb: m.apply(ensemble.member(v, 0), xb), variables, x)
    except Exception as e:  # noqa: BLE001 (any failure of user code on the data's shape)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SourceError(
            f"models.source={m.spec} fails on images of shape {tuple(input_shape)} "
            f"({type(e).__name__}: {first[:200]})"
        ) from None
    if getattr(out, "shape", None) != (2, num_classes):
        raise SourceError(
            f"models.source={m.spec} gives outputs of shape {getattr(out, 'shape', out)} for "
            f"2 images; the data has {num_classes} classes, so expected (2, {num_classes})"
        )
