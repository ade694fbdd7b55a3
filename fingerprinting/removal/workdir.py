"""`run_attack`: one attack inside a work directory. The group lands in
WORKDIR/models/attack-NAME/ (Orbax checkpoints while training, final
variables, result.json in the zoo's format, so `verify --suspect` reads it),
and a finished group is loaded, not trained again."""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import numpy as np

from fingerprinting import ensemble
from fingerprinting import files
from fingerprinting import fit
from fingerprinting import progress
from fingerprinting import store
from fingerprinting import zoo as zoo_lib
from fingerprinting.removal.base import AdversaryData
from fingerprinting.removal.base import AttackConfig
from fingerprinting.removal.base import StaleAttackError
from fingerprinting.removal.registry import ATTACKS


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
        logits = fit.predict_logits(self.group.model, self.variables, x, strategy=self.strategy)
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


def attack_recipe(name: str, zoo, config) -> str:
    """The digest of everything that determines an attack's stolen weights: the
    source's, the adversary's data and the source's answers on it, the
    attack's settings and training, and its seed (`store`)."""
    train = {k: v for k, v in config.train.to_dict().items() if k not in zoo_lib.SPEED_ONLY}
    return store.recipe_digest(
        ["attack", name, settings_of(name, config), config.seed],
        # The transfer set's place too: `settings_of` leaves it out (it may move).
        name == "knockoff" and os.path.abspath(config.removal.knockoff_dir or "."),
        train,
        zoo_lib.group_seed(config, f"attack-{name}"),
        ensemble.parameter_hash(zoo.source().variables),
        zoo.data_digest("d2"),
        zoo.source_logits("d2"),
        zoo.data_digest("test"),
    )


def adversary_data(zoo) -> AdversaryData:
    d2 = zoo.splits.d2
    return AdversaryData(d2.x, d2.y, zoo.source_logits("d2"))


def run_attack(name: str, zoo, config) -> Attacked:
    """The attack's stolen group: loaded when finished, else trained and saved."""
    gdir = group_dir(zoo.workdir, name)
    source = zoo.source()
    input_shape = zoo.splits.input_shape
    strategy = ensemble.resolve_strategy(config.removal.strategy)
    recipe = attack_recipe(name, zoo, config)
    if finished(zoo.workdir, name, config) or (zoo.store and zoo.store.fetch(recipe, gdir)):
        record = files.read_json(os.path.join(gdir, "result.json"))
        if zoo.store and record.get("recipe") == recipe:  # trained before the store had it
            zoo.store.publish(recipe, gdir)
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
        # One directory per recipe: a kill, then other settings, never resumes
        # the other settings' training.
        ckpt_dir=os.path.join(gdir, "checkpoints", recipe[:16]),
    )
    stolen = ATTACKS[name].fn(source, adversary_data(zoo), cfg)
    group = ensemble.Group(
        f"attack-{name}", source.group.arch, source.group.model, len(stolen.parameters)
    )
    test = zoo.splits.test
    acc = fit.accuracies(group.model, stolen.variables, test.x, test.y, strategy=strategy)
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
        "recipe": recipe,
        "seconds": round(time.time() - start, 1),
    }
    attacked = Attacked(name, group, stolen.variables, record, strategy)
    logits = attacked.deployed_logits(test.x)
    record["deployed_test_accuracy"] = (logits.argmax(-1) == test.y[None]).mean(-1).tolist()
    zoo_lib.save_variables(os.path.join(gdir, "final"), stolen.variables)
    files.write_json_atomic(os.path.join(gdir, "result.json"), record)
    if zoo.store:
        zoo.store.publish(recipe, gdir)
    progress.log(
        f"attack {name}: test accuracy "
        + " ".join(f"{a:.3f}" for a in record["deployed_test_accuracy"])
        + f" ({record['seconds']} s)"
    )
    return attacked
