"""The one training loop (:func:`train`): model set-up (frozen tower, gradient checkpointing, LoRA), accelerate,
AdamW with a cosine warmup schedule, the steps (micro-batches drawn, losses scaled and back-propagated, ranks
reduced), group curves, checkpoints and the final save."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import get_cosine_schedule_with_warmup

from genixer.progress import progress
from genixer.training.checkpoint import resume, run_id, save_checkpoint
from genixer.training.config import LoraSpec, TrainAdapter, TrainConfig, TrainResult
from genixer.training.sampling import PairedPlan, grouped_batch, sampling_probs
from genixer.training.sft import SFTAdapter

log = logging.getLogger(__name__)


def _apply_lora(model, spec: LoraSpec):
    targets = spec.target_modules or sorted(
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".language_model." in f".{name}."
    )
    cfg = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets)
    return get_peft_model(model, cfg)


def _freeze_vision_tower(model) -> None:
    for name, param in model.named_parameters():
        if "vision_tower" in name:
            param.requires_grad_(False)


def _gradient_checkpointing(model) -> None:
    # Non-reentrant checkpointing back-propagates into LoRA adapters behind frozen embeddings without
    # enable_input_require_grads, and works under DDP with unused parameters.
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24 (the old name is deprecated)
        model.activation_checkpointing_enable({"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):  # older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "set_grad_checkpointing"):  # open_clip
        model.set_grad_checkpointing(True)
    else:
        raise ValueError(f"TrainConfig.gradient_checkpointing: {type(model).__name__} does not support it")


def _accelerator(mixed_precision: str) -> Accelerator:
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"TrainConfig.mixed_precision must be 'no', 'bf16' or 'fp16', not {mixed_precision!r}")
    # accelerate keeps one process-wide AcceleratorState and refuses a different mixed_precision later,
    # but one pipeline process may train the generator in bf16 and then the judge in fp32. Clearing the
    # AcceleratorState (not the PartialState holding device / process-group info) lets it be rebuilt.
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    # Unused parameters (LLaVA's vision tower past the selected feature layer) would stall DDP otherwise.
    accelerator = Accelerator(mixed_precision=mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if mixed_precision == "fp16" and accelerator.device.type == "cpu":
        raise ValueError("TrainConfig.mixed_precision='fp16' needs a GPU: on CPU accelerate neither autocasts nor "
                         "scales gradients (the run would silently be fp32); use 'bf16' or 'no' on CPU")
    world = os.environ.get("WORLD_SIZE")
    if world is not None and int(world) != accelerator.num_processes:
        raise RuntimeError(f"launched as {world} processes but accelerate sees {accelerator.num_processes}: each "
                           "would train alone on the same batches (without a GPU, launch with ACCELERATE_USE_CPU=1)")
    return accelerator


def _steps_for(cfg: TrainConfig, n_records: int, n_processes: int = 1) -> int:
    if cfg.steps is not None:
        return cfg.steps
    if cfg.epochs is None:
        raise ValueError("TrainConfig needs steps or epochs")
    return max(1, math.ceil(cfg.epochs * n_records / (cfg.batch_size * n_processes * cfg.grad_accum)))


def _check_plan(plan: PairedPlan, cfg: TrainConfig, n_records: int, sample_weights) -> None:
    if len(plan.base_probs) + plan.n_added != n_records:
        raise ValueError(f"the plan covers {len(plan.base_probs)} base + {plan.n_added} added records, not the {n_records} given")
    if cfg.steps is None or cfg.steps * cfg.grad_accum != plan.batches:
        raise ValueError(f"cfg.steps x grad_accum must be the plan's {plan.batches} batches, got {cfg.steps} x {cfg.grad_accum}")
    if sample_weights is not None or cfg.group_by_length:
        raise ValueError("a plan draws its own batches: no sample_weights and no group_by_length with it")


def _close_window(curves: dict, window: list, step: int) -> None:
    by: dict[str, list[float]] = {}
    for g, v in window:
        by.setdefault(g, []).append(v)
    for g, vals in by.items():
        curves.setdefault(g, []).append((step, sum(vals) / len(vals)))


def _trainable(model, cfg: TrainConfig):
    """The model set up for training as ``cfg`` says (vision tower frozen, gradient checkpointing, LoRA applied), in
    train mode, and its parameters that require grad."""
    if cfg.freeze_vision_tower:
        _freeze_vision_tower(model)
    if cfg.gradient_checkpointing:
        _gradient_checkpointing(model)
    if cfg.lora is not None:
        model = _apply_lora(model, cfg.lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params


@dataclass
class _Run:
    """One call's training state, shared by the loop's parts."""

    cfg: TrainConfig
    accelerator: Accelerator
    adapter: TrainAdapter
    records: list[dict]
    model: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    params: list
    probs: np.ndarray | None
    rng: np.random.Generator
    result: TrainResult
    total_steps: int
    ckpt: Path
    run_id: str = ""
    plan: PairedPlan | None = None  # the batches, given (a paired retraining arm); else drawn here
    lengths: np.ndarray | None = None  # record lengths when batches are grouped by length
    groups: list[str] | None = None  # each record's group (cfg.group_key) for the group curves
    window: list[tuple[str, float]] = field(default_factory=list)  # (group, row loss) since the last curve point


def _prepare_adapter(run: _Run) -> None:
    """The adapter prepared for the records (truncation counted into the result), and the record lengths (grouped
    batches) and groups (curves) the loop needs."""
    cfg, adapter, records, probs, result = run.cfg, run.adapter, run.records, run.probs, run.result
    if cfg.group_by_length and not hasattr(type(adapter), "lengths"):
        raise ValueError(f"TrainConfig.group_by_length needs an adapter with record lengths; {type(adapter).__name__} has none")
    result.n_truncated = adapter.prepare(records, cfg)
    lengths = adapter.lengths if cfg.group_by_length else None
    if lengths is not None and hasattr(adapter, "grouped"):  # the adapter's loss may depend on how batches are drawn
        adapter.grouped(probs if probs is not None else np.full(len(records), 1 / len(records)), cfg.batch_size)
    result.truncated_by_task = dict(getattr(adapter, "truncated_by_task", None) or {})
    result.n_tokenized_alone = int(getattr(adapter, "n_tokenized_alone", 0) or 0)
    run.lengths = lengths
    run.groups = [str(r.get(cfg.group_key)) for r in records] if cfg.group_key and cfg.group_key in records[0] else None


def _draw_micro_batches(run: _Run, step: int) -> list[tuple[dict[str, torch.Tensor], list[int]]]:
    """The step's ``grad_accum`` micro-batches of this rank, each with the record indices it holds."""
    cfg, n_proc, rank = run.cfg, run.accelerator.num_processes, run.accelerator.process_index
    micro_batches = []
    for micro in range(cfg.grad_accum):
        # The global batch from the shared RNG, this rank's slice of it (one process: exactly batch_size).
        if run.plan is not None:
            idx = run.plan.batch(step * cfg.grad_accum + micro, cfg.batch_size * n_proc)
        elif run.lengths is None:
            idx = run.rng.choice(len(run.records), size=cfg.batch_size * n_proc, replace=True, p=run.probs).tolist()
        else:
            idx = grouped_batch(cfg, run.probs, run.lengths, step * cfg.grad_accum + micro, n_proc)
        micro_batches.append(run.adapter.batch(run.records, idx[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]))
    return micro_batches


def _loss_scale(run: _Run, micro_batches: list) -> float:
    """What each micro-batch's loss is multiplied by; an adapter counting items gets the step's count (``num_items``)."""
    adapter, accelerator, n_proc = run.adapter, run.accelerator, run.accelerator.num_processes
    scale = 1 / run.cfg.grad_accum  # an adapter without items: the mean of the micro-batches' means
    if hasattr(adapter, "items"):
        # The step's items over its micro-batches and every rank (T): each rank's summed loss divided by T / N,
        # averaged by DDP over the N ranks, is the global batch's summed loss over T (as in transformers' Trainer).
        n_items = sum(adapter.items(b) for b, _ in micro_batches)
        if n_proc > 1:
            total = torch.tensor(n_items, dtype=torch.float64, device=accelerator.device)
            n_items = accelerator.reduce(total, "sum").item()
        adapter.num_items, scale = max(n_items, 1.0) / n_proc, 1.0
    return scale


def _train_step(run: _Run, step: int) -> float:
    """One optimizer step (micro-batches drawn, their scaled losses back-propagated, the ranks' losses and tokens
    reduced, gradients clipped); returns the step's loss."""
    cfg, accelerator, adapter, model = run.cfg, run.accelerator, run.adapter, run.model
    n_proc = accelerator.num_processes
    step_loss, step_tokens = 0.0, 0
    micro_batches = _draw_micro_batches(run, step)
    scale = _loss_scale(run, micro_batches)
    for micro, (batch, rows) in enumerate(micro_batches):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        # DDP averages gradients over ranks once per optimizer step, on the last micro-batch.
        with accelerator.no_sync(model) if micro < cfg.grad_accum - 1 else contextlib.nullcontext():
            with accelerator.autocast():
                batch_loss, row_losses = adapter.loss(model, batch)
                loss = batch_loss * scale
            accelerator.backward(loss)
        if run.groups is not None and row_losses is not None:
            run.window.extend(zip((run.groups[i] for i in rows), row_losses))
        step_loss += loss.item()
        step_tokens += adapter.tokens(batch)
    if n_proc > 1:  # the ranks' step losses averaged (as DDP does), tokens summed: one result on every rank
        both = torch.tensor([step_loss, step_tokens], dtype=torch.float64, device=accelerator.device)
        both = accelerator.reduce(both, "sum")
        step_loss, step_tokens = both[0].item() / n_proc, int(both[1].item())
    run.result.tokens_seen += step_tokens
    if cfg.max_grad_norm:
        accelerator.clip_grad_norm_(run.params, cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return step_loss


def _after_step(run: _Run, step: int, step_loss: float, last: int, bar, saved: int | None) -> int | None:
    """The step's loss recorded, the progress bar, group curves, log line and checkpoint; returns the step of the
    checkpoint on disk."""
    cfg, accelerator, result = run.cfg, run.accelerator, run.result
    result.losses.append(step_loss)
    if bar is not None:
        bar.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
        bar.update(1)
    if run.groups is not None and (step % cfg.curve_every == 0 or step == last):
        _close_window(result.group_curves, gather_object(run.window) if accelerator.num_processes > 1 else run.window, step)
        run.window.clear()
    if cfg.log_every and step % cfg.log_every == 0 and accelerator.is_main_process:
        log.info("step %d/%d loss %.4f lr %.2e", step, run.total_steps, step_loss, run.scheduler.get_last_lr()[0])
    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < run.total_steps:
        unwrapped = accelerator.unwrap_model(run.model)
        save_checkpoint(accelerator, run.ckpt, unwrapped, run.optimizer, run.scheduler, step, run.rng, result, run.run_id)
        saved = step
    return saved


def _finish(run: _Run, out_dir: Path, step: int, saved: int | None, t0: float, tokens_before: int) -> TrainResult:
    """The result's totals; then a checkpoint to resume from (stopped early on purpose) or the final model saved
    (LoRA merged) and the checkpoint deleted."""
    accelerator, result = run.accelerator, run.result
    result.steps = step
    result.final_loss = result.losses[-1] if result.losses else float("nan")
    result.wall_s = time.perf_counter() - t0
    result.tokens_per_s = (result.tokens_seen - tokens_before) / result.wall_s if result.wall_s > 0 else 0.0
    model = accelerator.unwrap_model(run.model)
    if step < run.total_steps:  # interrupted on purpose (stop_after): make sure the run can resume from here
        if saved != step:
            save_checkpoint(accelerator, run.ckpt, model, run.optimizer, run.scheduler, step, run.rng, result, run.run_id)
        return result
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.eval()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run.adapter.save(model, out_dir)
        shutil.rmtree(run.ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()  # no rank returns before the final model is on disk
    return result


def train(
    model,
    processor,
    records: list[dict],
    cfg: TrainConfig,
    out_dir: str | Path,
    sample_weights: list[float] | np.ndarray | None = None,
    adapter: TrainAdapter | None = None,
    plan: PairedPlan | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg`` optimizer steps on ``records``; the final model goes to ``out_dir``.

    ``adapter`` defines a batch, its loss and the saving (default: ``SFTAdapter(processor, model)``);
    ``processor`` is only used to build the default adapter. ``plan`` gives every batch instead of drawing them
    (records = its base mix, then its added rows; ``cfg.steps`` must be its length): the paired retraining arms.
    """
    if adapter is None:
        adapter = SFTAdapter(processor, model)
    if not records:
        raise ValueError("train() needs at least one record")
    if plan is not None:
        _check_plan(plan, cfg, len(records), sample_weights)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    set_seed(cfg.seed)
    accelerator = _accelerator(cfg.mixed_precision)
    model, params = _trainable(model, cfg)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = _steps_for(cfg, len(records), accelerator.num_processes)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps)
    probs = sampling_probs(sample_weights, len(records))
    result = TrainResult(
        n_params=sum(p.numel() for p in model.parameters()), n_trainable=sum(p.numel() for p in params)
    )
    run = _Run(cfg, accelerator, adapter, records, model, optimizer, scheduler, params, probs,
               np.random.default_rng(cfg.seed), result, total_steps, out_dir / "checkpoint")
    run.plan = plan
    run.run_id = run_id(cfg, records, probs, adapter, model, plan)
    step = resume(accelerator, run.ckpt, run.run_id, model, optimizer, scheduler, run.rng, result, out_dir)
    _prepare_adapter(run)
    run.model, run.optimizer = accelerator.prepare(model, optimizer)
    tokens_before = result.tokens_seen  # throughput counts only this call's work
    last = min(total_steps, cfg.stop_after) if cfg.stop_after is not None else total_steps
    saved = step if step else None  # the step of the checkpoint on disk (a resumed run's)
    bar = progress(total=last, desc=f"train {out_dir.name}", unit="step") if accelerator.is_main_process else None
    if bar is not None and step:
        bar.update(step)  # resumed
    while step < last:
        step_loss = _train_step(run, step)
        step += 1
        saved = _after_step(run, step, step_loss, last, bar, saved)
    if bar is not None:
        bar.close()
    return _finish(run, out_dir, step, saved, t0, tokens_before)
