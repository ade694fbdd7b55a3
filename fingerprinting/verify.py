"""Entry point: verify suspects against a fingerprint (Algorithm 1).

    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspect=runs/digits/models/testing_surrogate-cnn_small/0
    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspect=http://127.0.0.1:8500/v2/models/model/infer --rate_limit=20
    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspect=suspect.onnx --layout=nchw --mean=0.5 --std=0.5
    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspects=suspects.txt --table=verdicts.md

The suspect is a model trained here, a Python callable (`module:function`), an
ONNX file, or a prediction URL (TF-Serving / KServe V1
`.../v1/models/NAME:predict`, Open Inference Protocol `.../v2/models/NAME/infer`).
The fingerprint goes out shuffled among the benign decoys stored with it and,
when the fingerprint holds a query log, the logged queries of the twin test.

One suspect: prints one JSON object on stdout (fingerprint_accuracy,
decoy_accuracy, theta, verified, verified_calibrated, p_value, with a query
log twin_d, twin_p_value, verified_twin, and protocol, n_queries, requests,
seconds, ...) and a verdict in words on stderr; exit
status 2 on bad input or a suspect that fails to answer (then nothing is
printed on stdout). `--suspects=FILE` (one spec per line, `#` comments):
verifies each, goes on past one that fails (its row says why), prints one
JSON line per suspect on stdout and the table on stderr, and with
`--table=PATH.md` writes the table there and the JSON lines to PATH.jsonl.
Exit status 0 whatever the verdicts.
"""

import json
import os
import sys

from absl import flags

from fingerprinting import artifact
from fingerprinting import cli
from fingerprinting import errors
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import input_format
from fingerprinting import screening
from fingerprinting import signing
from fingerprinting import suspects
from fingerprinting.suspects import client as http_client
from fingerprinting.suspects import protocols

_FINGERPRINT = flags.DEFINE_string("fingerprint", None, "Fingerprint file.", required=True)
_SUSPECT = flags.DEFINE_string(
    "suspect",
    None,
    "WORKDIR/models/GROUP[/MEMBER], module:function, an .onnx file, or an http(s):// "
    "prediction URL.",
)
_SUSPECTS = flags.DEFINE_string(
    "suspects",
    None,
    "A file of suspect specs, one per line ('#' comments), instead of --suspect; a line may "
    "add --pixels=, --layout=, --mean=, --std= for its suspect.",
)
_TABLE = flags.DEFINE_string(
    "table",
    None,
    "With --suspects: write the table to this markdown file and the rows to the same "
    "name with .jsonl (neither may exist yet).",
)
_PUBLIC_KEY = flags.DEFINE_string(
    "public_key",
    None,
    "The owner's Ed25519 public key (WORKDIR/owner.pub): refuse a fingerprint whose "
    "signature it does not match.",
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
    "pixels",
    "uint8",
    suspects.PIXELS,
    "What a callable, ONNX file or API receives: uint8 pixels, or float in [0,1].",
)
_LAYOUT = flags.DEFINE_enum(
    "layout", "nhwc", suspects.LAYOUTS, "Axis order the suspect takes (nchw: PyTorch's)."
)
_MEAN = flags.DEFINE_string(
    "mean",
    "",
    "Normalise float pixels by (x - mean) / std: one value or one per channel, "
    "on the [0,1] scale (e.g. 0.485,0.456,0.406); implies --pixels=float.",
)
_STD = flags.DEFINE_string("std", "", "See --mean (e.g. 0.229,0.224,0.225).")
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
_CA_CERT = flags.DEFINE_string(
    "ca_cert",
    None,
    "PEM file of the certificate authorities to trust for https suspects, instead of the "
    "system's (a private CA, a self-signed certificate). Certificates are always checked.",
)


def _input_format(**line_flags) -> suspects.InputFormat:
    """The flags' input format; a suspect list's line may override each flag."""
    given = dict(pixels=_PIXELS.value, layout=_LAYOUT.value, mean=_MEAN.value, std=_STD.value)
    return suspects.InputFormat.from_flags({**given, **line_flags})


def _http_options() -> http_client.Options:
    return http_client.Options(
        timeout=_TIMEOUT.value,
        retries=_RETRIES.value,
        backoff=_BACKOFF.value,
        max_backoff=_MAX_BACKOFF.value,
        rate_limit=_RATE_LIMIT.value,
        protocol=_PROTOCOL.value,
        headers=tuple(http_client.parse_header(h) for h in _HEADER.value),
        ca_cert=_CA_CERT.value,
    )


def _check_table_paths() -> tuple[str, str] | None:
    if _TABLE.value is None:
        return None
    if _SUSPECTS.value is None:
        raise errors.ConfigError("--table goes with --suspects")
    md, jsonl = _TABLE.value, os.path.splitext(_TABLE.value)[0] + ".jsonl"
    for path in (md, jsonl):
        if os.path.exists(path):
            raise errors.StorageError(f"{path} exists; name a new --table")
    return md, jsonl


def main(argv):
    cli.check_no_args(argv)
    if (_SUSPECT.value is None) == (_SUSPECTS.value is None):
        raise errors.ConfigError(
            "name the suspect with --suspect=SPEC or a list with --suspects=FILE"
        )
    fp_lib.check_levels(_THETA.value, _SIGNIFICANCE.value)
    outputs = _check_table_paths()
    specs = screening.read_specs(_SUSPECTS.value) if _SUSPECTS.value else None
    if _PUBLIC_KEY.value is not None:
        digest = signing.check(_FINGERPRINT.value, _PUBLIC_KEY.value)
        print(f"signature: valid, fingerprint sha256 {digest}", file=sys.stderr)
    fp = artifact.load(_FINGERPRINT.value)
    options = _http_options()
    load = lambda entry: suspects.load_suspect(
        entry.spec, pixels=_input_format(**entry.flags), batch_size=_BATCH_SIZE.value, http=options
    )
    levels = dict(theta=_THETA.value, decoys=_DECOYS.value, significance=_SIGNIFICANCE.value)
    if specs is None:
        result = fp_lib.verify_suspect(fp, load(input_format.Entry(_SUSPECT.value, {})), **levels)
        print(json.dumps(result, sort_keys=True))
        print(fp_lib.verdict_summary(result), file=sys.stderr)
        return
    rows = screening.verify_each(fp, specs, load, **levels)
    for row in rows:
        print(json.dumps(row, sort_keys=True))
    text = screening.table(rows)
    print(f"{text}\n{screening.summary(rows)}", file=sys.stderr)
    if outputs:
        files.write_text_atomic(outputs[0], text + "\n")
        files.write_jsonl_atomic(outputs[1], rows)
        print(f"wrote {outputs[0]} and {outputs[1]}", file=sys.stderr)


if __name__ == "__main__":
    cli.run(main)
