"""Kill it anywhere, feed it garbage, tamper with its files.

Interruptions: the run is killed (SIGKILL) at named points (`fingerprinting.faults`)
one after another in the same work directory, each time resumed by the same
command, and must end with exactly what an uninterrupted run produced.

Bad input: every case is a fresh process that must end with exit status 2 and
one line on stderr naming the problem, and must leave the files it was given
as they were.
"""

import glob
import io
import json
import os
import re
import shutil
import signal

import numpy as np
import pytest

from fingerprinting import artifact
from fingerprinting import files
from fingerprinting import pipeline

from _cli import SMOKE, assert_one_line_error, run, tree_state
from _faulty import free_port, start, url

KILLED = -signal.SIGKILL

# (command, point[@n]): each kill lands in the work directory the previous ones left.
KILLS = [
    ("train", "train_chunk@3"),  # in the middle of an epoch
    ("train", "group@2"),  # between groups
    ("train", "group_final@1"),  # final variables written, result.json not yet
    ("train", "write@2"),  # in the middle of writing a file
    ("extract", "cbim_batch@1"),  # in the middle of the attack
    ("evaluate", "removal_attack@2"),  # between removal attacks
    ("evaluate", "table1_row@1"),  # between Table 1 rows
    ("evaluate", "write@2"),  # in the middle of writing metrics or the report
]


def _results(wd) -> dict:
    """Everything a run produces that must not depend on interruptions."""
    fp = artifact.load(os.path.join(wd, "fingerprint.npz"))
    drop = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "extract_seconds")}
    return {
        "fingerprint": {k: getattr(fp, k).tolist() for k in artifact.ARRAYS},
        "meta": drop(fp.meta),
        "models": files.read_jsonl(os.path.join(wd, "models.jsonl")),
        "metrics": [drop(r) for r in files.read_jsonl(os.path.join(wd, "metrics.jsonl"))],
        "table1": [drop(r) for r in files.read_jsonl(os.path.join(wd, "table1.jsonl"))],
    }


def test_killed_anywhere_resumes_to_the_same_results(smoke_workdir, tmp_path):
    wd = str(tmp_path / "killed")
    for module, point in KILLS:
        proc = run(
            module, SMOKE, f"--workdir={wd}", env={"FINGERPRINTING_KILL_AT": point}, check=False
        )
        assert proc.returncode == KILLED, (
            f"{module} was not killed at {point}:\n{proc.stderr[-2000:]}"
        )
    # A checkpoint whose writing was cut short: Orbax's temporary directory.
    ckpts = os.path.join(wd, "models", "testing_surrogate-cnn_small", "checkpoints")
    os.makedirs(os.path.join(ckpts, "1.orbax-checkpoint-tmp-0", "default"), exist_ok=True)
    with open(os.path.join(ckpts, "1.orbax-checkpoint-tmp-0", "default", "half"), "wb") as f:
        f.write(b"\x00" * 10)
    run("evaluate", SMOKE, f"--workdir={wd}")
    assert _results(wd) == _results(smoke_workdir)
    assert not [n for n in os.listdir(wd) if n.startswith(files.TMP_PREFIX)]


def test_killed_extraction_resumes_after_its_last_cbim_batch(smoke_workdir, tmp_path):
    """Batches finished before the kill are reused, and the fingerprint is the
    one an uninterrupted extraction makes."""
    small = "--config.extract.batch_size=8"  # the smoke run's 32 candidates: 4 batches
    wds = {}
    for name in ("whole", "killed"):
        wds[name] = str(tmp_path / name)
        shutil.copytree(smoke_workdir, wds[name])
        os.unlink(os.path.join(wds[name], "fingerprint.npz"))
    run("extract", SMOKE, small, f"--workdir={wds['whole']}")
    partial = os.path.join(wds["killed"], pipeline.PARTIAL_CBIM)
    env = {"FINGERPRINTING_KILL_AT": "cbim_batch@2"}
    proc = run("extract", SMOKE, small, f"--workdir={wds['killed']}", env=env, check=False)
    assert proc.returncode == KILLED, proc.stderr[-2000:]
    assert len([n for n in os.listdir(partial) if n.startswith("batch-")]) == 2
    proc = run("extract", SMOKE, small, f"--workdir={wds['killed']}")
    assert "16 of 32 inputs came from" in proc.stderr, proc.stderr[-2000:]
    assert not os.path.exists(partial)
    whole, resumed = (artifact.load(os.path.join(wds[n], "fingerprint.npz")) for n in wds)
    for name in artifact.ARRAYS:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    # Batches of other work (here: other settings) are thrown away, not mixed in.
    args = ("extract", SMOKE, small, f"--workdir={wds['killed']}", "--overwrite")
    assert run(*args, env=env, check=False).returncode == KILLED
    proc = run(*args, "--config.extract.steps=3")
    assert "came from" not in proc.stderr and not os.path.exists(partial)


def test_a_finished_run_does_nothing_again(smoke_workdir):
    before = tree_state(os.path.join(smoke_workdir, "models"))
    proc = run("train", SMOKE, f"--workdir={smoke_workdir}")
    assert "nothing to do" in proc.stderr
    proc = run("extract", SMOKE, f"--workdir={smoke_workdir}")
    assert "nothing to do" in proc.stderr
    proc = run("evaluate", SMOKE, f"--workdir={smoke_workdir}")
    assert "nothing to do but the report" in proc.stderr
    assert tree_state(os.path.join(smoke_workdir, "models")) == before


def test_overwrite_keeps_the_old_fingerprint(smoke_workdir, tmp_path):
    wd = tmp_path / "wd"
    shutil.copytree(smoke_workdir, wd)
    old = (wd / "fingerprint.npz").read_bytes()
    changed = [SMOKE, "--config.extract.steps=3", f"--workdir={wd}"]
    assert_one_line_error(run("extract", *changed, check=False), "pass --overwrite")
    assert (wd / "fingerprint.npz").read_bytes() == old
    run("extract", *changed, "--overwrite")
    assert (wd / "fingerprint.old-1.npz").read_bytes() == old
    new = artifact.load(str(wd / "fingerprint.npz"))
    assert new.meta["config"]["extract"]["steps"] == 3


def test_full_disk_loses_nothing(smoke_workdir, tmp_path):
    wd = tmp_path / "wd"
    shutil.copytree(smoke_workdir, wd)
    before = tree_state(wd)
    proc = run(
        "extract",
        SMOKE,
        "--config.extract.steps=3",
        "--overwrite",
        f"--workdir={wd}",
        env={"FINGERPRINTING_DISK_FULL": "fingerprint.npz"},
        check=False,
    )
    assert_one_line_error(proc, "No space left on device")
    # Nothing written before is touched; C-BIM's batches and the new
    # fingerprint's calibration references stay for the rerun.
    after = tree_state(wd)
    new_calibration = re.compile(r"models/calibration_reference-\w+-fp[0-9a-f]+/")
    partial = {
        k
        for k in after
        if pipeline.PARTIAL_CBIM in k or (k not in before and new_calibration.match(k))
    }
    assert partial and {k: v for k, v in after.items() if k not in partial} == before


# ----------------------------------------------------------------------------
# Bad input. Each case: (id, command, arguments, what the error line must say).
# Arguments may use {wd} (a copy of a finished smoke run) and {tmp} (a scratch
# directory); `_prepare` makes the broken files a case needs.


def _save_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _fingerprint_arrays(wd):
    with np.load(os.path.join(wd, "fingerprint.npz")) as z:
        return {k: z[k] for k in z.files}


def _prepare(case, wd, tmp):
    fp_path = os.path.join(wd, "fingerprint.npz")
    group = os.path.join(wd, "models", "testing_reference-cnn_small")
    if case == "config_syntax":
        with open(os.path.join(tmp, "bad.py"), "w") as f:
            f.write("def get_config(:\n")
    elif case == "data_empty":
        os.makedirs(os.path.join(tmp, "empty"))
    elif case == "data_layout":
        os.makedirs(os.path.join(tmp, "layout"))
        with open(os.path.join(tmp, "layout", "images.bin"), "wb") as f:
            f.write(b"\x00" * 64)
    elif case == "checkpoint_corrupt":
        for dirpath, _, names in os.walk(os.path.join(group, "final")):
            for name in names:
                with open(os.path.join(dirpath, name), "wb") as f:
                    f.write(b"garbage")
    elif case == "checkpoint_truncated":
        shutil.rmtree(os.path.join(group, "final", "d"))
    elif case == "checkpoint_foreign":
        shutil.rmtree(group)
        (foreign,) = glob.glob(os.path.join(wd, "models", "calibration_reference-mlp*"))
        shutil.copytree(foreign, group)
    elif case == "fingerprint_truncated":
        data = open(fp_path, "rb").read()
        with open(os.path.join(tmp, "fp.npz"), "wb") as f:
            f.write(data[: len(data) // 2])
    elif case == "fingerprint_tampered":
        arrays = _fingerprint_arrays(wd)
        arrays["keys"] = (arrays["keys"] + 1) % 10
        _save_npz(os.path.join(tmp, "fp.npz"), **arrays)
    elif case == "fingerprint_newer":
        arrays = _fingerprint_arrays(wd)
        meta = json.loads(arrays["meta"].tobytes())
        meta["format_version"] = artifact.FORMAT_VERSION + 1
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        digest = artifact.content_hash(arrays["meta"].tobytes(), arrays)
        arrays["sha256"] = np.frombuffer(digest.encode(), np.uint8)
        _save_npz(os.path.join(tmp, "fp.npz"), **arrays)
    elif case == "fingerprint_pickle":
        _save_npz(os.path.join(tmp, "fp.npz"), meta=np.array([_Payload(tmp)], dtype=object))
    elif case in ("fingerprint_shape", "fingerprint_classes"):
        fp = artifact.load(fp_path)
        if case == "fingerprint_shape":
            fp.meta["input_shape"] = [16, 16, 1]
        else:
            fp.meta["num_classes"] = 5
        artifact.save(os.path.join(tmp, "fp.npz"), fp)


class _Payload:
    """A pickled object whose loading would leave a file behind."""

    def __init__(self, tmp):
        self.marker = os.path.join(tmp, "pwned")

    def __reduce__(self):
        return (open, (self.marker, "w"))


REF = "--suspect={wd}/models/testing_reference-cnn_small/0"
FP = "--fingerprint={wd}/fingerprint.npz"
BAD_INPUT = [
    ("config_missing", "train", ["--config=configs/nope.py"], "No such file"),
    ("config_syntax", "train", ["--config={tmp}/bad.py"], "invalid syntax"),
    ("config_directory", "train", ["--config=configs"], "Is a directory"),
    ("config_argument", "train", ["--config=configs/digits.py:huge"], "unknown config argument"),
    ("config_key", "train", [SMOKE, "--config.train.epochz=2"], "unknown config key epochz"),
    ("config_section", "train", [SMOKE, "--config.trian.epochs=2"], "unknown config key trian"),
    ("config_type", "train", [SMOKE, "--config.train.epochs=many"], "--config.train.epochs=many"),
    ("config_range", "train", [SMOKE, "--config.extract.eps=-0.1"], "extract.eps = -0.1 is out"),
    (
        "config_count",
        "train",
        [SMOKE, "--config.models.testing_surrogates=mlp:x"],
        "bad member count",
    ),
    ("config_loss", "train", [SMOKE, "--config.extract.loss=hinge"], "unknown extract.loss"),
    ("dataset", "train", [SMOKE, "--config.data.name=mnist3d"], "mnist3d"),
    ("architecture", "train", [SMOKE, "--config.models.source=resnet1000"], "unknown source arch"),
    ("surrogate_arch", "train", [SMOKE, "--config.models.testing_references=lenet:1"], "lenet"),
    ("attack", "evaluate", [SMOKE, "--config.evaluate.table1_methods=cbim,jsma"], "jsma"),
    ("removal_attack", "evaluate", [SMOKE, "--config.removal.attacks=ftll,erase"], "erase"),
    ("removal_range", "train", [SMOKE, "--config.removal.noise_lambdas=0.1,1.5"], "noise"),
    ("evasion_range", "train", [SMOKE, "--config.evasion.max_auc=2"], "evasion.max_auc"),
    (
        "diverging",
        "train",
        [SMOKE, "--config.train.learning_rate=1e30"],
        "non-finite loss at steps",
    ),
    (
        "data_missing",
        "train",
        ["--config=configs/fashion_mnist.py:smoke", "--config.data.dir={tmp}/none"],
        "does not exist",
    ),
    (
        "data_empty",
        "train",
        ["--config=configs/fashion_mnist.py:smoke", "--config.data.dir={tmp}/empty"],
        "missing IDX file",
    ),
    (
        "data_layout",
        "train",
        ["--config=configs/cinic10.py:smoke", "--config.data.dir={tmp}/layout"],
        "one subfolder per class",
    ),
    ("checkpoint_corrupt", "train", [SMOKE], "is not a readable model group"),
    ("checkpoint_truncated", "train", [SMOKE], "is not a readable model group"),
    ("checkpoint_foreign", "train", [SMOKE], "holds mlp x2, the config asks for cnn_small x1"),
    ("suspect_corrupt", "verify", [FP, REF], "cannot restore the checkpoint"),
    ("fingerprint_missing", "verify", ["--fingerprint={tmp}/none.npz", REF], "cannot read"),
    (
        "fingerprint_truncated",
        "verify",
        ["--fingerprint={tmp}/fp.npz", REF],
        "truncated or corrupt",
    ),
    ("fingerprint_tampered", "verify", ["--fingerprint={tmp}/fp.npz", REF], "SHA-256"),
    ("fingerprint_newer", "verify", ["--fingerprint={tmp}/fp.npz", REF], "newer than this tool"),
    ("fingerprint_pickle", "verify", ["--fingerprint={tmp}/fp.npz", REF], "not a readable"),
    ("fingerprint_shape", "verify", ["--fingerprint={tmp}/fp.npz", REF], "takes inputs of shape"),
    ("fingerprint_classes", "verify", ["--fingerprint={tmp}/fp.npz", REF], "predicts 10 classes"),
    ("suspect_nothing", "verify", [FP, "--suspect=no_such_model"], "names no suspect"),
    ("suspect_member", "verify", [FP, REF[:-1] + "7"], "has 1 members"),
    ("suspect_module", "verify", [FP, "--suspect=no_such_module:predict"], "cannot import"),
    ("api_refused", "verify", [FP, "--suspect={refused}"], "connection refused after 2 tries"),
    ("api_timeout", "verify", [FP, "--suspect={v1}slow:predict", "--timeout=0.3"], "timed out"),
    ("api_http_error", "verify", [FP, "--suspect={v2}error500/infer"], "HTTP 500"),
    ("api_not_json", "verify", [FP, "--suspect={v1}garbage:predict"], "malformed JSON"),
    ("api_count", "verify", [FP, "--suspect={v2}short/infer"], "answers for"),
    ("api_range", "verify", [FP, "--suspect={v1}range:predict"], "labels out of range 0..9"),
    ("api_nan", "verify", [FP, "--suspect={v2}nan/infer"], "NaN"),
]


IN_RUN = (
    "checkpoint_corrupt",
    "checkpoint_truncated",
    "checkpoint_foreign",
    "attack",
    "removal_attack",
)


@pytest.fixture(scope="module")
def api():
    base, srv = start()
    yield {
        "v1": url(base, "v1", "MODEL").replace("MODEL:predict", ""),
        "v2": url(base, "v2", "MODEL").replace("MODEL/infer", ""),
        "refused": f"http://127.0.0.1:{free_port()}/v1/models/m:predict",
    }
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("case,module,args,match", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_clear_error_and_changes_nothing(
    case, module, args, match, smoke_workdir, tmp_path, api
):
    wd, tmp = str(tmp_path / "wd"), str(tmp_path / "scratch")
    shutil.copytree(smoke_workdir, wd)
    os.makedirs(tmp)
    if case == "suspect_corrupt":
        _prepare("checkpoint_corrupt", wd, tmp)
    _prepare(case, wd, tmp)
    before = tree_state(tmp_path)
    target = os.path.join(tmp, "target")  # a fresh work directory, which must stay unmade
    workdir = [] if module == "verify" else [f"--workdir={wd if case in IN_RUN else target}"]
    if case.startswith("api_"):
        workdir = ["--retries=1", "--backoff=0.01"]
    proc = run(module, *(a.format(wd=wd, tmp=tmp, **api) for a in args), *workdir, check=False)
    assert_one_line_error(proc, match)
    if case == "diverging":  # stops at once; no group counts as trained
        assert not any("result.json" in p for p in tree_state(target))
        return
    assert tree_state(tmp_path) == before
    assert not os.path.exists(target)
    assert not os.path.exists(os.path.join(tmp, "pwned"))  # no code ran from a file
