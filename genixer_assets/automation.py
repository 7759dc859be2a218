"""Automation: an inbox sensor that turns new corpus files into shards and generates on them, and a
daily schedule that catches up on shards not generated on yet and refreshes the filtered sets.

**The inbox** is, beside the shapes world's corpus (the default), the folder ``<data root>/<preset>/inbox``
that `corpus_shards` creates (or the folder in env ``GENIXER_INBOX``): its new images become new shards
next to the world's, planned on their own manifest (``tables/inbox_manifest.json``) and listed under
``inbox`` in `corpus_shards.json`, which `image_corpus` reads them from and `corpus_shards` keeps when it is
materialised again. With a corpus `corpus_shards` was configured with (kind folder, parquet or
webdataset), the inbox is that corpus's location; before any corpus is planned, the folder in
``GENIXER_INBOX``. The kind is ``GENIXER_INBOX_KIND``, else webdataset if the folder holds ``.tar`` files,
else folder; a folder's ``shard_size`` is ``GENIXER_INBOX_SHARD_SIZE`` (default 1000). ``GENIXER_INBOX``
set beside a configured corpus must lie inside its location. Each tick plans the inbox with
:func:`genixer.sources.corpus.plan_shards` on its manifest, so the sensor and `corpus_shards` agree on
shard keys and contents (append-only: new files form new shards, old shards keep their images):

- a file modified less than ``settle_seconds`` (30 s) ago waits (it may still be being copied); full
  shards of ``shard_size`` images form at once, and the images left over (a partial shard, however few)
  once the folder has been quiet for ``partial_after_seconds`` (``GENIXER_INBOX_PARTIAL_AFTER_S``,
  default 60; 0: at once): no image newer than that;
- the shards not registered yet become dynamic partitions of ``corpus_shards`` and one run each of
  ``corpus_pipeline`` for `image_corpus` → `raw_generations_*` → `scored_generations_*` (run key = shard
  key, so a shard is never requested twice); `corpus_shards.json` gets the new shards and a
  `corpus_shards` materialization is reported;
- while a generator, the judge or the region CLIP has not been materialised, shards are registered but
  not run (the daily schedule runs them later);
- files the corpus kind does not read (e.g. ``notes.txt`` in a folder corpus) are logged once (the
  cursor remembers them); a file named like an image that is not one is planned and quarantined with
  its reason by `image_corpus`.

A tick that requests nothing returns its reason as a SkipReason (the UI's tick history of the sensor)
and logs it (the tick's log, and the console of `dagster dev`). The manifest + the instance's partitions
decide what is new, so a second tick with nothing new adds and requests nothing; the cursor only
remembers what was logged.

**The schedule** (daily at 03:00, stopped by default) requests, per registered shard missing a
materialization of any asset of the chain, a run of the missing assets and those after them in the
chain (none for a shard already being run); when no shard is pending it requests one run refreshing
`genixer_vqa`, `genixer_rec` and `dataset_exports`. While shards are pending the refresh is left to
declarative automation (eager: the recipes refilter once every shard is scored, the exports follow),
so it never reads a shard being written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from genixer.images import IMAGE_SUFFIXES
from genixer.sources.corpus import CorpusSpec, plan_shards
from genixer_assets.partitions import (
    CORPUS_KINDS,
    CORPUS_SHARDS,
    corpus_manifest_path,
    corpus_summary_path,
    inbox_manifest_path,
    shard_partitions,
    world_inbox,
)
from resources import GenixerSettings

# The per-shard chain, in order, each asset with the chain assets it reads.
CHAIN = {"image_corpus": (), "raw_generations_l": ("image_corpus",), "raw_generations_s": ("image_corpus",),
         "scored_generations_l": ("raw_generations_l",), "scored_generations_s": ("raw_generations_s",)}
REFRESH = ("genixer_vqa", "genixer_rec", "dataset_exports")
# What the chain needs materialised before a shard can run.
MODELS = ("instruction_templates", "genixer_l", "genixer_s", "judge_mllm", "region_clip_model")
JOB = "corpus_pipeline"
TRIGGER_TAG = "genixer/trigger"

corpus_pipeline = dg.define_asset_job(
    JOB, selection=dg.AssetSelection.assets(*CHAIN, *REFRESH),
    description="One corpus shard through generation and scoring (run with the shard's partition key and the chain's assets), "
                "or, without a partition, the filtered sets and their exports refreshed.")

_IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_UPLOADING = (".part", ".tmp", ".crdownload", ".partial")  # names of files still being copied: not reported
_WDS_SIDECARS = (".parquet", "_stats.json")  # what img2dataset leaves beside each tar (not read)
_MAX_REMEMBERED = 1000


@dataclass(frozen=True)
class Inbox:
    path: str | None = None  # a folder; None: the world's inbox, or the location corpus_shards was configured with
    kind: str | None = None  # folder | parquet | webdataset; None: webdataset if the folder has tars, else folder
    shard_size: int = 1000  # images per shard of a folder (used when the sensor starts the corpus or the world's inbox)
    settle_seconds: float = 30.0  # a file modified more recently waits for the next tick
    partial_after_seconds: float | None = 60.0  # a folder's partial shard forms after this long without a new image (None: at once)

    @classmethod
    def from_env(cls) -> Inbox:
        env = os.environ
        partial = float(env.get("GENIXER_INBOX_PARTIAL_AFTER_S", 60))
        return cls(path=env.get("GENIXER_INBOX") or None, kind=env.get("GENIXER_INBOX_KIND") or None,
                   shard_size=int(env.get("GENIXER_INBOX_SHARD_SIZE", 1000)), partial_after_seconds=partial or None)


@dataclass(frozen=True)
class Watched:
    """What a tick plans: the corpus, its plan_shards manifest, and where its shards go in corpus_shards.json."""
    spec: CorpusSpec
    manifest: Path
    summary: dict | None  # corpus_shards.json as it is (None: not written yet)
    section: str | None = None  # "inbox": the world's inbox, its shards under summary["inbox"]; None: the summary's own


def _static_root(path: str) -> Path:
    """The folder a corpus path (a folder, a file, or a glob) lies under."""
    parts = Path(path).parts
    for i, p in enumerate(parts):
        if any(c in p for c in "*?["):
            return Path(*parts[:i]).resolve() if i else Path.cwd()
    return Path(path).resolve()


def _within(inner: str, outer: str) -> bool:
    a, b = Path(inner).resolve(), _static_root(outer)
    return a == b or b in a.parents


def _folder_spec(root: Path, inbox: Inbox) -> tuple[CorpusSpec | None, str]:
    if not root.is_dir():
        return None, f"the inbox {root} is not a folder"
    kind = inbox.kind or ("webdataset" if any(root.rglob("*.tar")) else "folder")
    if kind not in CORPUS_KINDS:
        return None, f"inbox kind must be one of {CORPUS_KINDS}, not {kind!r}"
    return CorpusSpec(kind=kind, path=str(root.resolve()), shard_size=inbox.shard_size), ""


def _watched(settings: GenixerSettings, inbox: Inbox) -> tuple[Watched | None, str]:
    """(what to plan, or None with why nothing is watched)."""
    summary_path = corpus_summary_path(settings)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    if summary is not None and summary["kind"] in CORPUS_KINDS:
        spec = CorpusSpec(kind=summary["kind"], path=summary["path"], shard_size=summary["shard_size"],
                          image_column=summary.get("image_column"))
        if inbox.path and not _within(inbox.path, summary["path"]):
            return None, (f"the inbox {inbox.path} is not inside the corpus corpus_shards planned ({summary['kind']} at "
                          f"{summary['path']}): point GENIXER_INBOX there, or rematerialise corpus_shards with the inbox as path")
        return Watched(spec, corpus_manifest_path(settings), summary), ""
    if summary is not None:  # the shapes world's split, which does not grow: its inbox does
        root = Path(inbox.path) if inbox.path else world_inbox(settings)
        planned = summary.get("inbox")
        if planned and planned["shards"] and Path(planned["path"]).resolve() != root.resolve():
            return None, (f"the world's inbox shards were planned from {planned['path']}, and the inbox is now {root}: "
                          f"put the new images in {planned['path']}" + (" (unset GENIXER_INBOX)" if inbox.path else ""))
        if not root.is_dir():
            return None, (f"the world's inbox {root} does not exist: create it (or rematerialise corpus_shards, which does) "
                          "and put new images in it")
        spec, why = _folder_spec(root, inbox)
        return (Watched(spec, inbox_manifest_path(settings), summary, "inbox") if spec else None), why
    if not inbox.path:
        return None, ("no corpus planned yet: materialise corpus_shards (the world's split; images put in its inbox "
                      f"{world_inbox(settings)} then become shards), or set GENIXER_INBOX to a folder")
    spec, why = _folder_spec(Path(inbox.path), inbox)
    return (Watched(spec, corpus_manifest_path(settings), None) if spec else None), why


def _unread_files(spec: CorpusSpec) -> list[str]:
    """Files under the corpus folder that its kind does not read (hidden files and uploads in progress aside)."""
    if not isinstance(spec.path, (str, Path)) or not Path(spec.path).is_dir():
        return []
    root = Path(spec.path)
    wanted = IMAGE_SUFFIXES if spec.kind == "folder" else {".parquet" if spec.kind == "parquet" else ".tar"}
    out = []
    for p in root.rglob("*"):
        name = p.name.lower()
        if not p.is_file() or p.suffix.lower() in wanted or name.startswith(".") or name.endswith(_UPLOADING):
            continue
        if spec.kind == "webdataset" and name.endswith(_WDS_SIDECARS):
            continue
        out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _write_summary(settings: GenixerSettings, w: Watched, shards: dict) -> Path:
    """corpus_shards.json with the planned shards: its own, or (the world's inbox) under "inbox"."""
    path = corpus_summary_path(settings)
    planned = {"kind": w.spec.kind, "path": str(w.spec.path), "shard_size": w.spec.shard_size,
               "image_column": w.spec.image_column, "shards": shards}
    summary = {**w.summary, w.section: planned} if w.section else planned
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, path)
    return path


def _missing_models(instance: dg.DagsterInstance) -> list[str]:
    latest = instance.get_latest_materialization_events([dg.AssetKey(k) for k in MODELS])
    return [k for k in MODELS if latest.get(dg.AssetKey(k)) is None]


def _skip(context: dg.SensorEvaluationContext, why: str, cursor: str | None, **result) -> dg.SensorResult:
    """A tick that requests nothing: its reason in the tick history (the SkipReason) and in the log."""
    context.log.info(f"skipped: {why}")
    return dg.SensorResult(skip_reason=why, cursor=cursor, **result)


def evaluate_inbox(context: dg.SensorEvaluationContext, settings: GenixerSettings, inbox: Inbox) -> dg.SensorResult:
    """One tick of the inbox sensor (see the module's docstring)."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    w, why = _watched(settings, inbox)
    if w is None:
        return _skip(context, why, context.cursor)
    spec = w.spec
    try:
        plan = plan_shards(spec, w.manifest, settle_seconds=inbox.settle_seconds,
                           partial_after_seconds=inbox.partial_after_seconds if spec.kind == "folder" else None)
    except (ValueError, OSError) as e:  # the folder is gone, or the manifest is another kind's
        return _skip(context, f"cannot plan the {spec.kind} corpus at {spec.path}: {e}", context.cursor)
    log = context.log
    reported = set(cursor.get("unread", []))
    unread = [f for f in _unread_files(spec) if f not in reported]
    if unread:
        log.warning(f"{len(unread)} file(s) in {spec.path} that a {spec.kind} corpus does not read, left where they are: "
                    + ", ".join(unread[:20]) + (" ..." if len(unread) > 20 else ""))
    events = []
    before = (w.summary or {}).get(w.section) if w.section else w.summary
    if (before is None and not w.section) or (before or {}).get("shards", {}) != plan.shards:
        path = _write_summary(settings, w, plan.shards)
        events.append(dg.AssetMaterialization(asset_key="corpus_shards", description="planned by the corpus_inbox sensor", metadata={
            "shards": len(plan.shards), "new_shards": dg.MetadataValue.json(plan.new), "path": dg.MetadataValue.path(str(path)),
            **({"inbox": dg.MetadataValue.path(str(spec.path))} if w.section else {}),
            **({"images": sum(len(v) for v in plan.shards.values())} if spec.kind == "folder" else {})}))
    registered = set(context.instance.get_dynamic_partitions(CORPUS_SHARDS))
    to_add = [k for k in plan.shards if k not in registered]
    missing = _missing_models(context.instance) if to_add else []
    requests = [] if missing else [
        dg.RunRequest(run_key=k, partition_key=k, asset_selection=[dg.AssetKey(a) for a in CHAIN],
                      tags={TRIGGER_TAG: "corpus_inbox"}) for k in to_add]
    if to_add:
        log.info(f"new shards {to_add} from {spec.path}" + (f"; not run: {', '.join(missing)} not materialised yet "
                                                             "(the daily schedule runs them once they are)" if missing else ""))
    waiting = ""
    if plan.waiting:
        waiting = (f"{len(plan.waiting)} file(s) waiting: " + (
            f"a shard forms at {spec.shard_size} images, or with fewer once no new image has come for "
            f"{inbox.partial_after_seconds or 0:g} s (files copied less than {inbox.settle_seconds:g} s ago wait too)"
            if spec.kind == "folder" else f"copied less than {inbox.settle_seconds:g} s ago"))
        log.info(f"{waiting}: {plan.waiting[:5]}")
    new_cursor = json.dumps({"shards": len(plan.shards), "unread": sorted(reported | set(unread))[-_MAX_REMEMBERED:]})
    result = {"dynamic_partitions_requests": [shard_partitions.build_add_request(to_add)] if to_add else None,
              "asset_events": events or None}
    if not requests:
        return _skip(context, f"{len(to_add)} new shard(s) registered, not run: {', '.join(missing)} not materialised yet" if to_add else
                     f"nothing new in {spec.path}" + (f" ({waiting})" if waiting else ""),
                     new_cursor, **result)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor, **result)


def build_inbox_sensor(inbox: Inbox | None = None, name: str = "corpus_inbox",
                       default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED) -> dg.SensorDefinition:
    """The inbox sensor; `inbox` None reads the GENIXER_INBOX* environment at every tick."""

    @dg.sensor(name=name, job=corpus_pipeline, minimum_interval_seconds=60, default_status=default_status,
               description="New images (or tar/parquet files) in the inbox become new corpus shards (dynamic partitions) and one "
                           "run each of generation and scoring. The inbox: <data root>/<preset>/inbox beside the world's corpus, "
                           "the location corpus_shards was configured with, or GENIXER_INBOX.")
    def _sensor(context: dg.SensorEvaluationContext, settings: GenixerSettings) -> dg.SensorResult:
        return evaluate_inbox(context, settings, inbox if inbox is not None else Inbox.from_env())

    return _sensor


# Running by default only when an inbox is configured: setting GENIXER_INBOX is the opt-in.
corpus_inbox = build_inbox_sensor(default_status=dg.DefaultSensorStatus.RUNNING if os.environ.get("GENIXER_INBOX")
                                  else dg.DefaultSensorStatus.STOPPED)


def _with_downstream(todo: set[str]) -> list[str]:
    out = set(todo)
    for asset, reads in CHAIN.items():  # CHAIN is in dependency order
        if out.intersection(reads):
            out.add(asset)
    return [a for a in CHAIN if a in out]


def _running_partitions(instance: dg.DagsterInstance) -> set[str]:
    records = instance.get_run_records(dg.RunsFilter(job_name=JOB, statuses=_IN_PROGRESS))
    return {r.dagster_run.tags.get("dagster/partition") for r in records} - {None}


@dg.schedule(name="daily_corpus_refresh", cron_schedule="0 3 * * *", job=corpus_pipeline,
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Daily: generate and score every shard still missing any of its chain; with none pending, refresh "
                         "genixer_vqa, genixer_rec and dataset_exports.")
def daily_corpus_refresh(context: dg.ScheduleEvaluationContext):
    instance = context.instance
    keys = list(instance.get_dynamic_partitions(CORPUS_SHARDS))
    done = {a: instance.get_materialized_partitions(dg.AssetKey(a)) for a in CHAIN}
    running = _running_partitions(instance)
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")  # run keys: one run per shard and day
    pending, requests = [], []
    for k in keys:
        todo = {a for a in CHAIN if k not in done[a]}
        if not todo:
            continue
        pending.append(k)
        if k not in running:
            requests.append(dg.RunRequest(run_key=f"{day}/{k}", partition_key=k,
                                          asset_selection=[dg.AssetKey(a) for a in _with_downstream(todo)],
                                          tags={TRIGGER_TAG: "daily_corpus_refresh"}))
    missing = _missing_models(instance) if requests else []
    if missing:
        return dg.SkipReason(f"{len(pending)} shard(s) wait for {', '.join(missing)} (not materialised yet)")
    if pending:
        context.log.info(f"{len(pending)} shard(s) pending ({len(pending) - len(requests)} already running): the filtered sets "
                         "refresh by automation once they are scored, or at the next tick")
    elif not keys:
        return dg.SkipReason("no corpus shard registered yet: nothing to generate on or refresh")
    else:
        requests.append(dg.RunRequest(run_key=f"{day}/refresh", asset_selection=[dg.AssetKey(a) for a in REFRESH],
                                      tags={TRIGGER_TAG: "daily_corpus_refresh"}))
    return requests


# ---- the closed loop: the next round when the last one is done ---------------------------------------------------------

@dg.sensor(name="loop_next_round", target=dg.AssetSelection.groups("loop"), minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="The closed loop's next step (genixer_assets.loop_run.next_step): when a round's evaluation says go on, the "
                       "rest of the round (queries, generations, models, scores); when a round is trained and scored, the next "
                       "round's evaluation of its model; when an evaluation stops the loop, loop_report. Starts nothing before "
                       "round 1's evaluation exists (make loop, or materialise loop_generator and loop_evaluation[round_1]).")
def loop_next_round(context: dg.SensorEvaluationContext):
    from genixer_assets.loop_run import next_step

    step = next_step(context.instance)
    if step is None:
        return dg.SkipReason("the loop is not started (no loop_evaluation) or finished (loop_report made after the evaluation "
                             "that stopped it)")
    assets, partition, why, key = step
    context.log.info(f"loop: {why}: {', '.join(assets)}{f' [{partition}]' if partition else ''}")
    return dg.RunRequest(run_key=key, asset_selection=[dg.AssetKey(a) for a in assets], partition_key=partition,
                         tags={TRIGGER_TAG: f"loop: {why}"[:200]})
