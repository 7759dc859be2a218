import os

import pytest

# The settings resource of the definitions reads the preset when they are imported.
os.environ["GENIXER_PRESET"] = "smoke"


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    """The instance the smoke graph is built in: it holds the corpus shards (dynamic partitions), so a
    test that reruns a shard-partitioned asset of `built` passes it to dg.materialize. Persistent
    (sqlite under a temporary DAGSTER_HOME, `instance.root_directory`) so that a webserver started
    with DAGSTER_HOME there sees the runs, materialisations and check results (tests/test_browser.py)."""
    import dagster as dg

    inst = dg.DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home")))
    yield inst
    inst.dispose()


@pytest.fixture(scope="session")
def built(tmp_path_factory, instance):
    """The whole graph materialised once on the smoke preset into a temporary data root."""
    from genixer_assets.demo import materialize_all
    from resources import GenixerSettings, MLLMBackend

    data = tmp_path_factory.mktemp("data")
    settings = GenixerSettings(preset="smoke", data_dir=str(data))
    results = materialize_all(instance, resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                              log=lambda *_: None)
    return settings, results


def metadata_of(results, asset: str) -> dict:
    for r in results:
        for e in r.get_asset_materialization_events():
            if e.asset_key.to_user_string() == asset:
                return {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
    raise KeyError(asset)
