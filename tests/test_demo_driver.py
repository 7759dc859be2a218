"""The demo driver (`python -m genixer_assets.demo`, what `make demo` runs) as a user runs it: a failed run ends in
one line per failed step (the step, the run, the error's message, where the full traceback is) and exit code 1, on
both of its paths; without DAGSTER_HOME it uses the repository root as the Makefile does; its first line says
which data root wins; and it survives its faults: killed with -9 or stopped by one Ctrl-C, the next demo cleans up
and picks up where it stopped."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef

from genixer_assets import demo, resume

ROOT = Path(__file__).resolve().parents[1]


def _home(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", path / "dagster.yaml")  # run_retries on, as in the repo's instance
    return path


def _malformed_source(tmp: Path) -> Path:
    """A run config naming a VQAv2 release whose question file is cut off: collected_datasets raises (a plain
    Python exception of the source reader, not a DagsterError). Its data root is pinned in the config."""
    (tmp / "q.json").write_text('{"questions": [')
    (tmp / "a.json").write_text('{"annotations": []}')
    cfg = {"resources": {"settings": {"config": {"preset": "smoke", "data_dir": str(tmp / "data")}},
                         "backend": {"config": {"device": "cpu"}}},
           "ops": {"collected_datasets": {"config": {"sources": [
               {"format": "vqav2", "files": [str(tmp / "q.json"), str(tmp / "a.json")], "images": str(tmp)}]}}}}
    path = tmp / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _demo(args: list[str], env: dict, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GENIXER_", "DAGSTER_"))}
    return subprocess.run([sys.executable, "-m", "genixer_assets.demo", *args], env={**base, "GENIXER_PRESET": "smoke", **env},
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _failure_in_log(home: Path, step: str) -> tuple[str, dg.DagsterEvent]:
    """(run id, the STEP_FAILURE event) of `step`, read from the instance at `home`."""
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for run in instance.get_runs():
            for r in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
                if r.event_log_entry.dagster_event.step_key == step:
                    return run.run_id, r.event_log_entry.dagster_event
    raise AssertionError(f"no STEP_FAILURE of {step} in the instance at {home}")


def _tracebacks(err) -> str:
    out = ""
    while err is not None:
        out += err.message + "".join(err.stack)
        err = err.cause
    return out


def test_a_step_raising_ends_in_one_line_per_failure(tmp_path):
    """Wave by wave (the config has op config): the reader's exception is summarised, not printed with its traceback;
    the traceback is in the run's log in the instance the summary names."""
    home, cwd = _home(tmp_path / "home"), tmp_path / "cwd"
    cwd.mkdir()
    config = _malformed_source(tmp_path)
    other = tmp_path / "other_data"
    res = _demo(["--config", str(config)], {"DAGSTER_HOME": str(home), "GENIXER_DATA_DIR": str(other)}, cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "Traceback" not in out and "Stack Trace" not in out, out
    lines = res.stdout.strip().splitlines()
    # the first line: the data root, and which source won
    assert f"data root {tmp_path / 'data' / 'smoke'} (resources.settings.config.data_dir of {config}, which wins over " \
           f"GENIXER_DATA_DIR={other})" in lines[0]
    assert not other.exists() and (tmp_path / "data" / "smoke").is_dir()
    failed = [line for line in lines if line.startswith("FAILED after ")]
    assert failed and lines[-len(failed):] == failed  # the output ends in the summary
    collected = [line for line in failed if ": collected_datasets (run " in line]
    assert len(collected) == 1, failed
    assert "SourceFormatError: vqav2 expects a JSON object" in collected[0] and "not valid JSON" in collected[0]
    assert all(f"the run's log in DAGSTER_HOME {home}" in line for line in failed)
    assert list(cwd.iterdir()) == []
    run_id, event = _failure_in_log(home, "collected_datasets")  # the full traceback stays in the run's log
    tb = _tracebacks(event.step_failure_data.error)
    assert "SourceFormatError" in tb and "collection.py" in tb
    assert f"(run {run_id[:8]})" in collected[0] and f"Runs, {run_id[:8]})" in collected[0]


def test_a_failed_backfill_run_ends_the_demo(tmp_path):
    """As one asset backfill (a config with resources only): base_mllm's checkpoint does not exist, and the judge's
    AUC floor is out of reach, so its blocking check fails. With the instance's run retries on and no daemon to
    launch a retry, the backfill used to wait for ever; it ends, and so does the driver, with the summary: the
    exception's message, and the blocking check's own description."""
    home, cwd = _home(tmp_path / "home"), tmp_path / "cwd"
    cwd.mkdir()
    config = tmp_path / "missing_checkpoint.yaml"
    config.write_text(yaml.safe_dump({"resources": {
        "settings": {"config": {"preset": "smoke", "data_dir": str(tmp_path / "data"), "judge_min_auc": 1.5}},
        "backend": {"config": {"device": "cpu", "base": {"checkpoint": str(tmp_path / "no_such_checkpoint")}}}}}))
    res = _demo(["--config", str(config)], {"DAGSTER_HOME": str(home)}, cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-5000:]
    assert "Traceback" not in out and "Stack Trace" not in out, out[-5000:]
    lines = res.stdout.strip().splitlines()
    assert "as one asset backfill" in lines[0]
    assert any(line.startswith("Backfill ") and line.endswith(": COMPLETED_FAILED") for line in lines), lines
    failed = [line for line in lines if line.startswith("FAILED after ")]
    assert failed and lines[-len(failed):] == failed
    base = [line for line in failed if ": base_mllm (run " in line]
    assert len(base) == 1 and f"CheckpointError: checkpoint {tmp_path / 'no_such_checkpoint'}" in base[0], failed
    assert "CheckpointError" in _tracebacks(_failure_in_log(home, "base_mllm")[1].step_failure_data.error)
    judge = [line for line in failed if ": judge_mllm_judge_mllm_beats_chance (run " in line]
    assert len(judge) == 1, failed
    assert "blocking check judge_mllm.judge_mllm_beats_chance failed: held-out AUC " in judge[0] and "< 1.500" in judge[0]


def test_without_dagster_home_the_repository_root_is_the_instance(tmp_path, monkeypatch, capsys):
    """No DAGSTER_HOME: the driver says it uses the repository root (here a stand-in holding the repo's dagster.yaml)
    and records the run there, instead of stopping with a RuntimeError."""
    repo = _home(tmp_path / "repo")
    monkeypatch.setattr(demo, "REPO", repo)
    monkeypatch.setenv("DAGSTER_HOME", "restored after the test")
    monkeypatch.delenv("DAGSTER_HOME")
    assert demo.main(["--config", str(_malformed_source(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert f"DAGSTER_HOME is not set: using {repo}" in out
    assert os.environ["DAGSTER_HOME"] == str(repo)
    assert f"the run's log in DAGSTER_HOME {repo}" in out.strip().splitlines()[-1]
    assert (repo / "history" / "runs.db").is_file()
    assert _failure_in_log(repo, "collected_datasets")


def test_outside_a_checkout_dagster_home_stays_unset(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "REPO", tmp_path)  # no dagster.yaml there
    monkeypatch.setenv("DAGSTER_HOME", "x")
    monkeypatch.delenv("DAGSTER_HOME")
    said = []
    demo.default_dagster_home(log=said.append)
    assert "DAGSTER_HOME" not in os.environ and said == []


# --- faults: a killed demo, a Ctrl-C, and the rerun that picks up where they stopped (genixer_assets/resume.py) ---

def _resources_only(tmp: Path) -> Path:
    """Resources only, so the demo takes its one-backfill path; the smoke judge's AUC gate off (its 30-step judge is
    at chance, as in conftest's `built`), the models on CPU. The data root comes from GENIXER_DATA_DIR."""
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump({"resources": {"settings": {"config": {"judge_min_auc": 0.0}},
                                                  "backend": {"config": {"device": "cpu"}}}}))
    return path


def _start(args: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GENIXER_", "DAGSTER_"))}
    return subprocess.Popen([sys.executable, "-m", "genixer_assets.demo", *args], cwd=cwd,
                            env={**base, "GENIXER_PRESET": "smoke", **env},
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 1800) -> None:
    """Until `path` exists (polled every 0.1 s): the demo is then inside that training, its step holding the gpu slot."""
    end = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"the demo ended ({proc.returncode}) before {path} appeared"
        assert time.time() < end, f"no {path} after {timeout} s"
        time.sleep(0.1)


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def _materialised(home: Path) -> dict[tuple[str, str | None], int]:
    """(asset, partition) -> storage id of its latest materialisation, read from the instance."""
    out: dict[tuple[str, str | None], int] = {}
    with _instance(home) as instance:
        for key in instance.get_asset_keys():
            for rec in instance.fetch_materializations(key, limit=10_000).records:
                k = (key.to_user_string(), rec.partition_key)
                out[k] = max(out.get(k, 0), rec.storage_id)
    return out


def _graph_partitions(home: Path) -> set[tuple[str, str | None]]:
    """Every asset partition of the graph the demo makes (the closed loop runs after it: make loop), the corpus shards
    as the instance holds them."""
    from genixer_assets.backfill import LOOP
    from genixer_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    loop = LOOP.resolve(graph)
    with _instance(home) as instance:
        return {(k.to_user_string(), p) for k in graph.toposorted_asset_keys if k not in loop for p in
                (graph.get(k).partitions_def.get_partition_keys(dynamic_partitions_store=instance)
                 if graph.get(k).partitions_def else [None])}


def test_a_killed_demo_holds_nothing_and_the_next_one_resumes(tmp_path):
    """kill -9 in the middle of base_mllm's training, as a crash or an out-of-memory kill would: its run stays STARTED
    holding the gpu pool's one slot, its backfill REQUESTED. The next demo says so in one line, marks the run failed,
    frees the slot, fails the old backfill, and completes: what was materialised before the kill is not materialised
    again (its first line says what it reuses), and base_mllm's training resumes from the checkpoint the kill left."""
    import torch

    home, cwd, data = _home(tmp_path / "home"), tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    config, env = _resources_only(tmp_path), {"DAGSTER_HOME": str(home), "GENIXER_DATA_DIR": str(data)}
    ckpt = data / "smoke" / "models" / "base_mllm" / "checkpoint" / "trainer_state.pt"
    proc = _start(["--config", str(config)], env, cwd, tmp_path / "killed")
    try:
        _wait_for(ckpt, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    before = _materialised(home)
    assert {("world_scenes", None), ("corpus_shards", None), ("collected_datasets", None)} <= set(before)
    assert ("base_mllm", None) not in before
    with _instance(home) as instance:  # the fault as the issue found it
        (dead,) = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert [s.run_id for s in instance.event_log_storage.get_concurrency_info("gpu").claimed_slots] == [dead.run_id]
        (old,) = instance.get_backfills()
        assert old.status.value == "REQUESTED"

    res = _demo(["--config", str(config)], env, cwd)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    lines = res.stdout.strip().splitlines()
    assert f"; reusing {len(before)} of " in lines[0], lines[0]
    assert all(name in lines[0] for name, _ in before), lines[0]
    assert lines[1] == (f"An earlier demo stopped without cleaning up (process {proc.pid} is gone): run {dead.run_id[:8]} "
                        f"({', '.join(sorted(k.to_user_string() for k in dead.asset_selection))}) marked failed, "
                        f"1 gpu slot freed, backfill {old.backfill_id} marked failed.")
    after = _materialised(home)
    assert {k: after[k] for k in before} == before  # nothing materialised before the kill was made again
    assert set(after) == _graph_partitions(home)  # and everything else was
    with _instance(home) as instance:
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_backfill(old.backfill_id).status.value == "FAILED"
        assert not instance.get_runs(filters=dg.RunsFilter(statuses=resume.ACTIVE))
        gpu = instance.event_log_storage.get_concurrency_info("gpu")
        assert gpu.claimed_slots == [] and gpu.pending_steps == []
        (new,) = [b for b in instance.get_backfills() if b.backfill_id != old.backfill_id]
        assert new.status.value == "COMPLETED_SUCCESS"
        base = instance.fetch_materializations(dg.AssetKey("base_mllm"), limit=1).records[0].asset_materialization
        assert base.metadata["resumed_from_step"].value == step > 0


def test_one_ctrl_c_stops_the_demo_cleanly(tmp_path):
    """One SIGINT in the middle of base_mllm's training: the driver exits with one line saying how to resume (and no
    traceback); its run is CANCELED (not failed, so no run retry), no run is left STARTED or launched after it, the
    backfill is canceled and the gpu pool holds no slot. The line's count of reusable asset partitions is what the
    instance holds, and the training's checkpoint is kept for the rerun."""
    home, cwd, data = _home(tmp_path / "home"), tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    config, env = _resources_only(tmp_path), {"DAGSTER_HOME": str(home), "GENIXER_DATA_DIR": str(data)}
    ckpt = data / "smoke" / "models" / "base_mllm" / "checkpoint" / "trainer_state.pt"
    log = tmp_path / "interrupted"
    proc = _start(["--config", str(config)], env, cwd, log)
    try:
        _wait_for(ckpt, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        proc.kill()
        proc.wait()
    stdout, stderr = log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()
    assert proc.returncode == 130, stdout + stderr[-5000:]
    assert "Traceback" not in stdout + stderr, stderr[-5000:]
    last = stdout.strip().splitlines()[-1]
    materialised = _materialised(home)
    assert last.startswith("Stopped by Ctrl-C after ") and "To resume, run the same command again (`make demo`): it " \
           f"reuses the {len(materialised)} of " in last, last
    assert last.endswith("and resumes 1 interrupted training from its last checkpoint.") and ckpt.is_file()
    with _instance(home) as instance:
        *done, run = sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
        # the plan and whatever the backfill ran before base_mllm's run succeeded; the interrupted run is the last one
        # launched (the backfill launched nothing after it), and it is canceled
        assert done and all(r.status == dg.DagsterRunStatus.SUCCESS for r in done), [(r.run_id, r.status) for r in done]
        assert dg.AssetKey("base_mllm") in run.asset_selection and run.status == dg.DagsterRunStatus.CANCELED
        kinds = [r.event_log_entry.dagster_event.event_type for r in instance.get_records_for_run(run.run_id).records
                 if r.event_log_entry.dagster_event]
        assert dg.DagsterEventType.RUN_CANCELED in kinds and dg.DagsterEventType.RUN_FAILURE not in kinds
        assert f"run {run.run_id[:8]} (" in last and " canceled, backfill " in last
        (bf,) = instance.get_backfills()
        assert bf.status.value == "CANCELED" and f"backfill {bf.backfill_id} canceled" in last
        assert not instance.get_runs(filters=dg.RunsFilter(statuses=resume.ACTIVE))
        gpu = instance.event_log_storage.get_concurrency_info("gpu")
        assert gpu.claimed_slots == [] and gpu.pending_steps == []
