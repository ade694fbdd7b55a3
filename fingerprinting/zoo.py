"""The models of a run: the source, its surrogates and the references.

A config names, for every kind of model, architectures and counts as a short
spec (`"cnn_small:2,mlp:1"`). Each (kind, architecture) pair is one stacked
group, trained on its party's data with its label source, checkpointed in
`WORKDIR/models/<kind>-<arch>/`, and skipped when its final variables are
already there. `models.jsonl` gets one line per trained model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from fingerprinting import artifact
from fingerprinting import data as data_lib
from fingerprinting import ensemble
from fingerprinting import errors
from fingerprinting import external
from fingerprinting import faults
from fingerprinting import files
from fingerprinting import fit
from fingerprinting import labels as labels_lib
from fingerprinting import models
from fingerprinting import progress
from fingerprinting import store as store_lib

# kind -> (party whose data it trains on, the label source it learns from);
# a party of None is read from the config (see `Zoo.party_name`).
KINDS = {
    "source": (None, "ground_truth"),
    # The source's twins: its architecture, data and recipe, other random keys.
    # An independent suspect cannot tell the source from them (`twin_test`).
    "source_twin": (None, "ground_truth"),
    "training_surrogate": (None, "surrogate"),
    # The defender's own label-only thieves, so that C-BIM also looks for
    # inputs on which students of top-1 labels agree with the source.
    "training_label_only_surrogate": (None, "source_hard"),
    "training_reference": ("d1", "ground_truth"),
    # References that have never seen the images C-BIM starts from (D1 without
    # its fingerprint pool, `data.fingerprint_pool`), as no outsider has: C-BIM
    # pushes away from them too, not only from references that memorised them.
    "training_outsider_reference": ("d1_rest", "ground_truth"),
    # A second set of the defender's models, trained like the three kinds above
    # but never shown to C-BIM: the inputs that reach tau on the training models
    # are ranked by their conferrability on these, which estimates how an input
    # confers to models the attack did not optimise against (`fingerprint.extract`).
    "selection_surrogate": (None, "surrogate"),
    "selection_label_only_surrogate": (None, "source_hard"),
    "selection_reference": ("d1", "ground_truth"),
    "testing_surrogate": ("d2", "surrogate"),
    # A thief behind a label-only API sees the source's top-1 label, nothing more.
    "label_only_surrogate": ("d2", "source_hard"),
    "testing_reference": ("d2", "ground_truth"),
    "calibration_reference": (None, "ground_truth"),
}
# The defender's models that C-BIM runs on (with the source on the surrogate side).
TRAINING_SURROGATES = ("training_surrogate", "training_label_only_surrogate")
# The defender's models on C-BIM's reference side.
TRAINING_REFERENCES = ("training_reference", "training_outsider_reference")
# The held-out models that rank the fingerprint's inputs (empty by default).
SELECTION_SURROGATES = ("selection_surrogate", "selection_label_only_surrogate")
# Models derived from the source and models made without it, among those
# reported (never those the fingerprint was extracted on).
DERIVED_KINDS = ("testing_surrogate", "label_only_surrogate")
INDEPENDENT_KINDS = ("testing_reference", "calibration_reference")
# The parts of D1 when the source keeps a validation split (data.source_holdout),
# and when C-BIM starts from a pool of it (data.fingerprint_pool): the rest and the pool.
D1_PARTS = ("d1_train", "d1_holdout", "d1_rest", "d1_pool")
# D1 without the images the fingerprint starts from (`models.calibration_data`):
# calibration references that, like an outsider, have never seen them.
WITHOUT_FINGERPRINT = "d1_without_fingerprint"
CALIBRATION_DATA = ("d1", "d1_holdout", "d2", WITHOUT_FINGERPRINT)
# Config fields that change only speed, never the weights (a work directory
# accepts their change; no model's recipe includes them).
SPEED_FIELDS = ("models.strategy", "train.loop", "train.checkpoint_seconds")
SPEED_ONLY = tuple(f.split(".", 1)[1] for f in SPEED_FIELDS if f.startswith("train."))
# Training settings of other kinds than the one a group is (`epochs_of` has its own).
EPOCH_FIELDS = ("epochs", "student_epochs", "source_epochs")


class SpecError(errors.ConfigError):
    pass


class NoFingerprintError(RuntimeError):
    """A group that trains without the fingerprint's images, asked for before
    the zoo knows them (`Zoo.set_fingerprint`): a bug, never the user's input."""


class CheckpointError(errors.UserError, ValueError):
    pass


def parse_spec(spec: str) -> list[tuple[str, int]]:
    """'cnn_small:2,mlp' -> [('cnn_small', 2), ('mlp', 1)]; validates names."""
    out = []
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        arch, _, count = item.partition(":")
        arch = arch.strip()
        if arch not in models.ARCHITECTURES:
            raise SpecError(
                f"unknown architecture {arch!r} in {spec!r}; "
                f"expected one of {', '.join(models.ARCHITECTURES)}"
            )
        try:
            n = int(count) if count else 1
        except ValueError:
            raise SpecError(
                f"bad member count {count!r} in {spec!r}; expected ARCH:COUNT"
            ) from None
        if n < 1:
            raise SpecError(f"member count must be at least 1 in {spec!r}")
        out.append((arch, n))
    return out


@dataclasses.dataclass
class TrainedGroup:
    kind: str
    group: ensemble.Group
    variables: dict
    test_accuracy: np.ndarray

    def records(self) -> list[dict]:
        return [
            dict(
                name=f"{self.group.name}/{m}",
                kind=self.kind,
                architecture=self.group.arch,
                member=m,
                test_accuracy=float(a),
            )
            for m, a in enumerate(self.test_accuracy)
        ]


@dataclasses.dataclass
class LabelOnlyGroup(TrainedGroup):
    """A source the defender can only query (`models.source_api`): labels of
    float NHWC images in [0, 1], no weights and no gradients."""

    labels_fn: Callable[[np.ndarray], np.ndarray] | None = None


def epochs_of(config, kind: str) -> int:
    """How long a kind trains: the source `source_epochs`; the students of the
    source (surrogates, label-only ones included) `student_epochs`, which 0
    leaves at `epochs`; the references `epochs`."""
    t = config.train
    if kind in ("source", "source_twin"):
        return t.source_epochs
    if KINDS[kind][1] != "ground_truth":
        return fit.student_epochs(t)
    return t.epochs


def group_seed(config, name: str):
    return jax.random.fold_in(jax.random.PRNGKey(config.seed), zlib.crc32(name.encode()))


def kind_spec(config, kind: str) -> str:
    if kind == "source_twin":
        n = config.models.get("source_twins", 0)
        return f"{config.models.source}:{n}" if n else ""
    return config.models.source if kind == "source" else getattr(config.models, kind + "s")


def groups_of_kind(config, kind: str, num_classes: int) -> list[ensemble.Group]:
    if kind == "source" and external.is_external(config.models.source):
        spec = config.models.source
        return [ensemble.Group("source-external", spec, external.model(spec), 1)]
    specs = [(config.models.source, 1)] if kind == "source" else parse_spec(kind_spec(config, kind))
    return [
        ensemble.Group(f"{kind}-{arch}", arch, models.get_model(arch, num_classes), n)
        for arch, n in specs
    ]


def validate(config) -> None:
    """Fails on bad names before any training starts."""
    source = config.models.source
    if source not in models.ARCHITECTURES and not external.is_external(source):
        raise SpecError(
            f"unknown source architecture {source!r}; expected one of "
            f"{', '.join(models.ARCHITECTURES)}, or package.module:function for your own model"
        )

    twins = config.models.get("source_twins", 0)
    if not isinstance(twins, int) or twins < 0:
        raise SpecError(f"models.source_twins = {twins!r}: expected a count, 0 or more")
    if twins and (external.is_external(source) or config.models.get("source_api")):
        raise SpecError(
            "models.source_twins needs a source trained here: the twins repeat its recipe "
            "(set models.source_twins=0 for your own or a queried source)"
        )
    for kind in KINDS:
        if kind != "source":
            parse_spec(kind_spec(config, kind))
    if config.models.surrogate_labels not in labels_lib.LABEL_SOURCES:
        raise SpecError(
            f"unknown label source {config.models.surrogate_labels!r}; "
            f"expected one of {', '.join(labels_lib.LABEL_SOURCES)}"
        )
    if config.models.calibration_data not in CALIBRATION_DATA:
        raise SpecError(
            "models.calibration_data must be one of " + ", ".join(map(repr, CALIBRATION_DATA))
        )
    if config.models.surrogate_data not in ("d1", "d1_holdout"):
        raise SpecError("models.surrogate_data must be 'd1' or 'd1_holdout'")
    holdout = config.data.source_holdout
    if not 0 <= holdout < 1:
        raise SpecError(f"data.source_holdout = {holdout!r} is out of range; expected [0, 1)")
    pool = config.data.get("fingerprint_pool", 0.0)
    if not 0 <= pool < 1:
        raise SpecError(f"data.fingerprint_pool = {pool!r} is out of range; expected [0, 1)")
    if pool > 0 and holdout > 0:
        raise SpecError("data.fingerprint_pool and data.source_holdout cannot be combined")
    if config.models.get("training_outsider_references") and pool <= 0:
        raise SpecError(
            "models.training_outsider_references needs data.fingerprint_pool > 0 "
            "(the share of D1 they never see and C-BIM starts from)"
        )
    for field in ("surrogate_data", "calibration_data"):
        if config.models[field] == "d1_holdout" and holdout <= 0:
            raise SpecError(
                f"models.{field} 'd1_holdout' needs data.source_holdout > 0 "
                "(the share of D1 the source does not train on)"
            )
    m = config.models
    if m.selection_references and not (m.selection_surrogates or m.selection_label_only_surrogates):
        raise SpecError(
            "models.selection_references needs selection surrogates to rank against "
            "(models.selection_surrogates or models.selection_label_only_surrogates)"
        )
    ensemble.resolve_strategy(config.models.strategy)


def save_variables(path: str, variables) -> None:
    """Final variables of a group, written atomically by Orbax."""
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.abspath(path), variables, force=True)


class _MainThreadOnly(io.TextIOBase):
    """stderr that drops what other threads write."""

    def __init__(self, inner):
        self.inner = inner

    def write(self, text):
        if threading.current_thread() is threading.main_thread():
            return self.inner.write(text)
        return len(text)

    def flush(self):
        self.inner.flush()

    def fileno(self):
        return self.inner.fileno()


def load_variables(path: str, group: ensemble.Group, input_shape) -> dict:
    abstract = jax.eval_shape(
        lambda: ensemble.init_members(group.model, jax.random.PRNGKey(0), group.size, input_shape)
    )
    # When a restore fails, TensorStore still completes the reads in flight and
    # hands them to Orbax's event loop, closed by then: each prints a "RuntimeError:
    # Event loop is closed" traceback from its own thread, racing with the one error
    # line the user gets. Other threads' stderr is dropped during a restore, and
    # after a failed one for good.
    quiet = sys.stderr
    if not isinstance(quiet, _MainThreadOnly):
        quiet = sys.stderr = _MainThreadOnly(quiet)
    with ocp.StandardCheckpointer() as ckpt:
        variables = ckpt.restore(os.path.abspath(path), abstract)
    sys.stderr = quiet.inner
    return variables


class Zoo:
    """Trains (or loads) the groups of a run inside one work directory."""

    def __init__(
        self,
        config,
        workdir: str,
        splits: data_lib.Splits,
        source: LabelOnlyGroup | None = None,
        store: store_lib.Store | None = None,
    ):
        validate(config)
        self.config, self.workdir, self.splits = config, workdir, splits
        self.store = store  # trained groups shared with other work directories
        self.label_only_source = source  # models.source_api: queried, never trained
        self.strategy = ensemble.resolve_strategy(config.models.strategy)
        self._source_logits: dict[str, np.ndarray] = {}
        self._data_digests: dict[str, str] = {}
        self._cache: dict[str, list[TrainedGroup]] = {}
        self.trained_now = 0  # groups trained (not loaded) by this process
        self._without_fingerprint: data_lib.Split | None = None  # D1 less its images
        self.fingerprint_tag = ""  # names the groups trained without those images

    def needs_fingerprint(self, kind: str) -> bool:
        """Whether a kind trains without the fingerprint's images, and so only
        once the fingerprint is extracted."""
        return kind == "calibration_reference" and (
            self.config.models.calibration_data == WITHOUT_FINGERPRINT
        )

    def set_fingerprint(self, original_NxHxWxC: np.ndarray) -> None:
        """The images a fingerprint starts from (uint8), which the groups that
        `needs_fingerprint` must not train on. Their groups are trained per
        fingerprint, in directories named by these images' digest."""
        rows = np.ascontiguousarray(original_NxHxWxC, np.uint8).reshape(len(original_NxHxWxC), -1)
        tag = hashlib.sha256(rows.tobytes()).hexdigest()[:12]
        if tag == self.fingerprint_tag:
            return
        self._cache = {k: v for k, v in self._cache.items() if not self.needs_fingerprint(k)}
        d1 = self.splits.d1
        seen = {r.tobytes() for r in rows}
        rows_d1 = artifact.to_uint8(d1.x).reshape(len(d1), -1)
        keep = np.array([r.tobytes() not in seen for r in rows_d1], bool)
        self._without_fingerprint = data_lib.Split(d1.x[keep], d1.y[keep])
        self.fingerprint_tag = tag
        self._data_digests.pop(WITHOUT_FINGERPRINT, None)
        self._source_logits.pop(WITHOUT_FINGERPRINT, None)

    def group_dir(self, group: ensemble.Group, kind: str = "") -> str:
        name = group.name
        if kind and self.needs_fingerprint(kind):
            name += f"-fp{self.fingerprint_tag}"
        return os.path.join(self.workdir, "models", name)

    @property
    def pool(self) -> float:
        """data.fingerprint_pool: the share of D1 that C-BIM starts from (0: all of D1)."""
        return self.config.data.get("fingerprint_pool", 0.0)

    def candidate_party(self) -> str:
        """Where C-BIM's starting points (and Table 1's) come from."""
        return "d1_pool" if self.pool > 0 else "d1"

    def party_name(self, kind: str) -> str:
        """The data a kind trains on: d1, d2, or a part of D1 (`D1_PARTS`)."""
        party = KINDS[kind][0]
        if party is not None:
            return party
        if kind in ("source", "source_twin"):
            return "d1_train" if self.config.data.source_holdout > 0 else "d1"
        if kind in TRAINING_SURROGATES + SELECTION_SURROGATES:
            return self.config.models.surrogate_data
        return self.config.models.calibration_data

    def split(self, party: str) -> data_lib.Split:
        """d1, d2, or D1 cut in two: what the source trains on and its held-out
        rest (data.source_holdout), or the rest and the pool C-BIM starts from
        (data.fingerprint_pool)."""
        if party == WITHOUT_FINGERPRINT:
            if self._without_fingerprint is None:
                raise NoFingerprintError(
                    "the calibration references train without the fingerprint's images: "
                    "set the fingerprint first (Zoo.set_fingerprint)"
                )
            return self._without_fingerprint
        if party not in D1_PARTS:
            return getattr(self.splits, party)
        d1 = self.splits.d1
        share = self.pool if party in ("d1_rest", "d1_pool") else self.config.data.source_holdout
        cut = len(d1) - int(round(share * len(d1)))
        part = slice(None, cut) if party in ("d1_train", "d1_rest") else slice(cut, None)
        return data_lib.Split(d1.x[part], d1.y[part])

    def party(self, kind: str) -> data_lib.Split:
        return self.split(self.party_name(kind))

    def source(self) -> TrainedGroup:
        return self.get("source")[0]

    def white_box_sources(self) -> list[TrainedGroup]:
        """The source, where C-BIM can take its gradients (not an API's)."""
        return [] if self.label_only_source else [self.source()]

    def source_logits(self, party: str) -> np.ndarray:
        """The source's outputs on a party's data: logits, or a label-only
        source's answers as one-hot vectors."""
        if party not in self._source_logits:
            x = self.split(party).x
            if self.label_only_source:
                labels = self.label_only_source.labels_fn(x)
                logits = labels_lib.one_hot(labels, self.splits.num_classes)
            else:
                src = self.source()
                logits = fit.predict_logits(
                    src.group.model, src.variables, x, strategy=self.strategy
                )[0]
            self._source_logits[party] = logits
        return self._source_logits[party]

    def temperature(self, kind: str) -> float:
        """Distillation temperature T (Section 2.2): the defender picks it for its
        training (and selection) surrogates; the adversary's Retraining attack uses T = 1."""
        if KINDS[kind][1] != "surrogate":
            return 1.0
        m = self.config.models
        own = kind.startswith(("training", "selection"))
        return m.training_temperature if own else m.testing_temperature

    def targets(self, kind: str) -> np.ndarray:
        split = self.party(kind)
        label_source = KINDS[kind][1]
        if label_source == "surrogate":
            label_source = self.config.models.surrogate_labels
        if self.label_only_source and label_source != "ground_truth":
            label_source = "source_hard"  # an API's top-1 labels are all there is
        party = self.party_name(kind)
        logits = None if label_source == "ground_truth" else self.source_logits(party)
        return labels_lib.make_targets(
            label_source,
            split.y,
            logits,
            num_classes=self.splits.num_classes,
            temperature=self.temperature(kind),
        )

    def get(self, kind: str) -> list[TrainedGroup]:
        """The trained groups of one kind, training whatever is missing."""
        if kind == "source" and self.label_only_source:
            return [self.label_only_source]
        if kind not in self._cache:
            if self.needs_fingerprint(kind) and self._without_fingerprint is None:
                raise NoFingerprintError(f"{kind} trains once the fingerprint is extracted")
            groups = groups_of_kind(self.config, kind, self.splits.num_classes)
            self._cache[kind] = [self._train_or_load(kind, g) for g in groups]
        return self._cache[kind]

    def groups(self, kinds) -> list[TrainedGroup]:
        """The trained groups of a kind, or of each of a tuple of kinds in order."""
        kinds = (kinds,) if isinstance(kinds, str) else kinds
        return [tg for kind in kinds for tg in self.get(kind)]

    def data_digest(self, party: str) -> str:
        """The digest of a party's inputs and labels, computed once."""
        if party not in self._data_digests:
            split = self.split(party)
            self._data_digests[party] = store_lib.recipe_digest(split.x, split.y)
        return self._data_digests[party]

    def recipe(self, kind: str, group: ensemble.Group, targets) -> str:
        """The digest of everything that determines a group's weights (`store`)."""
        skip = SPEED_ONLY + EPOCH_FIELDS
        train = {k: v for k, v in self.config.train.to_dict().items() if k not in skip}
        return store_lib.recipe_digest(
            [group.arch, repr(group.model), group.size, list(self.splits.input_shape)],
            train,
            [epochs_of(self.config, kind), self.temperature(kind)],
            group_seed(self.config, group.name),
            self.data_digest(self.party_name(kind)),
            targets,
            self.data_digest("test"),
        )

    def _train_or_load(self, kind: str, group: ensemble.Group) -> TrainedGroup:
        gdir = self.group_dir(group, kind)
        result_path = os.path.join(gdir, "result.json")
        if isinstance(group.model, external.ExternalModel):
            return self._external_source(group, result_path)
        if os.path.exists(result_path):
            tg = TrainedGroup(kind, group, *self._load(gdir, group))
            recipe = files.read_json(result_path).get("recipe")
            if self.store and recipe:  # trained before the store had it (a kill, an old run)
                self.store.publish(recipe, gdir)
            return tg
        targets = self.targets(kind)
        recipe = self.recipe(kind, group, targets)
        if self.store and self.store.fetch(recipe, gdir):
            tg = TrainedGroup(kind, group, *self._load(gdir, group))
            progress.log(
                f"{group.name}: from the store ({recipe[:12]}), test accuracy "
                + " ".join(f"{a:.3f}" for a in tg.test_accuracy)
            )
            return tg
        tg = self._train(kind, group, gdir, targets, recipe)
        if self.store:
            self.store.publish(recipe, gdir)
        return tg

    def _train(
        self, kind: str, group: ensemble.Group, gdir: str, targets, recipe: str
    ) -> TrainedGroup:
        test, start = self.splits.test, time.time()
        variables = fit.train_group(
            group.model,
            self.party(kind).x,
            targets,
            size=group.size,
            cfg=self.config.train,
            epochs=epochs_of(self.config, kind),
            rng=group_seed(self.config, group.name),
            ckpt_dir=os.path.join(gdir, "checkpoints"),
            strategy=self.strategy,
            temperature=self.temperature(kind),
            desc=f"train {group.name} x{group.size}",
        )
        acc = fit.accuracies(group.model, variables, test.x, test.y, strategy=self.strategy)
        save_variables(os.path.join(gdir, "final"), variables)
        faults.point("group_final")  # final variables written, result.json not yet
        files.write_json_atomic(
            os.path.join(gdir, "result.json"),
            {
                "test_accuracy": acc.tolist(),
                "kind": kind,
                "architecture": group.arch,
                "num_classes": self.splits.num_classes,
                "input_shape": list(self.splits.input_shape),
                "seconds": round(time.time() - start, 1),
                "recipe": recipe,
            },
        )
        progress.log(
            f"{group.name}: test accuracy "
            + " ".join(f"{a:.3f}" for a in acc)
            + f" ({time.time() - start:.0f} s)"
        )
        self.trained_now += 1
        faults.point("group")  # between groups
        return TrainedGroup(kind, group, variables, acc)

    def _external_source(self, group: ensemble.Group, result_path: str) -> TrainedGroup:
        """The user's own source: checked against the data, never trained or
        saved; the work directory keeps its parameters' hash and refuses others."""
        variables = external.stacked_variables(group.arch)
        external.check_fits(
            group.model, variables, self.splits.input_shape, self.splits.num_classes
        )
        digest = ensemble.parameter_hash(variables)
        if os.path.exists(result_path):
            record = files.read_json(result_path)
            if record.get("parameter_hash") != digest:
                raise CheckpointError(
                    f"{group.arch} now returns other weights than the source this work "
                    f"directory was made with ({os.path.dirname(result_path)}); use a new --workdir"
                )
            return TrainedGroup("source", group, variables, np.asarray(record["test_accuracy"]))
        test = self.splits.test
        acc = fit.accuracies(group.model, variables, test.x, test.y, strategy=self.strategy)
        files.write_json_atomic(
            result_path,
            {
                "test_accuracy": acc.tolist(),
                "kind": "source",
                "architecture": group.arch,
                "num_classes": self.splits.num_classes,
                "input_shape": list(self.splits.input_shape),
                "parameter_hash": digest,
            },
        )
        progress.log(f"{group.arch}: the given source, test accuracy {acc[0]:.3f}")
        return TrainedGroup("source", group, variables, acc)

    def _load(self, gdir: str, group: ensemble.Group) -> tuple[dict, np.ndarray]:
        """The final variables and test accuracies of a trained group, checked."""
        try:
            record = files.read_json(os.path.join(gdir, "result.json"))
            acc = np.asarray(record["test_accuracy"], np.float64)
            if record.get("architecture", group.arch) != group.arch or acc.shape != (group.size,):
                raise ValueError(
                    f"it holds {record.get('architecture')} x{acc.size}, "
                    f"the config asks for {group.arch} x{group.size}"
                )
            variables = load_variables(os.path.join(gdir, "final"), group, self.splits.input_shape)
        except Exception as e:  # noqa: BLE001 (orbax raises many kinds on a bad checkpoint)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            reason = reason.split(" [tensorstore_spec=")[0]  # the rest is a JSON spec
            if len(reason) > 300:
                reason = reason[:297] + "..."
            raise CheckpointError(
                f"{gdir} is not a readable model group ({reason}); "
                "move it away to train the group again"
            ) from None
        return variables, acc

    def train_all(self, kinds=tuple(KINDS)) -> list[dict]:
        """Trains every group of the given kinds (those that `needs_fingerprint`
        once the fingerprint is set); writes and returns models.jsonl rows."""
        path = os.path.join(self.workdir, "models.jsonl")
        later = []  # without a fingerprint: those rows as the last extraction left them
        if self._without_fingerprint is None:
            later = [k for k in kinds if self.needs_fingerprint(k)]
            kinds = [k for k in kinds if k not in later]
        rows = [r for kind in kinds for tg in self.get(kind) for r in tg.records()]
        written = files.read_jsonl(path)
        rows += [r for r in written if r.get("kind") in later]
        if not self.trained_now and written == rows:
            progress.log(f"train: all {len(rows)} models are trained; nothing to do")
            return rows
        files.write_jsonl_atomic(path, rows)
        return rows
