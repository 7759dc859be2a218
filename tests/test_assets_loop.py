"""The closed loop's round 1 on the smoke graph (group `loop`): base_mllm evaluated on the development split with
every question typed, the bad-case pool, and Adaptive Bad-case Sampling's queries with the uniform control, read
back from disk and from the instance."""

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
def loop(built):
    settings, results = built
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
