"""The science, guarded: C-BIM's fingerprint separates surrogates from references.

A change that breaks the method (the loss, the composed ensemble, the filter,
the label sources, the zoo's data) must break this test, not only a full run.
On digits with small MLPs and a briefly trained source, the adversary's
surrogates (distilled from the source on D2) must agree with the fingerprint
far more often than references trained on D2's ground truth and calibration
references that never saw the fingerprint's images, and the fingerprint must
hold only inputs on which the source is wrong. The digits config's setup:
C-BIM starts from a pool of D1 and pushes away from outsider references too.
"""

import numpy as np
import pytest

from configs import digits
from fingerprinting import fingerprint as fp_lib
from fingerprinting import harness
from fingerprinting import pipeline
from fingerprinting import zoo as zoo_lib


def _config():
    c = digits.get_config()
    c.models.update(
        dict(
            source="mlp",
            training_surrogates="mlp:3",
            training_label_only_surrogates="mlp:1",
            training_references="mlp:3",
            testing_surrogates="mlp:2",
            label_only_surrogates="mlp:1",
            testing_references="mlp:2",
            training_outsider_references="mlp:2",
            calibration_references="mlp:2",
        )
    )
    c.train.update(dict(source_epochs=2, epochs=4))
    c.extract.update(dict(steps=25, num_candidates=64, batch_size=64, tau=0.8))
    return c


def test_fingerprint_separates_surrogates_from_references(tmp_path):
    config = _config()
    zoo = pipeline.open_zoo(config, str(tmp_path))
    fp = pipeline.run_extract(config, str(tmp_path), zoo=zoo)
    assert len(fp) >= 10
    assert np.all(fp.keys != fp.truth)  # conferrable examples are adversarial for the source
    rows = harness.verify_zoo(zoo, fp, config)
    acc = lambda kinds: [r["fingerprint_accuracy"] for r in rows if r["kind"] in kinds]
    derived = acc(("testing_surrogate", "label_only_surrogate"))
    independent = acc(("testing_reference", "calibration_reference"))
    assert len(derived) == 3 and len(independent) == 4
    assert acc(("source",)) == [1.0]
    assert np.mean(derived) > np.mean(independent) + 0.3, (derived, independent)
    assert min(derived) > max(independent), (derived, independent)


def test_held_out_selection_models_rank_the_fingerprint(tmp_path):
    config = _config()
    config.models.update(
        dict(
            selection_surrogates="mlp:2",
            selection_label_only_surrogates="mlp:1",
            selection_references="mlp:2",
        )
    )
    config.extract.fingerprint_size = 10
    zoo = pipeline.open_zoo(config, str(tmp_path))
    fp = pipeline.run_extract(config, str(tmp_path), zoo=zoo)
    assert len(fp) == 10 and fp.meta["passed_tau"] > 10 and fp.meta["selection_models"] == 5
    assert zoo.party_name("selection_surrogate") == config.models.surrogate_data
    held_out = lambda fp: fp_lib.conferrability(
        fp_lib.labels_of(zoo.groups(zoo_lib.SELECTION_SURROGATES), fp.inputs),
        fp_lib.labels_of(zoo.get("selection_reference"), fp.inputs),
        fp.keys,
    )
    assert held_out(fp).mean() == pytest.approx(fp.meta["mean_selection_conferrability"])
    # The same models and C-BIM without the selection models: the first 10 that
    # pass tau, where the held-out models pick the best 10 of them.
    plain = config.copy_and_resolve_references()
    plain.models.update(
        dict(selection_surrogates="", selection_label_only_surrogates="", selection_references="")
    )
    fp_plain = fp_lib.extract(zoo_lib.Zoo(plain, str(tmp_path), zoo.splits), plain)
    assert fp_plain.meta["passed_tau"] == fp.meta["passed_tau"]
    assert held_out(fp).mean() > held_out(fp_plain).mean()
    assert (
        fp.meta["mean_selection_conferrability"] >= fp.meta["mean_selection_conferrability_passed"]
    )
    assert np.all(fp.conferrability >= config.extract.tau - 1e-6)  # every kept input passed tau
    rows = harness.verify_zoo(zoo, fp, config)
    acc = lambda kinds: [r["fingerprint_accuracy"] for r in rows if r["kind"] in kinds]
    derived = acc(("testing_surrogate", "label_only_surrogate"))
    independent = acc(("testing_reference", "calibration_reference"))
    assert np.mean(derived) > np.mean(independent) + 0.3, (derived, independent)
