"""`make demo`: materialise the whole graph with the current preset, then say what was made.

Without op config (the embedded default, or a --config with resources only) the graph runs as the UI's
"Materialize all" does: the corpus plan, then one asset backfill of every other asset and partition
(genixer_assets.backfill), executed in this process. A --config with per-asset op config runs wave by wave
(:func:`materialize_all`: one run per wave and partition, each given its assets' config), because a backfill has
one run config for all its runs. Either way everything is recorded in the instance at DAGSTER_HOME (so
`dagster dev` shows the runs, the backfill and the history); without DAGSTER_HOME the driver uses the repository
root, as `make demo` does, and says so.

A failed run ends the driver with one line per failed step (the step, its partition, the run id and the error's
message) and exit code 1; the full traceback stays in the run's log in the instance (`make dev`, Runs, the run id).

Faults (genixer_assets/resume.py): before it launches anything the driver marks the runs of a demo whose process is
gone (kill -9, out of memory) failed and frees their pool slots, saying so in one line; one Ctrl-C cancels the
running run and the backfill, frees the slots and ends the driver with one line saying how to resume (exit code
130); and a rerun reuses every asset partition whose code, config and inputs are unchanged since its last
materialisation (the first line says which), so it picks up where the last one stopped (``--from-scratch``:
materialise everything again).
"""

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

if __name__ == "__main__":  # Ctrl-C goes to one thread of the driver (resume.CtrlC): block SIGINT before any
    import signal           # thread exists (torch starts some when it is imported), so that every thread inherits it

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

# The backfill's runs execute in this process; their steps too (set before the definitions are imported).
os.environ.setdefault("GENIXER_EXECUTOR", "in_process")

import dagster as dg  # noqa: E402

from genixer.retraining import RECIPES  # noqa: E402
from genixer_assets import resume  # noqa: E402
from genixer_assets.backfill import LOOP  # noqa: E402
from genixer_assets.definitions import defs  # noqa: E402
from genixer_assets.partitions import partition_keys  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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


def _held_back_rows(settings) -> int:
    """Rows of held_back_datasets (0 when it is not there)."""
    import pyarrow.parquet as pq

    path = settings.table_path("held_back_datasets") if settings is not None else None
    return pq.read_metadata(path).num_rows if path is not None and path.exists() else 0


# The runs' console output: none but critical. The driver prints its own progress and, for a failed run, one line
# per failed step; the run's events (tracebacks included) are in the instance either way.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def materialize_all(instance: dg.DagsterInstance, resources=None, log=print, run_config: dict | None = None,
                    exclude: tuple[str, ...] = (), raise_on_error: bool = True, tags: dict[str, str] | None = None,
                    reuse: resume.Reuse | None = None) -> list[dg.ExecuteInProcessResult]:
    """Every asset but `exclude` (e.g. ``("world_scenes",)`` for a run on published data), wave by wave.
    ``run_config``: the ops' config of the whole graph (``{"ops": {asset: {"config": ...}}}``); each
    run gets the part for its assets. A failed run (a step raised, or a blocking check failed) stops it: its error
    is raised (as dg.materialize raises it), or with ``raise_on_error=False`` the results end with that run
    (``success`` False; :func:`failed_steps` says what failed). `tags`: on every run; `reuse`: asset partitions
    left as they are (resume.reusable). After a Ctrl-C (resume.CtrlC) the canceled run ends it (KeyboardInterrupt)."""
    graph = defs.resolve_asset_graph()
    assets = list(defs.assets) + list(defs.asset_checks or [])
    ops = (run_config or {}).get("ops", {})
    world = "world_scenes" not in exclude
    settings = (resources or defs.resources).get("settings")
    results = []
    loop = LOOP.resolve(graph)  # the closed loop runs round by round after the graph (make loop)
    for wave in waves(graph):
        wave = [k for k in wave if k.to_user_string() not in exclude and k not in loop]
        if not wave:
            continue
        pdef = graph.get(wave[0]).partitions_def
        for key in partition_keys(pdef, instance) if pdef else [None]:
            label = f"{', '.join(sorted(k.to_user_string() for k in wave))}{f' [{key}]' if key else ''}"
            if not world and key in RECIPES and RECIPES[key].needs_world:
                log(f"  {label}: left out (the recipe needs the world's oracle)")
                continue
            todo = [k for k in wave if reuse is None or key not in reuse.reused.get(k, set())]
            if not todo:
                log(f"  {label}: reused")
                continue
            if key in RECIPES and RECIPES[key].needs_held_back and not _held_back_rows(settings):
                log(f"  {label}: left out (the ceiling arm needs held-back annotations: held_back_datasets is empty)")
                continue
            names = {k.to_user_string() for k in todo}
            t = time.time()
            res = dg.materialize(assets, selection=dg.AssetSelection.assets(*todo), instance=instance,
                                 resources=resources or defs.resources, partition_key=key,
                                 run_config={**QUIET, "ops": {k: v for k, v in ops.items() if k in names}},
                                 raise_on_error=raise_on_error, tags=tags)
            if resume.STOP.is_set():  # Ctrl-C: this run was canceled
                raise KeyboardInterrupt
            log(f"  {', '.join(sorted(names))}{f' [{key}]' if key else ''}: {'' if res.success else 'FAILED, '}"
                f"{time.time() - t:.1f}s")
            results.append(res)
            if not res.success:
                return results
    return results


# Dagster's wrappers around the error a user's code raised: the summary names the error inside.
_WRAPPERS = {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError", "DagsterResourceFunctionError"}


def _error_line(err) -> str:
    """A SerializableErrorInfo as one line: the user's exception class (inside Dagster's wrappers) and its message."""
    while err.cause is not None and err.cls_name in _WRAPPERS:
        err = err.cause
    msg = err.message.strip()
    head, sep, rest = msg.partition(": ")
    if sep and head.split(".")[-1] == err.cls_name:  # "module.Class: text" -> "text"
        msg = rest
    return f"{err.cls_name}: {' '.join(msg.split())}" if err.cls_name else " ".join(msg.split())


def failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """What failed in a run, read from the instance's event log: (step, "Error: message") per failed step (a step
    stopped by a failed blocking check: the check's own description, e.g. the judge's AUC), or ("run", the run's
    failure) when no step failed (e.g. a resource or the run config)."""
    kinds = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    events = [r.event_log_entry.dagster_event for r in instance.get_records_for_run(run_id, of_type=kinds).records]
    blocked: dict[str, list[str]] = {}
    for e in events:
        c = e.asset_check_evaluation_data if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION else None
        if c is not None and c.blocking and not c.passed and c.severity == dg.AssetCheckSeverity.ERROR:
            blocked.setdefault(e.step_key, []).append(
                f"blocking check {c.asset_key.to_user_string()}.{c.check_name} failed: {' '.join((c.description or '').split())}")
    steps = [(e.step_key, "; ".join(blocked[e.step_key]) if e.step_key in blocked else
              _error_line(e.step_failure_data.error) if e.step_failure_data.error else "?")
             for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    if steps:
        return steps
    runs = [e for e in events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    if not runs:
        return [("run", "failed (no failure event recorded)")]
    data = runs[-1].event_specific_data
    return [("run", _error_line(data.error) if data is not None and data.error is not None else runs[-1].message)]


def failure_summary(instance: dg.DagsterInstance, results, seconds: float) -> list[str]:
    """One line per failed step of every failed run: the step, its partition, the run, the error's message and where
    the full traceback is (the run's log in the instance)."""
    where = f"DAGSTER_HOME {instance.root_directory}" if instance.is_persistent else "this process's instance"
    lines = []
    for r in results:
        if r.success:
            continue
        run = instance.get_run_by_id(r.run_id)
        part = run.tags.get("dagster/partition") if run else None
        rid = r.run_id[:8]
        for step, error in failed_steps(instance, r.run_id):
            lines.append(f"FAILED after {seconds:.0f}s: {step}{f' [{part}]' if part else ''} (run {rid}): {error} "
                         f"(full traceback: the run's log in {where}; `make dev`, Runs, {rid})")
    return lines


def step_seconds(instance: dg.DagsterInstance, results) -> dict[str, float]:
    """Wall time of every step (asset or check) of the runs, from the instance's step stats."""
    out: dict[str, float] = {}
    for r in results:
        for st in instance.get_run_step_stats(r.run_id):
            if st.start_time and st.end_time:
                out[st.step_key] = out.get(st.step_key, 0.0) + st.end_time - st.start_time
    return out


def _known(cls, cfg: dict, where: str) -> dict:
    """`cfg` if every key is a field of `cls` (Dagster's run-config schema rejects unknown keys; a resource built
    in Python would silently ignore them)."""
    unknown = sorted(set(cfg) - set(cls.model_fields))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; {cls.__name__} has {sorted(cls.model_fields)}")
    return cfg


def config_class(asset: str):
    """The dg.Config class of an asset's `config` parameter (ValueError: no such asset, or it takes no config)."""
    import inspect

    try:
        assets_def = defs.resolve_assets_def(asset)
    except dg.DagsterInvariantViolationError as e:
        raise ValueError(f"ops.{asset}: no asset of that name in the graph") from e
    param = inspect.signature(assets_def.op.compute_fn.decorated_fn).parameters.get("config")
    if param is None:
        raise ValueError(f"ops.{asset}: the asset takes no config")
    return param.annotation


def from_config(path: str | Path) -> tuple[dict, dict, tuple[str, ...]]:
    """(resources, run config, assets to leave out) from a run-config YAML: Dagster's run-config layout
    (``ops: {asset: {config: ...}}``) plus ``resources: {settings|backend: {config: ...}}``. A run whose
    collected_datasets has ``sources`` leaves world_scenes out (nothing after collection needs it)."""
    import yaml

    from resources import GenixerSettings, MLLMBackend, ModelRole
    from resources.models import ROLES

    cfg = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(cfg) - {"ops", "resources"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown)} (expected ops, resources)")
    res = cfg.get("resources") or {}
    settings_cfg = _known(GenixerSettings, (res.get("settings") or {}).get("config") or {}, "resources.settings.config")
    backend_cfg = _known(MLLMBackend, (res.get("backend") or {}).get("config") or {}, "resources.backend.config")
    for role in ROLES:
        _known(ModelRole, backend_cfg.get(role) or {}, f"resources.backend.config.{role}")
    resources = {"settings": GenixerSettings(**settings_cfg), "backend": MLLMBackend(**backend_cfg)}
    for asset, body in (cfg.get("ops") or {}).items():
        cls = config_class(asset)
        cls(**_known(cls, (body or {}).get("config") or {}, f"ops.{asset}.config"))
    sources = (((cfg.get("ops") or {}).get("collected_datasets") or {}).get("config") or {}).get("sources")
    return resources, {"ops": cfg.get("ops") or {}}, ("world_scenes",) if sources else ()


def data_root_source(config: str | Path | None) -> str:
    """Where the run's data root comes from, in the order that wins: the run config's
    ``resources.settings.config.data_dir``, then GENIXER_DATA_DIR, then ./data."""
    import yaml

    cfg = (yaml.safe_load(Path(config).read_text()) or {}) if config else {}
    pinned = ((((cfg.get("resources") or {}).get("settings") or {}).get("config") or {}).get("data_dir"))
    env = os.environ.get("GENIXER_DATA_DIR")
    if pinned is not None:
        overridden = env and Path(env).resolve() != Path(pinned).resolve()
        return (f"resources.settings.config.data_dir of {config}"
                + (f", which wins over GENIXER_DATA_DIR={env}" if overridden else ""))
    return "GENIXER_DATA_DIR" if env else "the default ./data: GENIXER_DATA_DIR is not set"


def default_dagster_home(log=print) -> None:
    """DAGSTER_HOME, when unset, defaulted as the Makefile does: the repository root, whose dagster.yaml is the
    instance (its history in history/, schedules/ and storage/ there). Left unset outside a checkout (no
    dagster.yaml beside the package): the instance then says what to set."""
    if os.environ.get("DAGSTER_HOME") or not (REPO / "dagster.yaml").is_file():
        return
    os.environ["DAGSTER_HOME"] = str(REPO)
    log(f"DAGSTER_HOME is not set: using {REPO} (its dagster.yaml, history kept there), as `make demo` does")


def main(argv: list[str] | None = None, ctrl_c: bool = False) -> int:
    """The driver. `ctrl_c`: handle Ctrl-C (resume.CtrlC), as `python -m genixer_assets.demo` does."""
    from genixer_assets import backfill

    parser = argparse.ArgumentParser(prog="python -m genixer_assets.demo", description=(
        "Materialise the whole Genixer graph, every partition, in dependency order. Without --config: the "
        "embedded default (the shapes world, preset from GENIXER_PRESET), as one asset backfill. Asset partitions "
        "whose code, config and inputs are unchanged since their last materialisation are reused."))
    parser.add_argument("--config", help="run-config YAML: ops config per asset and resources (settings, backend); "
                                         "see examples/")
    parser.add_argument("--from-scratch", action="store_true",
                        help="materialise every asset again, even those an earlier run made with the same code and config")
    args = parser.parse_args(argv)
    resources, run_config, exclude = from_config(args.config) if args.config else (defs.resources, None, ())
    settings = resources["settings"]  # the run's settings, also the ones the partitions were sized from
    waves_needed = bool((run_config or {}).get("ops")) or bool(exclude)
    notes: list[str] = []
    default_dagster_home(log=notes.append)
    t = time.time()
    instance = backfill.in_process_instance()
    recovered = resume.recover(instance)  # a killed demo's runs: failed, their slots freed
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if k.to_user_string() not in exclude and k not in LOOP.resolve(graph)]
    config = resume.config_fingerprint(resources)
    tags = resume.driver_tags(config)

    def reuse() -> resume.Reuse:
        return resume.reusable(instance, graph, keys, config, (run_config or {}).get("ops"))

    print(f"Materialising the Genixer graph, preset '{settings.preset}', data root {settings.root} "
          f"({data_root_source(args.config)})"
          + (f", without {', '.join(exclude)}" if exclude else "")
          + (", wave by wave (per-asset op config)" if waves_needed else ", as one asset backfill")
          + f"; {'--from-scratch: nothing reused' if args.from_scratch else reuse().summary()}")
    for line in notes + ([recovered] if recovered else []):
        print(line)
    try:
        with resume.CtrlC(instance, forced=lambda: _forced(t)) if ctrl_c else nullcontext():
            if waves_needed:
                results = materialize_all(instance, resources=resources, run_config=run_config, exclude=exclude,
                                          raise_on_error=False, tags=tags, reuse=None if args.from_scratch else reuse())
            else:
                yaml_resources = _resources_run_config(args.config) if args.config else None
                backfill_id, results = backfill.materialize_graph(instance, resources=yaml_resources, tags=tags,
                                                                  reuse=None if args.from_scratch else reuse)
                if backfill_id:  # None: the plan's run failed, or nothing was left to run
                    print(f"Backfill {backfill_id}: {instance.get_backfill(backfill_id).status.value}")
    except KeyboardInterrupt:  # Ctrl-C (resume.CtrlC): the running run is canceled, nothing more is launched
        done = resume.stop(instance, tags[resume.DRIVER_TAG], "Ctrl-C: the demo was asked to stop")
        left = reuse()
        ckpts = len(list(settings.root.glob("models/**/checkpoint/trainer_state.pt")))
        print(f"Stopped by Ctrl-C after {time.time() - t:.0f}s: {done}. To resume, run the same command again "
              f"(`make demo`): it reuses the {left.count} of {left.total} asset partitions done so far"
              + (f" and resumes {ckpts} interrupted training{'s' if ckpts > 1 else ''} from its last checkpoint"
                 if ckpts else "") + ".")
        return 130
    except dg.DagsterError as e:  # raised outside any step, e.g. a run config Dagster refuses
        print(f"FAILED after {time.time() - t:.0f}s: {type(e).__name__}: {' '.join(str(e).split())}")
        return 1
    if any(not r.success for r in results):  # a step raised or a blocking check failed: its run failed
        for line in failure_summary(instance, results, time.time() - t):
            print(line)
        return 1
    print(f"Done in {time.time() - t:.0f}s. Outputs under {settings.root}/ (tables/, models/, world/).")
    if results:
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


def _forced(t: float) -> str:
    return (f"Stopped at once by a second Ctrl-C after {time.time() - t:.0f}s. To resume, run the same command again "
            f"(`make demo`): it cleans up after the interrupted run and reuses what was done.")


def _resources_run_config(path: str | Path) -> dict | None:
    import yaml

    return (yaml.safe_load(Path(path).read_text()) or {}).get("resources") or None


if __name__ == "__main__":
    sys.exit(main(ctrl_c=True))
