"""A model owner's own images: small CNNs on a folder of images or an npz file.

A folder with one sub-folder of images per class (class names: the sorted
folder names), or with train/ and test/ folders laid out that way:

    python -m fingerprinting.train   --config=configs/custom.py --config.data.dir=/path/to/images --workdir=runs/mine
    python -m fingerprinting.extract --config=configs/custom.py --config.data.dir=/path/to/images --workdir=runs/mine
    python -m fingerprinting.evaluate --config=configs/custom.py --config.data.dir=/path/to/images --workdir=runs/mine

An npz file holding x (uint8 [N, H, W, C], or floats in [0, 1]) and y
(integer labels [N]), optionally x_test, y_test and class_names:

    python -m fingerprinting.train --config=configs/custom.py --config.data.name=npz --config.data.dir=/path/to/data.npz --workdir=runs/mine

Without a test split, a seeded 20% of the images is held out for testing; the
rest is halved between the defender (D1) and the adversary (D2). Images must
share one size and are read at that size: shrink large photos beforehand
(these models suit up to about 32x32 on a CPU); `--config.data.resize=S`
resizes to S x S, which non-square images need. The full rules are in
fingerprinting/data/user_data.py. Pass `--config=configs/custom.py:smoke`
for a wiring check of about a minute.
"""

import os

from fingerprinting import config as config_lib

common = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_common.py"))


def get_config(arg: str | None = None):
    a = config_lib.parse_arg(arg, smoke=False)
    c = common.base()
    # data.dir has no default: the reader refuses to start without it.
    c.data.name = "image_folder"
    if a.smoke:
        common.smoke(c)
    return c
