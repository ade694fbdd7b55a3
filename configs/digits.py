"""Default: scikit-learn's bundled 8x8 digits, small CNNs, minutes on 2 CPU cores.

    python -m fingerprinting.train   --config=configs/digits.py --workdir=runs/digits
    python -m fingerprinting.extract --config=configs/digits.py --workdir=runs/digits
    python -m fingerprinting.evaluate --config=configs/digits.py --workdir=runs/digits

Pass `--config=configs/digits.py:smoke` for a seconds-long wiring check.
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
    config_lib.check_arg(arg, ("smoke",))
    c = config_lib.base()
    c.data.name = "digits"
    # The demo's budget (a few minutes on 2 cores): digits models converge in
    # ~10 epochs; BIM at alpha 0.01 crosses eps 0.25 in 25 steps, so 50 suffice.
    c.train.update(dict(epochs=10, source_epochs=15))
    c.extract.update(dict(eps=0.25, steps=50, num_candidates=200))
    c.evaluate.table1_points = 64
    if arg == "smoke":
        config_lib.smoke(c)
    return c
