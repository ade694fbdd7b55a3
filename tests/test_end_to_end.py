"""The README's end-to-end example, on small data: the owner's own Flax model
and images, a signed fingerprint, and suspects as a thief would hold them
(a checkpoint, an ONNX export, a model behind MLServer) verified in one list."""

import json

import numpy as np
from sklearn import datasets

from fingerprinting import ensemble
from fingerprinting import signing
from fingerprinting import suspects
import _mlserver as servers
from _cli import SMOKE, run
from _onnx_export import MEAN, STD, mlp_to_onnx

CONFIG = SMOKE.replace("digits.py", "custom.py")


def test_your_model_your_data_their_deployment(tmp_path):
    # 1. The owner's images, as an npz of uint8 pixels and labels.
    d = datasets.load_digits()
    images = np.round(d.images * 255 / 16).astype(np.uint8)[..., None]
    np.savez(tmp_path / "digits.npz", x=images, y=d.target)
    # 2. Extraction with the owner's Flax model as the source; the fingerprint is signed.
    wd = tmp_path / "run"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    proc = run(
        "extract",
        CONFIG,
        "--config.data.name=npz",
        f"--config.data.dir={tmp_path / 'digits.npz'}",
        "--config.models.source=tests._flax_source:digits_source",
        "--config.models.testing_surrogates=mlp:1",
        "--config.removal.attacks=",
        f"--workdir={wd}",
        env=env,
    )
    assert "sha256: " in proc.stdout and (wd / "owner.pub").exists()
    # 3. A thief's model exported to ONNX, channels first and normalised ...
    thief = str(wd / "models" / "testing_surrogate-mlp" / "0")
    params = ensemble.member(suspects.load_checkpoint(thief).variables, 0)["params"]
    onnx_path = mlp_to_onnx(params, (8, 8, 1), tmp_path / "shop.onnx")
    # 4. ... and deployed behind a third-party inference server.
    shop = {
        "name": "shop",
        "implementation": "_oip_model.OnnxModel",
        "parameters": {"extra": {"path": onnx_path}},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 10]}],
    }
    fmt = f"--layout=nchw --mean={MEAN} --std={STD}"
    (tmp_path / "server").mkdir()
    with servers.mlserver(tmp_path / "server", {"shop": shop}) as base:
        (tmp_path / "suspects.txt").write_text(
            "tests._flax_source:predict  # the owner's model itself\n"
            f"{thief}  # the thief's model as trained\n"
            f"{onnx_path} {fmt}  # exported\n"
            f"{base}/v2/models/shop/infer {fmt}  # deployed\n"
            f"{wd}/models/testing_reference-cnn_small/0  # an independent model\n"
        )
        proc = run(
            "verify",
            f"--fingerprint={wd / 'fingerprint.npz'}",
            f"--public_key={wd / 'owner.pub'}",
            f"--suspects={tmp_path / 'suspects.txt'}",
            f"--table={tmp_path / 'verdicts.md'}",
        )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "signature: valid" in proc.stderr
    assert [r.get("error") for r in rows] == [None] * 5, rows
    owner, trained, exported, deployed, independent = rows
    assert owner["fingerprint_accuracy"] == 1.0 and owner["verified"]
    assert [exported["protocol"], deployed["protocol"]] == ["onnx", "http-v2"]
    # One model, three ways to reach it: the same answers (up to a float tie).
    n = owner["fingerprint_size"]
    for other in (exported, deployed):
        assert abs(other["fingerprint_accuracy"] - trained["fingerprint_accuracy"]) <= 1 / n
        assert abs(other["decoy_accuracy"] - trained["decoy_accuracy"]) <= 1 / other["decoys"]
    assert trained["decoy_accuracy"] > 0.5  # a working thief, not noise
    table = (tmp_path / "verdicts.md").read_text()
    assert table.count("\n") == 7 and "shop.onnx" in table
    assert signing.check(str(wd / "fingerprint.npz"), str(wd / "owner.pub"))
