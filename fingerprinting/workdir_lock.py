"""One process at a time in a work directory: an advisory lock on WORKDIR/.lock.

Two runs in one work directory would both train the same groups into the same
Orbax directories, and the second extraction would move the first one's
fingerprint aside. So every stage that writes into a work directory first takes
an exclusive `fcntl.flock` on WORKDIR/.lock; a second process is refused with
an error naming the holder (its pid and command line, which the holder writes
into the lock file once it has the lock, and clears when it exits).

The kernel drops the lock when its holder dies, however it dies (kill -9
included): there are no stale locks to clean up. The lock is reentrant within a
process, and kept until the process exits (or `release`), since the stages call
one another. Only writers take it; reading a fingerprint or a model takes none.

POSIX only (`fcntl`). On NFS, Linux implements flock with the server's byte-range
locks: the lock then keeps apart processes on different hosts too, if the
server runs a lock manager (NFSv4, or lockd for v3). A mount with `nolock` or
`local_lock` keeps the lock local to one client, so runs on two hosts are not
kept apart; a filesystem that refuses locks gets a warning and no lock. In a
run of several hosts only process 0 takes the lock, as only it writes files.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shlex
import socket
import sys

from fingerprinting import errors
from fingerprinting import progress
from fingerprinting import sharding

LOCK_FILE = ".lock"
_COMMAND_CHARS = 300  # of the holder's command line in an error line

_held: dict[str, tuple[int | None, int]] = {}  # real path -> (lock fd, owning pid)


class WorkdirBusyError(errors.StorageError):
    """Another process is still writing into the work directory."""


def acquire(workdir: str) -> bool:
    """Takes the work directory's lock, or raises `WorkdirBusyError` naming its holder.

    A no-op when this process holds it already, and when the directory does not
    exist yet (nothing there to protect): the caller takes the lock again once
    it has made the directory. Returns whether the lock is held.
    """
    if not sharding.writes_files() or not os.path.isdir(workdir):
        return False
    key = os.path.realpath(workdir)
    if key in _held:
        return _held[key][0] is not None
    path = os.path.join(workdir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # never truncated: it names the holder
    except OSError as e:
        raise errors.StorageError(e.errno, f"cannot open {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise WorkdirBusyError(busy_message(workdir, holder)) from None
    except OSError as e:  # ENOLCK: an NFS mount without a lock manager
        os.close(fd)
        progress.log(
            f"warning: cannot lock {path} ({e.strerror}); "
            "two runs in this work directory would not be kept apart"
        )
        _held[key] = (None, os.getpid())
        return False
    _held[key] = (fd, os.getpid())
    _write_holder(fd)
    return True


def release(workdir: str) -> None:
    """Gives the lock back before the process ends (it is released at exit anyway)."""
    _release(os.path.realpath(workdir))


def _release(key: str) -> None:
    fd, pid = _held.pop(key, (None, None))
    if fd is not None and pid == os.getpid():  # a forked child shares the parent's lock
        _clear_holder(fd)
        os.close(fd)  # closing the last descriptor drops the flock


@atexit.register
def _clear_records() -> None:
    # The lock itself stays until the process is gone: exit handlers and
    # daemon threads may still write. Until then, a refused process that finds
    # the record empty names no pid (as in the moment after a lock is taken).
    for fd, pid in list(_held.values()):
        if fd is not None and pid == os.getpid():
            _clear_holder(fd)


def _write_holder(fd: int) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
    }
    try:
        os.ftruncate(fd, 0)  # in place: a new file would be a new, unlocked inode
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError:
        pass  # the lock holds anyway; a refused process just cannot name us


def _clear_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)  # a finished run leaves the lock file as it found it
    except OSError:
        pass


def _read_holder(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 1 << 16, 0).decode())
    except (OSError, ValueError):  # empty: the holder has the lock, not yet its record
        return {}
    return record if isinstance(record, dict) else {}


def busy_message(workdir: str, holder: dict) -> str:
    """One line naming the process that holds the lock, as far as its record tells."""
    if "pid" not in holder:
        who = "another process"
    else:
        who = f"pid {holder['pid']}"
        if holder.get("host") not in (None, socket.gethostname()):
            who += f" on {holder['host']}"
        command = " ".join(str(holder.get("command", "")).split())  # one line
        if command:
            cut = command[:_COMMAND_CHARS] + ("..." if len(command) > _COMMAND_CHARS else "")
            who += f" ({cut})"
    return (
        f"{workdir} is in use by {who}; wait for it to finish or stop it, or use another --workdir"
    )
