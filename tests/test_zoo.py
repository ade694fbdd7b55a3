"""zoo: which models a config trains, named and seeded so that a rerun finds them."""

import jax
import numpy as np
import pytest

from fingerprinting import data as data_lib
from fingerprinting import errors
from fingerprinting import zoo
from _configs import common


def test_parse_spec_reads_counts_and_defaults_to_one():
    assert zoo.parse_spec("cnn_small:2, mlp") == [("cnn_small", 2), ("mlp", 1)]
    assert zoo.parse_spec("") == [] and zoo.parse_spec(None) == []


@pytest.mark.parametrize(
    "spec, match",
    [
        ("resnet7:1", "unknown architecture 'resnet7'"),
        ("mlp:two", "bad member count 'two'"),
        ("mlp:0", "at least 1"),
    ],
)
def test_parse_spec_refuses_bad_specs(spec, match):
    with pytest.raises(zoo.SpecError, match=match):
        zoo.parse_spec(spec)
    assert issubclass(zoo.SpecError, errors.UserError)


def test_every_kind_trains_on_a_party_and_learns_from_a_label_source():
    assert set(zoo.DERIVED_KINDS) | set(zoo.INDEPENDENT_KINDS) | set(zoo.TRAINING_SURROGATES) < set(
        zoo.KINDS
    )
    assert not set(zoo.DERIVED_KINDS) & set(zoo.INDEPENDENT_KINDS)
    for kind, (party, labels) in zoo.KINDS.items():
        assert party in (None, "d1", "d2", "d1_rest"), kind
        # References never see the source's answers; derived models always do.
        if kind in zoo.INDEPENDENT_KINDS or kind.endswith("_reference"):
            assert labels == "ground_truth", kind
        if kind in zoo.DERIVED_KINDS:
            assert labels != "ground_truth", kind


def test_groups_are_named_by_kind_and_architecture():
    c = common.base()
    c.models.testing_surrogates = "cnn_small:2,mlp:1"
    groups = zoo.groups_of_kind(c, "testing_surrogate", 10)
    assert [(g.name, g.arch, g.size) for g in groups] == [
        ("testing_surrogate-cnn_small", "cnn_small", 2),
        ("testing_surrogate-mlp", "mlp", 1),
    ]
    (source,) = zoo.groups_of_kind(c, "source", 10)
    assert (source.name, source.size) == (f"source-{c.models.source}", 1)


def test_group_seed_depends_on_the_seed_and_the_name_only():
    c = common.base()
    a = zoo.group_seed(c, "training_reference-mlp")
    np.testing.assert_array_equal(a, zoo.group_seed(c, "training_reference-mlp"))
    assert not np.array_equal(a, zoo.group_seed(c, "testing_reference-mlp"))
    c.seed = 1
    assert not np.array_equal(a, zoo.group_seed(c, "training_reference-mlp"))
    assert a.shape == jax.random.PRNGKey(0).shape


def test_records_name_each_member():
    group = zoo.groups_of_kind(common.base(), "testing_reference", 10)[0]
    tg = zoo.TrainedGroup("testing_reference", group, {}, np.array([0.5, 0.25]))
    rows = tg.records()[:2]
    assert rows[0]["name"] == f"{group.name}/0" and rows[1]["test_accuracy"] == 0.25
    assert {r["kind"] for r in rows} == {"testing_reference"}


def test_validate_refuses_an_unknown_source_before_training():
    c = common.base()
    c.models.source = "nope"
    with pytest.raises(zoo.SpecError, match="nope"):
        zoo.validate(c)


def test_students_train_student_epochs_and_references_epochs():
    c = common.base()
    c.train.update(dict(epochs=5, source_epochs=20, student_epochs=0))
    assert {k: zoo.epochs_of(c, k) for k in ("source", "testing_surrogate")} == {
        "source": 20,
        "testing_surrogate": 5,
    }
    c.train.student_epochs = 15
    for kind in zoo.KINDS:
        want = (
            20
            if kind in ("source", "source_twin")
            else 15
            if zoo.KINDS[kind][1] != "ground_truth"
            else 5
        )
        assert zoo.epochs_of(c, kind) == want, kind
    assert zoo.epochs_of(c, "label_only_surrogate") == 15
    assert zoo.epochs_of(c, "calibration_reference") == 5


def test_each_kind_trains_on_its_part_of_d1_when_the_source_keeps_a_holdout(tmp_path):
    c = common.base()
    c.data.source_holdout = 0.25
    c.models.update(dict(surrogate_data="d1_holdout", calibration_data="d1_holdout"))
    x = np.arange(8, dtype=np.float32).reshape(8, 1, 1, 1)
    part = data_lib.Split(x, np.arange(8) % 2)
    z = zoo.Zoo(c, str(tmp_path), data_lib.Splits("toy", part, part, part, ("a", "b")))
    parties = {kind: z.party_name(kind) for kind in zoo.KINDS}
    assert parties["source"] == "d1_train"
    assert parties["training_surrogate"] == parties["calibration_reference"] == "d1_holdout"
    assert parties["training_reference"] == "d1" and parties["testing_reference"] == "d2"
    # The held-out selection models train as the training models do.
    assert (
        parties["selection_surrogate"] == parties["selection_label_only_surrogate"] == "d1_holdout"
    )
    assert parties["selection_reference"] == "d1"
    c.models.update(dict(training_temperature=4.0, testing_temperature=2.0))
    assert z.temperature("selection_surrogate") == z.temperature("training_surrogate") == 4.0
    assert z.temperature("testing_surrogate") == 2.0 and z.temperature("selection_reference") == 1.0
    # The source's part and the held-out rest split D1 without overlap.
    np.testing.assert_array_equal(z.party("source").x[:, 0, 0, 0], np.arange(6))
    np.testing.assert_array_equal(z.party("calibration_reference").x[:, 0, 0, 0], [6, 7])
    c.models.calibration_data = "d1"
    assert len(z.party("calibration_reference")) == 8


def test_with_a_fingerprint_pool_outsider_references_never_see_where_cbim_starts(tmp_path):
    c = common.base()
    c.data.fingerprint_pool = 0.25
    c.models.training_outsider_references = "mlp:1"
    x = np.arange(8, dtype=np.float32).reshape(8, 1, 1, 1)
    part = data_lib.Split(x, np.arange(8) % 2)
    z = zoo.Zoo(c, str(tmp_path), data_lib.Splits("toy", part, part, part, ("a", "b")))
    assert z.candidate_party() == "d1_pool" and z.party_name("source") == "d1"
    assert z.party_name("training_reference") == z.party_name("training_surrogate") == "d1"
    assert z.party_name("training_outsider_reference") == "d1_rest"
    np.testing.assert_array_equal(z.party("training_outsider_reference").x[:, 0, 0, 0], range(6))
    np.testing.assert_array_equal(z.split("d1_pool").x[:, 0, 0, 0], [6, 7])
    assert zoo.TRAINING_REFERENCES == ("training_reference", "training_outsider_reference")
    c.data.fingerprint_pool = 0.0
    assert z.candidate_party() == "d1"
    with pytest.raises(zoo.SpecError, match="needs data.fingerprint_pool"):
        zoo.validate(c)


def test_outsider_calibration_references_train_without_the_fingerprints_images(tmp_path):
    c = common.base()
    c.models.calibration_data = zoo.WITHOUT_FINGERPRINT
    x = (np.arange(8, dtype=np.float32) / 255.0).reshape(8, 1, 1, 1)
    part = data_lib.Split(x, np.arange(8) % 2)
    z = zoo.Zoo(c, str(tmp_path), data_lib.Splits("toy", part, part, part, ("a", "b")))
    assert z.needs_fingerprint("calibration_reference")
    assert not z.needs_fingerprint("training_reference")
    with pytest.raises(zoo.NoFingerprintError):
        z.party("calibration_reference")
    with pytest.raises(zoo.NoFingerprintError):
        z.get("calibration_reference")
    group = zoo.groups_of_kind(c, "calibration_reference", 2)[0]
    z.set_fingerprint(np.array([2, 5], np.uint8).reshape(2, 1, 1, 1))
    np.testing.assert_array_equal(
        z.party("calibration_reference").x[:, 0, 0, 0] * 255, [0, 1, 3, 4, 6, 7]
    )
    first = z.group_dir(group, "calibration_reference")
    assert first.endswith(f"{group.name}-fp{z.fingerprint_tag}")
    # Another fingerprint: other groups, in other directories; nothing else moves.
    z.set_fingerprint(np.array([7], np.uint8).reshape(1, 1, 1, 1))
    assert z.group_dir(group, "calibration_reference") != first
    assert len(z.party("calibration_reference")) == 7
    ref = zoo.groups_of_kind(c, "training_reference", 2)[0]
    assert z.group_dir(ref, "training_reference").endswith(ref.name)
