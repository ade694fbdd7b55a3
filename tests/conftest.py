"""Shared test set-up: quiet progress output, a compilation cache, rank promotion as an error,
temporary files inside pytest's own directory."""

import os
import tempfile

import jax
import pytest

from fingerprinting import progress

progress.QUIET = True
_cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "fingerprinting", "jax"
)
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
# Shapes carry suffixes (x_BxHxWxC); a silent broadcast across ranks is a bug.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_the_test_directory(tmp_path_factory):
    """Libraries that leave temporary directories behind (tensorflow-datasets
    makes an empty one per data set it builds) leave them where pytest's own
    clean-up finds them, in this process and in the CLI processes tests start."""
    tmp = str(tmp_path_factory.mktemp("tmp"))
    old_env, old_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = tmp, tmp
    yield
    tempfile.tempdir = old_dir
    if old_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old_env


@pytest.fixture(scope="session", autouse=True)
def _no_model_store_between_tests():
    """Each test trains what it trains: no model store shared through pytest's
    base directory (tests of the store name their own)."""
    old = os.environ.get("FINGERPRINTING_STORE")
    os.environ["FINGERPRINTING_STORE"] = "off"
    yield
    if old is None:
        os.environ.pop("FINGERPRINTING_STORE", None)
    else:
        os.environ["FINGERPRINTING_STORE"] = old


@pytest.fixture
def rng():
    return jax.random.PRNGKey(0)


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory):
    """One complete run (train, extract, evaluate) on the smoke config, shared by
    every test that only reads it."""
    from _cli import SMOKE, run

    wd = str(tmp_path_factory.mktemp("smoke") / "wd")
    run("evaluate", SMOKE, f"--workdir={wd}")
    return wd
