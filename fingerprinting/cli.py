"""What every entry point shares: one clear error line instead of a traceback.

Errors the user can fix (`errors.UserError`: a bad config value, a missing
data directory, a tampered fingerprint, an unreachable suspect) end the
process with exit status 2 and one line on stderr; `--verbose` shows the
traceback as well. Any other exception is a bug: it keeps its traceback and
exit status 1.
"""

from __future__ import annotations

import os
import sys

import jax

from absl import app
from absl import flags
from absl import logging

from fingerprinting import errors
from fingerprinting import sharding

_VERBOSE = flags.DEFINE_bool("verbose", False, "Show tracebacks of errors.")


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


def fail(message: str) -> None:
    """Ends the process the way every user error ends it: one line, status 2.

    Whatever would print while the interpreter shuts down (background threads,
    exit handlers) cannot follow the error line: stderr is closed behind it.
    """
    print(f"error: {message}", file=sys.stderr)
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    sys.stderr = open(devnull, "w")  # noqa: SIM115 (lives until the process ends)
    sys.exit(2)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def flag_error_message(e: BaseException) -> str:
    """One line for an error raised while parsing flags and loading the config."""
    chain = [e]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    for c in chain:  # ml_collections: "'key'\nDid you mean "keys" instead of "key"?"
        lines = str(c.args[0] if isinstance(c, KeyError) and c.args else c).splitlines()
        hint = [line for line in lines if line.startswith("Did you mean")]
        if hint:
            return (
                f"unknown config key {lines[0].strip(chr(39))}; {hint[0][0].lower()}{hint[0][1:]}"
            )
    if isinstance(e, SyntaxError):
        return f"config file {e.filename}: {e.msg} (line {e.lineno})"
    deepest = chain[-1]
    if isinstance(deepest, OSError) and deepest.strerror:
        return f"cannot load the config {deepest.filename}: {deepest.strerror}"
    errno_lines = [line.strip() for line in str(deepest).splitlines() if "[Errno" in line]
    if errno_lines:  # ml_collections lists every path it tried
        return f"cannot load the config: {errno_lines[-1].split('] ', 1)[-1]}"
    if isinstance(deepest, KeyError):
        return f"unknown config key {str(deepest.args[0]) if deepest.args else ''}"
    if isinstance(e, flags.Error) and "Traceback" not in str(e):
        return _first_line(e)
    return _first_line(deepest)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 (a config file can raise anything)
        if any(a in ("--verbose", "-verbose") for a in argv):
            raise
        fail(flag_error_message(e))


def run(main) -> None:
    """absl's app.run, with user errors reported as one line."""

    def wrapped(argv):
        if not _VERBOSE.value:  # Orbax logs every checkpoint write at INFO
            logging.set_verbosity(logging.WARNING)
        enable_compilation_cache()
        try:
            sharding.initialize_distributed()  # FINGERPRINTING_DISTRIBUTED=1: join the hosts
            main(argv)
        except app.UsageError:
            raise
        except errors.UserError as e:
            if _VERBOSE.value:
                raise
            fail(_first_line(e))
        except Exception as e:  # noqa: BLE001 (a config file loaded lazily can raise anything)
            if str(e).startswith("Configuration is not available") and not _VERBOSE.value:
                fail(flag_error_message(e))
            raise

    app.run(wrapped, flags_parser=_parse_flags)
