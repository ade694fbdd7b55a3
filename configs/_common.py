"""Not a config itself: the base every config starts from, with every field,
its default and what it means.

Variants (`digits.py`, `fashion_mnist.py`, and through `_paper.py` the three
paper data sets) load this module with `config.load_module` and change a few
fields. Model zoos are short specs, `"arch:count,arch:count"`, so a sweep can
override them from the command line (`--config.models.testing_surrogates=cnn_small:4`).
Durations are in epochs (training) and steps (attacks). The library checks
every name and range (`pipeline.validate`) before any data is loaded.
"""

from __future__ import annotations

import ml_collections


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # the run: the party split (plus data.seed), every initialisation, C-BIM

    c.data = ml_collections.ConfigDict(
        dict(
            name="digits",  # digits, fashion_mnist, cifar10, cinic10, imagenet32; image_folder, npz
            dir="",  # where the files are (the .npz file for npz); "": each data set's default
            seed=0,  # added to `seed` for the party split: every seed splits anew
            d1_size=0,  # 0: the dataset's default party and test sizes
            d2_size=0,  # the adversary's data D2
            test_size=0,  # the held-out test split
            source_holdout=0.0,  # share of D1 the source never trains on (its validation split)
            fingerprint_pool=0.0,  # share of D1 C-BIM starts from (0: all of D1), see below
            resize=0,  # 0: keep the images' size and channels as loaded
            channels=0,  # 0: keep; 1 or 3 to convert
        )
    )

    cpu_mix = "cnn_small:2,cnn_medium:2,cnn_wide:2,mlp:2"
    one_each = "cnn_small:1,cnn_medium:1,cnn_wide:1,mlp:1"
    c.models = ml_collections.ConfigDict(
        dict(
            source="cnn_medium",  # the source model's architecture, or package.module:function
            source_api="",  # a source to query only, e.g. "URL --pixels=float" (source unused)
            training_surrogates=cpu_mix,  # the defender's students: C-BIM's surrogate side
            training_label_only_surrogates="",  # the defender's students of top-1 labels
            training_references=cpu_mix,  # the defender's independent models: its reference side
            # Also on C-BIM's reference side, trained on D1 without data.fingerprint_pool:
            # like outsiders, they never saw the images C-BIM starts from.
            training_outsider_references="",  # e.g. cnn_small:2; needs a fingerprint pool
            # Held-out models of the defender, never shown to C-BIM: when given, they
            # rank the inputs that reach tau (empty: the training models rank them;
            # surrogates without references: their agreement with the source ranks).
            selection_surrogates="",  # held-out students of the source's softmax
            selection_label_only_surrogates="",  # held-out students of its top-1 labels
            selection_references="",  # held-out independent models, on D1
            testing_surrogates=one_each,  # thieves distilled from the source's softmax on D2
            label_only_surrogates="",  # thieves that see only the source's top-1 label
            testing_references=one_each,  # independent models trained on D2
            calibration_references=one_each,  # independent models: the calibrated test's null
            source_twins=0,  # the twin test's twins of the source: its recipe, other keys
            calibration_data="d1",  # the defender's data; d1_holdout: the source's unseen part; d2
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
            epochs=15,  # of every model but the source (and the students, see below)
            student_epochs=0,  # of the source's students, thieves included; 0: epochs
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
            query_log="",  # the twin test's log of queries the API answered: "d2" or an npz of x
            query_log_size=5000,  # logged queries kept in the fingerprint and sent to a suspect
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
    in the order of `attacks`, and their settings.

    Where each default comes from (the paper, the attacks' own papers, common
    practice): docs/validation.md#removal-attack-defaults.
    """
    return ml_collections.ConfigDict(
        dict(
            attacks=ALL_ATTACKS,  # which attacks, in this order
            distill_epochs=0,  # 0: as long as the testing surrogates
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
    if c.models.training_outsider_references:
        c.models.training_outsider_references = "mlp:1"
    if c.models.selection_surrogates or c.models.selection_label_only_surrogates:
        c.models.selection_surrogates = c.models.selection_references = "mlp:1"
        c.models.selection_label_only_surrogates = ""
    c.train.epochs, c.train.source_epochs, c.train.batch_size = 1, 2, 64
    c.train.student_epochs = 0  # the students too: train.epochs
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
