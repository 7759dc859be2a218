"""Checkpoint and resume: every ``checkpoint_every`` steps the model, optimizer, scheduler, step, losses and RNG
states go to ``out_dir/checkpoint`` (written by the main process), and a call resumes from there only if the
checkpoint was made by the same run (:func:`run_id`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors

from genixer.training.config import TrainConfig, TrainResult

log = logging.getLogger(__name__)


def run_id(cfg: TrainConfig, records: list[dict], probs: np.ndarray | None, adapter, model, plan=None) -> str:
    """What a checkpoint must match to be resumed: the config (but how far this call goes and how often it logs),
    the records and sampling weights (or the batch plan), the adapter and the model's size."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("stop_after", "log_every")}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for r in records:  # one record at a time: no string of the whole set in memory
        h.update(json.dumps(r, sort_keys=True, default=str).encode() + b"\n")
    h.update(b"" if probs is None else np.ascontiguousarray(probs, dtype=np.float64).tobytes())
    if plan is not None:
        h.update(json.dumps(dataclasses.asdict(plan)).encode())
    h.update(f"{type(adapter).__name__}:{sum(p.numel() for p in model.parameters())}".encode())
    return h.hexdigest()


def save_checkpoint(accelerator, ckpt: Path, model, optimizer, scheduler, step, rng, result: TrainResult,
                    run_id: str) -> None:
    # Every rank holds the same weights, optimizer and sampler state: the main process writes them, and no
    # rank goes on (to finish, or to read a checkpoint) before the write is complete.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_checkpoint(ckpt, model, optimizer, scheduler, step, rng, result, run_id)
    accelerator.wait_for_everyone()


def _write_checkpoint(ckpt: Path, model, optimizer, scheduler, step, rng, result: TrainResult, run_id: str) -> None:
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_safetensors(model, str(tmp / "model.safetensors"))
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "sampler_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "losses": result.losses,
        "tokens_seen": result.tokens_seen,
        "group_curves": result.group_curves,
        "run_id": run_id,
    }
    torch.save(state, tmp / "trainer_state.pt")
    # Replace atomically-ish: a crash mid-save leaves the previous checkpoint intact.
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def _load_checkpoint(ckpt: Path, state: dict, model, optimizer, scheduler, rng, result: TrainResult) -> int:
    load_safetensors(model, str(ckpt / "model.safetensors"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng.bit_generator.state = state["sampler_rng"]
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    result.losses = list(state["losses"])
    result.tokens_seen = state["tokens_seen"]
    result.group_curves = dict(state.get("group_curves", {}))
    return state["step"]


def resume(accelerator, ckpt: Path, run_id: str, model, optimizer, scheduler, rng, result: TrainResult, out_dir: Path) -> int:
    """The step to start from: the checkpoint's when ``ckpt`` was made by this run (model, optimizer, scheduler, RNGs and
    the result so far restored; ``result.resumed_from`` set), else 0 (a checkpoint of another run is deleted)."""
    step = 0
    if (ckpt / "trainer_state.pt").is_file():
        # Tensors and plain Python state only (the numpy RNG state is a dict of ints): nothing in it is run.
        state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
        if state.get("run_id") == run_id:
            step = result.resumed_from = _load_checkpoint(ckpt, state, model, optimizer, scheduler, rng, result)
            log.info("%s: resumed from the checkpoint of step %d", out_dir, step)
        else:
            log.warning("%s: not resumed, made by another run (its config or data differ); starting afresh", ckpt)
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                shutil.rmtree(ckpt, ignore_errors=True)
    return step
