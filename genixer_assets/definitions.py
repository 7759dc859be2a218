"""The Genixer asset graph: `dagster dev -w workspace.yaml` or
`dagster asset materialize -m genixer_assets.definitions --select ...`."""

import dagster as dg

from genixer_assets import (benchmarks, checks, collection, evaluation, exports, filtering, generation, generators, instructions,
                            retraining)
from resources import SETTINGS, MLLMBackend

all_assets = dg.load_assets_from_modules([collection, instructions, generators, generation, filtering, exports, evaluation, retraining,
                                             benchmarks])
all_checks = dg.load_asset_checks_from_modules([checks])

# The whole graph mixes shard-partitioned, recipe-partitioned and unpartitioned assets, which one Dagster run cannot
# hold; `make demo` (genixer_assets.demo) runs it as waves in dependency order instead.
defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    resources={"settings": SETTINGS, "backend": MLLMBackend()},  # the settings the shard partitions were sized from
)
