"""ImageNet32 restricted to the paper's 100 classes (its appendix): 64,000
images per party, 5,000 test images. ResNet-20 source; surrogates and
references across six architectures (the paper trained 14 and 15).

    python -m fingerprinting.evaluate --config=configs/imagenet32.py \
        --config.data.dir=/path/to/Imagenet32 --workdir=runs/imagenet32

`--config.data.dir` holds the official npz batches (train_data_batch_1..10.npz,
val_data.npz). Cost on one H200-class GPU: about 2 GPU-hours for training, minutes for the
rest (an estimate from FLOP counts, see README.md#configs). `:smoke` is a wiring check
(see `_paper.smoke_paper`).

The Knockoff attack queries CIFAR-10 through tensorflow-datasets
(`--config.removal.knockoff_dir`: its TFDS data dir; empty: the default).
"""

import os

from fingerprinting import config as config_lib

paper = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_paper.py"))


def get_config(arg: str | None = None):
    return paper.paper_config("imagenet32", (64_000, 64_000, 5_000), arg, knockoff="cifar10")
