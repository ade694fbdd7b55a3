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
    # Removal attacks in about a minute. Papernot: 2 rounds from 180 seeds end
    # at 720 inputs, the size of D2 (each round compiles anew). Members: on 8x8
    # inputs vmap compiles 5x faster than the unrolled loop and runs 2x faster
    # (6 members, measured on 2 cores).
    c.removal.update(dict(papernot_seed_size=180, papernot_rounds=2, strategy="vmap"))
    if arg == "smoke":
        config_lib.smoke(c)
    return c
