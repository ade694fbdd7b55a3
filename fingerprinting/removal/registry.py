"""The registry of removal attacks, in the order `evaluate` runs them, and the
validation of `config.removal` against it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable


from fingerprinting import config as config_lib
from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting.removal.adaptive import ensemble_attack
from fingerprinting.removal.adaptive import noise
from fingerprinting.removal.adaptive import true_labels
from fingerprinting.removal.adversarial import fgm
from fingerprinting.removal.adversarial import pgd
from fingerprinting.removal.base import RemovalConfigError
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.compression import prune
from fingerprinting.removal.compression import prune_finetune
from fingerprinting.removal.compression import quantize
from fingerprinting.removal.distillation import jagielski
from fingerprinting.removal.distillation import knockoff
from fingerprinting.removal.distillation import papernot
from fingerprinting.removal.distillation import retraining
from fingerprinting.removal.finetune import ftal
from fingerprinting.removal.finetune import ftll
from fingerprinting.removal.finetune import rtal
from fingerprinting.removal.finetune import rtll


@dataclasses.dataclass(frozen=True)
class Attack:
    fn: Callable[..., Stolen]
    family: str
    settings: tuple[str, ...]  # the removal keys it reads: a change makes its result stale


_FT = ("finetune_size", "finetune_epochs", "finetune_lr_scale")
_ADV = _FT + ("adversarial_size", "adversarial_eps", "adversarial_alpha", "adversarial_steps")
_PAPERNOT = ("distill_epochs", "papernot_seed_size", "papernot_rounds", "papernot_lambda")
_KNOCKOFF = ("distill_epochs", "knockoff_data", "knockoff_size")  # not the directory: a place

ATTACKS: dict[str, Attack] = {
    "ftll": Attack(ftll, "fine-tuning", _FT),
    "ftal": Attack(ftal, "fine-tuning", _FT),
    "rtll": Attack(rtll, "fine-tuning", _FT),
    "rtal": Attack(rtal, "fine-tuning", _FT),
    "fgm": Attack(fgm, "adversarial training", _ADV),
    "pgd": Attack(pgd, "adversarial training", _ADV),
    "retraining": Attack(retraining, "distillation", ("distill_epochs",)),
    "jagielski": Attack(jagielski, "distillation", ("distill_epochs", "jagielski_temperature")),
    "papernot": Attack(papernot, "distillation", _PAPERNOT),
    "knockoff": Attack(knockoff, "distillation", _KNOCKOFF),
    "ensemble": Attack(ensemble_attack, "adaptive", ("distill_epochs", "ensemble_size")),
    "noise": Attack(noise, "adaptive", ("distill_epochs", "noise_lambdas")),
    "true_labels": Attack(true_labels, "adaptive", ("distill_epochs", "truth_shares")),
    "prune": Attack(prune, "beyond the paper", ("prune_sparsities",)),
    "prune_finetune": Attack(
        prune_finetune, "beyond the paper", _FT + ("prune_sparsities", "prune_finetune_epochs")
    ),
    "quantize": Attack(quantize, "beyond the paper", ()),
}


# -------------------------------------------------------------- validation --


def parse_attacks(spec: str) -> list[str]:
    try:
        names = config_lib.parse_names(spec, tuple(ATTACKS), "removal attack(s)")
    except ValueError as e:
        raise RemovalConfigError(str(e)) from None
    if len(set(names)) != len(names):
        raise RemovalConfigError(f"removal.attacks names an attack twice: {spec!r}")
    return names


def _check_sweep(key: str, spec: str, ok: Callable[[float], bool], what: str) -> None:
    try:
        values = config_lib.parse_floats(spec)
    except errors.ConfigError as e:
        raise RemovalConfigError(f"removal.{key}: {e}") from None
    if not values:
        raise RemovalConfigError(f"removal.{key} is empty")
    bad = [v for v in values if not ok(v)]
    if bad:
        raise RemovalConfigError(f"removal.{key}: {bad[0]} is out of range {what}")


def validate(config) -> None:
    """Every name and range of config.removal, checked before any training."""
    r = config.removal
    names = parse_attacks(r.attacks)
    checks = [
        ("distill_epochs", r.distill_epochs >= 0),
        ("finetune_size", r.finetune_size >= 1),
        ("finetune_epochs", r.finetune_epochs >= 1),
        ("finetune_lr_scale", r.finetune_lr_scale > 0),
        ("adversarial_size", r.adversarial_size >= 1),
        ("adversarial_eps", 0 < r.adversarial_eps <= 1),
        ("adversarial_alpha", r.adversarial_alpha > 0),
        ("adversarial_steps", r.adversarial_steps >= 1),
        ("jagielski_temperature", r.jagielski_temperature > 0),
        ("papernot_seed_size", r.papernot_seed_size >= 1),
        ("papernot_rounds", r.papernot_rounds >= 0),
        ("papernot_lambda", 0 < r.papernot_lambda <= 1),
        ("knockoff_size", r.knockoff_size >= 0),
        ("ensemble_size", r.ensemble_size >= 2),
        ("prune_finetune_epochs", r.prune_finetune_epochs >= 1),
    ]
    for key, ok in checks:
        if not ok:
            raise RemovalConfigError(f"removal.{key} = {r[key]!r} is out of range")
    ensemble.resolve_strategy(r.strategy)
    _check_sweep("noise_lambdas", r.noise_lambdas, lambda v: 0 <= v <= 1, "[0, 1]")
    _check_sweep("truth_shares", r.truth_shares, lambda v: 0 <= v <= 1, "[0, 1]")
    _check_sweep("prune_sparsities", r.prune_sparsities, lambda v: 0 <= v < 1, "[0, 1)")
    if "knockoff" in names:
        _check_transfer(config)


def _check_transfer(config) -> None:
    r = config.removal
    if r.knockoff_data not in data_lib.TRANSFER_SETS:
        raise RemovalConfigError(
            f"unknown removal.knockoff_data {r.knockoff_data!r}; "
            f"expected one of {', '.join(data_lib.TRANSFER_SETS)}"
        )
    if r.knockoff_data == config.data.name:
        raise RemovalConfigError(
            f"removal.knockoff_data is the attacked data set itself ({r.knockoff_data}); "
            "Knockoff queries another distribution"
        )
    if r.knockoff_data in data_lib.NEEDS_DIR and not os.path.isdir(r.knockoff_dir):
        raise RemovalConfigError(
            f"Knockoff's transfer set {r.knockoff_data} needs its directory in "
            f"removal.knockoff_dir (got {r.knockoff_dir!r})"
        )
