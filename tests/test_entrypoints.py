"""End to end through the command lines, on the smoke config: train, extract,
evaluate, verify; a kill and a resume; and the errors a user can make."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from fingerprinting import artifact
from fingerprinting import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "--config=configs/digits.py:smoke"


def run(module, *args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", f"fingerprinting.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("run") / "wd")
    run("evaluate", SMOKE, f"--workdir={wd}")
    return wd


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
    ):
        assert os.path.exists(os.path.join(workdir, name)), name
    kinds = {r["kind"] for r in files.read_jsonl(os.path.join(workdir, "models.jsonl"))}
    assert kinds == {
        "source",
        "training_surrogate",
        "training_reference",
        "testing_surrogate",
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
    assert "Tables 2-3" in open(os.path.join(workdir, "report.md")).read()


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
    assert result["n_queries"] == len(artifact.load(f"{workdir}/fingerprint.npz"))
    assert result["protocol"] == "checkpoint" and "fingerprint accuracy" in proc.stderr


def _assert_one_line_error(proc, match):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert lines[-1].startswith("error:") and match in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_fingerprint_and_suspect(workdir, tmp_path):
    data = open(f"{workdir}/fingerprint.npz", "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    suspect = f"--suspect={workdir}/models/testing_reference-cnn_small/0"
    _assert_one_line_error(
        run("verify", f"--fingerprint={tmp_path}/cut.npz", suspect, check=False),
        "truncated or corrupt",
    )
    _assert_one_line_error(
        run("verify", f"--fingerprint={tmp_path}/none.npz", suspect, check=False),
        "cannot read fingerprint",
    )
    _assert_one_line_error(
        run(
            "verify",
            f"--fingerprint={workdir}/fingerprint.npz",
            f"--suspect={workdir}/models/testing_reference-cnn_small/7",
            check=False,
        ),
        "has 1 members",
    )


def test_foreign_suspect_shape_is_refused(workdir, tmp_path):
    fp = artifact.load(f"{workdir}/fingerprint.npz")
    fp.meta["num_classes"] = 5
    artifact.save(str(tmp_path / "five.npz"), fp)
    _assert_one_line_error(
        run(
            "verify",
            f"--fingerprint={tmp_path}/five.npz",
            f"--suspect={workdir}/models/testing_reference-cnn_small/0",
            check=False,
        ),
        "predicts 10 classes",
    )


def test_config_errors_fail_before_work(tmp_path):
    wd = tmp_path / "wd"
    _assert_one_line_error(
        run("train", SMOKE, "--config.models.source=resnet1000", f"--workdir={wd}", check=False),
        "unknown source architecture",
    )
    _assert_one_line_error(
        run(
            "train",
            SMOKE,
            "--config.models.testing_surrogates=cnn_small:x",
            f"--workdir={wd}",
            check=False,
        ),
        "bad member count",
    )
    _assert_one_line_error(
        run("train", SMOKE, "--config.data.name=mnist3d", f"--workdir={wd}", check=False), "mnist3d"
    )
    _assert_one_line_error(
        run("train", SMOKE, "--config.extract.eps=-0.1", f"--workdir={wd}", check=False),
        "extract.eps = -0.1 is out of range",
    )
    _assert_one_line_error(
        run("train", SMOKE, "--config.extract.loss=hinge", f"--workdir={wd}", check=False),
        "unknown extract.loss",
    )
    assert not (wd / "models").exists()


def test_workdir_refuses_another_config(workdir):
    _assert_one_line_error(
        run("train", SMOKE, "--config.train.epochs=3", f"--workdir={workdir}", check=False),
        "another config",
    )


def test_kill_and_resume_gives_the_same_models(workdir, tmp_path):
    wd = str(tmp_path / "killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fingerprinting.train", SMOKE, f"--workdir={wd}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    first = os.path.join(wd, "models", "training_surrogate-cnn_small", "result.json")
    while not os.path.exists(first) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(first)
    assert not os.path.exists(os.path.join(wd, "models.jsonl"))
    run("train", SMOKE, f"--workdir={wd}")
    key = lambda rows: sorted((r["name"], round(r["test_accuracy"], 6)) for r in rows)
    assert key(files.read_jsonl(os.path.join(wd, "models.jsonl"))) == key(
        files.read_jsonl(os.path.join(workdir, "models.jsonl"))
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
