"""CINIC-10 as in the paper (Section 6.1): of the 180,000 train+valid images
the defender gets 85,000 and the adversary 95,000; the 90,000 test images
measure accuracy. ResNet-20 source; surrogates and references across six
architectures (the paper trained 44 surrogates and 28 references).

    python -m fingerprinting.evaluate --config=configs/cinic10.py \
        --config.data.dir=/path/to/CINIC-10 --workdir=runs/cinic10

`--config.data.dir` is the official release directory (train/ valid/ test/,
a folder per class). Needs a GPU. `:tiny` shrinks the zoo and the steps to a wiring
check; on tiny data also pass `--config.data.d1_size=` (and d2, test). Expected cost on one
H200-class GPU: about 3 GPU-hours (1-5) for training, minutes for extraction and
evaluation. This is an estimate from the models' FLOP counts at 10-25
TFLOP/s achieved, not a measurement; `launch/gpu_benchmark.sh` measures the
throughput that would replace it.
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
    config_lib.check_arg(arg, ("tiny",))
    c = config_lib.paper(config_lib.base())
    c.data.update(dict(name="cinic10", d1_size=85_000, d2_size=95_000, test_size=90_000))
    if arg == "tiny":
        config_lib.tiny_paper(c)
    return c
