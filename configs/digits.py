"""Default: scikit-learn's bundled 8x8 digits, small CNNs, minutes on 2 CPU cores.

    python -m fingerprinting.train   --config=configs/digits.py --workdir=runs/digits
    python -m fingerprinting.extract --config=configs/digits.py --workdir=runs/digits
    python -m fingerprinting.evaluate --config=configs/digits.py --workdir=runs/digits

Pass `--config=configs/digits.py:smoke` for a seconds-long wiring check.
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.base()
  c.data.name = "digits"
  c.extract.eps = 0.25
  if arg == "smoke":
    config_lib.smoke(c)
  return c

