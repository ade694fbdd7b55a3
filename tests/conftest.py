"""Shared test set-up: quiet progress output and a compilation cache."""

import os

import jax
import pytest

from fingerprinting import progress

progress.QUIET = True
_cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "fingerprinting", "jax"
)
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


@pytest.fixture
def rng():
    return jax.random.PRNGKey(0)
