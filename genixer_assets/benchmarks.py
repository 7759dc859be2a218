"""Scores (group `evaluation`): every retrained model on the benchmarks, the recipe x benchmark
table with its noise, and the report beside the paper's claims."""

import dagster as dg
import pandas as pd

from genixer import report
from genixer.benchmarks import benchmark_samples, compare, headline_lines, predict, score
from genixer.plots import bars_png, curves_png
from genixer.schema import read_samples
from genixer_assets._meta import md_png
from genixer_assets.collection import benchmark_sets, world_scenes
from genixer_assets.evaluation import generation_quality
from genixer_assets.generators import GPU
from genixer_assets.retraining import recipe_partitions, retrained_models, seed_dirs
from resources import GenixerSettings, MLLMBackend


@dg.asset(group_name="evaluation", partitions_def=recipe_partitions, deps=[retrained_models, benchmark_sets, world_scenes], **GPU)
def benchmark_predictions(context: dg.AssetExecutionContext, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """Each seed of the recipe answers every benchmark sample (greedy); one row per sample and seed."""
    recipe = context.partition_key
    dirs = seed_dirs(settings, recipe)
    if not dirs:
        raise dg.Failure(description=f"no model of recipe {recipe!r} under {settings.path('models', 'retrained', recipe)}: "
                                     f"materialise retrained_models[{recipe}] first")
    world = settings.read_table("world_scenes")
    bench = benchmark_samples(read_samples(settings.table_path("benchmark_sets")), dict(zip(world.image_id, world.n_objects)))
    frames, per_seed = [], []
    for d in dirs:
        seed = int(d.name.split("_")[1])
        model, processor = backend.load(d)
        pred = predict(model, processor, bench).assign(recipe=recipe, seed=seed)
        frames.append(pred)
        per_seed.append(score(pred).assign(seed=seed))
    preds = pd.concat(frames, ignore_index=True)
    path = settings.table_path("benchmark_predictions", recipe)
    preds.to_parquet(path, index=False)
    scores = pd.concat(per_seed).pivot(index="benchmark", columns="seed", values="value")
    return dg.MaterializeResult(metadata={
        "recipe": recipe, "seeds": len(dirs), "samples_per_seed": len(bench),
        "scores_by_seed": dg.MetadataValue.md(scores.reset_index().to_markdown(index=False, floatfmt=".3f")),
        "path": dg.MetadataValue.path(str(path)),
    })


def _scores(settings: GenixerSettings) -> pd.DataFrame:
    """Per-seed scores of every recipe partition on disk (partitions of recipes no longer defined are ignored)."""
    keys = [k for k in recipe_partitions.get_partition_keys() if settings.table_path("benchmark_predictions", k).exists()]
    if not keys:
        raise dg.Failure(description="no partition of benchmark_predictions has been materialised")
    preds = pd.concat([settings.read_table("benchmark_predictions", k) for k in keys], ignore_index=True)
    return pd.concat([score(g).assign(recipe=r, seed=s) for (r, s), g in preds.groupby(["recipe", "seed"])], ignore_index=True)


@dg.asset(group_name="evaluation", deps=[benchmark_predictions], kinds={"parquet", "csv"})
def benchmark_scores(settings: GenixerSettings) -> dg.MaterializeResult:
    """Recipe x benchmark: mean and seed standard deviation, delta against `baseline`, and whether
    the delta exceeds the seed-to-seed spread. Parquet and CSV; per-seed scores beside them."""
    scores = _scores(settings)
    if not (scores.recipe == "baseline").any():
        raise dg.Failure(description="benchmark_scores needs benchmark_predictions[baseline]: deltas are measured against it")
    table = compare(scores)
    scores.to_parquet(settings.table_path("benchmark_scores_by_seed"), index=False)
    table.to_parquet(settings.table_path("benchmark_scores"), index=False)
    csv = settings.path("tables", "benchmark_scores.csv")
    table.to_csv(csv, index=False)
    lines = headline_lines(table)
    return dg.MaterializeResult(metadata={
        "headline": dg.MetadataValue.md("\n".join(f"- {h}" for h in lines)),
        "scores": dg.MetadataValue.md(report.pivot(table).to_markdown(index=False)),
        "seeds": dg.MetadataValue.json(scores.groupby("recipe").seed.nunique().to_dict()),
        "csv": dg.MetadataValue.path(str(csv)),
        "path": dg.MetadataValue.path(str(settings.table_path("benchmark_scores"))),
    })


def _delta_bars(table: pd.DataFrame, recipes: list[str]) -> bytes:
    groups = {r: [(b, 100 * d, 100 * s) for b, d, s in table[table.recipe == r][["benchmark", "delta", "spread"]].itertuples(index=False)]
              for r in recipes if (table.recipe == r).any()}
    return bars_png(groups, "delta vs baseline (points; bars: seed spread)", "points")


@dg.asset(group_name="evaluation", deps=[benchmark_scores, generation_quality], kinds={"markdown"})
def paper_report(settings: GenixerSettings) -> dg.MaterializeResult:
    """This run beside the paper: generated-data correctness, filter lift, N of M improved, the
    data-scale and threshold trends; each claim marked reproduced or not, with the reasons."""
    table = pd.read_parquet(settings.table_path("benchmark_scores"))
    seeds = pd.read_parquet(settings.table_path("benchmark_scores_by_seed")).groupby("recipe").seed.nunique().to_dict()
    domains = settings.read_table("generation_quality_domains")  # missing: a clear error naming the file
    lam = settings.get_preset().judge_lambda
    claim_rows = report.claims(table, domains, lam)
    out = settings.path("reports", "paper_report.md")
    pngs = {"deltas of the main recipes": ("deltas.png", _delta_bars(table, ["genixer_vqa", "raw_vqa", "genixer_rec"]))}
    for name, pts in report.ablation_series(lam).items():
        xlabel = {"data scale": "share of genixer_vqa's stage-1 rows", "judge threshold": "lambda"}[name]
        got = [(x, 100 * report.mean_score(table, r)) for x, r in pts if (table.recipe == r).any()]
        base = 100 * report.mean_score(table, "baseline")
        if len(got) > 1:
            png = curves_png({"recipe": got, "baseline": [(got[0][0], base), (got[-1][0], base)]},
                             f"{name}: mean VQA-type score", "score (%)", xlabel)
            pngs[name] = (f"{name.replace(' ', '_')}.png", png)
    for fname, png in pngs.values():
        (out.parent / fname).write_bytes(png)
    text = report.report_markdown(table, claim_rows, report.why_not(table, domains), seeds, {t: f for t, (f, _) in pngs.items()})
    out.write_text(text)
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(text.split("![")[0]),
        "claims_reproduced": int((claim_rows.reproduced == "yes").sum()),
        "claims_checked": int((claim_rows.reproduced != "not run").sum()),
        **{t: md_png(png, t) for t, (_, png) in pngs.items()},
        "path": dg.MetadataValue.path(str(out)),
    })
