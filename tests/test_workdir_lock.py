"""The work directory's lock: a second writer is refused, and a dead holder frees it."""

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys

import pytest

from fingerprinting import harness
from fingerprinting import pipeline
from fingerprinting import workdir_lock
from _cli import ROOT, SMOKE, assert_one_line_error, run, tree_state
from _configs import common

# Takes the lock, says so on stdout, and keeps it until killed.
_HOLDER = (
    "import sys, time\n"
    "from fingerprinting import workdir_lock\n"
    "workdir_lock.acquire(sys.argv[1])\n"
    "print('holding', flush=True)\n"
    "time.sleep(600)\n"
)


def _lock_is_free(wd) -> bool:
    """Whether a new open file description can take the lock (flock locks conflict
    between descriptions even within one process)."""
    fd = os.open(os.path.join(wd, workdir_lock.LOCK_FILE), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # drops the flock taken here, if any
    return True


def _record(wd):
    """What the lock file says of its holder (None when it is empty)."""
    with open(os.path.join(wd, workdir_lock.LOCK_FILE)) as f:
        text = f.read()
    return json.loads(text) if text else None


@contextlib.contextmanager
def _holder(wd):
    """Another process that holds the lock of `wd` until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, wd], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _interrupted_workdir(wd):
    """A work directory as an interrupted run leaves it."""
    os.makedirs(os.path.join(wd, "plots"))
    for name, data in [
        ("config.json", b"{}\n"),
        (".tmp-litter", b"half a file"),  # what open_zoo would clean up
        (os.path.join("plots", ".tmp-litter"), b"half a plot"),
    ]:
        with open(os.path.join(wd, name), "wb") as f:
            f.write(data)


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A work directory in use by another process (the tests here only read it)."""
    wd = str(tmp_path_factory.mktemp("held") / "wd")
    _interrupted_workdir(wd)
    with _holder(wd) as proc:
        yield wd, proc


@pytest.mark.parametrize(
    "stage",
    [
        lambda c, wd: pipeline.run_train(c, wd),
        lambda c, wd: pipeline.run_extract(c, wd),
        lambda c, wd: harness.run_evaluate(c, wd),
        lambda c, wd: harness.run_study(c, wd, [0]),
    ],
    ids=["train", "extract", "evaluate", "study"],
)
def test_library_refuses_a_directory_in_use(held, stage):
    wd, holder = held
    before = tree_state(wd)
    with pytest.raises(workdir_lock.WorkdirBusyError, match=f"in use by pid {holder.pid} ") as e:
        stage(common.smoke(common.base()), wd)
    assert "fingerprinting import workdir_lock" in str(e.value)  # the holder's command line
    assert "\n" not in str(e.value)
    assert tree_state(wd) == before


def test_cli_refuses_a_directory_in_use_and_touches_nothing(held):
    wd, holder = held
    before = tree_state(wd)
    proc = run("extract", SMOKE, f"--workdir={wd}", check=False, timeout=120)
    assert_one_line_error(proc, f"{wd} is in use by pid {holder.pid} (")
    assert tree_state(wd) == before
    assert holder.poll() is None  # the holder runs on, its record intact
    record = _record(wd)
    assert record["pid"] == holder.pid


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    wd = str(tmp_path / "wd")
    _interrupted_workdir(wd)
    with _holder(wd) as holder:
        assert not _lock_is_free(wd)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    stale = _record(wd)
    assert stale["pid"] == holder.pid  # no exit handler ran: its record stays...
    assert _lock_is_free(wd)  # ...but the kernel dropped the lock with the process
    assert workdir_lock.acquire(wd)
    record = _record(wd)
    assert record["pid"] == os.getpid()
    workdir_lock.release(wd)
    assert _record(wd) is None  # left as found
    assert _lock_is_free(wd)


def test_reentrant_within_a_process(tmp_path):
    wd = str(tmp_path / "wd")
    assert not workdir_lock.acquire(wd)  # no directory yet: nothing to lock
    assert not os.path.exists(wd)
    os.makedirs(wd)
    try:
        assert workdir_lock.acquire(wd)
        assert workdir_lock.acquire(wd + "/")  # the same directory, spelled otherwise
        os.symlink(wd, str(tmp_path / "link"))
        assert workdir_lock.acquire(str(tmp_path / "link"))
        assert not _lock_is_free(wd)
        # Every stage takes it again on the way in: no stage refuses its own process.
        # (The config is refused later, which shows the lock let the call through.)
        other = common.smoke(common.base())
        other.train.learning_rate = 0.5
        with open(os.path.join(wd, "config.json"), "w") as f:
            f.write(common.smoke(common.base()).to_json())
        with pytest.raises(pipeline.WorkdirError, match="learning_rate"):
            pipeline.run_extract(other, wd)
    finally:
        workdir_lock.release(wd)
    assert _lock_is_free(wd)


def test_message_names_what_the_record_tells():
    assert "in use by another process;" in workdir_lock.busy_message("wd", {})
    far = workdir_lock.busy_message("wd", {"pid": 7, "host": "elsewhere", "command": "a\nb"})
    assert "pid 7 on elsewhere (a b);" in far
