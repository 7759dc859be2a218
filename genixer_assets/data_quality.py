"""Quality of the generated data (group `data_quality`; measurement only): measured with the data source's oracle
when it has one (the world's), else by score statistics and a human review sample (genixer.review)."""

import json

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from genixer import corpus_generation, filters, judge, quality, region_clip, review
from genixer.datasource import DataSource
from genixer.plots import curves_png
from genixer.schema import read_applied, read_samples
from genixer_assets.common import data_source, generator_path, md_counts, md_figure
from genixer_assets.partitions import read_shards
from resources import GenixerSettings, MLLMBackend


def _md(df: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.to_markdown(index=False, floatfmt=".3f"))


def heldout_domain(settings: GenixerSettings, backend: MLLMBackend, src: DataSource, vqa_applied: dict,
                   rec_applied: dict) -> pd.DataFrame:
    """The paper's Tab. 4 held-out column (Flickr30K): both generators run type-specific on the
    held-out background style, filtered exactly as the corpus was (the λ, hard band and CLIP
    threshold the filtering assets applied), judged by the data source's oracle. Measurement only: these rows never
    reach a training set."""
    p = settings.get_preset()
    world = settings.read_table("world_scenes")
    images = world[world.split == "heldout"]
    general = json.loads(settings.path("tables", "instruction_templates.json").read_text())["general"]
    rows = []
    for generator, task in (("genixer_l", "common_vqa"), ("genixer_s", "rec")):
        path = generator_path(settings, backend, generator)
        model, processor = backend.load(path, generator)
        reqs = corpus_generation.plan_requests(images, general, task, 1, p.seed + 7)
        df, _ = corpus_generation.generate_shard(model, processor, reqs, generator, corpus_generation.checkpoint_id(path),
                                       p.gen_sampling, task, task, None, batch_size=backend.batch_size(generator, 32),
                                       task_of=src.task_of)
        df = df.assign(oracle=src.oracle.column(df))
        ok = df.quarantine_reason.isna()
        if generator == "genixer_l":
            jm, jp = backend.load(backend.checkpoint("judge") or settings.model_dir("judge_mllm"), "judge")
            df.loc[ok, "judge_p_yes"] = judge.score_samples(jm, jp, df[ok], batch_size=backend.batch_size("judge", 32)) if ok.any() else []
            kept = df.sample_id.isin(filters.select_vqa(df, vqa_applied["judge_lambda"], vqa_applied["hard_band_share"], p.seed).sample_id)
        else:
            cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
            df = filters.coarse_filter(df, json.loads(settings.path("tables", "instruction_templates.json").read_text())["phrasings"],
                                       src.rec_reading)
            todo = df[df.filter_reason.isna()]
            scores = np.array([])
            if len(todo):
                cm, pre, tok = region_clip.load_region_clip(cal["model"], device=str(backend.torch_device("region_clip")), weights=cal.get("weights"))
                scores = region_clip.clip_scores(cm, pre, tok, todo.image_path.tolist(), todo.box.tolist(), todo.expression.tolist(),
                                                 batch_size=backend.batch_size("region_clip", 64))
            df = filters.clip_step(df, scores, rec_applied["clip_threshold"])
            kept = df.filter_reason.isna()
        rows.append({"domain": "held-out background", "data": generator, **src.oracle.correctness_table(df, df[kept]).iloc[-1].drop("task")})
    return pd.DataFrame(rows)


class QualityConfig(dg.Config):
    review_per_task: int = Field(50, description="without the world: rows per task in the human review sample")
    review_blind: bool = Field(False, description="leave the score and kept flag out of the review files")


def _distribution(scores: pd.Series, name: str) -> dict:
    s = scores.dropna().astype(float)
    q = s.quantile([0.1, 0.25, 0.5, 0.75, 0.9]) if len(s) else pd.Series(np.nan, index=[0.1, 0.25, 0.5, 0.75, 0.9])
    return {"score": name, "n": len(s), "mean": float(s.mean()) if len(s) else np.nan,
            **{f"p{int(k * 100)}": float(v) for k, v in q.items()}}


def _hist(scores: pd.Series, lo: float, hi: float) -> list[tuple[float, float]]:
    counts, edges = np.histogram(scores.dropna().astype(float), bins=20, range=(lo, hi))
    return list(zip(((edges[:-1] + edges[1:]) / 2).tolist(), counts.tolist()))


def _vqa_funnel(raw: pd.DataFrame, kept: pd.DataFrame, lam: float) -> pd.DataFrame:
    """Per task: raw rows, parsed, scored by the judge, P(Yes) >= lambda, and kept by genixer_vqa (hard band included)."""
    kept_ids = set(kept.sample_id)
    rows = []
    for task, g in raw.groupby("task"):
        parsed = g.quarantine_reason.isna()
        p = pd.to_numeric(g.judge_p_yes, errors="coerce")
        rows.append({"task": task, "raw": len(g), "parsed": int(parsed.sum()), "scored": int((parsed & p.notna()).sum()),
                     "at_lambda": int((parsed & (p >= lam)).sum()), "kept": int(g.sample_id.isin(kept_ids).sum())})
    return pd.DataFrame(rows, columns=["task", "raw", "parsed", "scored", "at_lambda", "kept"])


def _filter_statistics(collected, vqa_raw, vqa, rec_raw, rec, lam: float, phrasings, reading, clip_threshold=None) -> dict:
    """What needs no oracle: the judge's and the CLIP step's score distributions, the yield per lambda,
    the filter funnel per task, and the text and box statistics of Fig. 7 and Fig. 8 against the collected data."""
    out = {}
    judged = vqa_raw[vqa_raw.quarantine_reason.isna()].judge_p_yes
    clipped = rec_raw.clip_score
    out["score_distributions"] = _md(pd.DataFrame([_distribution(judged, "judge P(Yes), raw Genixer_L"),
                                                    _distribution(vqa.judge_p_yes, "judge P(Yes), genixer_vqa"),
                                                    _distribution(clipped, "CLIP cosine, raw Genixer_S at the CLIP step"),
                                                    _distribution(rec.clip_score, "CLIP cosine, genixer_rec")]))
    out.update(md_figure("judge_score_histogram", curves_png({"raw Genixer_L": _hist(judged, 0, 1)}, "judge P(Yes) (the paper's Fig. 9)",
                                                             "rows", "P(Yes)", marks={"lambda": float(lam)})))
    cut = {"threshold": float(clip_threshold)} if isinstance(clip_threshold, (int, float)) else {}
    out.update(md_figure("clip_score_histogram", curves_png({"raw Genixer_S": _hist(clipped, -1, 1)}, "region-CLIP cosine", "rows",
                                                            "cosine", marks=cut)))
    lambdas = sorted({0.3, 0.5, 0.7, 0.9, float(lam)})
    out["vqa_yield_by_lambda"] = _md(filters.vqa_yields(vqa_raw, lambdas))
    out["vqa_funnel_by_task"] = _md(_vqa_funnel(vqa_raw, vqa, lam))
    out["rec_funnel_by_task"] = _md(filters.filter_yields(rec_raw)) if len(rec_raw) else "no row"
    out["question_statistics"] = _md(pd.DataFrame([
        quality.text_stats(collected[collected.task.isin(["common_vqa", "adv_vqa", "mc_vqa", "md"])], "collected general"),
        quality.text_stats(vqa_raw, "raw Genixer_L"), quality.text_stats(vqa, "genixer_vqa"),
        quality.text_stats(collected[collected.task == "rec"], "collected REC"), quality.text_stats(rec, "genixer_rec")]))
    coll_rec = filters.coarse_filter(collected[collected.task == "rec"].assign(quarantine_reason=None), phrasings, reading)
    out["box_statistics"] = _md(pd.DataFrame([
        quality.box_stats(coll_rec, "collected REC"),
        quality.box_stats(rec_raw[rec_raw.quarantine_reason.isna()], "raw Genixer_S"), quality.box_stats(rec, "genixer_rec")]))
    general = collected[collected.task.isin(["common_vqa", "adv_vqa", "mc_vqa", "md"])]
    lengths = {"collected general": quality.question_lengths(general), "raw Genixer_L": quality.question_lengths(vqa_raw),
               "genixer_vqa": quality.question_lengths(vqa)}
    top = max([max(v) for v in lengths.values() if v] + [10])
    out.update(md_figure("question_length_histogram", curves_png({k: _shares(v, 0, top + 1) for k, v in lengths.items() if v},
                                                                 "question length (the paper's Fig. 7)", "share of questions", "words")))
    boxes = {"collected REC": quality.box_values(coll_rec), "genixer_rec": quality.box_values(rec)}
    out.update(md_figure("box_size_histogram", curves_png({f"{k} {axis}": _shares(v[i], 0, 1) for k, v in boxes.items()
                                                           for i, axis in ((0, "width"), (1, "height")) if v[i]},
                                                          "box size relative to the image (the paper's Fig. 8)", "share of boxes", "size")))
    return out


def _shares(values, lo: float, hi: float) -> list[tuple[float, float]]:
    """A histogram as shares of the values (distributions of different sizes on one plot)."""
    pts = _hist(pd.Series(values, dtype=float), lo, hi)
    n = sum(c for _, c in pts) or 1
    return [(x, c / n) for x, c in pts]


def _oracle_quality(settings: GenixerSettings, backend: MLLMBackend, src: DataSource, vqa_applied: dict, rec_applied: dict,
                    raws: dict) -> dict:
    """With the world: the oracle's correctness of raw and kept rows, the filters against the oracle, and the held-in
    vs held-out domain table, over the world's images (an image put in the corpus inbox has no scene to judge by)."""
    oracle = src.oracle
    lam = vqa_applied["judge_lambda"]
    out, tables = {}, {}
    for name, raw_name, kept_name in (("vqa", "scored_generations_l", "genixer_vqa"), ("rec", "scored_generations_s", "genixer_rec")):
        raw = raws[raw_name][lambda d: d.image_id.isin(oracle.scenes.keys())]
        raw = raw.assign(oracle=oracle.column(raw))
        kept = raw[raw.sample_id.isin(set(read_samples(settings.table_path(kept_name)).sample_id))]
        tab = oracle.correctness_table(raw, kept)
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
            out.update(md_figure("judge_precision_curve", curves_png({"precision of kept": [c for c in curve if c[1] == c[1]]},
                                                                     "judge: precision vs lambda", "precision", "lambda")))
        else:
            at_clip = raw[raw.filter_reason.isna() | raw.filter_reason.fillna("").str.startswith("3-")]
            out["clip_vs_oracle"] = _md(pd.DataFrame([quality.precision_recall(at_clip.filter_reason.isna(), at_clip.oracle == "correct")]))
            step = raw.filter_reason.fillna("kept").str.split(":").str[0]
            yields = raw.assign(step=step).groupby(["task", "step"]).size().rename("rows").reset_index()
            out["rec_rows_by_filter_step"] = _md(yields)
    held = heldout_domain(settings, backend, src, vqa_applied, rec_applied)
    held_in = pd.DataFrame([{"domain": "held-in corpus", "data": d, **t.iloc[-1].drop("task")}
                            for d, t in (("genixer_l", tables["vqa"]), ("genixer_s", tables["rec"]))])
    domains = pd.concat([held_in, held], ignore_index=True).assign(judge_lambda=lam, clip_threshold=str(rec_applied["clip_threshold"]))
    domains.to_parquet(settings.table_path("generation_quality_domains"), index=False)
    out["held_in_vs_held_out"] = _md(domains)
    return out


REVIEW_COLUMNS = ["sample_id", "task", "turns", "image_path", "boxes", "points", "judge_p_yes", "clip_score", "quarantine_reason", "kept"]


def _has_verdicts(csv) -> bool:
    if not csv.exists():
        return False
    v = pd.read_csv(csv, dtype=str, keep_default_na=False)
    return "verdict" in v.columns and bool(v.verdict.str.strip().ne("").any())


def _review(settings: GenixerSettings, config: QualityConfig, vqa_raw, vqa, rec_raw, seed: int) -> dict:
    """Without the world: the human review sample (genixer.review) of the scored generations, written to
    <data root>/<preset>/review/review.csv and review.html with the sample itself (review_sample.parquet); a
    review.csv with verdicts filled in is never overwritten, its review_report tables are reported instead."""
    folder = settings.path("review", "review.csv").parent
    csv, html, stored = folder / "review.csv", folder / "review.html", folder / "review_sample.parquet"
    population = pd.concat([vqa_raw.assign(kept=vqa_raw.sample_id.isin(set(vqa.sample_id)))[REVIEW_COLUMNS],
                            rec_raw.assign(kept=rec_raw.filter_reason.isna())[REVIEW_COLUMNS]], ignore_index=True)
    out = {"review_dir": dg.MetadataValue.path(str(folder))}
    if _has_verdicts(csv):  # filled in: read, never overwritten
        sample = pd.read_parquet(stored) if stored.exists() else review.review_sample(population, config.review_per_task, seed)
        done = review.read_verdicts(csv, sample)  # a verdict it cannot read, or a row not in the sample: a clear error
        stale = int((~sample.sample_id.isin(set(population.sample_id))).sum())
        tables = review.review_report(done)
        for name, t in tables.items():
            t.to_parquet(settings.table_path(f"generation_quality_review_{name}"), index=False)
            out[f"review_{name}"] = _md(t)
        out.update(review_rows=len(sample), reviewed=int(done.verdict.notna().sum()), review_csv=dg.MetadataValue.path(str(csv)),
                   review_status="verdicts read from review.csv" + (f"; {stale} sampled rows are no longer in the scored tables "
                                                                   "(regenerated since): move review.csv away for a new sample" if stale else ""))
        return out
    if population.empty:
        return {**out, "review_status": "no generated row to review"}
    sample = review.review_sample(population, config.review_per_task, seed)
    review.write_review(sample, folder, blind=config.review_blind, overwrite=True)  # no verdict in it: replaced
    sample.to_parquet(stored, index=False)
    out.update(review_rows=len(sample), review_by_task=md_counts(sample, "task"), review_csv=dg.MetadataValue.path(str(csv)),
               review_html=dg.MetadataValue.path(str(html)),
               review_status="written: fill the verdict column of review.csv, then rematerialise generation_quality")
    return out


@dg.asset(group_name="data_quality", deps=["genixer_vqa", "genixer_rec", "collected_datasets"], kinds={"parquet"})
def generation_quality(context: dg.AssetExecutionContext, config: QualityConfig, settings: GenixerSettings,
                       backend: MLLMBackend) -> dg.MaterializeResult:
    """The paper's Tab. 2 / Tab. 4 analogues. Always: the judge's and the CLIP filter's score
    distributions, the yield per lambda and the filter funnel per task, and the text and box
    statistics of Fig. 7 and Fig. 8 against the collected data. With the world, exact instead of
    sampled by hand: oracle correctness of raw and filtered generations per task, the judge's and
    the CLIP filter's precision and recall against the oracle, and the held-out domain. Without it
    (published data), a stratified review sample is written for a person to judge
    (<data root>/<preset>/review/review.csv and .html); once its verdicts are filled in, the
    estimated correctness and filter precision/recall (genixer.review.review_report) are reported."""
    src = data_source(settings)
    world = src.oracle is not None  # an oracle measures; without one, statistics and a review sample
    vqa_applied = read_applied(settings.table_path("genixer_vqa"))
    rec_applied = read_applied(settings.table_path("genixer_rec"))
    lam = vqa_applied["judge_lambda"]
    phrasings = json.loads(settings.path("tables", "instruction_templates.json").read_text())["phrasings"]
    collected = read_samples(settings.table_path("collected_datasets"))
    vqa_raw, vqa = read_shards(context, settings, "scored_generations_l"), read_samples(settings.table_path("genixer_vqa"))
    rec_raw, rec = read_shards(context, settings, "scored_generations_s"), read_samples(settings.table_path("genixer_rec"))
    out = {"applied": dg.MetadataValue.json({**vqa_applied, **rec_applied}),
           "measured_with": "the world's oracle" if world else "no oracle (published data): score statistics and a human review sample"}
    out.update(_filter_statistics(collected, vqa_raw, vqa, rec_raw, rec, lam, phrasings, src.rec_reading,
                                  rec_applied.get("clip_threshold")))
    if world:
        out.update(_oracle_quality(settings, backend, src, vqa_applied, rec_applied,
                                   {"scored_generations_l": vqa_raw, "scored_generations_s": rec_raw}))
    else:
        out.update(_review(settings, config, vqa_raw, vqa, rec_raw, settings.get_preset().seed))
        pd.DataFrame(columns=["domain", "data", "judge_lambda", "clip_threshold"]).to_parquet(
            settings.table_path("generation_quality_domains"), index=False)  # no held-out domain without the world
    return dg.MaterializeResult(metadata=out)
