"""Retraining (group `retraining_and_benchmarks`; the paper's Tab. 5-9): base_mllm trained one more round per recipe, with and
without the generated data: the arms of a seed read the same base-mix batches (a paired design), their added rows on top."""

import shutil
from dataclasses import replace
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer.evaluation import solver_records
from genixer.retraining import RECIPES, EmptyRecipeError, added_rows, arm_plan, base_batches_digest, recipe_records
from genixer.schema import read_applied, read_samples
from genixer_assets.common import GPU, base_path, finetune_role, run_context, table_meta, train_metadata
from genixer_assets.partitions import read_shards, recipe_partitions
from resources import GenixerSettings, MLLMBackend, TrainOverrides


class RetrainConfig(TrainOverrides):
    seeds: Optional[int] = Field(None, description="seeds to train (default: preset retrain_seeds, ablation_seeds for ablations)")
    generated_epochs: Optional[float] = Field(None, description="passes over the generated rows, on top of the base steps (default: preset)")


@dg.asset(group_name="retraining_and_benchmarks", partitions_def=recipe_partitions,
          # every shard of scored_generations_l (the lambda arms re-filter its scores), not the shard named like the recipe
          deps=["base_mllm", "collected_datasets", "held_back_datasets", "world_scenes", "genixer_vqa", "genixer_rec",
                dg.AssetDep("scored_generations_l", partition_mapping=dg.AllPartitionMapping())], **GPU)
def retrained_models(context: dg.AssetExecutionContext, config: RetrainConfig, settings: GenixerSettings,
                     backend: MLLMBackend) -> dg.MaterializeResult:
    """base_mllm trained one more round per recipe (see genixer.retraining): the same initialisation,
    seeds and base-mix batches for every recipe (seed k of every arm reads the same ones, in the same
    order), plus `generated_epochs` passes over the recipe's added rows (read at the lambda genixer_vqa
    applied) spread among them. One model directory per seed; an interrupted seed resumes from its last
    checkpoint. A recipe whose added data set is empty fails, naming the upstream asset."""
    recipe = RECIPES[context.partition_key]
    p, src = run_context(settings)
    collect, val, oracle = src.collect_images, src.heldout, src.oracle
    samples = read_samples(settings.table_path("collected_datasets"))
    samples = samples[samples.image_path.notna() & ~samples.image_id.isin(val)].to_dict("records")
    collected = solver_records(samples)
    captions, caption_source = src.captions(samples, set(collect.image_id) - val)
    if recipe.needs_world and oracle is None:
        raise dg.Failure(description=f"recipe {recipe.name} keeps the rows the world's oracle calls correct: this run has no world "
                                     "(collected_datasets came from published files)")
    scored = read_shards(context, settings, "scored_generations_l") if recipe.added in ("vqa", "raw_vqa", "oracle_vqa", "annotated_vqa") \
        else None
    vqa_path = settings.table_path("genixer_vqa")
    vqa_rows = read_samples(vqa_path) if recipe.added in ("vqa", "raw_vqa", "annotated_vqa") else None
    applied = read_applied(vqa_path) if recipe.added in ("vqa", "raw_vqa") else {}
    held_back = read_samples(settings.table_path("held_back_datasets")) if recipe.added == "annotated_vqa" else None
    rec_rows = read_samples(settings.table_path("genixer_rec")) if recipe.added == "rec" else None
    n_seeds = config.seeds or (p.ablation_seeds if recipe.ablation else p.retrain_seeds)
    epochs = config.generated_epochs if config.generated_epochs is not None else p.generated_epochs
    if recipe.added in ("oracle_vqa", "annotated_vqa") and oracle is not None:  # corpus images: judged by their scenes
        scored = scored.assign(oracle_correct=oracle.column(scored) == "correct")
    # the ceiling matches the perfect judge's row count (genixer_vqa's without an oracle)
    n_annotated = (int(scored[scored.quarantine_reason.isna() & scored.judge_p_yes.notna()].oracle_correct.sum()) if oracle is not None
                   else len(vqa_rows)) if recipe.added == "annotated_vqa" else 0
    rows, first, upstream = [], {}, ""
    start = backend.checkpoint("retraining") or base_path(settings, backend)
    for k in range(n_seeds):
        seed = p.seed + recipe.seed_offset + k
        try:
            s1, s2, upstream = added_rows(recipe, scored, vqa_rows, rec_rows, applied.get("judge_lambda", p.judge_lambda), seed,
                                          held_back, n_annotated)
        except EmptyRecipeError as e:
            raise dg.Failure(description=str(e)) from e
        cfg = config.apply(backend.train_config("retraining", replace(p.retrain, seed=seed)))
        added_recs = [*(recipe_records(s1) if len(s1) else []), *(recipe_records(s2) if len(s2) else [])]
        # seed k's base batches: the same for every arm (baseline_aa's other seeds are the A/A control's other draws)
        records, plan, shares = arm_plan(captions, collected, added_recs, p.caption_share, cfg.steps, cfg.batch_size, epochs, seed,
                                         cfg.grad_accum)
        steps = plan.batches // cfg.grad_accum
        out = settings.model_dir(f"retrained/{recipe.name}/seed_{k}")
        res = finetune_role(backend, "retraining", start, records, replace(cfg, steps=steps), out, plan=plan)
        added = pd.concat([s1, s2]) if len(s1) + len(s2) else pd.DataFrame()
        correct = float((oracle.column(added) == "correct").mean()) if len(added) and oracle is not None else float("nan")
        rows.append({"seed": seed, "judge_lambda": round(applied["judge_lambda"] + recipe.lambda_offset, 3) if applied else None,
                     "stage1_rows": len(s1), "stage2_rows": len(s2), "added_records": len(added_recs), "added_oracle_correct": correct,
                     "steps": steps, "added_steps": plan.added_steps // cfg.grad_accum,
                     "base_batches_sha": base_batches_digest(records, plan, cfg.batch_size),
                     "added_sample_ids": [str(s) for s in added.sample_id] if len(added) else [],
                     "base_steps": cfg.steps, "generated_epochs": epochs if len(added) else 0.0,
                     **{f"share_{n}": v for n, v in shares.items()}, "final_loss": res.final_loss, "train_wall_s": round(res.wall_s, 1),
                     "path": str(out)})
        if k == 0:
            first = train_metadata(res, f"retrained {recipe.name} (seed {seed})")
        context.log.info(f"{recipe.name} seed {seed}: {len(records)} records, {steps} steps, shares {shares}, final loss {res.final_loss:.3f}")
    table = pd.DataFrame(rows).assign(recipe=recipe.name)
    for stale in settings.path("models", "retrained", recipe.name).glob("seed_*"):  # seeds of an earlier, larger run
        if int(stale.name.split("_")[1]) >= n_seeds:
            shutil.rmtree(stale)
    table.to_parquet(settings.table_path("retrained_models", recipe.name), index=False)
    return dg.MaterializeResult(metadata={
        **table_meta(settings.table_path("retrained_models", recipe.name)),
        "recipe": recipe.name, "what": recipe.what, "seeds": n_seeds, "upstream": upstream or "none",
        "captions": len(captions), "caption_source": caption_source,
        "initialised_from": start, "steps_per_seed": int(table.steps.iloc[0]),
        "judge_lambda_applied": applied.get("judge_lambda", "n/a"),
        "added_rows_stage1": int(table.stage1_rows.iloc[0]), "added_rows_stage2": int(table.stage2_rows.iloc[0]),
        "added_steps": int(table.added_steps.iloc[0]), "paired": "seed k of every arm reads the same base-mix batches in the same order",
        "added_oracle_correct": float(table.added_oracle_correct.iloc[0]),
        "seeds_table": dg.MetadataValue.md(table.drop(columns=["path", "added_sample_ids"]).to_markdown(index=False, floatfmt=".3f")),
        "learning_curves_seed0": first["learning_curves"],
        "tokens_per_s": first["tokens_per_s"],
        "train_wall_s_total": float(table.train_wall_s.sum()),
    })
