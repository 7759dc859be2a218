"""The whole graph as one asset backfill, the one the UI's "Materialize all" launches, run to the end in this process.

The graph mixes unpartitioned, shard-partitioned and recipe-partitioned assets, which no single Dagster run can
hold; an asset backfill can: Dagster splits it into runs (the unpartitioned upstream, one run per corpus shard, the
filtered sets, one run per recipe, the scores and report) and launches each once its parents are done. In the UI
that is the backfill daemon's work (`make dev` runs it); here the same backfill is created through the same GraphQL
mutation the UI sends (`launchPartitionBackfill` with the asset selection and `allPartitions`, or with the partitions
per asset when earlier runs are reused) and the daemon's own iteration over that one backfill
(`execute_backfill_jobs`) is called in a loop, with an instance whose run launcher executes each run synchronously
in this process (so the demo pays one import of torch, not one per run; it stops after a Ctrl-C) and whose
coordinator launches at once (no queue daemon).

A backfill's targets are fixed when it is created, and the corpus shards are dynamic partitions that `corpus_shards`
registers: :data:`PLAN` (corpus_shards and what it reads) is therefore materialised first, as one run, and the
backfill covers everything else. In the UI: materialise `corpus_shards` once, then "Materialize all".

Config: a backfill has one run config for all its runs, and Dagster checks each run's config against that run's
assets, so a backfill can carry resource config (and loggers) but not per-asset op config; a run config with
``ops`` goes through :func:`genixer_assets.demo.materialize_all` (one run per wave and partition) instead.
"""

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher

if TYPE_CHECKING:
    from genixer_assets.resume import Reuse

REPO = Path(__file__).resolve().parents[1]
PLAN = dg.AssetSelection.assets("corpus_shards").upstream()
# The closed loop runs round after round, each reading the model the one before it trained (an order one backfill
# cannot keep): `make loop` (genixer_assets.loop_run) and the loop_next_round sensor run it after the graph.
LOOP = dg.AssetSelection.groups("loop")
TITLE = "Materialize all"


class InProcessRunLauncher(SyncInMemoryRunLauncher):
    """Dagster's SyncInMemoryRunLauncher (each run executes in this process as it is launched) that starts nothing
    after a Ctrl-C (genixer_assets.resume.CtrlC): a run launched then is marked canceled instead. (It does not
    raise: Dagster would record the run it was launching as failed.)"""

    def launch_run(self, context) -> None:
        from genixer_assets.resume import STOP

        if STOP.is_set():
            self._instance.report_run_canceled(context.dagster_run, "Ctrl-C: the demo was asked to stop; not started")
            return
        super().launch_run(context)


# The instance overrides that run a backfill in this process: each run executes as it is launched. No run retries:
# the daemon that would launch a retry is not running, and a backfill waits for a retry it has been promised
# (dagster.yaml's run_retries), so one failed run would keep it in progress for ever.
IN_PROCESS = {
    "run_launcher": {"module": "genixer_assets.backfill", "class": "InProcessRunLauncher"},
    "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"},
    "run_retries": {"enabled": False},
}
FINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

LAUNCH = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on PartitionSetNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""


def in_process_instance(home: str | Path | None = None) -> dg.DagsterInstance:
    """The instance at `home` (default DAGSTER_HOME, its dagster.yaml: storage, pools, loggers) with runs launched
    synchronously in this process. The runs, events and backfill land in its storage like any other."""
    from dagster._core.instance.ref import InstanceRef

    home = home or os.environ.get("DAGSTER_HOME")
    if not home:
        raise RuntimeError("DAGSTER_HOME is not set: run `make demo` (it sets DAGSTER_HOME to the repository root, whose "
                           "dagster.yaml is the instance) or set DAGSTER_HOME to a folder holding a dagster.yaml")
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=IN_PROCESS))


@contextmanager
def workspace(instance: dg.DagsterInstance):
    """The graph's code location (genixer_assets.definitions:defs) loaded in this process, as the daemon sees it.
    The definitions are imported once: runs launched from it reuse the module (and its executor choice)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name="genixer_assets.definitions",
                             attribute="defs", working_directory=str(REPO)),
        location_name="genixer_assets.definitions")
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as ctx:
        yield ctx


def launch(ctx, assets: list[dg.AssetKey], run_config: dict | None = None, title: str = TITLE,
           partitions: dict[dg.AssetKey, list[str | None]] | None = None, tags: dict[str, str] | None = None) -> str:
    """Create the asset backfill of every partition of `assets` exactly as the UI does (GraphQL); its id.
    `partitions`: only these partitions of each asset instead (``[None]``: an unpartitioned asset), as the UI's
    per-asset partition selection sends them (``partitionsByAssets``)."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    params = {"title": title, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
    if partitions is None:
        params.update(assetSelection=[{"path": k.path} for k in assets], allPartitions=True)
    else:
        params["partitionsByAssets"] = [
            {"assetKey": {"path": k.path},
             "partitions": None if parts == [None] else {"ranges": [{"start": p, "end": p} for p in parts]}}
            for k, parts in partitions.items()]
    if run_config:
        params["runConfigData"] = run_config
    # The mutation resolves a range of dynamic partitions without the instance at hand: give it the instance.
    with dg.partition_loading_context(dynamic_partitions_store=ctx.instance):
        res = execute_dagster_graphql(ctx.create_request_context(), LAUNCH, {"params": params})
    if res.errors:
        raise RuntimeError(f"launchPartitionBackfill: {res.errors}")
    out = res.data["launchPartitionBackfill"]
    if out["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {out['__typename']}: {out.get('message')}")
    return out["backfillId"]


class RunOutcome:
    """A finished run read back from the instance, with the parts of ExecuteInProcessResult the callers use."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str):
        self.run_id = run_id
        self.dagster_run = instance.get_run_by_id(run_id)
        self.success = self.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        self._events = [r.event_log_entry.dagster_event for r in instance.get_records_for_run(run_id).records
                        if r.event_log_entry.dagster_event is not None]

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for e in self._events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]

    def get_asset_check_evaluations(self) -> list[dg.AssetCheckEvaluation]:
        return [e.asset_check_evaluation_data for e in self._events
                if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]

    def failures(self) -> list[str]:
        """Each failed step's error, then each failed blocking check's own description (the step's error only names
        the check)."""
        steps = [f"{e.step_key}: {e.step_failure_data.error.message.strip() if e.step_failure_data.error else '?'}"
                 for e in self._events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        return steps + [f"{c.asset_key.to_user_string()}.{c.check_name}: {c.description or 'failed'}" for c in self.get_asset_check_evaluations()
                        if c.blocking and not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]

    def label(self) -> str:
        keys = sorted(k.to_user_string() for k in (self.dagster_run.asset_selection
                                                   or {e.asset_key for e in self.get_asset_materialization_events()}))
        part = self.dagster_run.tags.get("dagster/partition")
        return f"{', '.join(keys)}{f' [{part}]' if part else ''}"


def run(ctx, backfill_id: str, log: Callable[[str], None] = print, poll_log: logging.Logger | None = None) -> list[RunOutcome]:
    """Drive the backfill with the daemon's iteration until it ends; every run it launched, in launch order. Only
    this backfill: another one in the instance (the UI's, under a daemon) is left to whoever drives it."""
    from dagster._daemon.backfill import execute_backfill_jobs

    from genixer_assets.resume import STOP

    instance = ctx.instance
    # The daemon checks between chunks of submitted runs whether the backfill is still requested; a chunk of one run
    # lets a Ctrl-C (which marks the backfill canceling) stop it right after the interrupted run.
    os.environ.setdefault("DAGSTER_ASSET_BACKFILL_RUN_CHUNK_SIZE", "1")
    if poll_log is None:  # the daemon's per-iteration report (what it requested and why it waits): warnings only
        poll_log = logging.getLogger("genixer_backfill_daemon")
        poll_log.setLevel(logging.WARNING)
    logger = poll_log
    seen: dict[str, RunOutcome] = {}
    while True:
        t = time.time()
        with warnings.catch_warnings():
            # A run executed inside the daemon's iteration leaves Dagster's per-run event loop un-shut (harmless,
            # printed once per run otherwise).
            warnings.filterwarnings("ignore", message="coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited")
            list(execute_backfill_jobs(ctx, logger, [instance.get_backfill(backfill_id)]))
        if STOP.is_set():  # Ctrl-C: the interrupted run ended canceled, the backfill launched nothing after it
            raise KeyboardInterrupt
        for r in reversed(instance.get_runs(filters=dg.RunsFilter.for_backfill(backfill_id))):
            if r.run_id not in seen and r.is_finished:
                seen[r.run_id] = out = RunOutcome(instance, r.run_id)
                log(f"  {out.label()}: {'' if out.success else 'FAILED, '}{_duration(instance, r.run_id, t):.1f}s")
        status = instance.get_backfill(backfill_id).status
        if status.value in FINAL:
            return list(seen.values())


def _duration(instance: dg.DagsterInstance, run_id: str, fallback_start: float) -> float:
    rec = instance.get_run_record_by_id(run_id)
    if rec and rec.start_time and rec.end_time:
        return rec.end_time - rec.start_time
    return time.time() - fallback_start


def materialize_graph(instance: dg.DagsterInstance, log: Callable[[str], None] = print, resources: dict | None = None,
                      quiet: bool = True, tags: dict[str, str] | None = None,
                      reuse: Callable[[], "Reuse"] | None = None) -> tuple[str | None, list[RunOutcome]]:
    """The plan (corpus_shards and its upstream, one run), then one backfill of every other asset and partition.
    `resources`: run config of the resources (``{"settings": {"config": {...}}}``), applied to every run; `tags`: on
    the plan's run, the backfill and its runs. `reuse`: what may be left as it is (genixer_assets.resume.reusable,
    asked before the plan and again after it if it ran): the plan is skipped when both its assets are reused, and
    the backfill then covers only the missing partitions. Returns (backfill id, the runs: the plan's first, if it
    ran); the id is None when the plan failed or nothing was left to run. `instance` must launch in process
    (:func:`in_process_instance` or ``DagsterInstance.local_temp(overrides=IN_PROCESS)``).
    `quiet`: the runs' console logger shows nothing but critical events (a failed step's traceback stays in the run's
    log; the caller reads the failures back)."""
    from genixer_assets.resume import STOP

    run_config = {"resources": resources} if resources else {}
    if quiet:
        run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    with workspace(instance) as ctx:
        from genixer_assets.definitions import defs

        graph = defs.resolve_asset_graph()
        planned = PLAN.resolve(graph)
        done = reuse() if reuse else None
        outcomes = []
        if done is not None and not any(done.missing(k) for k in planned):
            log(f"  {', '.join(sorted(k.to_user_string() for k in planned))} (the plan): reused")
        else:
            t = time.time()
            outcomes = [_materialize_plan(instance, run_config, raise_on_error=False, tags=tags)]
            if STOP.is_set():  # Ctrl-C during the plan: its run was canceled
                raise KeyboardInterrupt
            log(f"  {outcomes[0].label()} (the plan: registers the corpus shards): "
                f"{'' if outcomes[0].success else 'FAILED, '}{time.time() - t:.1f}s")
            if not outcomes[0].success:
                return None, outcomes
            done = reuse() if reuse else None
        loop = LOOP.resolve(graph)
        rest = [k for k in graph.toposorted_asset_keys if k not in planned and k not in loop]
        shards = len(instance.get_dynamic_partitions("corpus_shards"))
        if done is not None and any(done.reused.get(k) for k in rest):
            todo = {k: done.missing(k) for k in rest if done.missing(k)}
            if not todo:
                log("  nothing else to run: every other asset partition is reused")
                return None, outcomes
            backfill_id = launch(ctx, list(todo), run_config, partitions=todo, tags=tags)
            log(f"  backfill {backfill_id}: {sum(map(len, todo.values()))} asset partitions of {len(todo)} assets "
                f"({shards} corpus shards; the rest reused)")
        else:
            backfill_id = launch(ctx, rest, run_config, tags=tags)
            log(f"  backfill {backfill_id}: {len(rest)} assets, every partition ({shards} corpus shards)")
        outcomes += run(ctx, backfill_id, log)
    return backfill_id, outcomes


def _materialize_plan(instance: dg.DagsterInstance, run_config: dict | None, raise_on_error: bool = True,
                      tags: dict[str, str] | None = None) -> RunOutcome:
    """:data:`PLAN` as one run (with its checks), read back."""
    from genixer_assets.definitions import defs

    res = dg.materialize(list(defs.assets) + list(defs.asset_checks or []), selection=PLAN, instance=instance,
                         run_config=run_config or None, resources=defs.resources, raise_on_error=raise_on_error,
                         tags=tags)
    return RunOutcome(instance, res.run_id)


def plan(instance: dg.DagsterInstance, log: Callable[[str], None] = print, resources: dict | None = None) -> RunOutcome | None:
    """Materialise :data:`PLAN` if the instance has no corpus shard yet (so that "Materialize all" in the UI is one
    action: the backfill it launches then covers every shard); None when the shards are already there."""
    shards = instance.get_dynamic_partitions("corpus_shards")
    if shards:
        log(f"corpus already planned: {len(shards)} shards ({shards[0]} … {shards[-1]})")
        return None
    t = time.time()
    out = _materialize_plan(instance, {"resources": resources} if resources else None)
    log(f"planned the corpus ({out.label()}) in {time.time() - t:.0f}s: "
        f"{len(instance.get_dynamic_partitions('corpus_shards'))} shards; \"Materialize all\" now covers them")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m genixer_assets.backfill", description=(
        "plan: materialise world_scenes and corpus_shards if the instance at DAGSTER_HOME has no corpus shard yet, "
        "so that the UI's \"Materialize all\" is one backfill over every shard (`make dev` runs it first)."))
    parser.add_argument("command", choices=["plan"])
    parser.parse_args(argv)
    try:
        plan(dg.DagsterInstance.get())
    except dg.DagsterError as e:
        print(f"planning the corpus failed: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
