"""ImageNet32 restricted to the paper's 100 classes (its appendix): 64,000
images per party, 5,000 test images. ResNet-20 source; surrogates and
references across six architectures (the paper trained 14 and 15).

    python -m fingerprinting.evaluate --config=configs/imagenet32.py \
        --config.data.dir=/path/to/Imagenet32 --workdir=runs/imagenet32

`--config.data.dir` holds the official npz batches (train_data_batch_1..10.npz,
val_data.npz). Needs a GPU. `:tiny` shrinks the zoo and the steps to a wiring
check; on tiny data also pass `--config.data.d1_size=` (and d2, test). Expected cost on one
H200-class GPU: about 2 GPU-hours (1-4) for training, minutes for extraction and
evaluation. This is an estimate from the models' FLOP counts at 10-25
TFLOP/s achieved, not a measurement; `launch/gpu_benchmark.sh` measures the
throughput that would replace it.
"""

from fingerprinting import config as config_lib


def get_config(arg: str | None = None):
    config_lib.check_arg(arg, ("tiny",))
    c = config_lib.paper(config_lib.base())
    c.data.update(dict(name="imagenet32", d1_size=64_000, d2_size=64_000, test_size=5_000))
    if arg == "tiny":
        config_lib.tiny_paper(c)
    return c
