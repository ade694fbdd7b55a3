"""The fingerprint file round-trips exactly and refuses anything else."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from fingerprinting import artifact


def make_fp(n=5):
    rng = np.random.default_rng(0)
    return artifact.Fingerprint(
        x=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        original=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        keys=rng.integers(0, 10, n).astype(np.int32),
        truth=rng.integers(0, 10, n).astype(np.int32),
        conferrability=rng.uniform(size=n).astype(np.float32),
        meta={
            "dataset": "digits",
            "num_classes": 10,
            "input_shape": [8, 8, 1],
            "theta": 0.7,
            "class_names": [str(i) for i in range(10)],
        },
    )


def test_round_trip(tmp_path):
    fp = make_fp()
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    got = artifact.load(path)
    for name in artifact.ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(fp, name))
        assert getattr(got, name).dtype == artifact._arrays(fp)[name].dtype
    assert got.meta["dataset"] == "digits" and got.meta["format_version"] == artifact.FORMAT_VERSION
    assert got.input_shape == (8, 8, 1) and got.num_classes == 10
    np.testing.assert_allclose(got.inputs, fp.x / 255.0)


def _rewrite(data: bytes, **changes) -> bytes:
    with np.load(io.BytesIO(data)) as z:
        contents = {k: z[k] for k in z.files}
    contents.update(changes)
    buf = io.BytesIO()
    np.savez(buf, **contents)
    return buf.getvalue()


def test_tampered_keys_are_refused():
    data = artifact.to_bytes(make_fp())
    keys = artifact.from_bytes(data).keys.copy()
    keys[0] = (keys[0] + 1) % 10
    with pytest.raises(artifact.FingerprintError, match="SHA-256"):
        artifact.from_bytes(_rewrite(data, keys=keys))


def test_truncated_and_garbage_are_refused(tmp_path):
    data = artifact.to_bytes(make_fp())
    for bad in (data[: len(data) // 2], b"", b"not a zip", data[:-10]):
        with pytest.raises(artifact.FingerprintError):
            artifact.from_bytes(bad)
    with pytest.raises(artifact.FingerprintError, match="cannot read"):
        artifact.load(str(tmp_path / "missing.npz"))


def test_newer_format_is_refused():
    fp = make_fp()
    meta = dict(fp.meta, format_version=artifact.FORMAT_VERSION + 1)
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    arrays = artifact._arrays(fp)
    digest = artifact.content_hash(meta_bytes, arrays)
    buf = io.BytesIO()
    np.savez(
        buf,
        meta=np.frombuffer(meta_bytes, np.uint8),
        sha256=np.frombuffer(digest.encode(), np.uint8),
        **arrays,
    )
    with pytest.raises(artifact.FingerprintError, match="newer"):
        artifact.from_bytes(buf.getvalue())


def test_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    data = artifact.to_bytes(make_fp())
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, src.read(item))
        obj = io.BytesIO()
        np.save(obj, np.array([Evil()], dtype=object), allow_pickle=True)
        dst.writestr("evil.npy", obj.getvalue())
    with pytest.raises(artifact.FingerprintError):
        artifact.from_bytes(buf.getvalue())
    assert not marker.exists()
    with pytest.raises(artifact.FingerprintError):
        artifact.from_bytes(pickle.dumps(make_fp()))
