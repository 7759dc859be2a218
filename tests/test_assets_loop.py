"""The closed loop on the smoke graph (group `loop`), run as `make loop` runs it (two rounds, then the evaluation that
stops it and the report): each round's evaluation on the development split, Adaptive Bad-case Sampling with its
controls, targeted generation, correction and filtering, the arms' training and their scores, read back from disk
and from the instance."""

import json

import pandas as pd
import pytest

from tests.conftest import metadata_of
from genixer.loop import DEV_SPLIT, bad_cases, sampling_weights, type_table
from genixer.presets import get_preset
from genixer.schema import read_samples
from genixer.tasks import GENERAL_TASKS
from genixer.world.grammar import TASK_KINDS
from genixer_assets.common import run_context

ROUND = "round_1"


@pytest.fixture(scope="module")
def loop(looped):
    settings, results = looped
    ev = pd.read_parquet(settings.table_path("loop_evaluation", ROUND))
    q = pd.read_parquet(settings.table_path("loop_queries", ROUND))
    return settings, results, ev, q


def test_round_1_evaluates_base_mllm_on_the_development_split_only(loop):
    settings, results, ev, _ = loop
    _, src = run_context(settings)
    collected = read_samples(settings.table_path("collected_datasets"))
    dev = collected[collected.image_id.isin(src.heldout) & collected.task.isin(GENERAL_TASKS)]
    assert sorted(ev.sample_id) == sorted(dev.sample_id) and len(ev) > 0  # every development question, nothing else
    assert (ev.split == DEV_SPLIT).all() and ev.image_id.isin(src.heldout).all()
    bench = read_samples(settings.table_path("benchmark_sets"))
    assert not set(ev.image_id) & set(bench.image_id)  # never the questions the report scores
    # every question typed by the grammar kind its phrasing matches, within its task's kinds
    assert all(k in TASK_KINDS[t] for t, k in zip(ev.task, ev.question_type)), ev[["task", "question_type"]].head()
    md = metadata_of(results, "loop_evaluation")
    assert md["questions"] == len(ev) and md["bad_cases"] == int((~ev.correct).sum()) == len(bad_cases(ev))
    assert md["accuracy"] == pytest.approx(ev.correct.mean()) and md["stop"].startswith("go on (round 1 of at most 2)")
    checks = {c.check_name: c.passed for r in results for c in r.get_asset_check_evaluations()}
    assert checks["loop_evaluation_valid"] and checks["loop_queries_valid"]


def test_round_1_queries_are_drawn_inverse_to_the_score_beside_a_uniform_control(loop):
    settings, _, ev, q = loop
    p = get_preset("smoke")
    table, pool = type_table(ev), bad_cases(ev)
    weights, _ = sampling_weights(table, p.loop_weight_floor)
    assert len(weights) >= 2, table  # the smoke model gets several types wrong at least twice
    corpus = pd.concat([settings.read_table("image_corpus", k) for k in ("shard_000", "shard_001")])
    assert set(q.arm) == {"targeted", "uniform"}  # round 1 has no previous round
    for arm, g in q.groupby("arm"):
        assert len(g) == min(p.loop_queries, len(corpus)) and g.image_id.is_unique and g.image_id.isin(corpus.image_id).all()
        assert list(g.image_from) == ["random", "similar"] * (len(g) // 2) + ["random"] * (len(g) % 2)
        kinds = pool.set_index("sample_id").question_type
        assert all(len(set(ic)) == 2 and {kinds[s] for s in ic} == {t} for ic, t in zip(g.in_context, g.question_type))
    targeted = q[q.arm == "targeted"].drop_duplicates("question_type").set_index("question_type").p_type
    assert targeted.to_dict() == pytest.approx(weights[targeted.index].to_dict())  # 1 / max(score, floor), normalised
    uniform = q[q.arm == "uniform"].p_type
    assert set(q[q.arm == "uniform"].question_type) <= set(weights.index) and uniform.nunique() == 1
    assert uniform.iloc[0] == pytest.approx(1 / len(weights))


def _records(results, asset: str) -> list[dict]:
    """Every materialisation of `asset` in the loop's runs, in order: partition, storage id, metadata."""
    out = []
    for r in results:
        for e in r.get_asset_materialization_events():
            if e.asset_key.to_user_string() == asset:
                out.append({"partition": e.partition, "run_id": r.run_id,
                            "metadata": {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}})
    return out


def test_two_rounds_run_and_each_round_starts_from_the_last_ones_model(looped, instance):
    import dagster as dg

    settings, results = looped
    evals = _records(results, "loop_evaluation")
    assert [e["partition"] for e in evals] == ["round_1", "round_2", "round_3"]
    assert [e["metadata"]["stop"] for e in evals] == ["go on (round 1 of at most 2)", "go on (round 2 of at most 2)",
                                                       "stop: maximum rounds reached (2)"]
    models = _records(results, "loop_models")
    assert [m["partition"] for m in models] == ["round_1", "round_2"]
    for r in (2, 3):  # round r's evaluation read the model loop_models[r - 1] made, and the instance says which one
        ev, made = evals[r - 1]["metadata"], models[r - 2]
        recs = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("loop_models"),
                                                                     asset_partitions=[f"round_{r - 1}"]), limit=1).records
        assert ev["model_from"] == f"loop_models[round_{r - 1}]" and ev["model_from_storage_id"] == recs[0].storage_id
        assert ev["model_from_run"] == made["run_id"] == recs[0].run_id and ev["model"] == str(made["metadata"]["main_model"])
    assert evals[0]["metadata"]["model_from"] == "base_mllm"
    t2 = pd.read_parquet(settings.table_path("loop_models", "round_2"))
    assert (t2.start == str(models[0]["metadata"]["main_model"])).all()  # round 2's arms were fine-tuned from round 1's model
    q2 = pd.read_parquet(settings.table_path("loop_queries", "round_2"))
    assert set(q2.arm) == {"targeted", "uniform", "previous"}
    report = _records(results, "loop_report")
    assert len(report) == 1 and report[0]["metadata"]["rounds"] == 2
    text = settings.path("reports", "paper_report.md").read_text()
    assert text.count("## The closed loop") == 1 and "targeted - uniform" in text and "targeted - previous" in text
    assert settings.path("reports", "loop_report.md").read_text().count("### Round") == 2


def test_generations_are_checked_corrected_and_judged_per_variant(looped):
    from genixer.loop import FAILURES, VARIANTS, choose_variant, failure_table
    from genixer.schema import read_applied

    settings, results = looped
    p = get_preset("smoke")
    _, src = run_context(settings)
    for key in ("round_1", "round_2"):
        g = read_samples(settings.table_path("loop_generations", key))
        q = pd.read_parquet(settings.table_path("loop_queries", key))
        applied = read_applied(settings.table_path("loop_generations", key))
        targeted = g[g.arm == "targeted"]
        assert sorted(targeted.variant.unique()) == sorted(VARIANTS)  # every variant on every targeted query
        assert all(len(v) == p.loop_per_query * (q.arm == "targeted").sum() for _, v in targeted.groupby("variant"))
        assert applied["chosen_variant"] == choose_variant(failure_table(targeted))  # the fewest failures
        assert set(g[g.arm != "targeted"].variant) == {applied["chosen_variant"]} and g.chosen.eq(g.variant == applied["chosen_variant"]).all()
        assert set(g.status) <= {"kept", *FAILURES}
        kept = g[g.status == "kept"]
        assert (kept.generated_type == kept.requested_type).all() and (kept.judge_p_yes >= applied["judge_lambda"]).all()
        assert g[g.status == "unparseable"].quarantine_reason.notna().all() and g[g.status != "unparseable"].quarantine_reason.isna().all()
        wrong = g[g.status == "wrong type"]
        assert (wrong.generated_type != wrong.requested_type).all()
        # the corrected answer is in the turns, the generated one beside it; the oracle judged what is kept
        assert all(t[0]["answer"] != b for t, b, c in zip(kept.turns, kept.answer_before, kept.corrected) if c)
        assert (kept.oracle == src.oracle.column(kept).to_numpy()).all()
        meta = [m for m in _records(results, "loop_generations") if m["partition"] == key][0]["metadata"]
        assert json.loads(meta["kept_by_arm"]) == g[g.chosen & (g.status == "kept")].groupby("arm").size().to_dict()


def test_the_arms_share_their_base_batches_and_the_controls_get_as_much_data(looped):
    settings, _ = looped
    p = get_preset("smoke")
    for key in ("round_1", "round_2"):
        m = pd.read_parquet(settings.table_path("loop_models", key))
        g = read_samples(settings.table_path("loop_generations", key))
        kept = g[g.chosen & (g.status == "kept")]
        assert "replay" in set(m.arm) and "targeted" in set(m.arm) and (m.groupby("arm").size() == p.retrain_seeds).all()
        assert (m.groupby("seed").base_batches_sha.nunique() == 1).all()  # seed k of every arm: the same base batches
        assert m[m.arm == "replay"].added_rows.eq(0).all()
        controls = m[m.arm.isin(["targeted", "uniform", "previous"])]
        assert controls.added_rows.nunique() == 1  # the same amount of data
        for r in m[m.arm.isin(["targeted", "uniform", "previous"])].itertuples():
            assert set(r.added_sample_ids) <= set(kept[kept.arm == r.arm].sample_id)
        for r in m[m.arm == "oracle"].itertuples():
            rows = g[g.sample_id.isin(r.added_sample_ids)]
            assert len(rows) == r.added_rows and (rows.oracle == "correct").all() and rows.status.isin(["kept", "judge-rejected"]).all()


def test_the_test_split_scores_every_model_on_the_reports_questions_never_the_development_ones(looped):
    settings, _ = looped
    for key in ("round_1", "round_2"):
        s = pd.read_parquet(settings.table_path("loop_scores", key))
        m = pd.read_parquet(settings.table_path("loop_models", key))
        assert set(zip(s.recipe, s.seed)) == {("start", 0), ("ref:blind_prior", 0), *zip(m.arm, m.seed)}  # the prior beside
        assert s.groupby(["recipe", "seed"]).sample_id.nunique().nunique() == 1  # every model, every question
        bench = read_samples(settings.table_path("benchmark_sets"))
        assert set(s.sample_id) <= set(bench.sample_id)
        ev = pd.read_parquet(settings.table_path("loop_evaluation", key))
        assert not set(s.sample_id) & set(ev.sample_id)
        assert s.question_type.notna().all() and s.value.between(0, 1).all()
    report = settings.path("reports", "loop_report.md").read_text()
    assert "blind_prior" in report and "ref:blind_prior" not in set(pd.read_parquet(settings.table_path("loop_models", "round_1")).arm)


def test_the_typed_generator_learnt_the_collected_datas_types(looped):
    from genixer.world.oracle import KIND_PHRASES, KIND_TASK

    settings, results = looped
    info = json.loads(settings.path("tables", "loop_generator.json").read_text())
    assert info["type_tasks"] and all(KIND_TASK[t] == task for t, task in info["type_tasks"].items())  # each type's own task
    assert all(info["phrases"][t] == KIND_PHRASES[t] for t in info["type_tasks"])
    md = _records(results, "loop_generator")[0]["metadata"]
    assert md["typed_records"] == info["typed_records"] > 0 and md["records"] == info["records"]
    assert (settings.model_dir("loop_generator") / "config.json").is_file()


def test_the_next_step_is_read_from_the_instance():
    """The decision make loop and the loop_next_round sensor share, on a fresh instance given materialisations."""
    import dagster as dg

    from genixer_assets.automation import loop_next_round
    from genixer_assets.loop_run import ROUND_REST, next_step

    with dg.DagsterInstance.ephemeral() as inst:
        def made(asset, partition=None, **metadata):
            inst.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition, metadata=metadata))

        assert next_step(inst) is None  # not started: the sensor starts nothing
        assert isinstance(loop_next_round(dg.build_sensor_context(instance=inst)), dg.SkipReason)
        made("loop_evaluation", "round_1", stop="go on (round 1 of at most 2)")
        assert next_step(inst)[:2] == (ROUND_REST, "round_1")
        request = loop_next_round(dg.build_sensor_context(instance=inst))
        assert request.partition_key == "round_1" and {k.to_user_string() for k in request.asset_selection} == set(ROUND_REST)
        made("loop_scores", "round_1")
        assert next_step(inst)[:2] == (["loop_evaluation"], "round_2")
        made("loop_evaluation", "round_2", stop="stop: the bad-case pool is empty: the model answers every development question right")
        assert next_step(inst)[:2] == (["loop_report"], None)  # a perfect model ends the loop, with its report
        made("loop_report")
        assert next_step(inst) is None
        made("paper_report")  # the graph's report made again (make demo): the loop's section is written again
        assert next_step(inst)[:2] == (["loop_report"], None)
        made("loop_report")
        assert next_step(inst) is None
        made("loop_evaluation", "round_1", stop="go on (round 1 of at most 2)")  # a restarted loop: round 1 again
        assert next_step(inst)[:2] == (ROUND_REST, "round_1")
