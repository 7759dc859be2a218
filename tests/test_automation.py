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
from genixer_assets.partitions import CORPUS_SHARDS, world_inbox
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


def _logged_tick(sensor, instance, settings, cursor=None):
    """One evaluation as the daemon makes it, with a log key: (the result, the messages of the tick's log, as the UI reads them)."""
    from dagster._core.definitions.instigation_logger import get_instigation_log_records

    key = ["test", sensor.name, str(time.time_ns())]
    with dg.SensorEvaluationContext(instance_ref=instance.get_ref(), instance=instance, log_key=key, cursor=cursor,
                                    repository_name="r", sensor_name=sensor.name, resources={"settings": settings}) as context:
        result = sensor(context)
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result, [r["msg"] for r in get_instigation_log_records(instance, key)]


def test_the_world_corpus_has_an_inbox_beside_its_shards(setup, monkeypatch, tmp_path):
    """The demo's corpus is the shapes world's split: images put in <data root>/<preset>/inbox become shards beside
    the world's (which stay), five of them at the default shard size once the inbox is quiet; every skip says why,
    in the tick's SkipReason and its log."""
    instance, settings, _ = setup
    monkeypatch.delenv("GENIXER_INBOX", raising=False)
    sensor = build_inbox_sensor(name="t")  # the environment's inbox: none set, defaults
    result, log = _logged_tick(sensor, instance, settings)
    assert not result.run_requests and "materialise corpus_shards" in _skip(result)  # nothing planned yet
    assert any(_skip(result) in line for line in log)
    world = {"kind": "world", "path": None, "shard_size": 1000, "image_column": None, "shards": {"shard_000": ["w1"]}}
    summary_path = settings.table_path("corpus_shards").with_suffix(".json")
    summary_path.write_text(json.dumps(world))
    instance.add_dynamic_partitions(CORPUS_SHARDS, ["shard_000"])
    _models_ready(instance)
    inbox = world_inbox(settings)
    assert inbox == settings.root / "inbox"
    result, log = _logged_tick(sensor, instance, settings)
    assert str(inbox) in _skip(result) and "does not exist" in _skip(result) and any(_skip(result) in line for line in log)

    for i in range(5):
        _png(inbox / f"drop_{i}.png", (50 * i, 0, 0))  # copied an hour ago: settled, and the inbox is quiet
    first, _ = _logged_tick(sensor, instance, settings)
    assert _added(first) == ["folder-00000"] and [r.partition_key for r in first.run_requests] == ["folder-00000"]
    summary = json.loads(summary_path.read_text())
    assert {k: summary[k] for k in world} == world  # the world's shards as they were
    assert summary["inbox"]["path"] == str(inbox.resolve())
    assert summary["inbox"]["shards"] == {"folder-00000": [f"drop_{i}.png" for i in range(5)]}
    assert sorted(instance.get_dynamic_partitions(CORPUS_SHARDS)) == ["folder-00000", "shard_000"]
    rows, quarantine = read_shard(CorpusSpec("folder", summary["inbox"]["path"]), "folder-00000",
                                  settings.path("tables", "inbox_manifest.json"), settings.path("corpus_cache"))
    assert sorted(rows.image_id) == [f"drop_{i}.png" for i in range(5)] and not quarantine

    _png(inbox / "late.png", old=False)  # just copied: waits (being copied, then a minute of quiet)
    nxt, log = _logged_tick(sensor, instance, settings, first.cursor)
    assert not nxt.run_requests and "1 file(s) waiting" in _skip(nxt) and any(_skip(nxt) in line for line in log)
    moved = _tick(build_inbox_sensor(Inbox(path=str(tmp_path / "elsewhere")), name="t"), instance, settings, nxt.cursor)
    assert "were planned from" in _skip(moved) and not moved.dynamic_partitions_requests


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


# ---- on the smoke graph ------------------------------------------------------------------------------------------

@pytest.fixture
def graph_copy(built, instance, tmp_path):
    """The smoke graph `built` made, copied: its data root and its instance (runs, materializations, shards), so a
    test adds or removes shards without changing what the other tests read."""
    import shutil

    from genixer_assets.backfill import IN_PROCESS

    settings, _ = built
    shutil.copytree(settings.root, tmp_path / "data" / "smoke", symlinks=True)
    shutil.copytree(instance.root_directory, tmp_path / "home")
    copy = dg.DagsterInstance.local_temp(str(tmp_path / "home"), overrides=IN_PROCESS)
    yield copy, GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data"))
    copy.dispose()


def _definitions(settings):
    from genixer_assets.definitions import defs
    from resources import MLLMBackend

    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, jobs=[automation.corpus_pipeline],
                          sensors=[defs.resolve_sensor_def("corpus_inbox")],
                          resources={"settings": settings, "backend": MLLMBackend(device="cpu")})


def test_an_image_dropped_in_the_demos_inbox_becomes_a_shard(graph_copy, monkeypatch):
    """The README's inbox on the world's corpus: an image put in <data root>/smoke/inbox, the real sensor ticked against
    the instance, its runs executed as corpus_pipeline: the image is read, generated on and scored as a new shard
    beside the world's, which stay registered when corpus_shards is materialised again."""
    import shutil

    from genixer.schema import read_samples
    from resources import MLLMBackend

    instance, settings = graph_copy
    monkeypatch.delenv("GENIXER_INBOX", raising=False)
    world = sorted(instance.get_dynamic_partitions(CORPUS_SHARDS))
    inbox = world_inbox(settings)
    assert inbox.is_dir()  # corpus_shards made it
    scenes = settings.read_table("world_scenes")
    dropped = inbox / "dropped.png"
    shutil.copyfile(scenes[scenes.split == "heldout"].image_path.iloc[0], dropped)
    os.utime(dropped, (OLD, OLD))  # copied an hour ago: settled, and the inbox quiet since

    definitions = _definitions(settings)
    sensor = definitions.resolve_sensor_def("corpus_inbox")
    first = _tick(sensor, instance, settings)
    for event in first.asset_events or []:  # what the daemon does with the tick: the corpus_shards materialization
        instance.report_runless_asset_event(event)
    (req,) = first.run_requests
    assert req.partition_key == "folder-00000" and req.run_key == "folder-00000"
    job = definitions.resolve_job_def(automation.JOB)
    result = job.execute_in_process(instance=instance, partition_key=req.partition_key, asset_selection=list(req.asset_selection),
                                    tags=req.tags)
    assert result.success

    corpus = settings.read_table("image_corpus", "folder-00000")
    assert list(corpus.image_id) == ["dropped.png"] and list(corpus.image_path) == [str(dropped.resolve())]
    per_image = settings.get_preset().gen_per_image
    for name in ("raw_generations_l", "raw_generations_s"):
        raw = read_samples(settings.table_path(name, "folder-00000"))
        assert set(raw.image_id) == {"dropped.png"} and len(raw) == per_image
    scored_l = settings.read_table("scored_generations_l", "folder-00000")
    ok = scored_l[scored_l.quarantine_reason.isna()]
    assert len(scored_l) == per_image and ok.judge_p_yes.between(0, 1).all()
    scored_s = settings.read_table("scored_generations_s", "folder-00000")
    assert len(scored_s) == per_image and (scored_s.filter_reason.notna() | scored_s.clip_score.notna()).all()
    for name in CHAIN:
        assert "folder-00000" in instance.get_materialized_partitions(dg.AssetKey(name)), name
    assert sorted(instance.get_dynamic_partitions(CORPUS_SHARDS)) == sorted([*world, "folder-00000"])

    # the refilter reads the new shard with the world's, and its oracle checks judge the world's images only (the
    # dropped image has no scene): they run, none fails with an error
    refilter = dg.materialize([*definitions.assets, *definitions.asset_checks], selection=["genixer_vqa", "genixer_rec"],
                              instance=instance, resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
    assert refilter.success and len(refilter.get_asset_check_evaluations()) >= 4
    held = sorted([*world, "folder-00000"])
    assert refilter.asset_materializations_for_node("genixer_vqa")[0].metadata["raw_rows"].value == \
        len(settings.read_table("scored_generations_l", partitions=held))

    again = _tick(sensor, instance, settings, first.cursor)
    assert not again.run_requests and "nothing new" in _skip(again)
    replanned = dg.materialize([*definitions.assets], selection=["corpus_shards"], instance=instance,
                               resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
    meta = replanned.asset_materializations_for_node("corpus_shards")[0].metadata
    assert meta["removed_stale_partitions"].value == [] and meta["inbox_shards"].value == ["folder-00000"]
    assert sorted(instance.get_dynamic_partitions(CORPUS_SHARDS)) == sorted([*world, "folder-00000"])
    assert settings.read_table("image_corpus", "folder-00000").image_id.tolist() == ["dropped.png"]


def test_a_removed_shard_does_not_reach_the_filtered_sets(graph_copy):
    """A shard partition removed from the instance leaves its files on disk; the next refilter reads the shards the
    instance holds, so none of its rows reach genixer_vqa or genixer_rec."""
    from genixer.schema import read_samples
    from resources import MLLMBackend

    instance, settings = graph_copy
    shards = sorted(instance.get_dynamic_partitions(CORPUS_SHARDS))
    gone, held = shards[-1], shards[:-1]
    gone_ids = set(settings.read_table("image_corpus", gone).image_id)
    held_ids = set(settings.read_table("image_corpus", partitions=held).image_id)
    held_rows = {n: len(settings.read_table(n, partitions=held)) for n in ("scored_generations_l", "scored_generations_s")}
    assert set(read_samples(settings.table_path("genixer_vqa")).image_id) & gone_ids  # it reached the filtered set while held

    instance.delete_dynamic_partition(CORPUS_SHARDS, gone)
    assert settings.table_path("scored_generations_l", gone).exists()  # its files stay
    result = dg.materialize([*_definitions(settings).assets], selection=["genixer_vqa", "genixer_rec"], instance=instance,
                            resources={"settings": settings, "backend": MLLMBackend(device="cpu")})
    for name, scored in (("genixer_vqa", "scored_generations_l"), ("genixer_rec", "scored_generations_s")):
        after = read_samples(settings.table_path(name))
        assert set(after.image_id) <= held_ids and not set(after.image_id) & gone_ids, name
        assert result.asset_materializations_for_node(name)[0].metadata["raw_rows"].value == held_rows[scored]
    assert len(read_samples(settings.table_path("genixer_vqa")))
