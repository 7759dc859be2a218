"""Partitions: the image corpus is cut into shards; generation runs one shard per partition.

The shard count comes from the preset at load time (GENIXER_PRESET), so it is fixed for a
deployment; a shard holds every n-th corpus image.
"""

import dagster as dg

from genixer.presets import get_preset

N_SHARDS = get_preset().n_shards
shard_partitions = dg.StaticPartitionsDefinition([f"shard_{i:03d}" for i in range(N_SHARDS)])


def shard_index(key: str) -> int:
    return int(key.split("_")[1])
