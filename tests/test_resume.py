"""genixer_assets/resume.py on small instances: which asset partitions a rerun reuses (the rule, case by case), the
runs of a demo whose process is gone (marked failed, slots freed, the backfill failed, live and foreign runs left
alone), and code versions that follow the source an asset runs. The demo itself, killed and interrupted:
tests/test_demo_driver.py."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from genixer_assets import resume

PARTS = dg.StaticPartitionsDefinition(["a", "b"])


class DownConfig(dg.Config):
    n: int = 0


def toy(folder: Path, down_version: str = "1", passes: bool = True):
    """up (unpartitioned, writes a file) -> down (partitions a, b) with a blocking check."""

    @dg.asset(code_version="1")
    def up() -> dg.MaterializeResult:
        path = folder / "up.txt"
        path.write_text("up")
        return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path))})

    @dg.asset(partitions_def=PARTS, deps=[up], code_version=down_version)
    def down(config: DownConfig) -> None:
        return None

    @dg.asset_check(asset=down, blocking=True)
    def down_ok() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=passes)

    return [up, down], [down_ok]


def _graph(assets, checks):
    return dg.Definitions(assets=assets, asset_checks=checks).resolve_asset_graph()


def _run(instance, assets, checks, key, partition=None, config="c1", n=0):
    ops = {"ops": {"down": {"config": {"n": n}}}} if key == "down" else None
    return dg.materialize([*assets, *checks], selection=dg.AssetSelection.assets(key), instance=instance,
                          partition_key=partition, run_config=ops, tags={resume.CONFIG_TAG: config},
                          raise_on_error=False)


def _reused(instance, assets, checks, config="c1", n=0, keys=None):
    graph = _graph(assets, checks)
    got = resume.reusable(instance, graph, keys or graph.toposorted_asset_keys, config,
                          {"down": {"config": {"n": n}}})
    return {k.to_user_string(): sorted(p or "-" for p in v) for k, v in got.reused.items() if v}, got


def test_what_a_rerun_reuses(tmp_path):
    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    assets, checks = toy(tmp_path)
    try:
        reused, got = _reused(instance, assets, checks)
        assert reused == {} and got.total == 3 and got.summary() == "nothing to reuse"
        for key, part in (("up", None), ("down", "a"), ("down", "b")):
            assert _run(instance, assets, checks, key, part).success
        reused, got = _reused(instance, assets, checks)
        assert reused == {"up": ["-"], "down": ["a", "b"]}
        assert got.summary().startswith("every asset partition is up to date") and "down 2/2" in got.summary()
        # another resource config, another op config for down: nothing of it is reused
        assert _reused(instance, assets, checks, config="c2")[0] == {}
        assert _reused(instance, assets, checks, n=1)[0] == {"up": ["-"]}
        # up materialised again after down: down is stale; down[a] made again after it: only b is stale
        assert _run(instance, assets, checks, "up").success
        assert _reused(instance, assets, checks)[0] == {"up": ["-"]}
        assert _run(instance, assets, checks, "down", "a").success
        reused, got = _reused(instance, assets, checks)
        assert reused == {"up": ["-"], "down": ["a"]}
        assert got.missing(dg.AssetKey("down")) == ["b"] and got.count == 2
        assert got.summary().startswith("reusing 2 of 3 asset partitions") and "down 1/2" in got.summary()
        # down's code changed: none of its partitions is reused
        assert _reused(instance, *toy(tmp_path, down_version="2"))[0] == {"up": ["-"]}
        # a blocking check failed on down[b]'s latest materialisation: it is made again
        failing = toy(tmp_path, passes=False)
        assert _run(instance, *failing, "down", "b", n=0).success is False
        assert _reused(instance, *failing)[0] == {"up": ["-"], "down": ["a"]}
        # up's file is gone: up and everything after it are made again; left out of the run, up is not asked about
        (tmp_path / "up.txt").unlink()
        assert _reused(instance, assets, checks)[0] == {}
        assert _reused(instance, assets, checks, keys=[dg.AssetKey("down")])[0] == {"down": ["a"]}
    finally:
        instance.dispose()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_runs_of_a_gone_process_are_failed_and_free_their_slots(tmp_path):
    """Runs left STARTED by a process that is gone (a dead pid, or this pid with another start time: a reused pid)
    are marked failed and not retried, a CANCELING one canceled; the gpu slot they held is freed and their backfill
    failed, all said in one line. Runs of a live process, of another host, or waiting to start are left alone. Runs
    without the tag (an older demo's, `make dev`'s) are judged by the pid of their last event."""
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.storage.tags import WILL_RETRY_TAG

    instance = dg.DagsterInstance.local_temp(str(tmp_path))
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    host = socket.gethostname()
    dead = f"{host}:{_dead_pid()}:{time.time() - 60:.2f}"
    reused_pid = f"{host}:{os.getpid()}:123.00"  # this pid, but another process's start time: a reused pid
    alive = resume.driver_id()
    runs = {}
    for name, tag, status in (("dead", dead, "STARTED"), ("reused_pid", reused_pid, "STARTED"),
                              ("canceling", dead, "CANCELING"), ("alive", alive, "STARTED"),
                              ("other_host", "elsewhere:1:1.00", "STARTED")):
        run = dg.DagsterRun(job_name="__ASSET_JOB", run_id=f"{name}-0000-0000-0000-000000000000"[:36],
                            status=getattr(dg.DagsterRunStatus, status), tags={resume.DRIVER_TAG: tag})
        runs[name] = instance.add_run(run)
    assert storage.claim_concurrency_slot("gpu", runs["dead"].run_id, "scored_generations_s").is_claimed
    # runs without the tag (an older demo's, or `make dev`'s): judged by the pid their last event came from
    for name, pid, status in (("untagged_dead", int(dead.split(":")[1]), "STARTED"),
                              ("untagged_alive", os.getpid(), "STARTED"), ("untagged_waiting", 0, "NOT_STARTED")):
        run_id = f"{name.split('_')[1]:x<8}-0000-0000-0000-000000000000"  # the first 8 characters name it in the line
        runs[name] = run = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=run_id,
                                                          status=getattr(dg.DagsterRunStatus, status)))
        event = DagsterEvent(DagsterEventType.ENGINE_EVENT.value, run.job_name, message="working", pid=pid or None,
                             event_specific_data=EngineEventData())
        instance.handle_new_event(EventLogEntry(error_info=None, level=20, user_message="", run_id=run.run_id,
                                                timestamp=time.time(), dagster_event=event))
    for name, tag in (("dead", dead), ("alive", alive)):
        instance.add_backfill(PartitionBackfill(backfill_id=name, status=BulkActionStatus.REQUESTED, from_failure=False,
                                                tags={resume.DRIVER_TAG: tag}, backfill_timestamp=time.time(),
                                                title="Materialize all"))
    try:
        line = resume.recover(instance)
        status = {n: instance.get_run_by_id(r.run_id).status.value for n, r in runs.items()}
        assert status == {"dead": "FAILURE", "reused_pid": "FAILURE", "canceling": "CANCELED", "alive": "STARTED",
                          "other_host": "STARTED", "untagged_dead": "FAILURE", "untagged_alive": "STARTED",
                          "untagged_waiting": "NOT_STARTED"}
        assert storage.get_concurrency_info("gpu").claimed_slots == []
        assert instance.get_backfill("dead").status == BulkActionStatus.FAILED
        assert instance.get_backfill("alive").status == BulkActionStatus.REQUESTED
        assert instance.get_run_by_id(runs["dead"].run_id).tags[WILL_RETRY_TAG] == "false"
        failure = instance.get_records_for_run(runs["dead"].run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert len(failure) == 1 and "is gone" in failure[0].event_log_entry.dagster_event.message
        assert line.startswith("An earlier demo stopped without cleaning up (process ")
        assert f"run {runs['dead'].run_id[:8]} (__ASSET_JOB) marked failed" in line
        assert f"run {runs['canceling'].run_id[:8]} (__ASSET_JOB) marked canceled" in line
        assert "1 gpu slot freed" in line and "backfill dead marked failed" in line
        assert f"run {runs['untagged_dead'].run_id[:8]} (__ASSET_JOB) marked failed" in line
        assert "alive" not in line and "other_h" not in line and "waiting" not in line, line
        assert resume.recover(instance) is None  # nothing left to do
    finally:
        instance.dispose()


def test_code_version_follows_the_imported_source(tmp_path, monkeypatch):
    """An asset module's version covers its own source and the project modules it imports, transitively (not
    the modules that import it)."""
    pkg = tmp_path / "genixer"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "asset.py").write_text("import os\nfrom genixer.sub import lib\n")
    (pkg / "sub" / "lib.py").write_text("from genixer import deep\n")
    (pkg / "deep.py").write_text("X = 1\n")
    (pkg / "user.py").write_text("from genixer import asset\n")
    monkeypatch.setattr(resume, "REPO", tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in resume.source_closure("genixer.asset")] == [
        "genixer/__init__.py", "genixer/asset.py", "genixer/deep.py", "genixer/sub/__init__.py", "genixer/sub/lib.py"]
    before = resume.code_version("genixer.asset")
    (pkg / "user.py").write_text("from genixer import asset\nY = 2\n")
    assert resume.code_version("genixer.asset") == before
    (pkg / "deep.py").write_text("X = 2\n")
    assert resume.code_version("genixer.asset") != before


def test_the_graph_carries_code_versions():
    from genixer_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    versions = {k.to_user_string(): graph.get(k).code_version for k in graph.toposorted_asset_keys}
    assert all(v and len(v) == 16 for v in versions.values()), versions
    assert versions["base_mllm"] == resume.code_version("genixer_assets.generators")
    files = {p.relative_to(resume.REPO).as_posix() for p in resume.source_closure("genixer_assets.generators")}
    assert {"genixer_assets/generators.py", "genixer/training/loop.py", "resources/settings.py"} <= files
    assert not any(f.endswith("_checks.py") for f in files)  # a check's code is not the asset's


def test_config_fingerprint_follows_every_setting(tmp_path):
    from resources import GenixerSettings, MLLMBackend

    base = {"settings": GenixerSettings(preset="smoke", data_dir=str(tmp_path)), "backend": MLLMBackend(device="cpu")}
    same = {"settings": GenixerSettings(preset="smoke", data_dir=str(tmp_path)), "backend": MLLMBackend(device="cpu")}
    assert resume.config_fingerprint(base) == resume.config_fingerprint(same)
    for other in ({**base, "settings": GenixerSettings(preset="demo", data_dir=str(tmp_path))},
                  {**base, "settings": GenixerSettings(preset="smoke", data_dir=str(tmp_path / "x"))},
                  {**base, "settings": GenixerSettings(preset="smoke", data_dir=str(tmp_path), judge_min_auc=0.0)},
                  {**base, "backend": MLLMBackend(device="cpu", base={"checkpoint": "/x"})}):
        assert resume.config_fingerprint(other) != resume.config_fingerprint(base)


def test_wave_by_wave_runs_only_what_is_not_reused(tmp_path):
    """The demo's other path (a --config with op config): a wave and partition whose assets are all reused is not run,
    the rest is, with the driver's tags."""
    from genixer_assets.backfill import IN_PROCESS
    from genixer_assets.demo import materialize_all
    from genixer_assets.definitions import defs
    from resources import GenixerSettings, MLLMBackend

    graph = defs.resolve_asset_graph()
    keep = dg.AssetKey("instruction_templates")
    instance = dg.DagsterInstance.local_temp(str(tmp_path), overrides=IN_PROCESS)

    def partitions(key):
        pdef = graph.get(key).partitions_def
        return set(pdef.get_partition_keys(dynamic_partitions_store=instance)) if pdef else {None}

    reused = resume.Reuse(reused={k: partitions(k) for k in graph.toposorted_asset_keys if k != keep})
    log = []
    try:
        resources = {"settings": GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data")),
                     "backend": MLLMBackend(device="cpu")}
        tags = resume.driver_tags(resume.config_fingerprint(resources))
        results = materialize_all(instance, resources=resources, log=log.append, raise_on_error=True, tags=tags,
                                  reuse=reused)
        (res,) = results
        assert {e.asset_key for e in res.get_asset_materialization_events()} == {keep}
        assert instance.get_run_by_id(res.run_id).tags[resume.CONFIG_TAG] == tags[resume.CONFIG_TAG]
        ran = [line for line in log if not line.endswith(": reused")]
        assert len(ran) == 1 and ran[0].startswith("  instruction_templates: "), log  # alone of its wave
        assert any(line.endswith("[baseline]: reused") for line in log), log
    finally:
        instance.dispose()
