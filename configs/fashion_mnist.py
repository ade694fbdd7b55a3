"""Fashion-MNIST with small CNNs: a realistic run that fits a 2-core CPU.

    python -m fingerprinting.evaluate --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist

Offline it reads the standard IDX files from `--config.data.dir`, by default
Debian's `dataset-fashion-mnist` location (/usr/share/datasets/fashion-mnist);
online it falls back to tensorflow-datasets. D1 holds 30,000 images (the
source trains on 20,000 of them), D2 20,000, the test split 5,000; 28 models.
`:smoke` shrinks it to a seconds-long wiring check
(pass `--config.data.d1_size=` and the others for tiny data).
"""

import os

from fingerprinting import config as config_lib

common = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_common.py"))


def get_config(arg: str | None = None):
    a = config_lib.parse_arg(arg, smoke=False)
    c = common.base()
    # The source trains on 20,000 images, as before, and keeps 10,000 more of
    # D1 as its validation split: the defender distils its surrogates there,
    # where the source's labels carry its own habits (on images it has
    # memorised they carry little beyond the truth).
    c.data.update(
        dict(
            name="fashion_mnist",
            d1_size=30_000,
            d2_size=20_000,
            test_size=5_000,
            source_holdout=1 / 3,
        )
    )
    c.train.update(
        dict(batch_size=128, epochs=5, source_epochs=20, learning_rate=2e-3, chunk_steps=40)
    )
    cpu_mix = "cnn_small:{n},cnn_medium:{n},cnn_wide:{n},mlp:{n}"
    c.models.update(
        dict(
            surrogate_data="d1_holdout",
            training_surrogates=cpu_mix.format(n=1),
            training_label_only_surrogates=cpu_mix.format(n=1),
            training_references=cpu_mix.format(n=1),
            calibration_references=cpu_mix.format(n=1),
            # Thieves the defender did not anticipate: an architecture no
            # training model has, and a label-only thief of it.
            testing_surrogates=cpu_mix.format(n=1) + ",cnn_pool:1",
            testing_references=cpu_mix.format(n=1) + ",cnn_pool:1",
            label_only_surrogates="cnn_pool:1",
        )
    )
    c.extract.update(dict(eps=0.1, steps=50, num_candidates=400, batch_size=100, tau=1.0))
    c.evaluate.table1_eps = 0.1
    if a.smoke:
        common.smoke(c)
        c.data.update(dict(d1_size=512, d2_size=512, test_size=256))
        c.models.surrogate_data = "d1_holdout"  # the held-out split's path, on tiny data
    return c
