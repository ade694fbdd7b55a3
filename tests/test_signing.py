"""Signed fingerprints: a round trip, and every way a signature can fail to prove ownership."""

import base64
import hashlib
import json
import os
import stat

import pathlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fingerprinting import artifact
from fingerprinting import config as config_lib
from fingerprinting import signing

from _cli import ROOT, SMOKE, assert_one_line_error, run
from test_artifact import make_fp


@pytest.fixture(autouse=True)
def no_real_home(tmp_path, monkeypatch):
    """Every default key path points into tmp_path, never at the user's own key."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(signing.KEY_ENV, raising=False)


@pytest.fixture
def workdir(tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    artifact.save(str(wd / "fingerprint.npz"), make_fp(n=5, decoys=5))
    return str(wd)


def fingerprint(workdir):
    return os.path.join(workdir, "fingerprint.npz")


def read(path) -> bytes:
    return pathlib.Path(path).read_bytes()


def write(path, data: bytes) -> None:
    pathlib.Path(path).write_bytes(data)


def sign_in(workdir, key_path):
    return signing.sign_workdir(fingerprint(workdir), workdir, str(key_path))


def other_public_key(tmp_path):
    path = tmp_path / "other.pub"
    path.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return str(path)


def test_round_trip(workdir, tmp_path):
    signed = sign_in(workdir, tmp_path / "keys" / "owner.pem")
    digest = hashlib.sha256(read(fingerprint(workdir))).hexdigest()
    assert signed.digest == digest and signed.signed_now and signed.key_created
    assert signed.public_key_path == os.path.join(workdir, "owner.pub")
    assert signing.check(fingerprint(workdir), signed.public_key_path) == digest
    assert not any(b"PRIVATE" in read(os.path.join(workdir, n)) for n in os.listdir(workdir))
    text = signing.describe(signed)
    assert digest in text and "publish or timestamp" in text and signed.public_key_path in text


def test_signature_follows_the_documented_message(workdir, tmp_path):
    """A third party needs only the .sig fields, owner.pub and any Ed25519 tool."""
    signed = sign_in(workdir, tmp_path / "owner.pem")
    record = json.loads(read(signed.signature_path))
    assert record["message"] == f"fingerprinting-signature-v1 sha256={signed.digest}"
    public = serialization.load_pem_public_key(read(signed.public_key_path))
    public.verify(base64.b64decode(record["signature"]), record["message"].encode())


def test_one_changed_byte_is_refused(workdir, tmp_path):
    signed = sign_in(workdir, tmp_path / "owner.pem")
    data = bytearray(read(fingerprint(workdir)))
    data[len(data) // 2] ^= 1
    write(fingerprint(workdir), bytes(data))
    with pytest.raises(signing.SignatureError, match="changed after it was signed"):
        signing.check(fingerprint(workdir), signed.public_key_path)


def test_a_signature_by_another_key_is_refused(workdir, tmp_path):
    sign_in(workdir, tmp_path / "owner.pem")
    with pytest.raises(signing.SignatureError, match="made with another key"):
        signing.check(fingerprint(workdir), other_public_key(tmp_path))


def test_a_forged_signature_under_the_owners_key_is_refused(workdir, tmp_path):
    """The .sig names the owner's key but its signature came from someone else."""
    signed = sign_in(workdir, tmp_path / "owner.pem")
    record = json.loads(read(signed.signature_path))
    forger = ed25519.Ed25519PrivateKey.generate()
    record["signature"] = base64.b64encode(forger.sign(record["message"].encode())).decode()
    write(signed.signature_path, json.dumps(record).encode())
    with pytest.raises(signing.SignatureError, match="does not verify"):
        signing.check(fingerprint(workdir), signed.public_key_path)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: "not json {",
        lambda r: json.dumps(dict(r, algorithm="RSA")),
        lambda r: json.dumps(dict(r, version=99)),
        lambda r: json.dumps(dict(r, sha256="xyz")),
        lambda r: json.dumps(dict(r, signature="!!!")),
        lambda r: json.dumps(dict(r, public_key=base64.b64encode(b"short").decode())),
        lambda r: json.dumps({k: v for k, v in r.items() if k != "signature"}),
        lambda r: json.dumps([r]),
        lambda r: "\xff" * 10,
    ],
)
def test_a_malformed_signature_file_is_refused(workdir, tmp_path, change):
    signed = sign_in(workdir, tmp_path / "owner.pem")
    record = json.loads(read(signed.signature_path))
    write(signed.signature_path, change(record).encode())
    with pytest.raises(signing.SignatureError, match="malformed signature file"):
        signing.check(fingerprint(workdir), signed.public_key_path)


def test_a_missing_signature_file_is_refused(workdir, tmp_path):
    signed = sign_in(workdir, tmp_path / "owner.pem")
    os.unlink(signed.signature_path)
    with pytest.raises(signing.SignatureError, match="no signature file"):
        signing.check(fingerprint(workdir), signed.public_key_path)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"garbage\n", "not an Ed25519 public key"),
        (b"", "not an Ed25519 public key"),
        (None, "cannot read the public key"),
        ("private", "holds a private key"),
    ],
)
def test_a_bad_public_key_file_is_refused(workdir, tmp_path, content, match):
    sign_in(workdir, tmp_path / "owner.pem")
    path = tmp_path / "given.pub"
    if content == "private":
        content = (tmp_path / "owner.pem").read_bytes()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(signing.SignatureError, match=match):
        signing.check(fingerprint(workdir), str(path))


def test_key_is_made_once_with_mode_0600_and_reused(workdir, tmp_path):
    key_path = tmp_path / "keys" / "owner.pem"
    first = sign_in(workdir, key_path)
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    pem, sig_inode = key_path.read_bytes(), os.stat(first.signature_path).st_ino
    second = sign_in(workdir, key_path)
    assert second.key_created is False and second.signed_now is False
    assert second.key_id == first.key_id and key_path.read_bytes() == pem
    # Left alone, not rewritten (Ed25519 is deterministic: the bytes alone would not tell).
    assert os.stat(second.signature_path).st_ino == sig_inode
    assert not [n for n in os.listdir(key_path.parent) if n != "owner.pem"]  # no temporaries


def test_the_default_key_honours_the_environment(tmp_path, monkeypatch):
    assert signing.default_key_path() == str(
        tmp_path / "xdg" / "fingerprinting" / "owner_ed25519.pem"
    )
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert signing.default_key_path() == str(
        tmp_path / "home" / ".config" / "fingerprinting" / "owner_ed25519.pem"
    )
    monkeypatch.setenv(signing.KEY_ENV, str(tmp_path / "mine.pem"))
    assert signing.default_key_path() == str(tmp_path / "mine.pem")


def test_an_existing_key_file_is_never_overwritten(workdir, tmp_path):
    key_path = tmp_path / "owner.pem"
    key_path.write_bytes(b"not a key")
    with pytest.raises(signing.SignatureError, match="never overwritten"):
        signing.owner_key_path(str(key_path), workdir)
    with pytest.raises(signing.SignatureError, match="never overwritten"):
        sign_in(workdir, key_path)
    assert key_path.read_bytes() == b"not a key"
    assert signing.write_private_key(str(key_path), ed25519.Ed25519PrivateKey.generate()) is False
    assert key_path.read_bytes() == b"not a key"


def test_a_key_inside_the_workdir_is_refused(workdir, tmp_path):
    inside = [os.path.join(workdir, "owner.pem"), os.path.join(workdir, "sub", "..", "k.pem")]
    link = tmp_path / "link.pem"  # outside by name, inside through the link
    link.symlink_to(os.path.join(workdir, "k.pem"))
    for path in inside + [str(link)]:
        with pytest.raises(signing.SignatureError, match="inside the work directory"):
            signing.owner_key_path(path, workdir)
        with pytest.raises(signing.SignatureError, match="inside the work directory"):
            sign_in(workdir, path)
    assert sorted(os.listdir(workdir)) == ["fingerprint.npz"]
    assert signing.owner_key_path(os.path.join(workdir + "-keys", "k.pem"), workdir)  # a sibling


def test_a_reextracted_fingerprint_is_resigned_and_the_old_proof_kept(workdir, tmp_path):
    first = sign_in(workdir, tmp_path / "owner.pem")
    old = os.path.join(workdir, "fingerprint.old-1.npz")
    os.link(fingerprint(workdir), old)  # as extract --overwrite keeps the old file
    artifact.save(fingerprint(workdir), make_fp(n=6))
    second = sign_in(workdir, tmp_path / "owner.pem")
    assert second.signed_now and second.digest != first.digest
    assert signing.check(fingerprint(workdir), second.public_key_path) == second.digest
    assert signing.check(old, second.public_key_path) == first.digest


def test_a_valid_signature_by_another_key_is_not_replaced(workdir, tmp_path):
    sign_in(workdir, tmp_path / "owner.pem")
    sig = read(signing.signature_path(fingerprint(workdir)))
    with pytest.raises(signing.SignatureError, match="valid signature by another key"):
        sign_in(workdir, tmp_path / "other.pem")
    assert read(signing.signature_path(fingerprint(workdir))) == sig


def test_extract_signs_an_existing_fingerprint(tmp_path):
    """The entry point on a work directory whose fingerprint is already there: no training."""
    config = config_lib.load_module(os.path.join(ROOT, "configs", "digits.py"))
    fp = make_fp()
    fp.meta["config"] = {"extract": config.get_config("smoke").extract.to_dict()}
    wd = tmp_path / "wd"
    artifact.save(str(wd / "fingerprint.npz"), fp)
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = run("extract", SMOKE, f"--workdir={wd}", env=env)
    digest = hashlib.sha256((wd / "fingerprint.npz").read_bytes()).hexdigest()
    assert f"sha256: {digest}" in proc.stdout and "publish or timestamp" in proc.stdout
    key_path = tmp_path / "xdg" / "fingerprinting" / "owner_ed25519.pem"
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    assert signing.check(str(wd / "fingerprint.npz"), str(wd / "owner.pub")) == digest
    proc = run("extract", SMOKE, f"--workdir={wd}", f"--key={wd / 'k.pem'}", check=False)
    assert_one_line_error(proc, "inside the work directory")
    assert not (wd / "k.pem").exists()


def test_verify_refuses_a_fingerprint_the_key_did_not_sign(workdir, tmp_path):
    """`verify --public_key`: the signature is checked before any query."""
    sign_in(workdir, tmp_path / "owner.pem")
    fp_path, pub = fingerprint(workdir), signing.public_key_path(workdir)
    suspect = "tests.test_suspects:constant_model"
    proc = run("verify", f"--fingerprint={fp_path}", f"--suspect={suspect}", f"--public_key={pub}")
    assert "signature: valid" in proc.stderr and json.loads(proc.stdout)["n_queries"] == 10
    other = other_public_key(tmp_path)
    proc = run(
        "verify", f"--fingerprint={fp_path}", f"--suspect={suspect}", f"--public_key={other}",
        check=False,
    )
    assert_one_line_error(proc, "another key")
    assert proc.stdout == "" and "query" not in proc.stderr
    data = bytearray(read(fp_path))
    data[-1] ^= 1
    write(fp_path, bytes(data))
    proc = run(
        "verify", f"--fingerprint={fp_path}", f"--suspect={suspect}", f"--public_key={pub}",
        check=False,
    )
    assert_one_line_error(proc, "changed after it was signed")
