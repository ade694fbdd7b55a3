"""Suspects answer with labels or scores; garbage answers are refused, never scored."""

import numpy as np
import pytest

from fingerprinting import suspects


def test_labels_and_scores_are_accepted():
    np.testing.assert_array_equal(suspects.answers_to_labels([2, 0, 1], 3, 3, "s"), [2, 0, 1])
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    np.testing.assert_array_equal(suspects.answers_to_labels(scores, 2, 2, "s"), [1, 0])
    np.testing.assert_array_equal(
        suspects.answers_to_labels(np.array([1.0, 0.0]), 2, 2, "s"), [1, 0]
    )
    column = [[1], [0], [1]]  # labels shaped [N, 1], as servers often answer
    np.testing.assert_array_equal(suspects.answers_to_labels(column, 3, 2, "s"), [1, 0, 1])


@pytest.mark.parametrize(
    "answer,match",
    [
        ([1, 2], "2 answers for 3 inputs"),
        ([0, 1, 7], "out of range"),
        ([0, -1, 1], "out of range"),
        ([[np.nan, 1.0]] * 3, "NaN"),
        ([[0.1, 0.2, 0.7]] * 3, "3 scores per input"),
        (["a", "b", "c"], "not numeric"),
        ([0.5, 1.0, 0.0], "not integers"),
        (np.zeros((3, 2, 2)), "shape"),
        ({"labels": [1, 2, 3]}, "not numeric"),
        ([0.0, np.nan, 1.0], "NaN"),
        ([[1], [0], [5]], "out of range"),
    ],
)
def test_garbage_is_refused(answer, match):
    with pytest.raises(suspects.SuspectError, match=match):
        suspects.answers_to_labels(answer, 3, 2, "s")


def constant_model(x):
    return np.full(len(x), 3)


def brightest_column(x):
    """Records what it was given: dtype and range depend on the pixel format."""
    brightest_column.seen = x
    return x.max(axis=(1, 3)).argmax(-1)


def test_callable_suspect_gets_uint8_or_float_pixels():
    x = np.zeros((4, 8, 8, 1), np.uint8)
    x[np.arange(4), :, [1, 3, 5, 7]] = 255
    for pixels, dtype, top in (("uint8", np.uint8, 255), ("float", np.float32, 1.0)):
        s = suspects.load_suspect(f"{__name__}:brightest_column", pixels=pixels)
        np.testing.assert_array_equal(s.predict(x), [1, 3, 5, 7])
        assert brightest_column.seen.dtype == dtype and brightest_column.seen.max() == top
    with pytest.raises(suspects.SuspectError, match="unknown pixel format"):
        suspects.load_suspect(f"{__name__}:brightest_column", pixels="int4")


def test_callable_suspect_batches():
    s = suspects.load_suspect(f"{__name__}:constant_model")
    s.num_classes = 10
    assert s.protocol == "callable"
    out = s.predict(np.zeros((600, 8, 8, 1), np.uint8), batch_size=256)
    assert out.shape == (600,) and set(out) == {3}


@pytest.mark.parametrize(
    "spec,match",
    [
        ("no_such_module_xyz:f", "cannot import"),
        (f"{__name__}:no_such_fn", "cannot import"),
        (f"{__name__}:np", "not callable"),
        ("/nonexistent/dir/model", "names no suspect"),
        ("http://127.0.0.1:1/predict", "cannot tell the protocol"),
        ("http:///v1/models/m:predict", "not an http"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(suspects.SuspectError, match=match):
        suspects.load_suspect(spec)


def test_only_a_dotted_identifier_is_imported(tmp_path, monkeypatch):
    """A path holding a ':' must not import a module of the current directory."""
    (tmp_path / "evil.py").write_text(
        "import pathlib\npathlib.Path('imported').touch()\ndef f(x):\n    return x\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("evil:runs/models/g", "evil:1", "./evil:f", "evil:f:g", "ev il:f"):
        with pytest.raises(suspects.SuspectError, match="names no suspect|not a model group"):
            suspects.load_suspect(spec)
        assert not (tmp_path / "imported").exists(), spec
    assert suspects.is_callable_spec("package.module:function")
    assert not suspects.is_callable_spec("a..b:f")


def test_url_specs_pick_the_protocol_from_the_path():
    s = suspects.load_suspect("http://127.0.0.1:1/v1/models/m/versions/3:predict", batch_size=8)
    assert s.protocol == "http-v1" and s.batch_size == 8
    with pytest.raises(suspects.SuspectError, match="batch size"):
        suspects.load_suspect(f"{__name__}:constant_model", batch_size=0)


def test_checkpoint_spec_without_record(tmp_path):
    with pytest.raises(suspects.SuspectError, match="not a model group"):
        suspects.load_suspect(str(tmp_path))
