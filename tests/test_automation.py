"""The inbox sensor and the daily schedule (genixer_assets/automation.py), evaluated directly on an
ephemeral instance: no run is launched, the requests are inspected."""

import datetime
import io
import json
import os
import tarfile
import time

import dagster as dg
import pytest
from PIL import Image

from genixer.sources.corpus import CorpusSpec, read_shard
from genixer_assets import automation
from genixer_assets.automation import (
    CHAIN,
    MODELS,
    REFRESH,
    Inbox,
    build_inbox_sensor,
    daily_corpus_refresh,
)
from genixer_assets.partitions import CORPUS_SHARDS
from resources import GenixerSettings

CHAIN_KEYS = [dg.AssetKey(a) for a in CHAIN]
OLD = time.time() - 3600  # files "copied an hour ago": settled


def _png(path, colour=(200, 30, 30), old=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), colour).save(path)
    if old:
        os.utime(path, (OLD, OLD))
    return path


def _png_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, format="PNG")
    return buf.getvalue()


def _tar(path, keys):
    with tarfile.open(path, "w") as tar:
        for k in keys:
            for name, data in ((f"{k}.png", _png_bytes()), (f"{k}.txt", f"a picture {k}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    os.utime(path, (OLD, OLD))
    return path


def _models_ready(instance):
    for k in MODELS:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=k))


def _tick(sensor, instance, settings, cursor=None):
    """One evaluation, then what the daemon would do with it: register the partitions it asks for."""
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings}))
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result


def _added(result):
    return [k for req in result.dynamic_partitions_requests or [] for k in req.partition_keys]


def _skip(result) -> str:
    return result.skip_reason.skip_message


@pytest.fixture
def setup(tmp_path):
    with dg.instance_for_test() as instance:  # an instance with a ref: schedule contexts need one
        yield instance, GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data")), tmp_path / "inbox"


def test_folder_inbox_new_images_become_shards_once(setup):
    instance, settings, inbox = setup
    for i in range(5):
        _png(inbox / f"img_{i}.png", (40 * i, 0, 0))
    (inbox / "broken.png").write_bytes(b"not an image")  # named like an image: planned, then quarantined by image_corpus
    os.utime(inbox / "broken.png", (OLD, OLD))
    (inbox / "notes.txt").write_text("hello")  # not read by a folder corpus: reported once
    _models_ready(instance)
    sensor = build_inbox_sensor(Inbox(path=str(inbox), shard_size=4, partial_after_seconds=None), name="test_inbox")

    first = _tick(sensor, instance, settings)
    assert _added(first) == ["folder-00000", "folder-00001"]  # 6 images by 4
    assert first.dynamic_partitions_requests[0].partitions_def_name == CORPUS_SHARDS
    reqs = first.run_requests
    assert [r.partition_key for r in reqs] == ["folder-00000", "folder-00001"]
    assert [r.run_key for r in reqs] == ["folder-00000", "folder-00001"]
    assert all(list(r.asset_selection) == CHAIN_KEYS for r in reqs)
    assert sensor.job_name == automation.JOB
    # image_corpus reads the shard from the summary the sensor wrote, and quarantines the bad file
    summary = json.loads(settings.table_path("corpus_shards").with_suffix(".json").read_text())
    assert summary["kind"] == "folder" and sorted(summary["shards"]) == ["folder-00000", "folder-00001"]
    assert sum(len(v) for v in summary["shards"].values()) == 6
    assert [e.asset_key for e in first.asset_events] == [dg.AssetKey("corpus_shards")]
    spec = CorpusSpec("folder", summary["path"], shard_size=4)
    bad_shard = next(k for k, v in summary["shards"].items() if "broken.png" in v)
    rows, quarantine = read_shard(spec, bad_shard, settings.path("tables", "corpus_manifest.json"), settings.path("corpus_cache"))
    assert [q["key"] for q in quarantine] == ["broken.png"] and "broken.png" not in set(rows.image_id)
    assert "notes.txt" in json.loads(first.cursor)["unread"]

    second = _tick(sensor, instance, settings, first.cursor)  # nothing new
    assert not second.run_requests and not second.dynamic_partitions_requests and not second.asset_events
    assert "nothing new" in _skip(second)

    _png(inbox / "sub" / "late.png")  # one more image: exactly one new shard, the old ones unchanged
    third = _tick(sensor, instance, settings, second.cursor)
    assert _added(third) == ["folder-00002"] and [r.partition_key for r in third.run_requests] == ["folder-00002"]
    again = json.loads(settings.table_path("corpus_shards").with_suffix(".json").read_text())["shards"]
    assert again["folder-00002"] == ["sub/late.png"]
    assert {k: again[k] for k in summary["shards"]} == summary["shards"]
    assert sorted(instance.get_dynamic_partitions(CORPUS_SHARDS)) == ["folder-00000", "folder-00001", "folder-00002"]


def test_files_being_written_and_partial_shards_wait(setup):
    instance, settings, inbox = setup
    _models_ready(instance)
    for i in range(3):
        _png(inbox / f"a{i}.png")
    _png(inbox / "fresh.png", old=False)  # just copied: waits for settle_seconds
    sensor = build_inbox_sensor(Inbox(path=str(inbox), shard_size=2, settle_seconds=60, partial_after_seconds=7200), name="t")
    first = _tick(sensor, instance, settings)
    assert _added(first) == ["folder-00000"]  # a0, a1; a2 is a partial shard younger than 2 h, fresh.png not settled
    second = _tick(sensor, instance, settings, first.cursor)
    assert not second.run_requests and "2 file(s) waiting" in _skip(second)


def test_webdataset_inbox_each_tar_is_a_shard(setup):
    instance, settings, inbox = setup
    inbox.mkdir()
    _models_ready(instance)
    _tar(inbox / "00000.tar", ["a", "b"])
    _tar(inbox / "00001.tar", ["c"])
    sensor = build_inbox_sensor(Inbox(path=str(inbox)), name="t")
    first = _tick(sensor, instance, settings)
    assert _added(first) == ["wds-00000", "wds-00001"]
    assert [r.partition_key for r in first.run_requests] == ["wds-00000", "wds-00001"]
    summary = json.loads(settings.table_path("corpus_shards").with_suffix(".json").read_text())
    rows, quarantine = read_shard(CorpusSpec("webdataset", summary["path"]), "wds-00000",
                                  settings.path("tables", "corpus_manifest.json"), settings.path("corpus_cache"))
    assert len(rows) == 2 and not quarantine and set(rows.caption) == {"a picture a", "a picture b"}
    assert not _tick(sensor, instance, settings, first.cursor).run_requests
    _tar(inbox / "00002.tar", ["d"])
    assert _added(_tick(sensor, instance, settings, first.cursor)) == ["wds-00002"]


def test_without_models_shards_are_registered_not_run(setup):
    instance, settings, inbox = setup
    _png(inbox / "x.png")
    first = _tick(build_inbox_sensor(Inbox(path=str(inbox)), name="t"), instance, settings)
    assert _added(first) == ["folder-00000"] and not first.run_requests
    assert "genixer_l" in _skip(first)


def test_sensor_skips_without_a_corpus_to_watch(setup, tmp_path):
    instance, settings, inbox = setup
    result = _tick(build_inbox_sensor(Inbox(), name="t"), instance, settings)
    assert not result.run_requests and "GENIXER_INBOX" in _skip(result)
    # the world's corpus planned: the sensor does not replace it, and says how to
    settings.table_path("corpus_shards").with_suffix(".json").write_text(json.dumps(
        {"kind": "world", "path": None, "shard_size": 1000, "image_column": None, "shards": {"shard_000": ["w1"]}}))
    _png(inbox / "x.png")
    result = _tick(build_inbox_sensor(Inbox(path=str(inbox)), name="t"), instance, settings)
    assert not result.dynamic_partitions_requests and "shapes world" in _skip(result)


def test_sensor_watches_the_configured_corpus_location(setup):
    """corpus_shards planned a folder (no GENIXER_INBOX): the sensor keeps planning that folder, same keys."""
    instance, settings, inbox = setup
    _models_ready(instance)
    _png(inbox / "one.png")
    first = _tick(build_inbox_sensor(Inbox(path=str(inbox), partial_after_seconds=None), name="t"), instance, settings)
    assert _added(first) == ["folder-00000"]
    _png(inbox / "two.png")
    nxt = _tick(build_inbox_sensor(Inbox(partial_after_seconds=None), name="t"), instance, settings, first.cursor)
    assert _added(nxt) == ["folder-00001"]
    elsewhere = _tick(build_inbox_sensor(Inbox(path=str(inbox.parent / "other")), name="t"), instance, settings)
    assert "not inside the corpus" in _skip(elsewhere)


def _schedule(instance):
    when = datetime.datetime(2026, 12, 1, 3, 0, tzinfo=datetime.timezone.utc)
    return daily_corpus_refresh(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))


def test_schedule_requests_the_shards_not_generated_on(setup):
    instance, _, _ = setup
    _models_ready(instance)
    keys = ["folder-00000", "folder-00001", "folder-00002", "folder-00003"]
    instance.add_dynamic_partitions(CORPUS_SHARDS, keys)
    for k in keys[:2]:  # fully generated and scored
        for a in CHAIN:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=a, partition=k))
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="image_corpus", partition=keys[2]))  # read, not generated
    reqs = _schedule(instance)
    assert [r.partition_key for r in reqs] == keys[2:]  # no refresh while shards are pending
    assert [r.run_key for r in reqs] == [f"2026-12-01/{k}" for k in keys[2:]]
    assert list(reqs[0].asset_selection) == CHAIN_KEYS[1:]  # image_corpus is there: generation and scoring only
    assert list(reqs[1].asset_selection) == CHAIN_KEYS
    assert daily_corpus_refresh.cron_schedule == "0 3 * * *"
    assert daily_corpus_refresh.default_status == dg.DefaultScheduleStatus.STOPPED
    assert daily_corpus_refresh.job_name == automation.JOB

    from dagster._core.storage.dagster_run import (
        DagsterRun,  # a run of shard 3 in progress: not requested again
    )

    instance.add_run(DagsterRun(job_name=automation.JOB, status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": keys[3]}))
    assert [r.partition_key for r in _schedule(instance)] == [keys[2]]

    for k in keys[2:]:
        for a in CHAIN:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=a, partition=k))
    reqs = _schedule(instance)  # nothing pending: one request refreshing the filtered sets and the exports
    assert len(reqs) == 1 and reqs[0].partition_key is None
    assert list(reqs[0].asset_selection) == [dg.AssetKey(a) for a in REFRESH]


def test_schedule_skips_without_models_or_shards(setup):
    instance, _, _ = setup
    assert isinstance(_schedule(instance), dg.SkipReason)  # no shard at all
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["folder-00000"])
    skip = _schedule(instance)
    assert isinstance(skip, dg.SkipReason) and "genixer_l" in skip.skip_message


def test_registered_in_definitions():
    from genixer_assets.definitions import defs

    running = dg.DefaultSensorStatus.RUNNING if os.environ.get("GENIXER_INBOX") else dg.DefaultSensorStatus.STOPPED
    assert defs.resolve_sensor_def("corpus_inbox").default_status == running  # on only when an inbox is configured
    assert defs.resolve_schedule_def("daily_corpus_refresh").default_status == dg.DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def(automation.JOB)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(CHAIN) | set(REFRESH)
    graph = defs.resolve_asset_graph()
    for name in ("scored_generations_l", "scored_generations_s", *REFRESH):  # refreshed by declarative automation
        assert graph.get(dg.AssetKey(name)).automation_condition is not None, name


def test_requests_pass_dagsters_own_validation(setup):
    """Through evaluate_tick, as the code server runs it: the partition keys exist once the additions
    are applied, the asset selections fit the job, the schedule's refresh runs without a partition."""
    from genixer_assets.definitions import defs

    instance, settings, inbox = setup
    _models_ready(instance)
    for i in range(3):
        _png(inbox / f"i{i}.png")
    sensor = build_inbox_sensor(Inbox(path=str(inbox), shard_size=2, partial_after_seconds=None), name="inbox_t")
    repo = dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, sensors=[sensor], schedules=[daily_corpus_refresh],
                          resources={"settings": settings, "backend": defs.resources["backend"]}).get_repository_def()
    tick = repo.get_sensor_def("inbox_t").evaluate_tick(dg.build_sensor_context(
        instance_ref=instance.get_ref(), repository_def=repo, sensor_name="inbox_t", resources={"settings": settings}))
    assert [r.partition_key for r in tick.run_requests] == ["folder-00000", "folder-00001"]
    assert all(r.tags["dagster/partition"] == r.partition_key for r in tick.run_requests)
    for req in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    when = datetime.datetime(2026, 12, 1, 3, 0, tzinfo=datetime.timezone.utc)
    context = dg.build_schedule_context(instance_ref=instance.get_ref(), repository_def=repo, scheduled_execution_time=when)
    assert [r.partition_key for r in repo.get_schedule_def("daily_corpus_refresh").evaluate_tick(context).run_requests] == \
        ["folder-00000", "folder-00001"]
