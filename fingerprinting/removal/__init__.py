"""The removal attacks of Section 6.3: what an adversary holding the source does to it.

Each attack is a function `attack(source, data, cfg) -> Stolen` of the source
model (white-box, as in the paper), the adversary's data D2 with the source's
answers on it, and the attack's settings; it returns the stolen model(s) as
one stacked group of the source's architecture. Variants of a sweep (noise
lambda, label share rho, pruning sparsity) are the members of that group,
trained together by one jitted step with per-member targets or masks.

- Fine-tuning (FTLL, FTAL, RTLL, RTAL): a copy of the source trained further
  on D2 inputs labelled by the source; RT* re-initialize the last layer
  (`head`), *LL train only it.
- Adversarial training (FGM, PGD): the source fine-tuned on D2 inputs plus
  adversarial examples crafted on it from them.
- Distillation: Retraining (the source's probabilities, T = 1), Jagielski
  (Eq. 4 soft labels), Papernot (Jacobian-based dataset augmentation from a
  small seed set), Knockoff (random queries from a transfer set of another
  distribution).
- Adaptive: Ensemble (n surrogates on disjoint parts of D2, deployed as their
  average), Noise (probabilities mixed with uniform noise), True labels (a
  share of D2 with ground-truth labels).
- Beyond the paper: magnitude pruning (with and without a short fine-tune)
  and post-training int8 weight quantization.

`workdir.run_attack` runs one attack inside a work directory: the group lands in
WORKDIR/models/attack-NAME/ (Orbax checkpoints while training, final
variables, result.json in the zoo's format, so `verify --suspect` reads it),
and a finished group is loaded, not trained again.
"""

from fingerprinting.removal.adaptive import ensemble_attack
from fingerprinting.removal.adaptive import noise
from fingerprinting.removal.adaptive import true_labels
from fingerprinting.removal.adversarial import craft_adversarial
from fingerprinting.removal.adversarial import fgm
from fingerprinting.removal.adversarial import pgd
from fingerprinting.removal.base import AdversaryData
from fingerprinting.removal.base import AttackConfig
from fingerprinting.removal.base import RemovalConfigError
from fingerprinting.removal.base import StaleAttackError
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.base import distill_epochs
from fingerprinting.removal.base import in_batches
from fingerprinting.removal.base import probabilities
from fingerprinting.removal.base import source_logits
from fingerprinting.removal.base import train
from fingerprinting.removal.compression import is_kernel
from fingerprinting.removal.compression import magnitude_mask
from fingerprinting.removal.compression import prune
from fingerprinting.removal.compression import prune_finetune
from fingerprinting.removal.compression import pruned
from fingerprinting.removal.compression import quantize
from fingerprinting.removal.compression import quantize_int8
from fingerprinting.removal.distillation import jacobian_augmentation
from fingerprinting.removal.distillation import jagielski
from fingerprinting.removal.distillation import knockoff
from fingerprinting.removal.distillation import papernot
from fingerprinting.removal.distillation import papernot_sizes
from fingerprinting.removal.distillation import retraining
from fingerprinting.removal.finetune import finetune_set
from fingerprinting.removal.finetune import ftal
from fingerprinting.removal.finetune import ftll
from fingerprinting.removal.finetune import last_layer_only
from fingerprinting.removal.finetune import rtal
from fingerprinting.removal.finetune import rtll
from fingerprinting.removal.finetune import with_new_head
from fingerprinting.removal.registry import ATTACKS
from fingerprinting.removal.registry import Attack
from fingerprinting.removal.registry import parse_attacks
from fingerprinting.removal.registry import validate
from fingerprinting.removal.workdir import Attacked
from fingerprinting.removal.workdir import adversary_data
from fingerprinting.removal.workdir import finished
from fingerprinting.removal.workdir import group_dir
from fingerprinting.removal.workdir import run_attack
from fingerprinting.removal.workdir import settings_of

__all__ = [
    "AdversaryData",
    "AttackConfig",
    "RemovalConfigError",
    "StaleAttackError",
    "Stolen",
    "distill_epochs",
    "in_batches",
    "probabilities",
    "source_logits",
    "train",
    "finetune_set",
    "ftal",
    "ftll",
    "last_layer_only",
    "rtal",
    "rtll",
    "with_new_head",
    "craft_adversarial",
    "fgm",
    "pgd",
    "jacobian_augmentation",
    "jagielski",
    "knockoff",
    "papernot",
    "papernot_sizes",
    "retraining",
    "ensemble_attack",
    "noise",
    "true_labels",
    "is_kernel",
    "magnitude_mask",
    "prune",
    "prune_finetune",
    "pruned",
    "quantize",
    "quantize_int8",
    "ATTACKS",
    "Attack",
    "parse_attacks",
    "validate",
    "Attacked",
    "adversary_data",
    "finished",
    "group_dir",
    "run_attack",
    "settings_of",
]
