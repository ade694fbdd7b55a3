"""Files in the work directory, written so that a kill never leaves half a file.

Every write goes to a temporary name in the same directory, is flushed to
disk, and is renamed over the target (atomic on POSIX). JSON lines are
rewritten whole the same way, so a reader never sees a partial line.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Iterable

from fingerprinting import errors
from fingerprinting import faults
from fingerprinting import sharding


TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes `data` to `path` whole or not at all; an error names the file.

    In a run of several hosts only process 0 writes (`sharding.writes_files`).
    """
    if not sharding.writes_files():
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts are ordinary files
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            faults.check_disk(path)
            faults.point("write")
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise errors.StorageError(e.errno, f"cannot write {path}: {e.strerror}") from None
    except BaseException:
        _remove(tmp)
        raise


def remove_temporaries(directory: str) -> list[str]:
    """Deletes what killed atomic writes left in `directory` (never trusted, only litter)."""
    if not os.path.isdir(directory) or not sharding.writes_files():
        return []
    stale = [os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(TMP_PREFIX)]
    for path in stale:
        _remove(path)
    return stale


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def md_table(header: list[str], rows: list[list]) -> str:
    """A markdown table, as every report file writes one."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def write_json_atomic(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def write_jsonl_atomic(path: str, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_jsonl(path: str, row: dict) -> None:
    """Appends one row by rewriting the file atomically (files here are small)."""
    write_jsonl_atomic(path, read_jsonl(path) + [row])
