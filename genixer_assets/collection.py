"""Step (i): the collected, annotated data sets, the unlabeled corpus and the benchmarks; the world's scenes with their
check (world_scenes_valid: the one check that reads scene graphs; the stage's other checks are in collection_checks.py).
The only asset module that imports the world: it renders and annotates it."""


import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer.images import MAX_PIXELS
from genixer.preview import preview_png
from genixer.schema import concat_parquet, read_samples, write_samples
from genixer.sources import collect
from genixer.sources.corpus import CorpusSpec, plan_shards, read_shard
from genixer.tasks import TASKS
from genixer.world import Scene, WorldConfig, annotate_gqa, annotate_images, annotate_pope, build_split
from genixer_assets.common import check_result, md_counts, md_figure, md_table, sample_preview, sha256_of, table_meta
from genixer_assets.partitions import (CORPUS_KINDS, CORPUS_SHARDS, corpus_manifest_path, corpus_summary_path, inbox_manifest_path,
                                       shard_partitions, world_inbox)
from resources import GenixerSettings


class WorldScenesConfig(dg.Config):
    n_collect: Optional[int] = Field(None, description="images in the collect split (default: preset)")
    n_corpus: Optional[int] = Field(None, description="images in the unlabeled corpus (default: preset)")
    n_bench: Optional[int] = Field(None, description="benchmark images (default: preset)")
    n_heldout: Optional[int] = Field(None, description="held-out-domain images (default: preset)")
    image_size: Optional[int] = Field(None, description="long side of rendered images, px")
    min_objects: Optional[int] = Field(None, description="fewest objects in a scene")
    max_objects: Optional[int] = Field(None, description="most objects in a scene")
    small_frac: Optional[float] = Field(None, description="side of a small object, as a fraction of the image's short side")
    large_frac: Optional[float] = Field(None, description="side of a large object, as a fraction of the image's short side")
    seed: Optional[int] = Field(None, description="base seed of the rendering")


@dg.asset(group_name="collection", kinds={"python", "parquet"})
def world_scenes(context: dg.AssetExecutionContext, config: WorldScenesConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """The shapes world rendered to PNG: every split's images with their scene graphs (the
    ground truth the paper's human annotators stand for)."""
    p = settings.get_preset(n_collect=config.n_collect, n_corpus=config.n_corpus, n_bench=config.n_bench,
                            n_heldout=config.n_heldout, seed=config.seed)
    given = {k: getattr(config, k) for k in ("image_size", "min_objects", "max_objects", "small_frac", "large_frac")}
    world = replace(WorldConfig(), **{k: v for k, v in given.items() if v is not None})
    rows = []
    for split, n in (("collect", p.n_collect), ("corpus", p.n_corpus), ("bench", p.n_bench), ("heldout", p.n_heldout),
                     ("held_back", p.n_held_back)):
        rows += build_split(split, n, settings.path("world"), world, base_seed=p.seed)
    df = pd.DataFrame(rows)
    df.to_parquet(settings.table_path("world_scenes"), index=False)
    return dg.MaterializeResult(metadata={
        **table_meta(settings.table_path("world_scenes")),
        "images": len(df),
        "world": dg.MetadataValue.json(asdict(world)),
        "by_split": md_counts(df, "split"),
        "by_background": md_counts(df, "split", "background"),
        "objects_per_scene": dg.MetadataValue.md(df.groupby("n_objects").size().rename("scenes").reset_index().to_markdown(index=False)),
        "non_square": int((df.width != df.height).sum()),
        "path": dg.MetadataValue.path(str(settings.table_path("world_scenes"))),
        "preview": md_table(df.drop(columns=["scene"]), 5),
    })


@dg.asset_check(asset="world_scenes", blocking=True,
                description="Guard: every image file exists and its bytes have the sha256 the table records; every object inside "
                            "its image; the held-out background in the `heldout` split and only there.")
def world_scenes_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = settings.read_table("world_scenes")
    problems = []
    for r in df.itertuples():
        scene = Scene.from_json(r.scene)
        if not Path(r.image_path).exists():
            problems.append(f"{r.image_id}: missing {r.image_path}")
        elif (got := sha256_of(r.image_path)) != r.sha256:
            problems.append(f"{r.image_id}: {r.image_path} has sha256 {got[:12]}.., the table records {str(r.sha256)[:12]}..")
        if any(not (0 <= o.box[0] < o.box[2] <= r.width and 0 <= o.box[1] < o.box[3] <= r.height) for o in scene.objects):
            problems.append(f"{r.image_id}: object outside the image")
    held = WorldConfig().heldout_background
    leaks = int(((df.split != "heldout") & (df.background == held)).sum() + ((df.split == "heldout") & (df.background != held)).sum())
    if leaks:
        problems.append(f"{leaks} images break the held-out background rule")
    return check_result(not problems, problems, images=len(df))


class AnnotationConfig(dg.Config):
    per_image: Optional[int] = Field(None, description="annotated samples per image and task (default: preset)")


class SourceConfig(dg.Config):
    format: str = Field(description="a format of `genixer collect --help`: vqav2, gqa, aokvqa, pope, llava, refcoco, "
                                    "visual_genome, visual7w, pointqa_local, shikra_gpt4gen")
    files: list[str] = Field(description="the format's files, in the order `genixer collect --help` lists")
    images: Optional[str] = Field(None, description="the folder the release resolves its image paths from")


class CollectionConfig(AnnotationConfig):
    sources: list[SourceConfig] = Field(default_factory=list, description=(
        "published data sets to read instead of annotating the shapes world; empty: the world (the default)"))
    max_pixels: int = Field(MAX_PIXELS, description="refuse images with more pixels than this")


def _annotated_result(df: pd.DataFrame, path, extra: dict) -> dg.MaterializeResult:
    pictured = df[df.image_path.notna()]
    shown = [pictured[pictured.task == t].iloc[0].to_dict() for t in TASKS if (pictured.task == t).any()]
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "samples": len(df),
        "by_task": md_counts(df, "task"),
        "preview": sample_preview(df.groupby("task").head(1), 9),
        **(md_figure("boxes", preview_png(shown), "one sample per task, boxes drawn") if shown else {"boxes": "no sample with an image"}),
        "path": dg.MetadataValue.path(str(path)),
        **extra,
    })


def _collect_files(context, config, settings: GenixerSettings, name: str = "collected_datasets",
                   quarantine_name: str = "collected_quarantine", parts_dir: str = "_sources", extra=None) -> dg.MaterializeResult:
    """The configured published data sets, read by their readers into one table (`name`); their
    quarantined records into `quarantine_name`; `extra(table)` adds metadata."""
    parts, reports = [], []
    for i, src in enumerate(config.sources):
        part = settings.path("tables", parts_dir, f"{i:02d}_{src.format}.parquet")
        report = collect(src.format, src.files, src.images, part, max_pixels=config.max_pixels, progress=False)
        context.log.info("\n".join(report.lines()))
        parts.append(part)
        reports.append(report)
    path = settings.table_path(name)
    concat_parquet(parts, path)
    quarantine = pd.concat([pd.read_parquet(r.quarantine_path) for r in reports], ignore_index=True)
    quarantine.to_parquet(settings.table_path(quarantine_name), index=False)
    df = read_samples(path)
    return _annotated_result(df, path, {
        **(extra(df) if extra else {}),
        "by_source_task": md_counts(df, "source", "task"),
        "quarantined": int(len(quarantine)),
        "quarantined_by_reason": md_counts(quarantine, "source", "reason") if len(quarantine) else "none",
        "images_missing": sum(len(r.missing_images) for r in reports),
        "images": int(df.image_id.nunique()),
        "text_only": int(df.image_path.isna().sum()),
    })


@dg.asset(group_name="collection", kinds={"python", "parquet"}, deps=["world_scenes"])
def collected_datasets(context: dg.AssetExecutionContext, config: CollectionConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """The nine annotated task data sets (the paper's Tab. 1: VQAv2/GQA, POPE, A-OKVQA,
    multi-turn, RefCOCO REC/REG, PointQA, Shikra QCA and RD): the shapes world's `collect`
    split annotated (default), or the published data sets named in `sources`."""
    if config.sources:
        return _collect_files(context, config, settings)
    p = settings.get_preset()
    scenes = settings.read_table("world_scenes")
    images = scenes[scenes.split == "collect"].to_dict("records")
    df = pd.DataFrame(annotate_images(images, per_image=config.per_image or p.collect_per_image, seed=p.seed))
    path = write_samples(df, settings.table_path("collected_datasets"))
    return _annotated_result(df, path, {"images": len(images)})


@dg.asset(group_name="collection", kinds={"python", "parquet"}, deps=["world_scenes"])
def held_back_datasets(context: dg.AssetExecutionContext, config: CollectionConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """Annotated data no model trains on but the ceiling arm (retrained_models[annotated_vqa]: what annotating that
    many more images would give): the shapes world's `held_back` split annotated as `collected_datasets` is (the
    preset's n_held_back images), or the published files named in `sources`. Empty without either: the ceiling arm
    is then left out."""
    if config.sources:
        return _collect_files(context, config, settings, "held_back_datasets", "held_back_quarantine", "_held_back_sources")
    p = settings.get_preset()
    scenes = settings.read_table("world_scenes") if settings.table_path("world_scenes").exists() else pd.DataFrame(columns=["split"])
    images = scenes[scenes.split == "held_back"].to_dict("records")
    df = pd.DataFrame(annotate_images(images, per_image=config.per_image or p.collect_per_image, seed=p.seed + 4)) if images else None
    path = write_samples(df if df is not None else [], settings.table_path("held_back_datasets"))
    if df is None:
        return dg.MaterializeResult(metadata={**table_meta(path), "samples": 0, "images": 0,
                                              "why_empty": "no held_back images in world_scenes (preset n_held_back) and no `sources`"})
    return _annotated_result(df, path, {"images": len(images)})


class BenchmarkConfig(AnnotationConfig):
    sources: list[SourceConfig] = Field(default_factory=list, description=(
        "published benchmarks to read instead of annotating the shapes world (VQAv2 val, POPE, A-OKVQA val, "
        "RefCOCO/+/g val/testA/testB/test); empty: the world (the default)"))
    max_pixels: int = Field(MAX_PIXELS, description="refuse images with more pixels than this")


def _by_benchmark(df: pd.DataFrame) -> dict:
    from genixer.published_benchmarks import benchmark_of

    names = pd.Series([benchmark_of(r) for r in df.to_dict("records")], name="benchmark", dtype=object)
    counts = names.replace("", "(no benchmark: left out)").value_counts().rename("rows").rename_axis("benchmark").reset_index()
    return {"by_benchmark": dg.MetadataValue.md(counts.to_markdown(index=False)), "benchmark_rows": int((names != "").sum())}


@dg.asset(group_name="collection", kinds={"python", "parquet"}, deps=["world_scenes"])
def benchmark_sets(context: dg.AssetExecutionContext, config: BenchmarkConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """Held-out test sets per task: `bench` images (held-in domain) and `heldout` images
    (the held-out background style, as Flickr30K is to COCO in the paper), plus one GQA-like
    compositional question (relation or count) per `bench` image. POPE is built as POPE is:
    per image one present and, per split, one absent object, so each split is 50% "yes".
    With `sources`, the published benchmarks instead, read by their readers (each row's benchmark
    from its source, task and split: genixer.published_benchmarks.benchmark_of)."""
    if config.sources:
        return _collect_files(context, config, settings, "benchmark_sets", "benchmark_quarantine", "_benchmark_sources", _by_benchmark)
    if not settings.table_path("world_scenes").exists():
        raise dg.Failure(description="benchmark_sets: no `sources` configured and no world_scenes to annotate; name the published "
                                     "benchmarks (VQAv2 val, POPE, A-OKVQA val, RefCOCO val/testA/testB) in benchmark_sets.sources")
    p = settings.get_preset()
    scenes = settings.read_table("world_scenes")
    images = scenes[scenes.split.isin(["bench", "heldout"])].to_dict("records")
    bench = [i for i in images if i["split"] == "bench"]
    df = pd.DataFrame(annotate_images(images, [t for t in TASKS if t != "adv_vqa"], per_image=config.per_image or p.bench_per_image,
                                      seed=p.seed + 1)
                      + annotate_pope(bench, seed=p.seed + 3) + annotate_gqa(bench, seed=p.seed + 2))
    path = write_samples(df, settings.table_path("benchmark_sets"))
    return _annotated_result(df, path, {"by_split_task": md_counts(df, "split", "task")})


class CorpusConfig(dg.Config):
    kind: str = Field("world", description="world (the shapes world's corpus split) | folder (images, recursive) | "
                                           "parquet (image bytes or paths) | webdataset (img2dataset tar shards)")
    path: Optional[str] = Field(None, description="folder | parquet / tar files: a folder, a glob, or one file")
    shard_size: int = Field(1000, description="images per shard of a folder (tar and parquet files are a shard each)")
    image_column: Optional[str] = Field(None, description="parquet: the column holding image bytes or paths (default: found)")


def _world_inbox_section(settings: GenixerSettings) -> dict | None:
    """The inbox shards a world corpus holds already (the previous summary's inbox, its shards as the inbox manifest
    records them): kept when corpus_shards is materialised again."""
    path = corpus_summary_path(settings)
    previous = json.loads(path.read_text()) if path.exists() else {}
    section = previous.get("inbox") if previous.get("kind") == "world" else None
    if section is None:
        return None
    manifest = inbox_manifest_path(settings)
    shards = json.loads(manifest.read_text())["shards"] if manifest.exists() else section["shards"]
    return {**section, "shards": shards}


def _corpus_spec(manifest: dict) -> CorpusSpec:
    return CorpusSpec(kind=manifest["kind"], path=manifest["path"], shard_size=manifest["shard_size"],
                      image_column=manifest["image_column"])


def _world_shards(settings: GenixerSettings) -> dict[str, list[str]]:
    """The world's corpus split, every n-th image in shard n of the preset's `n_shards`."""
    if not settings.table_path("world_scenes").exists():
        raise dg.Failure("corpus kind 'world' reads the shapes world's corpus split, and world_scenes has not been materialised: "
                         "materialise it, or set corpus_shards' config kind to folder, parquet or webdataset with a path")
    scenes = settings.read_table("world_scenes")
    corpus = scenes[scenes.split == "corpus"].reset_index(drop=True)
    n = settings.get_preset().n_shards
    return {f"shard_{k:03d}": corpus.image_id[corpus.index % n == k].tolist() for k in range(n)}


@dg.asset(group_name="collection", kinds={"python", "json"}, deps=["world_scenes"])
def corpus_shards(context: dg.AssetExecutionContext, config: CorpusConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """The unlabeled corpus cut into shards (the paper's 1.4M LAION/CC3M/SBU images, generated on
    shard by shard). Each shard becomes a dynamic partition of `image_corpus` and everything
    generated from it; a shard once planned keeps its images, new ones form new shards. Beside the
    world's shards, images dropped in `<data root>/<preset>/inbox` become shards by the `corpus_inbox`
    sensor; materialised again, the world corpus keeps them."""
    inbox = None
    if config.kind == "world":
        shards = _world_shards(settings)
        inbox = _world_inbox_section(settings)
        world_inbox(settings).mkdir(parents=True, exist_ok=True)
    else:
        if config.kind not in CORPUS_KINDS or not config.path:
            raise dg.Failure(f"corpus kind must be world or one of {CORPUS_KINDS} with a path; got {config.kind!r}, path {config.path!r}")
        spec = CorpusSpec(kind=config.kind, path=config.path, shard_size=config.shard_size, image_column=config.image_column)
        shards = plan_shards(spec, corpus_manifest_path(settings)).shards
    manifest = {"kind": config.kind, "path": config.path, "shard_size": config.shard_size, "image_column": config.image_column,
                "shards": shards, **({"inbox": inbox} if inbox else {})}
    path = corpus_summary_path(settings)
    path.write_text(json.dumps(manifest))
    inbox_shards = inbox["shards"] if inbox else {}
    registered = set(context.instance.get_dynamic_partitions(CORPUS_SHARDS))
    new = [k for k in [*shards, *inbox_shards] if k not in registered]
    stale = sorted(registered - set(shards) - set(inbox_shards))  # another corpus's, or another data root's
    context.instance.add_dynamic_partitions(CORPUS_SHARDS, new)
    for k in stale:
        context.instance.delete_dynamic_partition(CORPUS_SHARDS, k)
    return dg.MaterializeResult(metadata={
        "shards": len(shards), "new_shards": dg.MetadataValue.json(new), "removed_stale_partitions": dg.MetadataValue.json(stale),
        "images": sum(len(v) for v in shards.values()),
        "images_per_shard": dg.MetadataValue.md(pd.Series({k: len(v) for k, v in shards.items()}, name="images").rename_axis("shard").reset_index().to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(path)),
        **({"inbox": dg.MetadataValue.path(inbox["path"] if inbox else str(world_inbox(settings))),
            "inbox_shards": dg.MetadataValue.json(sorted(inbox_shards))} if config.kind == "world" else {}),
    })


def read_corpus_manifest(settings: GenixerSettings) -> dict:
    path = corpus_summary_path(settings)
    if not path.exists():
        raise dg.Failure(f"corpus_shards has not been materialised: {path} is missing")
    return json.loads(path.read_text())


@dg.asset(group_name="collection", kinds={"python", "parquet"}, deps=["corpus_shards"], partitions_def=shard_partitions)
def image_corpus(context: dg.AssetExecutionContext, settings: GenixerSettings) -> dg.MaterializeResult:
    """One shard of the unlabeled image corpus to generate on, each image with its content hash,
    width and height. Scene graphs are not carried: only the oracle may see them."""
    manifest = read_corpus_manifest(settings)
    key = context.partition_key
    inbox = manifest.get("inbox") or {"shards": {}}
    if key not in manifest["shards"] and key not in inbox["shards"]:
        raise dg.Failure(f"shard {key!r} is not in the corpus manifest (its shards: {sorted(manifest['shards'])[:5]}...); "
                         "rematerialise corpus_shards")
    quarantine = []
    if key in inbox["shards"]:  # an image dropped in the world's inbox
        shard, quarantine = read_shard(_corpus_spec(inbox), key, inbox_manifest_path(settings), settings.path("corpus_cache"))
    elif manifest["kind"] == "world":
        scenes = settings.read_table("world_scenes").set_index("image_id")
        shard = scenes.loc[manifest["shards"][key], ["image_path", "width", "height", "sha256", "background"]].reset_index()
        shard = shard.assign(shard=key)
    else:
        shard, quarantine = read_shard(_corpus_spec(manifest), key, corpus_manifest_path(settings), settings.path("corpus_cache"))
    path = settings.table_path("image_corpus", key)
    shard.to_parquet(path, index=False)
    qpath = settings.table_path("image_corpus_quarantine", key)
    pd.DataFrame(quarantine, columns=["source", "key", "reason"]).to_parquet(qpath, index=False)
    if shard.empty:
        raise dg.Failure(f"shard {key} has no usable image ({len(quarantine)} quarantined, see {qpath})")
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "images": len(shard),
        "quarantined": len(quarantine),
        "quarantined_by_reason": dg.MetadataValue.md(pd.DataFrame(quarantine).reason.str.split(":").str[0].value_counts()
                                                     .rename_axis("reason").reset_index().to_markdown(index=False)) if quarantine else "none",
        "shard": key,
        "path": dg.MetadataValue.path(str(path)),
        "preview": md_table(shard, 5),
    })
