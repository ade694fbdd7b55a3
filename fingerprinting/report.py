"""The report: tables in the paper's form and the plots a person looks at.

Built only from the files of a work directory (metrics.jsonl, table1.jsonl,
the fingerprint), so it can be rebuilt at any time. Writes WORKDIR/report.md
and PNGs in WORKDIR/plots/: fingerprint accuracy of every model against theta,
the removal attacks in the form of Tables 4-5 with fingerprint accuracy
against test accuracy and across each attack's sweep, per-example
conferrability of each attack method (Figure 5), conferrability against
epsilon (Figure 4) when there is a sweep, and fingerprint images beside their
originals (Figures 7-8).
"""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fingerprinting import evasion  # noqa: E402
from fingerprinting import files  # noqa: E402
from fingerprinting.zoo import DERIVED_KINDS, INDEPENDENT_KINDS  # noqa: E402

KIND_COLORS = {
    "source": "black",
    "training_surrogate": "tab:red",
    "training_label_only_surrogate": "tab:orange",
    "testing_surrogate": "tab:red",
    "label_only_surrogate": "tab:orange",
    "training_reference": "tab:blue",
    "training_outsider_reference": "tab:blue",
    "testing_reference": "tab:blue",
    "calibration_reference": "tab:cyan",
    "attack": "tab:purple",
}


def _fmt_p(p) -> str:
    if p is None:
        return "-"
    return "<1e-300" if p == 0 else f"{p:.2g}"  # 0 is an underflow, not a certainty


def verdict_table(rows: list[dict]) -> str:
    """Plain-text verdicts, one model a line."""
    twin = any("twin_d" in r for r in rows)
    head = f"{'model':42s} {'test acc':>8s} {'fp acc':>6s} {'>=theta':>7s} {'p (beta-bin)':>12s} {'p (binom)':>9s}"
    head += f" {'twin d':>7s} {'p (twin)':>8s}" if twin else ""
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['name']:42s} {r['test_accuracy']:8.3f} {r['fingerprint_accuracy']:6.2f} "
            f"{'yes' if r['verified'] else 'no':>7s} {_fmt_p(r.get('p_value')):>12s} "
            f"{_fmt_p(r.get('p_value_binomial')):>9s}"
        )
        if twin:
            d = r.get("twin_d")
            line += f" {'-' if d is None else f'{d:+.3f}':>7s} {_fmt_p(r.get('twin_p_value')):>8s}"
        lines.append(line)
    return "\n".join(lines)


def roc_auc(positives, negatives) -> float | None:
    """Probability that a random positive scores above a random negative (ties
    count half): the area under the ROC curve of the score, pair by pair."""
    if not positives or not negatives:
        return None
    p, n = np.asarray(positives, float)[:, None], np.asarray(negatives, float)[None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def separation(rows: list[dict]) -> dict:
    """How the fingerprint tells derived models (the adversary's surrogates)
    from independent ones (testing and calibration references): the smallest
    and largest fingerprint accuracy, their margin, the ROC AUC, and how many
    of each were verified at theta and by the calibrated test."""
    derived = [r for r in rows if r["kind"] in DERIVED_KINDS]
    independent = [r for r in rows if r["kind"] in INDEPENDENT_KINDS]
    acc = lambda rs: [r["fingerprint_accuracy"] for r in rs]
    count = lambda rs, key: sum(bool(r.get(key)) for r in rs)
    low, high = min(acc(derived), default=None), max(acc(independent), default=None)
    twin = {}
    if any("twin_d" in r for r in derived + independent):
        d = lambda rs: [r["twin_d"] for r in rs if r.get("twin_d") is not None]
        twin = {
            "twin_auc": roc_auc(d(derived), d(independent)),
            "min_derived_twin_d": min(d(derived), default=None),
            "max_independent_twin_d": max(d(independent), default=None),
            "derived_verified_twin": count(derived, "verified_twin"),
            "independent_verified_twin": count(independent, "verified_twin"),
        }
    return twin | {
        "min_surrogate": low,
        "max_reference": high,
        "margin": None if low is None or high is None else low - high,
        "auc": roc_auc(acc(derived), acc(independent)),
        "derived": len(derived),
        "independent": len(independent),
        "derived_verified": count(derived, "verified"),
        "derived_verified_calibrated": count(derived, "verified_calibrated"),
        "independent_verified": count(independent, "verified"),
        "independent_verified_calibrated": count(independent, "verified_calibrated"),
    }


def verdict_line(sep: dict, theta: float, significance: float) -> str:
    """The report's first line: what the fingerprint caught, and what it wrongly caught."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    return (
        f"**Verdict: {sep['derived_verified']} of {sep['derived']} derived models verified "
        f"at theta = {theta}, {sep['derived_verified_calibrated']} of {sep['derived']} by the "
        f"calibrated test (p < {significance}); {sep['independent_verified']} of "
        f"{sep['independent']} independent models wrongly verified at theta, "
        f"{sep['independent_verified_calibrated']} of {sep['independent']} by the calibrated "
        f"test.** ROC AUC {fmt(sep['auc'])}; smallest derived {fmt(sep['min_surrogate'])}, "
        f"largest independent {fmt(sep['max_reference'])}."
    ) + (twin_line(sep, significance) if "twin_auc" in sep else "")


def twin_line(sep: dict, significance: float) -> str:
    """The twin test's verdict, beside the paper's (see `twin_test`)."""
    fmt = lambda v: "-" if v is None else f"{v:+.3f}"
    auc = "-" if sep["twin_auc"] is None else f"{sep['twin_auc']:.2f}"
    return (
        f" **Twin test (p < {significance}): {sep['derived_verified_twin']} of {sep['derived']} "
        f"derived verified, {sep['independent_verified_twin']} of {sep['independent']} "
        f"independent wrongly verified;** ROC AUC of d {auc}, smallest derived d "
        f"{fmt(sep['min_derived_twin_d'])}, largest independent {fmt(sep['max_independent_twin_d'])}."
    )


def _save(fig, path: str) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    files.write_bytes_atomic(path, buf.getvalue())


def plot_fingerprint_accuracy(rows, theta, path):
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(rows)), 4))
    names = [r["name"] for r in rows]
    colors = [KIND_COLORS.get(r["kind"], "gray") for r in rows]
    ax.bar(range(len(rows)), [r["fingerprint_accuracy"] for r in rows], color=colors)
    ax.axhline(theta, color="k", ls="--", lw=1, label=f"theta = {theta}")
    ax.set_xticks(range(len(rows)), names, rotation=80, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fingerprint accuracy")
    ax.set_title("Fingerprint accuracy (red: surrogates, blue/cyan: independent models)")
    ax.legend(loc="upper right")
    _save(fig, path)


# The paper counts an attack as a success for the defender when the stolen
# model keeps its accuracy within five points of the source's and is verified.
ACCURACY_BAND = 0.05
SWEEP_LABELS = {
    "lambda": "noise weight lambda (Noise)",
    "rho": "share of ground-truth labels rho (True labels)",
    "sparsity": "share of weights pruned (magnitude pruning)",
}


def source_accuracy(rows) -> float | None:
    acc = [r["test_accuracy"] for r in rows if r["kind"] == "source"]
    return acc[0] if acc else None


def within_band(row, source_acc) -> bool:
    return source_acc is not None and abs(row["test_accuracy"] - source_acc) <= ACCURACY_BAND + 1e-9


def format_parameters(parameters: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameters.items())


def plot_removal_accuracy(rows, theta, path):
    """Fingerprint accuracy against test accuracy: attacked models, testing models, source."""
    fig, ax = plt.subplots(figsize=(8, 5))
    src = source_accuracy(rows)
    if src is not None:
        ax.axvspan(
            src - ACCURACY_BAND,
            src + ACCURACY_BAND,
            color="0.9",
            label=f"within {ACCURACY_BAND * 100:.0f} points of the source",
        )
    ax.axhline(theta, color="k", ls="--", lw=1, label=f"theta = {theta}")
    kinds = (
        ("testing_surrogate", "o", "testing surrogates"),
        ("label_only_surrogate", "o", "label-only surrogates"),
        ("testing_reference", "s", "testing references"),
        ("calibration_reference", "s", "calibration references"),
        ("source", "*", "source"),
    )
    for kind, marker, label in kinds:
        pts = [(r["test_accuracy"], r["fingerprint_accuracy"]) for r in rows if r["kind"] == kind]
        if pts:
            ax.scatter(
                *zip(*pts), marker=marker, s=60, color=KIND_COLORS[kind], label=label, zorder=3
            )
    attacked = [r for r in rows if r["kind"] == "attack"]
    cmap = plt.get_cmap("tab20")
    for i, attack in enumerate(dict.fromkeys(r["attack"] for r in attacked)):
        pts = [
            (r["test_accuracy"], r["fingerprint_accuracy"])
            for r in attacked
            if r["attack"] == attack
        ]
        ax.scatter(*zip(*pts), marker="D", s=28, color=cmap(i % 20), label=f"attack: {attack}")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("fingerprint accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Removal attacks: fingerprint against test accuracy (Tables 4-5)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    _save(fig, path)


def sweeps(rows) -> dict[str, dict[str, list[tuple]]]:
    """{parameter: {attack: [(value, fingerprint acc, test acc), ...]}} of the swept attacks."""
    out: dict[str, dict[str, list[tuple]]] = {}
    for r in rows:
        if r["kind"] == "attack" and r.get("sweep"):
            point = (r["parameters"][r["sweep"]], r["fingerprint_accuracy"], r["test_accuracy"])
            out.setdefault(r["sweep"], {}).setdefault(r["attack"], []).append(point)
    return out


def plot_sweeps(rows, theta, path):
    """Fingerprint accuracy (solid) and test accuracy (dashed) across each sweep."""
    by_key = sweeps(rows)
    fig, axes = plt.subplots(1, len(by_key), figsize=(4.6 * len(by_key), 3.8), squeeze=False)
    for ax, (key, by_attack) in zip(axes[0], by_key.items()):
        for i, (attack, pts) in enumerate(by_attack.items()):
            v, fpa, test = zip(*sorted(pts))
            ax.plot(v, fpa, marker="o", color=f"C{i}", label=f"{attack}: fingerprint")
            ax.plot(v, test, marker=".", ls=":", color=f"C{i}", label=f"{attack}: test")
        ax.axhline(theta, color="k", ls="--", lw=1, label=f"theta = {theta}")
        ax.set_xlabel(SWEEP_LABELS.get(key, key))
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    fig.suptitle("Fingerprint and test accuracy across the attacks' sweeps")
    _save(fig, path)


def removal_section(rows, theta, significance, plots) -> list[str]:
    """Tables 4-5 and the two plots, from the attack rows of metrics.jsonl."""
    attacked = [r for r in rows if r["kind"] == "attack"]
    if not attacked:
        return []
    plot_removal_accuracy(rows, theta, os.path.join(plots, "removal_accuracy.png"))
    src = source_accuracy(rows)
    kept = [r for r in attacked if within_band(r, src)]
    seconds = sum({r["attack"]: r.get("seconds", 0.0) for r in attacked}.values())
    lines = [
        "## Removal attacks (Tables 4-5)",
        "",
        f"Every attack starts from the source (test accuracy {src:.3f}) and the adversary's "
        f"data D2; they took {seconds:.0f} s. {len(kept)} of {len(attacked)} attacked models "
        f"keep their test accuracy within {ACCURACY_BAND * 100:.0f} points of the source's; "
        f"the fingerprint verifies {sum(r['verified'] for r in kept)} of those at theta = "
        f"{theta} and {sum(bool(r.get('verified_calibrated')) for r in kept)} by the "
        f"calibrated test (p < {significance}).",
        "",
        files.md_table(
            [
                "family",
                "attack",
                "parameters",
                "test acc",
                "fingerprint acc",
                "verified (theta)",
                "p beta-binomial",
                f"verified (p < {significance})",
                "within 5 points",
            ],
            [
                [
                    r.get("family", ""),
                    r["attack"],
                    format_parameters(r.get("parameters", {})),
                    f"{r['test_accuracy']:.3f}",
                    f"{r['fingerprint_accuracy']:.3f}",
                    "yes" if r["verified"] else "no",
                    _fmt_p(r.get("p_value")),
                    "yes" if r.get("verified_calibrated") else "no",
                    "yes" if within_band(r, src) else "no",
                ]
                for r in attacked
            ],
        ),
        "",
        "![fingerprint against test accuracy](plots/removal_accuracy.png)",
        "",
    ]
    if sweeps(rows):
        plot_sweeps(rows, theta, os.path.join(plots, "removal_sweeps.png"))
        lines += ["![sweeps](plots/removal_sweeps.png)", ""]
    return lines


def plot_conferrability_per_example(t1, eps, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in (r for r in t1 if r["eps"] == eps):
        v = np.sort(r["per_example_conferrability"])[::-1]
        ax.plot(np.arange(len(v)), v, label=f"{r['method']} ({len(v)})")
    ax.set_xlabel("successful adversarial example (sorted)")
    ax.set_ylabel("conferrability on testing models")
    ax.set_title(f"Per-example conferrability, eps = {eps} (Figure 5)")
    ax.legend()
    _save(fig, path)


def plot_eps_sweep(t1, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in t1):
        pts = sorted((r["eps"], r["conferrability"]) for r in t1 if r["method"] == method)
        ax.plot(*zip(*pts), marker="o", label=method)
    ax.set_xlabel("epsilon (L-inf, pixel space)")
    ax.set_ylabel("mean conferrability")
    ax.set_title("Conferrability against epsilon (Figure 4)")
    ax.legend()
    _save(fig, path)


def plot_image_grid(fp, count, path):
    n = min(count, len(fp))
    names = fp.meta.get("class_names", [])
    label = lambda k: names[k] if k < len(names) else str(k)
    fig, axes = plt.subplots(2, max(n, 1), figsize=(1.3 * max(n, 1), 3), squeeze=False)
    cmap = "gray" if fp.x.shape[-1] == 1 else None
    for i in range(n):
        for row, (img, title) in enumerate(
            (
                (fp.original[i], f"{label(int(fp.truth[i]))}"),
                (fp.x[i], f"-> {label(int(fp.keys[i]))}"),
            )
        ):
            ax = axes[row, i]
            ax.imshow(img.squeeze(-1) if cmap else img, cmap=cmap, vmin=0, vmax=255)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle(
        "Originals (top) and fingerprint inputs with the source's label (bottom)", fontsize=9
    )
    _save(fig, path)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _selection_line(meta) -> list[str]:
    if "mean_selection_conferrability" not in meta:
        return []
    return [
        f"Ranked on {meta['selection_models']} held-out models (never shown to C-BIM): mean "
        f"conferrability {_fmt(meta['mean_selection_conferrability'])} on the examples kept, "
        f"{_fmt(meta['mean_selection_conferrability_passed'])} on all that passed tau."
    ]


CALIBRATION_DATA = {
    "d1": "the defender's data D1",
    "d1_holdout": "the part of D1 the source never trained on",
    "d1_without_fingerprint": "D1 without the images the fingerprint starts from",
    "d2": "the adversary's data D2",
}


def _calibration_data(cal: dict) -> str:
    data = CALIBRATION_DATA.get(cal.get("data", ""))
    return f" (trained on {data})" if data else ""


def summary_section(fp, rows, config) -> list[str]:
    """The verdict line first, then the source, the fingerprint, the calibration."""
    theta = fp.meta.get("theta", 0.7)
    m, cal, sep = fp.meta, fp.meta.get("calibration", {}), separation(rows)
    return [
        f"# Fingerprint report: {m.get('dataset')}",
        "",
        verdict_line(sep, theta, config.verify.significance),
        "",
        f"Source: {m.get('source_architecture')}, test accuracy {_fmt(source_accuracy(rows))}.",
        f"Fingerprint: {len(fp)} examples kept of {m.get('candidates')} candidates "
        f"({m.get('adversarial')} adversarial, {m.get('passed_tau')} with conferrability >= "
        f"{config.extract.tau}); C-BIM eps {config.extract.eps}, loss {config.extract.loss}, "
        f"{config.extract.steps} steps; extraction {m.get('extract_seconds')} s.",
        *_selection_line(m),
        f"Calibration: {cal.get('num_models', 0)} independent models{_calibration_data(cal)}, "
        "pooled chance rate "
        f"{_fmt(cal.get('pooled_rate'))}, Beta({_fmt(cal.get('beta_a'))}, "
        f"{_fmt(cal.get('beta_b'))}).",
        f"Smallest fingerprint accuracy of a derived model (testing and label-only "
        f"surrogates): **{_fmt(sep['min_surrogate'])}**; largest of an independent model "
        f"(testing and calibration references): **{_fmt(sep['max_reference'])}**; margin "
        f"{_fmt(sep['margin'])}, ROC AUC {_fmt(sep['auc'])} (theta {theta}).",
        "",
    ]


def models_section(models: list[dict], significance: float) -> list[str]:
    """Tables 2-3: every testing and calibration model, verified two ways."""
    header = [
        "model",
        "kind",
        "data",
        "test acc",
        "fingerprint acc",
        "verified (theta)",
        "p beta-binomial",
        "p binomial",
        f"verified (p < {significance})",
    ]
    twin = any("twin_d" in r for r in models)
    if twin:
        header += ["twin d", "p twin", "verified (twin test)"]
    table = [
        [
            r["name"],
            r["kind"],
            r.get("part", ""),
            f"{r['test_accuracy']:.3f}",
            f"{r['fingerprint_accuracy']:.3f}",
            "yes" if r["verified"] else "no",
            _fmt_p(r.get("p_value")),
            _fmt_p(r.get("p_value_binomial")),
            "yes" if r.get("verified_calibrated") else "no",
        ]
        + (
            [
                "-" if r.get("twin_d") is None else f"{r['twin_d']:+.3f}",
                _fmt_p(r.get("twin_p_value")),
                "yes" if r.get("verified_twin") else "no",
            ]
            if twin
            else []
        )
        for r in models
    ]
    return [
        "## Verification of every model (Tables 2-3)",
        "",
        files.md_table(header, table),
        "",
        "![fingerprint accuracy](plots/fingerprint_accuracy.png)",
        "",
    ]


def _side(kind: str) -> str | None:
    if kind in DERIVED_KINDS:
        return "derived"
    return "independent" if kind in INDEPENDENT_KINDS else None


def per_architecture(rows: list[dict]) -> list[dict]:
    """For each architecture: its derived and its independent models'
    fingerprint accuracies, and how many of each were verified at theta
    (`*_verified`) and by the calibrated test (`*_verified_p`)."""
    out = {}
    for r in rows:
        side = _side(r["kind"])
        if side is None or "architecture" not in r:
            continue
        a = out.setdefault(r["architecture"], {"architecture": r["architecture"]})
        for s in ("derived", "independent"):
            a.setdefault(f"{s}_accuracies", [])
            a.setdefault(f"{s}_verified", 0)
            a.setdefault(f"{s}_verified_p", 0)
            a.setdefault(f"{s}_verified_twin", 0)
        a[f"{side}_accuracies"].append(round(r["fingerprint_accuracy"], 4))
        a[f"{side}_verified"] += bool(r.get("verified"))
        a[f"{side}_verified_p"] += bool(r.get("verified_calibrated"))
        a[f"{side}_verified_twin"] += bool(r.get("verified_twin"))
        if "twin_d" in r:
            a["twin"] = True
    return sorted(out.values(), key=lambda a: a["architecture"])


def architecture_table(per_arch: list[dict], source_arch: str | None = None) -> str:
    """One line per architecture: derived against independent models."""
    accs = lambda v: " ".join(f"{x:.2f}" for x in sorted(v)) or "-"
    twin = any(a.get("twin") for a in per_arch)
    count = lambda a, side: (
        f"{a[side + '_verified']} / {a[side + '_verified_p']}"
        + (f" / {a.get(side + '_verified_twin', 0)}" if twin else "")
        + f" of {len(a[side + '_accuracies'])}"
    )
    how = "theta / p / twin" if twin else "theta / p"
    return files.md_table(
        [
            "architecture",
            "derived: fingerprint acc",
            "independent: fingerprint acc",
            f"derived verified ({how})",
            f"independent verified ({how})",
        ],
        [
            [
                a["architecture"] + (" (source's)" if a["architecture"] == source_arch else ""),
                accs(a["derived_accuracies"]),
                accs(a["independent_accuracies"]),
                count(a, "derived"),
                count(a, "independent"),
            ]
            for a in per_arch
        ],
    )


def architecture_section(models: list[dict], source_arch: str | None) -> list[str]:
    return [
        "## Per architecture",
        "",
        "Where the signal is: each architecture's derived models (testing and label-only "
        "surrogates) against its independent ones (testing and calibration references).",
        "",
        architecture_table(per_architecture(models), source_arch),
        "",
    ]


def table1_section(t1: list[dict]) -> list[str]:
    """Table 1: the attack methods from the same starting points."""
    if not t1:
        return []
    header = [
        "method",
        "eps",
        "success rate",
        "transferable",
        "conferrable",
        "surrogate transfer",
        "seconds",
    ]
    table = [
        [
            r["method"],
            r["eps"],
            f"{r['success_rate']:.3f}",
            f"{r['transferability']:.3f}",
            f"{r['conferrability']:.3f}",
            f"{r['surrogate_transfer']:.3f}",
            r["seconds"],
        ]
        for r in t1
    ]
    md = [
        "## Attack methods (Table 1)",
        "",
        "Transferability over the testing references and conferrability over the testing "
        "surrogates and references, averaged over the successful adversarial examples "
        "(source label differs from the truth) from the same starting points.",
        "",
        files.md_table(header, table),
        "",
        "![per-example conferrability](plots/conferrability_per_example.png)",
        "",
    ]
    if len({r["eps"] for r in t1}) > 1:
        md += ["![eps sweep](plots/eps_sweep.png)", ""]
    return md


def write_plots(workdir, fp, models, t1, config) -> None:
    plots = os.path.join(workdir, "plots")
    theta = fp.meta.get("theta", 0.7)
    plot_fingerprint_accuracy(models, theta, os.path.join(plots, "fingerprint_accuracy.png"))
    plot_image_grid(fp, config.evaluate.image_grid, os.path.join(plots, "fingerprint_images.png"))
    base_eps = config.evaluate.table1_eps or config.extract.eps
    if t1:
        plot_conferrability_per_example(
            t1, base_eps, os.path.join(plots, "conferrability_per_example.png")
        )
    if len({r["eps"] for r in t1}) > 1:
        plot_eps_sweep(t1, os.path.join(plots, "eps_sweep.png"))


def write_report(workdir, fp, rows, t1, config) -> str:
    """WORKDIR/report.md and its plots: the verdict, Tables 2-3, the removal
    attacks (Tables 4-5), the evasion game, Table 1, the fingerprint's images."""
    models = [r for r in rows if r["kind"] not in ("attack", "evasion")]  # their own sections
    write_plots(workdir, fp, models, t1, config)
    significance = config.verify.significance
    md = summary_section(fp, rows, config) + models_section(models, significance)
    md += architecture_section(models, fp.meta.get("source_architecture"))
    theta = fp.meta.get("theta", 0.7)
    md += removal_section(rows, theta, significance, os.path.join(workdir, "plots"))
    evading = evasion.report_section(rows, workdir)
    if evading:
        md += [evading, ""]
    md += table1_section(t1)
    md += ["## Fingerprint images", "", "![fingerprint images](plots/fingerprint_images.png)", ""]
    text = "\n".join(md)
    files.write_text_atomic(os.path.join(workdir, "report.md"), text)
    return text


def study_row(seed: int, rows: list[dict]) -> dict:
    """One seed of a study: the separation of its models and the removal
    attacks caught among those that keep the source's accuracy."""
    src = source_accuracy(rows)
    kept = [r for r in rows if r["kind"] == "attack" and within_band(r, src)]
    acc = lambda kinds: [r["fingerprint_accuracy"] for r in rows if r["kind"] in kinds]
    return dict(
        seed=seed,
        source_accuracy=src,
        derived_accuracies=acc(DERIVED_KINDS),
        independent_accuracies=acc(INDEPENDENT_KINDS),
        attacks_within_band=len(kept),
        attacks_caught=sum(bool(r.get("verified_calibrated")) for r in kept),
        attacks_caught_twin=sum(bool(r.get("verified_twin")) for r in kept),
        attacks_missed=sorted({r["attack"] for r in kept if not r.get("verified_calibrated")}),
        per_architecture=per_architecture(rows),
        **separation(rows),
    )


def plot_study(study: list[dict], theta: float, path: str) -> None:
    """Per seed: every derived (red) and independent (blue) model's fingerprint
    accuracy, the smallest derived and largest independent ringed, and theta."""
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(study) + 2.5), 4))
    for i, s in enumerate(study):
        for values, dx, color, marker, label in (
            (s["derived_accuracies"], -0.12, "tab:red", "o", "derived models"),
            (s["independent_accuracies"], 0.12, "tab:blue", "s", "independent models"),
        ):
            ax.scatter(
                np.full(len(values), i + dx),
                values,
                color=color,
                marker=marker,
                s=22,
                alpha=0.7,
                label=label if i == 0 else None,
                zorder=3,
            )
        for value, dx, color in (
            (s["min_surrogate"], -0.12, "tab:red"),
            (s["max_reference"], 0.12, "tab:blue"),
        ):
            if value is not None:
                ax.scatter([i + dx], [value], s=110, facecolors="none", edgecolors=color, zorder=4)
    ax.axhline(theta, color="k", ls="--", lw=1, label=f"theta = {theta}")
    ax.set_xticks(range(len(study)), [f"seed {s['seed']}" for s in study])
    ax.set_xlim(-0.6, len(study) - 0.4)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fingerprint accuracy")
    ax.set_title("Derived against independent models, per seed (rings: closest pair)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


def pooled_architectures(study: list[dict]) -> list[dict]:
    """`per_architecture` summed over the seeds of a study."""
    out = {}
    for s in study:
        for a in s.get("per_architecture", []):
            if a["architecture"] not in out:
                out[a["architecture"]] = dict(a)
                continue
            pooled = out[a["architecture"]]
            for k, v in a.items():
                if k != "architecture":
                    pooled[k] = pooled[k] + v if k in pooled else v
    return sorted(out.values(), key=lambda a: a["architecture"])


def write_study(workdir: str, study: list[dict], theta: float, significance: float) -> str:
    """WORKDIR/study.md, study.jsonl and plots/study.png from per-seed rows."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    twin = any("twin_auc" in s for s in study)
    table = files.md_table(
        [
            "seed",
            "source acc",
            "smallest derived",
            "largest independent",
            "margin",
            "ROC AUC",
            "derived verified (theta / p)",
            "independent verified (theta / p)",
            "removal attacks caught (p)",
        ]
        + (["twin test: derived / independent verified, AUC"] if twin else []),
        [
            [
                s["seed"],
                f"{s['source_accuracy']:.3f}",
                fmt(s["min_surrogate"]),
                fmt(s["max_reference"]),
                fmt(s["margin"]),
                fmt(s["auc"]),
                f"{s['derived_verified']} / {s['derived_verified_calibrated']} of {s['derived']}",
                f"{s['independent_verified']} / {s['independent_verified_calibrated']} "
                f"of {s['independent']}",
                f"{s['attacks_caught']} of {s['attacks_within_band']}"
                + (f" (missed: {', '.join(s['attacks_missed'])})" if s["attacks_missed"] else ""),
            ]
            + (
                [
                    f"{s.get('derived_verified_twin', '-')} of {s['derived']} / "
                    f"{s.get('independent_verified_twin', '-')} of {s['independent']}, "
                    f"{fmt(s.get('twin_auc'))}"
                ]
                if twin
                else []
            )
            for s in study
        ],
    )
    plot_study(study, theta, os.path.join(workdir, "plots", "study.png"))
    text = "\n".join(
        [
            "# Study over seeds",
            "",
            f"Each seed splits the data, initialises every model and runs the extraction "
            f"anew. Derived: testing and label-only surrogates; independent: testing and "
            f"calibration references. Verified at theta = {theta} / by the calibrated test "
            f"(p < {significance}). Removal attacks: those keeping the source's test accuracy "
            f"within {ACCURACY_BAND * 100:.0f} points, verified by the calibrated test.",
            "",
            table,
            "",
            "![study](plots/study.png)",
            "",
            "Per architecture, over every seed:",
            "",
            architecture_table(pooled_architectures(study)),
            "",
        ]
    )
    files.write_text_atomic(os.path.join(workdir, "study.md"), text)
    files.write_jsonl_atomic(os.path.join(workdir, "study.jsonl"), study)
    return text
