"""The instance's files follow DAGSTER_HOME (dagster.yaml sets no base_dir): a copy of the repo's dagster.yaml in
another DAGSTER_HOME keeps runs, events, schedules, outputs and compute logs there, whatever the working directory;
`make clean` and .gitignore name the same places for the repo's own instance."""

import shutil
import subprocess
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

ROOT = Path(__file__).resolve().parents[1]


@dg.asset
def one() -> int:
    return 1


def test_a_copy_of_dagster_yaml_keeps_its_history_in_its_own_home(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.chdir(work)  # run from elsewhere: nothing may land in the working directory
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert instance.run_retries_enabled  # the copied file is the one read
        run_id = dg.materialize([one], instance=instance).run_id
    assert list(work.iterdir()) == []
    assert (home / "history" / "runs.db").is_file() and (home / "history" / "runs" / f"{run_id}.db").is_file()
    assert (home / "schedules" / "schedules.db").is_file()
    assert (home / "storage" / "one").is_file()  # the asset's output (fs_io_manager under the artifact storage)
    monkeypatch.chdir(tmp_path)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as again:  # read back from another directory
        assert again.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert again.get_latest_materialization_event(dg.AssetKey("one")) is not None


def test_make_clean_and_gitignore_name_the_repo_instances_places():
    ref = InstanceRef.from_dir(str(ROOT))  # the classes and their config only: nothing is opened
    assert ref.storage_data.config_dict == {"base_dir": str(ROOT)}
    assert ref.local_artifact_storage_data.config_dict == {"base_dir": str(ROOT)}
    assert ref.compute_logs_data.config_dict == {"base_dir": f"{ROOT}/storage"}
    clean = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert {f"{ROOT}/history", f"{ROOT}/schedules", f"{ROOT}/storage"} <= set(clean)
    probe = ["history/runs.db", "history/runs/x.db", "schedules/schedules.db", "storage/x/compute_logs/a.out", "logs/event.log",
             ".telemetry/id.yaml"]
    ignored = subprocess.run(["git", "check-ignore", *probe], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert ignored == probe
