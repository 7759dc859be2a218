"""The preset has one source: the `settings` resource (GenixerSettings reads GENIXER_PRESET)."""

import re
from pathlib import Path

import dagster as dg
import pytest

from genixer.presets import get_preset
from genixer_assets.collection import image_corpus
from genixer_assets.definitions import defs
from genixer_assets.partitions import shard_partitions
from resources import SETTINGS, GenixerSettings

ROOT = Path(__file__).resolve().parents[1]
ENV_READ = re.compile(r"""(environ\s*(\.get\s*\(|\[)|getenv\s*\()\s*["']GENIXER_PRESET""")


def test_only_the_settings_resource_reads_the_preset_from_the_environment():
    readers = [f"{p.relative_to(ROOT)}:{i}" for d in ("genixer", "genixer_assets") for p in sorted((ROOT / d).rglob("*.py"))
               for i, line in enumerate(p.read_text().splitlines(), 1) if ENV_READ.search(line)]
    assert readers == []
    assert ENV_READ.search((ROOT / "resources" / "settings.py").read_text())  # the pattern does find the one reader


def test_get_preset_needs_a_name():
    with pytest.raises(TypeError):
        get_preset()
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
    assert get_preset("smoke", n_shards=3).n_shards == 3


def test_partitions_come_from_the_definitions_settings():
    assert defs.resources["settings"] is SETTINGS
    assert len(shard_partitions.get_partition_keys()) == SETTINGS.get_preset().n_shards


def test_run_with_another_shard_count_fails_clearly(tmp_path):
    other = next(name for name in ("smoke", "demo") if get_preset(name).n_shards != SETTINGS.get_preset().n_shards)
    settings = GenixerSettings(preset=other, data_dir=str(tmp_path))
    with pytest.raises(dg.Failure, match=f"loaded with preset '{SETTINGS.preset}'.*GENIXER_PRESET={other}"):
        dg.materialize([image_corpus], partition_key=shard_partitions.get_partition_keys()[0], resources={"settings": settings})
