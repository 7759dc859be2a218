"""The generation stage's checks: every request of a shard left one row, quarantined rows with their reason."""

import dagster as dg
import pandas as pd

from genixer_assets.common import check_partition_keys, check_result, partition_tables
from genixer_assets.partitions import shard_partitions
from resources import GenixerSettings


def _requests_per_image(context, name: str, settings: GenixerSettings) -> int:
    """Requests per corpus image: the run's `samples_per_image` for `name` when its run config sets one
    (the check runs in the asset's run), else the preset's."""
    try:
        cfg = ((context.run.run_config.get("ops") or {}).get(name) or {}).get("config") or {}
    except dg.DagsterError:  # a direct call has no run (DagsterInvalidPropertyError)
        cfg = {}
    return int(cfg.get("samples_per_image") or settings.get_preset().gen_per_image)


def _raw_generation_problems(df: pd.DataFrame, images: pd.DataFrame, per_image: int) -> list[str]:
    problems = []
    if len(df) != len(images) * per_image:
        problems.append(f"{len(df)} rows for {len(images)} images x {per_image} requests = {len(images) * per_image}")
    counts, ids = df.image_id.value_counts(), set(images.image_id)
    problems += [f"image {i}: no row" for i in sorted(ids - set(counts.index))]
    problems += [f"image {i}: not in the shard's corpus" for i in sorted(set(counts.index) - ids)]
    problems += [f"image {i}: {n} rows, want {per_image}" for i, n in counts.items() if i in ids and n != per_image]
    if df.request_key.duplicated().any():
        problems.append(f"{int(df.request_key.duplicated().sum())} duplicated request keys")
    reason = df.quarantine_reason
    quarantined = reason.notna()
    problems += [f"{r.sample_id}: quarantined without a reason" for r in df[quarantined & (reason.astype(str).str.strip() == "")].itertuples()]
    carried = quarantined & (df.boxes.map(lambda b: b is not None) | df.points.map(lambda p: p is not None))
    problems += [f"{r.sample_id}: quarantined ({r.quarantine_reason}) yet carries parsed boxes/points" for r in df[carried].itertuples()]
    unparsed = quarantined & reason.astype(str).str.startswith(("parse:", "unreadable")) & df.turns.map(lambda t: t is not None)
    problems += [f"{r.sample_id}: quarantined as unparsed ({r.quarantine_reason}) yet has turns" for r in df[unparsed].itertuples()]
    no_turns = ~quarantined & df.turns.map(lambda t: t is None or len(t) == 0)
    problems += [f"{r.sample_id}: not quarantined but has no turns" for r in df[no_turns].itertuples()]
    return problems


def _raw_generations_check(name: str):
    @dg.asset_check(asset=name, name=f"{name}_complete", blocking=True,
                    description="Guard: every request of the shard left one row (rows == shard images x requests per image, the run's "
                                "samples_per_image or the preset's; request keys unique); a quarantined row has a reason and no "
                                "parsed boxes (an unparsed one no turns); a row not quarantined has turns.")
    def _check(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
        keys = check_partition_keys(context, shard_partitions)
        per_image = _requests_per_image(context, name, settings)
        tables, problems = partition_tables(settings, name, keys)
        for k, df in tables.items():
            if not settings.table_path("image_corpus", k).exists():
                problems.append(f"{k}: image_corpus[{k}] is missing, nothing to compare the rows with")
                continue
            problems += [f"{k}: {p}" for p in _raw_generation_problems(df, settings.read_table("image_corpus", k), per_image)]
        return check_result(not problems, problems, shards=", ".join(keys), rows=sum(len(t) for t in tables.values()),
                            requests_per_image=per_image)

    return _check


raw_generations_l_complete = _raw_generations_check("raw_generations_l")
raw_generations_s_complete = _raw_generations_check("raw_generations_s")
