"""The instance on PostgreSQL (deploy/postgres/dagster.yaml): part of the smoke graph materialised against a real
server, then its runs, asset events, dynamic partitions, a schedule-storage tick and the gpu pool's limit read back
through a fresh instance and straight from the server's tables.

Needs a server in DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB (.ci/run starts one with .ci/postgres.sh); skipped without."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
MISSING = [v for v in PG_ENV if not os.environ.get(v)]
needs_pg = pytest.mark.skipif(bool(MISSING), reason=(
    f"no PostgreSQL server: {', '.join(MISSING)} not set (.ci/run starts one with .ci/postgres.sh; by hand: "
    "`source .ci/postgres.sh && pg_start`)"))

ASSETS = ("world_scenes", "collected_datasets", "instruction_templates", "corpus_shards")


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_postgres_instance_is_the_default_but_for_storage():
    """deploy/postgres/dagster.yaml differs from dagster.yaml only in `storage`, and takes the whole server
    from the environment. The default has no storage block (Dagster's sqlite under DAGSTER_HOME) and neither
    places artifacts or compute logs (Dagster's default: $DAGSTER_HOME/storage)."""
    default, pg = _yaml(ROOT / "dagster.yaml"), _yaml(ROOT / "deploy" / "postgres" / "dagster.yaml")
    assert not {"storage", "local_artifact_storage", "compute_logs"} & set(default)
    assert {k: v for k, v in pg.items() if k != "storage"} == {k: v for k, v in default.items() if k != "storage"}
    db = pg["storage"]["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"
    assert {k: v["env"] for k, v in db.items()} == {"hostname": "DAGSTER_PG_HOST", "port": "DAGSTER_PG_PORT",
                                                   "username": "DAGSTER_PG_USER", "password": "DAGSTER_PG_PASSWORD",
                                                   "db_name": "DAGSTER_PG_DB"}


@pytest.fixture
def pg_home(tmp_path) -> Path:
    """A DAGSTER_HOME under tmp_path holding deploy/postgres/dagster.yaml as shipped (its local artifacts and compute
    logs land in that home)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    return home


def _engine():
    import sqlalchemy as sa

    e = os.environ
    return sa.create_engine(sa.URL.create("postgresql+psycopg2", username=e["DAGSTER_PG_USER"], password=e["DAGSTER_PG_PASSWORD"],
                                          host=e["DAGSTER_PG_HOST"], port=int(e["DAGSTER_PG_PORT"]), database=e["DAGSTER_PG_DB"]))


@needs_pg
def test_smoke_graph_on_postgres(pg_home, tmp_path):
    import dagster as dg
    import sqlalchemy as sa
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.scheduler.instigation import TickData, TickStatus
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from genixer_assets.definitions import defs
    from genixer_assets.demo import QUIET
    from genixer_assets.partitions import shard_partitions
    from resources import GenixerSettings, MLLMBackend

    settings = GenixerSettings(preset="smoke", data_dir=str(tmp_path / "data"))
    resources = {"settings": settings, "backend": MLLMBackend(device="cpu")}
    everything = list(defs.assets) + list(defs.asset_checks or [])

    # 1. Run: the first wave's cheap assets, then one shard of image_corpus (a dynamic partition the run registered).
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        first = dg.materialize(everything, selection=dg.AssetSelection.assets(*ASSETS), instance=instance,
                               resources=resources, run_config=QUIET)
        assert first.success
        shards = instance.get_dynamic_partitions(shard_partitions.name)
        assert shards, "corpus_shards registered no shard"
        shard = sorted(shards)[0]
        second = dg.materialize(everything, selection=dg.AssetSelection.assets("image_corpus"), instance=instance,
                                resources=resources, partition_key=shard, run_config=QUIET)
        assert second.success
        # The schedule storage (ticks of schedules, sensors and the automation daemon).
        now = time.time()
        instance.schedule_storage.create_tick(TickData(
            instigator_origin_id="genixer-test-origin", instigator_name="genixer_test_sensor",
            instigator_type=InstigatorType.SENSOR, status=TickStatus.SKIPPED, timestamp=now,
            selector_id="genixer-test-selector", skip_reason="written by tests/test_postgres.py"))

    # 2. The gpu pool's limit, written the way `make gpu-pool` does (the CLI on this DAGSTER_HOME).
    env = {**os.environ, "DAGSTER_HOME": str(pg_home)}
    dagster_cli = Path(sys.executable).with_name("dagster")
    subprocess.run([str(dagster_cli), "instance", "concurrency", "set", "gpu", "3"], env=env, check=True,
                   cwd=tmp_path, capture_output=True, text=True)

    # 3. Read back through a fresh instance on the same database.
    with dg.DagsterInstance.from_config(str(pg_home)) as fresh:
        for res in (first, second):
            record = fresh.get_run_record_by_id(res.run_id)
            assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS

        def latest(asset: str, partition: str | None = None):
            recs = fresh.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
                limit=1).records
            assert recs, f"no materialization of {asset} in the instance"
            return recs[0]

        rec = latest("world_scenes")
        assert rec.run_id == first.run_id
        assert rec.asset_materialization.metadata["images"].value == len(settings.read_table("world_scenes")) > 0
        rec = latest("collected_datasets")
        assert rec.run_id == first.run_id
        assert rec.asset_materialization.metadata["samples"].value == len(settings.read_table("collected_datasets")) > 0
        assert latest("instruction_templates").asset_materialization.metadata["general_instructions"].value > 0
        assert latest("corpus_shards").asset_materialization.metadata["shards"].value == len(shards)
        rec = latest("image_corpus", shard)
        assert rec.run_id == second.run_id and rec.asset_materialization.partition == shard
        assert rec.asset_materialization.metadata["images"].value == len(settings.read_table("image_corpus", shard)) > 0
        assert sorted(fresh.get_dynamic_partitions(shard_partitions.name)) == sorted(shards)
        ticks = fresh.schedule_storage.get_ticks("genixer-test-origin", "genixer-test-selector", after=now - 1)
        assert [t.tick_data.skip_reason for t in ticks] == ["written by tests/test_postgres.py"]
        assert fresh.event_log_storage.get_concurrency_info("gpu").slot_count == 3
        assert fresh.get_concurrency_config().pool_config.default_pool_limit == 1

    # 4. The same, straight from the server's tables.
    engine = _engine()
    try:
        with engine.connect() as conn:
            q = lambda sql, **kw: conn.execute(sa.text(sql), kw).all()  # noqa: E731
            tables = {r[0] for r in q("select table_name from information_schema.tables where table_schema = 'public'")}
            assert {"runs", "event_logs", "dynamic_partitions", "jobs", "job_ticks", "instigators",
                    "concurrency_limits"} <= tables
            assert q("select status from runs where run_id in (:a, :b)", a=first.run_id, b=second.run_id) == [("SUCCESS",)] * 2
            mats = q("select asset_key, partition from event_logs where run_id in (:a, :b) "
                     "and dagster_event_type = 'ASSET_MATERIALIZATION'", a=first.run_id, b=second.run_id)
            assert sorted((k.strip('[]"'), p) for k, p in mats) == sorted([(a, None) for a in ASSETS] + [("image_corpus", shard)])
            assert {r[0] for r in q("select partition from dynamic_partitions where partitions_def_name = :n",
                                    n=shard_partitions.name)} == set(shards)
            assert q("select count(*) from job_ticks where job_origin_id = 'genixer-test-origin'")[0][0] >= 1
            assert q('select "limit", using_default_limit from concurrency_limits where concurrency_key = \'gpu\'') == [(3, False)]
    finally:
        engine.dispose()
