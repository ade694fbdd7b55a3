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

`run_attack` runs one attack inside a work directory: the group lands in
WORKDIR/models/attack-NAME/ (Orbax checkpoints while training, final
variables, result.json in the zoo's format, so `verify --suspect` reads it),
and a finished group is loaded, not trained again.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fingerprinting import attacks
from fingerprinting import config as config_lib
from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import files
from fingerprinting import labels as labels_lib
from fingerprinting import progress
from fingerprinting import training
from fingerprinting import zoo as zoo_lib


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
    return training.predict_logits(source.group.model, source.variables, x, strategy=strategy)[0]


def probabilities(logits) -> np.ndarray:
    """The source's prediction vectors at T = 1: what distillation attacks learn."""
    return labels_lib.source_soft(None, logits)


def distill_epochs(cfg: AttackConfig) -> int:
    return cfg.removal.distill_epochs or cfg.train.epochs


def train(source, x, targets, cfg: AttackConfig, *, epochs, part="", lr_scale=1.0, **kw):
    """`training.train_group` on the source's architecture at `lr_scale` times the
    training learning rate, checkpointed under the attack's directory (in
    `part`, when an attack trains more than once); `kw` passes size, rng,
    init, trainable and subsets through."""
    tcfg = ml_collections.ConfigDict(cfg.train.to_dict())
    tcfg.learning_rate = cfg.train.learning_rate * lr_scale
    return training.train_group(
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


# ------------------------------------------------------------- fine-tuning --


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


# ---------------------------------------------------- adversarial training --


def craft_adversarial(source, x, labels, method: str, cfg: AttackConfig) -> np.ndarray:
    """Untargeted L-inf adversarial examples on the source, away from `labels`."""
    r = cfg.removal
    model, variables = source.group.model, ensemble.member(source.variables, 0)

    @jax.jit
    def run(variables, xb, yb, offset):
        logits_fn = lambda z: model.apply(variables, z, train=False)
        if method == "fgm":
            return attacks.fgsm(logits_fn, xb, yb, eps=r.adversarial_eps)
        key = jax.random.fold_in(cfg.rng, offset)
        return attacks.pgd(
            logits_fn,
            xb,
            yb,
            eps=r.adversarial_eps,
            alpha=r.adversarial_alpha,
            steps=r.adversarial_steps,
            norm="inf",
            rng=key,
        )

    return in_batches(lambda xb, yb, i: run(variables, xb, yb, i), 256, x, labels)


def _adversarial_training(source, data, cfg, method: str) -> Stolen:
    """Fine-tunes the whole source on the fine-tuning set plus adversarial
    examples of its first `adversarial_size` inputs, labelled as their originals."""
    r = cfg.removal
    x, targets = finetune_set(data, cfg)
    k = min(r.adversarial_size, len(x))
    x_adv = craft_adversarial(source, x[:k], targets[:k].argmax(-1), method, cfg)
    variables = train(
        source,
        np.concatenate([x, x_adv]),
        np.concatenate([targets, targets[:k]]),
        cfg,
        epochs=r.finetune_epochs,
        lr_scale=r.finetune_lr_scale,
        init=source.variables,
    )
    return Stolen(variables, [{"examples": k, "eps": round(r.adversarial_eps, 4)}])


def fgm(source, data, cfg):
    """Adversarial training on fast-gradient-sign examples."""
    return _adversarial_training(source, data, cfg, "fgm")


def pgd(source, data, cfg):
    """Adversarial training on L-inf PGD examples (Madry et al.)."""
    return _adversarial_training(source, data, cfg, "pgd")


# ------------------------------------------------------------ distillation --


def retraining(source, data, cfg):
    """A fresh model on D2 labelled by the source's probabilities (T = 1)."""
    variables = train(source, data.x, probabilities(data.logits), cfg, epochs=distill_epochs(cfg))
    return Stolen(variables, [{"T": 1.0}])


def jagielski(source, data, cfg):
    """A fresh model on the soft labels of Eq. 4 at temperature T'."""
    t = cfg.removal.jagielski_temperature
    targets = labels_lib.jagielski(None, data.logits, temperature=t)
    variables = train(source, data.x, targets, cfg, epochs=distill_epochs(cfg))
    return Stolen(variables, [{"T'": t}])


def papernot_sizes(seed_size: int, rounds: int) -> list[int]:
    """The training-set size of every round: each augmentation doubles it."""
    return [seed_size * 2**i for i in range(rounds + 1)]


def jacobian_augmentation(model, variables, x, labels, lam: float, batch: int = 256):
    """Papernot et al.'s new points: x + lambda * sign(d F(x)[label] / dx), with F
    the surrogate's probabilities (member 0 of `variables`), clipped to [0, 1]."""

    @jax.jit
    def step(variables, xb, yb):
        prob = lambda z: jnp.sum(
            jnp.take_along_axis(
                jax.nn.softmax(model.apply(variables, z, train=False)), yb[:, None], 1
            )
        )
        return jnp.clip(xb + lam * jnp.sign(jax.grad(prob)(xb)), 0.0, 1.0)

    one = ensemble.member(variables, 0)
    return in_batches(lambda xb, yb, _: step(one, xb, yb), batch, x, labels)


def papernot(source, data, cfg):
    """Jacobian-based dataset augmentation: train on a small labelled seed set,
    add one new point per point along the surrogate's Jacobian, label the new
    points by the source, train again (warm-started); `papernot_rounds` times."""
    r = cfg.removal
    n0 = min(r.papernot_seed_size, len(data.x))
    x, logits = data.x[:n0], data.logits[:n0]
    model, variables = source.group.model, None
    for i in range(r.papernot_rounds + 1):
        if i:
            x_new = jacobian_augmentation(model, variables, x, logits.argmax(-1), r.papernot_lambda)
            x = np.concatenate([x, x_new])
            logits = np.concatenate([logits, source_logits(source, x_new, cfg.strategy)])
        variables = train(
            source,
            x,
            probabilities(logits),
            cfg,
            part=f"round{i}",
            epochs=distill_epochs(cfg),
            init=variables,
            rng=jax.random.fold_in(cfg.rng, i),
        )
    params = {"seed": n0, "rounds": r.papernot_rounds, "lambda": r.papernot_lambda}
    return Stolen(variables, [dict(params, inputs=len(x))])


def knockoff(source, data, cfg):
    """A fresh model on random queries from a transfer set of another
    distribution, labelled by the source's probabilities."""
    r = cfg.removal
    x = data_lib.load_transfer(
        r.knockoff_data,
        r.knockoff_dir or None,
        data.x.shape[1:],
        r.knockoff_size or len(data.x),
        cfg.seed,
    )
    targets = probabilities(source_logits(source, x, cfg.strategy))
    variables = train(source, x, targets, cfg, epochs=distill_epochs(cfg))
    return Stolen(variables, [{"transfer": r.knockoff_data, "inputs": len(x)}])


# --------------------------------------------------------- adaptive attacks --


def ensemble_attack(source, data, cfg):
    """n surrogates, each distilled from a disjoint part of D2, answering as the
    average of their probabilities."""
    n = cfg.removal.ensemble_size
    part = len(data.x) // n
    subsets = np.arange(n * part).reshape(n, part)
    variables = train(
        source,
        data.x,
        probabilities(data.logits),
        cfg,
        epochs=distill_epochs(cfg),
        size=n,
        subsets=subsets,
    )
    return Stolen(variables, [{"n": n}] * n, deploy="mean")


def _label_sweep(source, data, cfg, key, values, make_targets) -> Stolen:
    """One member per value, each on its own targets, all in one stacked group."""
    targets = np.stack(
        [make_targets(v, np.random.default_rng([cfg.seed, i])) for i, v in enumerate(values)]
    )
    variables = train(source, data.x, targets, cfg, epochs=distill_epochs(cfg), size=len(values))
    return Stolen(variables, [{key: v} for v in values], sweep=key)


def noise(source, data, cfg):
    """Distillation on the source's probabilities mixed with uniform noise of
    weight lambda, one member per lambda."""
    values = config_lib.parse_floats(cfg.removal.noise_lambdas)
    make = lambda lam, rng: labels_lib.noisy(None, data.logits, noise=lam, rng=rng)
    return _label_sweep(source, data, cfg, "lambda", values, make)


def true_labels(source, data, cfg):
    """Distillation where a share rho of D2 carries ground-truth labels, one
    member per rho."""
    values = config_lib.parse_floats(cfg.removal.truth_shares)
    make = lambda rho, rng: labels_lib.mixed_truth(
        data.y, data.logits, num_classes=data.num_classes, truth_share=rho, rng=rng
    )
    return _label_sweep(source, data, cfg, "rho", values, make)


# ------------------------------------------------------- beyond the paper --


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


# ------------------------------------------------------------ the registry --


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


# ---------------------------------------------------------- work directory --


@dataclasses.dataclass
class Attacked:
    """An attack's stolen group, trained now or loaded from the work directory."""

    name: str
    group: ensemble.Group
    variables: dict
    record: dict  # result.json
    strategy: str | None = None

    def deployed_logits(self, x) -> np.ndarray:
        """[R, N, K]: one row per deployed model (the members, or their average)."""
        logits = training.predict_logits(
            self.group.model, self.variables, x, strategy=self.strategy
        )
        if self.record["deploy"] == "mean":
            return np.log(np.asarray(jax.nn.softmax(logits, -1)).mean(0, keepdims=True))
        return logits

    def records(self) -> list[dict]:
        """One metrics row stub per deployed model."""
        rec = self.record
        params = rec["parameters"][:1] if rec["deploy"] == "mean" else rec["parameters"]
        return [
            dict(
                name=f"{self.group.name}/{'mean' if rec['deploy'] == 'mean' else m}",
                kind="attack",
                attack=self.name,
                family=rec["family"],
                architecture=self.group.arch,
                member=m,
                parameters=p,
                sweep=rec["sweep"],
                part=rec["part"],
                test_accuracy=a,
                seconds=rec["seconds"],
            )
            for m, (p, a) in enumerate(zip(params, rec["deployed_test_accuracy"]))
        ]


def group_dir(workdir: str, name: str) -> str:
    return os.path.join(workdir, "models", f"attack-{name}")


def settings_of(name: str, config) -> dict:
    return {k: config.removal[k] for k in ATTACKS[name].settings}


def finished(workdir: str, name: str, config) -> bool:
    """Whether the attack's group is complete; refuses one made with other settings."""
    path = os.path.join(group_dir(workdir, name), "result.json")
    if not os.path.exists(path):
        return False
    made, now = files.read_json(path).get("settings"), settings_of(name, config)
    if made != now:
        diff = [f"{k}: {made.get(k)!r} -> {v!r}" for k, v in now.items() if made.get(k) != v]
        raise StaleAttackError(
            f"{group_dir(workdir, name)} was made with other settings ({'; '.join(diff)}); "
            "move it away to run the attack again, or use a new --workdir"
        )
    return True


def adversary_data(zoo) -> AdversaryData:
    d2 = zoo.splits.d2
    return AdversaryData(d2.x, d2.y, zoo.source_logits("d2"))


def run_attack(name: str, zoo, config) -> Attacked:
    """The attack's stolen group: loaded when finished, else trained and saved."""
    gdir = group_dir(zoo.workdir, name)
    source = zoo.source()
    input_shape = zoo.splits.input_shape
    strategy = ensemble.resolve_strategy(config.removal.strategy)
    if finished(zoo.workdir, name, config):
        record = files.read_json(os.path.join(gdir, "result.json"))
        group = ensemble.Group(
            f"attack-{name}", source.group.arch, source.group.model, len(record["test_accuracy"])
        )
        variables = zoo_lib.load_variables(os.path.join(gdir, "final"), group, input_shape)
        return Attacked(name, group, variables, record, strategy)
    start = time.time()
    cfg = AttackConfig(
        removal=config.removal,
        train=config.train,
        seed=config.seed,
        rng=zoo_lib.group_seed(config, f"attack-{name}"),
        name=name,
        strategy=strategy,
        ckpt_dir=os.path.join(gdir, "checkpoints"),
    )
    stolen = ATTACKS[name].fn(source, adversary_data(zoo), cfg)
    group = ensemble.Group(
        f"attack-{name}", source.group.arch, source.group.model, len(stolen.parameters)
    )
    test = zoo.splits.test
    acc = training.accuracies(group.model, stolen.variables, test.x, test.y, strategy=strategy)
    record = {
        "test_accuracy": acc.tolist(),
        "kind": "attack",
        "architecture": group.arch,
        "num_classes": zoo.splits.num_classes,
        "input_shape": list(input_shape),
        "attack": name,
        "family": ATTACKS[name].family,
        "parameters": stolen.parameters,
        "sweep": stolen.sweep,
        "deploy": stolen.deploy,
        "part": config.removal.knockoff_data if name == "knockoff" else "d2",
        "settings": settings_of(name, config),
        "seconds": round(time.time() - start, 1),
    }
    attacked = Attacked(name, group, stolen.variables, record, strategy)
    logits = attacked.deployed_logits(test.x)
    record["deployed_test_accuracy"] = (logits.argmax(-1) == test.y[None]).mean(-1).tolist()
    zoo_lib.save_variables(os.path.join(gdir, "final"), stolen.variables)
    files.write_json_atomic(os.path.join(gdir, "result.json"), record)
    progress.log(
        f"attack {name}: test accuracy "
        + " ".join(f"{a:.3f}" for a in record["deployed_test_accuracy"])
        + f" ({record['seconds']} s)"
    )
    return attacked
