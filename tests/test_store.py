"""store: a trained group is reused by any work directory whose recipe is the
same, retrained when any part of its recipe changes, and never reused from a
damaged entry."""

import dataclasses
import json
import os

import numpy as np
import pytest

from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import store as store_lib
from fingerprinting import zoo as zoo_lib
from fingerprinting.removal import workdir as removal_workdir
from fingerprinting.removal.registry import ATTACKS
from _configs import common


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 1), np.float32)
    y = (x.mean((1, 2, 3)) > 0.5).astype(np.int64)
    part = lambda a, b: data_lib.Split(x[a:b], y[a:b])
    return data_lib.Splits("toy", part(0, 32), part(32, 64), part(64, 96), ("a", "b"))


def tiny_config():
    c = common.base()
    common.smoke(c)
    c.models.source = "mlp"
    for kind in zoo_lib.KINDS:
        if kind not in ("source", "source_twin"):
            c.models[kind + "s"] = ""
    c.models.testing_references = "mlp:1"
    c.models.testing_surrogates = "mlp:1"
    c.removal.attacks = "retraining"
    c.removal.distill_epochs = 1
    return c


def zoo_in(tmp_path, name, splits, config=None, store_dir="store"):
    store = store_lib.Store(str(tmp_path / store_dir)) if store_dir else None
    return zoo_lib.Zoo(config or tiny_config(), str(tmp_path / name), splits, store=store)


def hashes(z, kinds=("source", "testing_surrogate", "testing_reference")) -> dict:
    return {k: ensemble.parameter_hash(z.get(k)[0].variables) for k in kinds}


def test_a_second_work_directory_trains_nothing_and_gets_the_same_weights(tmp_path, splits):
    first = zoo_in(tmp_path, "a", splits)
    before = hashes(first)
    assert first.trained_now == 3
    second = zoo_in(tmp_path, "b", splits)
    assert hashes(second) == before and second.trained_now == 0
    # The work directory holds its own copy, readable without the store.
    alone = zoo_in(tmp_path, "b", splits, store_dir=None)
    assert hashes(alone) == before and alone.trained_now == 0


def test_a_changed_recipe_retrains_that_group_alone(tmp_path, splits):
    before = hashes(zoo_in(tmp_path, "a", splits))
    c = tiny_config()
    c.models.testing_references = "cnn_small:1"  # another architecture for one kind
    z = zoo_in(tmp_path, "b", splits, c)
    after = hashes(z)
    assert z.trained_now == 1 and after["testing_reference"] != before["testing_reference"]
    assert {k: after[k] for k in ("source", "testing_surrogate")} == {
        k: before[k] for k in ("source", "testing_surrogate")
    }
    # The source's epochs change its weights, and so its students' labels.
    c = tiny_config()
    c.train.source_epochs += 1
    z = zoo_in(tmp_path, "c", splits, c)
    after = hashes(z)
    assert z.trained_now == 2  # the source and its student; the reference is reused
    assert after["testing_reference"] == before["testing_reference"]
    assert after["source"] != before["source"]
    assert after["testing_surrogate"] != before["testing_surrogate"]


def test_extraction_verification_and_removal_settings_change_no_recipe(tmp_path, splits):
    first = zoo_in(tmp_path, "a", splits)
    before = hashes(first)
    c = tiny_config()
    c.extract.update(dict(eps=0.5, tau=0.9, steps=7, num_candidates=3, dropout=0.1))
    c.verify.theta, c.evaluate.table1_methods = 0.5, "cbim"
    c.removal.attacks = "ftll"
    c.models.strategy, c.train.checkpoint_seconds = "map", 1.0  # speed only
    z = zoo_in(tmp_path, "b", splits, c)
    assert hashes(z) == before and z.trained_now == 0


def test_a_group_trained_before_the_store_had_it_is_published_when_loaded(tmp_path, splits):
    first = zoo_in(tmp_path, "a", splits, store_dir=None)
    before = hashes(first)
    assert not (tmp_path / "store").exists()
    zoo_in(tmp_path, "a", splits)  # the same work directory, now with a store
    hashes(zoo_in(tmp_path, "a", splits))
    z = zoo_in(tmp_path, "b", splits)
    assert hashes(z) == before and z.trained_now == 0


def test_other_data_labels_seed_or_settings_are_another_recipe(tmp_path, splits):
    z = zoo_in(tmp_path, "a", splits)
    tg = z.get("testing_reference")[0]
    targets = z.targets("testing_reference")
    recipe = z.recipe("testing_reference", tg.group, targets)
    assert recipe == z.recipe("testing_reference", tg.group, targets.copy())
    assert recipe != z.recipe("testing_reference", tg.group, targets[::-1].copy())
    c = tiny_config()
    c.seed = 1
    assert recipe != zoo_in(tmp_path, "b", splits, c).recipe("testing_reference", tg.group, targets)
    c = tiny_config()
    c.train.learning_rate *= 2
    assert recipe != zoo_in(tmp_path, "c", splits, c).recipe("testing_reference", tg.group, targets)
    c = tiny_config()
    c.train.checkpoint_seconds += 1  # speed only
    assert recipe == zoo_in(tmp_path, "d", splits, c).recipe("testing_reference", tg.group, targets)
    # The same labels on other images.
    x = splits.d2.x.copy()
    x[0, 0, 0, 0] += 0.5
    other = data_lib.Splits(
        "toy", splits.d1, data_lib.Split(x, splits.d2.y), splits.test, ("a", "b")
    )
    z = zoo_in(tmp_path, "e", other)
    assert recipe != z.recipe("testing_reference", tg.group, targets)


def _entries(tmp_path):
    root = tmp_path / "store"
    return [root / n for n in os.listdir(root) if not n.startswith("corrupt-")]


@pytest.mark.parametrize("damage", ["flip a byte", "wrong recipe", "no record"])
def test_a_damaged_entry_is_moved_aside_and_the_group_trained_again(
    tmp_path, splits, damage, capsys
):
    before = hashes(zoo_in(tmp_path, "a", splits))
    for entry in _entries(tmp_path):
        if damage == "flip a byte":
            files = [os.path.join(r, n) for r, _, ns in os.walk(entry / "final") for n in ns]
            path = max(files, key=os.path.getsize)
            with open(path, "rb") as f:
                data = bytearray(f.read())
            data[len(data) // 2] ^= 0xFF
            os.unlink(path)  # a hard link to the work directory's copy: replace, not modify
            with open(path, "wb") as f:
                f.write(bytes(data))
        elif damage == "wrong recipe":
            record = json.loads((entry / "result.json").read_text())
            record["recipe"] = "0" * 64
            (entry / "result.json").write_text(json.dumps(record))
        else:
            (entry / "result.json").unlink()
    z = zoo_in(tmp_path, "b", splits)
    assert hashes(z) == before and z.trained_now == 3
    assert "is not usable" in capsys.readouterr().err
    aside = [n for n in os.listdir(tmp_path / "store") if n.startswith("corrupt-")]
    assert len(aside) == 3 and len(_entries(tmp_path)) == 3  # retrained, published anew


def test_a_removal_attack_is_reused_from_the_store(tmp_path, splits, monkeypatch):
    c = tiny_config()
    first = zoo_in(tmp_path, "a", splits, c)
    a = removal_workdir.run_attack("retraining", first, c)
    second = zoo_in(tmp_path, "b", splits, c)

    def no_training(*args):
        raise AssertionError("the attack trained again")

    monkeypatch.setitem(
        ATTACKS, "retraining", dataclasses.replace(ATTACKS["retraining"], fn=no_training)
    )
    b = removal_workdir.run_attack("retraining", second, c)
    assert ensemble.parameter_hash(a.variables) == ensemble.parameter_hash(b.variables)
    monkeypatch.undo()
    c.removal.distill_epochs = 2
    d = removal_workdir.run_attack("retraining", zoo_in(tmp_path, "c", splits, c), c)
    assert ensemble.parameter_hash(d.variables) != ensemble.parameter_hash(a.variables)


def test_where_the_store_is(tmp_path, monkeypatch):
    monkeypatch.delenv(store_lib.ENV, raising=False)
    assert store_lib.default_path(str(tmp_path / "runs" / "x")) == str(
        tmp_path / "runs" / "model-store"
    )
    monkeypatch.setenv(store_lib.ENV, str(tmp_path / "elsewhere"))
    assert store_lib.default_path("runs/x") == str(tmp_path / "elsewhere")
    monkeypatch.setenv(store_lib.ENV, "off")
    assert store_lib.open_store("runs/x") is None


def test_an_unwritable_store_is_given_up_with_a_warning_and_the_run_goes_on(
    tmp_path, splits, capsys
):
    (tmp_path / "store").write_text("a file where the store should be")
    z = zoo_in(tmp_path, "a", splits)
    hashes(z)
    assert z.trained_now == 3 and z.store.broken
    assert capsys.readouterr().err.count("is not used any more") == 1


def test_a_publish_killed_long_ago_is_cleared_and_a_recent_one_kept(tmp_path):
    old, recent = tmp_path / ".tmp-old", tmp_path / ".tmp-recent"
    old.mkdir()
    recent.mkdir()
    os.utime(old, (0, 0))
    store_lib.remove_litter(str(tmp_path))
    assert not old.exists() and recent.exists()


def test_the_training_code_is_part_of_every_recipe_but_not_its_comments():
    code = 'def f(x):\n    """Doc."""\n    return x + 1  # why\n'
    same = 'def f(x):\n    """Other words."""\n    # a comment\n    return x + 1\n'
    other = "def f(x):\n    return x + 2\n"
    assert store_lib.code_of_text(code) == store_lib.code_of_text(same)
    assert store_lib.code_of_text(code) != store_lib.code_of_text(other)
    assert len(store_lib.code_digest()) == 64
