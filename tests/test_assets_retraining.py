"""Retraining and scores on the smoke preset: every recipe, its predictions, the score table and
the report, read back from disk."""

import dataclasses
import json
import shutil

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from genixer import judge
from genixer.world_benchmarks import BENCHMARKS, REFERENCES, score
from genixer.finetune import finetune
from genixer.metrics import normalize_answer
from genixer.models.checkpoint import load_model
from genixer.retraining import RECIPES
from genixer.schema import read_applied, read_samples
from genixer.training import TrainConfig
from genixer_assets.definitions import defs
from genixer_assets.common import seed_dirs
from resources import GenixerSettings, MLLMBackend
from tests.conftest import metadata_of


def test_every_recipe_is_trained_from_base_mllm(built):
    settings, results = built
    p = settings.get_preset()
    for name, recipe in RECIPES.items():
        dirs = seed_dirs(settings, name)
        assert len(dirs) == (p.ablation_seeds if recipe.ablation else p.retrain_seeds), name
        table = settings.read_table("retrained_models", name)
        assert list(table.seed) == [p.seed + recipe.seed_offset + k for k in range(len(dirs))]
        assert (table.stage1_rows + table.stage2_rows > 0).all() == (recipe.added is not None), name
        # the base mix trains the preset's steps; added rows add one pass over their records (a record per turn)
        extra = np.ceil(p.generated_epochs * table.added_records / p.retrain.batch_size)
        assert (table.steps == p.retrain.steps + extra).all() and (table.added_steps == extra).all(), name
        assert (table.added_sample_ids.map(len) == table.stage1_rows + table.stage2_rows).all(), name
    model, _ = load_model(seed_dirs(settings, "baseline")[0], device="cpu")
    base, _ = load_model(settings.model_dir("base_mllm"), device="cpu")
    tower = {k: v for k, v in base.state_dict().items() if "vision_tower" in k}
    # the vision tower is frozen in retraining, the language model is not
    assert all(np.array_equal(model.state_dict()[k].numpy(), v.numpy()) for k, v in tower.items())
    assert any(not np.array_equal(model.state_dict()[k].numpy(), v.numpy()) for k, v in base.state_dict().items() if "language_model" in k)
    vqa = read_samples(settings.table_path("genixer_vqa"))
    t = settings.read_table("retrained_models", "genixer_vqa")
    assert t.stage1_rows.iloc[0] == int((~vqa.hard_band).sum()) and t.stage2_rows.iloc[0] == int(vqa.hard_band.sum())
    assert t.judge_lambda.iloc[0] == read_applied(settings.table_path("genixer_vqa"))["judge_lambda"]
    assert settings.read_table("retrained_models", "raw_vqa").stage1_rows.iloc[0] == t.stage1_rows.iloc[0]
    # the lambda arms differ in the rows they hold (they used to train on the same rows)
    arms = [settings.read_table("retrained_models", n).stage1_rows.iloc[0] for n in ("genixer_vqa", "vqa_lambda_minus_0.1", "vqa_lambda_minus_0.2")]
    assert arms == sorted(arms)
    meta = metadata_of(results, "retrained_models")
    assert meta["steps_per_seed"] >= p.retrain.steps


def test_paired_arms_read_the_same_base_batches_and_add_exactly_their_rows(built):
    settings, _ = built
    tables = {n: settings.read_table("retrained_models", n) for n in RECIPES}
    base = dict(zip(tables["baseline"].seed, tables["baseline"].base_batches_sha))
    for name, t in tables.items():
        if name == "baseline_aa":  # the A/A control: the baseline under other seeds, so other base batches
            assert not set(t.base_batches_sha) & set(base.values())
            continue
        assert all(base[s] == sha for s, sha in zip(t.seed, t.base_batches_sha)), name  # seed k: the baseline's batches
    assert len(set(base.values())) == len(base)  # and each seed its own
    ids = lambda n: set(tables[n].added_sample_ids.iloc[0])  # noqa: E731
    vqa = read_samples(settings.table_path("genixer_vqa"))
    assert ids("genixer_vqa") == set(vqa.sample_id)  # the lambda rows and the hard-band sample, nothing else
    scored = settings.read_table("scored_generations_l")
    assert ids("raw_vqa") <= set(scored.sample_id) and len(ids("raw_vqa")) == len(vqa)
    from genixer_assets.common import data_source

    oracle = data_source(settings).oracle
    ok = scored[scored.quarantine_reason.isna() & scored.judge_p_yes.notna()]
    correct = set(ok.sample_id[(oracle.column(ok) == "correct").to_numpy()])
    assert ids("oracle_vqa") == correct and (tables["oracle_vqa"].added_oracle_correct == 1.0).all()
    # the ceiling: held-back annotations of the general tasks, as many as the oracle arm's (or all there are), on
    # images no other training set holds
    held = read_samples(settings.table_path("held_back_datasets"))
    ceiling = held[held.sample_id.isin(ids("annotated_vqa"))]
    general = held[held.task.isin(["common_vqa", "adv_vqa", "mc_vqa", "md"])]
    assert len(ceiling) == min(len(correct), len(general)) and set(ceiling.task) <= set(general.task)
    collected = read_samples(settings.table_path("collected_datasets"))
    assert not set(held.image_id) & set(collected.image_id) and held.image_id.str.startswith("held_back").all()
    assert (tables["annotated_vqa"].added_oracle_correct == 1.0).all()  # the world's own annotations


def test_predictions_cover_every_benchmark_for_every_seed(built):
    settings, _ = built
    bench = read_samples(settings.table_path("benchmark_sets"))
    assert (bench.source == "shapes_world:gqa").sum() == (bench.split == "bench").groupby(bench.image_id).any().sum()
    for name in RECIPES:
        pred = settings.read_table("benchmark_predictions", name)
        n_seeds = len(seed_dirs(settings, name))
        assert pred.seed.nunique() == n_seeds and len(pred) % n_seeds == 0
        covered = {b for bs in pred.benchmarks for b in bs}
        assert covered == {b.name for b in BENCHMARKS if b.name not in ("pope", "pope_accuracy")}, name  # the splits' means


def test_scores_are_computed_from_the_predictions(built):
    settings, results = built
    table = pd.read_parquet(settings.table_path("benchmark_scores"))
    csv = pd.read_csv(settings.path("tables", "benchmark_scores.csv"))
    assert len(csv) == len(table) and list(csv.recipe) == list(table.recipe)
    assert set(table.recipe) == set(RECIPES) | set(REFERENCES) and set(table.benchmark) == {b.name for b in BENCHMARKS}
    refs = table[table.recipe.str.startswith("ref:")]
    assert set(refs[refs.recipe == "ref:centre_box"].benchmark) == {b.name for b in BENCHMARKS if b.kind == "rec"}
    # always "yes" on balanced POPE: F1 2/3 (precision 1/2, recall 1) on each split
    yes = refs[refs.recipe == "ref:always_yes"].set_index("benchmark")
    assert yes.loc["pope_random", "mean"] == pytest.approx(2 / 3) and yes.loc["pope", "mean"] == pytest.approx(2 / 3)
    # ... and accuracy 1/2, the counted POPE score (pope F1 is shown, not counted)
    assert yes.loc["pope_accuracy", "mean"] == pytest.approx(1 / 2)
    assert table.set_index("benchmark").kind.to_dict()["pope_accuracy"] == "vqa" and (table[table.benchmark == "pope"].kind == "detail").all()
    assert table.ci_low.notna().sum() > 0 and (table.ci_low.dropna() <= table.delta[table.ci_low.notna()] + 1e-12).all()
    by_seed = pd.read_parquet(settings.table_path("benchmark_scores_by_seed"))
    pred = settings.read_table("benchmark_predictions", "genixer_vqa")
    first = pred[pred.seed == pred.seed.min()]
    vqa = first[first.benchmarks.map(lambda b: "vqav2" in b)]
    exact = float(np.mean([normalize_answer(p) == normalize_answer(t) for p, t in zip(vqa.prediction, vqa.truth)]))
    got = by_seed[(by_seed.recipe == "genixer_vqa") & (by_seed.benchmark == "vqav2") & (by_seed.seed == pred.seed.min())].value.item()
    assert got == pytest.approx(exact)  # one reference answer: VQA accuracy is normalised exact match
    assert score(first).set_index("benchmark").loc["vqav2", "value"] == pytest.approx(got)
    base = table[table.recipe == "baseline"].set_index("benchmark")["mean"]
    row = table[table.recipe == "genixer_rec"].set_index("benchmark")
    assert np.allclose(row["delta"], row["mean"] - base[row.index])
    meta = metadata_of(results, "benchmark_scores")
    assert "genixer_vqa improves" in meta["headline"] and "genixer_rec improves" in meta["headline"]


def test_paper_report_written_with_claims_and_plots(built):
    settings, results = built
    text = settings.path("reports", "paper_report.md").read_text()
    assert "## Claims" in text and "reproduced" in text and "## Benchmark scores" in text
    for claim in ("genixer_vqa improves most VQA-type benchmarks", "More generated data scores higher", "A higher judge threshold"):
        assert claim in text
    assert "Diagnostic, a perfect judge" in text
    for section in ("## Noise", "A/A control (`baseline_aa`", "## Reference predictors", "ref:blind_prior", "## What each recipe trained on",
                    "Held equal across recipes"):
        assert section in text, section
    aa = json.loads(settings.path("tables", "benchmark_noise.json").read_text())
    assert f"{aa['false_alarms']} false alarms in {aa['comparisons']} comparisons" in text
    for png in ("deltas.png", "data_scale.png", "judge_threshold.png"):
        assert settings.path("reports", png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = metadata_of(results, "paper_report")
    assert 0 <= meta["claims_reproduced"] <= meta["claims_checked"] and meta["claims_checked"] >= 5
    # each stage against the aims, recomputed from the tables the stages wrote
    assert "## Each stage against the demo's quality aims" in text
    ev = settings.read_table("base_mllm_eval")
    acc, prior = ev.correct.mean(), ev.prior_correct.mean()
    assert f"{100 * acc:.1f}% vs {100 * prior:.1f}%: {100 * (acc - prior):+.1f} points ({len(ev)} questions)" in text
    held = settings.read_table("judge_mllm_eval")
    assert f"{judge.auc(held.p_yes, held.label):.3f}; by corruption" in text
    spec = settings.read_table("genixer_l_eval").query("mode == 'type_specific'")
    assert f"{100 * (spec.oracle == 'correct').mean():.1f}% of {len(spec)} (" in text
    assert 0 <= meta["stage_aims_met"] <= 9 and "retrained genixer_rec vs baseline, RefCOCO splits" in meta["stage_aims"]


def test_empty_generated_set_fails_naming_the_upstream_asset(built):
    settings, _ = built
    path = settings.table_path("genixer_rec")
    saved = path.with_suffix(".saved")
    shutil.copy(path, saved)
    try:
        read_samples(path).iloc[:0].to_parquet(path, index=False)
        res = dg.materialize(list(defs.assets), selection=["retrained_models"], partition_key="genixer_rec", raise_on_error=False,
                             resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
        assert not res.success
        failure = [e for e in res.all_events if e.is_step_failure][0].step_failure_data.error
        assert "`genixer_rec` holds no rows" in failure.message
    finally:
        shutil.move(saved, path)


def test_interrupted_retraining_resumes_to_the_same_model(built, tmp_path):
    settings, _ = built
    base = settings.model_dir("base_mllm")
    samples = read_samples(settings.table_path("collected_datasets")).head(30)
    records = [{"image_path": s["image_path"], "prompt": t["question"], "target": t["answer"], "task": s["task"]}
               for s in samples.to_dict("records") for t in s["turns"]]
    weights = list(np.linspace(1, 2, len(records)))
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, checkpoint_every=2, freeze_vision_tower=True)
    finetune(base, records, cfg, tmp_path / "whole", sample_weights=weights)
    part = finetune(base, records, dataclasses.replace(cfg, stop_after=3), tmp_path / "resumed", sample_weights=weights)
    assert part.steps == 3 and (tmp_path / "resumed" / "checkpoint").is_dir()
    rest = finetune(base, records, cfg, tmp_path / "resumed", sample_weights=weights)
    assert rest.steps == 6 and not (tmp_path / "resumed" / "checkpoint").exists()
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-6) for k in a)


def test_score_checks_ran(built):
    settings, results = built
    checks = {c.check_name: c for r in results for c in r.get_asset_check_evaluations() if c.asset_key.to_user_string() == "benchmark_scores"}
    assert set(checks) == {"benchmark_scores_complete", "genixer_vqa_improves_most_vqa", "genixer_rec_improves_most_rec", "filter_worth_it",
                           "baseline_beats_blind_prior", "noise_test_false_alarms"}
    assert checks["benchmark_scores_complete"].passed
    assert checks["genixer_vqa_improves_most_vqa"].metadata["of"].value == 6
    t = pd.read_parquet(settings.table_path("benchmark_scores"))
    prior = t[t.recipe == "ref:blind_prior"]
    # the check's counts against the table's intervals (a prior beaten: its interval below the baseline's, ci_high < 0);
    # its verdict on known verdicts: tests/test_check_verdicts.py
    assert len(prior) > 0 and checks["baseline_beats_blind_prior"].metadata["of"].value == len(prior)
    assert checks["baseline_beats_blind_prior"].metadata["beaten"].value == int((prior.ci_high < 0).sum())


def test_applied_lambda_travels_downstream(built, tmp_path):
    """Override lambda on genixer_vqa alone: the lambda arms, the held-out filter and the report use it."""
    settings, _ = built
    shutil.copytree(settings.root, tmp_path / settings.preset)
    mine = GenixerSettings(preset=settings.preset, data_dir=str(tmp_path))
    lam = round(settings.get_preset().judge_lambda - 0.1, 3)
    res = dg.materialize(list(defs.assets), selection=["genixer_vqa", "generation_quality", "benchmark_scores", "paper_report"],
                         run_config={"ops": {"genixer_vqa": {"config": {"judge_lambda": lam}}}},
                         resources={"settings": mine, "backend": MLLMBackend(device="cpu")})
    assert res.success and read_applied(mine.table_path("genixer_vqa"))["judge_lambda"] == lam
    assert (pd.read_parquet(mine.table_path("generation_quality_domains")).judge_lambda == lam).all()
    text = mine.path("reports", "paper_report.md").read_text()
    assert f"judge_lambda = {lam}" in text and f"lambda {lam - 0.1:.2f}" in text
    res = dg.materialize(list(defs.assets), selection=["retrained_models"], partition_key="vqa_lambda_minus_0.1",
                         run_config={"ops": {"retrained_models": {"config": {"seeds": 1}}}},
                         resources={"settings": mine, "backend": MLLMBackend(device="cpu")})
    assert res.success and mine.read_table("retrained_models", "vqa_lambda_minus_0.1").judge_lambda.item() == pytest.approx(lam - 0.1)
