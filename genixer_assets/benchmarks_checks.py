"""The benchmarks stage's checks: every seed answered every benchmark sample; every main recipe scored; the
paper's aims (improvements beyond the noise, the filter worth it, the baseline above the blind prior, the A/A
control's false alarms)."""

import dagster as dg
import pandas as pd

from genixer_assets.common import (AIM, GUARD, aim_result, benchmark_rows, check_partition_keys, check_result, partition_tables,
                                   seed_dirs, unbuildable)
from genixer_assets.partitions import recipe_partitions
from resources import SETTINGS, GenixerSettings


@dg.asset_check(asset="benchmark_predictions", blocking=True,
                description="Guard: for each recipe, every seed's model answered every benchmark sample once (rows == seeds x benchmark "
                            "samples, no seed missing), every prediction a string.")
def benchmark_predictions_complete(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:

    keys = check_partition_keys(context, recipe_partitions)
    tables, problems = partition_tables(settings, "benchmark_predictions", keys)
    want = set(benchmark_rows(settings)[0].sample_id) if tables else set()
    for recipe, t in tables.items():
        seeds = {int(d.name.split("_")[1]) for d in seed_dirs(settings, recipe)}
        if not seeds:
            problems.append(f"{recipe}: no retrained model to have predicted")
        if len(t) != len(seeds) * len(want):
            problems.append(f"{recipe}: {len(t)} rows for {len(seeds)} seeds x {len(want)} benchmark samples = {len(seeds) * len(want)}")
        problems += [f"{recipe}: seed {s}: no predictions" for s in sorted(seeds - set(t.seed))]
        problems += [f"{recipe}: seed {s}: predictions without a retrained model" for s in sorted(set(t.seed) - seeds)]
        for s, g in t.groupby("seed"):
            if g.sample_id.duplicated().any() or set(g.sample_id) != want:
                problems.append(f"{recipe}: seed {s}: {len(want - set(g.sample_id))} benchmark samples unanswered, "
                                f"{len(set(g.sample_id) - want)} unknown, {int(g.sample_id.duplicated().sum())} answered twice")
        not_str = ~t.prediction.map(lambda x: isinstance(x, str))
        if not_str.any():
            problems.append(f"{recipe}: {int(not_str.sum())} predictions are not strings")
    return check_result(not problems, problems, recipes=", ".join(keys), rows=sum(len(t) for t in tables.values()),
                        samples_per_seed=len(want))


@dg.asset_check(asset="benchmark_scores", blocking=True,
                description="Guard: every main recipe this run can build (the oracle arm needs the world, the ceiling held-back annotations) is scored on every benchmark (the world's, or each published benchmark "
                            "benchmark_sets holds) with finite values and at least the preset's seeds.")
def benchmark_scores_complete(settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.world_benchmarks import BENCHMARKS
    from genixer.retraining import MAIN_RECIPES, RECIPES

    t = pd.read_parquet(settings.table_path("benchmark_scores"))
    want = settings.get_preset().retrain_seeds
    bench, real = benchmark_rows(settings)
    names = sorted({n for ns in bench.benchmarks for n in ns}) if real else [b.name for b in BENCHMARKS]
    problems = []
    why = {r: unbuildable(settings, RECIPES[r], world=not real) for r in MAIN_RECIPES}
    expected = [r for r in MAIN_RECIPES if why[r] is None]
    for r in expected:
        for b in names:
            row = t[(t.recipe == r) & (t.benchmark == b)]
            if row.empty:
                problems.append(f"{r} x {b}: missing")
            elif not pd.notna(row["mean"].item()) or row.seeds.item() < want:
                problems.append(f"{r} x {b}: mean {row['mean'].item()}, {row.seeds.item()} seeds (want {want})")
    return check_result(not problems, problems, recipes=int(t.recipe.nunique()), benchmarks=", ".join(names),
                        left_out=", ".join(f"{r} ({why[r]})" for r in MAIN_RECIPES if r not in expected) or "none")


def _improves_check(recipe: str, kind: str, what: str):
    @dg.asset_check(asset="benchmark_scores", name=f"{recipe}_improves_most_{kind}",
                    description=f"Aim: {recipe} beats baseline beyond the noise (95% paired bootstrap) on most {what}.")
    def _check(settings: GenixerSettings) -> dg.AssetCheckResult:
        from genixer.noise_test import headline

        n, m, d = headline(pd.read_parquet(settings.table_path("benchmark_scores")), recipe, kind)
        return aim_result(m > 0 and n > m / 2, {"improved": n, "of": m, "required": f"more than {m / 2:g}", "mean_delta": d})

    return _check


genixer_vqa_improves_most_vqa = _improves_check("genixer_vqa", "vqa", "VQA-type benchmarks")
genixer_rec_improves_most_rec = _improves_check("genixer_rec", "rec", "REC splits")


@dg.asset_check(asset="benchmark_scores", description="Aim: raw_vqa (unfiltered) gains less than genixer_vqa on the VQA-type benchmarks: "
                                                      "the mean gap's 95% paired-bootstrap interval is above 0.")
def filter_worth_it(settings: GenixerSettings) -> dg.AssetCheckResult:
    c = pd.read_parquet(settings.table_path("benchmark_contrasts")).set_index("contrast").loc["filtering is worth it"]
    return aim_result(c.verdict == "better", {"gap": float(c.point), "ci_low": float(c.lo), "ci_high": float(c.hi), "verdict": c.verdict,
                                              "required": "better (95% CI above 0)"})


REFERENCE_BLOCKING = SETTINGS.get_preset().reference_check_blocking


@dg.asset_check(asset="benchmark_scores", blocking=REFERENCE_BLOCKING,
                description=("Guard" if REFERENCE_BLOCKING else "Aim") + ": the baseline beats the blind prior (each question kind's most common training answer) beyond the noise "
                            "on every benchmark; blocking on the paper preset, reported on the others.")
def baseline_beats_blind_prior(settings: GenixerSettings) -> dg.AssetCheckResult:
    t = pd.read_parquet(settings.table_path("benchmark_scores"))
    prior = t[t.recipe == "ref:blind_prior"]
    missed = [f"{r.benchmark}: baseline {100 * r.baseline_mean:.1f} vs prior {100 * r.mean:.1f} ({r.verdict} for the prior)"
              for r in prior.itertuples() if r.verdict != "worse"]
    return check_result(len(prior) > 0 and not missed, missed, GUARD if REFERENCE_BLOCKING else AIM, beaten=int(len(prior) - len(missed)),
                        of=len(prior))


@dg.asset_check(asset="benchmark_scores", description="Aim: the A/A control (the baseline under other seeds) is called different on at "
                                                      "most 5% of the comparisons over all seed splits (the test's measured false-alarm rate).")
def noise_test_false_alarms(settings: GenixerSettings) -> dg.AssetCheckResult:
    import json

    aa = json.loads(settings.path("tables", "benchmark_noise.json").read_text())
    return aim_result(bool(aa["comparisons"]) and aa["rate"] <= 0.05, {**aa, "required_rate": 0.05})
