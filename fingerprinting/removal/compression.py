"""Beyond the paper: magnitude pruning (with and without a short fine-tune)
and post-training int8 weight quantization."""

from __future__ import annotations


import jax
import numpy as np

from fingerprinting import config as config_lib
from fingerprinting import ensemble
from fingerprinting.removal.base import Stolen
from fingerprinting.removal.base import train
from fingerprinting.removal.finetune import finetune_set


def is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def magnitude_mask(params, sparsity: float):
    """Per layer, False for the `sparsity` share of each kernel's weights that are
    smallest in magnitude (Han et al., 2015); biases and normalization stay."""

    def leaf(path, w):
        w = np.asarray(w)
        keep = np.ones(w.size, bool)
        if is_kernel(path):
            keep[np.argsort(np.abs(w).ravel(), kind="stable")[: round(sparsity * w.size)]] = False
        return keep.reshape(w.shape)

    return jax.tree_util.tree_map_with_path(leaf, params)


def pruned(source, sparsities) -> tuple[dict, dict]:
    """(stacked variables, stacked masks): one pruned copy of the source per sparsity."""
    one = ensemble.member(source.variables, 0)
    masks = ensemble.stack([magnitude_mask(one["params"], s) for s in sparsities])
    copies = ensemble.stack([one] * len(sparsities))
    params = jax.tree_util.tree_map(lambda p, m: p * m, copies["params"], masks)
    return {**copies, "params": params}, masks


def prune(source, data, cfg):
    """Magnitude pruning of the source at each sparsity, no training."""
    values = config_lib.parse_floats(cfg.removal.prune_sparsities)
    variables, _ = pruned(source, values)
    return Stolen(variables, [{"sparsity": s} for s in values], sweep="sparsity")


def prune_finetune(source, data, cfg):
    """Magnitude pruning, then a short fine-tune that keeps the pruned weights at zero."""
    r = cfg.removal
    values = config_lib.parse_floats(r.prune_sparsities)
    init, masks = pruned(source, values)
    x, targets = finetune_set(data, cfg)
    variables = train(
        source,
        x,
        targets,
        cfg,
        epochs=r.prune_finetune_epochs,
        lr_scale=r.finetune_lr_scale,
        size=len(values),
        init=init,
        trainable={"params": masks},
    )
    return Stolen(variables, [{"sparsity": s} for s in values], sweep="sparsity")


def quantize_int8(w: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel int8 (a kernel's last axis is its output),
    returned dequantized: the values an int8 deployment computes with."""
    w = np.asarray(w)
    scale = np.abs(w).max(axis=tuple(range(w.ndim - 1)), keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return (np.clip(np.round(w / scale), -127, 127) * scale).astype(w.dtype)


def quantize(source, data, cfg):
    """Post-training int8 quantization of every kernel; biases and BatchNorm stay float."""
    params = jax.tree_util.tree_map_with_path(
        lambda path, w: quantize_int8(w) if is_kernel(path) else np.asarray(w),
        ensemble.member(source.variables, 0)["params"],
    )
    one = {**ensemble.member(source.variables, 0), "params": params}
    return Stolen(ensemble.stack([one]), [{"bits": 8}])
