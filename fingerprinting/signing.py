"""Proof of ownership: the owner's Ed25519 key and the signature of a fingerprint file.

The fingerprint's own SHA-256 catches accidents; a signature catches tampering
and names who made the file. The owner's private key lives outside every work
directory (default `$FINGERPRINTING_KEY`, else
`$XDG_CONFIG_HOME/fingerprinting/owner_ed25519.pem`, `~/.config` when that is
unset); it is made on first use with file mode 0600 and never overwritten.
Signing writes two shareable files: `fingerprint.npz.sig` beside the
fingerprint (JSON: algorithm, the file's SHA-256, the signature, the public
key) and `WORKDIR/owner.pub` (PEM). The signature is over the ASCII message
`fingerprinting-signature-v1 sha256=<hex digest of the file's bytes>`, which
the .sig file also stores, so that any Ed25519 tool can check it with
owner.pub. A signature dates nothing: the digest should be published or
timestamped before a dispute.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import glob
import hashlib
import json
import os
import tempfile

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fingerprinting import errors
from fingerprinting import files
from fingerprinting import sharding

ALGORITHM = "Ed25519"
SIGNATURE_VERSION = 1
SIGNATURE_SUFFIX = ".sig"
PUBLIC_KEY_FILE = "owner.pub"
KEY_ENV = "FINGERPRINTING_KEY"
KEY_FILE = os.path.join("fingerprinting", "owner_ed25519.pem")
# A signature file is a few hundred bytes and a public key PEM 113; anything
# much larger is not one, and is refused unread.
MAX_SMALL_FILE = 64 << 10


class SignatureError(errors.UserError, ValueError):
    """A key or signature that is missing, malformed, from another owner, or stale."""


@dataclasses.dataclass(frozen=True)
class Signed:
    """What `sign_workdir` did, for the entry point to tell the user."""

    digest: str  # SHA-256 of the fingerprint file's bytes
    signature_path: str
    public_key_path: str
    key_path: str
    key_id: str
    key_created: bool
    signed_now: bool  # False: a valid signature by this key was already there


# Paths.


def default_key_path() -> str:
    """$FINGERPRINTING_KEY, else the key in the user's config directory."""
    if os.environ.get(KEY_ENV):
        return os.path.expanduser(os.environ[KEY_ENV])
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config"
    )
    return os.path.join(config_home, KEY_FILE)


def signature_path(fingerprint_path: str) -> str:
    return fingerprint_path + SIGNATURE_SUFFIX


def public_key_path(workdir: str) -> str:
    return os.path.join(workdir, PUBLIC_KEY_FILE)


def _is_inside(path: str, directory: str) -> bool:
    try:
        return os.path.commonpath([path, directory]) == directory
    except ValueError:  # different drives
        return False


def refuse_key_inside(key_path: str, workdir: str) -> None:
    """Raises SignatureError when `key_path` lies inside `workdir`, by its name
    or through links: everything in a work directory may be shared."""
    for resolve in (os.path.abspath, os.path.realpath):
        if _is_inside(resolve(key_path), resolve(workdir)):
            raise SignatureError(
                f"the private key {key_path} lies inside the work directory {workdir}, "
                "whose files are meant to be shared; keep it outside (--key=PATH)"
            )


def owner_key_path(key_path: str | None, workdir: str) -> str:
    """The private key to sign with: `key_path`, else `default_key_path()`.

    Checked before any long work: a path inside `workdir` is refused, and an
    existing file must hold an Ed25519 private key (SignatureError otherwise).
    """
    path = os.path.expanduser(key_path) if key_path else default_key_path()
    refuse_key_inside(path, workdir)
    if os.path.exists(path):
        read_private_key(path)
    return path


# Keys.


def _read_small(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SMALL_FILE + 1)
    except OSError as e:
        raise SignatureError(f"cannot read the {what} {path}: {e.strerror}") from None
    if len(data) > MAX_SMALL_FILE:
        raise SignatureError(f"{path} is over {MAX_SMALL_FILE} bytes: not a {what}")
    return data


def read_private_key(path: str) -> ed25519.Ed25519PrivateKey:
    """The unencrypted PEM Ed25519 private key in `path`; SignatureError otherwise."""
    data = _read_small(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, crypto_exceptions.UnsupportedAlgorithm):
        key = None  # TypeError: the key is encrypted
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(
            f"{path} does not hold an unencrypted Ed25519 private key in PEM; "
            "it is never overwritten: move it away or pass another --key"
        )
    return key


def write_private_key(path: str, key: ed25519.Ed25519PrivateKey) -> bool:
    """Writes `key` to `path` whole, with mode 0600, unless a key is already
    there (two processes may race for it); returns whether it wrote."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=files.TMP_PREFIX, dir=directory)  # mode 0600
    except OSError as e:
        raise SignatureError(f"cannot write the private key {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # unlike a rename, never replaces a file already there
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise SignatureError(f"cannot write the private key {path}: {e.strerror}") from None
    finally:
        os.unlink(tmp)


def load_or_create_private_key(path: str) -> tuple[ed25519.Ed25519PrivateKey, bool]:
    """The key in `path`, made there first when there is none; and whether it was made."""
    if not os.path.exists(path) and write_private_key(path, ed25519.Ed25519PrivateKey.generate()):
        return read_private_key(path), True
    return read_private_key(path), False


def public_bytes(public_key: ed25519.Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: ed25519.Ed25519PublicKey) -> str:
    """A short name for a key that people can compare by eye."""
    return hashlib.sha256(public_bytes(public_key)).hexdigest()[:16]


def read_public_key(path: str) -> ed25519.Ed25519PublicKey:
    """The PEM Ed25519 public key in `path`; SignatureError otherwise."""
    data = _read_small(path, "public key")
    if b"PRIVATE KEY" in data:
        raise SignatureError(
            f"{path} holds a private key; check with the public key ({PUBLIC_KEY_FILE}) "
            "and keep the private one secret"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, crypto_exceptions.UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 public key in PEM")
    return key


def write_public_key(path: str, public_key: ed25519.Ed25519PublicKey) -> None:
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not os.path.exists(path) or _read_small(path, "public key") != pem:
        files.write_bytes_atomic(path, pem)


# Signatures.


def file_sha256(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise SignatureError(f"cannot read the fingerprint {path}: {e.strerror}") from None


def signed_message(digest: str) -> bytes:
    # A fixed prefix: a signature made here cannot pass for one over other data.
    return f"fingerprinting-signature-v1 sha256={digest}".encode("ascii")


def sign(fingerprint_path: str, private_key: ed25519.Ed25519PrivateKey) -> str:
    """Writes the signature file beside `fingerprint_path`; returns the file's SHA-256."""
    digest = file_sha256(fingerprint_path)
    record = {
        "algorithm": ALGORITHM,
        "version": SIGNATURE_VERSION,
        "file": os.path.basename(fingerprint_path),
        "sha256": digest,
        "message": signed_message(digest).decode("ascii"),
        "signature": base64.b64encode(private_key.sign(signed_message(digest))).decode("ascii"),
        "public_key": base64.b64encode(public_bytes(private_key.public_key())).decode("ascii"),
    }
    files.write_json_atomic(signature_path(fingerprint_path), record)
    return digest


def _decode(record: dict, field: str, size: int) -> bytes:
    try:
        value = base64.b64decode(record[field], validate=True)
    except (KeyError, TypeError, binascii.Error):
        value = b""
    if len(value) != size:
        raise ValueError(f"no {size}-byte base64 {field}")
    return value


def read_signature(path: str) -> dict:
    """The fields of a signature file, checked; `signature` and `public_key` as bytes."""
    if not os.path.exists(path):
        raise SignatureError(f"no signature file {path}; the owner signs with extract")
    data = _read_small(path, "signature file")
    try:
        record = json.loads(data)
        if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM:
            raise ValueError(f"algorithm is not {ALGORITHM}")
        if record.get("version") != SIGNATURE_VERSION:
            raise ValueError(f"version is not {SIGNATURE_VERSION}")
        digest = record.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError("sha256 is not 64 lowercase hex digits")
        if record.get("message") != signed_message(digest).decode("ascii"):
            raise ValueError("message does not name the sha256")
        record = dict(
            record,
            signature=_decode(record, "signature", 64),
            public_key=_decode(record, "public_key", 32),
        )
        ed25519.Ed25519PublicKey.from_public_bytes(record["public_key"])
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SignatureError(f"malformed signature file {path}: {e}") from None
    return record


def check_with_key(fingerprint_path: str, public_key: ed25519.Ed25519PublicKey) -> str:
    """`check` with the public key already read."""
    sig_path = signature_path(fingerprint_path)
    record = read_signature(sig_path)
    signer = ed25519.Ed25519PublicKey.from_public_bytes(record["public_key"])
    if record["public_key"] != public_bytes(public_key):
        raise SignatureError(
            f"{sig_path} was made with another key (key id {key_id(signer)}, "
            f"not {key_id(public_key)}): not signed by this owner"
        )
    digest = file_sha256(fingerprint_path)
    if digest != record["sha256"]:
        raise SignatureError(
            f"{fingerprint_path} was changed after it was signed "
            f"(its SHA-256 is {digest[:16]}..., the signature is over {record['sha256'][:16]}...)"
        )
    try:
        public_key.verify(record["signature"], signed_message(digest))
    except crypto_exceptions.InvalidSignature:
        raise SignatureError(
            f"the signature in {sig_path} does not verify with key id {key_id(public_key)}: "
            "the signature file was altered"
        ) from None
    return digest


def check(fingerprint_path: str, public_key_path: str) -> str:
    """Checks that the owner of the key in `public_key_path` signed the
    fingerprint file exactly as it is now; returns the file's SHA-256 (hex).

    Reads `fingerprint_path + ".sig"`. Raises SignatureError (a UserError and a
    ValueError), with one line saying which, when: the public-key file is
    missing, unreadable, or not a PEM Ed25519 public key (or holds a private
    key); there is no signature file; the signature file is malformed (not
    JSON, another algorithm or version, bad fields); it was made with another
    key; the fingerprint file was changed after it was signed (or cannot be
    read); or the signature does not verify (the signature file was altered).
    """
    return check_with_key(fingerprint_path, read_public_key(public_key_path))


def valid_signer(fingerprint_path: str) -> bytes | None:
    """The raw public key of a valid signature beside the fingerprint as it is
    now, whoever made it; None when it is missing, malformed or stale."""
    try:
        record = read_signature(signature_path(fingerprint_path))
        signer = ed25519.Ed25519PublicKey.from_public_bytes(record["public_key"])
        check_with_key(fingerprint_path, signer)
    except SignatureError:
        return None
    return record["public_key"]


def keep_stale_signature(fingerprint_path: str) -> str | None:
    """Copies a stale signature to the kept older fingerprint it signs
    (NAME.old-N.EXT, as `extract --overwrite` leaves it) that has none yet, so
    that re-signing the new file loses no proof; returns where it went."""
    sig_path = signature_path(fingerprint_path)
    try:
        record = read_signature(sig_path)
    except SignatureError:
        return None
    stem, ext = os.path.splitext(fingerprint_path)
    for old in sorted(glob.glob(glob.escape(stem) + ".old-*" + glob.escape(ext))):
        if not os.path.exists(signature_path(old)) and file_sha256(old) == record["sha256"]:
            with open(sig_path, "rb") as f:
                files.write_bytes_atomic(signature_path(old), f.read())
            return signature_path(old)
    return None


def sign_workdir(fingerprint_path: str, workdir: str, key_path: str) -> Signed | None:
    """Signs the work directory's fingerprint with the key at `key_path` (made
    on first use) unless a valid signature by that key is already there, and
    writes WORKDIR/owner.pub. Raises SignatureError for a key path inside
    `workdir`, a bad key file, or a valid signature by another key (never
    replaced: that would discard the other key's proof). Returns None on the
    processes of a multi-host run that do not write files.
    """
    if not sharding.writes_files():
        return None
    refuse_key_inside(key_path, workdir)
    key, created = load_or_create_private_key(key_path)
    public = key.public_key()
    signer = valid_signer(fingerprint_path)
    sig_path = signature_path(fingerprint_path)
    if signer is not None and signer != public_bytes(public):
        raise SignatureError(
            f"{sig_path} is a valid signature by another key "
            f"(key id {key_id(ed25519.Ed25519PublicKey.from_public_bytes(signer))}); "
            f"pass that key with --key, or remove {sig_path} to sign with {key_path}"
        )
    if signer is None:
        keep_stale_signature(fingerprint_path)
        sign(fingerprint_path, key)
    write_public_key(public_key_path(workdir), public)
    return Signed(
        digest=file_sha256(fingerprint_path),
        signature_path=sig_path,
        public_key_path=public_key_path(workdir),
        key_path=key_path,
        key_id=key_id(public),
        key_created=created,
        signed_now=signer is None,
    )


def describe(signed: Signed) -> str:
    """What the owner should know and do after signing, as lines to print."""
    lines = []
    if signed.key_created:
        lines.append(
            f"made a new owner key {signed.key_path} (mode 0600): back it up and keep it "
            "secret; fingerprints signed later must use the same key"
        )
    verb = "signed" if signed.signed_now else "already signed"
    lines += [
        f"{verb}: {signed.signature_path} (Ed25519, key id {signed.key_id})",
        f"sha256: {signed.digest}",
        (
            "publish or timestamp this SHA-256 now, before any dispute: a signature proves "
            "who made the file, not when"
        ),
        f"public key to share with a verifier: {signed.public_key_path}",
    ]
    return "\n".join(lines)
