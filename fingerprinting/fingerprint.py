"""Extract (Algorithm 2) and Verify (Algorithm 1), and conferrability (Eq. 9-10).

Extraction runs C-BIM on Compose(source, training surrogates, training
references) from inputs of D1 that the source classifies correctly, rounds
the results to 8-bit pixels (what a prediction API receives), and keeps those
on which the source's label differs from the truth and whose conferrability
on the training models is at least tau. Calibration references, never seen by
the attack, measure how often independent models agree with the keys by
chance; their statistics go into the fingerprint for the p-values of Verify.
Benign test inputs stored beside the fingerprint (decoys) let Verify hide the
fingerprint among ordinary queries, so a suspect cannot tell which matter.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

from fingerprinting import artifact
from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import faults
from fingerprinting import files
from fingerprinting import fit
from fingerprinting import progress
from fingerprinting import sharding
from fingerprinting import stats
from fingerprinting import twin_test
from fingerprinting import zoo as zoo_lib
from fingerprinting.suspects import base as suspects_base
from fingerprinting.attacks import cbim as cbim_lib


def transferability(labels_MxN, target_N) -> np.ndarray:
    """Eq. 9: share of models whose label equals the target, per example."""
    labels_MxN = np.asarray(labels_MxN)
    if labels_MxN.shape[0] == 0:
        return np.zeros(labels_MxN.shape[1])
    return (labels_MxN == np.asarray(target_N)[None]).mean(0)


def conferrability(surr_labels_SxN, ref_labels_RxN, target_N) -> np.ndarray:
    """Eq. 10: Transfer(S, x) * (1 - Transfer(R, x)), per example."""
    return transferability(surr_labels_SxN, target_N) * (
        1.0 - transferability(ref_labels_RxN, target_N)
    )


to_uint8 = artifact.to_uint8


def labels_of(trained_groups, x, strategy=None) -> np.ndarray:
    """Argmax labels of every member of the given trained groups, [M, N]."""
    if not trained_groups:
        return np.zeros((0, len(x)), np.int32)
    return np.concatenate([_group_labels(tg, x, strategy) for tg in trained_groups], 0)


def _group_labels(tg, x, strategy) -> np.ndarray:
    if isinstance(tg, zoo_lib.LabelOnlyGroup):
        return np.asarray(tg.labels_fn(x))[None]
    return fit.predict_logits(tg.group.model, tg.variables, x, strategy=strategy).argmax(-1)


def make_probs_fn(surr_groups, ref_groups, strategy=None):
    """probs_fn(surr_vars, ref_vars, x) -> (surr [M_s,B,K], ref [M_r,B,K])."""

    def probs_fn(surr_vars, ref_vars, x):
        surr = ensemble.group_probs(surr_groups, surr_vars, x, strategy=strategy)
        ref = ensemble.group_probs(ref_groups, ref_vars, x, strategy=strategy)
        return jnp.concatenate(surr, 0), jnp.concatenate(ref, 0)

    return probs_fn


def make_cbim_fn(surr_groups, ref_groups, ecfg, strategy=None, loop=None):
    """`run(surr_vars, ref_vars, x0, y, rng) -> x'`: C-BIM over a batch.

    The variables are arguments, not constants baked into the program. With
    loop "fori" the whole attack is one jitted program; with "python" one
    jitted step is driven from Python (see `ensemble.resolve_loop`); both give
    the same result.
    """
    probs_fn = make_probs_fn(surr_groups, ref_groups, strategy)
    loop = ensemble.resolve_loop(loop)
    kw = dict(
        eps=ecfg.eps,
        alpha=ecfg.alpha,
        dropout=ecfg.dropout,
        dropout_kind=ecfg.dropout_kind,
        keep_source=ecfg.get("keep_source", False),
        loss=ecfg.loss,
        beta=ecfg.beta,
        gamma=ecfg.gamma,
        shift=ecfg.get("shift", 0),
        noise=ecfg.get("noise", 0.0),
    )

    if loop == "fori":

        @jax.jit
        def run(surr_vars, ref_vars, x0, y, rng):
            return cbim_lib.cbim(
                functools.partial(probs_fn, surr_vars, ref_vars),
                x0,
                y,
                steps=ecfg.steps,
                rng=rng,
                **kw,
            )

        return run

    @jax.jit
    def step(surr_vars, ref_vars, x, x0, y, i, rng):
        return cbim_lib.cbim_step(
            functools.partial(probs_fn, surr_vars, ref_vars), x, x0, y, i, rng=rng, **kw
        )

    def run(surr_vars, ref_vars, x0, y, rng):
        x = x0
        for i in range(ecfg.steps):
            x = step(surr_vars, ref_vars, x, x0, y, i, rng)
        return x

    return run


def pick_candidates(source_labels_N, y_N, count: int, seed: int) -> np.ndarray:
    """Indices of up to `count` inputs the source classifies correctly (Alg. 2, line 5)."""
    correct = np.flatnonzero(np.asarray(source_labels_N) == np.asarray(y_N))
    return np.random.default_rng(seed).permutation(correct)[:count]


class BatchStore:
    """C-BIM's results batch by batch in a directory, so that a killed extraction
    resumes at the batch it was in. `signature` names the work (settings, seed,
    inputs, models): files left by other work are deleted, never used."""

    def __init__(self, directory: str, signature: str):
        self.directory = directory
        manifest = os.path.join(directory, "signature.txt")
        try:
            with open(manifest) as f:
                stale = f.read() != signature
        except OSError:
            stale = os.path.isdir(directory)
        if stale and sharding.writes_files():
            shutil.rmtree(directory)
        if not os.path.exists(manifest):
            files.write_text_atomic(manifest, signature)

    def _path(self, start: int) -> str:
        return os.path.join(self.directory, f"batch-{start:09d}.npy")

    def get(self, start: int) -> np.ndarray | None:
        try:
            return np.load(self._path(start), allow_pickle=False)
        except (OSError, ValueError):  # absent, or cut short before the rename
            return None

    def put(self, start: int, x: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, x, allow_pickle=False)
        files.write_bytes_atomic(self._path(start), buf.getvalue())

    @staticmethod
    def remove_dir(directory: str) -> None:
        """Drops the batches once the fingerprint they made is saved."""
        if sharding.writes_files():
            shutil.rmtree(directory, ignore_errors=True)


def cbim_signature(ecfg, seed: int, x0, y, variables) -> str:
    """What a batch of C-BIM depends on, hashed: settings, seed, inputs, models."""
    h = hashlib.sha256(json.dumps([ecfg.to_dict(), seed], sort_keys=True).encode())
    for a in (x0, y):
        h.update(np.ascontiguousarray(a).tobytes())
    for v in variables:
        h.update(ensemble.parameter_hash(v).encode())
    return h.hexdigest()


def run_cbim(
    zoo, x0, y, ecfg, seed: int, surrogates=None, references=None, resume_dir=None
) -> np.ndarray:
    """C-BIM over Compose(surrogates, references), batched. By default the
    defender's: the source and its training surrogates against the training
    references; an adversary passes its own trained groups. With `resume_dir`
    every finished batch is kept there and a rerun continues after the last."""
    surr = surrogates or zoo.white_box_sources() + zoo.groups(zoo_lib.TRAINING_SURROGATES)
    refs = zoo.groups(zoo_lib.TRAINING_REFERENCES) if references is None else references
    run = make_cbim_fn(
        [t.group for t in surr], [t.group for t in refs], ecfg, zoo.strategy, ecfg.get("loop")
    )
    surr_vars, ref_vars = [t.variables for t in surr], [t.variables for t in refs]
    store = None
    if resume_dir is not None:
        signature = cbim_signature(ecfg, seed, x0, y, surr_vars + ref_vars)
        store = BatchStore(resume_dir, signature)
    out, bs, reused = [], ecfg.batch_size, 0
    with progress.Bar("C-BIM", total=len(x0), unit="inputs") as bar:
        for i in range(0, len(x0), bs):
            done = store.get(i) if store else None
            if done is not None and len(done) == len(x0[i : i + bs]):
                out.append(done)
                reused += len(done)
                bar.update(len(done))
                continue
            xb, yb = x0[i : i + bs], y[i : i + bs]
            pad = bs - len(xb)
            if pad:  # one compiled shape
                xb, yb = (
                    np.concatenate([xb, xb[:1].repeat(pad, 0)]),
                    np.concatenate([yb, yb[:1].repeat(pad)]),
                )
            key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
            out.append(
                np.asarray(run(surr_vars, ref_vars, jnp.asarray(xb), jnp.asarray(yb), key))[
                    : bs - pad
                ]
            )
            if store:
                store.put(i, out[-1])
            bar.update(len(xb) - pad)
            faults.point("cbim_batch")
    if reused:
        progress.log(f"C-BIM: resumed; {reused} of {len(x0)} inputs came from {resume_dir}")
    return np.concatenate(out)


def score_examples(
    zoo,
    x_uint8,
    truth,
    surrogates=zoo_lib.TRAINING_SURROGATES,
    references=zoo_lib.TRAINING_REFERENCES,
) -> dict:
    """The source's labels (keys) on x, the labels of the surrogates and
    references of the given kinds (a kind or a tuple of kinds), conferrability
    on them (Eq. 10), and which x are adversarial."""
    x = x_uint8.astype(np.float32) / 255.0
    keys = labels_of([zoo.source()], x, zoo.strategy)[0]
    surr = labels_of(zoo.groups(surrogates), x, zoo.strategy)
    refs = labels_of(zoo.groups(references), x, zoo.strategy)
    return {
        "keys": keys,
        "surrogate_labels": surr,
        "reference_labels": refs,
        "conferrability": conferrability(surr, refs, keys),
        "adversarial": keys != np.asarray(truth),
    }


def rank(ok, conferrability, held_out=None) -> np.ndarray:
    """Indices of the inputs that passed (`ok`), best first: by conferrability on
    the held-out selection models when given, ties broken by conferrability on
    the training models; without them, on the training models alone (stable)."""
    passed = np.flatnonzero(ok)
    keys = (-np.asarray(conferrability)[passed],)
    if held_out is not None:
        keys += (-np.asarray(held_out)[passed],)  # np.lexsort: the last key sorts first
    return passed[np.lexsort(keys)]


def source_correct_candidates(zoo, count: int, seed: int):
    """The candidates' split (D1, or its fingerprint pool) and the indices into
    it of up to `count` inputs the source classifies correctly (Alg. 2, line 5);
    reuses the source's logits the zoo already computed."""
    party = zoo.candidate_party()
    split = zoo.split(party)
    return split, pick_candidates(zoo.source_logits(party).argmax(-1), split.y, count, seed)


def pick_decoys(test, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` benign test inputs (uint8) and their true labels, drawn at random."""
    idx = np.random.default_rng(seed).permutation(len(test))[: max(0, count)]
    return to_uint8(test.x[idx]), np.asarray(test.y[idx], np.int32)


def extract(zoo, config, resume_dir: str | None = None) -> artifact.Fingerprint:
    """Algorithm 2 on a trained zoo; returns the fingerprint (not yet saved).
    `resume_dir` keeps C-BIM's finished batches (see `run_cbim`)."""
    ecfg, start = config.extract, time.time()
    d1, idx = source_correct_candidates(zoo, ecfg.num_candidates, config.seed)
    progress.log(f"extract: {len(idx)} candidates the source classifies correctly")
    x_cbim = run_cbim(zoo, d1.x[idx], d1.y[idx], ecfg, config.seed, resume_dir=resume_dir)
    x_adv = to_uint8(x_cbim)
    scored = score_examples(zoo, x_adv, d1.y[idx])
    ok = scored["adversarial"] & (scored["conferrability"] >= ecfg.tau - 1e-9)
    selection = zoo.groups(zoo_lib.SELECTION_SURROGATES + ("selection_reference",))
    held_out = None
    if selection:  # the keys are the source's labels scored above: not asked again
        x = x_adv.astype(np.float32) / 255.0
        held_out = conferrability(
            labels_of(zoo.groups(zoo_lib.SELECTION_SURROGATES), x, zoo.strategy),
            labels_of(zoo.get("selection_reference"), x, zoo.strategy),
            scored["keys"],
        )
    keep = rank(ok, scored["conferrability"], held_out)[: ecfg.fingerprint_size]
    decoy_x, decoy_truth = pick_decoys(
        zoo.splits.test, round(ecfg.get("decoys_per_input", 3) * len(keep)), config.seed
    )
    fp = artifact.Fingerprint(
        x=x_adv[keep],
        original=to_uint8(d1.x[idx][keep]),
        keys=scored["keys"][keep].astype(np.int32),
        truth=d1.y[idx][keep].astype(np.int32),
        conferrability=scored["conferrability"][keep].astype(np.float32),
        meta={},
        decoy_x=decoy_x,
        decoy_truth=decoy_truth,
    )
    outsiders = zoo.needs_fingerprint("calibration_reference")
    if outsiders and len(fp):
        zoo.set_fingerprint(fp.original)  # the calibration references never see these
    calib = [] if outsiders and not len(fp) else zoo.get("calibration_reference")
    agree = (labels_of(calib, fp.inputs, zoo.strategy) == fp.keys[None]).sum(1) if len(fp) else []
    fp.meta = {
        "dataset": zoo.splits.name,
        "class_names": list(zoo.splits.class_names),
        "num_classes": zoo.splits.num_classes,
        "input_shape": list(zoo.splits.input_shape),
        "source_hash": (
            None if zoo.label_only_source else ensemble.parameter_hash(zoo.source().variables)
        ),
        "source_architecture": zoo.source().group.arch,
        "source_access": "label_only" if zoo.label_only_source else "white_box",
        "theta": config.verify.theta,
        "config": config.to_dict(),
        "calibration": dict(
            stats.calibrate(agree, len(fp)),
            models=[r["name"] for tg in calib for r in tg.records()],
            data=zoo.party_name("calibration_reference"),
        ),
        "candidates": int(len(idx)),
        "adversarial": int(scored["adversarial"].sum()),
        "passed_tau": int(ok.sum()),
        "extract_seconds": round(time.time() - start, 1),
        "mean_conferrability_all": float(scored["conferrability"].mean()) if len(idx) else 0.0,
        "selection_models": sum(tg.group.size for tg in selection),
    }
    if twin_test.enabled(config) and len(fp):
        log = twin_test.build(zoo, config, lambda groups, x: labels_of(groups, x, zoo.strategy))
        fp.log_x, fp.log_keys, fp.log_twin_labels = log["x"], log["keys"], log["twin_labels"]
        fp.meta["twin_calibration"] = log["calibration"]
    if held_out is not None and len(fp):  # what ranking on the held-out models gained
        fp.meta["mean_selection_conferrability"] = float(held_out[keep].mean())
        fp.meta["mean_selection_conferrability_passed"] = float(held_out[ok].mean())
    progress.log(
        f"extract: {int(scored['adversarial'].sum())} adversarial, {int(ok.sum())} with "
        f"conferrability >= {ecfg.tau}; kept {len(fp)} in {fp.meta['extract_seconds']} s"
    )
    if "mean_selection_conferrability" in fp.meta:
        progress.log(
            f"extract: ranked on {fp.meta['selection_models']} held-out models: mean "
            f"conferrability {fp.meta['mean_selection_conferrability']:.2f} on those kept, "
            f"{fp.meta['mean_selection_conferrability_passed']:.2f} on all that passed"
        )
    return fp


def calibration_without(calibration: dict, model: str) -> dict:
    """The null fitted without one of its own models: judging a calibration
    reference by a null it helped fit would favour calling it independent."""
    names = calibration.get("models", [])
    if model not in names:
        return calibration
    i = names.index(model)
    counts = calibration["agree_counts"][:i] + calibration["agree_counts"][i + 1 :]
    rest = dict(calibration, models=names[:i] + names[i + 1 :])
    for field in ("pooled_rate", "beta_a", "beta_b"):
        rest.pop(field, None)
    return dict(rest, **stats.calibrate(counts, calibration["n"]))


def verify_labels(
    fp: artifact.Fingerprint,
    suspect_labels,
    *,
    theta: float | None = None,
    significance: float = 0.01,
    leave_out: str | None = None,
    log_labels=None,
) -> dict:
    """Algorithm 1 from a suspect's labels on the fingerprint (`verified`, at
    theta), and the calibrated decision beside it (`verified_calibrated`:
    independence rejected at `significance`). With the suspect's labels on the
    query log (`log_labels`), also the twin test (`verified_twin`, see
    `twin_test`). A model of either null is judged by the others (`leave_out`:
    its name)."""
    suspect_labels = np.asarray(suspect_labels)
    if suspect_labels.shape != fp.keys.shape:
        raise errors.SuspectError(
            f"expected {len(fp)} labels from the suspect, got shape {suspect_labels.shape}"
        )
    theta = fp.meta.get("theta", 0.7) if theta is None else theta
    n = len(fp)
    k = int((suspect_labels == fp.keys).sum())
    acc = k / n if n else 0.0
    calibration = fp.meta.get("calibration", {})
    if leave_out is not None:
        calibration = calibration_without(calibration, leave_out)
    p = stats.p_values(k, n, calibration)
    result = {
        "fingerprint_accuracy": acc,
        "theta": theta,
        "verified": bool(n and acc >= theta),
        "verified_calibrated": p["p_value"] is not None and p["p_value"] < significance,
        "agreements": k,
        "n_queries": n,
        **p,
    }
    if log_labels is not None and fp.has_twin_test:
        log_labels = np.asarray(log_labels)
        if log_labels.shape != fp.log_keys.shape:
            raise errors.SuspectError(
                f"expected {len(fp.log_keys)} labels on the query log, got shape {log_labels.shape}"
            )
        d = twin_test.excess(log_labels, fp.log_keys, fp.log_twin_labels)
        t = twin_test.p_value(d, fp.meta["twin_calibration"], leave_out)
        result.update(
            t,
            verified_twin=t["twin_p_value"] is not None and t["twin_p_value"] < significance,
            log_queries=len(log_labels),
        )
    return result


def check_compatible(fp: artifact.Fingerprint, suspect) -> None:
    """Refuses a suspect made for another input shape or class count."""
    suspects_base.check_fits(suspect, fp.num_classes, fp.input_shape, "the fingerprint")


def check_levels(theta: float | None, significance: float) -> None:
    """A threshold outside (0, 1] or a level outside (0, 1) turns every verdict
    upside down (the source itself "not verified", anything "verified")."""
    if theta is not None and not 0 < theta <= 1:
        raise errors.ConfigError(f"--theta={theta:g}: a threshold on accuracy lies in (0, 1]")
    if not 0 < significance < 1:
        raise errors.ConfigError(f"--significance={significance:g}: a test's level lies in (0, 1)")


def verdict_summary(result: dict) -> str:
    """One line for a person: a `verify_suspect` result in words."""
    p = "n/a" if result["p_value"] is None else f"{result['p_value']:.2g}"
    decoys = (
        f"; accuracy on {result['decoys']} decoys {result['decoy_accuracy']:.3f}"
        if result["decoys"]
        else ""
    )
    twin = ""
    if "twin_d" in result:
        tp = "n/a" if result["twin_p_value"] is None else f"{result['twin_p_value']:.2g}"
        twin = (
            f"; twin test on {result['log_queries']} logged queries: d {result['twin_d']:+.3f}, "
            f"p {tp}: {'DERIVED' if result['verified_twin'] else 'not verified'}"
        )
    return (
        f"{result['suspect']}: fingerprint accuracy {result['fingerprint_accuracy']:.3f} "
        f"(theta {result['theta']}): {'SURROGATE' if result['verified'] else 'not verified'}; "
        f"p-value of independence {p}{twin}{decoys}; {result['n_queries']} queries in "
        f"{result['requests']} requests, {result['seconds']:.1f} s"
    )


def verify_suspect(
    fp: artifact.Fingerprint,
    suspect,
    *,
    theta: float | None = None,
    decoys: int | None = None,
    rng: np.random.Generator | None = None,
    significance: float = 0.01,
) -> dict:
    """Queries a label-only suspect and decides (Algorithm 1), by theta and by
    the calibrated test at `significance` (`verified_calibrated`).

    The fingerprint inputs go out shuffled among `decoys` benign inputs (all
    the file holds by default), in a fresh random order each time, so that the
    queries that matter look like any others; the suspect's accuracy on the
    decoys is reported beside its fingerprint accuracy. Any failed query
    raises: there is no verdict from partial answers.
    """
    if len(fp) == 0:
        raise artifact.FingerprintError("the fingerprint is empty")
    check_compatible(fp, suspect)
    if suspect.num_classes is None:
        suspect.num_classes = fp.num_classes  # range-check its labels
    stored = len(fp.decoy_truth)
    d = stored if decoys is None else decoys
    if not 0 <= d <= stored:
        raise errors.ConfigError(f"asked for {d} decoys; the fingerprint file holds {stored}")
    n, m = len(fp), len(fp.log_keys)
    order = (rng or np.random.default_rng()).permutation(n + d + m)
    queries = np.concatenate([fp.x, fp.decoy_x[:d], fp.log_x])[order]
    start = time.time()
    labels = np.empty(n + d + m, np.int64)
    labels[order] = suspect.predict(queries)
    result = verify_labels(
        fp,
        labels[:n],
        theta=theta,
        significance=significance,
        log_labels=labels[n + d :] if m else None,
    )
    result.update(
        suspect=suspect.name,
        protocol=suspect.protocol,
        n_queries=n + d + m,
        fingerprint_size=n,
        decoys=d,
        decoy_accuracy=float((labels[n : n + d] == fp.decoy_truth[:d]).mean()) if d else None,
        seconds=round(time.time() - start, 3),
        **suspect.counters,
    )
    if not stored:
        result["note"] = "the fingerprint file holds no decoys; only fingerprint inputs were sent"
    return result
