"""The science, guarded: C-BIM's fingerprint separates surrogates from references.

A change that breaks the method (the loss, the composed ensemble, the filter,
the label sources, the zoo's data) must break this test, not only a full run.
On digits with small MLPs and a briefly trained source, the adversary's
surrogates (distilled from the source on D2) must agree with the fingerprint
far more often than references trained on D2's ground truth, and the
fingerprint must hold only inputs on which the source is wrong.
"""

import numpy as np

from configs import digits
from fingerprinting import harness
from fingerprinting import pipeline


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
            calibration_references="mlp:2",
        )
    )
    c.train.update(dict(source_epochs=2, epochs=4))
    c.extract.update(dict(steps=25, num_candidates=64, batch_size=64, tau=1.0))
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
