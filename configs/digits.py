"""Default: scikit-learn's bundled 8x8 digits, small CNNs, minutes on 2 CPU cores.

    python -m fingerprinting.train   --config=configs/digits.py --workdir=runs/digits
    python -m fingerprinting.extract --config=configs/digits.py --workdir=runs/digits
    python -m fingerprinting.evaluate --config=configs/digits.py --workdir=runs/digits

Pass `--config=configs/digits.py:smoke` for a seconds-long wiring check.
"""

import os

from fingerprinting import config as config_lib

common = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_common.py"))


def get_config(arg: str | None = None):
    a = config_lib.parse_arg(arg, smoke=False)
    c = common.base()
    c.data.name = "digits"
    # C-BIM starts from half of D1 (360 images); the outsider references train
    # on the other half.
    # chosen by measurement: docs/validation.md#digits-fingerprint-pool
    c.data.fingerprint_pool = 0.5
    # The source trains 4 epochs (about 0.92 test accuracy), every other model 10.
    # chosen by measurement: docs/validation.md#digits-source-epochs
    c.train.update(dict(epochs=10, source_epochs=4))
    cpu_mix = "cnn_small:{n},cnn_medium:{n},cnn_wide:{n},mlp:{n}"
    c.models.update(
        dict(
            # C-BIM's sides beyond the default training surrogates: 16 references
            # on all of D1, 8 students of the source's top-1 labels, and 8
            # outsider references on D1 without the fingerprint pool.
            # chosen by measurement: docs/validation.md#digits-training-references-and-students
            training_references=cpu_mix.format(n=4),
            training_label_only_surrogates=cpu_mix.format(n=2),
            training_outsider_references=cpu_mix.format(n=2),
            # The calibrated test's null: 16 references, trained after the
            # extraction on D1 without the fingerprint's images.
            # chosen by measurement: docs/validation.md#digits-calibration-references
            calibration_references=cpu_mix.format(n=4),
            calibration_data="d1_without_fingerprint",
            # Thieves the defender did not anticipate: an architecture no
            # training model has, and label-only thieves.
            testing_surrogates=cpu_mix.format(n=1) + ",cnn_pool:1",
            testing_references=cpu_mix.format(n=1) + ",cnn_pool:1",
            label_only_surrogates="cnn_small:1,cnn_pool:1",
        )
    )
    # C-BIM: L-inf radius 0.25 in 50 steps of alpha 0.01; every image of the
    # pool the source gets right is a candidate; an input is kept when its
    # conferrability on the training models reaches tau 0.8.
    # chosen by measurement: docs/validation.md#digits-eps, docs/validation.md#digits-candidates-and-tau
    c.extract.update(dict(eps=0.25, steps=50, num_candidates=360, tau=0.8))
    c.evaluate.table1_points = 64  # Table 1's starting points, shared by every method
    # Papernot's attack: 180 seeds doubled in 2 rounds end at 720 inputs, the size of D2.
    # chosen by measurement: docs/validation.md#digits-removal-attacks
    c.removal.update(dict(papernot_seed_size=180, papernot_rounds=2))
    if a.smoke:
        common.smoke(c)
    return c
