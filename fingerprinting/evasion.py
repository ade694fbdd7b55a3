"""Non-evasiveness (Section 5.1): can a thief tell the fingerprint from benign queries?

The evasion game of Hitaj et al., played against this fingerprint. The thief
holds D2 and its surrogates (the testing surrogates, distilled from the
source), not the fingerprint, which stays secret until verification. It knows
the method, so it makes fingerprint-like inputs of its own: C-BIM over
Compose(its surrogates, its references), the testing surrogates and testing
references, all trained on D2, from D2 inputs its first surrogate classifies
correctly. It trains a detector (a classifier with two classes) to separate
those from their benign originals, sets the detector's threshold at the
false-positive rate it accepts on benign D2 inputs held out of training, and
deploys each surrogate behind the detector: a flagged query gets a random
label.

Per evading surrogate, `run_evasion` reports the detector's ROC AUC on the
real fingerprint against benign test inputs (0.5: it cannot tell them apart),
the share of each that it flags, the evading surrogate's fingerprint accuracy
and p-value with and without evasion, and the benign test accuracy that
evasion costs. The defender wins when the detector cannot separate the
fingerprint from benign inputs (AUC at most `max_auc`), when evasion costs
more than `max_cost` of benign accuracy (the stolen model has lost its
value), or when the evading surrogate is caught all the same.
Settings come from `config.evasion`, each with a default.
"""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn import metrics as sk_metrics

from fingerprinting import errors
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import fit
from fingerprinting import models
from fingerprinting import progress
from fingerprinting import zoo as zoo_lib

DEFAULTS = dict(
    detector="cnn_small",  # the thief's detector architecture
    num_candidates=400,  # D2 starting points of the thief's C-BIM
    epochs=10,  # of detector training
    false_positive_rate=0.05,  # on benign inputs, where the thief sets its threshold
    max_auc=0.6,  # a detector AUC up to this cannot tell the fingerprint apart
    max_cost=0.05,  # benign accuracy a thief gives up at most and still wins
)
HELD_OUT = 0.25  # share of the thief's examples kept out of detector training
ROC_GRID = np.linspace(0.0, 1.0, 41)
PLOT = "plots/evasion.png"


def settings(config) -> dict:
    """`config.evasion` over the defaults, checked before any work."""
    given = config.get("evasion")
    s = dict(DEFAULTS, **(given.to_dict() if given is not None else {}))
    unknown = sorted(set(s) - set(DEFAULTS))
    if unknown:
        raise errors.ConfigError(f"unknown evasion setting(s) {', '.join(unknown)}")
    if s["detector"] not in models.ARCHITECTURES:
        raise errors.ConfigError(
            f"unknown evasion.detector {s['detector']!r}; "
            f"expected one of {', '.join(models.ARCHITECTURES)}"
        )
    checks = [
        ("num_candidates", s["num_candidates"] >= 4),
        ("epochs", s["epochs"] >= 1),
        ("false_positive_rate", 0 < s["false_positive_rate"] < 1),
        ("max_auc", 0.5 <= s["max_auc"] <= 1),
        ("max_cost", 0 <= s["max_cost"] <= 1),
    ]
    for name, ok in checks:
        if not ok:
            raise errors.ConfigError(f"evasion.{name} = {s[name]!r} is out of range")
    return s


def thief_examples(zoo, config, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The thief's C-BIM examples on its own models, and their benign originals (uint8)."""
    surr, refs = zoo.get("testing_surrogate"), zoo.get("testing_reference")
    if not surr or not refs:
        raise errors.ConfigError("the evasion game needs testing surrogates and testing references")
    d2 = zoo.splits.d2
    first = fp_lib.labels_of(surr[:1], d2.x, zoo.strategy)[0]
    idx = fp_lib.pick_candidates(first, d2.y, count, config.seed + 3)
    if len(idx) < 4:
        raise errors.ConfigError(
            f"the thief's surrogate classifies only {len(idx)} D2 inputs correctly"
        )
    x_adv = fp_lib.run_cbim(zoo, d2.x[idx], d2.y[idx], config.extract, config.seed + 3, surr, refs)
    return fp_lib.to_uint8(x_adv), fp_lib.to_uint8(d2.x[idx])


def train_detector(zoo, config, s, x_pos_uint8, x_neg_uint8):
    """score(x_uint8) -> [N]: the detector's logit margin for 'fingerprint-like'."""
    x = np.concatenate([x_neg_uint8, x_pos_uint8]).astype(np.float32) / 255.0
    y = np.repeat([0, 1], [len(x_neg_uint8), len(x_pos_uint8)])
    model = models.get_model(s["detector"], 2)
    variables = fit.train_group(
        model,
        x,
        np.eye(2, dtype=np.float32)[y],
        size=1,
        cfg=config.train,
        epochs=s["epochs"],
        rng=zoo_lib.group_seed(config, "evasion-detector"),
        strategy=zoo.strategy,
        desc=f"evasion: train detector {s['detector']}",
    )

    def score(x_uint8):
        logits = fit.predict_logits(
            model, variables, x_uint8.astype(np.float32) / 255.0, strategy=zoo.strategy
        )[0]
        return logits[:, 1] - logits[:, 0]

    return score


def auc_and_roc(scores_pos, scores_neg) -> tuple[float, list[list[float]]]:
    """ROC AUC of separating positives from negatives, and the ROC curve on a grid."""
    y = np.repeat([1, 0], [len(scores_pos), len(scores_neg)])
    s = np.concatenate([scores_pos, scores_neg])
    fpr, tpr, _ = sk_metrics.roc_curve(y, s)
    roc = [
        [round(float(f), 4), round(float(t), 4)]
        for f, t in zip(ROC_GRID, np.interp(ROC_GRID, fpr, tpr))
    ]
    return float(sk_metrics.roc_auc_score(y, s)), roc


def evade(labels_N, flagged_N, num_classes: int, rng) -> np.ndarray:
    """The evading model's answers: its own labels, or a random one where flagged."""
    return np.where(flagged_N, rng.integers(0, num_classes, len(labels_N)), labels_N)


def run_evasion(zoo, fp, config) -> list[dict]:
    """The evasion game: one metrics row (kind "evasion") per testing surrogate."""
    s = settings(config)
    x_adv, x_clean = thief_examples(zoo, config, s["num_candidates"])
    split = round(len(x_adv) * (1 - HELD_OUT))
    score = train_detector(zoo, config, s, x_adv[:split], x_clean[:split])
    threshold = float(np.quantile(score(x_clean[split:]), 1 - s["false_positive_rate"]))
    auc_own, roc_own = auc_and_roc(score(x_adv[split:]), score(x_clean[split:]))
    test = zoo.splits.test
    x_test = fp_lib.to_uint8(test.x)
    s_fp, s_test = score(fp.x), score(x_test)
    auc_fp, roc_fp = auc_and_roc(s_fp, s_test)
    flag_fp, flag_test = s_fp > threshold, s_test > threshold
    progress.log(
        f"evasion: detector AUC {auc_fp:.3f} on the fingerprint vs benign test inputs "
        f"({auc_own:.3f} on the thief's own held-out examples); flags "
        f"{flag_fp.mean():.2f} of the fingerprint, {flag_test.mean():.2f} of benign inputs"
    )
    detector = dict(
        detector=s["detector"],
        thief_examples=len(x_adv),
        auc_fingerprint=auc_fp,
        auc_own=auc_own,
        threshold=threshold,
        false_positive_rate=s["false_positive_rate"],
        max_auc=s["max_auc"],
        max_cost=s["max_cost"],
        flagged_fingerprint=float(flag_fp.mean()),
        flagged_benign=float(flag_test.mean()),
        roc_fingerprint=roc_fp,
        roc_own=roc_own,
    )
    rng = np.random.default_rng(config.seed + 4)
    k, rows, significance = fp.num_classes, [], config.verify.significance
    for tg in zoo.get("testing_surrogate"):
        on_fp = fp_lib.labels_of([tg], fp.inputs, zoo.strategy)
        on_test = fp_lib.labels_of([tg], x_test.astype(np.float32) / 255.0, zoo.strategy)
        for rec, lab_fp, lab_test in zip(tg.records(), on_fp, on_test):
            plain = fp_lib.verify_labels(fp, lab_fp, significance=significance)
            v = fp_lib.verify_labels(fp, evade(lab_fp, flag_fp, k, rng), significance=significance)
            caught = v["verified"] or v["verified_calibrated"]
            acc = float((evade(lab_test, flag_test, k, rng) == test.y).mean())
            acc_without = float((lab_test == test.y).mean())
            cost = acc_without - acc
            rows.append(
                dict(
                    rec,
                    **v,
                    **detector,
                    name=f"{rec['name']}+evasion",
                    kind="evasion",
                    part="d2",
                    attack="evasion",
                    test_accuracy=acc,
                    test_accuracy_without=acc_without,
                    accuracy_cost=cost,
                    fingerprint_accuracy_without=plain["fingerprint_accuracy"],
                    p_value_without=plain["p_value"],
                    caught=caught,
                    caught_without=plain["verified"] or plain["verified_calibrated"],
                    defender_wins=auc_fp <= s["max_auc"] or cost > s["max_cost"] or caught,
                )
            )
    return rows


def plot_evasion(rows: list[dict], path: str) -> None:
    """The detector's ROC curves, and each surrogate's accuracies with and without evasion."""
    fig, (ax_roc, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    r0 = rows[0]
    for key, label in (
        ("roc_fingerprint", "real fingerprint vs benign test"),
        ("roc_own", "thief's own held-out examples"),
    ):
        roc = np.asarray(r0[key])
        ax_roc.plot(
            roc[:, 0], roc[:, 1], label=f"{label} (AUC {r0[key.replace('roc', 'auc')]:.2f})"
        )
    ax_roc.plot([0, 1], [0, 1], "k:", lw=1)
    ax_roc.set(xlabel="false-positive rate", ylabel="true-positive rate", title="Thief's detector")
    ax_roc.legend(fontsize=8)
    pos = np.arange(len(rows))
    bars = (
        ("fingerprint_accuracy_without", "fingerprint acc", "tab:red", 0.3),
        ("fingerprint_accuracy", "fingerprint acc, evading", "tab:red", 1.0),
        ("test_accuracy_without", "test acc", "tab:gray", 0.3),
        ("test_accuracy", "test acc, evading", "tab:gray", 1.0),
    )
    for i, (key, label, color, alpha) in enumerate(bars):
        ax_acc.bar(
            pos + (i - 1.5) * 0.2,
            [r[key] for r in rows],
            0.2,
            label=label,
            color=color,
            alpha=alpha,
        )
    ax_acc.axhline(r0["theta"], color="black", ls="--", lw=1, label="theta")
    ax_acc.set_xticks(
        pos, [r["name"].replace("+evasion", "") for r in rows], rotation=30, ha="right", fontsize=7
    )
    ax_acc.set(ylim=(0, 1.05), title="Evading surrogates")
    ax_acc.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.write_bytes_atomic(path, buf.getvalue())


def report_section(rows: list[dict], workdir: str) -> str:
    """The report's evasion section (markdown); writes WORKDIR/plots/evasion.png."""
    rows = [r for r in rows if r.get("kind") == "evasion"]
    if not rows:
        return ""
    plot_evasion(rows, os.path.join(workdir, PLOT))
    r0, p = rows[0], lambda v: "-" if v is None else ("<1e-300" if v == 0 else f"{v:.2g}")
    lines = [
        "## Non-evasiveness: the evasion game (Section 5.1)",
        "",
        (
            f"The thief trains a {r0['detector']} detector on {r0['thief_examples']} C-BIM "
            "examples made on its own surrogates and references (D2) against their benign "
            f"originals, sets its threshold at a {r0['false_positive_rate']:.0%} false-positive "
            "rate on held-out benign D2 inputs, and answers a random label when the detector fires."
        ),
        (
            "Detector ROC AUC on the real fingerprint against benign test inputs: "
            f"**{r0['auc_fingerprint']:.3f}** (0.5: cannot tell them apart); on its own held-out "
            f"examples: {r0['auc_own']:.3f}. It flags {r0['flagged_fingerprint']:.0%} of the "
            f"fingerprint and {r0['flagged_benign']:.0%} of benign test inputs. The defender wins "
            f"when the AUC is at most {r0['max_auc']}, when evasion costs more than "
            f"{r0['max_cost']} of test accuracy, or when the evading model is caught all the same."
        ),
        "",
        files.md_table(
            [
                "evading model",
                "fingerprint acc (without)",
                "p-value (without)",
                "caught (without)",
                "test acc (without)",
                "accuracy cost",
                "defender wins",
            ],
            [
                [
                    r["name"],
                    f"{r['fingerprint_accuracy']:.3f} ({r['fingerprint_accuracy_without']:.3f})",
                    f"{p(r['p_value'])} ({p(r['p_value_without'])})",
                    f"{'yes' if r['caught'] else 'no'} ({'yes' if r['caught_without'] else 'no'})",
                    f"{r['test_accuracy']:.3f} ({r['test_accuracy_without']:.3f})",
                    f"{r['accuracy_cost']:.3f}",
                    "yes" if r["defender_wins"] else "no",
                ]
                for r in rows
            ],
        ),
        "",
        f"![evasion game]({PLOT})",
        "",
    ]
    return "\n".join(lines)
