"""The evaluation harness: verify every testing model, and the paper's Table 1.

`run_evaluate` verifies the source, every testing surrogate and reference and
the calibration references against the fingerprint (Tables 2-3), and compares
the attack methods on shared starting points (Table 1, Figure 5, and the
epsilon sweep of Figure 4 when the config asks for one). Rows go to
`metrics.jsonl` and `table1.jsonl`; rows already there are not computed again.
The report is rebuilt from those files at the end.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import pipeline
from fingerprinting import progress
from fingerprinting import report
from fingerprinting import attacks

TESTED_KINDS = ("source", "testing_surrogate", "testing_reference", "calibration_reference")
METHODS = ("cbim",) + tuple(attacks.ATTACKS)


def parse_methods(spec: str) -> list[str]:
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown attack method(s) {', '.join(unknown)}; expected {', '.join(METHODS)}"
        )
    return methods


def parse_floats(spec: str) -> list[float]:
    try:
        return [float(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {spec!r}") from None


def verify_zoo(zoo, fp, config) -> list[dict]:
    """One metrics row per model of the tested kinds."""
    rows = []
    for kind in TESTED_KINDS:
        for tg in zoo.get(kind):
            labels = fp_lib.labels_of([tg], fp.inputs, zoo.strategy)
            for rec, lab in zip(tg.records(), labels):
                v = fp_lib.verify_labels(fp, lab)
                v["verified_calibrated"] = (
                    v["p_value"] is not None and v["p_value"] < config.verify.significance
                )
                rows.append(dict(rec, part=zoo.party_name(kind), attack="none", **v))
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
    d1 = zoo.splits.d1
    idx = fp_lib.source_correct_candidates(zoo, config.evaluate.table1_points, config.seed + 1)
    base_eps = config.evaluate.table1_eps or config.extract.eps
    sweep = sorted(set(parse_floats(config.evaluate.eps_sweep)) | {base_eps})
    for eps in sweep:
        for method in parse_methods(config.evaluate.table1_methods):
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
    return rows


def run_evaluate(config, workdir: str) -> list[dict]:
    parse_methods(config.evaluate.table1_methods)
    parse_floats(config.evaluate.eps_sweep)
    zoo = pipeline.open_zoo(config, workdir)
    fp = pipeline.run_extract(config, workdir, zoo=zoo)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    rows = files.read_jsonl(metrics_path)
    if not rows:
        rows = verify_zoo(zoo, fp, config)
        files.write_jsonl_atomic(metrics_path, rows)
    t1 = table1(zoo, config, workdir)
    report.write_report(workdir, fp, rows, t1, config)
    print(report.verdict_table(rows))
    return rows
