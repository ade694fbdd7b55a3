"""The shared config modules, loaded as the configs themselves load them."""

import os

from fingerprinting import config as config_lib

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
common = config_lib.load_module(os.path.join(_DIR, "_common.py"))
paper = config_lib.load_module(os.path.join(_DIR, "_paper.py"))


def smallest_zoo(c):
    """The smoke config with one MLP of each kind C-BIM and the harness need, and
    no removal attack: for tests of a source given from outside."""
    common.smoke(c)
    c.removal.attacks = ""
    c.models.training_surrogates = c.models.training_references = "mlp:1"
    c.models.testing_surrogates = c.models.testing_references = "mlp:1"
    c.models.label_only_surrogates = ""
    c.models.calibration_references = "mlp:1"
    return c
