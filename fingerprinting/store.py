"""A store of trained model groups shared by work directories, addressed by
the digest of everything that determines their weights.

A group's recipe (`recipe_digest`) covers its architecture and member count,
the bytes of the inputs and targets it trains on, the training settings and
epochs, its random key, the test split its accuracy is measured on, the
source code that trains it (`CODE`) and the versions of the libraries that
compute it. A run that changes only how the fingerprint is extracted or
verified finds every group in the store; a run that changes one group's
recipe trains that group alone, in whichever work directory it runs.

An entry is a directory `STORE/<digest>/` holding the group's `final/`
variables and its `result.json`, which lists the SHA-256 of every file and
of itself. An entry is used only when all of them match and the record names
its own digest; any other is moved aside as `corrupt-<digest>-N` with a
warning, and the group is trained again. Entries are published whole (a
temporary directory renamed into place), so a killed run never leaves half
of one. The store is a cache: when it cannot be read or written (a full
disk, no permission) the run warns once and goes on without it.

Where the store is: `$FINGERPRINTING_STORE` when set (`off` disables it),
else `model-store` beside the work directory (`runs/model-store` for
`runs/digits`); a study keeps one store beside its own directory, shared by
its seeds. Runs of several processes (`jax.distributed`) do not use it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

import flax
import jax
import numpy as np
import optax

from fingerprinting import files

ENV = "FINGERPRINTING_STORE"
DEFAULT_NAME = "model-store"
RECORD = "result.json"
# The modules whose code decides what a recipe trains to: any change to what
# they run is a new recipe (their comments and docstrings are not).
CODE = (
    "fit.py",
    "ensemble.py",
    "labels.py",
    "conv_layout.py",
    "models",
    "removal",
    "data/transfer.py",
)
STALE_TEMPORARY = 24 * 3600  # seconds after which a publish's temporary directory is litter


def default_path(workdir: str) -> str | None:
    """The store a work directory uses, or None when `$FINGERPRINTING_STORE=off`."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() == "off":
        return None
    if env:
        return os.path.abspath(env)
    return os.path.join(os.path.dirname(os.path.abspath(workdir)), DEFAULT_NAME)


def _feed(h, part) -> None:
    if isinstance(part, (np.ndarray, jax.Array)):
        a = np.ascontiguousarray(np.asarray(part))
        h.update(f"array {a.dtype.str} {a.shape}\n".encode())
        h.update(a.tobytes())
    else:
        h.update(json.dumps(part, sort_keys=True, default=str).encode() + b"\n")


@functools.cache
def code_digest() -> str:
    """SHA-256 of the source files listed in `CODE`."""
    root = os.path.dirname(os.path.abspath(__file__))
    paths = []
    for name in CODE:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            paths += [os.path.join(path, n) for n in os.listdir(path) if n.endswith(".py")]
        else:
            paths.append(path)
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(os.path.relpath(path, root).encode() + b"\n" + _code_of(path).encode())
    return h.hexdigest()


def _code_of(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return code_of_text(f.read())


def code_of_text(text: str) -> str:
    """A module's syntax tree without docstrings: what it runs, not how it is
    commented (comments never reach the tree)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def recipe_digest(*parts) -> str:
    """SHA-256 over the parts of a recipe: arrays by their bytes, shapes and
    types; everything else as JSON. The training code and the library
    versions are always part of it."""
    h = hashlib.sha256()
    versions = [jax.__version__, flax.__version__, optax.__version__, np.__version__]
    for part in (["store", code_digest(), versions], *parts):
        _feed(h, part)
    return h.hexdigest()


def file_digests(directory: str) -> dict[str, str]:
    """{relative path: SHA-256} of every file under `directory`."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[os.path.relpath(path, directory)] = h.hexdigest()
    return dict(sorted(out.items()))


def record_digest(record: dict) -> str:
    """SHA-256 of a record without its own digest field."""
    rest = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _copy_tree(src: str, dst: str) -> None:
    """Hard links where the file system allows (entries are never modified in
    place: a group's variables are saved anew, never written over), copies
    elsewhere."""

    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link_or_copy)


def _warn(message: str) -> None:
    # Printed even in quiet runs: a damaged or unusable store is worth a look.
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Store:
    """Trained groups by recipe digest, in one directory."""

    def __init__(self, path: str):
        self.path = path
        self.broken = ""  # why the store is not used any more ('' while it is)

    def entry(self, digest: str) -> str:
        return os.path.join(self.path, digest)

    def _check(self, digest: str) -> str:
        """Why an entry cannot be used ('' when it can)."""
        entry = self.entry(digest)
        try:
            record = files.read_json(os.path.join(entry, RECORD))
        except (OSError, ValueError) as e:
            return f"its record is unreadable ({e})"
        if not isinstance(record, dict) or record.get("recipe") != digest:
            return "its record names another recipe"
        if record.get("record_sha256") != record_digest(record):
            return "its record does not match its digest"
        expected = record.get("files")
        if not isinstance(expected, dict) or not expected:
            return "its record lists no files"
        if file_digests(os.path.join(entry, "final")) != expected:
            return "its files do not match their digests"
        return ""

    def _move_aside(self, digest: str, why: str) -> None:
        n = 1
        while os.path.exists(os.path.join(self.path, f"corrupt-{digest}-{n}")):
            n += 1
        aside = os.path.join(self.path, f"corrupt-{digest}-{n}")
        os.rename(self.entry(digest), aside)
        _warn(
            f"store entry {self.entry(digest)} is not usable ({why}); "
            f"moved to {aside}, the group trains again"
        )

    def _give_up(self, what: str, e: OSError) -> None:
        self.broken = f"{what}: {e.strerror or e}"
        _warn(f"the model store {self.path} is not used any more ({self.broken})")

    def fetch(self, digest: str, group_dir: str) -> bool:
        """Copies the entry of `digest` into `group_dir` (its `final/`, then its
        record) and says whether there was a usable one."""
        if self.broken or not os.path.isdir(self.entry(digest)):
            return False
        try:
            why = self._check(digest)
            if why:
                self._move_aside(digest, why)
                return False
            record = files.read_json(os.path.join(self.entry(digest), RECORD))
        except FileNotFoundError:  # another run moved it aside first
            return False
        except OSError as e:
            self._give_up(f"cannot read {self.entry(digest)}", e)
            return False
        os.makedirs(group_dir, exist_ok=True)
        final = os.path.join(group_dir, "final")
        if os.path.exists(final):  # a killed run's, without its record: never trusted
            shutil.rmtree(final)
        _copy_tree(os.path.join(self.entry(digest), "final"), final)
        files.write_json_atomic(os.path.join(group_dir, RECORD), record)
        return True

    def publish(self, digest: str, group_dir: str) -> None:
        """Adds a trained group (its `final/` and record) as the entry of
        `digest`, whole or not at all; an entry already there stays."""
        if self.broken or os.path.isdir(self.entry(digest)):
            return
        tmp = None
        try:
            os.makedirs(self.path, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=files.TMP_PREFIX, dir=self.path)
            _copy_tree(os.path.join(group_dir, "final"), os.path.join(tmp, "final"))
            record = files.read_json(os.path.join(group_dir, RECORD))
            record.update(recipe=digest, files=file_digests(os.path.join(tmp, "final")))
            record["record_sha256"] = record_digest(record)
            files.write_json_atomic(os.path.join(tmp, RECORD), record)
            os.rename(tmp, self.entry(digest))
        except OSError as e:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(self.entry(digest)):  # not a concurrent publisher's
                self._give_up(f"cannot write {self.path}", e)


def remove_litter(path: str) -> None:
    """Deletes the temporary directories of publishes killed long ago (a
    recent one may be another run's, still being written)."""
    if not os.path.isdir(path):
        return
    for name in os.listdir(path):
        tmp = os.path.join(path, name)
        try:
            if name.startswith(files.TMP_PREFIX) and (
                time.time() - os.path.getmtime(tmp) > STALE_TEMPORARY
            ):
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def open_store(workdir: str) -> Store | None:
    """The store beside `workdir`, or None where it is off (and in runs of
    several processes, which would publish the same entries at once)."""
    path = default_path(workdir)
    if path is None or jax.process_count() > 1:
        return None
    remove_litter(path)
    return Store(path)
