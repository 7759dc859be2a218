"""Step (iv), filtering: the judge MLLM (Fuyu-8B's role), the region CLIP (OpenCLIP-L's role),
the scored shards and the two filtered recipes, Genixer-915K (`genixer_vqa`) and
Genixer-350K (`genixer_rec`)."""

import json
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from genixer import filters, judge, region_clip
from genixer.corpus_generation import checkpoint_id
from genixer.decoding import score_yes_no
from genixer.finetune import vocabulary_texts
from genixer.plots import curves_png
from genixer.preview import preview_png
from genixer.schema import read_applied, read_samples, write_samples
from genixer.tasks import GENERAL_TASKS
from genixer_assets.common import (GATE_FILE, GPU, data_source, judge_auc_floor, judge_gate, md_counts, md_figure,
                                   question_phrasings, run_context, sample_preview, table_meta, train_metadata)
from genixer_assets.partitions import held_shards, read_shards, shard_partitions
from resources import GenixerSettings, MLLMBackend, TrainOverrides


def _collected(settings: GenixerSettings):
    """(preset, the data source, the collected samples with an image). Text-only rows (no image) are left out: the
    judge and the region CLIP read an image."""
    p, src = run_context(settings)
    samples = read_samples(settings.table_path("collected_datasets"))
    samples = samples[samples.image_path.notna()].to_dict("records")
    return p, src, samples


class JudgeConfig(TrainOverrides):
    min_heldout_auc: Optional[float] = Field(None, description=(
        "the held-out AUC the blocking check judge_mllm_beats_chance requires before the judge filters anything (default: the "
        "preset's judge_min_auc, else the AUC a scorer blind to the labels exceeds with probability < 5% on this held-out set); "
        "0 turns the gate off"))


@dg.asset(group_name="filtering", deps=["collected_datasets", "instruction_templates", "world_scenes"], **GPU)
def judge_mllm(config: JudgeConfig, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """The third-party judge (Fuyu-8B in the paper): a Fuyu model of a different architecture
    from the generators, trained to say Yes to true question/answer pairs and No to corrupted
    ones, the records the data source gives (its judge_records): with the world, the corruptions come from its
    grammar and the oracle confirms them; from published data (no world), they are wrong by construction
    (genixer.sources.negatives: another answer of the same question kind, another MC option, yes/no flipped, a box
    moved or another object's box), held-out records from held-out images. With `backend.judge.checkpoint` set, that checkpoint is
    used instead. Before anything is filtered, the blocking check judge_mllm_beats_chance requires its held-out AUC
    to reach `min_heldout_auc` (JudgeConfig; the floor applied is written to judge_mllm_gate.json)."""
    p, src, samples = _collected(settings)
    val = src.heldout
    train_s = [s for s in samples if s["image_id"] not in val and s["task"] in GENERAL_TASKS]
    val_s = [s for s in samples if s["image_id"] in val and s["task"] in GENERAL_TASKS]
    meta = {"records_from": src.judge_records_from, "heldout_images": len(val)}
    path = backend.checkpoint("judge") or str(settings.model_dir("judge_mllm"))
    if backend.checkpoint("judge"):
        meta["source"] = path
    else:
        templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
        records = src.judge_records(train_s, p.seed)
        if not records:
            raise dg.Failure(description=f"no judge training record: none of the {len(train_s)} training samples of the general "
                                         f"tasks {GENERAL_TASKS} has a corruption")
        res = judge.train_judge(records, vocabulary_texts(samples, templates["general"], templates["phrasings"]), p.judge,
                                config.apply(backend.train_config("judge", p.judge_train)), path)
        rec = pd.DataFrame(records)
        meta.update(train_metadata(res, "judge_mllm"), records=len(records), yes_share=float((rec.target == judge.YES).mean()),
                    corruptions=md_counts(rec, "corruption"))
    held = pd.DataFrame(src.judge_records(val_s, p.seed + 1))
    if held.empty:
        held = pd.DataFrame(columns=["image_path", "prompt", "target", "corruption", "p_yes", "label"])
        meta["heldout"] = f"no held-out record ({len(val_s)} held-out samples of the general tasks): nothing to evaluate"
    else:
        model, processor = backend.load(path, "judge")
        p_yes = score_yes_no(model, processor, held.image_path.tolist(), held.prompt.tolist(), yes=judge.YES, no=judge.NO,
                             batch_size=backend.batch_size("judge", 16))
        held = held.assign(p_yes=p_yes, label=held.target == judge.YES)
    held.to_parquet(settings.table_path("judge_mllm_eval"), index=False)
    n_true = int(held.label.astype(bool).sum()) if len(held) else 0
    floor, source = judge_auc_floor(config.min_heldout_auc, settings, n_true, len(held) - n_true)
    heldout_auc = judge.auc(held.p_yes, held.label) if len(held) else float("nan")
    settings.path("tables", GATE_FILE).write_text(json.dumps({"min_auc": floor, "source": source, "auc": heldout_auc,
                                                              "n_true": n_true, "n_corrupted": len(held) - n_true}, indent=1))
    by_kind = held.groupby("corruption").agg(n=("p_yes", "size"), mean_p_yes=("p_yes", "mean")).reset_index()
    return dg.MaterializeResult(metadata={
        **meta,
        "path": dg.MetadataValue.path(path),
        "heldout_records": len(held),
        "heldout_auc": heldout_auc,
        "heldout_auc_floor": floor, "heldout_auc_floor_source": source,
        "heldout_accuracy_at_0.5": float(((held.p_yes >= 0.5) == held.label).mean()) if len(held) else float("nan"),
        "mean_p_yes_by_corruption": dg.MetadataValue.md(by_kind.to_markdown(index=False, floatfmt=".3f")),
        "auc_by_corruption": dg.MetadataValue.md(judge.auc_by_corruption(held).to_markdown(index=False, floatfmt=".3f")) if len(held) else "none",
    })


class RegionClipConfig(TrainOverrides):
    clip_threshold_mode: str = Field("auto", description=(
        "auto (calibrate on held-out pairs; without the world, the fixed value when there are fewer than "
        "min_calibration_pairs held-out true pairs) | calibrate | fixed"))
    clip_threshold_value: float = Field(region_clip.PAPER_CLIP_THRESHOLD, description="the fixed threshold (the paper's 0.6)")
    min_calibration_pairs: int = Field(20, description="held-out true pairs (and as many negatives) auto needs to calibrate")


CLIP_THRESHOLD_MODES = ("auto", "calibrate", "fixed")


@dg.asset(group_name="filtering", deps=["collected_datasets", "instruction_templates", "world_scenes"], **GPU)
def region_clip_model(config: RegionClipConfig, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """The region CLIP (OpenCLIP ViT-L/14 in the paper): an open_clip model trained
    contrastively on (region crop, expression) pairs from the collected REC/REG data, with its
    keep threshold calibrated on held-out pairs (true expression vs another object's
    expression or a shifted box). Without the world the other objects are the held-out samples'
    own (expression, box) pairs. `clip_threshold_mode`: fixed applies `clip_threshold_value` (the
    paper's 0.6); auto falls back to it, with a warning, when held-out pairs are too few."""
    if config.clip_threshold_mode not in CLIP_THRESHOLD_MODES:
        raise dg.Failure(f"clip_threshold_mode must be one of {CLIP_THRESHOLD_MODES}, not {config.clip_threshold_mode!r}")
    p, src, samples = _collected(settings)
    val = src.heldout
    phrasings = question_phrasings(settings)
    out = settings.model_dir("region_clip")
    meta = {}
    role = backend.role("region_clip")
    weights = role.weights
    if role.checkpoint:
        out, meta["source"] = role.checkpoint, role.checkpoint + (f" + {weights}" if weights else "")
    else:
        weights = None
        pairs = region_clip.region_pairs([s for s in samples if s["image_id"] not in val], phrasings, reading=src.rec_reading)
        if not pairs:
            raise dg.Failure(description="no (region, expression) pair in the collected training data: the region CLIP needs REC or REG samples")
        res = region_clip.train_region_clip(pairs, p.clip, config.apply(backend.train_config("region_clip", p.clip_train)), out)
        meta.update(train_metadata(res, "region_clip"), pairs=len(pairs))
    model, preprocess, tokenizer = region_clip.load_region_clip(out, device=str(backend.torch_device("region_clip")), weights=weights)
    held = [s for s in samples if s["image_id"] in val]
    pos = region_clip.region_pairs(held, phrasings, reading=src.rec_reading)
    # negatives: other objects of the same image (the data source's candidates: the world's scene, or the held-out samples'
    # own pairs), shifted boxes
    neg = region_clip.negative_pairs(pos, src.region_candidates(held), p.seed)
    sp = region_clip.score_pairs(model, preprocess, tokenizer, pos) if pos else np.array([])
    sn = region_clip.score_pairs(model, preprocess, tokenizer, neg) if neg else np.array([])
    mode, warning = config.clip_threshold_mode, None
    if mode == "auto":
        enough = len(sp) >= config.min_calibration_pairs and len(sn) >= config.min_calibration_pairs
        mode = "calibrate" if src.oracle is not None or enough else "fixed"  # the world's scenes: always calibrated
        if mode == "fixed":
            warning = (f"only {len(sp)} held-out true pairs and {len(sn)} negatives (< {config.min_calibration_pairs}): "
                       f"the fixed threshold {config.clip_threshold_value} is applied, not a calibrated one; its scale may not "
                       "suit this model (see region_clip.fixed_threshold)")
    if mode == "calibrate":
        if not len(sp) or not len(sn):
            raise dg.Failure(description=f"cannot calibrate the CLIP threshold: {len(sp)} held-out true pairs, {len(sn)} negatives; "
                                         "set clip_threshold_mode: fixed")
        cal = region_clip.calibrate_threshold(sp, sn)
    else:
        cal = region_clip.fixed_threshold(config.clip_threshold_value, *((sp, sn) if len(sp) and len(sn) else (None, None)))
    cal = {**cal, "mode": mode, "requested_mode": config.clip_threshold_mode, **({"warning": warning} if warning else {})}
    settings.path("tables", "region_clip_calibration.json").write_text(json.dumps({**cal, "model": str(out), "weights": weights}, indent=1))
    hist = {"true pairs": _hist(sp), "negatives": _hist(sn)}
    return dg.MaterializeResult(metadata={
        **meta,
        "path": dg.MetadataValue.path(str(out)),
        "clip_threshold_mode": mode,
        "clip_threshold": float(cal["threshold"]),
        "heldout_true_pairs": int(len(sp)), "heldout_negatives": int(len(sn)),
        **({"warning": warning} if warning else {}),
        **{f"calibration_{k}": v if isinstance(v, str) else float(v) for k, v in cal.items() if k != "warning"},
        **(md_figure("score_histograms", curves_png(hist, "held-out cosine similarity", ylabel="pairs", xlabel="cosine"))
           if len(sp) or len(sn) else {"score_histograms": "no held-out pair"}),
    })


def _hist(scores: np.ndarray) -> list[tuple[float, float]]:
    counts, edges = np.histogram(scores, bins=20, range=(-1, 1))
    return list(zip(((edges[:-1] + edges[1:]) / 2).tolist(), counts.tolist()))


# A shard is rescored when its raw generations change; the recipes refilter when any shard does
# (run by the automation daemon under `make dev`).
EAGER = dg.AutomationCondition.eager()


@dg.asset(group_name="filtering", partitions_def=shard_partitions, deps=["raw_generations_l", "judge_mllm"],
          automation_condition=EAGER, **GPU)
def scored_generations_l(context: dg.AssetExecutionContext, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """Every raw Genixer_L row of the shard with the judge's P(Yes): softmax over the Yes/No
    logits, one forward pass per pair (MC letters replaced by option text, MD split into turns,
    the sample's score the lowest turn score). A NaN score is quarantined. A judge that failed its gate
    (judge_mllm_beats_chance) scores nothing: the step fails with the gate's message."""
    shard = context.partition_key
    passed, why, gate = judge_gate(settings)
    if not passed:
        raise dg.Failure(description=f"judge_mllm did not pass judge_mllm_beats_chance: {why}",
                         metadata={k: v for k, v in gate.items() if isinstance(v, (int, float, str))})
    raw = read_samples(settings.table_path("raw_generations_l", shard))
    judge_dir = backend.checkpoint("judge") or settings.model_dir("judge_mllm")
    model, processor = backend.load(judge_dir, "judge")
    ok = raw.quarantine_reason.isna()
    scores = judge.score_samples(model, processor, raw[ok], batch_size=backend.batch_size("judge", 32)) if ok.any() else np.array([])
    raw.loc[ok, "judge_p_yes"] = scores
    nan = ok & raw.judge_p_yes.isna()
    raw.loc[nan, "quarantine_reason"] = "judge: no judgeable question/answer pair (NaN score)"
    path = write_samples(raw, settings.table_path("scored_generations_l", shard), lineage=True,
                         applied={"judge_checkpoint": checkpoint_id(judge_dir)})
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "rows": len(raw), "scored": int(ok.sum() - nan.sum()), "quarantined": int(raw.quarantine_reason.notna().sum()),
        "mean_p_yes": float(np.nanmean(scores)) if len(scores) else float("nan"),
        "path": dg.MetadataValue.path(str(path)),
    })


class VqaFilterConfig(dg.Config):
    judge_lambda: Optional[float] = Field(None, description="keep rows with P(Yes) >= lambda (default: preset)")
    hard_band_share: Optional[float] = Field(None, description="hard-band sample size as a share of the lambda rows (default: preset)")


def _scored_preview(kept: pd.DataFrame, score: str, n: int = 6) -> dict:
    """`kept_preview` (and its thumbnail): kept rows drawn with their boxes and scores, the best-scored row of each
    task, then the lowest-scored rows that still passed (where a filter's mistakes would be)."""
    if kept.empty:
        return {"kept_preview": "no row kept"}
    best = kept.sort_values(score, ascending=False).groupby("task").head(1)
    low = kept.drop(best.index).sort_values(score).head(max(n - len(best), 0))
    return md_figure("kept_preview", preview_png(pd.concat([best, low]).head(n).to_dict("records")), f"kept rows with their {score}")


def _applied_across_shards(context, settings: GenixerSettings, name: str, key: str):
    """A setting every scored shard the instance holds recorded (every shard file, when it holds none, as read_shards
    reads them): the one value, or the sorted distinct values."""
    keys = held_shards(context.instance)
    files = sorted(settings.path("tables", name).glob("*.parquet")) if keys is None else \
        [f for f in (settings.table_path(name, k) for k in keys) if f.exists()]
    values = sorted({json.dumps(read_applied(f).get(key)) for f in files})
    values = [json.loads(v) for v in values]
    return values[0] if len(values) == 1 else values


@dg.asset(group_name="filtering", deps=["scored_generations_l"], kinds={"parquet"}, automation_condition=EAGER)
def genixer_vqa(context: dg.AssetExecutionContext, config: VqaFilterConfig, settings: GenixerSettings) -> dg.MaterializeResult:
    """The Genixer-915K recipe: generated general-task data kept by the judge (P(Yes) >= λ),
    plus a small fixed sample of the hard band 0.5 <= P(Yes) < 0.7, flagged for fine-tuning, as in
    the paper. The λ and band applied travel in the file's metadata to every asset downstream."""
    p = settings.get_preset()
    lam = config.judge_lambda if config.judge_lambda is not None else p.judge_lambda
    share = config.hard_band_share if config.hard_band_share is not None else p.hard_band_share
    scored = read_shards(context, settings, "scored_generations_l")
    kept = filters.select_vqa(scored, lam, share, seed=p.seed)
    applied = {"judge_lambda": lam, "hard_band_share": share, "hard_band": list(filters.HARD_BAND),
               "judge_checkpoint": _applied_across_shards(context, settings, "scored_generations_l", "judge_checkpoint")}
    path = write_samples(kept, settings.table_path("genixer_vqa"), lineage=True, applied=applied)
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        **_scored_preview(kept, "judge_p_yes"),
        "rows": len(kept), "raw_rows": len(scored), "lambda": lam, "hard_band_rows": int(kept.hard_band.sum()),
        "applied": dg.MetadataValue.json(applied),
        "yield_by_lambda": dg.MetadataValue.md(filters.vqa_yields(scored).to_markdown(index=False, floatfmt=".3f")),
        "by_task": md_counts(kept, "task") if len(kept) else "none",
        "preview": sample_preview(kept, 8) if len(kept) else "none",
        "path": dg.MetadataValue.path(str(path)),
    })


class RecFilterConfig(dg.Config):
    clip_threshold: Optional[float] = Field(None, description="keep crops with cosine >= this (default: the calibrated threshold)")


@dg.asset(group_name="filtering", partitions_def=shard_partitions, deps=["raw_generations_s", "region_clip_model", "instruction_templates"],
          automation_condition=EAGER, **GPU)
def scored_generations_s(context: dg.AssetExecutionContext, config: RecFilterConfig, settings: GenixerSettings,
                         backend: MLLMBackend) -> dg.MaterializeResult:
    """Every raw Genixer_S row of the shard through the coarse-to-fine REC filter, each row
    keeping the step that dropped it: (1) malformed text or coordinates, (2) boxes under the
    paper's 50 px scaled to the image, (3) region-CLIP cosine below the threshold. A REC question's
    expression is read with the REC phrasings in use (instruction_templates.json's, plus the
    published data's REC_QUESTION)."""
    shard = context.partition_key
    cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
    threshold = config.clip_threshold if config.clip_threshold is not None else cal["threshold"]
    mode = "config" if config.clip_threshold is not None else cal.get("mode", "calibrate")
    rows = filters.coarse_filter(read_samples(settings.table_path("raw_generations_s", shard)), question_phrasings(settings),
                                 data_source(settings).rec_reading)
    todo = rows[rows.filter_reason.isna()]
    scores = np.array([])
    if len(todo):
        model, preprocess, tokenizer = region_clip.load_region_clip(cal["model"], device=str(backend.torch_device("region_clip")),
                                                                    weights=cal.get("weights"))
        scores = region_clip.clip_scores(model, preprocess, tokenizer, todo.image_path.tolist(), todo.box.tolist(), todo.expression.tolist(),
                                         batch_size=backend.batch_size("region_clip", 64))
    rows = filters.clip_step(rows, scores, threshold)
    path = write_samples(rows.drop(columns=["box"]), settings.table_path("scored_generations_s", shard), lineage=True,
                         applied={"clip_threshold": float(threshold), "clip_threshold_mode": mode,
                                  "region_clip_checkpoint": checkpoint_id(cal.get("weights") or cal["model"])})
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "rows": len(rows), "kept": int(rows.filter_reason.isna().sum()), "clip_threshold": float(threshold), "clip_threshold_mode": mode,
        "yield_by_step": dg.MetadataValue.md(filters.filter_yields(rows).to_markdown(index=False)) if len(rows) else "none",
        "path": dg.MetadataValue.path(str(path)),
    })


@dg.asset(group_name="filtering", deps=["scored_generations_s"], kinds={"parquet"}, automation_condition=EAGER)
def genixer_rec(context: dg.AssetExecutionContext, settings: GenixerSettings) -> dg.MaterializeResult:
    """The Genixer-350K recipe: generated REC data that passed all three filter steps."""
    rows = read_shards(context, settings, "scored_generations_s")
    kept = rows[rows.filter_reason.isna()]
    applied = {k: _applied_across_shards(context, settings, "scored_generations_s", k)
               for k in ("clip_threshold", "clip_threshold_mode", "region_clip_checkpoint")}
    path = write_samples(kept, settings.table_path("genixer_rec"), lineage=True, applied=applied)
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        **_scored_preview(kept, "clip_score"),
        "rows": len(kept), "raw_rows": len(rows), "applied": dg.MetadataValue.json(applied),
        "yield_by_step": dg.MetadataValue.md(filters.filter_yields(rows).to_markdown(index=False)) if len(rows) else "none",
        "dropped_by_step": dg.MetadataValue.md(rows.filter_reason.fillna("kept").str.split(":").str[0].value_counts().rename_axis("step").reset_index().to_markdown(index=False)),
        "preview": sample_preview(kept, 8) if len(kept) else "none",
        "path": dg.MetadataValue.path(str(path)),
    })
