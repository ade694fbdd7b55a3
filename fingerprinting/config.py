"""The configuration every experiment starts from, and its validation.

`configs/*.py` call `base()` and change a few fields. Model zoos are short
specs, `"arch:count,arch:count"`, so a sweep can override them from the
command line (`--config.models.testing_surrogates=cnn_small:4`). Durations are
in epochs (training) and steps (attacks).
"""

from __future__ import annotations

import ml_collections

from fingerprinting import errors


def check_arg(arg, allowed: tuple[str, ...]) -> None:
    """Refuses a config argument the file does not know (a typo must not start a full run)."""
    if arg not in (None, "", *allowed):
        raise errors.ConfigError(
            f"unknown config argument {arg!r}; expected none or one of {', '.join(allowed)}"
        )


def parse_names(spec: str, allowed, what: str) -> list[str]:
    """'a, b' -> ['a', 'b'], refusing any name not in `allowed` (`what` names them)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise errors.ConfigError(
            f"unknown {what} {', '.join(unknown)}; expected {', '.join(allowed)}"
        )
    return names


def parse_floats(spec: str) -> list[float]:
    """'0.1, 0.2' -> [0.1, 0.2], refusing anything that is not a number."""
    try:
        return [float(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise errors.ConfigError(f"expected comma-separated numbers, got {spec!r}") from None


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict(
        dict(
            name="digits",  # digits, fashion_mnist, cifar10, cinic10 or imagenet32
            dir="",  # where the files are; "" for the default place of each data set
            seed=0,  # added to `seed` for the party split: every seed splits anew
            d1_size=0,  # 0: the dataset's default party and test sizes
            d2_size=0,  # the adversary's data D2
            test_size=0,  # the held-out test split
            source_holdout=0.0,  # share of D1 the source never trains on (its validation split)
            resize=0,  # 0: keep the images' size and channels as loaded
            channels=0,  # 0: keep; 1 or 3 to convert
        )
    )

    cpu_mix = "cnn_small:2,cnn_medium:2,cnn_wide:2,mlp:2"
    one_each = "cnn_small:1,cnn_medium:1,cnn_wide:1,mlp:1"
    c.models = ml_collections.ConfigDict(
        dict(
            source="cnn_medium",  # the source model's architecture
            training_surrogates=cpu_mix,  # the defender's students: C-BIM's surrogate side
            training_label_only_surrogates="",  # the defender's students of top-1 labels
            training_references=cpu_mix,  # the defender's independent models: its reference side
            testing_surrogates=one_each,  # thieves distilled from the source's softmax on D2
            label_only_surrogates="",  # thieves that see only the source's top-1 label
            testing_references=one_each,  # independent models trained on D2
            calibration_references=one_each,  # independent models: the calibrated test's null
            calibration_data="d1",  # the defender's own data; 'd2' to simulate outsiders
            surrogate_data="d1",  # the defender distils on d1, or d1_holdout (unseen by the source)
            surrogate_labels="source_soft",  # Retraining attack: the source's labels at T
            training_temperature=1.0,  # distillation T of the defender's surrogates
            testing_temperature=1.0,  # T of the adversary's surrogates (Retraining: 1)
            strategy="auto",  # member execution: auto, vmap, unroll, map, map:U
        )
    )

    c.train = ml_collections.ConfigDict(
        dict(
            optimizer="adam",  # adam or sgd (momentum 0.9)
            learning_rate=2e-3,  # peak learning rate
            weight_decay=0.0,  # decoupled (AdamW) or L2 (SGD)
            schedule="cosine",  # cosine or constant
            batch_size=64,  # examples per step and member
            epochs=15,  # of every model but the source
            source_epochs=20,  # of the source; a user's source is trained to the end
            augment_crop=0,  # random crop after padding by this many pixels; 0: off
            augment_flip=False,  # random horizontal flips
            chunk_steps=50,  # steps per compiled chunk (progress and checkpoints between chunks)
            loop="auto",  # steps: auto (= fori, one compiled scan), fori or python
            checkpoint_seconds=30.0,  # a kill redoes at most this much training
        )
    )

    c.extract = ml_collections.ConfigDict(
        dict(
            attack="cbim",  # the attack that makes the fingerprint
            loss="linear",  # Eq. 14, or "three_term" (the published version)
            beta=1.0,  # weight of the three-term loss: move away from the source's clean answer
            gamma=1.0,  # weight of the three-term loss: surrogates agree with the source
            eps=0.25,  # L-inf radius of the perturbation, pixels in [0, 1]
            alpha=0.01,  # step size
            steps=100,  # C-BIM iterations
            dropout=0.5,  # share of ensemble members dropped at each step
            dropout_kind="member",  # drop whole members, or entries of the output ("output")
            keep_source=True,  # member dropout never drops the source (its labels are the keys)
            shift=0,  # input diversity: random shift of up to this many pixels per step
            noise=0.0,  # input diversity: std of Gaussian noise added per step
            tau=0.75,  # minimum conferrability on the training models to keep an input
            num_candidates=400,  # clean starting points from D1 the source classifies correctly
            fingerprint_size=100,  # inputs kept, most conferrable first
            batch_size=100,  # C-BIM inputs per compiled batch
            decoys_per_input=3,  # benign test inputs stored per fingerprint input
            loop="auto",  # attack steps: auto, python (CPU) or fori
        )
    )

    c.verify = ml_collections.ConfigDict(dict(theta=0.7, significance=0.01))
    c.removal = removal_section()

    c.evaluate = ml_collections.ConfigDict(
        dict(
            table1_methods="cbim,fgsm,bim,pgd,deepfool,cw_l2",  # the attacks Table 1 compares
            table1_points=100,  # starting points shared by every method
            table1_eps=0.0,  # 0: use extract.eps
            eps_sweep="",  # e.g. "0.05,0.1,0.15,0.25" for Figure 4
            image_grid=16,  # fingerprint inputs shown in the report's image grid
            evasion=True,  # play the evasion game (Section 5.1) after the removal attacks
        )
    )
    # The evasion game: the thief's detector of fingerprint-like inputs.
    c.evasion = ml_collections.ConfigDict(
        dict(
            detector="cnn_small",  # the detector's architecture
            num_candidates=400,  # D2 starting points of the thief's own C-BIM
            epochs=10,  # of detector training
            false_positive_rate=0.05,  # on benign inputs: where the thief sets its threshold
            max_auc=0.6,  # a detector AUC up to this cannot tell the fingerprint apart
            max_cost=0.05,  # benign accuracy the thief may give up and still win
        )
    )
    return c


ALL_ATTACKS = (
    "ftll,ftal,rtll,rtal,fgm,pgd,retraining,jagielski,papernot,knockoff,"
    "ensemble,noise,true_labels,prune,prune_finetune,quantize"
)


def removal_section() -> ml_collections.ConfigDict:
    """The removal attacks `evaluate` runs on the source (Section 6.3, Tables 4-5),
    in the order of `attacks`, and their settings. Where the defaults come from:

    - `finetune_size` 10,000 and `adversarial_size` 1,000: the paper (Section
      6.3), capped by the adversary's data D2.
    - `finetune_lr_scale` 0.1 (fine-tuning at a tenth of the training learning
      rate; RTLL and RTAL train their fresh last layer at the full rate) and
      `finetune_epochs` 5: common practice in fine-tuning attacks on
      watermarks; the paper gives no values.
    - `adversarial_eps` 8/255, `adversarial_alpha` 2/255, `adversarial_steps` 7:
      Madry et al.'s L-inf adversarial training; the paper gives no values.
    - `distill_epochs` 0: the attacks that train a model from scratch train as
      long as the adversary's testing surrogates (`train.epochs`).
    - `jagielski_temperature` T' = 2 (Eq. 4 read as p^(1/T') renormalised, a true
      temperature; see `labels.jagielski`): the paper gives no value; at T' = 1
      the attack would learn exactly Retraining's labels, so it softens them.
    - `papernot_seed_size` 150, `papernot_rounds` 6, `papernot_lambda` 0.1:
      Papernot et al.'s MNIST setting (each round doubles the set).
    - `knockoff_data`: the transfer set, another distribution than the attacked
      data (the paper: one with nine times as many classes; the paper configs
      take ImageNet32 for CIFAR-10 and CINIC-10); `sample_images` (patches of
      scikit-learn's bundled photographs) works offline. `knockoff_size` 0: as
      many queries as D2 has inputs (the paper: all the adversary's data).
    - `ensemble_size` 3, `noise_lambdas` and `truth_shares`: the paper.
    - `prune_sparsities` and `prune_finetune_epochs` 1: beyond the paper; the
      usual sweep of layer-wise magnitude pruning (Han et al., 2015).
    - `strategy`: how the members of an attack's group run, as `models.strategy`
      (speed only, never results).
    """
    return ml_collections.ConfigDict(
        dict(
            attacks=ALL_ATTACKS,  # which attacks, in this order
            distill_epochs=0,  # 0: train.epochs
            finetune_size=10_000,  # D2 inputs the fine-tuning attacks train on
            finetune_epochs=5,  # of the fine-tuning and adversarial training attacks
            finetune_lr_scale=0.1,  # fine-tuning's learning rate, relative to train.learning_rate
            adversarial_size=1_000,  # adversarial examples mixed into adversarial training
            adversarial_eps=8 / 255,  # adversarial training's L-inf radius
            adversarial_alpha=2 / 255,  # adversarial training's PGD step
            adversarial_steps=7,  # adversarial training's PGD steps
            jagielski_temperature=2.0,  # T' of Eq. 4, targets p^(1/T') renormalised
            papernot_seed_size=150,  # Papernot's seed set, drawn from D2
            papernot_rounds=6,  # Jacobian augmentation rounds (each doubles the set)
            papernot_lambda=0.1,  # Jacobian augmentation step
            knockoff_data="sample_images",  # Knockoff's transfer set: another data set's name
            knockoff_dir="",  # where the transfer set's files are
            knockoff_size=0,  # 0: len(D2)
            ensemble_size=3,  # members of the Ensemble attack, each on a disjoint share of D2
            noise_lambdas="0.05,0.1,0.2,0.3,0.4,0.5",  # the Noise attack's label-noise shares
            truth_shares="0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4",  # True labels: shares of truth
            prune_sparsities="0.2,0.4,0.6,0.8,0.9",  # weights zeroed per layer by magnitude
            prune_finetune_epochs=1,  # fine-tuning after pruning
            strategy="auto",  # as models.strategy (speed only, never results)
        )
    )


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A tiny zoo and few steps: seconds-long wiring checks, not results."""
    one = "cnn_small:1,mlp:1"
    c.models.source = "cnn_small"
    c.models.training_surrogates = c.models.training_references = one
    c.models.testing_surrogates = c.models.testing_references = "cnn_small:1"
    c.models.label_only_surrogates, c.models.training_label_only_surrogates = "mlp:1", ""
    c.models.calibration_references = "mlp:2"
    c.train.epochs, c.train.source_epochs, c.train.batch_size = 1, 2, 64
    c.extract.steps, c.extract.num_candidates, c.extract.batch_size = 5, 32, 32
    c.extract.tau = 0.0
    c.evaluate.table1_points = 16
    c.evaluate.table1_methods = "cbim,fgsm,bim"
    c.removal.update(SMOKE_REMOVAL)
    c.evasion.update(dict(detector="mlp", num_candidates=32, epochs=1))
    return c


# Every code path of the removal attacks (frozen layers, adversarial examples,
# augmentation rounds, a transfer set, disjoint subsets, per-member targets and
# masks, quantization) on a minimal budget.
SMOKE_REMOVAL = dict(
    attacks="rtll,pgd,papernot,knockoff,ensemble,true_labels,prune_finetune,quantize",
    distill_epochs=1,
    finetune_size=256,
    finetune_epochs=1,
    adversarial_size=32,
    adversarial_steps=2,
    papernot_seed_size=32,
    papernot_rounds=1,
    knockoff_data="sample_images",  # Knockoff's transfer set: another data set's name
    knockoff_size=128,
    ensemble_size=2,
    truth_shares="0.2,1.0",
    prune_sparsities="0.5,0.9",
)


PAPER_MIX = "resnet20:{a},resnet56:{b},densenet:{b},vgg16:{b},vgg19:{b},mobilenetv2:{b}"


def paper(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The paper's setup (Section 6.1): a ResNet-20 source; surrogates and
    references across six CIFAR architectures, at least two per architecture on
    the defender's side; SGD with the usual CIFAR augmentation; C-BIM at
    eps = 0.15 with tau = 1 on the training models."""
    c.models.source = "resnet20"
    c.models.training_surrogates = PAPER_MIX.format(a=4, b=2)
    c.models.training_references = PAPER_MIX.format(a=4, b=2)
    c.models.testing_surrogates = PAPER_MIX.format(a=2, b=1)
    c.models.testing_references = PAPER_MIX.format(a=2, b=1)
    c.models.training_label_only_surrogates = "resnet20:2,vgg16:1"  # students of top-1 labels
    c.models.label_only_surrogates = "resnet20:1,vgg16:1"  # a label-only API's thieves
    c.models.calibration_references = PAPER_MIX.format(a=2, b=1)
    c.models.strategy = "auto"
    c.train.update(
        dict(
            optimizer="sgd",
            learning_rate=0.1,
            weight_decay=5e-4,
            schedule="cosine",  # cosine or constant
            batch_size=128,
            epochs=30,
            source_epochs=60,
            augment_crop=4,
            augment_flip=True,
            chunk_steps=100,
        )
    )
    c.extract.update(
        dict(
            eps=0.15,
            alpha=0.01,  # step size
            steps=100,  # C-BIM iterations
            tau=1.0,
            num_candidates=1000,
            fingerprint_size=100,  # inputs kept, most conferrable first
            batch_size=250,
        )
    )
    c.evaluate.table1_points = 300  # Section 4.3: 300 correctly classified starting points
    c.evaluate.eps_sweep = "0.01,0.05,0.1,0.15,0.25,0.3"  # Figure 4
    # Section 6.3: "model extraction uses all the data available to the
    # adversary": 1,500 seeds doubled in 6 rounds are 96,000 inputs, about D2.
    c.removal.papernot_seed_size = 1_500
    return c


def paper_config(name: str, sizes: tuple[int, int, int], arg: str | None, knockoff: str):
    """A paper config for one data set: party sizes D1, D2, test and Knockoff's
    transfer set (its directory goes in `removal.knockoff_dir`); `arg` 'smoke'
    shrinks it."""
    check_arg(arg, ("smoke",))
    c = paper(base())
    c.data.update(dict(name=name, d1_size=sizes[0], d2_size=sizes[1], test_size=sizes[2]))
    c.removal.knockoff_data = knockoff
    return smoke_paper(c) if arg == "smoke" else c


def smoke_paper(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A paper config shrunk to a wiring check: every architecture once, one
    epoch, a few attack steps. The party sizes stay: on tiny data, also pass
    `--config.data.d1_size=`, `d2_size` and `test_size`."""
    mix = PAPER_MIX.format(a=1, b=1)
    c.models.training_surrogates = c.models.training_references = mix
    c.models.testing_surrogates = c.models.testing_references = "resnet20:1"
    c.models.label_only_surrogates = c.models.calibration_references = "resnet20:1"
    c.models.training_label_only_surrogates = "resnet20:1"
    c.train.update(dict(epochs=1, source_epochs=1, batch_size=8, chunk_steps=8))
    c.extract.update(dict(steps=2, num_candidates=8, batch_size=8, tau=0.0))
    c.evaluate.update(dict(table1_points=4, table1_methods="cbim,fgsm", eps_sweep=""))
    c.removal.update(SMOKE_REMOVAL)  # offline: the transfer set is the sample photographs
    c.removal.update(
        dict(finetune_size=8, adversarial_size=4, papernot_seed_size=4, knockoff_size=8)
    )
    return c
