"""Reading configs: their arguments, their spec strings, and config modules by path.

The configs themselves live in `configs/` (`configs/_common.py` holds every
field and its default); the library validates them (`pipeline.validate`).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections

from fingerprinting import errors


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """A config argument parsed once into typed values (as big_vision's `parse_arg`).

    `arg` is comma-separated: a bare name sets a bool default to True
    (`smoke`), `key=value` sets any default, converted to its type. Unknown
    names and values that do not convert are refused: a typo must not start a
    full run.
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, eq, value = item.partition("=")
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise errors.ConfigError(f"unknown config argument {key!r}; expected {known}")
        default = defaults[key]
        if not eq:
            if not isinstance(default, bool):
                raise errors.ConfigError(f"config argument {key!r} needs a value: {key}=...")
            out[key] = True
        elif isinstance(default, bool):
            if value not in ("true", "false", "1", "0"):
                raise errors.ConfigError(f"config argument {key}={value!r}: expected true or false")
            out[key] = value in ("true", "1")
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise errors.ConfigError(
                    f"config argument {key}={value!r}: expected a {type(default).__name__}"
                ) from None
    return out


def load_module(path: str):
    """The Python module of a config file, loaded by path (configs import the
    base they extend this way, whatever the current directory)."""
    path = os.path.abspath(path)
    name = "configs_" + os.path.splitext(os.path.basename(path))[0]
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == path:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not os.path.isfile(path):
        raise errors.ConfigError(f"no config file at {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def parse_names(spec: str, allowed, what: str) -> list[str]:
    """'a, b' -> ['a', 'b'], refusing any name not in `allowed` (`what` names them)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise errors.ConfigError(
            f"unknown {what} {', '.join(unknown)}; expected {', '.join(allowed)}"
        )
    return names


def parse_floats(spec: str) -> list[float]:
    """'0.1, 0.2' -> [0.1, 0.2], refusing anything that is not a number."""
    try:
        return [float(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise errors.ConfigError(f"expected comma-separated numbers, got {spec!r}") from None
