"""Tests for configs/: every config loads, validates and documents its command
line; the paper configs have the paper's zoo and party sizes; their `smoke`
variants are wired (data -> models -> logits) on tiny fake data written in
each data set's official on-disk layout, and CINIC-10 runs end to end.

Nothing here trains a big CIFAR model or touches the network: the zoo shapes
of the paper architectures are checked with `jax.eval_shape`, CIFAR-10 comes
from `tfds.testing.mock_data`, and the one end-to-end run uses ResNet-20
only, on 20 fake images per party.
"""

import functools
import gzip
import importlib.util
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags
from PIL import Image

from fingerprinting import artifact
from fingerprinting import data
from fingerprinting import ensemble
from fingerprinting import files
from fingerprinting import models
from fingerprinting import pipeline
from fingerprinting import zoo

# ml_collections' config_flags loads config files with a deprecated importlib call.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the load_module\\(\\) method is deprecated:DeprecationWarning"
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")
CONFIGS = sorted(
    f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and not f.startswith("_")
)
PAPER = ("cifar10", "cinic10", "imagenet32")
# The variant argument (`--config=FILE:ARG`) each config supports.
VARIANTS = {
    "digits": "smoke",
    "fashion_mnist": "smoke",
    "cifar10": "smoke",
    "cinic10": "smoke",
    "imagenet32": "smoke",
    "custom": "smoke",
}
# Configs whose data set is not their own name: a user's own data.
DATASET_OF = {"custom": "image_folder"}
# (d1, d2, test) of the paper (Section 6.1 and its appendix); CIFAR-10: its
# 50,000 training images halved between the parties, the whole test set.
PAPER_SIZES = {
    "cifar10": (25_000, 25_000, 10_000),
    "cinic10": (85_000, 95_000, 90_000),
    "imagenet32": (64_000, 64_000, 5_000),
}
NUM_CLASSES = {"cifar10": 10, "cinic10": 10, "imagenet32": 100}
DEFENDER_KINDS = ("training_surrogate", "training_reference")
# The kinds every config names; the held-out selection models and the outsider
# references (which need a fingerprint pool) are optional.
OPTIONAL_KINDS = ("training_outsider_reference", "source_twin")
SPEC_KINDS = tuple(
    k
    for k in zoo.KINDS
    if k != "source" and not k.startswith("selection") and k not in OPTIONAL_KINDS
)


def config_path(name):
    return os.path.join(CONFIG_DIR, name + ".py")


def load_module(name):
    spec = importlib.util.spec_from_file_location(f"_test_configs_{name}", config_path(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_config(name, arg=None, *overrides):
    """The config as an entry point gets it: `--config=FILE[:ARG] --config.x=y ...`."""
    argv = [
        "prog",
        f"--config={config_path(name)}" + (f":{arg}" if arg else ""),
        *(f"--config.{k}={v}" for k, v in overrides),
    ]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "config", flag_values=fv, lock_config=True, sys_argv=argv
    )
    fv(argv)
    return fv.config


def spec_counts(config, kind):
    counts = {}
    for arch, n in zoo.parse_spec(zoo.kind_spec(config, kind)):
        counts[arch] = counts.get(arch, 0) + n
    return counts


def model_count(config):
    kinds = [k for k in zoo.KINDS if k != "source"]  # the optional selection models too
    return 1 + sum(sum(spec_counts(config, k).values()) for k in kinds)


# ------------------------------------------------- loading and validation --


def test_every_dataset_has_a_config():
    assert set(CONFIGS) == set(VARIANTS), "add a new config's variant to VARIANTS"
    assert set(CONFIGS) >= set(data.BUILTIN_DATASETS)
    # A user's data, in either format, runs with configs/custom.py (data.name picks the format).
    assert set(DATASET_OF.values()) <= set(data.USER_DATASETS)
    assert set(data.DATASETS) == set(data.BUILTIN_DATASETS) | set(data.USER_DATASETS)


@pytest.mark.parametrize(
    "name,arg", [(n, None) for n in CONFIGS] + [(n, VARIANTS[n]) for n in CONFIGS]
)
def test_config_loads_and_validates(name, arg):
    module = load_module(name)
    config = module.get_config(arg) if arg else module.get_config()
    assert isinstance(config, ml_collections.ConfigDict)
    zoo.validate(config)
    assert config.data.name == DATASET_OF.get(name, name) and config.data.name in data.DATASETS
    assert config.models.source in models.ARCHITECTURES
    # The entry points' loader (ml_collections.config_flags) gives the same config.
    assert parse_config(name, arg).to_dict() == config.to_dict()


@pytest.mark.parametrize("name", CONFIGS)
def test_variant_is_honoured_and_smaller(name):
    module = load_module(name)
    full, small = module.get_config(), module.get_config(VARIANTS[name])
    assert small.to_dict() != full.to_dict()
    assert model_count(small) < model_count(full)
    assert small.train.epochs < full.train.epochs
    assert zoo.epochs_of(small, "testing_surrogate") <= small.train.epochs  # students too
    assert small.extract.steps < full.extract.steps
    assert small.extract.tau == 0.0  # a wiring check keeps every adversarial example
    selection = [k for k in zoo.KINDS if k.startswith("selection")]
    assert sum(sum(spec_counts(small, k).values()) for k in selection) <= 2


@pytest.mark.parametrize("name", CONFIGS)
def test_docstring_names_its_own_command_line(name):
    doc = load_module(name).__doc__
    assert doc, f"configs/{name}.py has no docstring"
    lines = doc.replace("\\\n", " ")  # join shell line continuations
    commands = re.findall(r"python -m fingerprinting\.(\w+)([^\n]*)", lines)
    assert commands, f"configs/{name}.py's docstring shows no `python -m fingerprinting.` command"
    for module, args in commands:
        assert importlib.util.find_spec(f"fingerprinting.{module}") is not None, module
        assert f"--config=configs/{name}.py" in args, (name, module, args)
        assert "--workdir=" in args


# ------------------------------------------------------ the paper configs --


@pytest.mark.parametrize("name", PAPER)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_paper_zoo(name, arg):
    config = load_module(name).get_config(arg)
    assert config.models.source == "resnet20"
    paper_archs = set(models.PAPER_ARCHITECTURES)
    assert paper_archs == {"resnet20", "resnet56", "densenet", "vgg16", "vgg19", "mobilenetv2"}
    for kind in SPEC_KINDS:
        counts = spec_counts(config, kind)
        assert set(counts) <= paper_archs, (kind, counts)
        if "label_only" in kind:  # a few students of top-1 labels on each side
            assert counts, kind
            continue
        if arg is None or kind in DEFENDER_KINDS:
            assert set(counts) == paper_archs, (kind, counts)
        if arg is None and kind in DEFENDER_KINDS:
            # The defender's side: at least two models per architecture.
            assert min(counts.values()) >= 2, (kind, counts)


@pytest.mark.parametrize("name", PAPER)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_paper_party_sizes(name, arg):
    d = load_module(name).get_config(arg).data
    assert (d.d1_size, d.d2_size, d.test_size) == PAPER_SIZES[name]
    assert data.splits._DEFAULT_SIZES[name] == PAPER_SIZES[name]


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_uses_the_papers_attack(name):
    c = load_module(name).get_config()
    assert c.extract.attack == "cbim" and c.extract.eps == pytest.approx(0.15)
    assert c.extract.tau == 1.0
    assert c.train.augment_crop == 4 and c.train.augment_flip


@pytest.mark.parametrize("name", PAPER)
def test_paper_config_states_its_gpu_cost(name):
    doc = load_module(name).__doc__
    # A figure with a unit of time, e.g. "about 9 GPU-hours" or "~40 min".
    cost = r"\d[\d.,]*\s*(?:GPU[- ]?)?(?:hours?|h|minutes?|min|days?)\b"
    assert "GPU" in doc and re.search(cost, doc), doc


# ----------------------------------------------- tiny fake data on disk --


def write_png_tree(root, per_split, seed=0):
    """A CINIC-10 release tree: split/class/*.png, 32x32 RGB. Every class has its
    own colour (plus noise), so that a few training steps learn something."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, (len(data.CINIC10_CLASSES), 3))
    for split, n in per_split.items():
        for k, cls in enumerate(data.CINIC10_CLASSES):
            folder = os.path.join(root, split, cls)
            os.makedirs(folder)
            for i in range(n):
                img = colours[k] + rng.integers(-25, 26, (32, 32, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
                    os.path.join(folder, f"{cls}_{i}.png")
                )


# 1-based labels in the downsampled-ImageNet npz files (the ILSVRC devkit's
# map_clsloc.txt numbering): three of the paper's 100 classes, and one
# (2, English setter) that is not among them and must be dropped.
IMAGENET_LABELS = {1: "kit fox", 10: "Persian cat", 923: "pole"}
NOT_PAPER_LABEL = 2


def write_imagenet32(root):
    """train_data_batch_1..10.npz and val_data.npz: planar RGB rows, labels 1..1000.
    30 train and 3 validation images are of the paper's classes."""
    rng = np.random.default_rng(0)
    train_labels = [1, 10, NOT_PAPER_LABEL, 923]
    for i in range(1, 11):
        np.savez(
            os.path.join(root, f"train_data_batch_{i}.npz"),
            data=rng.integers(0, 256, (4, 3072), dtype=np.uint8),
            labels=np.array(train_labels),
            mean=np.zeros(3072),
        )
    np.savez(
        os.path.join(root, "val_data.npz"),
        data=rng.integers(0, 256, (4, 3072), dtype=np.uint8),
        labels=np.array([923, NOT_PAPER_LABEL, 1, 10]),
    )


def write_idx(path, magic, arr):
    with gzip.open(path, "wb") as f:
        f.write(np.array([magic, *arr.shape], ">u4").tobytes() + arr.astype(np.uint8).tobytes())


def write_fashion_idx(root, n_train=30, n_test=10):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            os.path.join(root, f"{split}-images-idx3-ubyte.gz"),
            2051,
            rng.integers(0, 256, (n, 28, 28)),
        )
        write_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"), 2049, np.arange(n) % 10)


# CINIC-10 fake release: 3 train + 1 valid images per class pool to 40 images
# for the two parties; 1 test image per class.
CINIC_PER_SPLIT = {"train": 3, "valid": 1, "test": 1}
# (d1, d2, test) of each fake data set.
FAKE_SIZES = {"cinic10": (20, 20, 10), "imagenet32": (12, 12, 3), "cifar10": (5, 7, 3)}


@pytest.fixture(scope="module")
def cinic_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cinic10"))
    write_png_tree(root, CINIC_PER_SPLIT)
    return root


@pytest.fixture(scope="module", params=PAPER)
def tiny(request, cinic_dir, tmp_path_factory):
    """(name, smoke config pointed at fake data, its splits)."""
    name = request.param
    d1, d2, nt = FAKE_SIZES[name]
    overrides = [("data.d1_size", d1), ("data.d2_size", d2), ("data.test_size", nt)]
    if name == "cifar10":
        tfds = pytest.importorskip("tensorflow_datasets")
        config = parse_config(name, "smoke", *overrides)
        with tfds.testing.mock_data(num_examples=12):
            splits = pipeline.load_splits(config)
    else:
        if name == "cinic10":
            root = cinic_dir
        else:
            root = str(tmp_path_factory.mktemp("imagenet32"))
            write_imagenet32(root)
        config = parse_config(name, "smoke", ("data.dir", root), *overrides)
        splits = pipeline.load_splits(config)
    return name, config, splits


def test_smoke_paper_config_loads_fake_data(tiny):
    name, config, splits = tiny
    k = NUM_CLASSES[name]
    assert splits.name == name
    assert splits.num_classes == k and len(splits.class_names) == k
    assert splits.input_shape == (32, 32, 3)
    assert (len(splits.d1), len(splits.d2), len(splits.test)) == FAKE_SIZES[name]
    for part in (splits.d1, splits.d2, splits.test):
        assert part.x.dtype == np.float32 and part.x.shape[1:] == (32, 32, 3)
        assert 0.0 <= part.x.min() and part.x.max() <= 1.0
        assert part.y.dtype == np.int32 and 0 <= part.y.min() and part.y.max() < k
    if name == "imagenet32":
        # Only the paper's classes, relabelled to their index in the 100.
        want = {data.IMAGENET32_CLASSES.index(c) for c in IMAGENET_LABELS.values()}
        got = set(splits.d1.y) | set(splits.d2.y) | set(splits.test.y)
        assert got == want
        assert sorted(splits.test.y) == sorted(want)  # the 3 of 4 validation images kept
    # `smoke` keeps the paper's party sizes, which fake data cannot fill.
    paper_sizes = parse_config(name, "smoke", ("data.dir", config.data.dir))
    with pytest.raises(data.DataError, match=f"d1_size={PAPER_SIZES[name][0]}"):
        if name == "cifar10":
            with pytest.importorskip("tensorflow_datasets").testing.mock_data(num_examples=12):
                pipeline.load_splits(paper_sizes)
        else:
            pipeline.load_splits(paper_sizes)


@functools.lru_cache(maxsize=None)
def member_shapes(model, size, input_shape, batch):
    """(abstract stacked variables, abstract logits) of `size` members: traced,
    never compiled or run. Cached: equal modules give equal shapes."""
    variables = jax.eval_shape(
        lambda key: ensemble.init_members(model, key, size, input_shape), jax.random.PRNGKey(0)
    )
    logits = jax.eval_shape(
        lambda v, x: ensemble.apply_members(model, v, x),
        variables,
        jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32),
    )
    return variables, logits


def test_smoke_paper_zoo_shapes(tiny):
    name, config, splits = tiny
    k, batch = splits.num_classes, 3
    assert k == NUM_CLASSES[name]
    seen = set()
    for kind in ("source",) + SPEC_KINDS:
        groups = zoo.groups_of_kind(config, kind, k)
        assert groups, kind
        for group in groups:
            seen.add(group.arch)
            variables, logits = member_shapes(group.model, group.size, splits.input_shape, batch)
            assert logits.shape == (group.size, batch, k), (kind, group.arch)
            assert logits.dtype == jnp.float32
            leaves = jax.tree_util.tree_leaves(variables)
            assert leaves and all(leaf.shape[0] == group.size for leaf in leaves), (
                kind,
                group.arch,
            )
    assert seen == set(models.PAPER_ARCHITECTURES)


# ------------------------------------------ CINIC-10 end to end (ResNet-20) --


def test_cinic10_smoke_extracts_a_fingerprint(cinic_dir, tmp_path):
    """The real pipeline on the fake CINIC-10 tree with a ResNet-20-only zoo.

    The outcome is made deterministic, not left to chance: tau = 0 keeps every
    adversarial example; eps = 1 (two steps of 0.5) lets C-BIM move an input
    anywhere in pixel space; and the source gets enough (cheap, batch-2) steps
    for its batch-norm statistics to settle, so that it classifies by colour
    rather than predicting one class for every input, which no attack can flip.
    When written, that gave 8 adversarial examples of 11 candidates here, and
    3-8 of 5-9 with five other (data, config) seeds: never none.
    """
    one = "resnet20:1"
    d1, d2, nt = FAKE_SIZES["cinic10"]
    config = parse_config(
        "cinic10",
        "smoke",
        ("data.dir", cinic_dir),
        ("data.d1_size", d1),
        ("data.d2_size", d2),
        ("data.test_size", nt),
        ("models.source", "resnet20"),
        *((f"models.{k}s", one) for k in SPEC_KINDS),
        ("train.epochs", 1),
        ("train.source_epochs", 3),
        ("train.batch_size", 2),
        ("train.optimizer", "adam"),
        ("train.learning_rate", 3e-3),
        ("train.augment_crop", 0),
        ("train.augment_flip", False),
        ("extract.steps", 2),
        ("extract.tau", 0.0),
        ("extract.eps", 1.0),
        ("extract.alpha", 0.5),
        ("extract.num_candidates", d1),
        ("extract.batch_size", d1),
    )
    workdir = str(tmp_path / "wd")

    fp = pipeline.run_extract(config, workdir)

    path = pipeline.fingerprint_path(workdir)
    assert os.path.isfile(path)
    rows = files.read_jsonl(os.path.join(workdir, "models.jsonl"))
    assert sorted(r["kind"] for r in rows) == sorted(("source",) + SPEC_KINDS)
    assert {r["architecture"] for r in rows} == {"resnet20"}
    loaded = artifact.load(path)
    n = len(loaded)
    assert n >= 1
    assert n == loaded.meta["adversarial"] == loaded.meta["passed_tau"]  # tau = 0, n <= 100
    assert loaded.meta["candidates"] >= n
    assert loaded.x.dtype == np.uint8 and loaded.x.shape == (n, 32, 32, 3)
    assert loaded.original.dtype == np.uint8 and loaded.original.shape == (n, 32, 32, 3)
    assert np.all((0 <= loaded.keys) & (loaded.keys <= 9))
    assert np.all(loaded.keys != loaded.truth)  # adversarial for the source
    assert loaded.meta["dataset"] == "cinic10" and loaded.num_classes == 10
    assert loaded.input_shape == (32, 32, 3)
    assert loaded.meta["class_names"] == list(data.CINIC10_CLASSES)
    assert loaded.meta["source_architecture"] == "resnet20"
    np.testing.assert_array_equal(loaded.x, fp.x)
    np.testing.assert_array_equal(loaded.keys, fp.keys)
    # A rerun finds the fingerprint and does nothing new.
    mtime = os.path.getmtime(path)
    again = pipeline.run_extract(config, workdir)
    np.testing.assert_array_equal(again.keys, loaded.keys)
    assert os.path.getmtime(path) == mtime


# --------------------------------------------- the CPU configs' data --


def test_digits_configs_load_their_data():
    for arg in (None, "smoke"):
        splits = pipeline.load_splits(parse_config("digits", arg))
        assert splits.input_shape == (8, 8, 1) and splits.num_classes == 10
        assert (len(splits.d1), len(splits.d2), len(splits.test)) == (719, 719, 359)


def test_fashion_mnist_smoke_reads_fake_idx_dir(tmp_path):
    write_fashion_idx(str(tmp_path), n_train=30, n_test=10)
    # The smoke config's own sizes (512 / 512 / 256) exceed the fake data: the
    # error proves the reader used data.dir, not Debian's copy or TFDS.
    smoke = parse_config("fashion_mnist", "smoke", ("data.dir", str(tmp_path)))
    assert (smoke.data.d1_size, smoke.data.d2_size, smoke.data.test_size) == (512, 512, 256)
    with pytest.raises(data.DataError, match="only 30"):
        pipeline.load_splits(smoke)
    config = parse_config(
        "fashion_mnist",
        "smoke",
        ("data.dir", str(tmp_path)),
        ("data.d1_size", 12),
        ("data.d2_size", 18),
        ("data.test_size", 10),
    )
    splits = pipeline.load_splits(config)
    assert splits.name == "fashion_mnist"
    assert splits.input_shape == (28, 28, 1) and splits.num_classes == 10
    assert splits.class_names == data.FASHION_MNIST_CLASSES
    assert (len(splits.d1), len(splits.d2), len(splits.test)) == (12, 18, 10)
    for part in (splits.d1, splits.d2, splits.test):
        assert part.x.dtype == np.float32 and 0.0 <= part.x.min() and part.x.max() <= 1.0
    assert sorted(splits.test.y.tolist()) == list(range(10))  # the whole fake test split


@pytest.mark.parametrize("name", CONFIGS)
def test_unknown_config_argument_is_refused(name):
    with pytest.raises(ValueError, match="unknown config argument"):
        load_module(name).get_config("tyni")


# ------------------------------------------------- config arguments, modules --


def test_parse_arg_types_each_value_once():
    from fingerprinting import config as config_lib

    a = config_lib.parse_arg("smoke,seeds=3,eps=0.5", smoke=False, seeds=1, eps=0.1, name="x")
    assert (a.smoke, a.seeds, a.eps, a.name) == (True, 3, 0.5, "x")
    assert config_lib.parse_arg(None, smoke=False).smoke is False
    assert config_lib.parse_arg("smoke=false", smoke=True).smoke is False


@pytest.mark.parametrize(
    "arg, match",
    [
        ("tiny", "unknown config argument 'tiny'"),
        ("seeds", "needs a value"),
        ("seeds=two", "expected a int"),
        ("smoke=maybe", "expected true or false"),
    ],
)
def test_parse_arg_refuses_typos(arg, match):
    from fingerprinting import config as config_lib
    from fingerprinting import errors

    with pytest.raises(errors.ConfigError, match=match):
        config_lib.parse_arg(arg, smoke=False, seeds=1)


def test_config_modules_load_by_path_once(tmp_path):
    from fingerprinting import config as config_lib
    from fingerprinting import errors

    first = config_lib.load_module(os.path.join(CONFIG_DIR, "_common.py"))
    assert config_lib.load_module(os.path.join(CONFIG_DIR, "_common.py")) is first
    assert first.base().data.name == "digits"
    with pytest.raises(errors.ConfigError, match="no config file"):
        config_lib.load_module(str(tmp_path / "missing.py"))


def test_every_field_of_the_base_config_says_what_it_is():
    """Every field of configs/common.py's sections carries its own trailing comment."""
    text = open(os.path.join(CONFIG_DIR, "_common.py")).read()
    fields = re.findall(r"^ {12}(\w+)=.*$", text, re.M)
    bare = [line for line in re.findall(r"^ {12}\w+=.*$", text, re.M) if "#" not in line]
    assert len(fields) > 60 and not bare, bare


@pytest.mark.parametrize("source", ["cnn_medium", "cnn_pool"])
def test_fashion_mnist_study_has_the_models_its_claims_need(source):
    c = parse_config("fashion_mnist", f"source={source}")
    pipeline.validate(c)
    archs = lambda kinds: [a for k in kinds for a, _ in zoo.parse_spec(zoo.kind_spec(c, k))]
    counts = lambda kinds: {
        a: sum(n for k in kinds for b, n in zoo.parse_spec(zoo.kind_spec(c, k)) if b == a)
        for a in archs(kinds)
    }
    defender = set(archs(zoo.TRAINING_SURROGATES + zoo.TRAINING_REFERENCES))
    assert c.models.source == source and source in defender and len(defender) >= 4
    thieves = set(archs(["testing_surrogate"]))
    assert defender < thieves  # every family of the zoo, and one it does not have
    assert len(set(archs(["label_only_surrogate"]))) >= 2
    independent = counts(zoo.INDEPENDENT_KINDS)
    assert sum(independent.values()) >= 12 and independent[source] >= 4
    # the twin test: twins of the source, and the thieves' queries as the log
    assert c.models.source_twins >= 1 and c.extract.query_log == "d2"
    assert zoo.parse_spec(zoo.kind_spec(c, "source_twin")) == [(source, c.models.source_twins)]


def test_fashion_mnist_refuses_a_source_outside_its_zoo():
    with pytest.raises(Exception, match="source='resnet20'"):
        parse_config("fashion_mnist", "source=resnet20")
