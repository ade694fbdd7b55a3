"""`verify --suspects=FILE`: every suspect verified, one that fails gets a row
saying why, and the table is written without overwriting anything."""

import json
import os

import pytest

from fingerprinting import artifact
from fingerprinting import errors
from fingerprinting import input_format
from fingerprinting import screening
from fingerprinting import suspects
from tests import _cli
from tests import _onnx_models as om

SHAPE, K = (6, 5, 1), 4


def test_specs_skip_comments_and_blank_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text(
        "# suspects seen in the wild\n\n"
        "a.onnx --layout=nchw --mean=0.5 --std=0.5  # the shop's model\n"
        "  http://127.0.0.1:1/v2/models/m/infer --pixels=float\n"
        "dir#2/model.onnx\n"
        "   # indented comment\n"
    )
    entries = screening.read_specs(str(path))
    assert [e.spec for e in entries] == [
        "a.onnx",
        "http://127.0.0.1:1/v2/models/m/infer",
        "dir#2/model.onnx",
    ]
    assert entries[0].flags == {"layout": "nchw", "mean": "0.5", "std": "0.5"}
    assert entries[1].flags == {"pixels": "float"} and entries[2].flags == {}


@pytest.mark.parametrize("line", ["a.onnx --batch_size=3", "a.onnx layout=nchw", "a b.onnx"])
def test_only_input_format_flags_follow_a_spec(tmp_path, line):
    path = tmp_path / "list.txt"
    path.write_text(f"ok.onnx\n{line}\n")
    with pytest.raises(errors.ConfigError, match="list.txt:2: .* is not one of --pixels="):
        screening.read_specs(str(path))


def test_empty_or_missing_lists_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(errors.ConfigError, match="names no suspect"):
        screening.read_specs(str(empty))
    with pytest.raises(errors.StorageError, match="cannot read the suspect list"):
        screening.read_specs(str(tmp_path / "missing.txt"))


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A fingerprint, the model it came from, an independent model, a broken file."""
    d = tmp_path_factory.mktemp("screen")
    w, b = om.weights(SHAPE, K, seed=1)
    fp = om.fingerprint_of(w, b, SHAPE, K)
    artifact.save(str(d / "fp.npz"), fp)
    om.linear_onnx(d / "stolen.onnx", w, b, SHAPE, uint8=True)
    w2, b2 = om.weights(SHAPE, K, seed=5)
    om.linear_onnx(d / "independent.onnx", w2, b2, SHAPE, uint8=True)
    (d / "broken.onnx").write_text("no model here")
    om.linear_onnx(d / "stolen_nchw.onnx", w, b, SHAPE, layout="nchw", mean=(0.5,), std=(0.5,))
    (d / "list.txt").write_text(
        f"{d}/stolen.onnx\n{d}/broken.onnx  # fails\n{d}/independent.onnx\n"
        "no.such.module:predict\n"
        f"{d}/stolen_nchw.onnx --layout=nchw --mean=0.5 --std=0.5  # its own format\n"
        f"{d}/stolen_nchw.onnx --mean=0.5,x\n"
    )
    return d, fp


def test_each_suspect_gets_a_row(setting):
    d, fp = setting
    specs = screening.read_specs(str(d / "list.txt"))
    load = lambda e: suspects.load_suspect(
        e.spec,
        pixels=suspects.InputFormat(
            layout=e.flags.get("layout", "nhwc"),
            mean=tuple(float(v) for v in e.flags.get("mean", "").split(",") if v),
            std=tuple(float(v) for v in e.flags.get("std", "").split(",") if v),
        ),
    )
    rows = screening.verify_each(fp, specs[:5], load)
    assert [r["spec"] for r in rows] == [e.spec for e in specs[:5]]
    stolen, broken, independent, missing, nchw = rows
    assert nchw["fingerprint_accuracy"] == 1.0
    assert stolen["fingerprint_accuracy"] == 1.0 and stolen["verified"]
    assert "not an ONNX model" in broken["error"]
    assert independent["fingerprint_accuracy"] < 0.6 and not independent["verified"]
    assert "cannot import" in missing["error"]
    table = screening.table(rows)
    assert table.count("\n") == 6  # header, rule, five rows
    assert "derived (theta" in table and "not derived" in table and "failed: " in table
    assert screening.summary(rows).startswith("5 suspects: 2 verified as derived")


def test_a_bug_is_not_a_row(setting):
    d, fp = setting

    def load(spec):
        raise KeyError(spec)

    with pytest.raises(KeyError):
        screening.verify_each(fp, [input_format.Entry("x.onnx", {})], load)


def test_cli_writes_the_table_once(setting, tmp_path):
    d, _ = setting
    table = tmp_path / "verdicts.md"
    args = [f"--fingerprint={d}/fp.npz", f"--suspects={d}/list.txt", f"--table={table}"]
    proc = _cli.run("verify", *args)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("verified") for r in rows] == [True, None, False, None, True, None]
    assert "comma-separated numbers" in rows[5]["error"]  # a bad flag on a line: its row
    assert table.read_text().count("\n") == 8
    written = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert written == rows
    assert "6 suspects: 2 verified as derived" in proc.stderr
    before = _cli.tree_state(tmp_path)
    again = _cli.run("verify", *args, check=False)
    _cli.assert_one_line_error(again, "exists; name a new --table")
    assert _cli.tree_state(tmp_path) == before


@pytest.mark.parametrize(
    "extra,match",
    [
        ([], "name the suspect"),
        (["--suspect=a.onnx", "--suspects=list.txt"], "name the suspect"),
        (["--suspect=a.onnx", "--table=t.md"], "--table goes with --suspects"),
    ],
)
def test_cli_flag_mistakes(setting, extra, match):
    d, _ = setting
    proc = _cli.run("verify", f"--fingerprint={d}/fp.npz", *extra, check=False)
    _cli.assert_one_line_error(proc, match)
    assert not os.path.exists("t.md")
