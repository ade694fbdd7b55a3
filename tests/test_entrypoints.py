"""End to end through the command lines, on the smoke config: train, extract,
evaluate, verify. Interruptions and bad input: test_reliability.py."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from fingerprinting import artifact
from fingerprinting import files

from _cli import ROOT, SMOKE, assert_one_line_error as _assert_one_line_error, run
from _configs import common


@pytest.fixture
def workdir(smoke_workdir):
    return smoke_workdir


def test_evaluate_writes_every_output(workdir):
    for name in (
        "config.json",
        "models.jsonl",
        "fingerprint.npz",
        "metrics.jsonl",
        "table1.jsonl",
        "report.md",
        "plots/fingerprint_accuracy.png",
        "plots/fingerprint_images.png",
        "plots/conferrability_per_example.png",
        "plots/removal_accuracy.png",
        "plots/removal_sweeps.png",
        "plots/evasion.png",
    ):
        assert os.path.exists(os.path.join(workdir, name)), name
    kinds = {r["kind"] for r in files.read_jsonl(os.path.join(workdir, "models.jsonl"))}
    assert kinds == {
        "source",
        "training_surrogate",
        "training_reference",
        "training_outsider_reference",
        "testing_surrogate",
        "label_only_surrogate",
        "testing_reference",
        "calibration_reference",
    }
    rows = files.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    source = [r for r in rows if r["kind"] == "source"][0]
    assert source["fingerprint_accuracy"] == 1.0  # the keys are the source's own labels
    for r in rows:
        assert 0 <= r["fingerprint_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    methods = {r["method"] for r in files.read_jsonl(os.path.join(workdir, "table1.jsonl"))}
    assert methods == {"cbim", "fgsm", "bim"}
    attacked = {r["attack"] for r in rows if r["kind"] == "attack"}
    assert attacked == set(common.SMOKE_REMOVAL["attacks"].split(","))
    assert [r["kind"] for r in rows].count("evasion") == 1  # one testing surrogate
    report = open(os.path.join(workdir, "report.md")).read()
    for section in ("Tables 2-3", "Tables 4-5", "Table 1", "evasion"):
        assert section in report, section
    # The verdict comes first: derived models caught, independent ones wrongly caught.
    assert report.splitlines()[2].startswith("**Verdict: "), report.splitlines()[:3]
    assert "of 2 derived models" in report.splitlines()[2]  # a testing and a label-only surrogate


def test_rerun_does_nothing_new(workdir):
    before = {
        n: os.path.getmtime(os.path.join(workdir, n)) for n in ("fingerprint.npz", "metrics.jsonl")
    }
    proc = run("extract", SMOKE, f"--workdir={workdir}")
    assert "nothing to do" in proc.stderr
    assert {n: os.path.getmtime(os.path.join(workdir, n)) for n in before} == before


def test_verify_checkpoint_suspect_matches_metrics(workdir):
    rows = {r["name"]: r for r in files.read_jsonl(os.path.join(workdir, "metrics.jsonl"))}
    name = "testing_surrogate-cnn_small/0"
    proc = run(
        "verify", f"--fingerprint={workdir}/fingerprint.npz", f"--suspect={workdir}/models/{name}"
    )
    result = json.loads(proc.stdout)
    assert result["fingerprint_accuracy"] == pytest.approx(rows[name]["fingerprint_accuracy"])
    fp = artifact.load(f"{workdir}/fingerprint.npz")
    assert result["fingerprint_size"] == len(fp) and len(fp.decoy_truth) == 3 * len(fp)
    assert result["n_queries"] == len(fp) + len(fp.decoy_truth)  # hidden among the decoys
    assert result["protocol"] == "checkpoint" and "fingerprint accuracy" in proc.stderr


def test_workdir_refuses_another_config(workdir):
    _assert_one_line_error(
        run("train", SMOKE, "--config.train.epochs=3", f"--workdir={workdir}", check=False),
        "another config",
    )


def test_empty_fingerprint_is_an_error_and_writes_nothing(workdir, tmp_path):
    wd = tmp_path / "copy"
    shutil.copytree(os.path.join(workdir, "models"), wd / "models")
    shutil.copy(os.path.join(workdir, "config.json"), wd / "config.json")
    _assert_one_line_error(
        run(
            "extract",
            SMOKE,
            "--config.extract.eps=0.001",
            "--config.extract.steps=1",
            "--config.extract.tau=1.0",
            f"--workdir={wd}",
            check=False,
        ),
        "no example reached conferrability",
    )
    assert not (wd / "fingerprint.npz").exists()


def test_error_line_stays_last_when_shutdown_prints(tmp_path):
    """Threads that print while the interpreter exits (Orbax after a failed
    restore does) must not bury the error line."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "import atexit, sys\n"
        "from fingerprinting import cli\n"
        "atexit.register(lambda: print('Traceback: Event loop is closed', file=sys.stderr))\n"
        "cli.fail('the group is not readable')\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    _assert_one_line_error(proc, "the group is not readable")
    assert "Event loop" not in proc.stderr
