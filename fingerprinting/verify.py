"""Entry point: verify one suspect against a fingerprint (Algorithm 1).

    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspect=runs/digits/models/testing_surrogate-cnn_small/0
    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspect=http://127.0.0.1:8500/v2/models/model/infer --rate_limit=20

The suspect is a model trained here, a Python callable (`module:function`) or
a prediction URL (TF-Serving / KServe V1 `.../v1/models/NAME:predict`, Open
Inference Protocol `.../v2/models/NAME/infer`). The fingerprint goes out
shuffled among the benign decoys stored with it. Prints one JSON object on
stdout (fingerprint_accuracy, decoy_accuracy, theta, verified, p_value,
protocol, n_queries, requests, seconds, ...) and a human-readable verdict on
stderr. Exit status 0 whatever the verdict; 2 on bad input or a suspect that
fails to answer (then nothing is printed on stdout).
"""

import json
import sys

from absl import flags

from fingerprinting import artifact
from fingerprinting import cli
from fingerprinting import fingerprint as fp_lib
from fingerprinting import suspects
from fingerprinting.suspects import client as http_client
from fingerprinting.suspects import protocols

_FINGERPRINT = flags.DEFINE_string("fingerprint", None, "Fingerprint file.", required=True)
_SUSPECT = flags.DEFINE_string(
    "suspect",
    None,
    "WORKDIR/models/GROUP[/MEMBER], module:function, or an http(s):// prediction URL.",
    required=True,
)
_THETA = flags.DEFINE_float(
    "theta", None, "Threshold on fingerprint accuracy (default: the fingerprint's)."
)
_SIGNIFICANCE = flags.DEFINE_float("significance", 0.01, "Level of the calibrated test.")
_DECOYS = flags.DEFINE_integer(
    "decoys", None, "Benign decoys to hide the fingerprint among (default: all in the file)."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Inputs per request (default: 64 over HTTP, 256 otherwise)."
)
_PIXELS = flags.DEFINE_enum(
    "pixels", "uint8", suspects.PIXELS, "What a callable or API receives: uint8, or float in [0,1]."
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol", "auto", ("auto",) + protocols.PROTOCOLS, "HTTP protocol (auto: from the URL path)."
)
_TIMEOUT = flags.DEFINE_float(
    "timeout",
    30.0,
    "Seconds for each whole HTTP request: connecting, sending, and every byte of the answer.",
)
_RETRIES = flags.DEFINE_integer("retries", 3, "Further tries of a failed HTTP request.")
_BACKOFF = flags.DEFINE_float(
    "backoff", 0.5, "Seconds before the first retry; doubles after, up to --max_backoff."
)
_MAX_BACKOFF = flags.DEFINE_float(
    "max_backoff",
    60.0,
    "Seconds between HTTP tries at most, whatever a server's Retry-After asks.",
)
_RATE_LIMIT = flags.DEFINE_float("rate_limit", 0.0, "HTTP requests per second at most (0: any).")
_HEADER = flags.DEFINE_multi_string(
    "header",
    [],
    "HTTP header for every request, 'Name: value' (repeatable), e.g. "
    "'Authorization: Bearer $API_TOKEN': $VAR is read from the environment.",
)


def main(argv):
    cli.check_no_args(argv)
    fp_lib.check_levels(_THETA.value, _SIGNIFICANCE.value)
    fp = artifact.load(_FINGERPRINT.value)
    options = http_client.Options(
        timeout=_TIMEOUT.value,
        retries=_RETRIES.value,
        backoff=_BACKOFF.value,
        max_backoff=_MAX_BACKOFF.value,
        rate_limit=_RATE_LIMIT.value,
        protocol=_PROTOCOL.value,
        headers=tuple(http_client.parse_header(h) for h in _HEADER.value),
    )
    suspect = suspects.load_suspect(
        _SUSPECT.value, pixels=_PIXELS.value, batch_size=_BATCH_SIZE.value, http=options
    )
    result = fp_lib.verify_suspect(
        fp, suspect, theta=_THETA.value, decoys=_DECOYS.value, significance=_SIGNIFICANCE.value
    )
    print(json.dumps(result, sort_keys=True))
    print(fp_lib.verdict_summary(result), file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
