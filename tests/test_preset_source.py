"""The preset has one source: the `settings` resource (GenixerSettings reads GENIXER_PRESET)."""

import re
from pathlib import Path

import pytest

from genixer.presets import get_preset
from genixer_assets.definitions import defs
from resources import SETTINGS

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


def test_the_definitions_use_the_settings_resource():
    assert defs.resources["settings"] is SETTINGS
