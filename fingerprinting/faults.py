"""Named points where a run can be made to fail the way real runs fail.

Resumption and atomic writes are only worth what their tests show, and a test
that kills a process after a guessed delay is flaky on a loaded machine. So the
places where an interruption matters (inside an epoch, between groups, inside
an attack, while a file is being written) call `point(name)`, and the
environment decides what happens there:

    FINGERPRINTING_KILL_AT=NAME[@N]   SIGKILL this process the N-th time (default 1)
                                      the point NAME is reached
    FINGERPRINTING_DISK_FULL=PATTERN  an atomic write of a file whose name matches
                                      PATTERN (fnmatch; '*' for all) fails half-way
                                      with ENOSPC, as on a full disk

Without these variables a point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Kills the process here when FINGERPRINTING_KILL_AT names this point."""
    target = os.environ.get("FINGERPRINTING_KILL_AT")
    if not target:
        return
    want, _, nth = target.partition("@")
    if want != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def check_disk(path: str) -> None:
    """Raises the error a full disk gives when FINGERPRINTING_DISK_FULL is set."""
    pattern = os.environ.get("FINGERPRINTING_DISK_FULL")
    if pattern and fnmatch.fnmatch(os.path.basename(path), pattern):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
