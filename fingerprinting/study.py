"""Entry point: one config over several seeds, one table and one plot.

python -m fingerprinting.study --config=configs/digits.py --workdir=runs/study-digits --seeds=0,1,2

Each seed is a full `evaluate` run in WORKDIR/seed-N (resumed when rerun);
WORKDIR/study.md and WORKDIR/plots/study.png compare the seeds.
"""

from absl import flags
from ml_collections import config_flags

from fingerprinting import cli
from fingerprinting import harness

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits.py", "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Study directory (created, resumed).", required=True
)
_SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Comma-separated run seeds.")


def main(argv):
    cli.check_no_args(argv)
    harness.run_study(_CONFIG.value, _WORKDIR.value, harness.parse_seeds(_SEEDS.value))


if __name__ == "__main__":
    cli.run(main)
