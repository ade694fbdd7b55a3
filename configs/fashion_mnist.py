"""Fashion-MNIST with small CNNs: a realistic run that fits a 2-core CPU.

    python -m fingerprinting.evaluate --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist

Offline it reads the standard IDX files from `--config.data.dir`, by default
Debian's `dataset-fashion-mnist` location (/usr/share/datasets/fashion-mnist);
online it falls back to tensorflow-datasets. 20,000 images per party, 5,000
test images; 29 models. `:smoke` shrinks it to a seconds-long wiring check
(pass `--config.data.d1_size=` and the others for tiny data).
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
    config_lib.check_arg(arg, ("smoke",))
    c = config_lib.base()
    c.data.update(dict(name="fashion_mnist", d1_size=20_000, d2_size=20_000, test_size=5_000))
    c.train.update(
        dict(batch_size=128, epochs=4, source_epochs=20, learning_rate=2e-3, chunk_steps=40)
    )
    c.extract.update(dict(eps=0.1, steps=50, num_candidates=400, batch_size=100))
    c.evaluate.table1_eps = 0.1
    if arg == "smoke":
        config_lib.smoke(c)
        c.data.update(dict(d1_size=512, d2_size=512, test_size=256))
    return c
