"""The CI workflow (.github/workflows/materialize.yml): its `run:` commands, all but the install, run here as they are
(the test fails if the workflow drifts from the code), then again on a corrupted upstream table, which a blocking
check must turn into a failed job: `dagster asset materialize` exits non-zero and the blocked asset is not written."""

import os
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "materialize.yml"
ACTIONS = ("actions/checkout@", "actions/setup-python@", "actions/upload-artifact@")  # GitHub's own steps, not run here
INSTALL = "make install"  # the venv these tests run in is that install
WORLD = "--select world_scenes"  # the step whose output the broken run corrupts


def _job() -> dict:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert len(jobs) == 1, sorted(jobs)
    return next(iter(jobs.values()))


def _commands() -> list[tuple[str, str]]:
    """(name, command) of every step to run here, in order; GitHub's actions (checkout, setup-python 3.11, the
    artifact upload) and the install are checked to be what they say and left out."""
    out, skipped = [], []
    for step in _job()["steps"]:
        if "uses" in step:
            assert step["uses"].startswith(ACTIONS), step["uses"]
            skipped.append(step["uses"].split("@")[0])
        elif step["run"].strip() == INSTALL:
            skipped.append(INSTALL)
        else:
            out.append((step.get("name", step["run"]), step["run"]))
    assert skipped[:3] == ["actions/checkout", "actions/setup-python", INSTALL], skipped
    setup = next(s for s in _job()["steps"] if s.get("uses", "").startswith("actions/setup-python@"))
    assert str(setup["with"]["python-version"]) == "3.11"
    return out


def _env(runner_temp: Path) -> dict:
    """This process's environment with the job's own on top, `${{ runner.temp }}` read as `runner_temp` (any other
    expression fails the test: it would need GitHub to mean something)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENIXER_", "DAGSTER_"))}
    for k, v in _job()["env"].items():
        v = str(v).replace("${{ runner.temp }}", str(runner_temp))
        assert "${{" not in v, (k, v)
        env[k] = v
    return env


def _run(runner_temp: Path, after=None) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The commands in order, as GitHub's default shell runs them (`bash -eo pipefail`), from the checkout, until one
    fails; `after(name, command, env)` runs after each successful step."""
    env, done = _env(runner_temp), []
    for name, cmd in _commands():
        res = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", cmd], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=1800)
        done.append((name, res))
        if res.returncode != 0:
            break
        if after:
            after(name, cmd, env)
    return done


def _instance(env: dict) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))


def _checks(instance: dg.DagsterInstance) -> dict[str, bool]:
    out = {}
    for run in instance.get_runs():
        for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
            ev = r.event_log_entry.dagster_event.asset_check_evaluation_data
            out[ev.check_name] = ev.passed
    return out


def test_workflow_commands_materialise_the_selection_and_its_checks(tmp_path):
    done = _run(tmp_path)
    assert all(r.returncode == 0 for _, r in done), [(n, r.returncode, r.stderr[-3000:]) for n, r in done]
    assert len(done) == len(_commands())
    env = _env(tmp_path)
    home, data = Path(env["DAGSTER_HOME"]), Path(env["GENIXER_DATA_DIR"]) / env["GENIXER_PRESET"]
    # the instance is the copied dagster.yaml's, its history in DAGSTER_HOME (not in the checkout)
    assert (home / "dagster.yaml").read_text() == (ROOT / "dagster.yaml").read_text()
    assert (home / "history" / "runs.db").is_file()
    instance = _instance(env)
    runs = instance.get_runs()
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    for name in ("world_scenes", "collected_datasets", "benchmark_sets", "templated_instructions"):
        assert (data / "tables" / f"{name}.parquet").is_file(), name
        assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None, name
    assert (data / "tables" / "instruction_templates.json").is_file()
    checks = _checks(instance)
    blocking = {"world_scenes_valid", "collected_datasets_valid", "benchmark_sets_valid", "instruction_templates_valid",
                "templated_instructions_valid"}
    assert blocking <= set(checks) and all(checks[c] for c in blocking), checks


def test_a_corrupted_upstream_table_fails_the_workflow(tmp_path):
    """world_scenes as the world step wrote it, then its collect images' sizes shrunk to 8 x 8 pixels in the table:
    the annotated boxes fall outside their images, collected_datasets_valid (blocking) fails, the materialize
    command exits 1 and templated_instructions (downstream of the failed check) is not materialised."""
    corrupted = []

    def corrupt(name, cmd, env):
        if WORLD in cmd:
            path = Path(env["GENIXER_DATA_DIR"]) / env["GENIXER_PRESET"] / "tables" / "world_scenes.parquet"
            df = pd.read_parquet(path)
            df.loc[df.split == "collect", ["width", "height"]] = 8
            df.to_parquet(path, index=False)
            corrupted.append(name)

    done = _run(tmp_path, after=corrupt)
    assert corrupted, f"no step selects world_scenes with {WORLD!r}"
    name, last = done[-1]
    assert last.returncode != 0 and name == _commands()[-1][0], [(n, r.returncode) for n, r in done]
    assert "Materialization failed" in last.stderr + last.stdout
    env = _env(tmp_path)
    instance = _instance(env)
    checks = _checks(instance)
    assert checks["collected_datasets_valid"] is False and checks["world_scenes_valid"] is True, checks
    failed = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
    assert len(failed) == 1
    assert instance.get_latest_materialization_event(dg.AssetKey("templated_instructions")) is None
    assert not (Path(env["GENIXER_DATA_DIR"]) / env["GENIXER_PRESET"] / "tables" / "templated_instructions.parquet").exists()

