"""Entry point: train the source, surrogates and references of a config.

python -m fingerprinting.train --config=configs/digits.py --workdir=runs/digits
"""

from absl import flags
from ml_collections import config_flags

from fingerprinting import cli
from fingerprinting import pipeline

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created, resumed).", required=True)


def main(argv):
    cli.check_no_args(argv)
    pipeline.run_train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
