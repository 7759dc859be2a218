"""Partitions: the image corpus is cut into shards, and generation runs one shard per partition; retraining and
its benchmark predictions run one recipe per partition.

Shards follow the corpus: `corpus_shards` plans them (the world's corpus split cut into the preset's
`n_shards`; a tar is a shard; a folder is cut into shards of a set size) and registers each new
shard as a dynamic partition, so new files become new partitions without touching the old ones.
A shard removed from the instance (a corpus planned again without it) leaves its files on disk: what
reads a shard-partitioned table whole reads the shards the instance holds (`read_shards`), not every
file in the table's folder.
"""

import dagster as dg

from genixer.retraining import RECIPES
from resources import GenixerSettings

CORPUS_SHARDS = "corpus_shards"
shard_partitions = dg.DynamicPartitionsDefinition(name=CORPUS_SHARDS)
# One partition per retraining recipe (genixer.retraining.RECIPES): retrained_models and benchmark_predictions.
recipe_partitions = dg.StaticPartitionsDefinition(list(RECIPES))

# The closed loop's rounds (asset group `loop`, genixer.loop): round r evaluates the model round r - 1 trained (round 1:
# base_mllm), generates for its weak question types and trains. The preset's loop_max_rounds (at most MAX_ROUNDS - 1:
# the last round's model is evaluated by the next partition's loop_evaluation, which stops the loop) bounds a run.
MAX_ROUNDS = 6
LOOP_ROUNDS = [f"round_{i}" for i in range(1, MAX_ROUNDS + 1)]
loop_rounds = dg.StaticPartitionsDefinition(LOOP_ROUNDS)


def round_index(partition_key: str) -> int:
    """'round_3' -> 3."""
    return int(partition_key.split("_")[1])


# Where the corpus plan lives (corpus_shards writes it, image_corpus and the corpus_inbox sensor read it).
CORPUS_KINDS = ("folder", "parquet", "webdataset")


def corpus_summary_path(settings: GenixerSettings):
    """corpus_shards' summary: kind, path, shard_size, image_column, shards (and, for the world, its inbox)."""
    return settings.table_path("corpus_shards").with_suffix(".json")


def corpus_manifest_path(settings: GenixerSettings):
    """plan_shards' manifest of a configured folder / parquet / webdataset corpus."""
    return settings.path("tables", "corpus_manifest.json")


def inbox_manifest_path(settings: GenixerSettings):
    """plan_shards' manifest of the world's inbox (the inbox sensor plans it, corpus_shards keeps its shards)."""
    return settings.path("tables", "inbox_manifest.json")


def world_inbox(settings: GenixerSettings):
    """The folder whose new images become shards beside the world's (env GENIXER_INBOX, when set, instead)."""
    return settings.path("inbox")


def partition_keys(pdef: dg.PartitionsDefinition, instance: dg.DagsterInstance | None) -> list[str]:
    """The partition keys of a definition, dynamic ones read from the instance."""
    return list(pdef.get_partition_keys(dynamic_partitions_store=instance))


def held_shards(instance: dg.DagsterInstance) -> list[str] | None:
    """The corpus shards the instance holds now; None when it holds none (an instance that does not track the
    corpus: a fresh one over an existing data root, or a test's ephemeral one)."""
    return partition_keys(shard_partitions, instance) or None


def read_shards(context, settings, name: str):
    """A shard-partitioned table, read whole: the shards the instance holds that have been materialised (a
    removed shard's file is left out; a held shard not materialised yet is named in a warning). An instance
    that holds no shard reads every shard file of the table, with a warning."""
    keys = held_shards(context.instance)
    if keys is None:
        context.log.warning(f"{name}: the instance holds no corpus shard (corpus_shards registers them): every shard file "
                            f"under {settings.path('tables', name)} is read")
    else:
        missing = [k for k in keys if not settings.table_path(name, k).exists()]
        if missing:
            context.log.warning(f"{name}: {len(missing)} of {len(keys)} shard(s) not materialised yet, read without them: "
                                f"{missing[:10]}")
    return settings.read_table(name, partitions=keys)
