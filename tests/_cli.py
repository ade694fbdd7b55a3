"""Running the entry points as a user does: a fresh process, its stderr, its exit status."""

import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=configs/digits.py:smoke"


def run(module, *args, check=True, env=None, timeout=600):
    proc = subprocess.run(
        [sys.executable, "-m", f"fingerprinting.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def assert_one_line_error(proc, match):
    """Exit status 2, the last stderr line `error: ...` naming the problem, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:") and match in lines[-1], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def tree_state(directory) -> dict[str, str]:
    """Every file under `directory` and a hash of its content."""
    state = {}
    for dirpath, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                state[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return state
