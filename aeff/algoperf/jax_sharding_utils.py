"""`algoperf.jax_sharding_utils` where AlgoPerf is not installed: shardings over a mesh of
every device with one axis, `batch`, as AlgoPerf's submissions expect."""

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def _mesh() -> Mesh:
    return Mesh(jax.devices(), (BATCH_AXIS,))


def get_replicate_sharding() -> NamedSharding:
    """Every device holds all of an array."""
    return NamedSharding(_mesh(), PartitionSpec())


def get_batch_dim_sharding() -> NamedSharding:
    """The leading axis split over the devices."""
    return NamedSharding(_mesh(), PartitionSpec(BATCH_AXIS))


def shard_along_batch_dim(tree: Any) -> Any:
    return jax.device_put(tree, get_batch_dim_sharding())


def replicate(tree: Any) -> Any:
    return jax.device_put(tree, get_replicate_sharding())


def display_shard_info(x: jax.Array) -> None:
    for shard in x.addressable_shards:
        print(f"shard.device: {shard.device}, index: {shard.index}, replica_id: {shard.replica_id}")
