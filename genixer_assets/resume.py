"""What lets `make demo` survive its faults: a driver that died leaves no run holding a slot, one Ctrl-C cancels
cleanly, and the next demo picks up where the last one stopped.

* **Who ran it.** Every run and backfill the demo driver launches carries :data:`DRIVER_TAG` (host, pid and the
  process's start time) and :data:`CONFIG_TAG` (a hash of the resolved resource config: preset, data root,
  every setting and model role).
* **Dead drivers** (:func:`recover`, before anything is launched): a run still QUEUED/STARTING/STARTED/CANCELING
  whose process is gone (killed, out of memory, machine restarted) is marked failed (canceled if it was being
  canceled), its pool slots are freed, and the backfill it belonged to is marked failed. A run of this host is
  judged by its tag; an untagged run of a local (sqlite) instance by the pid its last event was written from.
  Runs of another host, and runs whose process is alive (e.g. under `make dev`), are left alone. On Kubernetes the
  same is the daemon's run monitoring (deploy/values.yaml `runMonitoring`).
* **Ctrl-C** (:class:`CtrlC`): the driver blocks SIGINT before any thread exists and one thread waits for it.
  The first marks the driver's running runs and its backfill CANCELING, then interrupts the main thread: Dagster
  raises the interrupt in the running step and, seeing CANCELING, records the run CANCELED (not FAILED, so no run
  retry); the backfill submits nothing after it and the in-process run launcher starts nothing more
  (genixer_assets.backfill). A second one ends the process at once (the next demo finds the run's process gone).
* **Reuse** (:func:`reusable`): an asset partition is reused when its latest materialisation has the asset's
  current code version (:func:`code_version`: a hash of its module's source and of every module of this project
  it imports, transitively), came from a run with the same :data:`CONFIG_TAG` and the same op config for the
  asset, had no blocking check fail on it, still has its file (its `path` metadata), and every parent partition
  is reused and was materialised before it. Everything else is materialised again; training resumes from its last
  checkpoint (genixer.training).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("genixer", "genixer_assets", "resources")  # the project's own code: a change here changes a version
DRIVER_TAG = "genixer/driver"
CONFIG_TAG = "genixer/config"
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
SIGNALS = {signal.SIGINT}  # not SIGTERM: Dagster ends its log-tailing child processes with it, and they inherit the mask


# ---------------------------------------------------------------------------------------------------------------
# Code versions
# ---------------------------------------------------------------------------------------------------------------

def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imported(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from genixer import training`
    return out


def source_closure(module: str) -> list[Path]:
    """The files of `module` and of every module of this project it imports, transitively (with their packages'
    __init__ files), sorted."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        f = _module_file(name)
        if f is None:
            continue
        seen[name] = f
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo.extend(parents + sorted(_imported(f)))
    return sorted(set(seen.values()))


def code_version(module: str) -> str:
    """A hash of the source an asset's module runs: its own file and every project module it imports."""
    h = hashlib.sha256()
    for f in source_closure(module):
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def with_code_versions(assets: Iterable) -> list:
    """Every AssetsDefinition with ``code_version`` = :func:`code_version` of the module that defines it, so each
    materialisation records (``dagster/code_version``) the code it was made with and the UI flags a changed one."""
    out = []
    for a in assets:
        if isinstance(a, dg.AssetsDefinition) and a.op is not None:
            version = code_version(a.op.compute_fn.decorated_fn.__module__)
            a = a.map_asset_specs(lambda spec, v=version: spec.replace_attributes(code_version=v))
        out.append(a)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Who launched a run
# ---------------------------------------------------------------------------------------------------------------

def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def driver_id() -> str:
    """This process: host, pid and start time (a pid reused by another process has another start time)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()):.2f}"


def driver_tags(config: str) -> dict[str, str]:
    return {DRIVER_TAG: driver_id(), CONFIG_TAG: config}


def config_fingerprint(resources: Mapping[str, object]) -> str:
    """A hash of the resolved resources (every field of `settings` and `backend`, the data root resolved)."""
    out = {}
    for name, res in sorted(resources.items()):
        dump = res.model_dump(mode="json") if hasattr(res, "model_dump") else str(res)
        if hasattr(res, "root"):
            dump = {**dump, "root": str(res.root)}
        out[name] = dump
    return hashlib.sha256(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _local(instance: dg.DagsterInstance) -> bool:
    """The runs are stored on this machine (sqlite), so a pid in them is one of this machine's."""
    return "sqlite" in type(instance.run_storage).__module__


def driver_gone(tag: str) -> str | None:
    """Why the driver of a :data:`DRIVER_TAG` value is known to be gone, or None (alive, or on another host)."""
    host, pid, started = tag.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    now = _start_time(int(pid))
    if now is not None and abs(now - float(started)) < 1.0:
        return None
    return f"process {pid} is gone"


def process_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why the process that executes `run` is known to be gone, or None (alive, or not knowable from here)."""
    tag = run.tags.get(DRIVER_TAG)
    if tag:
        return driver_gone(tag)
    if not _local(instance):
        return None
    for rec in instance.get_records_for_run(run.run_id, limit=20, ascending=False).records:
        event = rec.event_log_entry.dagster_event
        if event is not None and event.pid:
            started = _start_time(event.pid)
            # alive only if that pid's process existed when the event was written (not a later reuse of the pid)
            if started is not None and started <= rec.event_log_entry.timestamp + 1.0:
                return None
            return f"process {event.pid} is gone"
    return None


def run_label(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    keys = sorted(k.to_user_string() for k in (run.asset_selection or []))
    part = run.tags.get("dagster/partition")
    return f"run {run.run_id[:8]} ({', '.join(keys) or run.job_name}{f' [{part}]' if part else ''})"


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    """Runs that hold a pool slot or wait in a pool's queue."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return set()
    claimed = {s.run_id for pool in storage.get_concurrency_keys() for s in storage.get_concurrency_info(pool).claimed_slots}
    return claimed | storage.get_concurrency_run_ids()


def free_slots(instance: dg.DagsterInstance, run_ids: set[str]) -> str:
    """Free every pool slot these runs hold, and their steps' places in the pools' queues; what was freed, e.g.
    '1 gpu slot freed'."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or not run_ids:
        return "no pool slot held"
    held: dict[str, int] = {}
    holders = set()
    for pool in sorted(storage.get_concurrency_keys()):
        claimed = [s.run_id for s in storage.get_concurrency_info(pool).claimed_slots if s.run_id in run_ids]
        if claimed:
            held[pool] = len(claimed)
            holders.update(claimed)
    for run_id in holders | (run_ids & storage.get_concurrency_run_ids()):
        storage.free_concurrency_slots_for_run(run_id)
    if not held:
        return "no pool slot held"
    return ", ".join(f"{n} {pool} slot{'s' if n > 1 else ''}" for pool, n in held.items()) + " freed"


def _no_retry(instance: dg.DagsterInstance, run_id: str) -> None:
    from dagster._core.storage.tags import WILL_RETRY_TAG

    instance.add_run_tags(run_id, {WILL_RETRY_TAG: "false"})  # a run whose process died is not retried later


def recover(instance: dg.DagsterInstance) -> str | None:
    """Mark the runs whose process is gone as failed (canceled if they were being canceled), free their pool
    slots and those of any finished run still holding one, and mark their backfills failed (canceled if they were
    being canceled). One line saying what was done, or None when there was nothing to do."""
    from dagster._core.events import JobFailureData, RunFailureReason
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    dead: list[str] = []
    reasons: set[str] = set()
    drivers: set[str] = set()
    for rec in instance.get_run_records(filters=dg.RunsFilter(statuses=ACTIVE)):
        run = rec.dagster_run
        if not run.tags.get(DRIVER_TAG) and run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            continue  # e.g. queued under `make dev`: it waits for the daemon, not for a process
        why = process_gone(instance, run)
        if why is None:
            continue
        message = f"The process that ran this run is gone ({why}): marked by the next `make demo`."
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
            dead.append(f"{run_label(instance, run)} marked canceled")
        else:
            instance.report_run_failed(run, message, JobFailureData(
                error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
            dead.append(f"{run_label(instance, run)} marked failed")
        _no_retry(instance, run.run_id)
        reasons.add(why)
        if run.tags.get(DRIVER_TAG):
            drivers.add(run.tags[DRIVER_TAG])
    # finished runs still holding slots (the dead ones above, or any other): free them
    holders = _slot_holders(instance)
    finished = {r.run_id for r in instance.get_runs(filters=dg.RunsFilter(run_ids=list(holders)))
                if r.is_finished} if holders else set()
    freed = free_slots(instance, finished)
    backfills = []
    for bf in instance.get_backfills(filters=BulkActionsFilter(
            statuses=[BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING])):
        tag = bf.tags.get(DRIVER_TAG)
        gone = tag in drivers or (tag and driver_gone(tag) is not None)
        # a backfill of this module's from before the tag: its driver can only have been a demo process
        legacy = not tag and bf.title == "Materialize all" and _local(instance) and not any(
            not r.is_finished for r in instance.get_runs(filters=dg.RunsFilter.for_backfill(bf.backfill_id)))
        if gone or legacy:
            end = BulkActionStatus.CANCELED if bf.status == BulkActionStatus.CANCELING else BulkActionStatus.FAILED
            instance.update_backfill(bf.with_status(end).with_end_timestamp(time.time()))
            backfills.append(f"backfill {bf.backfill_id} marked {end.value.lower()}")
    if not dead and not backfills and freed == "no pool slot held":
        return None
    what = ", ".join(dead + ([freed] if freed != "no pool slot held" else []) + backfills)
    because = f" ({'; '.join(sorted(reasons))})" if reasons else ""
    return f"An earlier demo stopped without cleaning up{because}: {what}."


# ---------------------------------------------------------------------------------------------------------------
# Reuse
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Reuse:
    """The asset partitions a run can reuse, among `total`: {asset: {partition (None: unpartitioned)}}."""
    reused: dict[dg.AssetKey, set[str | None]] = field(default_factory=dict)
    partitions: dict[dg.AssetKey, list[str | None]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(p) for p in self.partitions.values())

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.reused.values())

    def missing(self, key: dg.AssetKey) -> list[str | None]:
        """The partitions of `key` to materialise (in the definitions' order)."""
        done = self.reused.get(key, set())
        return [p for p in self.partitions.get(key, []) if p not in done]

    def summary(self) -> str:
        if not self.count:
            return "nothing to reuse"
        names = []
        for key, parts in self.partitions.items():
            n = len(self.reused.get(key, ()))
            if n:
                names.append(key.to_user_string() + (f" {n}/{len(parts)}" if parts != [None] else ""))
        head = ("every asset partition is up to date, nothing to run" if self.count == self.total else
                f"reusing {self.count} of {self.total} asset partitions")
        return f"{head} (same code, config and inputs as their last materialisation: {', '.join(names)})"


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey, partitioned: bool) -> dict[str | None, object]:
    """The latest materialisation record of each partition of `key` (None: unpartitioned)."""
    if not partitioned:
        recs = instance.fetch_materializations(key, limit=1).records
        return {None: recs[0]} if recs else {}
    ids = instance.event_log_storage.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    if not ids:
        return {}
    recs = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, storage_ids=list(ids.values())),
                                           limit=len(ids)).records
    return {r.partition_key: r for r in recs}


def _blocked(instance: dg.DagsterInstance, run_id: str) -> set[dg.AssetKey]:
    """Assets a blocking check failed on (severity ERROR) in that run."""
    out = set()
    for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        c = r.event_log_entry.dagster_event.asset_check_evaluation_data
        if c.blocking and not c.passed and c.severity == dg.AssetCheckSeverity.ERROR:
            out.add(c.asset_key)
    return out


def _same_config(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _older_and_reused(parent, keys: set[dg.AssetKey], stored: dict, storage_id: int) -> bool:
    """The parent partition is left out of the run, or reused and materialised before `storage_id`."""
    if parent.asset_key not in keys:
        return True
    parent_id = stored.get(parent.asset_key, {}).get(parent.partition_key)
    return parent_id is not None and parent_id < storage_id


def reusable(instance: dg.DagsterInstance, graph, keys: Iterable[dg.AssetKey], config: str,
             ops: Mapping[str, object] | None = None) -> Reuse:
    """Which partitions of `keys` need not be materialised again (the rule in the module docstring). `config`: the
    run's :func:`config_fingerprint`; `ops`: its op config per asset name. Parents outside `keys` (e.g. world_scenes
    left out) are not considered."""
    ops = ops or {}
    keys = set(keys)
    runs: dict[str, dg.DagsterRun | None] = {}
    blocked: dict[str, set[dg.AssetKey]] = {}
    stored: dict[dg.AssetKey, dict[str | None, int]] = {}  # reused partition -> its storage id
    out = Reuse()
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        for key in graph.toposorted_asset_keys:
            if key not in keys:
                continue
            node = graph.get(key)
            pdef = node.partitions_def
            parts = list(pdef.get_partition_keys(dynamic_partitions_store=instance)) if pdef else [None]
            out.partitions[key] = parts
            latest = _latest(instance, key, pdef is not None)
            for part in parts:
                rec = latest.get(part)
                if rec is None:
                    continue
                mat = rec.asset_materialization
                if mat is None or mat.tags.get("dagster/code_version") != node.code_version or node.code_version is None:
                    continue
                if rec.run_id not in runs:
                    runs[rec.run_id] = instance.get_run_by_id(rec.run_id)
                run = runs[rec.run_id]
                if run is None or run.tags.get(CONFIG_TAG) != config:
                    continue
                if not _same_config((run.run_config.get("ops") or {}).get(key.to_user_string()),
                                    ops.get(key.to_user_string())):
                    continue
                path = mat.metadata.get("path")
                if path is not None and not Path(str(getattr(path, "value", path))).exists():
                    continue
                if rec.run_id not in blocked:
                    blocked[rec.run_id] = _blocked(instance, rec.run_id)
                if key in blocked[rec.run_id]:
                    continue
                parents = graph.get_parents_partitions(key, part)
                if parents.required_but_nonexistent_parents_partitions:
                    continue
                if all(_older_and_reused(p, keys, stored, rec.storage_id) for p in parents.parent_partitions):
                    stored.setdefault(key, {})[part] = rec.storage_id
                    out.reused.setdefault(key, set()).add(part)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------------------------------------------

STOP = threading.Event()  # set by the first Ctrl-C: the in-process launcher launches nothing more


def cancel_running(instance: dg.DagsterInstance, driver: str, message: str) -> list[dg.DagsterRun]:
    """Mark this driver's running runs CANCELING (Dagster then records the interrupted run CANCELED) and its
    backfills CANCELING (the backfill's iteration then submits no further run)."""
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    runs = instance.get_runs(filters=dg.RunsFilter(tags={DRIVER_TAG: driver}, statuses=[dg.DagsterRunStatus.STARTED]))
    for run in runs:
        instance.report_run_canceling(run, message)
    for bf in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        if bf.tags.get(DRIVER_TAG) == driver:
            instance.update_backfill(bf.with_status(BulkActionStatus.CANCELING))
    return runs


class CtrlC:
    """Ctrl-C for a driver that executes its runs in its own process; see the module docstring. Active only when
    SIGINT is blocked in every thread (genixer_assets.demo blocks it before its imports when it runs as a program);
    `forced` gives the line printed when a second Ctrl-C ends the process at once."""

    def __init__(self, instance: dg.DagsterInstance, forced: Callable[[], str]):
        self.instance, self.forced, self.driver = instance, forced, driver_id()
        self.active = False

    def __enter__(self) -> CtrlC:
        STOP.clear()
        if threading.current_thread() is threading.main_thread() and \
                SIGNALS <= signal.pthread_sigmask(signal.SIG_BLOCK, []):
            self.active = True
            threading.Thread(target=self._watch, name="genixer-ctrl-c", daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _watch(self) -> None:
        import _thread

        signal.sigwait(SIGNALS)
        STOP.set()
        try:
            cancel_running(self.instance, self.driver, "Ctrl-C: the demo was asked to stop")
        except Exception as e:  # the interrupt still goes through: the run is then recorded failed, not canceled
            print(f"(could not mark the running run canceling: {type(e).__name__}: {e})", file=sys.stderr, flush=True)
        _thread.interrupt_main()
        signal.sigwait(SIGNALS)
        print(self.forced(), flush=True)
        os._exit(130)


def stop(instance: dg.DagsterInstance, driver: str, message: str) -> str:
    """After the interrupt reached the driver: this driver's unfinished runs marked canceled, their pool slots
    freed, its backfills canceled. What was done, as part of a line."""
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    runs = instance.get_runs(filters=dg.RunsFilter(tags={DRIVER_TAG: driver}))
    canceled = []
    for run in runs:
        if not run.is_finished:
            instance.report_run_canceled(run, message)
        if instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED:
            canceled.append(run_label(instance, run))
    freed = free_slots(instance, {r.run_id for r in runs})
    backfills = []
    for bf in instance.get_backfills(filters=BulkActionsFilter(
            statuses=[BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING])):
        if bf.tags.get(DRIVER_TAG) == driver:
            instance.update_backfill(bf.with_status(BulkActionStatus.CANCELED).with_end_timestamp(time.time()))
            backfills.append(f"backfill {bf.backfill_id}")
    parts = [f"{', '.join(canceled)} canceled" if canceled else "no run was running"]
    if backfills:
        parts.append(f"{', '.join(backfills)} canceled")
    parts.append(freed)
    return ", ".join(parts)
