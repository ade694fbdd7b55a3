"""Tests for `fingerprinting.models`: the model contract every other module relies on.

On a 2-core CPU, compile time dominates, so: each model is *run* in one compiled
function (ResNet-20 and the CPU models at full size; DenseNet, VGG and
MobileNetV2 as shallow configurations of the same module classes); the full
paper architectures are only traced with `jax.eval_shape`; compiles use XLA
opt level 0; and the run tests take their variables from `_filled_variables`
(the exact tree of `model.init`, obtained with eval_shape, with He-scaled host
random values), because compiling `init` (one truncated-normal kernel per
parameter) costs several times more than compiling the forward passes. The real
`init` is exercised separately (determinism, dtypes, finiteness).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fingerprinting.models import (
    ARCHITECTURES,
    CPU_ARCHITECTURES,
    PAPER_ARCHITECTURES,
    get_model,
)
from fingerprinting.models.densenet import DenseNet
from fingerprinting.models.mobilenet import MobileNetV2
from fingerprinting.models.vgg import VGG

NUM_CLASSES = 7  # Not 10, so a head hard-wired to 10 classes would be caught.
BATCH = 2
SMALL, MNIST, CIFAR, ODD = (8, 8, 1), (28, 28, 1), (32, 32, 3), (9, 13, 2)

# Stated in the module docstrings (10 classes, 32x32x3 input); allowed +-2%.
STATED_PARAM_COUNTS = {
    "densenet": 769_162,
    "vgg16": 14_724_042,
    "vgg19": 20_035_018,
    "mobilenetv2": 2_236_682,
}
# Width of the representation feeding `head`, where it does not depend on input size.
HEAD_IN_FEATURES = {
    "resnet20": 64,
    "resnet56": 64,
    "densenet": 342,
    "vgg16": 512,
    "vgg19": 512,
    "mobilenetv2": 1280,
    "cnn_small": 128,
    "cnn_medium": 64,
    "cnn_pool": 64,
    "mlp": 256,
}
BATCHNORM_FREE = {"cnn_small", "cnn_wide", "cnn_pool", "mlp"}
# Their parameter shapes depend on the input size, so they are re-initialised per shape.
FLATTENING = {"cnn_small", "cnn_wide", "cnn_pool", "mlp"}

# Models executed for real: (constructor, input shapes). The reduced variants
# keep every code path of their family (transitions, 5 pools on 8x8, stride-2
# skipping, inverted residuals with and without expansion / residual).
REAL_MODELS = {
    "resnet20": (lambda: get_model("resnet20", NUM_CLASSES), (CIFAR, SMALL)),
    "cnn_small": (lambda: get_model("cnn_small", NUM_CLASSES), (SMALL, MNIST, CIFAR, ODD)),
    "cnn_medium": (lambda: get_model("cnn_medium", NUM_CLASSES), (SMALL, MNIST, CIFAR, ODD)),
    "cnn_wide": (lambda: get_model("cnn_wide", NUM_CLASSES), (SMALL, MNIST, CIFAR)),
    "cnn_pool": (lambda: get_model("cnn_pool", NUM_CLASSES), (SMALL, MNIST, CIFAR, ODD)),
    "mlp": (lambda: get_model("mlp", NUM_CLASSES), (SMALL, MNIST, CIFAR)),
    "densenet_depth10": (lambda: DenseNet(NUM_CLASSES, depth=10), (SMALL, MNIST)),
    "vgg_5pool": (
        lambda: VGG(NUM_CLASSES, config=(16, "M", 16, "M", 32, "M", 32, "M", 32, "M")),
        (SMALL, MNIST),
    ),
    "mobilenetv2_tiny": (
        lambda: MobileNetV2(
            NUM_CLASSES,
            width_multiplier=0.25,
            last_features=64,
            block_config=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 1, 2)),
        ),
        (SMALL, MNIST),
    ),
}
# Full architectures that are only traced (ResNet-20 is also run for real).
ABSTRACT_MODELS = PAPER_ARCHITECTURES
ABSTRACT_EXTRA_SHAPES = ((8, 8, 3), (28, 28, 3))

# Opt level 0 roughly halves XLA:CPU compile time; these tests check shapes,
# finiteness and exact identities, not speed.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _key(seed: int = 0) -> jax.Array:
    return jax.random.key(seed)


def _inputs(shape, seed: int = 0) -> jnp.ndarray:
    return jax.random.uniform(jax.random.key(seed), (BATCH, *shape), jnp.float32)


def _filled_variables(model, shape, seed: int = 0) -> dict:
    """`model.init`'s variable tree for `shape`, filled with cheap He-scaled values."""
    x = jax.ShapeDtypeStruct((BATCH, *shape), jnp.float32)
    abstract = jax.eval_shape(model.init, _key(), x)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):  # BatchNorm gamma / running variance.
            return np.ones(leaf.shape, leaf.dtype)
        if name in ("bias", "mean"):
            return np.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract)


def _compile_and_call(fn, *args):
    lowered = jax.jit(fn).lower(*args)
    try:
        compiled = lowered.compile(compiler_options=_FAST_COMPILE)
    except Exception:  # Option names are XLA-version specific; speed is optional.
        compiled = lowered.compile()
    return jax.device_get(compiled(*args))


@functools.cache
def _real_results(label: str) -> dict:
    """Everything the tests need from one model, from a single compilation."""
    make, shapes = REAL_MODELS[label]
    model = make()
    main_shape = shapes[0]
    variables = {main_shape: _filled_variables(model, main_shape)}
    for shape in shapes[1:]:
        reusable = label not in FLATTENING and shape[-1] == main_shape[-1]
        variables[shape] = variables[main_shape] if reusable else _filled_variables(model, shape)
    # jit arguments need string dict keys to be pytrees with a stable order.
    variables_by_name = {str(shape): v for shape, v in variables.items()}

    def run(variables_by_name, key):
        main = variables_by_name[str(main_shape)]
        x = jax.random.uniform(jax.random.fold_in(key, 1), (BATCH, *main_shape))
        # Eval mode is per-example, so one batch carries both x and 0.5 * x.
        both = model.apply(main, jnp.concatenate([x, 0.5 * x]))
        out = {
            "logits": both[:BATCH],
            "half_scale_logits": both[BATCH:],
            "identity_norm_logits": model.clone(pixel_mean=0.0, pixel_std=1.0).apply(
                main, (x - 0.5) / 0.25
            ),
            "eval": {str(main_shape): both[:BATCH]},
        }
        out["train_logits"], out["updates"] = model.apply(
            main, x, train=True, mutable=["batch_stats"]
        )
        for shape in shapes[1:]:
            xs = jax.random.uniform(jax.random.fold_in(key, 2), (BATCH, *shape))
            out["eval"][str(shape)] = model.apply(variables_by_name[str(shape)], xs)
        return out

    results = _compile_and_call(run, variables_by_name, _key())
    return {"model": model, "variables": variables[main_shape], **results}


@functools.cache
def _abstract_results(name: str) -> dict:
    """Traced (not compiled) full paper model. 3-channel inputs throughout, so
    one set of parameters serves all sizes (global pooling); channel handling
    is covered by the real runs."""
    model = get_model(name, NUM_CLASSES)

    def run(key):
        logits, variables = model.init_with_output(key, jnp.zeros((BATCH, *CIFAR)))
        evals = {
            shape: model.apply(variables, jnp.zeros((BATCH, *shape)))
            for shape in ABSTRACT_EXTRA_SHAPES
        }
        return {"variables": variables, "eval": {CIFAR: logits, **evals}}

    return jax.eval_shape(run, _key())


def _num_params(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def test_registry_names():
    assert ARCHITECTURES == PAPER_ARCHITECTURES + CPU_ARCHITECTURES
    assert PAPER_ARCHITECTURES == (
        "resnet20",
        "resnet56",
        "densenet",
        "vgg16",
        "vgg19",
        "mobilenetv2",
    )
    assert set(CPU_ARCHITECTURES) == {"cnn_small", "cnn_medium", "cnn_wide", "cnn_pool", "mlp"}
    assert len(set(ARCHITECTURES)) == len(ARCHITECTURES)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        get_model("resnet1000", NUM_CLASSES)
    for name in ARCHITECTURES:
        assert name in str(err.value)


def test_kwargs_override_attributes():
    model = get_model("resnet20", NUM_CLASSES, dtype=jnp.bfloat16, pixel_std=0.5)
    assert (model.dtype, model.pixel_std, model.depth) == (jnp.bfloat16, 0.5, 20)


@pytest.mark.parametrize("label", REAL_MODELS)
def test_real_eval_logits(label):
    results = _real_results(label)
    assert set(results["eval"]) == {str(shape) for shape in REAL_MODELS[label][1]}
    for logits in results["eval"].values():
        chex.assert_shape(logits, (BATCH, NUM_CLASSES))
        chex.assert_type(logits, jnp.float32)
        chex.assert_tree_all_finite(logits)


@pytest.mark.parametrize("label", REAL_MODELS)
def test_real_logits_depend_on_the_input(label):
    """A model that ignores its input (all-zero or constant logits) fails here."""
    results = _real_results(label)
    logits, half = results["logits"], results["half_scale_logits"]
    assert np.abs(logits).max() > 1e-3, "all logits are zero"
    assert (np.ptp(logits, -1) > 1e-4).all(), "every class gets the same logit"
    assert not np.allclose(logits[0], logits[1], atol=1e-5), "two inputs, the same logits"
    assert not np.allclose(logits, half, atol=1e-5), "x and 0.5 x, the same logits"


@pytest.mark.parametrize("label", REAL_MODELS)
def test_real_train_mode_updates_batch_stats(label):
    results = _real_results(label)
    chex.assert_shape(results["train_logits"], (BATCH, NUM_CLASSES))
    chex.assert_tree_all_finite(results["train_logits"])
    variables, updates = results["variables"], results["updates"]
    if label in BATCHNORM_FREE:
        assert "batch_stats" not in variables and not updates.get("batch_stats")
        return
    old, new = variables["batch_stats"], updates["batch_stats"]
    chex.assert_trees_all_equal_shapes(old, new)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), old, new))
    assert changed and all(changed), "every BatchNorm layer should update its statistics"


@pytest.mark.parametrize("label", REAL_MODELS)
def test_normalization_is_first_op(label):
    # The model on pixels x must equal the same weights with identity
    # normalization on (x - 0.5) / 0.25: pins the documented constants and that
    # nothing touches x before normalizing.
    results = _real_results(label)
    model = results["model"]
    assert (model.pixel_mean, model.pixel_std) == (0.5, 0.25)
    np.testing.assert_allclose(
        results["logits"], results["identity_norm_logits"], rtol=1e-4, atol=1e-6
    )
    # The model reads pixel scale (no internal re-standardisation of inputs).
    logits, half = results["logits"], results["half_scale_logits"]
    assert np.max(np.abs(logits - half)) > 1e-3 * np.max(np.abs(logits))


@pytest.mark.parametrize("name", ABSTRACT_MODELS)
def test_full_paper_models_abstract(name):
    result = _abstract_results(name)
    assert set(result["eval"]) == {CIFAR, *ABSTRACT_EXTRA_SHAPES}
    for logits in result["eval"].values():
        chex.assert_shape(logits, (BATCH, NUM_CLASSES))
        assert logits.dtype == jnp.float32, name
    assert jax.tree.leaves(result["variables"]["batch_stats"])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_params_float32_and_head(name):
    if name in ABSTRACT_MODELS:
        params = _abstract_results(name)["variables"]["params"]
    else:
        params = _real_results(name)["variables"]["params"]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert set(params["head"]) == {"kernel", "bias"}
    kernel_shape = params["head"]["kernel"].shape
    assert len(kernel_shape) == 2 and kernel_shape[1] == NUM_CLASSES
    if name in HEAD_IN_FEATURES:
        assert kernel_shape[0] == HEAD_IN_FEATURES[name]
    assert params["head"]["bias"].shape == (NUM_CLASSES,)


def test_head_is_applied_last():
    # Logits must be exactly the head's affine map: with a zero kernel only the
    # bias is left, so nothing runs after `head`.
    model = get_model("cnn_medium", NUM_CLASSES)
    variables = _filled_variables(model, SMALL)
    bias = np.arange(NUM_CLASSES, dtype=np.float32)
    variables["params"]["head"] = {
        "kernel": np.zeros_like(variables["params"]["head"]["kernel"]),
        "bias": bias,
    }
    logits = _compile_and_call(model.apply, variables, _inputs(SMALL))
    np.testing.assert_array_equal(logits, np.broadcast_to(bias, logits.shape))


def _count_for_10_classes(name: str) -> int:
    params = _abstract_results(name)["variables"]["params"]
    head_inputs = params["head"]["kernel"].shape[0]
    return _num_params(params) + (10 - NUM_CLASSES) * (head_inputs + 1)


def test_resnet_param_counts():
    assert 260_000 <= _count_for_10_classes("resnet20") <= 280_000
    assert 840_000 <= _count_for_10_classes("resnet56") <= 870_000


@pytest.mark.parametrize("name", sorted(STATED_PARAM_COUNTS))
def test_stated_param_counts(name):
    count, stated = _count_for_10_classes(name), STATED_PARAM_COUNTS[name]
    assert abs(count - stated) <= 0.02 * stated, (name, count, stated)


def test_real_init_deterministic_float32_and_finite():
    # The real `init` (the run tests use filled variables), eagerly on a small model.
    model = get_model("cnn_small", NUM_CLASSES)
    x = _inputs(SMALL)
    a, b = model.init(_key(42), x), model.init(_key(42), x)
    c = model.init(_key(43), x)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a["params"]["head"]["kernel"], c["params"]["head"]["kernel"])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(a))
    chex.assert_trees_all_equal_shapes(a, _filled_variables(model, SMALL))
    logits = model.apply(a, x)
    chex.assert_shape(logits, (BATCH, NUM_CLASSES))
    chex.assert_tree_all_finite(logits)


def test_bfloat16_compute_keeps_float32_logits():
    model = get_model("cnn_medium", NUM_CLASSES, dtype=jnp.bfloat16)
    variables = _filled_variables(model, SMALL)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(variables))

    def run(variables, x):
        return model.apply(variables, x, train=True, mutable=["batch_stats"])[0]

    logits = _compile_and_call(run, variables, _inputs(SMALL))
    assert logits.dtype == np.float32 and logits.shape == (BATCH, NUM_CLASSES)
    chex.assert_tree_all_finite(logits)


def test_vmap_over_member_axis():
    # Other code stacks ensemble members on a leading axis with jax.vmap.
    model = get_model("cnn_medium", NUM_CLASSES)
    x = _inputs(SMALL)
    members = [_filled_variables(model, SMALL, seed=i) for i in range(3)]
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *members)

    def run(stacked):
        logits = jax.vmap(lambda v: model.apply(v, x))(stacked)
        first = model.apply(jax.tree.map(lambda a: a[0], stacked), x)
        return logits, first

    logits, first = _compile_and_call(run, stacked)
    assert logits.shape == (3, BATCH, NUM_CLASSES)
    np.testing.assert_allclose(logits[0], first, rtol=1e-4, atol=1e-6)
    assert not np.allclose(logits[0], logits[1])
