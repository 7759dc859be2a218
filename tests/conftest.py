import os

import pytest

# The shard partitions are sized from the preset when the definitions are imported.
os.environ["GENIXER_PRESET"] = "smoke"


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The whole graph materialised once on the smoke preset into a temporary data root."""
    import dagster as dg

    from genixer_assets.demo import materialize_all
    from resources import GenixerSettings, MLLMBackend

    data = tmp_path_factory.mktemp("data")
    settings = GenixerSettings(preset="smoke", data_dir=str(data))
    results = materialize_all(dg.DagsterInstance.ephemeral(), resources={"settings": settings, "backend": MLLMBackend(device="cpu")},
                              log=lambda *_: None)
    return settings, results


def metadata_of(results, asset: str) -> dict:
    for r in results:
        for e in r.get_asset_materialization_events():
            if e.asset_key.to_user_string() == asset:
                return {k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()}
    raise KeyError(asset)
