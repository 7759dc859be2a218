"""Declarative automation is on under the daemon by default (`make dev`): one iteration of Dagster's own asset daemon,
on the code location loaded as `dagster dev` loads it, evaluates the sensor that covers every asset with an
automation condition (Dagster's default_automation_condition_sensor would be created stopped)."""

import dagster as dg
from dagster._core.definitions.sensor_definition import SensorType
from dagster._core.scheduler.instigation import TickStatus
from dagster._daemon.asset_daemon import AssetDaemon

from genixer_assets.backfill import workspace
from genixer_assets.definitions import defs


def test_the_daemon_evaluates_the_automation_conditions_by_default():
    graph = defs.resolve_asset_graph()
    conditioned = {k for k in graph.materializable_asset_keys if graph.get(k).automation_condition is not None}
    assert {"scored_generations_l", "scored_generations_s", "genixer_vqa", "genixer_rec", "dataset_exports"} <= \
        {k.to_user_string() for k in conditioned}
    with dg.instance_for_test() as instance, workspace(instance) as ctx:
        repo = next(iter(ctx.create_request_context().get_code_location("genixer_assets.definitions")
                         .get_repositories().values()))
        sensors = [s for s in repo.get_sensors() if s.sensor_type in (SensorType.AUTOMATION, SensorType.AUTO_MATERIALIZE)]
        covered = set().union(*(s.asset_selection.resolve(graph) for s in sensors))
        assert conditioned <= covered
        daemon = AssetDaemon(settings=instance.get_auto_materialize_settings(), pre_sensor_interval_seconds=30)
        daemon._run_iteration_impl(ctx, threadpool_executor=None, amp_tick_futures={}, debug_crash_flags={})
        ticks = {s.name: instance.get_ticks(s.get_remote_origin_id(), s.selector_id) for s in sensors}
        assert {name: len(t) for name, t in ticks.items()} == {"genixer_automation": 1}  # evaluated; no other (stopped) one
        tick = ticks["genixer_automation"][0]
        assert tick.status in (TickStatus.SKIPPED, TickStatus.SUCCESS), tick
        # nothing is materialised yet, so nothing is requested (every eager asset waits for its missing parents)
        assert not tick.tick_data.run_ids
