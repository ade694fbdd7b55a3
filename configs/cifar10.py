"""CIFAR-10 (tensorflow-datasets) in the paper's setup: ResNet-20 source,
surrogates and references across six architectures. 25,000 images per party.

    python -m fingerprinting.evaluate --config=configs/cifar10.py \
        --config.removal.knockoff_dir=/path/to/Imagenet32 --workdir=runs/cifar10

Cost on one H200-class GPU: about 1 GPU-hour for training, minutes for the
rest (an estimate from FLOP counts, see README.md#configs). `:smoke` is a wiring check
(see `_paper.smoke_paper`).

The Knockoff attack queries ImageNet32 (the npz batches), the paper's
transfer set for CINIC-10; without them, leave `knockoff` out of
`--config.removal.attacks`.
"""

import os

from fingerprinting import config as config_lib

paper = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_paper.py"))


def get_config(arg: str | None = None):
    return paper.paper_config("cifar10", (25_000, 25_000, 10_000), arg, knockoff="imagenet32")
