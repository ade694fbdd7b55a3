"""What every removal attack shares: the adversary's data, an attack's settings,
the stolen group it returns, and the training and querying helpers."""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from fingerprinting import errors
from fingerprinting import fit
from fingerprinting import labels as labels_lib


class RemovalConfigError(errors.ConfigError):
    pass


class StaleAttackError(errors.UserError, ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class AdversaryData:
    """The adversary's data D2 and what the source answered on it."""

    x: np.ndarray  # float32 [N, H, W, C] in [0, 1]
    y: np.ndarray  # int32 [N] ground truth: only the True-labels attack reads it
    logits: np.ndarray  # float32 [N, K]: the source's prediction vectors (as logits)

    @property
    def num_classes(self) -> int:
        return self.logits.shape[-1]


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """An attack's settings: the config's removal and train sections, its seed,
    and where its training checkpoints go."""

    removal: ml_collections.ConfigDict
    train: ml_collections.ConfigDict
    seed: int
    rng: jax.Array
    name: str = "attack"
    strategy: str | None = None
    ckpt_dir: str | None = None


@dataclasses.dataclass
class Stolen:
    """What an attack returns: one member per variant, of the source's architecture."""

    variables: dict  # stacked
    parameters: list[dict]  # per member: what the report shows ({"lambda": 0.1})
    sweep: str | None = None  # the parameter that varies across members
    deploy: str = "members"  # or "mean": the members answer as their average


# ------------------------------------------------------------ shared pieces --


def source_logits(source, x, strategy=None) -> np.ndarray:
    """The source's answers on new inputs (Papernot's and Knockoff's queries)."""
    return fit.predict_logits(source.group.model, source.variables, x, strategy=strategy)[0]


def probabilities(logits) -> np.ndarray:
    """The source's prediction vectors at T = 1: what distillation attacks learn."""
    return labels_lib.source_soft(None, logits)


def distill_epochs(cfg: AttackConfig) -> int:
    return cfg.removal.distill_epochs or fit.student_epochs(cfg.train)


def train(source, x, targets, cfg: AttackConfig, *, epochs, part="", lr_scale=1.0, **kw):
    """`fit.train_group` on the source's architecture at `lr_scale` times the
    training learning rate, checkpointed under the attack's directory (in
    `part`, when an attack trains more than once); `kw` passes size, rng,
    init, trainable and subsets through."""
    tcfg = ml_collections.ConfigDict(cfg.train.to_dict())
    tcfg.learning_rate = cfg.train.learning_rate * lr_scale
    return fit.train_group(
        source.group.model,
        x,
        targets,
        cfg=tcfg,
        epochs=epochs,
        ckpt_dir=os.path.join(cfg.ckpt_dir, part) if cfg.ckpt_dir else None,
        strategy=cfg.strategy,
        desc=f"attack {cfg.name} {part}".strip(),
        **{"size": 1, "rng": cfg.rng, **kw},
    )


def in_batches(fn, batch: int, *arrays) -> np.ndarray:
    """fn(*batches, offset) over aligned arrays, in batches of one size (the last
    padded) so that fn compiles once."""
    n, out = len(arrays[0]), []
    for i in range(0, n, batch):
        parts = [a[i : i + batch] for a in arrays]
        got = len(parts[0])
        pad = batch - got if n > batch else 0
        if pad:
            parts = [np.concatenate([p, np.repeat(p[-1:], pad, 0)]) for p in parts]
        out.append(np.asarray(fn(*parts, i))[:got])
    return np.concatenate(out)
