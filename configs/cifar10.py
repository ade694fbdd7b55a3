"""CIFAR-10 (tensorflow-datasets) in the paper's setup: ResNet-20 source,
surrogates and references across six architectures. 25,000 images per party.

    python -m fingerprinting.evaluate --config=configs/cifar10.py --workdir=runs/cifar10

Needs a GPU. `:tiny` shrinks the zoo and the steps to a wiring
check; on tiny data also pass `--config.data.d1_size=` (and d2, test). Expected cost on one
H200-class GPU: about 1 GPU-hour (0.5-2) for training, minutes for extraction and
evaluation. This is an estimate from the models' FLOP counts at 10-25
TFLOP/s achieved, not a measurement; `launch/gpu_benchmark.sh` measures the
throughput that would replace it.
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
    config_lib.check_arg(arg, ("tiny",))
    c = config_lib.paper(config_lib.base())
    c.data.update(dict(name="cifar10", d1_size=25_000, d2_size=25_000, test_size=10_000))
    if arg == "tiny":
        config_lib.tiny_paper(c)
    return c
