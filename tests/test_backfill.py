"""The whole graph as one asset backfill (genixer_assets.backfill), the path of the UI's "Materialize all" and of
`make demo`: `built` (conftest) is made this way; here its runs and partitions are read back from the instance."""

import dagster as dg
import pytest

from genixer_assets import backfill
from genixer_assets.definitions import defs


def _backfill_runs(instance):
    (bf,) = [b for b in instance.get_backfills() if b.title == "Materialize all"]
    return bf, instance.get_runs(filters=dg.RunsFilter.for_backfill(bf.backfill_id))


def test_one_backfill_holds_every_asset_and_partition(built, instance):
    _, results = built
    bf, runs = _backfill_runs(instance)
    assert bf.status.value == "COMPLETED_SUCCESS"
    assert bf.is_asset_backfill
    graph = defs.resolve_asset_graph()
    plan = backfill.PLAN.resolve(graph)
    assert {k.to_user_string() for k in plan} == {"world_scenes", "corpus_shards"}
    # the plan is one run outside the backfill; every other run of `built` belongs to the backfill
    assert results[0].run_id not in {r.run_id for r in runs}
    assert {r.run_id for r in results[1:]} == {r.run_id for r in runs}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # the backfill targeted every asset but the plan and the closed loop (make loop runs it round by round after), each
    # in every partition, and each was materialised there
    assert set(bf.asset_selection) == set(graph.materializable_asset_keys) - plan - backfill.LOOP.resolve(graph)
    for key in bf.asset_selection:
        pdef = graph.get(key).partitions_def
        expected = set(pdef.get_partition_keys(dynamic_partitions_store=instance)) if pdef else {None}
        got = {e.partition for r in results[1:] for e in r.get_asset_materialization_events() if e.asset_key == key}
        assert got == expected, key
    shards = instance.get_dynamic_partitions("corpus_shards")
    assert len(shards) >= 2
    # the daemon split it into runs of one partition each (a shard's or a recipe's assets), and unpartitioned runs
    parts = {r.tags.get("dagster/partition") for r in runs}
    assert set(shards) | {"baseline", "genixer_vqa", None} <= parts


def test_backfill_checks_ran_in_its_runs(built):
    _, results = built
    evals = [c for r in results[1:] for c in r.get_asset_check_evaluations()]
    names = {c.check_name for c in evals}
    assert {"benchmark_scores_complete", "genixer_vqa_not_empty", "judge_mllm_weights_finite"} <= names
    assert all(c.passed for c in evals if c.check_name.endswith("_weights_finite"))


def test_backfill_seen_through_graphql_as_the_ui_sees_it(built, instance):
    from dagster_graphql.test.utils import execute_dagster_graphql

    bf, runs = _backfill_runs(instance)
    query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
      __typename ... on PartitionBackfill { id status isAssetBackfill numPartitions
        assetSelection { path } runs(limit: 100) { id status } } } }"""
    with backfill.workspace(instance) as ctx:
        res = execute_dagster_graphql(ctx.create_request_context(), query, {"id": bf.backfill_id})
    assert res.errors is None, res.errors
    got = res.data["partitionBackfillOrError"]
    assert got["__typename"] == "PartitionBackfill" and got["isAssetBackfill"]
    assert got["status"] == "COMPLETED_SUCCESS"
    assert {"/".join(a["path"]) for a in got["assetSelection"]} == {k.to_user_string() for k in bf.asset_selection}
    assert {r["id"] for r in got["runs"]} == {r.run_id for r in runs}


def test_failed_backfill_run_is_reported_with_its_step_error(tmp_path):
    """A backfill whose run fails ends failed, and the run's step error is read back (the demo prints it)."""
    inst = dg.DagsterInstance.local_temp(str(tmp_path), overrides=backfill.IN_PROCESS)
    try:
        cfg = {"resources": {"settings": {"config": {"preset": "smoke", "data_dir": str(tmp_path / "empty")}}},
               "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        with backfill.workspace(inst) as ctx:
            bid = backfill.launch(ctx, [dg.AssetKey("paper_report")], cfg, title="broken")
            outcomes = backfill.run(ctx, bid, log=lambda *_: None)
        assert inst.get_backfill(bid).status.value in {"COMPLETED_FAILED", "FAILED"}
        (out,) = outcomes
        assert not out.success
        (failure,) = out.failures()
        assert failure.startswith("paper_report:")
        assert out.label() == "paper_report"
    finally:
        inst.dispose()


def test_launch_refuses_an_unknown_asset(tmp_path):
    inst = dg.DagsterInstance.local_temp(str(tmp_path), overrides=backfill.IN_PROCESS)
    try:
        with backfill.workspace(inst) as ctx, pytest.raises(RuntimeError, match="launchPartitionBackfill"):
            backfill.launch(ctx, [dg.AssetKey("no_such_asset")])
    finally:
        inst.dispose()


def test_plan_registers_the_shards_once(tmp_path):
    """`make dev`'s first step: the corpus planned while no shard is registered, left alone after."""
    inst = dg.DagsterInstance.local_temp(str(tmp_path))
    try:
        res = {"settings": {"config": {"preset": "smoke", "data_dir": str(tmp_path / "data")}}}
        lines = []
        out = backfill.plan(inst, log=lines.append, resources=res)
        assert out is not None and out.success
        assert {e.asset_key.to_user_string() for e in out.get_asset_materialization_events()} == {"world_scenes", "corpus_shards"}
        shards = inst.get_dynamic_partitions("corpus_shards")
        assert len(shards) >= 2 and (tmp_path / "data" / "smoke").is_dir()
        assert backfill.plan(inst, log=lines.append, resources=res) is None
        assert inst.get_dynamic_partitions("corpus_shards") == shards
        assert len(inst.get_run_ids()) == 1
        assert "already planned" in lines[-1]
        assert out.label() == "corpus_shards, world_scenes"
    finally:
        inst.dispose()
