"""The PyTorch side of the benchmark: the same C-BIM step and training step,
written the way a PyTorch user would, one model after another.

C-BIM (Section 4.4, as `fingerprinting.attacks.cbim` with the linear loss of
Eq. 14): every model in inference mode with frozen weights, whole-member
dropout on each side, M_E = (1 - Ref) * Surr (Eq. 13), the best wrong class as
target, a sign step of the input gradient and the projection to the eps ball
and [0, 1]. Training: each model's own batch, the project's augmentation
(random crop after zero padding, horizontal flip), cross-entropy on soft
targets, the optimizer and cosine schedule the training config names.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from benchmarks import torch_models


def _keep_mask(num: int, rate: float, device) -> torch.Tensor:
    """Whole-member dropout that keeps at least one member (attacks.cbim.member_keep_mask)."""
    keep = torch.rand(num, device=device) >= rate
    if not keep.any():
        keep[torch.randint(num, (1,), device=device)] = True
    return keep.float()


def _masked_mean(probs_MxBxK: torch.Tensor, keep_M: torch.Tensor) -> torch.Tensor:
    return torch.einsum("m,mbk->bk", keep_M / keep_M.sum(), probs_MxBxK)


def make_cbim_step(surrogates, references, *, eps: float, alpha: float, dropout: float):
    """`step(x, x0, y) -> x'`: one C-BIM iteration over lists of models (NCHW inputs)."""
    for m in (*surrogates, *references):
        m.eval().requires_grad_(False)

    def step(x, x0, y):
        x = x.detach().requires_grad_(True)
        surr = torch.stack([F.softmax(m(x), -1) for m in surrogates])
        ref = torch.stack([F.softmax(m(x), -1) for m in references])
        surr = _masked_mean(surr, _keep_mask(len(surrogates), dropout, x.device))
        ref = _masked_mean(ref, _keep_mask(len(references), dropout, x.device))
        m_e = (1.0 - ref) * surr  # Eq. 13
        with torch.no_grad():
            target = m_e.scatter(1, y[:, None], float("-inf")).argmax(1)
        loss = -m_e.gather(1, target[:, None]).sum()  # Eq. 14
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = x - alpha * grad.sign()
            return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp_(0.0, 1.0)

    return step


def augment(x_BxCxHxW: torch.Tensor, crop: int, flip: bool) -> torch.Tensor:
    """Random crop after zero padding by `crop`, and random horizontal flip."""
    b, _, h, w = x_BxCxHxW.shape
    dev = x_BxCxHxW.device
    if crop:
        padded = F.pad(x_BxCxHxW, (crop, crop, crop, crop))
        rows = torch.randint(0, 2 * crop + 1, (b, 1), device=dev) + torch.arange(h, device=dev)
        cols = torch.randint(0, 2 * crop + 1, (b, 1), device=dev) + torch.arange(w, device=dev)
        index_b = torch.arange(b, device=dev)[:, None, None]
        x_BxCxHxW = padded[index_b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        do = torch.rand(b, 1, 1, 1, device=dev) < 0.5
        x_BxCxHxW = torch.where(do, x_BxCxHxW.flip(3), x_BxCxHxW)
    return x_BxCxHxW


def _optimizer(cfg, params, total_steps: int):
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(
            params,
            lr=cfg.learning_rate,
            momentum=0.9,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    elif cfg.weight_decay:
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.learning_rate)
    if cfg.schedule != "cosine":
        raise ValueError(
            f"the PyTorch side implements the cosine schedule only, not {cfg.schedule}"
        )
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps)


def make_train_round(arch: str, members: int, input_shape, num_classes: int, cfg, device):
    """`round(x_MxBxCxHxW, targets_MxBxK)`: one training step of each of `members`
    models, one after another."""
    nets = [
        torch_models.build(arch, num_classes, input_shape).to(device).train()
        for _ in range(members)
    ]
    opts = [_optimizer(cfg, net.parameters(), total_steps=1000) for net in nets]

    def train_round(x_MxBxCxHxW, targets_MxBxK):
        for net, (opt, schedule), x, t in zip(nets, opts, x_MxBxCxHxW, targets_MxBxK):
            x = augment(x, cfg.augment_crop, cfg.augment_flip)
            loss = F.cross_entropy(net(x), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        return loss

    return train_round
