"""Quality of the generated data, measured with the world's oracle (evaluation only)."""

import dagster as dg
import pandas as pd

from genixer import quality
from genixer.schema import read_samples
from genixer.world import Scene
from genixer_assets._meta import md_png
from genixer_assets.filtering import genixer_rec, genixer_vqa
from genixer.plots import curves_png
from resources import GenixerSettings


def _md(df: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.to_markdown(index=False, floatfmt=".3f"))


@dg.asset(group_name="evaluation", deps=[genixer_vqa, genixer_rec], kinds={"parquet"})
def generation_quality(settings: GenixerSettings) -> dg.MaterializeResult:
    """The paper's Tab. 2 / Tab. 4 analogues, exact instead of sampled by hand: oracle
    correctness of raw and filtered generations per task, the judge's and the CLIP filter's
    precision and recall against the oracle, yield at each filter step, and the text and box
    statistics of Fig. 7 and Fig. 8 against the collected data."""
    scenes_df = settings.read_table("world_scenes")
    scenes = {r.image_id: Scene.from_json(r.scene) for r in scenes_df.itertuples()}
    lam = settings.get_preset().judge_lambda
    out = {}
    tables = {}
    for name, raw_name, kept_name in (("vqa", "scored_generations_l", "genixer_vqa"), ("rec", "scored_generations_s", "genixer_rec")):
        raw = settings.read_table(raw_name)
        raw = raw.assign(oracle=quality.oracle_column(raw, scenes))
        kept = raw[raw.sample_id.isin(set(read_samples(settings.table_path(kept_name)).sample_id))]
        tab = quality.correctness_table(raw, kept)
        tables[name] = tab
        out[f"{name}_correctness"] = _md(tab)
        out[f"{name}_raw_correct"] = float(tab.iloc[-1].raw_correct)
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
    return dg.MaterializeResult(metadata=out)
