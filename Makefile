# DAGSTER_HOME is the repo root: dagster.yaml here is the instance, its history in history/, schedules/ and storage/
# beside it (Dagster's defaults: the instance's storage follows DAGSTER_HOME).
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
# The instance: sqlite under the repo root (default) or DAGSTER_INSTANCE=postgres: deploy/postgres/dagster.yaml, the
# server from DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB (deploy/postgres.md).
DAGSTER_INSTANCE ?= sqlite
ifeq ($(DAGSTER_INSTANCE),postgres)
export DAGSTER_HOME := $(ROOT)/deploy/postgres
else ifeq ($(DAGSTER_INSTANCE),sqlite)
export DAGSTER_HOME := $(ROOT)
else
$(error DAGSTER_INSTANCE must be sqlite or postgres, not '$(DAGSTER_INSTANCE)')
endif
# The gpu pool's limit (concurrent model steps): the node's GPUs, at least 1 (the steps run on CPU without one).
GENIXER_GPUS ?= $(shell n=$$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); [ "$${n:-0}" -gt 0 ] && echo $$n || echo 1)
export GENIXER_DATA_DIR ?= $(ROOT)/data
export GENIXER_PRESET ?= demo
# torch and torchvision are installed as a matched pair first (a mismatched torchvision fails
# to import); override TORCH_SPEC for another platform, e.g. a CUDA index.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo loop test dev gpu-pool bench bench-train bench-sources clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

demo: install
	$(PY) -m genixer_assets.demo

# The closed loop after the graph (README "The closed loop"): the demo's graph first (reused when it is done), then
# the loop's rounds, each reading the model the round before trained, to loop_report.
loop: demo
	$(PY) -m genixer_assets.loop_run

test: install
	GENIXER_PRESET=smoke $(PY) -m pytest

# Writes the gpu pool's limit into the instance (Dagster keeps a pool's limit in its storage, not in dagster.yaml).
gpu-pool: install
	@[ "$(GENIXER_GPUS)" -ge 1 ] 2>/dev/null || { echo "GENIXER_GPUS must be a whole number >= 1, got '$(GENIXER_GPUS)'"; exit 1; }
	$(VENV)/bin/dagster instance concurrency set gpu $(GENIXER_GPUS)

# The corpus is planned first (world_scenes + corpus_shards, only while the instance has no shard), so that
# "Materialize all" in the UI is one backfill over every shard (README "Materialize all").
dev: install gpu-pool
	$(PY) -m genixer_assets.backfill plan
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

bench: install
	$(PY) -m bench.run

bench-train: install
	$(PY) -m bench.train

bench-sources: install
	$(PY) -m bench.sources

clean:
	rm -rf data $(DAGSTER_HOME)/history $(DAGSTER_HOME)/schedules $(DAGSTER_HOME)/storage
