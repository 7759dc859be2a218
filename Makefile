# DAGSTER_HOME is the repo root: dagster.yaml here is the instance, history lives in .dagster/.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(ROOT)
export GENIXER_DATA_DIR ?= $(ROOT)/data
export GENIXER_PRESET ?= demo
# torch and torchvision are installed as a matched pair first (a mismatched torchvision fails
# to import); override TORCH_SPEC for another platform, e.g. a CUDA index.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test dev bench bench-train bench-sources clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	@mkdir -p .dagster
	@touch $@

demo: install
	$(PY) -m genixer_assets.demo

test: install
	GENIXER_PRESET=smoke $(PY) -m pytest

dev: install
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

bench: install
	$(PY) bench/run.py

bench-train: install
	$(PY) bench/train.py

bench-sources: install
	$(PY) bench/sources.py

clean:
	rm -rf data .dagster/storage .dagster/history .dagster/schedules
