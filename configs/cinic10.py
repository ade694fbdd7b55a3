"""CINIC-10 as in the paper (Section 6.1): of the 180,000 train+valid images
the defender gets 85,000 and the adversary 95,000; the 90,000 test images
measure accuracy. ResNet-20 source; surrogates and references across six
architectures (the paper trained 44 surrogates and 28 references).

    python -m fingerprinting.evaluate --config=configs/cinic10.py \
        --config.data.dir=/path/to/CINIC-10 \
        --config.removal.knockoff_dir=/path/to/Imagenet32 --workdir=runs/cinic10

`--config.data.dir` is the official release directory (train/ valid/ test/,
a folder per class). Cost on one H200-class GPU: about 3 GPU-hours for training, minutes for the
rest (an estimate from FLOP counts, see README.md#configs). `:smoke` is a wiring check
(see `_paper.smoke_paper`).

The Knockoff attack queries ImageNet32 (the npz batches), the paper's
transfer set; without them, leave `knockoff` out of `--config.removal.attacks`.
"""

import os

from fingerprinting import config as config_lib

paper = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_paper.py"))


def get_config(arg: str | None = None):
    return paper.paper_config("cinic10", (85_000, 95_000, 90_000), arg, knockoff="imagenet32")
