"""Partitions: the image corpus is cut into shards, and generation runs one shard per partition.

Shards follow the corpus: `corpus_shards` plans them (the world's corpus split cut into the preset's
`n_shards`; a tar is a shard; a folder is cut into shards of a set size) and registers each new
shard as a dynamic partition, so new files become new partitions without touching the old ones.
"""

import dagster as dg

CORPUS_SHARDS = "corpus_shards"
shard_partitions = dg.DynamicPartitionsDefinition(name=CORPUS_SHARDS)


def partition_keys(pdef: dg.PartitionsDefinition, instance: dg.DagsterInstance | None) -> list[str]:
    """The partition keys of a definition, dynamic ones read from the instance."""
    return list(pdef.get_partition_keys(dynamic_partitions_store=instance))
