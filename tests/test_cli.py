"""cli: a user's mistake is one line and exit status 2; a bug keeps its traceback and status 1."""

import subprocess
import sys

import pytest

from _cli import ROOT
from _cli import assert_one_line_error
from fingerprinting import artifact
from fingerprinting import cli
from fingerprinting import data
from fingerprinting import errors
from fingerprinting import pipeline
from fingerprinting import suspects
from fingerprinting import zoo

_PROGRAM = """
import sys
from fingerprinting import cli, errors

KIND = sys.argv.pop()


def main(argv):
    kind = KIND
    if kind == "user":
        raise errors.ConfigError("extract.eps = 7 is out of range")
    if kind == "storage":
        raise errors.StorageError(28, "cannot write out.json: No space left on device")
    raise {bug}("an internal invariant broke")

cli.run(main)
"""


def _run(kind: str, bug: str = "KeyError", *flags):
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(bug=bug), *flags, kind],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_user_error_is_one_line_and_status_2():
    assert_one_line_error(_run("user"), "extract.eps = 7 is out of range")
    assert_one_line_error(_run("storage"), "No space left on device")


@pytest.mark.parametrize("bug", ["KeyError", "ValueError", "OSError", "RuntimeError"])
def test_a_bug_keeps_its_traceback_and_status_1(bug):
    proc = _run("bug", bug)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" in proc.stderr and "an internal invariant broke" in proc.stderr
    assert "error: an internal" not in proc.stderr


def test_verbose_shows_the_traceback_of_a_user_error():
    proc = _run("user", "KeyError", "--verbose")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize(
    "cls",
    [
        artifact.FingerprintError,
        data.DataError,
        pipeline.WorkdirError,
        pipeline.EmptyFingerprintError,
        suspects.SuspectError,
        zoo.SpecError,
        zoo.CheckpointError,
        errors.ConfigError,
        errors.StorageError,
    ],
)
def test_every_error_raised_on_bad_input_is_a_user_error(cls):
    assert issubclass(cls, errors.UserError)


def test_first_line_of_an_empty_message_is_the_class_name():
    assert cli._first_line(errors.ConfigError()) == "ConfigError"
    assert cli._first_line(errors.ConfigError("a\nb")) == "a"
