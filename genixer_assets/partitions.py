"""Partitions: the image corpus is cut into shards; generation runs one shard per partition.

The shard count comes from the preset of resources.SETTINGS (the `settings` resource of the
definitions), so it is fixed when the definitions are loaded; a shard holds every n-th corpus image.
"""

import dagster as dg

from resources import SETTINGS, GenixerSettings

N_SHARDS = SETTINGS.get_preset().n_shards
shard_partitions = dg.StaticPartitionsDefinition([f"shard_{i:03d}" for i in range(N_SHARDS)])


def shard_index(key: str) -> int:
    return int(key.split("_")[1])


def require_loaded_shards(settings: GenixerSettings) -> None:
    """Fail if a run's settings cut the corpus into other shards than the partitions were built with
    (a run given another `settings` resource than the one the definitions were loaded with)."""
    n = settings.get_preset().n_shards
    if n != N_SHARDS:
        raise dg.Failure(
            f"the run's preset {settings.preset!r} has {n} shards, but the definitions were loaded with preset "
            f"{SETTINGS.preset!r} ({N_SHARDS} shard partitions); set GENIXER_PRESET={settings.preset} before loading "
            "the definitions (or run with the preset they were loaded with)"
        )
