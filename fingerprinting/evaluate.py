"""Entry point: verify every testing model, fill Table 1, write the report.

python -m fingerprinting.evaluate --config=configs/digits.py --workdir=runs/digits
"""

from absl import flags
from ml_collections import config_flags

from fingerprinting import cli
from fingerprinting import harness

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created, resumed).", required=True)


def main(argv):
    cli.check_no_args(argv)
    harness.run_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
