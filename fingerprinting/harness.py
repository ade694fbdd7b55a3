"""The evaluation harness: verify every testing model, the removal attacks, Table 1.

`run_evaluate` verifies the source, every testing surrogate and reference and
the calibration references against the fingerprint (Tables 2-3), runs the
removal attacks the config lists on the source and verifies what they stole
(Tables 4-5), and compares the attack methods on shared starting points
(Table 1, Figure 5, and the epsilon sweep of Figure 4 when the config asks for
one). Rows go to `metrics.jsonl` and `table1.jsonl`; rows already there are
not computed again. The report is rebuilt from those files at the end.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from fingerprinting import attacks
from fingerprinting import config as config_lib
from fingerprinting import errors
from fingerprinting import evasion
from fingerprinting import faults
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import pipeline
from fingerprinting import progress
from fingerprinting import removal
from fingerprinting import report
from fingerprinting import workdir_lock

TESTED_KINDS = (
    "source",
    "testing_surrogate",
    "label_only_surrogate",
    "testing_reference",
    "calibration_reference",
)
METHODS = ("cbim",) + tuple(attacks.ATTACKS)


def parse_methods(spec: str) -> list[str]:
    return config_lib.parse_names(spec, METHODS, "attack method(s)")


def verdict(fp, labels, config, name: str | None = None, log_labels=None) -> dict:
    """Algorithm 1 on a model's labels, the calibrated decision and the twin test
    (on its labels on the query log) beside it; a calibration reference
    (`name`) is judged by the nulls of the others."""
    return fp_lib.verify_labels(
        fp,
        labels,
        significance=config.verify.significance,
        leave_out=name,
        log_labels=log_labels,
    )


def verify_zoo(zoo, fp, config) -> list[dict]:
    """One metrics row per model of the tested kinds."""
    rows = []
    x, x_log = fp.inputs, fp.log_inputs if fp.has_twin_test else None
    for kind in TESTED_KINDS:
        for tg in zoo.get(kind):
            labels = fp_lib.labels_of([tg], x, zoo.strategy)
            logs = None if x_log is None else fp_lib.labels_of([tg], x_log, zoo.strategy)
            for i, (rec, lab) in enumerate(zip(tg.records(), labels)):
                name = rec["name"] if kind == "calibration_reference" else None
                v = verdict(fp, lab, config, name, None if logs is None else logs[i])
                rows.append(dict(rec, part=zoo.party_name(kind), attack="none", **v))
    return rows


def run_removal(zoo, fp, config, rows: list[dict], path: str) -> list[dict]:
    """Runs every attack of config.removal.attacks not yet in `rows` and appends
    one row per attacked model to metrics.jsonl (`path`) after each attack."""
    start, ran = time.time(), 0
    for name in removal.parse_attacks(config.removal.attacks):
        done = any(r["kind"] == "attack" and r["attack"] == name for r in rows)
        if removal.finished(zoo.workdir, name, config) and done:
            continue
        rows = [r for r in rows if not (r["kind"] == "attack" and r["attack"] == name)]
        attacked = removal.run_attack(name, zoo, config)
        labels = attacked.deployed_logits(fp.inputs).argmax(-1)
        logs = attacked.deployed_logits(fp.log_inputs).argmax(-1) if fp.has_twin_test else None
        new = [
            dict(rec, **verdict(fp, lab, config, log_labels=None if logs is None else logs[i]))
            for i, (rec, lab) in enumerate(zip(attacked.records(), labels))
        ]
        progress.log(
            f"attack {name}: fingerprint accuracy "
            + " ".join(f"{r['fingerprint_accuracy']:.2f}" for r in new)
        )
        rows = rows + new
        files.write_jsonl_atomic(path, rows)
        faults.point("removal_attack")
        ran += 1
    if ran:
        progress.log(f"removal attacks: {ran} run in {time.time() - start:.0f} s")
    return rows


def baseline_attack_fn(method: str, model, config, eps: float):
    """A jitted baseline attack on one model: run(variables, x, y, rng) -> x_adv."""
    fn = attacks.ATTACKS[method]
    a = config.extract

    @jax.jit
    def run(variables, x, y, rng):
        logits_fn = lambda xb: model.apply(variables, xb, train=False)
        if method == "fgsm":
            return fn(logits_fn, x, y, eps=eps)
        if method == "bim":
            return fn(logits_fn, x, y, eps=eps, alpha=a.alpha, steps=a.steps)
        if method == "pgd":
            return fn(logits_fn, x, y, eps=eps, alpha=a.alpha, steps=a.steps, rng=rng)
        if method == "deepfool":
            return fn(logits_fn, x, eps=eps)
        return fn(logits_fn, x, y, eps=eps)

    return run


def attack_examples(zoo, config, method: str, x0, y, eps: float) -> np.ndarray:
    """uint8 results of one method from the given starting points."""
    if method == "cbim":
        ecfg = config.extract.copy_and_resolve_references()
        with ecfg.unlocked():
            ecfg.eps = eps
        return fp_lib.to_uint8(fp_lib.run_cbim(zoo, x0, y, ecfg, config.seed + 1))
    src = zoo.source()
    run = baseline_attack_fn(method, src.group.model, config, eps)
    variables = jax.tree_util.tree_map(lambda a: a[0], src.variables)
    out = []
    for i in range(0, len(x0), config.extract.batch_size):
        out.append(
            np.asarray(
                run(
                    variables,
                    jnp.asarray(x0[i : i + config.extract.batch_size]),
                    jnp.asarray(y[i : i + config.extract.batch_size]),
                    jax.random.PRNGKey(config.seed + i),
                )
            )
        )
    return fp_lib.to_uint8(np.concatenate(out))


def score_method(zoo, x_uint8, truth) -> dict:
    """Table 1 figures on the testing models, over the successful examples."""
    scored = fp_lib.score_examples(
        zoo, x_uint8, truth, surrogates="testing_surrogate", references="testing_reference"
    )
    ok, target = scored["adversarial"], scored["keys"]
    confer = scored["conferrability"]
    mean = lambda v: float(v[ok].mean()) if ok.any() else 0.0
    return {
        "success_rate": float(ok.mean()),
        "transferability": mean(fp_lib.transferability(scored["reference_labels"], target)),
        "conferrability": mean(confer),
        "per_example_conferrability": confer[ok].round(4).tolist(),
        "surrogate_transfer": mean(fp_lib.transferability(scored["surrogate_labels"], target)),
    }


def table1(zoo, config, workdir: str) -> list[dict]:
    """Every method at every eps from the same starting points; resumable per row."""
    path = os.path.join(workdir, "table1.jsonl")
    rows = files.read_jsonl(path)
    done = {(r["method"], r["eps"]) for r in rows}
    d1, idx = fp_lib.source_correct_candidates(zoo, config.evaluate.table1_points, config.seed + 1)
    base_eps = config.evaluate.table1_eps or config.extract.eps
    sweep = sorted(set(config_lib.parse_floats(config.evaluate.eps_sweep)) | {base_eps})
    methods = parse_methods(config.evaluate.table1_methods)
    if zoo.label_only_source:  # the baselines attack the source's own gradients
        methods = [m for m in methods if m == "cbim"]
    for eps in sweep:
        for method in methods:
            if (method, eps) in done:
                continue
            start = time.time()
            x_adv = attack_examples(zoo, config, method, d1.x[idx], d1.y[idx], eps)
            row = dict(
                method=method,
                eps=eps,
                points=int(len(idx)),
                seconds=round(time.time() - start, 1),
                **score_method(zoo, x_adv, d1.y[idx]),
            )
            progress.log(
                f"table 1: {method} eps={eps}: transferable {row['transferability']:.3f}, "
                f"conferrable {row['conferrability']:.3f} ({row['seconds']} s)"
            )
            rows.append(row)
            files.write_jsonl_atomic(path, rows)
            faults.point("table1_row")
    return rows


class PhaseClock:
    """Wall time of each phase of a run, logged at its end and kept in
    WORKDIR/timing.json (one entry per run of the phase, resumed runs included)."""

    def __init__(self, workdir: str):
        self.path, self.seconds = os.path.join(workdir, "timing.json"), {}
        self.last = time.time()

    def lap(self, phase: str) -> None:
        now = time.time()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self.last, 1)
        self.last = now

    def close(self) -> None:
        runs = files.read_json(self.path) if os.path.exists(self.path) else []
        files.write_json_atomic(self.path, runs + [self.seconds])
        total = sum(self.seconds.values())
        progress.log(
            "time: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
            + f"; {total / 60:.1f} min in all"
        )


def run_evaluate(config, workdir: str, store_beside: str | None = None) -> list[dict]:
    parse_methods(config.evaluate.table1_methods)
    config_lib.parse_floats(config.evaluate.eps_sweep)
    removal.validate(config)
    evasion.settings(config)
    zoo = pipeline.open_zoo(config, workdir, store_beside)
    clock = PhaseClock(workdir)
    zoo.train_all()
    clock.lap("train")
    fp = pipeline.run_extract(config, workdir, zoo=zoo)
    clock.lap("extract")
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    rows = files.read_jsonl(metrics_path)
    before = (rows, files.read_jsonl(os.path.join(workdir, "table1.jsonl")))
    if not any(r["kind"] != "attack" for r in rows):
        rows = verify_zoo(zoo, fp, config) + rows
        files.write_jsonl_atomic(metrics_path, rows)
    clock.lap("verify")
    rows = run_removal(zoo, fp, config, rows, metrics_path)
    clock.lap("removal attacks")
    if config.evaluate.evasion and not any(r["kind"] == "evasion" for r in rows):
        rows = rows + evasion.run_evasion(zoo, fp, config)
        files.write_jsonl_atomic(metrics_path, rows)
        clock.lap("evasion game")
    t1 = table1(zoo, config, workdir)
    clock.lap("table 1")
    if (rows, t1) == before:
        progress.log(f"evaluate: every result is in {workdir}; nothing to do but the report")
    report.write_report(workdir, fp, rows, t1, config)
    clock.lap("report")
    clock.close()
    print(report.verdict_table([r for r in rows if r["kind"] != "evasion"]))
    return rows


def parse_seeds(spec: str) -> list[int]:
    try:
        seeds = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise errors.ConfigError(f"expected comma-separated integer seeds, got {spec!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise errors.ConfigError(f"expected distinct seeds, got {spec!r}")
    return seeds


def run_study(config, workdir: str, seeds: list[int]) -> list[dict]:
    """`run_evaluate` once per seed, in WORKDIR/seed-N (each resumable), then
    one table and one plot over the seeds: WORKDIR/study.md and plots/study.png,
    rewritten as each seed finishes. The seeds share one store of trained
    models, beside WORKDIR (`store`)."""
    workdir_lock.acquire(workdir)  # each seed's directory has a lock of its own too
    study, spent = [], []  # spent: seconds of the seeds this process ran
    for i, seed in enumerate(seeds):
        progress.log(f"study: seed {seed} ({i + 1} of {len(seeds)}){time_left(spent, seeds, i)}")
        cfg = config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.seed = seed
        start = time.time()
        rows = run_evaluate(cfg, os.path.join(workdir, f"seed-{seed}"), store_beside=workdir)
        if time.time() - start > 60:  # a seed resumed from its finished results is not timed
            spent.append(time.time() - start)
        study.append(report.study_row(seed, rows))
        text = write_study_table(workdir, study, config)
        progress.log(f"study: seed {seed} done in {time.time() - start:.0f} s; {workdir}/study.md")
    print(text)
    return study


def time_left(spent: list[float], seeds: list[int], i: int) -> str:
    """', about N min left' from the seeds timed so far ('' before the first)."""
    if not spent:
        return ""
    return f", about {sum(spent) / len(spent) * (len(seeds) - i) / 60:.0f} min left"


def write_study_table(workdir: str, study: list[dict], config) -> str:
    workdir_lock.acquire(workdir)  # made by the first seed's run if it was new
    os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
    return report.write_study(workdir, study, config.verify.theta, config.verify.significance)
