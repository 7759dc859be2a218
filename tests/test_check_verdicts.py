"""Aims whose verdict is known from the table the test writes (issue 29 item 5): a check is called on a hand-made
output in a temporary data root, and its `passed` is compared with the answer the construction fixes, not with the
check's own formula. Zero rows are not a pass."""

import dagster as dg
import pandas as pd
import pytest

from genixer.tasks import GENERAL_TASKS
from genixer_assets import benchmarks_checks, common, generators_checks
from resources import GenixerSettings


@pytest.fixture
def settings(tmp_path):
    return GenixerSettings(preset="smoke", data_dir=str(tmp_path))


def run(check, settings) -> dg.AssetCheckResult:
    context = dg.build_asset_check_context(resources={"settings": settings})
    result = check(context)
    del context
    return result


# ---- genixer_l_oracle_correctness: over 80% correct for every general task --------------------

def write_world(settings) -> None:
    """A run with the world, whose data source has the oracle: two collect images rendered and annotated
    (world_scenes, collected_datasets)."""
    from genixer.schema import write_samples
    from genixer.world import WorldConfig, annotate_images, build_split

    p = settings.get_preset()
    images = build_split("collect", 2, settings.path("world"), WorldConfig(), base_seed=p.seed)
    pd.DataFrame(images).to_parquet(settings.table_path("world_scenes"), index=False)
    write_samples(pd.DataFrame(annotate_images(images, per_image=1, seed=p.seed)), settings.table_path("collected_datasets"))


def write_l_eval(settings, correct_per_task: dict[str, int], n: int = 10, agnostic: int = 4) -> None:
    """genixer_l_eval as genixer_l writes it: n type-specific generations per task, `correct_per_task[t]` of them
    correct by the oracle, and `agnostic` type-agnostic rows (all correct: they must not count). The run has the
    world (collected_datasets annotated from it)."""
    write_world(settings)
    rows = [{"mode": "type_specific", "requested_task": t, "oracle": "correct" if i < k else "incorrect"}
            for t, k in correct_per_task.items() for i in range(n)]
    rows += [{"mode": "type_agnostic", "requested_task": "", "oracle": "correct"}] * agnostic
    pd.DataFrame(rows, columns=["mode", "requested_task", "oracle"]).to_parquet(settings.table_path("genixer_l_eval"), index=False)


def test_oracle_correctness_passes_when_every_task_is_over_the_aim(settings):
    write_l_eval(settings, {t: 9 for t in GENERAL_TASKS})  # 90% > 80% for each of the four tasks
    res = run(generators_checks.genixer_l_oracle_correctness, settings)
    assert res.passed and res.severity == common.AIM
    assert {t: res.metadata[f"correct_{t}"].value for t in GENERAL_TASKS} == {t: 0.9 for t in GENERAL_TASKS}


def test_oracle_correctness_misses_when_one_task_is_at_the_aim(settings):
    write_l_eval(settings, {**{t: 10 for t in GENERAL_TASKS}, "md": 8})  # 80% is not over 80%
    res = run(generators_checks.genixer_l_oracle_correctness, settings)
    assert not res.passed and res.severity == common.AIM and res.metadata["correct_md"].value == 0.8


@pytest.mark.parametrize("tasks", [(), ("common_vqa", "adv_vqa", "mc_vqa")], ids=["no_generation", "md_missing"])
def test_oracle_correctness_is_not_passed_without_generations_for_a_task(settings, tasks):
    """Zero type-specific rows (the type-agnostic ones are all correct and must not count), or none for one task
    while the others are all correct: the aim cannot be met, and the check says which tasks were not measured.
    Before the fix `(per > 0.8).all()` of an empty (or three-task) series passed."""
    write_l_eval(settings, {t: 10 for t in tasks})
    res = run(generators_checks.genixer_l_oracle_correctness, settings)
    missing = [t for t in GENERAL_TASKS if t not in tasks]
    assert not res.passed and res.severity == common.AIM
    assert res.description == f"not measured: no type-specific generation for {', '.join(missing)}"
    assert res.metadata["unmeasured_tasks"].value == ", ".join(missing)


# ---- base_mllm_above_chance: accuracy at least 10 points above the blind prior ---------------

def write_base_eval(settings, accuracy_by_task: dict[str, float], n: int = 20) -> None:
    rows = [{"task": t, "correct": i < round(a * n)} for t, a in accuracy_by_task.items() for i in range(n)]
    pd.DataFrame(rows).to_parquet(settings.table_path("base_mllm_eval"), index=False)


@pytest.mark.parametrize("accuracy,blind,passed", [(0.5, 0.3, True), (0.4, 0.3, True), (0.35, 0.3, False), (0.0, 0.0, False)])
def test_base_mllm_above_chance_against_a_known_blind_prior(settings, monkeypatch, accuracy, blind, passed):
    """The blind prior is fixed here (its own computation is read back in tests/test_assets_generators.py against
    the prior_correct column base_mllm writes): the verdict is the one the numbers the test wrote call for."""
    monkeypatch.setattr(generators_checks, "_blind", lambda _settings: blind)
    write_base_eval(settings, {"common_vqa": accuracy, "rec": accuracy})
    res = run(generators_checks.base_mllm_above_chance, settings)
    assert res.passed is passed and res.severity == common.AIM
    assert res.metadata["accuracy"].value == pytest.approx(accuracy) and res.metadata["blind_prior"].value == blind


# ---- baseline_beats_blind_prior: the baseline above the prior beyond the noise on every benchmark ----

def write_scores(settings, prior_verdicts: dict[str, str]) -> None:
    rows = [{"recipe": "baseline", "benchmark": b, "mean": 0.6, "baseline_mean": 0.6, "verdict": "-"} for b in prior_verdicts]
    rows += [{"recipe": "ref:blind_prior", "benchmark": b, "mean": 0.3 if v == "worse" else 0.58, "baseline_mean": 0.6, "verdict": v}
             for b, v in prior_verdicts.items()]
    rows += [{"recipe": "genixer_vqa", "benchmark": "vqav2", "mean": 0.2, "baseline_mean": 0.6, "verdict": "within noise"}]  # not the prior
    pd.DataFrame(rows, columns=["recipe", "benchmark", "mean", "baseline_mean", "verdict"]).to_parquet(
        settings.table_path("benchmark_scores"), index=False)


@pytest.mark.parametrize("verdicts,passed,beaten", [
    ({"vqav2": "worse", "gqa": "worse"}, True, 2),
    ({"vqav2": "worse", "gqa": "within noise"}, False, 1),
    ({}, False, 0),  # no prior row: nothing shows the baseline beats it
], ids=["beaten_everywhere", "gqa_within_noise", "no_prior_rows"])
def test_baseline_beats_blind_prior_on_known_verdicts(settings, verdicts, passed, beaten):
    write_scores(settings, verdicts)
    res = run(benchmarks_checks.baseline_beats_blind_prior, settings)
    assert res.passed is passed
    assert res.severity == (common.GUARD if benchmarks_checks.REFERENCE_BLOCKING else common.AIM)
    assert res.metadata["beaten"].value == beaten and res.metadata["of"].value == len(verdicts)
    if verdicts.get("gqa") == "within noise":
        assert res.description == "1 problems; first: gqa: baseline 60.0 vs prior 58.0 (within noise for the prior)"
