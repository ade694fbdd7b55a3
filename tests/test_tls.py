"""https suspects (issue 28): `serve`'s handler behind TLS, with a certificate
authority and server certificates made here. A certificate the verifier
trusts (`--ca_cert`, or OpenSSL's SSL_CERT_FILE) gives the verdict of plain
http; an untrusted one, or one for another host, is one error, never retried.
"""

import datetime
import functools
import ipaddress
import json
import socket
import ssl
import time

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

from fingerprinting import artifact
from fingerprinting import progress
from fingerprinting import suspects
from fingerprinting.suspects import client as http_client

import _faulty
from _cli import assert_one_line_error, run
from _faulty import http10, serving, url, verdict


def _builder(subject: str, key, issuer: x509.Name | None = None):
    """A certificate for `subject` valid for a day, issued by itself or `issuer`."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _usage(**allowed) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    names += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: allowed.get(n, False) for n in names})


def _authority(key) -> x509.Certificate:
    """A self-signed certificate authority, the kind a private deployment makes."""
    return (
        _builder("fingerprinting test CA", key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(_usage(key_cert_sign=True, crl_sign=True), True)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(key, hosts, ca=None, ca_key=None) -> x509.Certificate:
    """A certificate for `hosts`, signed by the authority `ca`, or self-signed."""
    names = [_host(h) for h in hosts]
    builder = (
        _builder(hosts[0], key, ca and ca.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_usage(digital_signature=True), True)
        .add_extension(x509.SubjectAlternativeName(names), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    )
    if ca is None:
        return builder.sign(key, hashes.SHA256())
    issuer_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return builder.add_extension(issuer_id, False).sign(ca_key, hashes.SHA256())


def _host(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Files: an authority's certificate ("ca"); a server's key and certificate
    signed by it for 127.0.0.1 ("local") and for another host ("other"); a
    self-signed one for 127.0.0.1 ("self-signed", its certificate alone in
    "self-signed.crt")."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())  # EC: generated in a millisecond
    ca = _authority(ca_key)
    (d / "ca.pem").write_bytes(_pem(ca))
    local, other = ("127.0.0.1", "localhost"), ("suspect.example",)
    for name, hosts, issuer in (
        ("local", local, (ca, ca_key)),
        ("other", other, (ca, ca_key)),
        ("self-signed", local, ()),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        secret = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        certificate = _pem(_server_certificate(key, hosts, *issuer))
        (d / f"{name}.pem").write_bytes(certificate + secret)
        (d / f"{name}.crt").write_bytes(certificate)
    files = {name: str(d / f"{name}.pem") for name in ("ca", "local", "other", "self-signed")}
    return {**files, "self-signed.crt": str(d / "self-signed.crt")}


def tls_serving(pki, certificate="local", variant=lambda handler: handler):
    """`serve`'s handler behind TLS, with the key and certificate named."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki[certificate])
    wrap = functools.partial(context.wrap_socket, server_side=True)
    return serving(variant, wrap=wrap)


@pytest.fixture(scope="module")
def fp():
    return _faulty.fingerprint()


@pytest.fixture(scope="module")
def reference(fp):
    """The verdict over plain http."""
    with serving() as (_, base):
        return verdict(fp, url(base, "v2", "m"), options())


@pytest.fixture
def logs(monkeypatch):
    lines = []
    monkeypatch.setattr(progress, "log", lines.append)
    return lines


def options(**kwargs) -> http_client.Options:
    return http_client.Options(timeout=10.0, retries=2, backoff=0.01, **kwargs)


@pytest.mark.parametrize(
    "certificate,connection",
    [("local", "keep-alive"), ("local", "http/1.0"), ("self-signed", "keep-alive")],
)
def test_a_trusted_certificate_gives_the_verdict_of_http(
    fp, reference, pki, certificate, connection
):
    variant = http10 if connection == "http/1.0" else lambda handler: handler
    trusted = pki["ca" if certificate == "local" else "self-signed.crt"]
    with tls_serving(pki, certificate, variant) as (model, base):
        result = verdict(fp, url(base, "v2", "m"), options(ca_cert=trusted))
    assert result == reference and model.inputs == 48


def test_ssl_cert_file_is_trusted(fp, reference, pki, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca"])  # read by OpenSSL, in this process too
    with tls_serving(pki) as (_, base):
        assert verdict(fp, url(base, "v2", "m"), options()) == reference


UNTRUSTED = "unable to get local issuer certificate); --ca_cert=FILE trusts a private authority"
OTHER_HOST = "IP address mismatch, certificate is not valid for '127.0.0.1'.)"


@pytest.mark.parametrize(
    "certificate,ca_cert,why", [("local", None, UNTRUSTED), ("other", "ca", OTHER_HOST)]
)
def test_a_refused_certificate_is_one_error_never_retried(fp, pki, logs, certificate, ca_cert, why):
    with tls_serving(pki, certificate) as (model, base):
        api = url(base, "v1", "m")
        with pytest.raises(suspects.SuspectError) as e:
            verdict(fp, api, options(ca_cert=pki.get(ca_cert)))
    assert str(e.value) == f"{api}: TLS certificate refused ({why}"
    assert logs == [] and model.inputs == 0  # no retry, nothing sent


def test_a_silent_handshake_ends_at_the_deadline():
    """A server that takes the connection and never answers the TLS hello."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts: the kernel does
        api = f"https://127.0.0.1:{silent.getsockname()[1]}/v1/models/m:predict"
        start = time.monotonic()
        with pytest.raises(suspects.SuspectError, match=r"timed out .* after 1 tries$"):
            suspect = suspects.load_suspect(api, http=http_client.Options(timeout=0.3, retries=0))
            suspect.predict(np.zeros((1, 8, 8, 1), np.uint8))
    assert time.monotonic() - start < 1.5


def test_certificates_are_always_checked(tmp_path):
    context = http_client.tls_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    api = "https://127.0.0.1:1/v1/models/m:predict"  # never contacted
    with pytest.raises(suspects.SuspectError, match=r"ca_cert .*not.pem: cannot load certificates"):
        suspects.load_suspect(api, http=options(ca_cert=str(not_pem)))
    with pytest.raises(suspects.SuspectError, match=r"ca_cert .*missing.pem: no such file"):
        suspects.load_suspect(api, http=options(ca_cert=str(tmp_path / "missing.pem")))


def test_cli_https(fp, reference, pki, tmp_path):
    """The issue's server (HTTP/1.0) behind TLS: a verdict with --ca_cert, else one error."""
    path = str(tmp_path / "fp.npz")
    artifact.save(path, fp)
    with tls_serving(pki, variant=http10) as (model, base):
        args = ("verify", f"--fingerprint={path}", f"--suspect={url(base, 'v2', 'm')}")
        result = json.loads(run(*args, "--batch_size=5", f"--ca_cert={pki['ca']}").stdout)
        proc = run(*args, check=False)
    assert {k: result[k] for k in reference} == reference and model.inputs == 48
    assert_one_line_error(proc, "TLS certificate refused (unable to get local issuer")
    assert proc.stdout == ""
