"""The closed loop (group `loop`; MLLM-DataEngine, seed 003), one partition per round: the round's model evaluated on
the development split with every question typed, the bad-case pool, and Adaptive Bad-case Sampling's queries for the
round's targeted generation, beside a uniform-sampling control (genixer.loop). Built so far: round 1 (base_mllm's
evaluation and queries); targeted generation, correction and the round's training are not built yet."""

import json
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer import region_clip
from genixer.loop import DEV_SPLIT, bad_cases, sample_queries, sampling_weights, stop_reason, type_table, uniform_weights
from genixer.schema import read_samples
from genixer.tasks import GENERAL_TASKS
from genixer_assets.common import GPU, base_path, run_context, table_meta
from genixer_assets.partitions import loop_rounds, read_shards, round_index
from resources import GenixerSettings, MLLMBackend



def development_questions(settings: GenixerSettings, src) -> pd.DataFrame:
    """The development split: the general-task samples of the collected images held out of every training set
    (``src.heldout``, the generators' evaluation images). The report scores benchmark_sets, never these."""
    collected = read_samples(settings.table_path("collected_datasets"))
    return collected[collected.image_id.isin(src.heldout) & collected.task.isin(GENERAL_TASKS) & collected.image_path.notna()]


class LoopEvaluationConfig(dg.Config):
    max_rounds: Optional[int] = Field(None, description="the stopping rule's maximum rounds (default: preset loop_max_rounds)")


@dg.asset(group_name="loop", partitions_def=loop_rounds, deps=["base_mllm", "collected_datasets"], **GPU)
def loop_evaluation(context: dg.AssetExecutionContext, config: LoopEvaluationConfig, settings: GenixerSettings,
                    backend: MLLMBackend) -> dg.MaterializeResult:
    """Round r's model (round 1: base_mllm) on the development split: each general-task question answered greedily,
    checked (the world's oracle; published data: the collected answer) and typed (the world's grammar kind; a
    published record's carried type, e.g. VQAv2's question_type, else its first words); per-type accuracy with its
    Wilson 95% interval; the wrong answers are the round's bad-case pool; the stopping rule's verdict."""
    p, src = run_context(settings)
    r = round_index(context.partition_key)
    dev = development_questions(settings, src)
    if not len(dev):
        raise dg.Failure(description="loop_evaluation: the development split is empty (no general-task sample on the collected "
                                     f"images held out of training; the preset's val_images is {p.val_images})")
    model, processor = backend.load(base_path(settings, backend), "base")
    ev = src.evaluate_solver(model, processor, dev.to_dict("records"), batch_size=backend.batch_size("base", 32))
    info = dev.set_index("sample_id")
    extra = info["extra"] if "extra" in info else pd.Series(None, index=info.index)
    ev = ev.assign(image_id=info.image_id.reindex(ev.sample_id).to_numpy(), image_path=info.image_path.reindex(ev.sample_id).to_numpy(),
                   split=DEV_SPLIT, round=r,
                   question_type=[src.question_type(t, q, extra.get(s)) for t, q, s in zip(ev.task, ev.question, ev.sample_id)])
    path = settings.table_path("loop_evaluation", context.partition_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    ev.to_parquet(path, index=False)
    table = type_table(ev)
    pool = bad_cases(ev)
    max_rounds = config.max_rounds or p.loop_max_rounds
    why = stop_reason(r, max_rounds, len(pool), None)
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "round": r, "model": base_path(settings, backend), "checked_against": src.checked_against,
        "questions": len(ev), "accuracy": float(ev.correct.mean()), "bad_cases": len(pool), "question_types": len(table),
        "per_type": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
        "stop": why or f"go on (round {r} of at most {max_rounds}); the round's training is not built yet, so no next round",
    })


class LoopQueriesConfig(dg.Config):
    queries: Optional[int] = Field(None, description="queries per arm (default: preset loop_queries)")
    weight_floor: Optional[float] = Field(None, description="floor on a type's score in the inverse weights (default: preset)")


@dg.asset(group_name="loop", partitions_def=loop_rounds,
          deps=["loop_evaluation", "region_clip_model", dg.AssetDep("image_corpus", partition_mapping=dg.AllPartitionMapping())], **GPU)
def loop_queries(context: dg.AssetExecutionContext, config: LoopQueriesConfig, settings: GenixerSettings,
                 backend: MLLMBackend) -> dg.MaterializeResult:
    """Adaptive Bad-case Sampling for round r: `targeted` queries draw a question type with probability inversely
    proportional to its development score (floored), the `uniform` control arm draws types uniformly; each query
    shows two bad cases of its type and asks about a corpus image, half at random and half the one most similar to
    the bad cases' images (the region CLIP's image embeddings). Weights that cannot be used fall back to uniform
    and say so; an empty bad-case pool gives no query and says why."""
    p, _ = run_context(settings)
    key = context.partition_key
    ev = pd.read_parquet(settings.table_path("loop_evaluation", key))
    table, pool = type_table(ev), bad_cases(ev)
    floor = config.weight_floor if config.weight_floor is not None else p.loop_weight_floor
    n = config.queries or p.loop_queries
    targeted, note = sampling_weights(table, floor)
    corpus = read_shards(context, settings, "image_corpus").reset_index(drop=True)
    corpus_emb = pool_emb = None
    if len(targeted) and len(corpus):
        cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
        model, preprocess, _ = region_clip.load_region_clip(cal["model"], device=str(backend.torch_device("region_clip")),
                                                            weights=cal.get("weights"))
        bs = backend.batch_size("region_clip", 64)
        corpus_emb = region_clip.image_embeddings(model, preprocess, corpus.image_path.tolist(), bs)
        pool_emb = region_clip.image_embeddings(model, preprocess, pool.image_path.tolist(), bs)
    arms = []
    for arm, w, seed in (("targeted", targeted, p.seed), ("uniform", uniform_weights(table), p.seed + 1)):
        q = sample_queries(w, pool, corpus, n, seed, corpus_emb, pool_emb)
        arms.append(q.assign(arm=arm, round=round_index(key), p_type=q.question_type.map(w).astype(float), weight_floor=floor,
                             image_path=q.image_id.map(dict(zip(corpus.image_id, corpus.image_path)))))
    queries = pd.concat(arms, ignore_index=True)
    path = settings.table_path("loop_queries", key)
    path.parent.mkdir(parents=True, exist_ok=True)
    queries.to_parquet(path, index=False)
    weights = table.assign(targeted=table.question_type.map(targeted).fillna(0.0),
                           uniform=table.question_type.map(uniform_weights(table)).fillna(0.0))
    drawn = queries.groupby(["arm", "question_type"]).size().unstack(0, fill_value=0) if len(queries) else pd.DataFrame()
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "round": round_index(key), "queries_per_arm": n, "weights_rule": note, "weight_floor": floor,
        "bad_cases": len(pool), "corpus_images": len(corpus),
        "weights": dg.MetadataValue.md(weights[["question_type", "accuracy", "bad_cases", "targeted", "uniform"]]
                                       .to_markdown(index=False, floatfmt=".3f")),
        "drawn": dg.MetadataValue.md(drawn.reset_index().to_markdown(index=False)) if len(drawn) else "no query: " + note,
    })
