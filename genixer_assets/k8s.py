"""Kubernetes settings of the asset graph (dagster-k8s; `deploy/` holds the image and the Helm values).

What every step pod asks for, and the executor choice: with `GENIXER_EXECUTOR=k8s` the definitions use
`k8s_job_executor`, so each asset step of a run is its own Kubernetes Job (and, with one run per corpus
shard, each shard's steps are their own pods). Unset, the definitions keep Dagster's default executor
(multiprocess, in-process under `materialize`). dagster_k8s is imported only when the k8s executor is
asked for, so the plain install does not need the `k8s` extra.

How a step pod's resources are made (dagster_k8s deep-merges these, later wins): the code location's
container context (Helm user deployment, `includeConfigInLaunchedRuns`) -> the executor's
`step_k8s_config` below (STEP_RESOURCES, every step) -> the step's own `dagster-k8s/config` op tag
(GPU_RESOURCES on the model steps: every asset with `**GPU`).
"""

import os

# Every step that is not a model step: pandas / parquet tables, image decoding and hashing of corpus shards,
# streaming JSON readers (LLaVA's 665K-conversation mix is about 1 GB of JSON), templating, exports, metrics.
# Mostly one busy thread plus pyarrow's readers and image decoding: 2 CPUs. The paper-scale tables (hundreds of
# thousands of samples with their turns in a DataFrame, plus the copy pandas makes on a merge) fit in 8 Gi; the
# limit of 16 Gi leaves headroom before the OOM killer. No CPU limit: a limit only throttles.
STEP_RESOURCES = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}

# Model steps (base / generator fine-tunes, generation, judge and region-CLIP scoring, retraining, benchmarks):
# one 24 GB GPU each (README "Memory per role": LLaVA-1.5-7B LoRA r16 training ~19 GB, Fuyu-8B scoring ~21 GB).
# Host side, the bf16 weights pass through CPU memory on load (14.1 GB for the 7B, 18.8 GB for Fuyu-8B), and the
# batches, tokenizer and image preprocessing live there too: 48 Gi requested is ~2.5x the largest model. 8 CPUs
# decode and resize images (336 px CLIP input) and tokenize fast enough to keep one GPU busy at batch 16. This
# fits a 16 vCPU / 64 GiB node with one 24 GB GPU (its allocatable memory is ~57-60 GiB, hence the 56 Gi limit).
# Extended resources (nvidia.com/gpu) must have requests == limits.
GPU_RESOURCES = {"requests": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"},
                 "limits": {"memory": "56Gi", "nvidia.com/gpu": "1"}}
# GPU node pools are commonly tainted so that only GPU pods land there (GKE and the NVIDIA GPU operator use this key).
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

# `**GPU` on every model asset: the `gpu` concurrency pool (dagster.yaml locally, Helm `concurrency.pools` on a
# cluster), the kinds shown in the UI, and the step pod's GPU request for dagster-k8s.
GPU = {"pool": "gpu", "kinds": {"pytorch", "huggingface"}, "op_tags": {"dagster-k8s/config": {
    "container_config": {"resources": GPU_RESOURCES},
    "pod_spec_config": {"tolerations": GPU_TOLERATIONS}}}}

# k8s_job_executor config: the defaults of every step pod (a step's `dagster-k8s/config` tag is merged on top).
# Image, namespace, env, volumes (the /data PVC) come from the Helm user deployment and the run launcher.
K8S_EXECUTOR_CONFIG = {"step_k8s_config": {"container_config": {"resources": STEP_RESOURCES}}}

EXECUTOR_ENV = "GENIXER_EXECUTOR"


def executor_from_env():
    """`k8s_job_executor` with K8S_EXECUTOR_CONFIG as its defaults when GENIXER_EXECUTOR=k8s; None (Dagster's default
    executor) when it is unset, empty or `default`."""
    choice = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if choice in ("", "default"):
        return None
    if choice == "in_process":  # every step in the run's own process (`make demo`: one process, models loaded once per step)
        import dagster as dg

        return dg.in_process_executor
    if choice != "k8s":
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}: expected 'k8s', 'in_process' or unset (Dagster's default executor)")
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as e:
        raise ImportError(f"{EXECUTOR_ENV}=k8s needs dagster-k8s: pip install -e '.[k8s]'") from e
    # The executor keeps its whole config schema: a run's `execution.config` (Launchpad) is merged over these
    # defaults, e.g. `per_step_k8s_config: {genixer_l: {container_config: {resources: {requests: {memory: 64Gi}}}}}`.
    return k8s_job_executor.configured(lambda cfg: _deep_merge(K8S_EXECUTOR_CONFIG, cfg),
                                       config_schema=k8s_job_executor.config_schema.as_field().config_type)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
