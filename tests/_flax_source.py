"""A model owner's own Flax model, trained outside this tool: the source that
tests name as `models.source=tests._flax_source:digits_source`.

Its architecture (a convolution, max pooling, two dense layers) is none of the
tool's; it trains here with plain optax on scikit-learn's digits, in a few
seconds, and is cached for the process.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import datasets

SHIFT = {"value": 0.0}  # tests move the weights to play a source that changed
ASKED = {"inputs": 0}  # inputs `predict` has answered: what a label-only API was asked


class OwnerNet(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x * 2.0 - 1.0))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
        return nn.Dense(self.num_classes)(x)


def digits():
    d = datasets.load_digits()
    return (d.images / 16.0)[..., None].astype(np.float32), d.target.astype(np.int32)


@functools.lru_cache(maxsize=None)
def _trained(num_classes: int = 10):
    x, y = digits()
    model = OwnerNet(num_classes)
    params = model.init(jax.random.PRNGKey(0), x[:1])
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
            model.apply(p, xb), yb
        ).mean()
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    order = np.random.default_rng(0).permutation(len(x))
    for epoch in range(8):
        for i in range(0, len(x) - 63, 64):
            idx = order[(i + epoch * 7) % (len(x) - 64) :][:64]
            params, opt_state = step(params, opt_state, x[idx], y[idx])
    return model, params


def digits_source():
    """(apply_fn, variables): float NHWC in [0, 1] to logits [N, 10]."""
    model, params = _trained()
    params = jax.tree_util.tree_map(lambda a: a + SHIFT["value"], params)
    return (lambda v, xb: model.apply(v, xb)), params


def seven_classes():
    model = OwnerNet(7)
    return (lambda v, xb: model.apply(v, xb)), model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1))
    )


def not_a_pair():
    return 3


def predict(x_uint8):
    """The same model as a label-only suspect: labels of 8-bit pixels."""
    ASKED["inputs"] += len(x_uint8)
    apply_fn, params = digits_source()
    return np.asarray(apply_fn(params, jnp.asarray(x_uint8, jnp.float32) / 255.0)).argmax(-1)
