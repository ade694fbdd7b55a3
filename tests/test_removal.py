"""Each removal attack on tiny data does what its name says; a work directory
resumes attacks and refuses stale ones; bad settings fail before any training."""

import os

import chex
import jax
import ml_collections
import numpy as np
import pytest
from sklearn import datasets

from fingerprinting import artifact
from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import files
from fingerprinting import fit
from fingerprinting import harness
from fingerprinting import labels as labels_lib
from fingerprinting import models
from fingerprinting import removal
from fingerprinting import suspects
from fingerprinting import zoo as zoo_lib
from _configs import common


def _train_cfg():
    c = common.base().train
    c.update(dict(batch_size=32, chunk_steps=4, epochs=1))
    return c


def _removal_cfg(**kw):
    r = common.removal_section()
    r.update(dict(distill_epochs=1, finetune_epochs=1, finetune_size=96, **kw))
    return r


@pytest.fixture(scope="module")
def digits():
    d = datasets.load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return x, d.target.astype(np.int32)


def _source(arch, x, y):
    model = models.get_model(arch, 10)
    variables = fit.train_group(
        model,
        x,
        labels_lib.one_hot(y, 10),
        size=1,
        cfg=_train_cfg(),
        epochs=2,
        rng=jax.random.PRNGKey(0),
    )
    group = ensemble.Group(f"source-{arch}", arch, model, 1)
    return zoo_lib.TrainedGroup("source", group, variables, np.zeros(1))


@pytest.fixture(scope="module")
def mlp_source(digits):
    x, y = digits
    return _source("mlp", x[:256], y[:256])


@pytest.fixture(scope="module")
def adversary(digits, mlp_source):
    x, y = digits[0][256:352], digits[1][256:352]
    return removal.AdversaryData(x, y, removal.source_logits(mlp_source, x))


def _cfg(**kw):
    return removal.AttackConfig(
        removal=_removal_cfg(**kw), train=_train_cfg(), seed=0, rng=jax.random.PRNGKey(7)
    )


@pytest.fixture
def recorded(monkeypatch):
    """Replaces training by a recorder of what each attack would train on."""
    calls = []

    def fake_train_group(model, x, targets, *, size, rng, init=None, **kw):
        calls.append(dict(x=np.asarray(x), targets=np.asarray(targets), size=size, **kw))
        if init is not None:
            return init
        shapes = jax.eval_shape(lambda: ensemble.init_members(model, rng, size, np.shape(x)[1:]))
        draw = np.random.default_rng(len(calls)).normal
        return jax.tree.map(lambda s: draw(0, 0.1, s.shape).astype(s.dtype), shapes)

    monkeypatch.setattr(fit, "train_group", fake_train_group)
    return calls


def _leaves_equal(a, b) -> list[bool]:
    return [bool(np.array_equal(u, v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))]


# ----------------------------------------------------------- fine-tuning --


def test_ftll_changes_only_the_last_layer(mlp_source, adversary):
    stolen = removal.ftll(mlp_source, adversary, _cfg())
    before, after = mlp_source.variables, stolen.variables
    for name in before["params"]:
        same = _leaves_equal(before["params"][name], after["params"][name])
        assert (not any(same)) if name == "head" else all(same), name
    # BatchNorm statistics of the frozen layers stay too (see test_training).
    assert removal.last_layer_only(before)["batch_stats"] is False


def test_ftal_changes_every_layer(mlp_source, adversary):
    stolen = removal.ftal(mlp_source, adversary, _cfg())
    assert not any(_leaves_equal(mlp_source.variables["params"], stolen.variables["params"]))


def test_rtll_starts_from_a_new_last_layer(mlp_source, adversary, recorded):
    stolen = removal.rtll(mlp_source, adversary, _cfg())
    init, src = stolen.variables["params"], mlp_source.variables["params"]
    assert not any(_leaves_equal(init["head"], src["head"]))
    assert all(
        _leaves_equal(
            {k: v for k, v in init.items() if k != "head"},
            {k: v for k, v in src.items() if k != "head"},
        )
    )
    assert recorded[0]["trainable"] == removal.last_layer_only(mlp_source.variables)
    np.testing.assert_array_equal(  # fine-tuned on the source's hard labels
        recorded[0]["targets"].argmax(-1), adversary.logits.argmax(-1)
    )


# -------------------------------------------------- adversarial training --


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_training_adds_examples_within_eps(mlp_source, adversary, recorded, method):
    cfg = _cfg(adversarial_size=40, adversarial_eps=0.1, adversarial_alpha=0.05)
    removal.ATTACKS[method].fn(mlp_source, adversary, cfg)
    x, t = recorded[0]["x"], recorded[0]["targets"]
    assert len(x) == 96 + 40
    x_adv = x[96:]
    assert np.abs(x_adv - adversary.x[:40]).max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and not np.array_equal(x_adv, adversary.x[:40])
    np.testing.assert_array_equal(t[96:], t[:40])  # labelled as their originals


# ---------------------------------------------------------- distillation --


def test_papernot_set_grows_by_the_plan(mlp_source, adversary, recorded):
    cfg = _cfg(papernot_seed_size=12, papernot_rounds=3, papernot_lambda=0.1)
    stolen = removal.papernot(mlp_source, adversary, cfg)
    sizes = [len(c["x"]) for c in recorded]
    assert sizes == removal.papernot_sizes(12, 3) == [12, 24, 48, 96]
    assert stolen.parameters[0]["inputs"] == 96
    for before, after in zip(recorded, recorded[1:]):
        n = len(before["x"])
        np.testing.assert_array_equal(after["x"][:n], before["x"])  # the set only grows
        step = np.abs(after["x"][n:] - before["x"])
        assert step.max() <= 0.1 + 1e-6 and step.max() > 0  # one lambda step from its parent
        labels = removal.source_logits(mlp_source, after["x"]).argmax(-1)
        np.testing.assert_array_equal(after["targets"].argmax(-1), labels)  # labelled by the source


def test_knockoff_queries_the_transfer_set(mlp_source, adversary, recorded):
    removal.knockoff(mlp_source, adversary, _cfg(knockoff_data="sample_images", knockoff_size=50))
    x, t = recorded[0]["x"], recorded[0]["targets"]
    assert x.shape == (50, 8, 8, 1)
    np.testing.assert_allclose(t, removal.probabilities(removal.source_logits(mlp_source, x)))


def test_jagielski_learns_eq4_labels(mlp_source, adversary, recorded):
    removal.jagielski(mlp_source, adversary, _cfg(jagielski_temperature=0.5))
    p = labels_lib.softmax(adversary.logits)
    want = p**2 / (p**2).sum(-1, keepdims=True)  # T' = 0.5: p^(1/T') renormalised
    np.testing.assert_allclose(recorded[0]["targets"], want, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------ adaptive attacks --


def test_ensemble_members_learn_disjoint_parts(mlp_source, adversary, recorded):
    stolen = removal.ensemble_attack(mlp_source, adversary, _cfg(ensemble_size=3))
    subsets = recorded[0]["subsets"]
    assert recorded[0]["size"] == 3 and subsets.shape == (3, 32)
    assert len(np.unique(subsets)) == subsets.size  # disjoint
    assert stolen.deploy == "mean"


def test_noise_labels_are_distributions(mlp_source, adversary, recorded):
    stolen = removal.noise(mlp_source, adversary, _cfg(noise_lambdas="0,0.1,0.5,1"))
    t = recorded[0]["targets"]
    assert t.shape == (4, 96, 10) and recorded[0]["size"] == 4
    assert t.min() >= 0
    np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-5)
    p = removal.probabilities(adversary.logits)
    np.testing.assert_allclose(t[0], p, atol=1e-6)  # lambda 0: the source's vectors
    distance = np.abs(t - p[None]).mean((1, 2))
    assert np.all(np.diff(distance) > 0)
    assert [s["lambda"] for s in stolen.parameters] == [0, 0.1, 0.5, 1] and stolen.sweep == "lambda"


def test_true_labels_with_rho_one_is_training_on_ground_truth(mlp_source, adversary):
    cfg = _cfg(truth_shares="1.0")
    stolen = removal.true_labels(mlp_source, adversary, cfg)
    truth = fit.train_group(
        mlp_source.group.model,
        adversary.x,
        labels_lib.one_hot(adversary.y, 10),
        size=1,
        cfg=_train_cfg(),
        epochs=1,
        rng=cfg.rng,
    )
    chex.assert_trees_all_close(stolen.variables, truth, atol=1e-5)


# ----------------------------------------------------- beyond the paper --


def test_prune_zeroes_the_smallest_weights_of_each_layer(mlp_source, adversary):
    stolen = removal.prune(mlp_source, adversary, _cfg(prune_sparsities="0.5,0.9"))
    kernel = lambda v, m: np.asarray(v["params"]["Dense_0"]["kernel"][m])
    src = kernel(mlp_source.variables, 0)
    for m, s in enumerate((0.5, 0.9)):
        w = kernel(stolen.variables, m)
        assert (w == 0).mean() == pytest.approx(s, abs=1e-3)
        assert np.abs(src[w == 0]).max() <= np.abs(src[w != 0]).min()
    np.testing.assert_array_equal(  # biases stay
        stolen.variables["params"]["head"]["bias"][1],
        mlp_source.variables["params"]["head"]["bias"][0],
    )


def test_prune_finetune_keeps_pruned_weights_at_zero(mlp_source, adversary):
    cfg = _cfg(prune_sparsities="0.3,0.8")
    pruned = removal.prune(mlp_source, adversary, cfg).variables
    tuned = removal.prune_finetune(mlp_source, adversary, cfg).variables
    for layer in ("Dense_0", "Dense_1", "head"):
        p = np.asarray(pruned["params"][layer]["kernel"])
        t = np.asarray(tuned["params"][layer]["kernel"])
        assert np.all(t[p == 0] == 0), layer
        assert np.mean(t[p != 0] != p[p != 0]) > 0.5, layer  # the rest trained (dead units aside)


def test_quantize_keeps_255_levels_per_output_channel(mlp_source, adversary):
    stolen = removal.quantize(mlp_source, adversary, _cfg())
    w = np.asarray(stolen.variables["params"]["Dense_1"]["kernel"][0])
    src = np.asarray(mlp_source.variables["params"]["Dense_1"]["kernel"][0])
    scale = np.abs(src).max(0) / 127
    assert all(len(np.unique(w[:, j])) <= 255 for j in range(w.shape[1]))
    assert np.all(np.abs(w - src) <= scale / 2 + 1e-7)


# ------------------------------------------------------------ validation --


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("attacks", "ftll,distill", "unknown removal attack"),
        ("attacks", "ftll,ftll", "twice"),
        ("finetune_epochs", 0, "removal.finetune_epochs = 0 is out of range"),
        ("adversarial_eps", 2.0, "removal.adversarial_eps"),
        ("ensemble_size", 1, "removal.ensemble_size"),
        ("noise_lambdas", "0.1,1.5", "removal.noise_lambdas: 1.5 is out of range"),
        ("truth_shares", "0.1,x", "comma-separated numbers"),
        ("prune_sparsities", "1.0", "prune_sparsities"),
        ("knockoff_data", "mnist", "unknown removal.knockoff_data"),
        ("knockoff_data", "digits", "the attacked data set itself"),
        ("knockoff_data", "imagenet32", "needs its directory"),
    ],
)
def test_validate_names_the_bad_setting(field, value, match):
    c = common.base()
    setattr(c.removal, field, value)
    with pytest.raises(ValueError, match=match):
        removal.validate(c)


def test_every_config_variant_validates():
    for arg in (None, "smoke"):
        c = common.base()
        if arg:
            common.smoke(c)
        removal.validate(c)
        assert set(removal.parse_attacks(c.removal.attacks)) <= set(removal.ATTACKS)
    assert removal.parse_attacks(common.ALL_ATTACKS) == list(removal.ATTACKS)


def test_bad_attack_fails_before_any_work(tmp_path):
    c = common.base()
    c.removal.attacks = "ftll,finetune_everything"
    with pytest.raises(removal.RemovalConfigError, match="finetune_everything"):
        harness.run_evaluate(c, str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()


def test_transfer_sets_take_the_input_shape():
    patches = data_lib.load_transfer("sample_images", None, (8, 8, 1), 20, seed=0)
    assert patches.shape == (20, 8, 8, 1) and patches.dtype == np.float32
    assert 0 <= patches.min() and patches.max() <= 1 and patches.std() > 0.01
    np.testing.assert_array_equal(
        patches, data_lib.load_transfer("sample_images", None, (8, 8, 1), 20, seed=0)
    )
    digits = data_lib.load_transfer("digits", None, (16, 16, 3), 30, seed=1)
    assert digits.shape == (30, 16, 16, 3)
    with pytest.raises(data_lib.DataError, match="only 1797"):
        data_lib.load_transfer("digits", None, (8, 8, 1), 5000, seed=0)


# -------------------------------------------------------- work directory --


@pytest.fixture(scope="module")
def zoo(digits, tmp_path_factory):
    x, y = digits
    config = common.base()
    common.smoke(config)
    config.models.source = "mlp"
    config.removal.attacks = "prune,quantize"
    split = lambda a, b: data_lib.Split(x[a:b], y[a:b])
    splits = data_lib.Splits(
        "digits", split(0, 256), split(256, 352), split(352, 480), tuple("0123456789")
    )
    return zoo_lib.Zoo(config, str(tmp_path_factory.mktemp("wd")), splits)


def _fingerprint(zoo):
    x = zoo.splits.test.x[:20]
    keys = removal.source_logits(zoo.source(), x).argmax(-1)
    meta = {"num_classes": 10, "input_shape": [8, 8, 1], "theta": 0.7, "calibration": {}}
    u8 = np.round(x * 255).astype(np.uint8)
    return artifact.Fingerprint(u8, u8, keys, zoo.splits.test.y[:20], np.ones(20), meta)


def test_workdir_keeps_attacks_resumes_and_refuses_stale_ones(zoo, monkeypatch):
    config, fp = zoo.config, _fingerprint(zoo)
    path = os.path.join(zoo.workdir, "metrics.jsonl")
    rows = harness.run_removal(zoo, fp, config, [], path)
    assert [r["name"] for r in rows] == [f"attack-prune/{m}" for m in range(2)] + [
        "attack-quantize/0"
    ]
    assert files.read_jsonl(path) == rows
    assert all(r["kind"] == "attack" and r["sweep"] in ("sparsity", None) for r in rows)
    # What verify --suspect loads gives the row's fingerprint accuracy.
    suspect = suspects.from_checkpoint(removal.group_dir(zoo.workdir, "prune") + "/1")
    agree = (suspect.predict(fp.x) == fp.keys).mean()
    assert agree == pytest.approx(rows[1]["fingerprint_accuracy"])

    def no_training(*a, **k):
        raise AssertionError("a finished attack ran again")

    monkeypatch.setitem(
        removal.ATTACKS, "prune", removal.Attack(no_training, "x", ("prune_sparsities",))
    )
    assert harness.run_removal(zoo, fp, config, rows, path) == rows
    # Rows lost (a kill between the group and its rows) come back from the group.
    again = harness.run_removal(zoo, fp, config, rows[2:], path)
    assert sorted(r["name"] for r in again) == sorted(r["name"] for r in rows)

    stale = ml_collections.ConfigDict(config.to_dict())
    stale.removal.prune_sparsities = "0.1"
    with pytest.raises(removal.StaleAttackError, match="prune_sparsities"):
        harness.run_removal(zoo, fp, stale, rows, path)


def test_attacks_from_scratch_train_as_long_as_the_testing_surrogates():
    c = common.base()
    c.train.update(dict(epochs=5, student_epochs=0))
    cfg = lambda: removal.AttackConfig(c.removal, c.train, 0, jax.random.PRNGKey(0))
    assert removal.distill_epochs(cfg()) == 5
    c.train.student_epochs = 15
    assert removal.distill_epochs(cfg()) == 15
    c.removal.distill_epochs = 3
    assert removal.distill_epochs(cfg()) == 3
