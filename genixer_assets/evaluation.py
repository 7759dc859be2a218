"""Quality of the generated data, measured with the world's oracle (evaluation only)."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from genixer import datagen, filters, judge, quality, region_clip
from genixer.plots import curves_png
from genixer.schema import read_applied, read_samples
from genixer.world import Scene
from genixer_assets._meta import md_png
from genixer_assets.filtering import genixer_rec, genixer_vqa
from resources import GenixerSettings, MLLMBackend


def _md(df: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.to_markdown(index=False, floatfmt=".3f"))


def heldout_domain(settings: GenixerSettings, backend: MLLMBackend, scenes: dict[str, Scene], vqa_applied: dict,
                   rec_applied: dict) -> pd.DataFrame:
    """The paper's Tab. 4 held-out column (Flickr30K): both generators run type-specific on the
    held-out background style, filtered exactly as the corpus was (the λ, hard band and CLIP
    threshold the filtering assets applied). Measurement only: these rows never reach a training set."""
    p = settings.get_preset()
    world = settings.read_table("world_scenes")
    images = world[world.split == "heldout"]
    general = json.loads(settings.path("tables", "instruction_templates.json").read_text())["general"]
    rows = []
    for generator, task in (("genixer_l", "common_vqa"), ("genixer_s", "rec")):
        model, processor = backend.load(settings.model_dir(generator))
        reqs = datagen.plan_requests(images, general, task, 1, p.seed + 7)
        df, _ = datagen.generate_shard(model, processor, reqs, generator, datagen.checkpoint_id(settings.model_dir(generator)),
                                       p.gen_sampling, task, task, None)
        df = df.assign(oracle=quality.oracle_column(df, scenes))
        ok = df.quarantine_reason.isna()
        if generator == "genixer_l":
            jm, jp = backend.load(backend.judge_checkpoint or settings.model_dir("judge_mllm"))
            df.loc[ok, "judge_p_yes"] = judge.score_samples(jm, jp, df[ok]) if ok.any() else []
            kept = df.sample_id.isin(filters.select_vqa(df, vqa_applied["judge_lambda"], vqa_applied["hard_band_share"], p.seed).sample_id)
        else:
            cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
            df = filters.coarse_filter(df)
            todo = df[df.filter_reason.isna()]
            scores = np.array([])
            if len(todo):
                cm, pre, tok = region_clip.load_region_clip(cal["model"], device=str(backend.torch_device()))
                scores = region_clip.clip_scores(cm, pre, tok, todo.image_path.tolist(), todo.box.tolist(), todo.expression.tolist())
            df = filters.clip_step(df, scores, rec_applied["clip_threshold"])
            kept = df.filter_reason.isna()
        rows.append({"domain": "held-out background", "data": generator, **quality.correctness_table(df, df[kept]).iloc[-1].drop("task")})
    return pd.DataFrame(rows)


@dg.asset(group_name="evaluation", deps=[genixer_vqa, genixer_rec], kinds={"parquet"})
def generation_quality(settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """The paper's Tab. 2 / Tab. 4 analogues, exact instead of sampled by hand: oracle
    correctness of raw and filtered generations per task, the judge's and the CLIP filter's
    precision and recall against the oracle, yield at each filter step, and the text and box
    statistics of Fig. 7 and Fig. 8 against the collected data."""
    scenes_df = settings.read_table("world_scenes")
    scenes = {r.image_id: Scene.from_json(r.scene) for r in scenes_df.itertuples()}
    vqa_applied = read_applied(settings.table_path("genixer_vqa"))
    rec_applied = read_applied(settings.table_path("genixer_rec"))
    lam = vqa_applied["judge_lambda"]
    out = {"applied": dg.MetadataValue.json({**vqa_applied, **rec_applied})}
    tables = {}
    for name, raw_name, kept_name in (("vqa", "scored_generations_l", "genixer_vqa"), ("rec", "scored_generations_s", "genixer_rec")):
        raw = settings.read_table(raw_name)
        raw = raw.assign(oracle=quality.oracle_column(raw, scenes))
        kept = raw[raw.sample_id.isin(set(read_samples(settings.table_path(kept_name)).sample_id))]
        tab = quality.correctness_table(raw, kept)
        tables[name] = tab
        out[f"{name}_correctness"] = _md(tab)
        out[f"{name}_raw_correct"] = float(tab.iloc[-1].raw_correct)
        out[f"{name}_raw_parsed_correct"] = float(tab.iloc[-1].raw_parsed_correct)
        out[f"{name}_kept_correct"] = float(tab.iloc[-1].kept_correct)
        raw[["sample_id", "task", "oracle"]].assign(data=name).to_parquet(settings.table_path(f"generation_quality_{name}"), index=False)
        if name == "vqa":
            judged = raw[raw.judge_p_yes.notna()]
            pr = {f"lambda={l}": quality.precision_recall(judged.judge_p_yes >= l, judged.oracle == "correct") for l in (0.3, 0.5, lam, 0.9)}
            out["judge_vs_oracle"] = _md(pd.DataFrame(pr).T.reset_index(names="threshold"))
            curve = [(l / 20, quality.precision_recall(judged.judge_p_yes >= l / 20, judged.oracle == "correct")["precision"]) for l in range(1, 20)]
            out["judge_precision_curve"] = md_png(curves_png({"precision of kept": [c for c in curve if c[1] == c[1]]}, "judge: precision vs lambda", "precision", "lambda"))
        else:
            at_clip = raw[raw.filter_reason.isna() | raw.filter_reason.fillna("").str.startswith("3-")]
            out["clip_vs_oracle"] = _md(pd.DataFrame([quality.precision_recall(at_clip.filter_reason.isna(), at_clip.oracle == "correct")]))
            step = raw.filter_reason.fillna("kept").str.split(":").str[0]
            yields = raw.assign(step=step).groupby(["task", "step"]).size().rename("rows").reset_index()
            out["rec_rows_by_filter_step"] = _md(yields)
    collected = read_samples(settings.table_path("collected_datasets"))
    vqa_raw, vqa = settings.read_table("scored_generations_l"), read_samples(settings.table_path("genixer_vqa"))
    rec_raw, rec = settings.read_table("scored_generations_s"), read_samples(settings.table_path("genixer_rec"))
    out["question_statistics"] = _md(pd.DataFrame([
        quality.text_stats(collected[collected.task.isin(["common_vqa", "adv_vqa", "mc_vqa", "md"])], "collected general"),
        quality.text_stats(vqa_raw, "raw Genixer_L"), quality.text_stats(vqa, "genixer_vqa"),
        quality.text_stats(collected[collected.task == "rec"], "collected REC"), quality.text_stats(rec, "genixer_rec")]))
    from genixer.filters import coarse_filter

    out["box_statistics"] = _md(pd.DataFrame([
        quality.box_stats(coarse_filter(collected[collected.task == "rec"].assign(quarantine_reason=None)), "collected REC"),
        quality.box_stats(rec_raw[rec_raw.quarantine_reason.isna()], "raw Genixer_S"), quality.box_stats(rec, "genixer_rec")]))
    held = heldout_domain(settings, backend, scenes, vqa_applied, rec_applied)
    held_in = pd.DataFrame([{"domain": "held-in corpus", "data": d, **t.iloc[-1].drop("task")}
                            for d, t in (("genixer_l", tables["vqa"]), ("genixer_s", tables["rec"]))])
    domains = pd.concat([held_in, held], ignore_index=True).assign(judge_lambda=lam, clip_threshold=str(rec_applied["clip_threshold"]))
    domains.to_parquet(settings.table_path("generation_quality_domains"), index=False)
    out["held_in_vs_held_out"] = _md(domains)
    return dg.MaterializeResult(metadata=out)
