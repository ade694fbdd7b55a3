"""progress: bars for a person, on stderr, short in log files."""

import pytest

from fingerprinting import progress


@pytest.fixture
def loud(monkeypatch):
    monkeypatch.setattr(progress, "QUIET", False)


def test_a_log_file_gets_the_last_line_and_few_others(loud, capsys):
    with progress.Bar("work", total=1000, unit="items", min_interval=3600) as bar:
        for _ in range(1000):
            bar.update(1, "ok")
    out, err = capsys.readouterr()
    assert out == ""  # stdout is for results
    lines = err.strip().splitlines()
    assert len(lines) <= 2, lines  # the first update and the last, not 1000
    assert lines[-1].startswith("work: 100.0% 1000/1000 items [") and lines[-1].endswith("ok")


def test_quiet_prints_nothing(capsys, monkeypatch):
    monkeypatch.setattr(progress, "QUIET", True)
    progress.log("hidden")
    with progress.Bar("work", total=3) as bar:
        bar.update(3)
    assert capsys.readouterr() == ("", "")


def test_log_goes_to_stderr(loud, capsys):
    progress.log("trained 4 models")
    assert capsys.readouterr() == ("", "trained 4 models\n")


def test_an_empty_total_is_complete(loud, capsys):
    with progress.Bar("nothing", total=0) as bar:
        bar.update(0)
    assert "100.0% 0/0" in capsys.readouterr().err
