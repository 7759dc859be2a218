"""`make demo`: materialise the whole graph with the current preset, then say what was made.

Unpartitioned assets run together; partitioned ones run once per shard, in the graph's
order, all recorded in the instance at DAGSTER_HOME (so `dagster dev` shows the history).
"""

import sys
import time

import dagster as dg

from genixer_assets.definitions import defs
from genixer_assets.partitions import partition_keys


def waves(asset_graph) -> list[list[dg.AssetKey]]:
    """Assets in dependency order, cut wherever the partitions definition changes (one run per
    wave and partition)."""
    out: list[list[dg.AssetKey]] = []
    for key in asset_graph.toposorted_asset_keys:
        if out and asset_graph.get(out[-1][0]).partitions_def == asset_graph.get(key).partitions_def:
            out[-1].append(key)
        else:
            out.append([key])
    return out


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def materialize_all(instance: dg.DagsterInstance, resources=None, log=print) -> list[dg.ExecuteInProcessResult]:
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets) + list(defs.asset_checks or [])
    results = []
    for wave in waves(graph):
        pdef = graph.get(wave[0]).partitions_def
        for key in partition_keys(pdef, instance) if pdef else [None]:
            t = time.time()
            res = dg.materialize(assets, selection=dg.AssetSelection.assets(*wave), instance=instance,
                                 resources=resources or defs.resources, partition_key=key, run_config=QUIET)
            names = ", ".join(k.to_user_string() for k in wave)
            log(f"  {names}{f' [{key}]' if key else ''}: {time.time() - t:.1f}s")
            results.append(res)
    return results


def step_seconds(instance: dg.DagsterInstance, results) -> dict[str, float]:
    """Wall time of every step (asset or check) of the runs, from the instance's step stats."""
    out: dict[str, float] = {}
    for r in results:
        for st in instance.get_run_step_stats(r.run_id):
            if st.start_time and st.end_time:
                out[st.step_key] = out.get(st.step_key, 0.0) + st.end_time - st.start_time
    return out


def main() -> int:
    settings = defs.resources["settings"]  # the run's settings, also the ones the partitions were sized from
    print(f"Materialising the Genixer graph, preset '{settings.preset}', data root {settings.root}")
    t = time.time()
    instance = dg.DagsterInstance.get()
    try:
        results = materialize_all(instance)
    except dg.DagsterError as e:  # a failed step or a failed blocking check stops the graph
        print(f"FAILED after {time.time() - t:.0f}s: {e}")
        return 1
    print(f"Done in {time.time() - t:.0f}s. Outputs under {settings.root}/ (tables/, models/, world/).")
    print("Time per asset (summed over partitions):")
    for name, secs in sorted(step_seconds(instance, results).items(), key=lambda kv: -kv[1]):
        print(f"  {secs:8.1f}s  {name}")
    for r in results:
        for c in r.get_asset_check_evaluations():
            shown = {k: getattr(v, "value", v) for k, v in c.metadata.items() if k != "first_problems"}
            print(f"  {'ok  ' if c.passed else 'MISS'} {c.asset_key.to_user_string()}.{c.check_name} {shown}")
    print("MISS marks an aim not reached (non-blocking checks); blocking checks would have stopped the run.")
    print("See runs, lineage and metadata with `make dev` (http://127.0.0.1:3000).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
