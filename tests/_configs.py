"""The shared config modules, loaded as the configs themselves load them."""

import os

from fingerprinting import config as config_lib

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
common = config_lib.load_module(os.path.join(_DIR, "_common.py"))
paper = config_lib.load_module(os.path.join(_DIR, "_paper.py"))
