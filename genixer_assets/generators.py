"""Step (iii): empowering MLLMs. base_mllm (the LLaVA-1.5/Shikra stand-in), and its fine-tunes
into the two data generators, Genixer_L (general tasks) and Genixer_S (grounding tasks)."""

import json
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from genixer import finetune as gen
from genixer.evaluation import generator_summary
from genixer.preview import preview_png
from genixer.schema import read_samples
from genixer.tasks import GENERAL_TASKS, GROUNDING_TASKS
from genixer_assets.common import (GPU, base_path, finetune_role, generator_path, md_figure, md_table, replay_mix, run_context,
                                   train_metadata)
from resources import GenixerSettings, MLLMBackend, TrainOverrides


class BaseConfig(TrainOverrides):
    caption_share: Optional[float] = Field(None, description="share of batches that are dense captions (default: preset)")
    vision_objective: Optional[str] = Field(None, description="vision pre-stage: 'patch_labels' or 'contrastive' (default: preset)")


@dg.asset(group_name="generators", deps=["collected_datasets", "instruction_templates", "world_scenes"], **GPU)
def base_mllm(config: BaseConfig, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """The stand-in for pretrained LLaVA-1.5 / Shikra: the embedded LLaVA (CLIP vision tower +
    Llama) trained from scratch as a problem solver on all nine collected tasks. With
    `backend.base.checkpoint` set, that checkpoint is used instead (and only evaluated).
    Without the world, captions are the collected region descriptions, the vision pre-stage is the
    contrastive one on them (patch labels need scene graphs), and held-out answers are checked
    against the collected answers instead of the oracle."""
    p, src = run_context(settings)
    collect, val = src.collect_images, src.heldout
    collected = read_samples(settings.table_path("collected_datasets"))
    samples = collected[collected.image_path.notna()].to_dict("records")  # text-only rows: no image to train on
    train_s = [s for s in samples if s["image_id"] not in val]
    val_s = [s for s in samples if s["image_id"] in val]
    meta = {"text_only_left_out": int(collected.image_path.isna().sum())}
    if backend.checkpoint("base"):
        meta["source"] = backend.checkpoint("base")
    else:
        templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
        vocab = gen.vocabulary_texts(samples, templates["general"], templates["phrasings"])
        train_ids = set(collect.image_id) - val
        train_images = collect[collect.image_id.isin(train_ids)].to_dict("records")
        captions, caption_source = src.captions(samples, train_ids)
        share = config.caption_share if config.caption_share is not None else p.caption_share
        meta.update(captions=len(captions), caption_source=caption_source, caption_share_applied=share if captions else 0.0)
        vision_init = None
        objective = config.vision_objective or p.vision_objective
        # patch labels need the source's labeller (the world's scene graphs), the contrastive objective its captions
        missing = not captions if objective == "contrastive" else src.patch_labels is None
        if p.vision_pretrain is not None and missing:
            meta["vision_objective"] = f"none: {objective} needs " + ("the world's scene graphs" if objective != "contrastive" else "captions")
        elif p.vision_pretrain is not None:
            vision_init = settings.model_dir("base_mllm_vision") / objective
            val_images = collect[collect.image_id.isin(val)].to_dict("records")
            pre, scores = gen.vision_pretrain(train_images, p.mllm, p.vision_pretrain, vision_init, objective, val_images,
                                              captions=captions, patch_labels=src.patch_labels)
            meta["vision_objective"] = objective
            meta.update({f"vision_pretrain_{k}": v for k, v in train_metadata(pre, f"vision pre-stage ({objective})").items()})
            meta.update({f"vision_heldout_{k}": v for k, v in scores.items()})
        res = gen.train_base_mllm(train_s, captions, share, vocab, p.mllm, config.apply(backend.train_config("base", p.base_train)),
                                  settings.model_dir("base_mllm"),
                                  vision_init=vision_init)
        meta.update(train_metadata(res, "base_mllm"))
    model, processor = backend.load(base_path(settings, backend), "base")
    bs = backend.batch_size("base", 32)
    ev, prior = src.evaluate_solver(model, processor, val_s, batch_size=bs), src.prior_baseline(train_s, val_s)
    meta["checked_against"] = src.checked_against
    if len(prior) != len(ev):
        raise dg.Failure(description=f"base_mllm evaluation: {len(ev)} answers but {len(prior)} blind-prior answers")
    # The blind prior's verdict on the same question, row by row: the report's margin over the prior.
    ev = ev.assign(prior_correct=prior.correct.to_numpy(dtype=bool))
    ev.to_parquet(settings.table_path("base_mllm_eval"), index=False)
    table = pd.DataFrame({"accuracy": ev.groupby("task").correct.mean(), "blind_prior": prior.groupby("task").correct.mean()}).reset_index()
    return dg.MaterializeResult(metadata={
        **meta,
        "path": dg.MetadataValue.path(base_path(settings, backend)),
        "heldout_accuracy": float(ev.correct.mean()) if len(ev) else float("nan"),
        "blind_prior_accuracy": float(prior.correct.mean()) if len(prior) else float("nan"),
        "accuracy_by_task": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
        "answers": md_table(ev[["task", "question", "truth", "answer", "correct"]].groupby("task").head(1), 9),
    })


def _generator_eval(settings, backend, name: str, tasks, p, src) -> dict:
    """Generate on held-out collect images, type-specific and type-agnostic; the data source judges (the oracle; without
    the world, parsed and typed only)."""
    collect, val = src.collect_images, src.heldout
    model, processor = backend.load(generator_path(settings, backend, name), name)
    bs = backend.batch_size(name, 32)
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    images = collect[collect.image_id.isin(val)].to_dict("records")
    if not images:
        raise dg.Failure(description=f"no held-out image to evaluate {name} on ({len(collect)} collected images)")
    spec = src.evaluate_generator(model, processor, images, list(tasks), templates["general"], True, p.eval_sampling, seed=p.seed,
                                  batch_size=bs)
    agn = src.evaluate_generator(model, processor, images, list(tasks), templates["general"], False, p.eval_sampling, seed=p.seed + 1,
                                 batch_size=bs)
    ev = pd.concat([spec.assign(mode="type_specific"), agn.assign(mode="type_agnostic")], ignore_index=True)
    ev.drop(columns=["turns"]).to_parquet(settings.table_path(f"{name}_eval"), index=False)
    summary = generator_summary(ev)
    by_path = {r["image_id"]: r for r in images}
    shown = [{"image_path": by_path[r.image_id]["image_path"], "task": r.requested_task or f"agnostic->{r.task_of}",
              "turns": r.turns or [{"question": r.text[:120], "answer": "(unparsed)"}], "boxes": []}
             for r in ev.groupby("requested_task").head(1).itertuples()]
    agn_mix = summary.get("agnostic_mix", {})
    return {
        "parse_rate": summary["parse_rate"],
        "type_accuracy": summary.get("type_accuracy", 0.0),
        "correct_share_type_specific": float((spec.oracle == "correct").mean()) if src.oracle is not None else "no oracle (no world)",
        "per_task": dg.MetadataValue.md(summary["per_task"].to_markdown(index=False, floatfmt=".3f")),
        "type_agnostic_mix": dg.MetadataValue.md(pd.Series(agn_mix, name="outputs").rename_axis("task").reset_index().to_markdown(index=False)),
        "generations": md_table(ev[["mode", "requested_task", "text", "oracle"]].groupby(["mode", "requested_task"]).head(1), 12),
        **md_figure("generations_preview", preview_png(shown)),
        "eval_images": len(images),
    }


class GeneratorConfig(TrainOverrides):
    replay_solver_share: Optional[float] = Field(None, description="share of batches replaying base_mllm's question -> answer data (default: preset)")
    replay_caption_share: Optional[float] = Field(None, description="share of batches replaying base_mllm's dense captions (default: preset)")


def _replay(settings: GenixerSettings, config: GeneratorConfig, preset_replay: tuple[float, float], src):
    """replay_mix with the config's shares, else the preset's."""
    solver_share = preset_replay[0] if config.replay_solver_share is None else config.replay_solver_share
    caption_share = preset_replay[1] if config.replay_caption_share is None else config.replay_caption_share
    return replay_mix(settings, solver_share, caption_share, src)


@dg.asset(group_name="generators", deps=["base_mllm", "templated_instructions"], **GPU)
def genixer_l(config: GeneratorConfig, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """Genixer_L: base_mllm fine-tuned to generate Common VQA, Adv VQA, MC VQA and MD data
    (the paper's LLaVA-1.5-based generator). With `backend.genixer_l.checkpoint` set, that
    checkpoint is used instead (and only evaluated)."""
    p, src = run_context(settings)
    val = src.heldout
    if backend.checkpoint("genixer_l"):
        meta = {"source": backend.checkpoint("genixer_l")}
    else:
        recs = settings.read_table("templated_instructions")
        recs = recs[(recs.generator == "genixer_l") & ~recs.image_id.isin(val) & recs.image_path.notna()].to_dict("records")  # text-only: no image
        mixed, weights, shares = _replay(settings, config, p.l_replay, src)(recs)
        res = finetune_role(backend, "genixer_l", base_path(settings, backend), mixed, config.apply(backend.train_config("genixer_l", p.l_train)),
                            settings.model_dir("genixer_l"), weights)
        meta = {**train_metadata(res, "genixer_l"), "records": len(recs), "batch_shares": shares}
    return dg.MaterializeResult(metadata={
        **meta,
        **_generator_eval(settings, backend, "genixer_l", GENERAL_TASKS, p, src),
        "path": dg.MetadataValue.path(generator_path(settings, backend, "genixer_l")),
    })


@dg.asset(group_name="generators", deps=["base_mllm", "templated_instructions"], **GPU)
def genixer_s(config: GeneratorConfig, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """Genixer_S: base_mllm fine-tuned in two phases (REC+REG; then PointQA, QCA, RD added and
    REC/REG reduced) to generate grounding data (the paper's Shikra-based generator). With
    `backend.genixer_s.checkpoint` set, that checkpoint is used instead (and only evaluated)."""
    p, src = run_context(settings)
    val = src.heldout
    if backend.checkpoint("genixer_s"):
        return dg.MaterializeResult(metadata={
            "source": backend.checkpoint("genixer_s"),
            **_generator_eval(settings, backend, "genixer_s", GROUNDING_TASKS, p, src),
            "path": dg.MetadataValue.path(backend.checkpoint("genixer_s")),
        })
    recs = settings.read_table("templated_instructions")
    recs = recs[(recs.generator == "genixer_s") & ~recs.image_id.isin(val) & recs.image_path.notna()]
    phase1, phase2 = (recs[recs.phase == k].to_dict("records") for k in (1, 2))
    out = settings.model_dir("genixer_s")
    mix = _replay(settings, config, p.s_replay, src)
    (mixed1, w1, shares), (mixed2, w2, _) = mix(phase1), mix(phase2)
    r1 = finetune_role(backend, "genixer_s", base_path(settings, backend), mixed1, config.apply(backend.train_config("genixer_s", p.s_train[0])),
                       out / "phase1", w1)
    r2 = finetune_role(backend, "genixer_s", out / "phase1", mixed2, config.apply(backend.train_config("genixer_s", p.s_train[1])), out, w2)
    meta1 = train_metadata(r1, "genixer_s phase 1")
    return dg.MaterializeResult(metadata={
        **train_metadata(r2, "genixer_s phase 2"), "batch_shares": shares,
        "phase1_final_loss": meta1["final_loss"], "phase1_steps": meta1["steps"], "phase1_wall_s": meta1["train_wall_s"],
        "phase1_learning_curves": meta1["learning_curves"],
        "records_phase1": len(phase1), "records_phase2": len(phase2),
        **_generator_eval(settings, backend, "genixer_s", GROUNDING_TASKS, p, src),
        "path": dg.MetadataValue.path(str(out)),
    })
