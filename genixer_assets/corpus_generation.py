"""Step (iv), generation: the generators run over every shard of the image corpus."""

import itertools
import json
import shutil
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer import corpus_generation
from genixer.decoding import Sampling
from genixer.schema import read_samples, write_samples
from genixer.tasks import TASKS
from genixer_assets.common import GPU, data_source, generator_path, md_counts, md_table, table_meta
from genixer_assets.partitions import shard_partitions
from resources import GenixerSettings, MLLMBackend


class GenerationConfig(dg.Config):
    mode: str = Field("type_specific", description="type_specific (with the task's specific instruction) | type_agnostic")
    task: Optional[str] = Field(None, description="task asked for in type-specific mode (default: common_vqa for L, rec for S, as in the paper)")
    samples_per_image: Optional[int] = Field(None, description="requests per image (default: preset)")
    temperature: Optional[float] = Field(None, description="sampling temperature, 0 = greedy (default: preset)")
    top_p: Optional[float] = Field(None, description="nucleus sampling mass (default: preset)")
    max_new_tokens: Optional[int] = Field(None, description="generation length limit (default: preset)")
    batch_size: Optional[int] = Field(None, description="requests per batched generate() call (default: the role's batch_size, else 32)")


def _raw_generations(context, config: GenerationConfig, settings: GenixerSettings, backend: MLLMBackend,
                     name: str, generator: str, default_task: str) -> dg.MaterializeResult:
    if config.mode not in ("type_specific", "type_agnostic"):
        raise ValueError(f"mode must be type_specific or type_agnostic, not {config.mode!r}")
    if config.task is not None and config.task not in TASKS:
        raise ValueError(f"task {config.task!r} is not one of {TASKS}")
    p = settings.get_preset()
    shard = context.partition_key
    base = p.gen_sampling
    sampling = Sampling(temperature=base.temperature if config.temperature is None else config.temperature,
                        top_p=config.top_p or base.top_p, max_new_tokens=config.max_new_tokens or base.max_new_tokens)
    task = (config.task or default_task) if config.mode == "type_specific" else None
    images = settings.read_table("image_corpus", shard)
    general = json.loads(settings.path("tables", "instruction_templates.json").read_text())["general"]
    requests = corpus_generation.plan_requests(images, general, task, config.samples_per_image or p.gen_per_image, p.seed)
    model_dir = generator_path(settings, backend, generator)
    out_path = settings.table_path(name, shard)
    # An interrupted run's batches, one part file each (appended, never rewritten), and any finished output.
    partial = settings.path("tables", "_partial", name, shard)
    parts = sorted(partial.glob("part-*.parquet")) if partial.is_dir() else []
    found = [f for f in [out_path, *parts] if f.exists()]
    cache = pd.concat([read_samples(f) for f in found], ignore_index=True) if found else None
    count = itertools.count(len(parts))
    task_of = data_source(settings).task_of  # each parsed row's task: the data source's reading of its turns
    model, processor = backend.load(model_dir, generator)
    df, reused = corpus_generation.generate_shard(
        model, processor, requests, generator, corpus_generation.checkpoint_id(model_dir), sampling, task, default_task, cache,
        save=lambda d: write_samples(d, partial / f"part-{next(count):05d}.parquet", lineage=True), batch_size=config.batch_size or backend.batch_size(generator, 32),
        task_of=task_of)
    write_samples(df, out_path, lineage=True)
    shutil.rmtree(partial, ignore_errors=True)
    quarantined = df[df.quarantine_reason.notna()]
    ok = df[df.quarantine_reason.isna()]
    return dg.MaterializeResult(metadata={
        **table_meta(out_path),
        "rows": len(df),
        "reused_from_cache": reused,
        "generated_now": len(df) - reused,
        "parse_rate": float(df.quarantine_reason.isna().mean()) if len(df) else 0.0,
        "quarantined": len(quarantined),
        "quarantine_reasons": dg.MetadataValue.md(quarantined.quarantine_reason.str.split(":").str[0].value_counts().rename_axis("reason").reset_index().to_markdown(index=False)) if len(quarantined) else "none",
        "by_task": md_counts(ok, "task") if len(ok) else "none",
        "mode": config.mode,
        "sampling": json.dumps(sampling.__dict__),
        "preview": md_table(df[["image_id", "template_id", "raw_text", "quarantine_reason"]], 8),
        "path": dg.MetadataValue.path(str(out_path)),
    })


@dg.asset(group_name="corpus_generation", partitions_def=shard_partitions, deps=["image_corpus", "genixer_l"], **GPU)
def raw_generations_l(context: dg.AssetExecutionContext, config: GenerationConfig, settings: GenixerSettings,
                      backend: MLLMBackend) -> dg.MaterializeResult:
    """Genixer_L's raw generations on one corpus shard (the paper's 1.4M raw general samples
    before filtering), with full lineage; unparseable output is kept, quarantined."""
    return _raw_generations(context, config, settings, backend, "raw_generations_l", "genixer_l", "common_vqa")


@dg.asset(group_name="corpus_generation", partitions_def=shard_partitions, deps=["image_corpus", "genixer_s"], **GPU)
def raw_generations_s(context: dg.AssetExecutionContext, config: GenerationConfig, settings: GenixerSettings,
                      backend: MLLMBackend) -> dg.MaterializeResult:
    """Genixer_S's raw generations on one corpus shard (the paper's raw REC data before the
    coarse-to-fine filter)."""
    return _raw_generations(context, config, settings, backend, "raw_generations_s", "genixer_s", "rec")
