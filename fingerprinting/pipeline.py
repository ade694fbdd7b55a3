"""The stages of a run, each resumable inside one work directory.

    train    -> WORKDIR/models/<group>/ and WORKDIR/models.jsonl
    extract  -> WORKDIR/fingerprint.npz
    evaluate -> WORKDIR/metrics.jsonl, WORKDIR/report.md, WORKDIR/plots/

Each stage runs the ones before it when their outputs are missing and skips
whatever is already on disk, so a killed run, rerun with the same command,
resumes where it stopped. The resolved config is written to
WORKDIR/config.json; a work directory refuses a config that would change the
data or models it already holds, and a second process while one is writing
into it (`workdir_lock`).
"""

from __future__ import annotations

import json
import os
import types

from fingerprinting import artifact
from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import evasion
from fingerprinting import external
from fingerprinting import files
from fingerprinting import fingerprint as fp_lib
from fingerprinting import label_only
from fingerprinting import progress
from fingerprinting import removal
from fingerprinting import store as store_lib
from fingerprinting import twin_test
from fingerprinting import workdir_lock
from fingerprinting import zoo as zoo_lib
from fingerprinting.attacks import cbim as cbim_lib

# Sections whose change would make the models or the fingerprint in a work
# directory stale; the others (evaluate, verify) may change between runs.
PINNED = ("seed", "data", "models", "train")
# Fields of those sections that change only speed, never results.
UNPINNED = zoo_lib.SPEED_FIELDS
FINGERPRINT_FILE = "fingerprint.npz"
PARTIAL_CBIM = "cbim-partial"  # C-BIM's finished batches while an extraction runs


class WorkdirError(errors.UserError, ValueError):
    pass


class EmptyFingerprintError(errors.UserError, ValueError):
    pass


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        if k not in old:  # a field newer than the run: the run had its default
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def check_pinned(config, workdir: str, sections=PINNED) -> None:
    """Refuses a config that would change what the work directory holds."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    try:
        old = files.read_json(path)
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{path} is unreadable ({e}); use a new --workdir") from None
    new = json.loads(config.to_json())
    diff = [
        d
        for d in _differences({k: old.get(k) for k in sections}, {k: new.get(k) for k in sections})
        if d.split(":")[0] not in UNPINNED
    ]
    if diff:
        raise WorkdirError(
            f"{workdir} holds a run made with another config ({'; '.join(diff[:3])}"
            f"{'; ...' if len(diff) > 3 else ''}); use a new --workdir"
        )


def pin_config(config, workdir: str, sections=PINNED) -> None:
    """Writes config.json on a work directory's first run; refuses a config that
    changes what the work directory holds."""
    check_pinned(config, workdir, sections)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        files.write_json_atomic(path, json.loads(config.to_json()))


def load_splits(config) -> data_lib.Splits:
    cfg = types.SimpleNamespace(**config.data.to_dict())
    cfg.dir = cfg.dir or None
    cfg.seed = config.seed + config.data.seed  # a new run seed is a new split too
    return data_lib.load_splits(cfg)


def validate_source(config) -> None:
    """A source given from outside (a function, an ONNX file, an API) has no
    architecture to retrain, so the removal attacks cannot run on it."""
    api = label_only.is_label_only(config)
    if api:
        label_only.parse(config)  # the spec's flags, before anything is queried
    if not (api or external.is_external(config.models.source)):
        return
    if removal.parse_attacks(config.removal.attacks):
        given = (
            f"models.source_api={config.models.source_api}"
            if api
            else (f"models.source={config.models.source}")
        )
        raise errors.ConfigError(
            "removal attacks retrain or re-initialise the source's architecture, which "
            f"{given} does not give; pass --config.removal.attacks= (none), or use a "
            "built-in architecture"
        )


def validate(config) -> None:
    """Every name and range in a config, checked before any data or training."""
    zoo_lib.validate(config)
    twin_test.check(config)
    removal.validate(config)
    validate_source(config)
    evasion.settings(config)
    ensemble.resolve_loop(config.train.loop)
    e = config.extract
    ensemble.resolve_loop(e.loop)
    if e.loss not in cbim_lib.LOSSES:
        raise errors.ConfigError(
            f"unknown extract.loss {e.loss!r}; expected one of {', '.join(cbim_lib.LOSSES)}"
        )
    if e.dropout_kind not in ("member", "output"):
        raise errors.ConfigError(
            f"unknown extract.dropout_kind {e.dropout_kind!r}; expected member or output"
        )
    checks = [
        ("extract.eps", e.eps, 0 < e.eps <= 1),
        ("extract.alpha", e.alpha, e.alpha > 0),
        ("extract.steps", e.steps, e.steps >= 1),
        ("extract.dropout", e.dropout, 0 <= e.dropout < 1),
        ("extract.shift", e.shift, isinstance(e.shift, int) and 0 <= e.shift <= 16),
        ("extract.noise", e.noise, 0 <= e.noise <= 1),
        ("extract.tau", e.tau, 0 <= e.tau <= 1),
        ("verify.theta", config.verify.theta, 0 < config.verify.theta <= 1),
        ("verify.significance", config.verify.significance, 0 < config.verify.significance < 1),
        ("extract.num_candidates", e.num_candidates, e.num_candidates >= 1),
        ("extract.decoys_per_input", e.decoys_per_input, e.decoys_per_input >= 0),
        ("train.epochs", config.train.epochs, config.train.epochs >= 1),
        ("train.student_epochs", config.train.student_epochs, config.train.student_epochs >= 0),
        ("train.batch_size", config.train.batch_size, config.train.batch_size >= 1),
    ]
    for name, value, ok in checks:
        if not ok:
            raise errors.ConfigError(f"{name} = {value!r} is out of range")


def open_zoo(config, workdir: str, store_beside: str | None = None) -> zoo_lib.Zoo:
    """The zoo of a work directory; nothing is written before the config and the
    data have been checked, and before this process holds the directory's lock.
    Its trained groups are shared through the store beside `store_beside`
    (default: the work directory; see `store`)."""
    validate(config)  # names first: no data loading for a typo
    workdir_lock.acquire(workdir)  # a directory in use: refused before loading data
    check_pinned(config, workdir)
    splits = load_splits(config)
    api = label_only.connect(config, splits)  # a label-only source, checked
    if not api and external.is_external(config.models.source):
        external.check_source(config.models.source, splits.input_shape, splits.num_classes)
    os.makedirs(workdir, exist_ok=True)
    workdir_lock.acquire(workdir)  # a new directory: locked once it exists
    for d in (workdir, os.path.join(workdir, "plots")):
        files.remove_temporaries(d)
    pin_config(config, workdir)
    return zoo_lib.Zoo(
        config,
        workdir,
        splits,
        source=label_only.open_source(api, workdir, splits),
        store=store_lib.open_store(store_beside or workdir),
    )


def run_train(config, workdir: str) -> list[dict]:
    zoo = open_zoo(config, workdir)
    rows = zoo.train_all()
    print(format_models(rows))
    if zoo.needs_fingerprint("calibration_reference"):
        print(
            "calibration references: trained by extract, on D1 without the fingerprint's "
            f"images (models.calibration_data={zoo_lib.WITHOUT_FINGERPRINT})"
        )
    return rows


def format_models(rows: list[dict]) -> str:
    lines = [f"{'model':44s} {'kind':22s} {'test acc':>8s}"]
    lines += [f"{r['name']:44s} {r['kind']:22s} {r['test_accuracy']:8.3f}" for r in rows]
    return "\n".join(lines)


def fingerprint_path(workdir: str) -> str:
    return os.path.join(workdir, FINGERPRINT_FILE)


def _extract_differences(fp: artifact.Fingerprint, config) -> list[str]:
    made = fp.meta.get("config", {}).get("extract", {})
    now = config.extract.to_dict()
    return [d for d in _differences(made, now) if not d.startswith("loop:")]


def keep_old(path: str) -> str:
    """Links `path` to a free name beside it (NAME.old-N.EXT) and returns that name."""
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(f"{stem}.old-{n}{ext}"):
        n += 1
    os.link(path, f"{stem}.old-{n}{ext}")
    return f"{stem}.old-{n}{ext}"


def run_extract(config, workdir: str, *, zoo=None, overwrite: bool = False) -> artifact.Fingerprint:
    """The fingerprint of a work directory, extracted unless it is already there.

    An existing fingerprint is never replaced unless `overwrite`; then the old
    file stays beside the new one as fingerprint.old-N.npz.
    """
    workdir_lock.acquire(workdir)
    path = fingerprint_path(workdir)
    if os.path.exists(path) and not overwrite:
        fp = artifact.load(path)
        diff = _extract_differences(fp, config)
        if diff:
            raise WorkdirError(
                f"{path} was made with other extract settings ({'; '.join(diff[:3])}); "
                "pass --overwrite to extract a new one (the old file is kept)"
            )
        progress.log(f"extract: {path} exists ({len(fp)} examples); nothing to do")
        if zoo is not None:
            zoo.set_fingerprint(fp.original)
        return fp
    zoo = zoo or open_zoo(config, workdir)
    zoo.train_all()
    partial = os.path.join(workdir, PARTIAL_CBIM)
    fp = fp_lib.extract(zoo, config, resume_dir=partial)
    if len(fp) == 0:
        fp_lib.BatchStore.remove_dir(partial)  # a rerun needs other settings anyway
        raise EmptyFingerprintError(
            f"no example reached conferrability >= {config.extract.tau} "
            f"(of {fp.meta['candidates']} candidates, {fp.meta['adversarial']} adversarial); "
            "try a larger extract.eps, more extract.steps or a lower extract.tau"
        )
    old = keep_old(path) if os.path.exists(path) else None
    try:
        artifact.save(path, fp)
    except BaseException:
        if old:  # the old file is still in place: no second copy of it
            os.unlink(old)
        raise
    fp_lib.BatchStore.remove_dir(partial)
    if old:
        progress.log(f"extract: the previous fingerprint is kept as {old}")
    progress.log(f"extract: wrote {path}")
    if zoo.needs_fingerprint("calibration_reference"):
        zoo.train_all()  # models.jsonl gains the models trained during the extraction
    return fp
