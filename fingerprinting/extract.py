"""Entry point: train what is missing, then extract the fingerprint (Algorithm 2).

python -m fingerprinting.extract --config=configs/digits.py --workdir=runs/digits
"""

from absl import flags
from ml_collections import config_flags

from fingerprinting import cli
from fingerprinting import pipeline

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created, resumed).", required=True)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Extract again even if WORKDIR/fingerprint.npz exists; the old file is kept "
    "as fingerprint.old-N.npz.",
)


def main(argv):
    cli.check_no_args(argv)
    fp = pipeline.run_extract(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
    print(f"fingerprint: {len(fp)} examples, {pipeline.fingerprint_path(_WORKDIR.value)}")


if __name__ == "__main__":
    cli.run(main)
