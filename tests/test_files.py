"""files: atomic writes that leave the old file or the new one, never half of either."""

import json
import os
import stat

import pytest

from fingerprinting import errors
from fingerprinting import files


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "sub" / "a.json")
    files.write_json_atomic(path, {"b": 1, "a": [1, 2]})
    files.write_json_atomic(path, {"c": 3})
    assert files.read_json(path) == {"c": 3}
    assert os.listdir(tmp_path / "sub") == ["a.json"]
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode & 0o044, oct(mode)  # readable by others, unlike mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_names_the_error(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    files.write_text_atomic(str(path), "old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(errors.StorageError, match="No space left on device"):
        files.write_text_atomic(str(path), "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # the temporary is gone


def test_jsonl_round_trip_and_append(tmp_path):
    path = str(tmp_path / "rows.jsonl")
    assert files.read_jsonl(path) == []
    files.append_jsonl(path, {"n": 1})
    files.append_jsonl(path, {"n": 2, "s": "x"})
    assert files.read_jsonl(path) == [{"n": 1}, {"n": 2, "s": "x"}]
    with open(path) as f:
        assert [json.loads(line) for line in f] == files.read_jsonl(path)


def test_remove_temporaries_removes_only_litter(tmp_path):
    (tmp_path / f"{files.TMP_PREFIX}abc").write_text("half")
    (tmp_path / "kept.json").write_text("{}")
    removed = files.remove_temporaries(str(tmp_path))
    assert [os.path.basename(p) for p in removed] == [f"{files.TMP_PREFIX}abc"]
    assert os.listdir(tmp_path) == ["kept.json"]
    assert files.remove_temporaries(str(tmp_path / "missing")) == []


def test_md_table():
    assert files.md_table(["a", "b"], [[1, "x"], [2.5, None]]) == (
        "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |"
    )
