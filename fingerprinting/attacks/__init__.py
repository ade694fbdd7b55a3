"""Baseline adversarial attacks compared with C-BIM (Table 1 of Lukas et al.): FGSM, BIM, PGD, DeepFool
and Carlini-Wagner L2, as pure batched JAX functions of a ``logits_fn`` closure, plus the shared
sign-gradient loop (``sign_gradient_descent``) that C-BIM builds on. ``ATTACKS`` maps each baseline's
name to its function; all take float32 NHWC pixels in [0, 1] and pixel-space ``eps``.
"""

from fingerprinting.attacks.cw import cw_l2
from fingerprinting.attacks.deepfool import deepfool
from fingerprinting.attacks.gradient import (
    bim,
    canonical_norm,
    cross_entropy,
    fgsm,
    l2_norm,
    pgd,
    project,
    project_l2,
    project_linf,
    sign_gradient_descent,
)

# Name -> attack. Signatures differ: deepfool is untargeted and takes no labels
# (deepfool(logits_fn, x, ...)); the others take (logits_fn, x, y, ...).
ATTACKS = {
    "fgsm": fgsm,
    "bim": bim,
    "pgd": pgd,
    "deepfool": deepfool,
    "cw_l2": cw_l2,
}

__all__ = [
    "ATTACKS",
    "bim",
    "canonical_norm",
    "cross_entropy",
    "cw_l2",
    "deepfool",
    "fgsm",
    "l2_norm",
    "pgd",
    "project",
    "project_l2",
    "project_linf",
    "sign_gradient_descent",
]
