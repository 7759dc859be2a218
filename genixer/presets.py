"""Presets: every size and budget of a pipeline run, picked by name (GENIXER_PRESET).

`smoke` runs the whole graph in the test suite, `demo` is the default main job on 2 CPU
cores, `paper` is larger (a GPU or a long CPU run). Every number can be overridden in
Dagster run config; these are the defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from genixer.templates import RecordConfig
from genixer.world import WorldConfig


@dataclass(frozen=True)
class Preset:
    name: str
    # images per split of the shapes world
    n_collect: int
    n_corpus: int
    n_bench: int
    n_heldout: int
    n_shards: int  # partitions of image_corpus and of everything generated from it
    collect_per_image: int = 1  # annotated samples per image and task
    bench_per_image: int = 1
    min_per_task: int = 10  # asset check: each collected task has at least this many samples
    world: WorldConfig = field(default_factory=WorldConfig)
    records: RecordConfig = field(default_factory=RecordConfig)
    seed: int = 0


PRESETS = {
    "smoke": Preset("smoke", n_collect=60, n_corpus=16, n_bench=30, n_heldout=20, n_shards=2, min_per_task=40),
    "demo": Preset("demo", n_collect=2000, n_corpus=800, n_bench=300, n_heldout=150, n_shards=8, min_per_task=1500),
    "paper": Preset("paper", n_collect=20000, n_corpus=20000, n_bench=2000, n_heldout=1000, n_shards=64,
                    collect_per_image=2, min_per_task=30000),
}


def get_preset(name: str | None = None, **overrides) -> Preset:
    name = name or os.environ.get("GENIXER_PRESET", "demo")
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (GENIXER_PRESET); expected one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
