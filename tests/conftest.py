import os

import pytest

# The settings resource of the definitions reads the preset when they are imported.
os.environ["GENIXER_PRESET"] = "smoke"
# `built` runs the graph as one asset backfill in this process (genixer_assets.backfill), its steps in process too.
os.environ.setdefault("GENIXER_EXECUTOR", "in_process")


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    """The instance the smoke graph is built in: it holds the corpus shards (dynamic partitions), so a
    test that reruns a shard-partitioned asset of `built` passes it to dg.materialize. Persistent
    (sqlite under a temporary DAGSTER_HOME, `instance.root_directory`) so that a webserver started
    with DAGSTER_HOME there sees the runs, materialisations and check results (tests/test_browser.py)."""
    import dagster as dg

    from genixer_assets.backfill import IN_PROCESS

    inst = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")), overrides=IN_PROCESS)
    yield inst
    inst.dispose()


@pytest.fixture(scope="session")
def built(tmp_path_factory, instance):
    """The whole graph materialised once on the smoke preset into a temporary data root, the way `make demo` does:
    the corpus plan, then one asset backfill ("Materialize all") run in this process. `results`: every run, read
    back from the instance (genixer_assets.backfill.RunOutcome)."""
    from genixer_assets.backfill import materialize_graph
    from resources import GenixerSettings

    data = tmp_path_factory.mktemp("data")
    settings = GenixerSettings(preset="smoke", data_dir=str(data))
    # the smoke preset turns the judge's gate off (its 30-step judge is at chance); tests/test_checks_fail.py tests the gate
    backfill_id, results = materialize_graph(instance, log=lambda *_: None, resources={
        "settings": {"config": {"preset": "smoke", "data_dir": str(data)}},
        "backend": {"config": {"device": "cpu"}}})
    assert instance.get_backfill(backfill_id).status.value == "COMPLETED_SUCCESS", [r.failures() for r in results]
    return settings, results


@pytest.fixture(scope="session")
def looped(built, instance):
    """The closed loop run on the smoke graph as `make loop` runs it (genixer_assets.loop_run: the typed generator,
    round 1's evaluation, then each step the instance says is next, to the report). `runs`: every run, in order."""
    from genixer_assets.loop_run import run_loop

    settings, _ = built
    runs = run_loop(instance, resources={"settings": {"config": {"preset": "smoke", "data_dir": str(settings.data_dir)}},
                                         "backend": {"config": {"device": "cpu"}}}, log=lambda *_: None)
    assert runs and all(r.success for r in runs), [r.failures() for r in runs]
    return settings, runs


def metadata_of(results, asset: str) -> dict:
    for r in results:
        for e in r.get_asset_materialization_events():
            if e.asset_key.to_user_string() == asset:
                return {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
    raise KeyError(asset)
