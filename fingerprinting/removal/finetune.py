"""Fine-tuning attacks (FTLL, FTAL, RTLL, RTAL): a copy of the source trained
further on D2 inputs labelled by the source; RT* re-initialize the last layer
(`head`), *LL train only it."""

from __future__ import annotations


import jax

from fingerprinting import ensemble
from fingerprinting import labels as labels_lib
from fingerprinting.removal.base import AdversaryData
from fingerprinting.removal.base import AttackConfig
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.base import train


def finetune_set(data: AdversaryData, cfg: AttackConfig):
    """The first `finetune_size` inputs of D2 with the source's labels. Hard
    labels: the source's own probability vectors would give it no gradient."""
    n = min(cfg.removal.finetune_size, len(data.x))
    return data.x[:n], labels_lib.one_hot(data.logits[:n].argmax(-1), data.num_classes)


def last_layer_only(variables) -> dict:
    """The trainable mask of FTLL and RTLL: the `head` alone; BatchNorm
    statistics of the frozen layers stay as they are."""
    return {"params": {k: k == "head" for k in variables["params"]}, "batch_stats": False}


def with_new_head(source, rng, input_shape) -> dict:
    """The source's variables with the last layer drawn afresh (RTLL, RTAL)."""
    fresh = ensemble.init_members(source.group.model, rng, 1, input_shape)
    return {
        **source.variables,
        "params": {**source.variables["params"], "head": fresh["params"]["head"]},
    }


def _finetune(source, data, cfg, *, reinit: bool, last_only: bool) -> Stolen:
    """FT*: the source trained further at `finetune_lr_scale` times the training
    learning rate. RT*: a fresh last layer, which learns at the training rate."""
    r = cfg.removal
    x, targets = finetune_set(data, cfg)
    init = source.variables
    if reinit:
        init = with_new_head(source, jax.random.fold_in(cfg.rng, 1), data.x.shape[1:])
    variables = train(
        source,
        x,
        targets,
        cfg,
        epochs=r.finetune_epochs,
        lr_scale=1.0 if reinit else r.finetune_lr_scale,
        init=init,
        trainable=last_layer_only(init) if last_only else None,
    )
    return Stolen(variables, [{"inputs": len(x), "epochs": r.finetune_epochs}])


def ftll(source, data, cfg):
    """Fine-tune the last layer; the others frozen."""
    return _finetune(source, data, cfg, reinit=False, last_only=True)


def ftal(source, data, cfg):
    """Fine-tune all layers."""
    return _finetune(source, data, cfg, reinit=False, last_only=False)


def rtll(source, data, cfg):
    """Re-initialize the last layer and train it alone."""
    return _finetune(source, data, cfg, reinit=True, last_only=True)


def rtal(source, data, cfg):
    """Re-initialize the last layer and train all layers."""
    return _finetune(source, data, cfg, reinit=True, last_only=False)
