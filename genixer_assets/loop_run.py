"""`make loop`: the closed loop's rounds (group `loop`) after the graph, round by round, in this process.

What to run next is decided from the instance alone (:func:`next_step`, which the `loop_next_round` sensor asks too):
the most recent `loop_evaluation` says whether its round goes on (its `stop` metadata, genixer.loop.stop_reason);
a round that goes on runs the rest of its assets (queries, generations, models, scores) as one run of its partition;
a finished round is followed by the next round's evaluation, which reads the model the round trained; an evaluation
that stops the loop is followed by `loop_report`. The driver starts the loop (`loop_generator`, then round 1's
evaluation) when the instance holds none of it, and ends when :func:`next_step` has nothing left.

    python -m genixer_assets.loop_run [--restart] [--config my_setup.yaml]   # make loop: the demo's graph first
"""

import argparse
import os
import sys
import time

os.environ.setdefault("GENIXER_EXECUTOR", "in_process")

import dagster as dg  # noqa: E402

from genixer_assets.partitions import LOOP_ROUNDS, round_index  # noqa: E402

ROUND_REST = ["loop_queries", "loop_generations", "loop_models", "loop_scores"]


def latest(instance: dg.DagsterInstance, asset: str, partition: str | None = None):
    """The newest materialisation record of an asset (partition), or None."""
    f = dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None)
    recs = instance.fetch_materializations(f, limit=1).records
    return recs[0] if recs else None


def next_step(instance: dg.DagsterInstance) -> tuple[list[str], str | None, str, str] | None:
    """(assets, partition, why, run key) the loop runs next, or None: not started (no evaluation yet) or finished (its
    report made after the evaluation that stopped it). Keyed by the newest evaluation's storage id, so a step is
    requested once per evaluation."""
    evals = [(k, e) for k in LOOP_ROUNDS if (e := latest(instance, "loop_evaluation", k))]
    if not evals:
        return None
    key, ev = max(evals, key=lambda x: x[1].storage_id)  # the round evaluated last (a restarted loop's round_1 too)
    stop = ev.asset_materialization.metadata["stop"].value
    if stop.startswith("stop"):
        rep, paper = latest(instance, "loop_report"), latest(instance, "paper_report")
        if rep is None or rep.storage_id < ev.storage_id:
            return ["loop_report"], None, f"the loop ended at {key}'s evaluation ({stop})", f"loop_report:{ev.storage_id}"
        if paper is not None and rep.storage_id < paper.storage_id:  # paper_report rewritten since: its loop section again
            return ["loop_report"], None, "paper_report was made again after loop_report", f"loop_report:paper:{paper.storage_id}"
        return None
    scores = latest(instance, "loop_scores", key)
    if scores is None or scores.storage_id < ev.storage_id:
        return ROUND_REST, key, f"{key}'s evaluation says {stop}", f"{key}:rest:{ev.storage_id}"
    r = round_index(key)
    if r >= len(LOOP_ROUNDS):
        return ["loop_report"], None, f"{key} was the last round partition", f"loop_report:{scores.storage_id}"
    nxt = LOOP_ROUNDS[r]
    return ["loop_evaluation"], nxt, f"{key} is trained and scored: {nxt} evaluates its model", f"{nxt}:evaluation:{scores.storage_id}"


def _materialize(instance, assets: list[str], partition: str | None, resources: dict | None, log, ops: dict | None = None,
                 resource_defs: dict | None = None):
    from genixer_assets.backfill import RunOutcome
    from genixer_assets.definitions import defs

    t = time.time()
    sel = dg.AssetSelection.assets(*assets)
    run_config = {"resources": resources} if resources else {}
    if ops and any(a in ops for a in assets):
        run_config["ops"] = {a: ops[a] for a in assets if a in ops}
    res = dg.materialize(list(defs.assets) + list(defs.asset_checks or []), selection=sel | sel.checks(), instance=instance,
                         partition_key=partition, resources=resource_defs or defs.resources, raise_on_error=False,
                         run_config=run_config or None)
    out = RunOutcome(instance, res.run_id)
    log(f"  {', '.join(assets)}{f' [{partition}]' if partition else ''}: {'' if out.success else 'FAILED, '}{time.time() - t:.1f}s")
    return out


def run_loop(instance: dg.DagsterInstance, resources: dict | None = None, restart: bool = False, log=print,
             ops: dict | None = None, resource_defs: dict | None = None) -> list:
    """Start the loop if the instance holds none of it (or ``restart``), then run :func:`next_step` until it has
    nothing left or a run fails. ``resources``: run config of the resources; ``resource_defs``: the resources themselves
    (default: the definitions'); ``ops``: per-asset op config (a run-config YAML's ``ops``). Returns the runs
    (genixer_assets.backfill.RunOutcome)."""
    def go(assets, partition):
        return _materialize(instance, assets, partition, resources, log, ops, resource_defs)

    runs = []
    for asset, partition in (("loop_generator", None), ("loop_evaluation", LOOP_ROUNDS[0])):
        if restart or latest(instance, asset, partition) is None:
            runs.append(go([asset], partition))
            if not runs[-1].success:
                return runs
    while (step := next_step(instance)) is not None:
        assets, partition, why, _ = step
        log(f"  next: {why}")
        runs.append(go(assets, partition))
        if not runs[-1].success:
            break
    return runs


def main(argv: list[str] | None = None) -> int:
    from genixer_assets import backfill, resume
    from genixer_assets.demo import default_dagster_home, failure_summary
    from genixer_assets.definitions import defs

    parser = argparse.ArgumentParser(prog="python -m genixer_assets.loop_run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--restart", action="store_true", help="train the typed generator and start from round 1 again")
    parser.add_argument("--config", help="the run-config YAML the graph ran with (make demo's --config): resources and op "
                                         "config, e.g. ops: {loop_models: {config: {seeds: 1}}}")
    args = parser.parse_args(argv)
    resource_defs, ops = (None, None)
    if args.config:
        from genixer_assets.demo import from_config

        resource_defs, run_config, _ = from_config(args.config)
        ops = run_config["ops"]
    default_dagster_home()
    instance = backfill.in_process_instance()
    recovered = resume.recover(instance)
    if recovered:
        print(recovered)
    settings = (resource_defs or defs.resources)["settings"]
    if latest(instance, "base_mllm") is None or latest(instance, "paper_report") is None:
        print("the loop starts from the graph's models and report: run `make demo` first (make loop does)")
        return 1
    t = time.time()
    print(f"The closed loop, preset '{settings.preset}', data root {settings.root}")
    runs = run_loop(instance, restart=args.restart, ops=ops, resource_defs=resource_defs)
    if any(not r.success for r in runs):
        for line in failure_summary(instance, runs, time.time() - t):
            print(line)
        return 1
    print(f"The loop is done in {time.time() - t:.0f}s: {settings.path('reports', 'loop_report.md')} "
          "(and the last section of paper_report.md)" if runs else "The loop is done already: nothing to run (--restart runs it again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
