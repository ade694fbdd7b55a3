"""Entry point: verify one suspect against a fingerprint (Algorithm 1).

    python -m fingerprinting.verify --fingerprint=runs/digits/fingerprint.npz \
        --suspect=runs/digits/models/testing_surrogate-cnn_small/0

Prints one JSON object on stdout (fingerprint_accuracy, theta, verified,
p_value, n_queries, ...) and a human-readable verdict on stderr. Exit status
0 whatever the verdict; 2 on bad input.
"""

import json
import sys

from absl import flags

from fingerprinting import artifact
from fingerprinting import cli
from fingerprinting import fingerprint as fp_lib
from fingerprinting import suspects

_FINGERPRINT = flags.DEFINE_string("fingerprint", None, "Fingerprint file.", required=True)
_SUSPECT = flags.DEFINE_string(
    "suspect", None, "WORKDIR/models/GROUP[/MEMBER] or module:function.", required=True
)
_THETA = flags.DEFINE_float(
    "theta", None, "Threshold on fingerprint accuracy (default: the fingerprint's)."
)
_SIGNIFICANCE = flags.DEFINE_float("significance", 0.01, "Level of the calibrated test.")


def main(argv):
    cli.check_no_args(argv)
    fp = artifact.load(_FINGERPRINT.value)
    if len(fp) == 0:
        raise ValueError(f"{_FINGERPRINT.value}: the fingerprint is empty")
    suspect = suspects.load_suspect(_SUSPECT.value)
    result = fp_lib.verify_suspect(fp, suspect, theta=_THETA.value)
    result["verified_calibrated"] = (
        result["p_value"] is not None and result["p_value"] < _SIGNIFICANCE.value
    )
    print(json.dumps(result, sort_keys=True))
    p = "n/a" if result["p_value"] is None else f"{result['p_value']:.2g}"
    print(
        f"{suspect.name}: fingerprint accuracy {result['fingerprint_accuracy']:.3f} "
        f"(theta {result['theta']}): {'SURROGATE' if result['verified'] else 'not verified'}; "
        f"p-value of independence {p}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    cli.run(main)
