"""The fingerprint file round-trips exactly and refuses anything else."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from fingerprinting import artifact


def make_fp(n=5, decoys=0):
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
        decoy_x=rng.integers(0, 256, (decoys, 8, 8, 1), dtype=np.uint8),
        decoy_truth=rng.integers(0, 10, decoys).astype(np.int32),
    )


def _pack(meta: dict, arrays: dict) -> bytes:
    """A file with a valid hash over exactly these arrays (forged or from an older format)."""
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    buf = io.BytesIO()
    np.savez(
        buf,
        meta=np.frombuffer(meta_bytes, np.uint8),
        sha256=np.frombuffer(artifact.content_hash(meta_bytes, arrays).encode(), np.uint8),
        **arrays,
    )
    return buf.getvalue()


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
    assert got.decoy_x.shape == (0, 8, 8, 1) and got.decoy_truth.shape == (0,)


def test_decoys_round_trip_and_are_covered_by_the_hash():
    fp = make_fp(n=5, decoys=15)
    data = artifact.to_bytes(fp)
    got = artifact.from_bytes(data)
    np.testing.assert_array_equal(got.decoy_x, fp.decoy_x)
    np.testing.assert_array_equal(got.decoy_truth, fp.decoy_truth)
    assert got.decoy_truth.dtype == np.int32 and got.decoy_x.dtype == np.uint8
    truth = got.decoy_truth.copy()
    truth[3] = (truth[3] + 1) % 10
    with pytest.raises(artifact.FingerprintError, match="SHA-256"):
        artifact.from_bytes(_rewrite(data, decoy_truth=truth))
    with zipfile.ZipFile(io.BytesIO(data)) as src:  # decoys stripped out: also a modification
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as dst:
            for item in src.namelist():
                if not item.startswith("decoy_"):
                    dst.writestr(item, src.read(item))
    with pytest.raises(artifact.FingerprintError, match="SHA-256"):
        artifact.from_bytes(buf.getvalue())


def test_format_1_files_load_with_zero_decoys():
    fp = make_fp()
    arrays = {k: v for k, v in artifact._arrays(fp).items() if k in artifact.ARRAYS}
    got = artifact.from_bytes(_pack(dict(fp.meta, format_version=1), arrays))
    assert got.meta["format_version"] == 1 and len(got) == 5
    assert got.decoy_x.shape == (0, 8, 8, 1) and len(got.decoy_truth) == 0
    resaved = artifact.from_bytes(artifact.to_bytes(got))
    assert resaved.meta["format_version"] == artifact.FORMAT_VERSION == 3


def test_inconsistent_decoys_are_refused():
    fp = make_fp(decoys=6)
    meta = dict(fp.meta, format_version=artifact.FORMAT_VERSION)
    arrays = artifact._arrays(fp)
    alone = {k: v for k, v in arrays.items() if k != "decoy_truth"}
    with pytest.raises(artifact.FingerprintError, match="without their labels"):
        artifact.from_bytes(_pack(meta, alone))
    with pytest.raises(artifact.FingerprintError, match="do not match"):
        artifact.from_bytes(_pack(meta, dict(arrays, decoy_truth=arrays["decoy_truth"][:4])))
    with pytest.raises(artifact.FingerprintError, match="do not match"):
        artifact.from_bytes(_pack(meta, dict(arrays, decoy_x=np.zeros((6, 4, 4, 1), np.uint8))))


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
    with pytest.raises(artifact.FingerprintError, match="newer"):
        artifact.from_bytes(_pack(meta, artifact._arrays(fp)))


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


def test_member_sizes_are_checked_before_anything_is_decompressed(monkeypatch):
    """A zip directory declaring 4 GB for a member: refused from the directory alone."""
    data = bytearray(artifact.to_bytes(make_fp()))
    entry = data.index(b"PK\x01\x02")  # the first central directory record
    data[entry + 24 : entry + 28] = (0xFFFFFFF0).to_bytes(4, "little")  # its uncompressed size

    def no_load(*args, **kwargs):
        raise AssertionError("a member was decompressed")

    monkeypatch.setattr(np, "load", no_load)
    with pytest.raises(artifact.FingerprintError, match="unpack to 42949.* bytes, over the"):
        artifact.from_bytes(bytes(data), "forged.npz")
