"""What every entry point shares: one clear error line instead of a traceback.

Errors the user can fix (a bad config value, a missing data directory, a
tampered fingerprint, an unreachable suspect) end the process with exit
status 2 and one line on stderr; `--verbose` shows the traceback as well.
"""

from __future__ import annotations

import os
import sys

import jax

from absl import app
from absl import flags
from absl import logging

_VERBOSE = flags.DEFINE_bool("verbose", False, "Show tracebacks of errors.")

# Exceptions that carry a message meant for the user.
USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    PermissionError,
    OSError,
    FloatingPointError,
)


def enable_compilation_cache() -> None:
    """Reuses compiled XLA programs across groups of one run and across runs.

    Groups of the same architecture and size compile to the same program; on a
    CPU compiling dominates small runs, so the cache halves a demo's time.
    """
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "fingerprinting", "jax"
    )
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def check_no_args(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def run(main) -> None:
    """absl's app.run, with user errors reported as one line."""

    def wrapped(argv):
        if not _VERBOSE.value:  # Orbax logs every checkpoint write at INFO
            logging.set_verbosity(logging.WARNING)
        enable_compilation_cache()
        try:
            main(argv)
        except app.UsageError:
            raise
        except USER_ERRORS as e:
            if _VERBOSE.value:
                raise
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    app.run(wrapped)
