"""The demo driver (`python -m genixer_assets.demo`, what `make demo` runs) as a user runs it: a failed run ends in
one line per failed step (the step, the run, the error's message, where the full traceback is) and exit code 1, on
both of its paths; without DAGSTER_HOME it uses the repository root as the Makefile does; and its first line says
which data root wins."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef

from genixer_assets import demo

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
