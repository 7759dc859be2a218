"""The collection stage's checks: the collected data sets, the benchmarks (no benchmark image is a training image) and
the corpus shards (world_scenes_valid, which reads the scene graphs, is beside world_scenes in collection.py)."""

import os
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pandas as pd

from genixer.schema import SAMPLE_COLUMNS, read_samples, sample_problems
from genixer.tasks import TASKS
from genixer.oracle_eval import Oracle
from genixer_assets.common import AIM, check_partition_keys, check_result, data_source, from_world, partition_tables, sha256_of
from genixer_assets.partitions import shard_partitions
from resources import GenixerSettings


def _samples_check(df: pd.DataFrame, oracle: Oracle | None) -> tuple[list[str], float | None]:
    """Schema problems, and the share of the world's samples the oracle accepts (None when no row
    comes from the world: a published data set has no oracle)."""
    problems = [f"missing column {c}" for c in SAMPLE_COLUMNS if c not in df.columns]
    ok = judged = 0
    for s in df.to_dict("records"):
        if pd.isna(s["image_path"]):  # a text-only record of a published set: no image to check against
            problems += [f"{s['sample_id']}: {p}" for p in sample_problems({**s, "boxes": [], "points": []})]
            continue
        problems += [f"{s['sample_id']}: {p}" for p in sample_problems(s)]
        if not str(s["source"]).startswith("shapes_world"):
            continue
        v = oracle.check(s)
        ok += v.ok
        judged += 1
        if not v.ok:
            problems.append(f"{s['sample_id']}: oracle says {v.status}: {v.reason}")
    return problems, (ok / judged if judged else None)


@dg.asset_check(asset="collected_datasets", blocking=True,
                description="Guard: every column of the sample schema; each sample of a known task with turns, each turn a non-empty "
                            "question and answer, its boxes and points inside its image; on the world's rows the oracle agrees "
                            "with every answer (100%).")
def collected_datasets_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("collected_datasets"))
    problems, agree = _samples_check(df, data_source(settings).oracle)
    return check_result(not problems and agree in (None, 1.0), problems, oracle_agreement="no oracle (published data)" if agree is None else agree,
                        samples=len(df))


@dg.asset_check(asset="collected_datasets", description="Aim: every task has at least the preset's minimum number of samples.")
def collected_datasets_counts(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("collected_datasets"))
    need = settings.get_preset().min_per_task
    counts = df.task.value_counts().reindex(list(TASKS), fill_value=0)
    low = [f"{t}: {n} < {need}" for t, n in counts.items() if n < need]
    return check_result(not low, low, AIM, min_per_task=need, **{f"n_{t}": int(n) for t, n in counts.items()})


def _training_images(settings: GenixerSettings) -> set[str]:
    """The image files the models learn from: collected_datasets' images, the world's `collect` and `corpus` splits,
    and the images of every image_corpus shard on disk (the generators' corpus), whichever exist."""
    paths = set()
    if settings.table_path("collected_datasets").exists():
        paths |= set(pd.read_parquet(settings.table_path("collected_datasets"), columns=["image_path"]).image_path.dropna())
    if settings.table_path("world_scenes").exists():
        scenes = pd.read_parquet(settings.table_path("world_scenes"), columns=["split", "image_path"])
        paths |= set(scenes[scenes.split.isin(["collect", "corpus"])].image_path)
    for shard in sorted(settings.path("tables", "image_corpus").glob("*.parquet")):
        paths |= set(pd.read_parquet(shard, columns=["image_path"]).image_path.dropna())
    return paths


def shared_image_files(bench: set[str], train: set[str]) -> list[tuple[str, str]]:
    """(benchmark file, training file) pairs whose bytes are the same, whatever their paths: files of the same size
    are hashed (sha256), each file once. A missing file is left out (its own asset's check names it)."""
    def size(p):
        try:
            return os.path.getsize(p)
        except OSError:
            return None

    by_size = defaultdict(list)
    for p in sorted(train):
        if (n := size(p)) is not None:
            by_size[n].append(p)
    digests: dict[str, str] = {}

    def digest(p):
        if p not in digests:
            digests[p] = sha256_of(p)
        return digests[p]

    out = []
    for b in sorted(bench):
        same = by_size.get(size(b), []) if size(b) is not None else []
        hit = next((t for t in same if digest(t) == digest(b)), None) if same else None
        if hit is not None:
            out.append((b, hit))
    return out


@dg.asset_check(asset="benchmark_sets", blocking=True,
                description="Guard: no benchmark image has the same bytes (sha256, whatever its path) as an image the models learn "
                            "from: collected_datasets' images, the world's collect and corpus splits, every image_corpus shard on "
                            "disk; each sample valid as collected_datasets_valid checks it (on the world's rows, oracle agreement 100%).")
def benchmark_sets_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("benchmark_sets"))
    world = from_world(settings, "benchmark_sets")
    problems, agree = _samples_check(df, Oracle(settings.read_table("world_scenes")) if world else None)  # published: no oracle
    shared = shared_image_files(set(df.image_path.dropna()), _training_images(settings))
    if shared:  # first: the problem that matters most
        problems.insert(0, f"{len(shared)} benchmark images have the same bytes as a training image (collected data or corpus), "
                        f"e.g. {shared[0][0]} = {shared[0][1]}")
    return check_result(not problems and (agree == 1.0 if world else True), problems, samples=len(df), leaked_images=len(shared),
                        oracle_agreement=agree if world else "no oracle (published benchmarks)")


@dg.asset_check(asset="image_corpus", blocking=True,
                description="Guard: the shard (every shard, when run without a partition) is materialised, non-empty, and its image files exist.")
def image_corpus_valid(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    keys = check_partition_keys(context, shard_partitions)
    tables, problems = partition_tables(settings, "image_corpus", keys)
    for k, df in tables.items():
        if df.empty:
            problems.append(f"{k}: the shard is empty")
        problems += [f"{k}: missing {p}" for p in df.image_path if not Path(p).exists()]
        if (df.shard != k).any():
            problems.append(f"{k}: {int((df.shard != k).sum())} rows labelled with another shard")
    return check_result(not problems, problems, shards=", ".join(keys), images=sum(len(t) for t in tables.values()))


@dg.asset_check(asset="held_back_datasets", blocking=True,
                description="Guard: the ceiling's annotations are held out: no held-back image has the same bytes (sha256, whatever its "
                            "path) as an image of collected_datasets (what base_mllm, the generators and the judge train on) or of "
                            "benchmark_sets; each sample valid as collected_datasets_valid checks it (world rows: oracle agreement "
                            "100%). An empty table passes (the ceiling arm is then left out).")
def held_back_datasets_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("held_back_datasets"))
    if df.empty:
        return check_result(True, [], samples=0, leaked_images=0)
    problems, agree = _samples_check(df, data_source(settings).oracle if from_world(settings, "held_back_datasets") else None)
    seen = set()
    for name in ("collected_datasets", "benchmark_sets"):
        if settings.table_path(name).exists():
            seen |= set(pd.read_parquet(settings.table_path(name), columns=["image_path"]).image_path.dropna())
    shared = shared_image_files(set(df.image_path.dropna()), seen)
    if shared:
        problems.insert(0, f"{len(shared)} held-back images have the same bytes as a collected or benchmark image, "
                           f"e.g. {shared[0][0]} = {shared[0][1]}")
    return check_result(not problems and agree in (None, 1.0), problems, samples=len(df), leaked_images=len(shared),
                        oracle_agreement="no oracle (published data)" if agree is None else agree)
