"""Entry point: serve one model trained here over both prediction protocols.

    python -m fingerprinting.serve \
        --checkpoint=runs/digits/models/testing_surrogate-cnn_small/0 --port=8500

For demos and tests: a suspect behind a real HTTP API. It answers
- `POST /v1/models/NAME:predict` (TF-Serving / KServe V1),
- `POST /v2/models/NAME[/versions/V]/infer` (Open Inference Protocol: KServe
  V2, Triton, MLServer), JSON tensors only (binary tensors get a 400 saying so),
- `GET /v2` (server metadata), `GET /v2/models/NAME[/versions/V]` (model
  metadata) and `.../ready`, `GET /v2/health/live` and `/v2/health/ready`,
  `GET /v1/models/NAME` (V1 status),
with class probabilities, or only labels (`--answer=labels`, the paper's
label-only API). Inputs are NHWC pixels, integers 0..255 or floats in [0, 1].
It listens on 127.0.0.1 unless told otherwise; `--port=0` takes a free port.
The first line on stdout gives both URLs.

Clients may be hostile: a connection silent for `--connection_timeout` s is
closed, at most `--max_connections` are held at once (one more is answered
503 and closed), a request holds at most `--max_inputs` inputs (400 above),
which go through the model in batches of at most 256, and malformed JSON,
however deep, is a 400.
"""

from __future__ import annotations

from absl import flags

from fingerprinting import cli
from fingerprinting import suspects
from fingerprinting.suspects.server import ANSWERS
from fingerprinting.suspects.server import Limits
from fingerprinting.suspects.server import make_server
from fingerprinting.suspects.server import urls

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "WORKDIR/models/GROUP[/MEMBER] of the model to serve.", required=True
)
_PORT = flags.DEFINE_integer("port", 8500, "Port to listen on (0: any free port).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
_NAME = flags.DEFINE_string("name", "model", "Model name in the URLs.")
_ANSWER = flags.DEFINE_enum("answer", "scores", ANSWERS, "Answer class scores or only labels.")
_CONNECTION_TIMEOUT = flags.DEFINE_float(
    "connection_timeout",
    Limits.timeout,
    "Seconds a connection may stay silent (idle, or mid-request) before it is closed.",
)
_MAX_CONNECTIONS = flags.DEFINE_integer(
    "max_connections", Limits.max_connections, "Connections held at once; more get HTTP 503."
)
_MAX_INPUTS = flags.DEFINE_integer(
    "max_inputs", Limits.max_inputs, "Inputs in one request at most; more get HTTP 400."
)


def main(argv):
    cli.check_no_args(argv)
    limits = Limits(_CONNECTION_TIMEOUT.value, _MAX_CONNECTIONS.value, _MAX_INPUTS.value)
    limits.check()  # before the slow part
    model = suspects.load_checkpoint(_CHECKPOINT.value)
    server = make_server(
        model,
        name=_NAME.value,
        answer=_ANSWER.value,
        host=_HOST.value,
        port=_PORT.value,
        limits=limits,
    )
    v1, v2 = urls(server, _NAME.value)
    print(f"serving {model.name} ({_ANSWER.value}) at {v1} and {v2}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    cli.run(main)
