"""deploy/ and the k8s executor, without a cluster: the definitions load with GENIXER_EXECUTOR=k8s, and each step's
Kubernetes Job is built with dagster_k8s's own code from the same layers the running system merges (Helm run
launcher -> the code location's container context from deploy/values.yaml -> the executor's step_k8s_config -> the
step's `dagster-k8s/config` tag), so what is checked is the container the cluster would be asked for."""

import json
import re
import runpy
import warnings
from pathlib import Path

import dagster as dg
import pytest
import yaml

dagster_k8s = pytest.importorskip(
    "dagster_k8s", reason="dagster-k8s is not installed (pip install -e '.[k8s]' or '.[dev]'); the deploy tests need it")

# internal, but what a launched run itself uses: the steps' tags (-> step pods) and the resolved executor config
from dagster._core.execution.api import create_execution_plan
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)

from genixer_assets import k8s

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RELEASE = "dagster"  # `helm upgrade --install dagster ...` in deploy/README.md


def _user_env_configmap(deployment) -> str:
    """The ConfigMap the user-deployments subchart writes a map `env` to (its fullname: <release>-<subchart name>)."""
    return f"{RELEASE}-dagster-user-deployments-{deployment['name']}-user-env"


def _load_defs(monkeypatch, executor: str | None):
    """genixer_assets.definitions run afresh (runpy: sys.modules keeps the one other tests imported)."""
    if executor is None:
        monkeypatch.delenv(k8s.EXECUTOR_ENV, raising=False)
    else:
        monkeypatch.setenv(k8s.EXECUTOR_ENV, executor)
    with warnings.catch_warnings():  # runpy warns that the module is already imported: that copy is kept on purpose
        warnings.filterwarnings("ignore", message="'genixer_assets.definitions' found in sys.modules", category=RuntimeWarning)
        return runpy.run_module("genixer_assets.definitions")["defs"]


@pytest.fixture(scope="module")
def k8s_defs():
    with pytest.MonkeyPatch.context() as mp:
        return _load_defs(mp, "k8s")


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load((DEPLOY / "values.yaml").read_text())


@pytest.fixture(scope="module")
def deployment(values):
    deployments = values["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1, "one code location: genixer_assets.definitions"
    return deployments[0]


# ---- the executor switch ------------------------------------------------------------------------------------------

def test_executor_switch(monkeypatch, k8s_defs):
    assert k8s_defs.executor.name == dagster_k8s.k8s_job_executor.name == "k8s"
    assert k8s_defs.executor.executor_creation_fn is dagster_k8s.k8s_job_executor.executor_creation_fn
    job = k8s_defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "k8s"

    default = _load_defs(monkeypatch, None).resolve_implicit_global_asset_job_def()
    assert default.executor_def.name == "multi_or_in_process_executor"  # today's default, unchanged

    monkeypatch.setenv(k8s.EXECUTOR_ENV, "in_process")  # make demo's choice: the backfill's runs, steps in process
    assert k8s.executor_from_env() is dg.in_process_executor

    monkeypatch.setenv(k8s.EXECUTOR_ENV, "kubernetes")
    with pytest.raises(ValueError, match="GENIXER_EXECUTOR"):
        k8s.executor_from_env()

    # the stages import GPU from the shared module: still there, and the same dict
    from genixer_assets.common import GPU
    assert GPU is k8s.GPU


def _executor_config(defs, run_config: dict | None = None) -> dict:
    """The k8s_job_executor config a run of the asset job gets (Dagster resolves it like this at launch)."""
    job = defs.resolve_implicit_global_asset_job_def()
    return ResolvedRunConfig.build(job, run_config or {}).execution.execution_engine_config


def test_executor_config_sets_default_step_resources(k8s_defs):
    cfg = _executor_config(k8s_defs)
    res = cfg["step_k8s_config"]["container_config"]["resources"]
    assert res["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert res["limits"] == {"memory": "16Gi"}
    assert "nvidia.com/gpu" not in json.dumps(cfg), "GPUs are requested per model step, not for every step"
    # a run's own execution config (Launchpad) still applies, merged over the defaults
    over = _executor_config(k8s_defs, {"execution": {"config": {
        "step_k8s_config": {"container_config": {"resources": {"requests": {"cpu": "4"}}}},
        "per_step_k8s_config": {"genixer_l": {"container_config": {"resources": {"requests": {"memory": "64Gi"}}}}}}}})
    assert over["step_k8s_config"]["container_config"]["resources"] == {"requests": {"cpu": "4", "memory": "8Gi"},
                                                                       "limits": {"memory": "16Gi"}}
    assert over["per_step_k8s_config"]["genixer_l"]["container_config"]["resources"]["requests"]["memory"] == "64Gi"


# ---- the step pods ------------------------------------------------------------------------------------------------

_HELM_RUN_K8S_KEYS = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config",
                      "podTemplateSpecMetadata": "pod_template_spec_metadata", "jobSpecConfig": "job_spec_config",
                      "jobMetadata": "job_metadata"}


def _step_job(values, deployment, executor_cfg: dict, step_tags: dict):
    """The V1Job K8sStepHandler.launch_step would create for a step (its _get_container_context merge order)."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = {_HELM_RUN_K8S_KEYS[k]: v for k, v in (launcher.get("runK8sConfig") or {}).items()}
    context = K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_k8s))
    if deployment.get("includeConfigInLaunchedRuns", {"enabled": True})["enabled"]:
        # what the chart passes as the code location's container context (dagsterUserDeployments.k8sContainerContext)
        context = context.merge(K8sContainerContext.create_from_config({"k8s": {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_config_maps": [_user_env_configmap(deployment)]
            + [m["name"] for m in deployment.get("envConfigMaps") or []],
            "volume_mounts": deployment.get("volumeMounts") or [],
            "volumes": deployment.get("volumes") or [],
            "resources": deployment.get("resources") or {},
        }}))
    context = context.merge(K8sContainerContext(
        volume_mounts=executor_cfg.get("volume_mounts"), volumes=executor_cfg.get("volumes"),
        resources=executor_cfg.get("resources"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor_cfg.get("step_k8s_config", {}))))
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags)))
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    job_config = DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                     instance_config_map=f"{RELEASE}-instance",
                                     postgres_password_secret="dagster-postgresql-secret")
    return construct_dagster_k8s_job(job_config, args=["dagster", "api", "execute_step"], job_name="dagster-step-x",
                                     pod_name="dagster-step-x", component="step_worker",
                                     user_defined_k8s_config=context.run_k8s_config)


_UNITS = {"": 1, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}


def _qty(q: str) -> float:
    num, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q)).groups()
    return float(num) * _UNITS[unit]


def _gpu_asset_count() -> int:
    """How many assets carry `**GPU` in the asset modules' source (independent of what the definitions say)."""
    return sum(p.read_text().count("**GPU)") for p in (ROOT / "genixer_assets").glob("*.py"))


def test_step_pods_resources(k8s_defs, values, deployment):
    job = k8s_defs.resolve_implicit_global_asset_job_def()
    plan = create_execution_plan(job, run_config={})
    executor_cfg = _executor_config(k8s_defs)
    claim = deployment["volumes"][0]["persistentVolumeClaim"]["claimName"]
    gpu_steps, cpu_steps = [], []
    for step in plan.steps:
        pod = _step_job(values, deployment, executor_cfg, dict(step.tags or {})).spec.template.spec
        (container,) = pod.containers
        req, lim = container.resources.requests or {}, container.resources.limits or {}
        for key in set(req) & set(lim):
            assert _qty(req[key]) <= _qty(lim[key]), f"{step.key}: request {key} {req[key]} above its limit {lim[key]}"
        assert "cpu" not in lim, f"{step.key}: a CPU limit only throttles (inherited from the user deployment?)"
        # every step sees the data root on the shared volume, and the env (GENIXER_*) of the code location
        assert "/data" in {m.mount_path for m in container.volume_mounts}, step.key
        assert claim in {v.persistent_volume_claim.claim_name for v in pod.volumes if v.persistent_volume_claim}
        assert _user_env_configmap(deployment) in {e.config_map_ref.name for e in container.env_from if e.config_map_ref}
        if step.pool == "gpu":
            gpu_steps.append(step.key)
            assert req["nvidia.com/gpu"] == lim["nvidia.com/gpu"] == "1", step.key
            assert (req["cpu"], req["memory"], lim["memory"]) == ("8", "48Gi", "56Gi"), step.key
            assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pod.tolerations or []), step.key
        else:
            cpu_steps.append(step.key)
            assert "nvidia.com/gpu" not in req and "nvidia.com/gpu" not in lim, step.key
            assert (req["cpu"], req["memory"], lim["memory"]) == ("2", "8Gi", "16Gi"), step.key
            assert not pod.tolerations, step.key
    assert len(gpu_steps) == _gpu_asset_count() >= 11, gpu_steps
    assert {"base_mllm", "genixer_l", "genixer_s", "judge_mllm", "raw_generations_l", "scored_generations_s",
            "retrained_models", "benchmark_predictions"} <= set(gpu_steps)
    assert {"collected_datasets", "image_corpus", "dataset_exports", "benchmark_scores"} <= set(cpu_steps)


def test_gpu_tag_is_valid_dagster_k8s_config():
    """The tag as Dagster stores it (JSON) passes dagster_k8s's own schema check."""
    cfg = get_user_defined_k8s_config({"dagster-k8s/config": json.dumps(k8s.GPU["op_tags"]["dagster-k8s/config"])})
    assert cfg.container_config["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert k8s.GPU["pool"] == "gpu"


# ---- deploy/ files ------------------------------------------------------------------------------------------------

def test_values_and_pvc(values, deployment):
    pvc = yaml.safe_load((DEPLOY / "pvc.yaml").read_text())
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    volume = {v["name"]: v for v in deployment["volumes"]}
    (mount,) = [m for m in deployment["volumeMounts"] if m["name"] in volume]
    assert volume[mount["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    env = deployment["env"]
    assert isinstance(env, dict), "a map: the chart puts it in the ConfigMap the run and step pods get"
    assert env["GENIXER_DATA_DIR"] == mount["mountPath"] == "/data"
    assert env["GENIXER_EXECUTOR"] == "k8s"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True, "else run/step pods miss /data and the env"

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["enabled"] is True
    pg = values["postgresql"]
    assert pg["enabled"] is True or pg.get("postgresqlHost"), "chart-managed or external PostgreSQL"
    conc = values["concurrency"]
    assert conc["enabled"] is True and conc["pools"]["granularity"] == "op" and conc["pools"]["defaultLimit"] >= 1


def test_dockerfile_serves_what_values_point_at(deployment):
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    assert not any(ln.startswith("ENTRYPOINT") for ln in lines), "the chart passes the whole command as args"
    (cmd,) = [json.loads(ln[len("CMD"):]) for ln in lines if ln.startswith("CMD")]
    port = deployment["port"]
    assert cmd == ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(port), *deployment["dagsterApiGrpcArgs"]]
    assert f"EXPOSE {port}" in lines
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    assert module == "genixer_assets.definitions"
    assert re.search(r"pip install .*\.\[[^\]]*k8s[^\]]*\]", text) and "postgres" in re.search(r"\.\[([^\]]*)\]", text)[1]
    assert re.search(r"^ARG TORCH_SPEC=", text, re.MULTILINE)

    readme = (DEPLOY / "README.md").read_text()
    for step in ("docker build -f deploy/Dockerfile", "helm repo add dagster", "kubectl apply -n genixer -f deploy/pvc.yaml",
                 "helm upgrade --install", "-f deploy/values.yaml", "port-forward"):
        assert step in readme, step


def test_run_monitoring_resumes_a_lost_run_pod(values):
    """A lost run pod (node gone, OOM-killed) must not wedge the instance: the daemon's run monitoring, set in
    values.yaml, rendered into the instance's `run_monitoring` as the chart's configmap-instance template does, is
    valid instance config: resume attempts (K8sRunLauncher checks a run pod's health and can resume it), start and
    cancel timeouts, and the pool slots of an ended run freed."""
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster_k8s import K8sRunLauncher

    rm = values["dagsterDaemon"]["runMonitoring"]
    rendered = {"enabled": rm["enabled"], "start_timeout_seconds": rm["startTimeoutSeconds"],
                "cancel_timeout_seconds": rm["cancelTimeoutSeconds"], "max_resume_run_attempts": rm["maxResumeRunAttempts"],
                "poll_interval_seconds": rm["pollIntervalSeconds"],
                "free_slots_after_run_end_seconds": rm["freeSlotsAfterRunEndSeconds"]}
    checked = process_config(dagster_instance_config_schema(), {"run_monitoring": rendered})
    assert checked.success, checked.errors
    assert rendered["enabled"] is True and rendered["max_resume_run_attempts"] >= 1  # a lost run pod is resumed, then failed
    assert rendered["start_timeout_seconds"] > 0 and rendered["cancel_timeout_seconds"] > 0
    assert 0 < rendered["free_slots_after_run_end_seconds"] <= 300 and rendered["poll_interval_seconds"] <= 120
    # resume attempts need a launcher that can resume a run and check its worker's health (Dagster refuses them else)
    launcher = K8sRunLauncher.__new__(K8sRunLauncher)  # the properties need no cluster
    assert launcher.supports_check_run_worker_health and launcher.supports_resume_run
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
