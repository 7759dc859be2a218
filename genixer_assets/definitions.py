"""The Genixer asset graph: `dagster dev -w workspace.yaml` or
`dagster asset materialize -m genixer_assets.definitions --select ...`."""

import dagster as dg

from genixer_assets import (automation, benchmarks, benchmarks_checks, collection, collection_checks, corpus_generation,
                            corpus_generation_checks, data_quality, exports, exports_checks, filtering, filtering_checks,
                            generators, generators_checks, instructions, instructions_checks, loop, loop_checks, retraining,
                            retraining_checks)
from genixer_assets.k8s import executor_from_env
from genixer_assets.resume import with_code_versions
from resources import SETTINGS, MLLMBackend

# Each asset's code version is a hash of its module's source and every project module it imports (resume.py): a
# materialisation records the code it was made with, and `make demo` reuses only what the current code would make.
all_assets = with_code_versions(dg.load_assets_from_modules([collection, instructions, generators, corpus_generation, filtering,
                                                             exports, data_quality, retraining, benchmarks, loop]))
# Each stage's checks beside it (genixer_assets/<stage>_checks.py).
all_checks = dg.load_asset_checks_from_modules([collection, collection_checks, instructions_checks, generators_checks,
                                                corpus_generation_checks, filtering_checks, retraining_checks, benchmarks_checks, exports_checks,
                                                loop_checks])

# Declarative automation (the eager conditions of scored_generations_*, genixer_vqa, genixer_rec, dataset_exports) is
# evaluated by a sensor under the daemon. Dagster's own default_automation_condition_sensor is created stopped; this
# one covers every asset with a condition instead and is running by default, so `make dev` keeps the filtered sets
# fresh. Switch it off in the UI (Automation, genixer_automation) or `dagster sensor stop genixer_automation`.
automation_conditions = dg.AutomationConditionSensorDefinition(
    "genixer_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions: a shard's changed raw generations are rescored, the "
                "filtered sets refilter once every shard is scored, and dataset_exports follows them.")

# The whole graph mixes shard-partitioned, recipe-partitioned and unpartitioned assets, which one Dagster run cannot
# hold; one asset backfill can ("Materialize all" in the UI; `make demo` runs the same backfill in process,
# genixer_assets/backfill.py).
defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    sensors=[automation.corpus_inbox,  # new corpus files -> new shards and their corpus_generation (genixer_assets/automation.py)
             automation_conditions,  # the eager refresh of the scored and filtered sets, on by default
             automation.loop_next_round],  # the closed loop's next round (genixer_assets.loop_run.next_step)
    schedules=[automation.daily_corpus_refresh],  # daily, stopped by default: pending shards, then the filtered sets
    resources={"settings": SETTINGS, "backend": MLLMBackend()},  # the settings the shard partitions were sized from
    executor=executor_from_env(),  # GENIXER_EXECUTOR=k8s: k8s_job_executor, one pod per step (deploy/); else the default
)
