"""CIFAR-10 (tensorflow-datasets) in the paper's setup: ResNet-20 source,
surrogates and references across six architectures. 25,000 images per party.

    python -m fingerprinting.evaluate --config=configs/cifar10.py --workdir=runs/cifar10

Needs a GPU; `:tiny` shrinks it to a wiring check on tiny data. Expected
cost on one GPU: see README.md (GPU figures).
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.paper(config_lib.base())
    c.data.update(dict(name="cifar10", d1_size=25_000, d2_size=25_000, test_size=10_000))
    if arg == "tiny":
        config_lib.tiny_paper(c)
    return c
