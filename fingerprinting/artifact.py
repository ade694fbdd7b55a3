"""The fingerprint file: one self-describing, tamper-evident artifact.

A `.npz` archive (read with `allow_pickle=False`, so no code can ride in it)
holding the fingerprint inputs and their originals as uint8 pixels, the
verification keys (the source's labels), the true labels, per-example
conferrability, benign decoy inputs with their true labels (format 2; a
verifier hides the fingerprint among them), and a JSON metadata record (format
version, dataset, class names, input shape, the source's parameter hash,
theta, calibration statistics, the config that made it). A SHA-256 over the
metadata and every array is stored beside them; loading recomputes it and
refuses any file that does not match, is truncated, or comes from a newer
format. Format 3 adds the twin test's query log (`twin_test`): sampled
inputs the source's API answered, the source's and its twins' labels on them.
Before anything is decompressed, the sizes the zip directory declares
are checked: a file cannot unpack to gigabytes. Format 1 files (no decoys)
load with zero decoys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile

import numpy as np

from fingerprinting import errors
from fingerprinting import files

FORMAT_VERSION = 3
ARRAYS = ("x", "original", "keys", "truth", "conferrability")
DECOY_ARRAYS = ("decoy_x", "decoy_truth")  # since format 2
LOG_ARRAYS = ("log_x", "log_keys", "log_twin_labels")  # since format 3, the twin test
# Bytes a file may unpack to: thousands of times the largest fingerprint made here.
MAX_UNPACKED = 2 << 30


def to_uint8(x) -> np.ndarray:
    """Images in [0, 1] as the fingerprint file stores them."""
    return np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)


class FingerprintError(errors.UserError, ValueError):
    pass


@dataclasses.dataclass
class Fingerprint:
    x: np.ndarray  # uint8 [N, H, W, C]: what is sent to a suspect
    original: np.ndarray  # uint8 [N, H, W, C]: the starting points
    keys: np.ndarray  # int32 [N]: the source's labels on x (verification keys)
    truth: np.ndarray  # int32 [N]: ground truth of the originals
    conferrability: np.ndarray  # float32 [N] on the training models
    meta: dict
    decoy_x: np.ndarray | None = None  # uint8 [D, H, W, C]: benign test inputs
    decoy_truth: np.ndarray | None = None  # int32 [D]: their true labels
    log_x: np.ndarray | None = None  # uint8 [L, H, W, C]: the twin test's query log
    log_keys: np.ndarray | None = None  # int32 [L]: the source's labels on it
    log_twin_labels: np.ndarray | None = None  # int32 [K, L]: its twins' labels on it

    def __post_init__(self):
        if self.decoy_x is None:
            self.decoy_x = np.zeros((0, *np.shape(self.x)[1:]), np.uint8)
        if self.decoy_truth is None:
            self.decoy_truth = np.zeros((0,), np.int32)
        if self.log_x is None:
            self.log_x = np.zeros((0, *np.shape(self.x)[1:]), np.uint8)
            self.log_keys = np.zeros((0,), np.int32)
            self.log_twin_labels = np.zeros((0, 0), np.int32)

    def __len__(self):
        return len(self.keys)

    @property
    def inputs(self) -> np.ndarray:
        """Float pixels in [0, 1], as every model here takes them."""
        return self.x.astype(np.float32) / 255.0

    @property
    def log_inputs(self) -> np.ndarray:
        """The query log as float pixels in [0, 1] (empty without the twin test)."""
        return self.log_x.astype(np.float32) / 255.0

    @property
    def has_twin_test(self) -> bool:
        return len(self.log_keys) > 0

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])


def _arrays(fp: Fingerprint) -> dict[str, np.ndarray]:
    log = {}
    if fp.has_twin_test:
        log = {
            "log_x": np.asarray(fp.log_x, np.uint8),
            "log_keys": np.asarray(fp.log_keys, np.int32),
            "log_twin_labels": np.asarray(fp.log_twin_labels, np.int32),
        }
    return log | {
        "x": np.asarray(fp.x, np.uint8),
        "original": np.asarray(fp.original, np.uint8),
        "keys": np.asarray(fp.keys, np.int32),
        "truth": np.asarray(fp.truth, np.int32),
        "conferrability": np.asarray(fp.conferrability, np.float32),
        "decoy_x": np.asarray(fp.decoy_x, np.uint8),
        "decoy_truth": np.asarray(fp.decoy_truth, np.int32),
    }


def content_hash(meta_bytes: bytes, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the metadata and of every array present (format 1 files have
    no decoy arrays and files without the twin test no log, so their hashes
    stay valid)."""
    h = hashlib.sha256(meta_bytes)
    for name in (n for n in ARRAYS + DECOY_ARRAYS + LOG_ARRAYS if n in arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def to_bytes(fp: Fingerprint) -> bytes:
    meta = dict(fp.meta, format_version=FORMAT_VERSION)
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    arrays = _arrays(fp)
    digest = content_hash(meta_bytes, arrays)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        meta=np.frombuffer(meta_bytes, np.uint8),
        sha256=np.frombuffer(digest.encode(), np.uint8),
        **arrays,
    )
    return buf.getvalue()


def save(path: str, fp: Fingerprint) -> None:
    files.write_bytes_atomic(path, to_bytes(fp))


def unpacked_size(data: bytes) -> int:
    """Bytes the members of a zip archive decompress to, as its directory says;
    zipfile reads no member past its declared size, so the sum bounds memory."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return sum(info.file_size for info in z.infolist())


def from_bytes(data: bytes, name: str = "fingerprint") -> Fingerprint:
    try:
        size = unpacked_size(data)
    except Exception as e:  # noqa: BLE001 (zipfile raises many kinds on bad bytes)
        raise FingerprintError(
            f"{name}: not a readable fingerprint file (truncated or corrupt: {e})"
        ) from None
    if size > MAX_UNPACKED:
        raise FingerprintError(
            f"{name}: its members unpack to {size} bytes, over the {MAX_UNPACKED} a "
            "fingerprint file may hold; refused unread"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            contents = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 (zipfile, zlib and numpy raise many kinds on bad bytes)
        raise FingerprintError(
            f"{name}: not a readable fingerprint file (truncated or corrupt: {e})"
        ) from None
    missing = [k for k in ("meta", "sha256", *ARRAYS) if k not in contents]
    if missing:
        raise FingerprintError(f"{name}: not a fingerprint file (missing {', '.join(missing)})")
    try:
        meta_bytes = contents["meta"].astype(np.uint8).tobytes()
        meta = json.loads(meta_bytes)
        stored = contents["sha256"].astype(np.uint8).tobytes().decode("ascii")
    except (ValueError, UnicodeDecodeError) as e:
        raise FingerprintError(f"{name}: corrupt metadata ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format_version"), int):
        raise FingerprintError(f"{name}: metadata has no format version")
    if meta["format_version"] > FORMAT_VERSION:
        raise FingerprintError(
            f"{name}: format version {meta['format_version']} is newer than this "
            f"tool reads ({FORMAT_VERSION}); upgrade fingerprinting"
        )
    arrays = {k: contents[k] for k in ARRAYS + DECOY_ARRAYS + LOG_ARRAYS if k in contents}
    if content_hash(meta_bytes, arrays) != stored:
        raise FingerprintError(f"{name}: content does not match its SHA-256; the file was modified")
    n = len(arrays["keys"])
    if any(len(arrays[k]) != n for k in ARRAYS):
        raise FingerprintError(f"{name}: arrays of different lengths")
    if sum(k in arrays for k in DECOY_ARRAYS) == 1:
        raise FingerprintError(f"{name}: decoy inputs without their labels, or labels alone")
    if "decoy_x" in arrays and (
        len(arrays["decoy_x"]) != len(arrays["decoy_truth"])
        or arrays["decoy_x"].shape[1:] != arrays["x"].shape[1:]
    ):
        raise FingerprintError(f"{name}: decoy arrays do not match the fingerprint's shapes")
    present = [k for k in LOG_ARRAYS if k in arrays]
    if present and len(present) != len(LOG_ARRAYS):
        raise FingerprintError(f"{name}: a partial query log ({', '.join(present)} alone)")
    if present and (
        arrays["log_x"].shape[1:] != arrays["x"].shape[1:]
        or arrays["log_twin_labels"].ndim != 2
        or not len(arrays["log_keys"])
        or len(arrays["log_x"]) != len(arrays["log_keys"])
        or arrays["log_twin_labels"].shape[1] != len(arrays["log_keys"])
        or "twin_calibration" not in meta
    ):
        raise FingerprintError(f"{name}: the query log's arrays do not match each other")
    return Fingerprint(meta=meta, **arrays)


def load(path: str) -> Fingerprint:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FingerprintError(f"cannot read fingerprint {path}: {e.strerror}") from None
    return from_bytes(data, name=path)
