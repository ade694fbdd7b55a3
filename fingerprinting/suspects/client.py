"""The HTTP client: prediction APIs queried as a careful verifier would, of a
server the thief controls.

Batches go over one kept-alive connection while the server keeps it (a new
one after an answer that ends it: HTTP/1.0, `Connection: close`, a body read
to the close, or a server that drops idle connections), with a timeout on
every whole request (a server trickling bytes cannot stall it), a cap on the
size of each answer derived from its request (bytes on the wire too, however
they are framed), bounded retries with exponential back-off (capped,
whatever `Retry-After` asks) after refused connections, timeouts, garbled
answers, HTTP 429 and 5xx, and a limit on requests per second. https
certificates are always checked, against the system's authorities or those
of `Options.ca_cert`; a certificate refused is never retried, and neither
is a redirect, which is never followed. Any failure raises `SuspectError`
with one line naming it, and text echoed from the server has its
non-printable characters escaped; answers are used only when every request
succeeded. Standard library only.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import functools
import http.client
import io
import ipaddress
import json
import math
import os
import re
import ssl
import time
import urllib.parse

import numpy as np

from fingerprinting import progress
from fingerprinting.suspects.base import Suspect
from fingerprinting.suspects.base import SuspectError
from fingerprinting.suspects.base import printable
from fingerprinting.suspects.base import to_pixels
from fingerprinting.suspects.protocols import PROTOCOLS
from fingerprinting.suspects.protocols import decode_v1
from fingerprinting.suspects.protocols import decode_v2
from fingerprinting.suspects.protocols import encode_v1
from fingerprinting.suspects.protocols import encode_v2
from fingerprinting.suspects.protocols import parse_path

RETRIED_STATUS = (429, 500, 502, 503, 504)  # the server may recover; others will not
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
META_BYTES = 1 << 20  # cap on a V2 metadata answer


def answer_cap(n: int, num_classes: int | None) -> int:
    """Bytes an honest answer to `n` inputs stays under: scores [n, K] as JSON
    take about 20 bytes a value; 256 a value, a thousand classes when K is not
    known yet, and a mebibyte of envelope leave a wide margin."""
    return (1 << 20) + 256 * n * (num_classes or 1000)


def wire_cap(max_bytes: int) -> int:
    """Bytes read from the socket for one answer at most: its status line,
    headers and chunk framing may add as much again as the body's cap.
    http.client trusts a chunk's size (a negative one reads to the close), so
    the body's cap alone does not bound what is read."""
    return 2 * max_bytes


def retry_after(value: str | None) -> float:
    """Seconds a `Retry-After` header asks to wait: ASCII digits or an HTTP date;
    anything else is ignored (0). The caller caps it."""
    value = (value or "").strip()
    if re.fullmatch(r"[0-9]+", value):  # str.isdigit accepts '²' too
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return 0.0
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_header(text: str, environ=None) -> tuple[str, str]:
    """('Name', 'value') from 'Name: value'. `$VAR` and `${VAR}` in the value are
    read from the environment, so that a secret need not be on the command line
    (write the flag in single quotes); an unset variable is an error. Error
    messages name the header, never its value; `Options.check` validates it."""
    environ = os.environ if environ is None else environ
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon:  # the text may be the secret itself: not repeated
        raise SuspectError("an HTTP header must be given as 'Name: value'")

    def lookup(m):
        var = m.group(1) or m.group(2)
        if var not in environ:
            raise SuspectError(f"HTTP header {name}: environment variable {var} is not set")
        return environ[var]

    return name, re.sub(r"\$\{(\w+)\}|\$(\w+)", lookup, value.strip())


@dataclasses.dataclass
class Options:
    """How carefully an API is queried."""

    timeout: float = 30.0  # seconds for a whole request: connect, send, every byte of the answer
    retries: int = 3  # further tries of a failed request
    backoff: float = 0.5  # seconds before the first retry; doubles after each
    max_backoff: float = 60.0  # seconds between tries at most, whatever Retry-After asks
    rate_limit: float = 0.0  # requests per second at most; 0: no limit
    protocol: str = "auto"  # v1, v2, or auto: from the URL's path
    headers: tuple = ()  # (name, value) pairs sent with every request, e.g. an API key
    ca_cert: str | None = None  # PEM authorities trusted for https instead of the system's

    def check(self) -> None:
        checks = [
            ("timeout", self.timeout > 0),
            ("retries", self.retries >= 0),
            ("backoff", self.backoff >= 0),
            ("max_backoff", self.max_backoff >= 0),
            ("rate_limit", self.rate_limit >= 0),
        ]
        for field, ok in checks:
            if not ok:
                raise SuspectError(f"{field} = {getattr(self, field)!r} is out of range")
        for name, value in self.headers:
            if not _HEADER_NAME.fullmatch(name):
                raise SuspectError(f"HTTP header name {name[:40]!r} is not a valid name")
            if any(c in value for c in "\r\n\0"):  # header injection
                raise SuspectError(f"HTTP header {name}: not a valid header value")
        if self.ca_cert is not None and not os.path.isfile(self.ca_cert):
            raise SuspectError(f"ca_cert {self.ca_cert}: no such file")
        if self.protocol not in ("auto",) + PROTOCOLS:
            raise SuspectError(
                f"unknown protocol {self.protocol!r}; expected auto, {' or '.join(PROTOCOLS)}"
            )


def tls_context(ca_cert: str | None) -> ssl.SSLContext:
    """Certificate and host name checks, against the system's authorities
    (OpenSSL reads SSL_CERT_FILE and SSL_CERT_DIR) or only `ca_cert`'s."""
    try:
        return ssl.create_default_context(cafile=ca_cert)
    except OSError as e:  # ssl.SSLError is one: not PEM, no certificate in it
        why = printable(e.strerror or str(e))
        raise SuspectError(f"ca_cert {ca_cert}: cannot load certificates from it ({why})") from None


class _TLSConnection(http.client.HTTPConnection):
    """https whose handshake gets only what is left of the request's deadline
    (http.client's gives the handshake a whole timeout of its own)."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, netloc: str, *, context: ssl.SSLContext, deadline: float):
        super().__init__(netloc, timeout=max(deadline - time.monotonic(), 1e-3))
        self._tls, self._deadline = context, deadline

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(max(self._deadline - time.monotonic(), 1e-3))
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


class _BoundedIO(io.RawIOBase):
    """A socket's reader that gives each read only what is left of one deadline,
    and reads at most `max_bytes`. A socket timeout alone bounds each read: a
    server trickling a byte a second would hold the verifier for ever."""

    def __init__(self, raw, sock, deadline: float, max_bytes: int):
        self._raw, self._sock, self._deadline = raw, sock, deadline
        self._cap = self._left = max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not arrive in time")
        if self._left <= 0:
            raise AnswerTooLarge(
                f"over {self._cap} bytes for this request, counting headers and framing"
            )
        self._sock.settimeout(left)
        n = self._raw.readinto(memoryview(b)[: self._left])
        self._left -= n or 0
        return n

    def close(self) -> None:
        self._raw.close()  # lets the connection close the socket
        super().close()


class _TimedResponse(http.client.HTTPResponse):
    """An HTTP response whose status line, headers and body share one deadline
    and one cap on the bytes read."""

    def __init__(self, sock, *args, deadline: float, max_bytes: int, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_BoundedIO(self.fp.detach(), sock, deadline, max_bytes))

    def reusable(self) -> bool:
        """Whether the connection may carry another request: the answer was read
        whole, the server keeps the connection, and where the answer ended was
        plain (bytes after an ambiguous end would be read as the next answer)."""
        lengths = self.headers.get_all("Content-Length", [])
        if self.chunked:
            plain = not lengths  # both: RFC 9112 has the connection closed after
        else:
            plain = len(lengths) == 1 and re.fullmatch(r"[0-9]+", lengths[0].strip()) is not None
        return self.isclosed() and not self.will_close and plain


class AnswerTooLarge(Exception):
    """An answer over the cap of its request: an error, never retried."""


class HTTPStatusError(SuspectError):
    """A status a retry will not change (404, 401, ...)."""

    def __init__(self, url: str, what: str):
        super().__init__(f"{url}: {what}")
        self.what = what


class Client:
    """JSON over HTTP to one server, with the timeouts, retries and pacing of `Options`.

    `counters["retries"]` counts the requests sent again after a failure.
    """

    def __init__(self, url: str, options: Options, counters: dict):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SuspectError(f"{url}: not an http(s) URL")
        self.url, self.options, self.counters = url, options, counters
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.query = f"?{parts.query}" if parts.query else ""  # may carry an API key
        self.path = parts.path + self.query
        self._tls = tls_context(options.ca_cert) if parts.scheme == "https" else None
        self._conn = None
        self._last_start = -math.inf
        if options.headers and parts.scheme == "http" and not is_loopback(parts.hostname):
            progress.log(
                f"warning: {url}: the HTTP headers (an API key?) travel in clear text "
                "to a host that is not this machine; use https"
            )

    def _open(self, deadline: float) -> http.client.HTTPConnection:
        """A new connection, to be connected within the deadline."""
        if self._tls is None:
            left = max(deadline - time.monotonic(), 1e-3)
            return http.client.HTTPConnection(self.netloc, timeout=left)
        return _TLSConnection(self.netloc, context=self._tls, deadline=deadline)

    def _connection(self, deadline: float, max_bytes: int) -> http.client.HTTPConnection:
        """The kept connection, or a new one."""
        if self._conn is None:
            self._conn = self._open(deadline)
            self._conn.connect()  # on failure, the caller drops it
        conn = self._conn
        conn.sock.settimeout(max(deadline - time.monotonic(), 1e-3))  # bounds the send
        conn.response_class = functools.partial(
            _TimedResponse, deadline=deadline, max_bytes=wire_cap(max_bytes)
        )
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the next try starts a fresh connection
            self._conn = None

    def _pace(self) -> None:
        if self.options.rate_limit > 0:
            wait = self._last_start + 1.0 / self.options.rate_limit - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_start = time.monotonic()

    def _exchange(self, method: str, path: str, body: bytes | None, max_bytes: int, deadline):
        headers = dict(self.options.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn = self._connection(deadline, max_bytes)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            # response.length: the Content-Length as http.client will read the body by it
            if response.length is not None and response.length > max_bytes:
                raise AnswerTooLarge(
                    f"{response.length} bytes declared; the cap for this request is {max_bytes}"
                )
            data = response.read(max_bytes + 1)  # never more: the length may be absent
            if len(data) > max_bytes:
                raise AnswerTooLarge(f"over the cap of {max_bytes} bytes for this request")
            if not response.reusable():
                self._drop()
            return response.status, response.headers, data
        except BaseException:
            self._drop()
            raise

    def _send(self, method: str, path: str, body: bytes | None, max_bytes: int):
        reused = self._conn is not None
        deadline = time.monotonic() + self.options.timeout  # one for both exchanges
        try:
            return self._exchange(method, path, body, max_bytes, deadline)
        except (ConnectionError, ssl.SSLEOFError):  # RemoteDisconnected is one
            if not reused:
                raise
            # the server closed the kept connection before it read this request
            return self._exchange(method, path, body, max_bytes, deadline)

    def attempt(self, method: str, path: str, body: bytes | None, max_bytes: int):
        """One paced try: (answer bytes, None) or (None, (problem, status or None,
        seconds the server asked to wait)); no status means a retry may help."""
        self._pace()
        try:
            status, headers, data = self._send(method, path, body, max_bytes)
        except ConnectionRefusedError:
            return None, ("connection refused", None, 0.0)
        except TimeoutError:
            what = f"timed out (no whole answer within {self.options.timeout:g} s)"
            return None, (what, None, 0.0)
        except AnswerTooLarge as e:
            raise SuspectError(f"{self.url}: answer too large ({e})") from None
        except ssl.SSLCertVerificationError as e:  # the same certificate on every try
            raise SuspectError(f"{self.url}: {certificate_problem(e)}") from None
        # http.client lets a few garbled framings out as ValueError (a negative chunk size)
        except (OSError, ValueError, http.client.HTTPException) as e:
            what = printable(f"{type(e).__name__}: {e}")
            return None, (f"connection failed ({what})", None, 0.0)
        if status == 200:
            return data, None
        what = status_problem(status, headers, data)
        return None, (what, status, retry_after(headers["Retry-After"]))

    def request(self, method: str, path: str, body: bytes | None, max_bytes: int) -> bytes:
        """The answer's bytes; tried again while a retry may help, waiting
        exponentially longer, or as long as the server asks, up to `max_backoff`."""
        tries = self.options.retries + 1
        for attempt in range(tries):
            data, problem = self.attempt(method, path, body, max_bytes)
            if problem is None:
                return data
            what, status, wait = problem
            if status is not None and status not in RETRIED_STATUS:
                raise HTTPStatusError(self.url, what)
            if attempt + 1 < tries:
                wait = max(wait, self.options.backoff * 2.0 ** min(attempt, 60))
                wait = min(wait, self.options.max_backoff)
                progress.log(f"{self.url}: {what}; retry {attempt + 1}/{tries - 1} in {wait:g} s")
                time.sleep(wait)
                self.counters["retries"] += 1
        raise SuspectError(f"{self.url}: {what} after {tries} tries")

    def post(self, payload, max_bytes: int):
        """The JSON answer to one POST of `payload`."""
        data = self.request("POST", self.path, json.dumps(payload).encode(), max_bytes)
        return parse_json(data, f"{self.url}: malformed JSON in the answer")


def status_problem(status: int, headers, data: bytes) -> str:
    """What an answer other than 200 says, in one printable line; a redirect
    names where it points, which is never followed: the API key in the
    headers would go to a host the user did not name."""
    location = headers["Location"]
    if 300 <= status < 400 and location is not None:
        return (
            f"HTTP {status} redirects to {printable(location)}; redirects are not followed "
            "(name that URL as the suspect if it is the same API)"
        )
    text = printable(" ".join(data.decode("utf-8", "replace").split()))
    return f"HTTP {status}{': ' + text if text else ''}"


def certificate_problem(e: ssl.SSLCertVerificationError) -> str:
    why = printable(e.verify_message or str(e))
    if "mismatch" in why:  # a certificate for another host: trusting it would not help
        return f"TLS certificate refused ({why})"
    return f"TLS certificate refused ({why}); --ca_cert=FILE trusts a private authority"


def parse_json(data: bytes, context: str):
    """JSON from a server; anything it cannot decode, however deep or large,
    is the server's error."""
    try:
        return json.loads(data)
    except ValueError as e:
        raise SuspectError(f"{context} ({printable(str(e))})") from None
    except RecursionError:
        raise SuspectError(f"{context} (nested too deeply)") from None
    except MemoryError:
        raise SuspectError(f"{context} (too large to decode)") from None


def v2_tensor_names(client: Client) -> tuple[str, str | None]:
    """(input name, output name) from the model's V2 metadata, so that servers
    which check tensor names (Triton) accept the request; ('input', None) when
    the server publishes none (then the first output of each answer is used),
    said on stderr. The metadata request is retried like any other: a server
    that keeps failing it fails the verification."""
    path = re.sub(r"/infer$", "", urllib.parse.urlsplit(client.url).path) + client.query
    try:
        data = client.request("GET", path, None, META_BYTES)
    except HTTPStatusError as e:
        return _without_metadata(client, e.what)
    try:
        meta = parse_json(data, "malformed JSON")
        names = meta["inputs"][0]["name"], meta["outputs"][0]["name"]
    except (SuspectError, TypeError, KeyError, IndexError):
        names = None
    if names is None or not all(isinstance(n, str) for n in names):
        return _without_metadata(client, "it names no input and output tensor")
    return names


def _without_metadata(client: Client, why: str) -> tuple[str, None]:
    progress.log(
        f"{client.url}: no usable V2 metadata ({why}); naming the input 'input' "
        "and reading the first output"
    )
    return "input", None


def from_url(url: str, *, options: Options, pixels: str = "uint8") -> Suspect:
    """A suspect behind a prediction URL; the protocol comes from its path unless
    `options.protocol` names it."""
    options.check()
    to_pixels(np.zeros(0, np.uint8), pixels)
    protocol = options.protocol
    if protocol == "auto":
        found = parse_path(urllib.parse.urlsplit(url).path)
        if found is None:
            raise SuspectError(
                f"{url}: cannot tell the protocol from the path; expected "
                ".../v1/models/NAME:predict or .../v2/models/NAME/infer (or pass the protocol)"
            )
        protocol = found[0]
    suspect = Suspect(url, f"http-{protocol}", fn=None, batch_size=64)
    client = Client(url, options, suspect.counters)
    if protocol == "v1":
        encode, decode = encode_v1, decode_v1
    else:
        names = v2_tensor_names(client)
        encode, decode = (lambda x: encode_v2(x, *names)), decode_v2

    def ask(x_uint8):
        cap = answer_cap(len(x_uint8), suspect.num_classes)
        return decode(client.post(encode(to_pixels(x_uint8, pixels)), cap), url)

    suspect.fn = ask
    return suspect
