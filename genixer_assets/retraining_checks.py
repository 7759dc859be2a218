"""The retraining stage's check: every recipe's seeds trained, with finite losses and weights."""

import dagster as dg
import pandas as pd

from genixer_assets.common import check_partition_keys, check_result, finite_weights, partition_tables, seed_dirs
from genixer_assets.partitions import recipe_partitions
from resources import GenixerSettings


@dg.asset_check(asset="retrained_models", blocking=True,
                description="Guard: for each recipe, the seeds table has a row per seed, each with a finite final loss, and each seed k a model "
                            "directory seed_k with config.json and finite safetensors weights (no more directories than seeds).")
def retrained_models_valid(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    import math


    keys = check_partition_keys(context, recipe_partitions)
    tables, problems = partition_tables(settings, "retrained_models", keys)
    for recipe, t in tables.items():
        if t.empty:
            problems.append(f"{recipe}: the seeds table is empty")
        if t.seed.duplicated().any():
            problems.append(f"{recipe}: seeds {sorted(set(t.seed[t.seed.duplicated()]))} appear twice")
        problems += [f"{recipe}: seed {s}: final_loss {loss}" for s, loss in zip(t.seed, pd.to_numeric(t.final_loss, errors="coerce"))
                     if not math.isfinite(loss)]
        root = settings.path("models", "retrained", recipe)
        for k in range(len(t)):
            d = root / f"seed_{k}"
            if not (d / "config.json").is_file():
                problems.append(f"{recipe}: {d} has no config.json")
            problems += [f"{recipe}: {p}" for p in finite_weights(d)]
        if len(seed_dirs(settings, recipe)) != len(t):
            problems.append(f"{recipe}: {len(seed_dirs(settings, recipe))} seed directories for {len(t)} seeds in the table")
    return check_result(not problems, problems, recipes=", ".join(keys), seeds=sum(len(t) for t in tables.values()))
