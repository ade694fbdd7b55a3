"""The device mesh of the member axis, and joining a run of several hosts.

A stacked group keeps its members on the leading axis of every leaf. With more
than one device that axis is split over a one-dimensional mesh named 'models'
of every device of the run: all local devices of one process, and with
`jax.distributed` the devices of every host. Each device then holds whole
members and runs them on its own; the only traffic is the reduction over
members that C-BIM's ensemble means need (Eq. 11-12), a few kilobytes a step.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from fingerprinting import errors

MEMBER_AXIS = "models"
DISTRIBUTED_ENV = "FINGERPRINTING_DISTRIBUTED"


@functools.cache
def member_mesh() -> jax.sharding.Mesh:
    """The 1-D mesh 'models' over every device of the run."""
    devices = jax.devices()
    # Auto axes: the compiler propagates shardings through the code around the
    # member-mapped calls (ensemble means, gathers of training batches).
    return jax.make_mesh(
        (len(devices),), (MEMBER_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )


def shards_members(num_members: int) -> bool:
    """Whether a group of `num_members` is split over the devices: only when there
    is more than one and every device gets the same number of whole members."""
    devices = jax.device_count()
    return devices > 1 and num_members % devices == 0


def member_sharding(num_members: int) -> jax.sharding.Sharding:
    """Where a stacked leaf of `num_members` lives: split over 'models', or
    replicated when the group does not divide over the devices."""
    spec = P(MEMBER_AXIS) if shards_members(num_members) else P()
    return NamedSharding(member_mesh(), spec)


def place_members(tree):
    """Puts a stacked pytree on the devices, split along its member axis.

    Not needed for correctness (a jitted step reshards its inputs), but it saves
    the first step a copy and keeps each member's weights on its device only.
    """
    if jax.device_count() == 1:  # nothing to split; keep arrays uncommitted
        return tree
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    return jax.device_put(tree, member_sharding(n))


def to_host(tree):
    """NumPy copies of a pytree's arrays. On several hosts a member-split array
    lives partly elsewhere: every process then receives all of it."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)


_joined = False


def writes_files() -> bool:
    """Whether this process writes the work directory's files. In a run of
    several hosts sharing one work directory only process 0 does; the others
    compute the same results. (Orbax checkpoints coordinate every process
    themselves.)"""
    return not _joined or jax.process_index() == 0


def initialize_distributed() -> bool:
    """Joins a run of several processes (hosts) when FINGERPRINTING_DISTRIBUTED=1.

    JAX takes the coordinator's host:port from JAX_COORDINATOR_ADDRESS; the
    number of processes and this one's index come from JAX_NUM_PROCESSES and
    JAX_PROCESS_ID when set, otherwise from the cluster (SLURM, Open MPI,
    Kubernetes). Must run before any computation; returns whether it joined.
    """
    if os.environ.get(DISTRIBUTED_ENV, "0") in ("", "0"):
        return False
    if os.environ[DISTRIBUTED_ENV] != "1":
        raise errors.ConfigError(
            f"{DISTRIBUTED_ENV} must be 0 or 1, got {os.environ[DISTRIBUTED_ENV]!r}"
        )
    num, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    global _joined
    jax.distributed.initialize(
        num_processes=int(num) if num else None, process_id=int(index) if index else None
    )
    _joined = True
    return True
