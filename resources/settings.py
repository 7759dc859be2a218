"""Settings and storage: which preset, where the data root is, where each asset's files live."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from genixer.presets import Preset, get_preset


class GenixerSettings(dg.ConfigurableResource):
    """The preset and the data root. Tables are parquet under <data_dir>/<preset>/tables,
    models are Hugging Face directories under <data_dir>/<preset>/models, images under
    <data_dir>/<preset>/world. A preset gets its own folder so smoke and demo never mix."""

    # The only reader of GENIXER_PRESET: everything else gets the preset from a GenixerSettings.
    preset: str = Field(default_factory=lambda: os.environ.get("GENIXER_PRESET", "demo"),
                        description="smoke | demo | long | paper (env GENIXER_PRESET)")
    data_dir: str = Field(default_factory=lambda: os.environ.get("GENIXER_DATA_DIR", "data"),
                          description="data root (env GENIXER_DATA_DIR)")
    judge_min_auc: float | None = Field(None, description=(
        "the judge's held-out AUC floor for every run (resource config reaches each run of a backfill, where judge_mllm's "
        "op config `min_heldout_auc` cannot); default: the preset's judge_min_auc, else the chance bound; 0 turns it off"))

    def get_preset(self, **overrides) -> Preset:
        return get_preset(self.preset, **overrides)

    @property
    def root(self) -> Path:
        return Path(self.data_dir).resolve() / self.preset

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def table_path(self, name: str, partition: str | None = None) -> Path:
        return self.path("tables", name, f"{partition}.parquet") if partition else self.path("tables", f"{name}.parquet")

    def read_table(self, name: str, partition: str | None = None, partitions: Iterable[str] | None = None) -> pd.DataFrame:
        """One table, one partition of it, or (partitioned, no key) its partitions: those in `partitions` that
        have been materialised (pass the keys the instance holds, so a removed partition's file is not
        read), or, `partitions` None, every partition file in the table's folder."""
        if partition is None and not self.table_path(name).exists() and self.path("tables", name).is_dir():
            folder, keys = self.path("tables", name), None if partitions is None else list(partitions)
            files = sorted(folder.glob("*.parquet")) if keys is None else \
                [f for f in (self.table_path(name, k) for k in keys) if f.exists()]
            if not files:
                raise FileNotFoundError(f"no partition of {name} has been materialised under {folder}"
                                        + ("" if keys is None else f" among the {len(keys)} given"))
            return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
        p = self.table_path(name, partition)
        if not p.exists():
            raise FileNotFoundError(f"{name}{f'[{partition}]' if partition else ''} has not been materialised: {p} is missing")
        return pq.read_table(p).to_pandas()

    def model_dir(self, name: str) -> Path:
        p = self.path("models", name)
        p.mkdir(parents=True, exist_ok=True)
        return p


# The settings the definitions are loaded with: the `settings` resource of `defs`, and the preset the shard
# partitions are sized from (they must exist when the asset modules are imported, before any run).
SETTINGS = GenixerSettings()
