"""Fashion-MNIST with small CNNs: a realistic study that fits a 2-core CPU.

    python -m fingerprinting.evaluate --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist
    bash launch/study.sh configs/fashion_mnist.py 0,1,2
    bash launch/study.sh configs/fashion_mnist.py:source=cnn_pool 0,1,2

Offline it reads the standard IDX files from `--config.data.dir`, by default
Debian's `dataset-fashion-mnist` location (/usr/share/datasets/fashion-mnist);
online it falls back to tensorflow-datasets. D1 holds 40,000 images (the
source trains on 30,000 of them), D2 20,000, the test split 5,000.

The defender's zoo has four architecture families (`cnn_small`, `cnn_medium`,
`cnn_pool`, `mlp`); the thieves also use `cnn_wide`, a family no defender's
model has. `source=` picks the source among the zoo's families: `cnn_medium`
(BatchNorm and global average pooling, the shape of the paper's ResNet) or
`cnn_pool` (max-pools and a flattening dense layer). `:smoke` shrinks it to a
seconds-long wiring check (pass `--config.data.d1_size=` and the others for
tiny data).
"""

import os

from fingerprinting import config as config_lib
from fingerprinting import errors

common = config_lib.load_module(os.path.join(os.path.dirname(__file__), "_common.py"))

ZOO = ("cnn_small", "cnn_medium", "cnn_pool", "mlp")  # the defender's families
UNSEEN = "cnn_wide"  # the thieves' own family


def spec(counts: dict) -> str:
    """'arch:n,...' from {arch: n}, one entry per architecture."""
    return ",".join(f"{arch}:{n}" for arch, n in counts.items() if n)


def get_config(arg: str | None = None):
    a = config_lib.parse_arg(arg, smoke=False, source="cnn_medium")
    if a.source not in ZOO:
        raise errors.ConfigError(
            f"config argument source={a.source!r}: expected one of {', '.join(ZOO)}"
        )
    c = common.base()
    # D1, D2 and the test split; the source never trains on a quarter of D1.
    c.data.update(
        dict(
            name="fashion_mnist",
            d1_size=40_000,
            d2_size=20_000,
            test_size=5_000,
            source_holdout=0.25,
        )
    )
    # Warm-up and cosine decay; epochs of the source, of its students (the
    # thieves too) and of the references. Chosen by measurement:
    # docs/results.md#fashion-mnist-a-seed-in-34-minutes
    c.train.update(
        dict(
            batch_size=128,
            schedule="warmup_cosine",
            epochs=5,
            student_epochs=10,
            source_epochs=20,
            learning_rate=2e-3,
            chunk_steps=40,
        )
    )
    each = lambda n: {arch: n for arch in ZOO}
    plus = lambda counts, arch, n=1: {**counts, arch: counts.get(arch, 0) + n}
    c.models.update(
        dict(
            source=a.source,
            surrogate_data="d1_holdout",  # the defender distils on D1's held-out quarter
            training_surrogates=spec(each(1)),
            training_label_only_surrogates=spec(each(1)),
            # C-BIM's reference side: one of each family, two of the source's.
            training_references=spec(plus(each(1), a.source)),
            # The nulls: two of each family on D1's held-out quarter.
            calibration_references=spec(each(2)),
            calibration_data="d1_holdout",
            # Thieves of every family and the unseen one; label-only thieves of two.
            testing_surrogates=spec(plus(each(1), UNSEEN)),
            label_only_surrogates=spec({a.source: 1, "cnn_small": 1}),
            # With the calibration references: four of the source's family a seed.
            testing_references=spec(plus(plus(each(1), UNSEEN), a.source)),
            # The twin test's twin of the source; the log and the null chosen by
            # measurement: docs/validation.md#fashion-mnist-what-a-thief-copies-and-the-twin-test
            source_twins=1,
        )
    )
    c.extract.update(dict(eps=0.15, steps=50, num_candidates=400, batch_size=100, tau=1.0))
    # The twin test's log: the 20,000 queries the thieves sent (D2).
    c.extract.update(dict(query_log="d2", query_log_size=20_000))
    c.evaluate.table1_methods = "cbim,fgsm,bim,pgd,deepfool"
    if a.smoke:
        common.smoke(c)
        c.data.update(dict(d1_size=512, d2_size=512, test_size=256))
        c.models.surrogate_data = "d1_holdout"  # the held-out split's path, on tiny data
        c.extract.query_log_size = 256
    return c
