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
from fingerprinting import errors
from fingerprinting import fingerprint as fp_lib
from fingerprinting import remote
from fingerprinting import suspects

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
    "protocol", "auto", ("auto",) + remote.PROTOCOLS, "HTTP protocol (auto: from the URL path)."
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


def check_levels(theta: float | None, significance: float) -> None:
    """A threshold outside (0, 1] or a level outside (0, 1) turns every verdict
    upside down (the source itself "not verified", anything "verified")."""
    if theta is not None and not 0 < theta <= 1:
        raise errors.ConfigError(f"--theta={theta:g}: a threshold on accuracy lies in (0, 1]")
    if not 0 < significance < 1:
        raise errors.ConfigError(f"--significance={significance:g}: a test's level lies in (0, 1)")


def main(argv):
    cli.check_no_args(argv)
    check_levels(_THETA.value, _SIGNIFICANCE.value)
    fp = artifact.load(_FINGERPRINT.value)
    if len(fp) == 0:
        raise errors.ConfigError(f"{_FINGERPRINT.value}: the fingerprint is empty")
    options = remote.Options(
        timeout=_TIMEOUT.value,
        retries=_RETRIES.value,
        backoff=_BACKOFF.value,
        max_backoff=_MAX_BACKOFF.value,
        rate_limit=_RATE_LIMIT.value,
        protocol=_PROTOCOL.value,
        headers=tuple(remote.parse_header(h) for h in _HEADER.value),
    )
    suspect = suspects.load_suspect(
        _SUSPECT.value, pixels=_PIXELS.value, batch_size=_BATCH_SIZE.value, http=options
    )
    result = fp_lib.verify_suspect(fp, suspect, theta=_THETA.value, decoys=_DECOYS.value)
    result["verified_calibrated"] = (
        result["p_value"] is not None and result["p_value"] < _SIGNIFICANCE.value
    )
    print(json.dumps(result, sort_keys=True))
    p = "n/a" if result["p_value"] is None else f"{result['p_value']:.2g}"
    decoys = (
        f"; accuracy on {result['decoys']} decoys {result['decoy_accuracy']:.3f}"
        if result["decoys"]
        else ""
    )
    print(
        f"{suspect.name}: fingerprint accuracy {result['fingerprint_accuracy']:.3f} "
        f"(theta {result['theta']}): {'SURROGATE' if result['verified'] else 'not verified'}; "
        f"p-value of independence {p}{decoys}; {result['n_queries']} queries in "
        f"{result['requests']} requests, {result['seconds']:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    cli.run(main)
