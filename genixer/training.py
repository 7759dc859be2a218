"""One supervised fine-tuning loop for every model (LLaVA generator, Fuyu judge, full or LoRA).

Records are ``{"image_path", "prompt", "target"}``. A training sequence is the processor's encoding of
(image, prompt) (through the processor's chat template when it has one) followed by the target tokens, as the
tokenizer writes the target right after the prompt (``genixer.models.inputs.split_prompt_answer``), and EOS;
the loss covers only target + EOS. ``TrainConfig.max_length`` (default: the model's
``max_position_embeddings``) bounds a sequence: a record whose prompt leaves no room for one target token and
EOS is an error naming it; a longer target is cut to fit and counted (``TrainResult.truncated_by_task``).
Batches are drawn with replacement (optionally weighted), one draw per micro-batch, so mixing ratios are
expressed as sampling weights and a run is defined by its number of optimizer steps.

Large models and several processes, all through accelerate: ``mixed_precision`` "bf16" (autocast, also on
CPU) or "fp16" (autocast + grad scaler, GPU only: an error on CPU, where accelerate would silently run fp32);
``gradient_checkpointing`` (non-reentrant, so it works with frozen towers, LoRA and DDP); ``grad_accum``
micro-batches per optimizer step (DDP all-reduces on the last one only). Under ``accelerate launch`` with N
processes, ``batch_size`` is per process: every rank draws the same global batch of ``batch_size * N``
indices from one shared sampler RNG (same seed) and takes its own slice, so ranks see different records,
N processes at batch B follow one process at batch N*B, and one process draws exactly as it always did.
A step's SFT loss is a mean over its global batch (every micro-batch on every process), whatever the answers'
lengths: the step's target tokens (or records, ``loss_per="sample"``) are counted on every process and summed
across them (transformers' Trainer's ``num_items_in_batch``), each micro-batch's summed loss is divided by that
count over N, and DDP's average of the processes' gradients is then the gradient of the global mean. So N
processes at batch B, one at batch N*B and one at batch B with N micro-batches train alike. The logged loss
is that global mean and ``tokens_seen`` the sum over ranks, so every rank returns the same TrainResult; only
the main process writes checkpoints and the final model, every rank resumes from them.
Load the model on ``accelerate.PartialState().device`` in its training dtype before calling ``train``.

Resumption: every ``checkpoint_every`` optimizer steps, model weights (safetensors), optimizer, scheduler,
step, loss history and RNG states (the sampler's is the one all ranks share) go to ``out_dir/checkpoint``;
``train`` resumes from there if present and made by the same run: the checkpoint records a hash of the
TrainConfig (but ``stop_after`` and ``log_every``), the records, the sampling weights, the adapter and the model's
size, and a checkpoint of another run (a config or the data changed since it was written) is deleted with a
warning and training starts afresh. ``TrainResult.resumed_from`` says from which step a call resumed.
After the final ``save_model(out_dir)`` the checkpoint is deleted: the final model supersedes it, and a
stale checkpoint would make a later run in the same directory silently "resume" a finished one.

What one batch is, its loss and how the final model is saved belong to an *adapter* (``train(..., adapter=)``):
``SFTAdapter`` (the default) is the supervised fine-tuning described above; ``genixer.region_clip.ClipAdapter``
trains a contrastive region CLIP through the same loop. Everything else (sampling, AdamW, cosine warmup,
accumulation, accelerate, seeds, checkpoint + resume, group curves, TrainResult) is shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, gather_object, set_seed
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_model as load_safetensors
from safetensors.torch import save_model as save_safetensors
from transformers import get_cosine_schedule_with_warmup

from genixer.images import image_size
from genixer.models.checkpoint import save_model
from genixer.progress import progress
from genixer.models.inputs import (
    build_batch,
    computes_own_positions,
    encode_prompt_batch,
    encode_prompts,
    model_max_length,
    open_images,
    split_prompt_answer,
)

log = logging.getLogger(__name__)


@dataclass
class LoraSpec:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # None: every Linear layer inside the language model (attention + MLP), nothing in vision/projector.
    target_modules: list[str] | None = None


@dataclass
class TrainConfig:
    steps: int | None = 100  # optimizer steps; if None, derived from epochs
    epochs: float | None = None
    batch_size: int = 8  # per process: N processes draw N * batch_size records per micro-batch
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    seed: int = 0
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (fp16 needs a GPU)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute
    lora: LoraSpec | None = None
    freeze_vision_tower: bool = False
    checkpoint_every: int = 0  # 0: never
    max_length: int | None = None  # tokens per sequence; None: the model's max_position_embeddings
    # "token": the model's own loss, the mean over every target token of the step's global batch (all micro-batches,
    # all processes; a record weighs as many tokens as it has); "sample": the mean over each record's target
    # tokens, then over the step's records (a one-word answer weighs as much as a 60-token reasoning chain)
    loss_per: str = "token"
    # 0: every batch is drawn at random. k > 0: k batches are drawn at once, sorted by length and cut into k
    # batches taken in a random order (trl's and the HF Trainer's group_by_length): less padding per batch. With
    # loss_per="token" a batch's summed loss is then divided by a random batch's mean count of target tokens
    group_by_length: int = 0
    log_every: int = 0  # 0: silent
    group_key: str | None = "task"  # record field whose groups get their own learning curve (None: off)
    curve_every: int = 25  # steps per point of the group curves
    stop_after: int | None = None  # end the call after this step (simulates an interruption)


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    final_loss: float = float("nan")
    steps: int = 0
    tokens_seen: int = 0  # non-padding tokens fed to the model (image placeholders + prompt + target)
    tokens_per_s: float = 0.0
    wall_s: float = 0.0
    n_truncated: int = 0  # records whose target was cut to fit max_length (all tasks)
    truncated_by_task: dict[str, int] = field(default_factory=dict)  # the same count per record "task"
    # records whose answer the tokenizer would have merged into the end of its prompt (e.g. ':▁Yes'): their
    # answers were tokenized on their own (genixer.models.inputs.split_prompt_answer)
    n_tokenized_alone: int = 0
    resumed_from: int = 0  # the step of the checkpoint this call resumed from (0: it started afresh)
    n_params: int = 0
    n_trainable: int = 0
    # per-group learning curves: group -> [(step, mean per-sample loss over the window)]
    group_curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


class RecordTooLongError(ValueError):
    """A training record whose prompt leaves no room in max_length for one target token and EOS."""


@dataclass
class _Encoded:
    prompt_lens: list[int]  # length of the processor's encoding of (image, prompt)
    target_ids: list[list[int]]  # target + EOS, already truncated to fit max_length
    n_truncated: int
    truncated_by_task: dict[str, int] = field(default_factory=dict)
    own_positions: bool = False  # the model computes its own position ids: batches carry none
    n_tokenized_alone: int = 0  # answers tokenized apart from their prompt (the tokenizer merges across it)


def _record_name(r: dict, i: int) -> str:
    ids = ", ".join(f"{k}={r[k]!r}" for k in ("record_id", "sample_id") if r.get(k) is not None)
    return f"record {i}" + (f" ({ids})" if ids else "")


def _prompt_lengths(processor, records: list[dict], text_ids: list[list[int]] | None = None) -> list[int]:
    """Each record's encoded prompt length without running the processor on every image: the
    prompt text (``prompt_text``: chat template or image token + prompt) through the tokenizer, plus the
    image placeholders and special tokens the processor adds, measured by one real processor call per
    distinct image size (the only thing they depend on). ``text_ids``: the prompt texts' ids, if known."""
    if text_ids is None:
        text_ids = split_prompt_answer(processor, [r["prompt"] for r in records], [""] * len(records))[0]
    extra: dict[tuple[int, int], int] = {}
    # Each image's size read once (records share images; reading EXIF orientation costs a decode for PNG).
    sizes = {p: image_size(p, verify=False) for p in dict.fromkeys(r["image_path"] for r in records)}
    out = []
    for r, t in zip(records, text_ids):
        size = sizes[r["image_path"]]
        if size not in extra:
            ids, _ = encode_prompts(processor, open_images([r["image_path"]]), [r["prompt"]])
            extra[size] = len(ids[0]) - len(t)
        out.append(len(t) + extra[size])
    return out


def _encode_records(processor, records: list[dict], max_length: int, own_positions: bool = False) -> _Encoded:
    """Tokenize every target once (as it follows its prompt) and measure every prompt, so truncation is
    known (and counted, per task) up front; the prompts themselves are encoded with their images when a
    batch is drawn. A prompt that leaves no room for one target token and EOS raises RecordTooLongError."""
    tokenizer = processor.tokenizer
    names = [_record_name(r, i) for i, r in enumerate(records)]
    text_ids, targets, alone = split_prompt_answer(
        processor, [r["prompt"] for r in records], [r["target"] for r in records]
    )
    prompt_lens = _prompt_lengths(processor, records, text_ids)
    target_ids, n_truncated, by_task = [], 0, {}
    for i, (r, n_prompt, t) in enumerate(zip(records, prompt_lens, targets)):
        t_ids = list(t) + [tokenizer.eos_token_id]
        room = max_length - n_prompt
        need = min(len(t_ids), 2)  # one target token + EOS (an empty target: EOS alone)
        if room < need:
            raise RecordTooLongError(
                f"{names[i]}: image + prompt encode to {n_prompt} tokens, max_length is {max_length}, leaving "
                f"{max(room, 0)} for a target of {len(t_ids)} tokens (with EOS); at least {need} are needed. "
                "Shorten the prompt or raise TrainConfig.max_length (at most the model's max_position_embeddings)"
            )
        if len(t_ids) > room:
            t_ids = t_ids[:room]  # image + prompt whole, the target cut (counted)
            n_truncated += 1
            task = str(r.get("task"))
            by_task[task] = by_task.get(task, 0) + 1
        target_ids.append(t_ids)
    return _Encoded(prompt_lens, target_ids, n_truncated, dict(sorted(by_task.items())), own_positions, len(alone))


def collate(processor, records: list[dict], enc: _Encoded, idx: list[int]) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on image placeholders, BOS, prompt and padding. Per-token keys of
    the processor (``mm_token_type_ids``) are padded along; no position_ids if the model computes its own."""
    prompts = encode_prompt_batch(
        processor, open_images([records[i]["image_path"] for i in idx]), [records[i]["prompt"] for i in idx]
    )
    for i, p in zip(idx, prompts.ids):
        if len(p) != enc.prompt_lens[i]:
            raise RuntimeError(f"record {i}: prompt encodes to {len(p)} tokens, measured {enc.prompt_lens[i]} "
                               "(the processor's image tokens vary with more than the image size)")
    seqs = [p + enc.target_ids[i] for i, p in zip(idx, prompts.ids)]
    labels = [[-100] * len(p) + enc.target_ids[i] for i, p in zip(idx, prompts.ids)]
    return build_batch(prompts, seqs, processor.tokenizer.pad_token_id, side="right", labels=labels,
                       own_positions=enc.own_positions)


class TrainAdapter(Protocol):
    """The per-batch work of one kind of training; the loop in :func:`train` does everything else.

    ``prepare`` runs once per call (after any checkpoint is restored) and returns how many records were
    truncated (an adapter may also expose ``truncated_by_task``, copied to the TrainResult); ``batch`` turns
    the drawn record indices into tensors (the loop moves them to the device) and returns the indices the
    batch actually holds, in row order; ``loss`` returns the mean loss of the batch
    (a tensor with grad) and, for the per-group curves, each row's loss (or None); ``tokens`` counts the
    batch's non-padding tokens for ``TrainResult.tokens_seen``; ``save`` writes the final model.

    An adapter whose loss is a mean over items it can count may also have ``items(batch)`` (SFT: the batch's
    target tokens, or its records with ``loss_per="sample"``) and a ``num_items`` attribute: the loop then sums
    the items of each step's micro-batches over every process, sets ``num_items`` to that sum over the number
    of processes, and ``loss`` returns the batch's summed loss divided by ``num_items``. Without ``items``,
    a step's loss is the mean of its micro-batches' losses, averaged over the processes by DDP.
    """

    def prepare(self, records: list[dict], cfg: "TrainConfig") -> int: ...

    def batch(self, records: list[dict], idx: list[int]) -> tuple[dict[str, torch.Tensor], list[int]]: ...

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[float] | None]: ...

    def tokens(self, batch: dict[str, torch.Tensor]) -> int: ...

    def save(self, model, out_dir: Path) -> None: ...


class SFTAdapter:
    """Supervised fine-tuning of an image-text-to-text model: loss on target + EOS tokens only.

    ``model`` (as :func:`train` passes it) gives the default max_length (its max_position_embeddings) and
    whether batches carry position ids (not for models computing their own, e.g. Qwen2-VL's M-RoPE)."""

    def __init__(self, processor, model=None):
        self.processor = processor
        self.model_max_length = model_max_length(model) if model is not None else None
        self.own_positions = computes_own_positions(model)
        self.enc: _Encoded | None = None
        self.loss_per = "token"
        # Set by train() for each step (see TrainAdapter): the batch's summed loss is divided by this (None: its mean)
        self.num_items: float | None = None
        self.grouped_items: float | None = None  # grouped token loss: a random batch's mean count of target tokens

    def prepare(self, records: list[dict], cfg: "TrainConfig") -> int:
        if cfg.loss_per not in ("token", "sample"):
            raise ValueError(f"TrainConfig.loss_per must be 'token' or 'sample', not {cfg.loss_per!r}")
        self.loss_per, self.num_items, self.grouped_items = cfg.loss_per, None, None
        max_length = cfg.max_length if cfg.max_length is not None else self.model_max_length
        if max_length is None:
            raise ValueError("TrainConfig.max_length is None (take it from the model) but the model's config has "
                             "no max_position_embeddings: set TrainConfig.max_length")
        self.enc = _encode_records(self.processor, records, max_length, own_positions=self.own_positions)
        return self.enc.n_truncated

    @property
    def truncated_by_task(self) -> dict[str, int]:
        return dict(self.enc.truncated_by_task) if self.enc is not None else {}

    @property
    def n_tokenized_alone(self) -> int:
        return self.enc.n_tokenized_alone if self.enc is not None else 0

    @property
    def target_lengths(self) -> np.ndarray:
        """Each record's learnt tokens (target + EOS), after prepare."""
        return np.asarray([len(t) for t in self.enc.target_ids])

    @property
    def lengths(self) -> np.ndarray:
        """Each record's sequence length (image placeholders + prompt + target + EOS), after prepare."""
        return np.asarray(self.enc.prompt_lens) + self.target_lengths

    def grouped(self, probs: np.ndarray, batch_size: int) -> None:
        """Batches are grouped by length (records drawn with `probs`): a batch of short answers must not weigh as
        much as a batch of captions, so with the token loss each batch counts (:meth:`items`) the target
        tokens a random batch holds on average, not its own."""
        if self.loss_per == "token":
            self.grouped_items = batch_size * float(probs @ self.target_lengths)

    def items(self, batch: dict[str, torch.Tensor]) -> float:
        """What the loss of ``batch`` is a mean over: its learnt tokens (target + EOS), its records with
        ``loss_per="sample"``, or a random batch's mean token count when batches are grouped by length."""
        learnt = batch["labels"][:, 1:] != -100
        if self.loss_per == "sample":
            return float(learnt.any(1).sum())
        return self.grouped_items if self.grouped_items is not None else float(learnt.sum())

    def batch(self, records: list[dict], idx: list[int]) -> tuple[dict[str, torch.Tensor], list[int]]:
        return collate(self.processor, records, self.enc, idx), idx

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[float] | None]:
        # Logits only where a next token is learnt: the lm_head skips the image and prompt positions before
        # the batch's first target (transformers' logits_to_keep + shift_labels; the same loss).
        shift, keep = target_window(batch["labels"])
        if self.loss_per == "sample":
            out = model(**{k: v for k, v in batch.items() if k != "labels"}, logits_to_keep=keep)
            per = sample_losses(out.logits, shift)
            learnt = per[(shift != -100).any(1)]
            mean = learnt.sum() / self.num_items if self.num_items is not None else learnt.mean()
            return mean, per.detach().tolist()
        extra = {"num_items_in_batch": self.num_items} if self.num_items is not None else {}
        out = model(**batch, logits_to_keep=keep, shift_labels=shift, **extra)  # labels only switch the loss on
        return out.loss, _per_sample_loss(out.logits, shift)

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    def save(self, model, out_dir: Path) -> None:
        save_model(model, self.processor, out_dir)


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


def _run_id(cfg: TrainConfig, records: list[dict], probs: np.ndarray | None, adapter, model) -> str:
    """What a checkpoint must match to be resumed: the config (but how far this call goes and how often it logs),
    the records and sampling weights, the adapter and the model's size."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("stop_after", "log_every")}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for r in records:  # one record at a time: no string of the whole set in memory
        h.update(json.dumps(r, sort_keys=True, default=str).encode() + b"\n")
    h.update(b"" if probs is None else np.ascontiguousarray(probs, dtype=np.float64).tobytes())
    h.update(f"{type(adapter).__name__}:{sum(p.numel() for p in model.parameters())}".encode())
    return h.hexdigest()


def _save_checkpoint(accelerator, ckpt: Path, model, optimizer, scheduler, step, rng, result: TrainResult,
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


def target_window(labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(next-token labels of the last ``keep`` positions, ``keep``): the positions from the batch's first
    learnt next token to the end, so logits before it need not be computed (all of them if none is learnt)."""
    shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    learnt = (shift != -100).any(0).nonzero()
    keep = shift.shape[1] - int(learnt[0]) if len(learnt) else shift.shape[1]
    return shift[:, -keep:].contiguous(), keep


def sample_losses(logits: torch.Tensor, shift_labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss over each sample's target tokens (0 for a sample with none); ``shift_labels``
    are aligned with ``logits`` (position i's label is the token after it)."""
    tok = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), shift_labels, ignore_index=-100, reduction="none")
    return tok.sum(1) / (shift_labels != -100).sum(1).clamp(min=1)


def _per_sample_loss(logits: torch.Tensor, shift_labels: torch.Tensor) -> list[float]:
    """:func:`sample_losses` without a graph, as a list (for per-group curves only)."""
    with torch.no_grad():
        return sample_losses(logits, shift_labels).tolist()


def _close_window(curves: dict, window: list, step: int) -> None:
    by: dict[str, list[float]] = {}
    for g, v in window:
        by.setdefault(g, []).append(v)
    for g, vals in by.items():
        curves.setdefault(g, []).append((step, sum(vals) / len(vals)))


def weighted_pools(pools: list[tuple[str, list[dict], float]]) -> tuple[list[dict], list[float] | None, dict[str, float]]:
    """Records and per-record sampling weights for a mixture of named pools, each drawn at its share
    of the batches (shares of empty pools are reported as 0); the shares must sum to 1. One pool
    alone gets no weights (uniform draws, as for plain records)."""
    shares = {name: (float(share) if recs else 0.0) for name, recs, share in pools}
    if any(v < 0 for v in shares.values()) or not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"pool shares must be non-negative and sum to 1 over the non-empty pools, got {shares}")
    live = [(recs, shares[name]) for name, recs, _ in pools if shares[name] > 0]
    rounded = {k: round(v, 4) for k, v in shares.items()}
    if len(live) == 1:
        return live[0][0], None, rounded
    records = [r for recs, _ in live for r in recs]
    weights = [share / len(recs) for recs, share in live for _ in recs]
    return records, weights, rounded


def _grouped_batch(cfg: TrainConfig, probs, lengths: np.ndarray, m: int, n_proc: int) -> list[int]:
    """The global micro-batch number `m` when batches are grouped by length: each run of `group_by_length`
    micro-batches is drawn at once from its own RNG (seed, group number), sorted by length, cut into batches and
    taken in a random order. Nothing is carried between steps, so a resumed run draws what an uninterrupted one
    would have."""
    k, size = cfg.group_by_length, cfg.batch_size * n_proc
    g = np.random.default_rng([cfg.seed, m // k])
    idx = g.choice(len(lengths), size=size * k, replace=True, p=probs)
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    j = int(g.permutation(k)[m % k])
    return idx[j * size:(j + 1) * size].tolist()


def train(
    model,
    processor,
    records: list[dict],
    cfg: TrainConfig,
    out_dir: str | Path,
    sample_weights: list[float] | np.ndarray | None = None,
    adapter: TrainAdapter | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg`` optimizer steps on ``records``; the final model goes to ``out_dir``.

    ``adapter`` defines a batch, its loss and the saving (default: ``SFTAdapter(processor, model)``);
    ``processor`` is only used to build the default adapter.
    """
    if adapter is None:
        adapter = SFTAdapter(processor, model)
    if not records:
        raise ValueError("train() needs at least one record")
    out_dir = Path(out_dir)
    ckpt = out_dir / "checkpoint"
    t0 = time.perf_counter()
    set_seed(cfg.seed)
    accelerator = _accelerator(cfg.mixed_precision)
    n_proc, rank = accelerator.num_processes, accelerator.process_index

    if cfg.freeze_vision_tower:
        _freeze_vision_tower(model)
    if cfg.gradient_checkpointing:
        _gradient_checkpointing(model)
    if cfg.lora is not None:
        model = _apply_lora(model, cfg.lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total_steps = _steps_for(cfg, len(records), n_proc)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps)

    probs = None
    if sample_weights is not None:
        probs = np.asarray(sample_weights, dtype=np.float64)
        if probs.shape != (len(records),) or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError("sample_weights must be one non-negative weight per record, not all zero")
        probs = probs / probs.sum()
    rng = np.random.default_rng(cfg.seed)

    result = TrainResult(
        n_params=sum(p.numel() for p in model.parameters()), n_trainable=sum(p.numel() for p in params)
    )
    step = 0
    run_id = _run_id(cfg, records, probs, adapter, model)
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

    if cfg.group_by_length and not hasattr(type(adapter), "lengths"):
        raise ValueError(f"TrainConfig.group_by_length needs an adapter with record lengths; {type(adapter).__name__} has none")
    result.n_truncated = adapter.prepare(records, cfg)
    lengths = adapter.lengths if cfg.group_by_length else None
    if lengths is not None and hasattr(adapter, "grouped"):  # the adapter's loss may depend on how batches are drawn
        adapter.grouped(probs if probs is not None else np.full(len(records), 1 / len(records)), cfg.batch_size)
    result.truncated_by_task = dict(getattr(adapter, "truncated_by_task", None) or {})
    result.n_tokenized_alone = int(getattr(adapter, "n_tokenized_alone", 0) or 0)
    model, optimizer = accelerator.prepare(model, optimizer)
    tokens_before = result.tokens_seen  # throughput counts only this call's work
    groups = [str(r.get(cfg.group_key)) for r in records] if cfg.group_key and cfg.group_key in records[0] else None
    window: list[tuple[str, float]] = []
    last = min(total_steps, cfg.stop_after) if cfg.stop_after is not None else total_steps
    saved = step if step else None  # the step of the checkpoint on disk (a resumed run's)
    bar = progress(total=last, desc=f"train {out_dir.name}", unit="step") if accelerator.is_main_process else None
    if bar is not None and step:
        bar.update(step)  # resumed
    counts_items = hasattr(adapter, "items")
    while step < last:
        step_loss, step_tokens, micro_batches = 0.0, 0, []
        for micro in range(cfg.grad_accum):
            # The global batch from the shared RNG, this rank's slice of it (one process: exactly batch_size).
            if lengths is None:
                idx = rng.choice(len(records), size=cfg.batch_size * n_proc, replace=True, p=probs).tolist()
            else:
                idx = _grouped_batch(cfg, probs, lengths, step * cfg.grad_accum + micro, n_proc)
            micro_batches.append(adapter.batch(records, idx[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]))
        scale = 1 / cfg.grad_accum  # an adapter without items: the mean of the micro-batches' means
        if counts_items:
            # The step's items over its micro-batches and every rank (T): each rank's summed loss divided by T / N,
            # averaged by DDP over the N ranks, is the global batch's summed loss over T (as in transformers' Trainer).
            n_items = sum(adapter.items(b) for b, _ in micro_batches)
            if n_proc > 1:
                total = torch.tensor(n_items, dtype=torch.float64, device=accelerator.device)
                n_items = accelerator.reduce(total, "sum").item()
            adapter.num_items, scale = max(n_items, 1.0) / n_proc, 1.0
        for micro, (batch, rows) in enumerate(micro_batches):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            # DDP averages gradients over ranks once per optimizer step, on the last micro-batch.
            with accelerator.no_sync(model) if micro < cfg.grad_accum - 1 else contextlib.nullcontext():
                with accelerator.autocast():
                    batch_loss, row_losses = adapter.loss(model, batch)
                    loss = batch_loss * scale
                accelerator.backward(loss)
            if groups is not None and row_losses is not None:
                window.extend(zip((groups[i] for i in rows), row_losses))
            step_loss += loss.item()
            step_tokens += adapter.tokens(batch)
        if n_proc > 1:  # the ranks' step losses averaged (as DDP does), tokens summed: one result on every rank
            both = torch.tensor([step_loss, step_tokens], dtype=torch.float64, device=accelerator.device)
            both = accelerator.reduce(both, "sum")
            step_loss, step_tokens = both[0].item() / n_proc, int(both[1].item())
        result.tokens_seen += step_tokens
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        result.losses.append(step_loss)
        if bar is not None:
            bar.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
            bar.update(1)
        if groups is not None and (step % cfg.curve_every == 0 or step == last):
            _close_window(result.group_curves, gather_object(window) if n_proc > 1 else window, step)
            window.clear()
        if cfg.log_every and step % cfg.log_every == 0 and accelerator.is_main_process:
            log.info("step %d/%d loss %.4f lr %.2e", step, total_steps, step_loss, scheduler.get_last_lr()[0])
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
            unwrapped = accelerator.unwrap_model(model)
            _save_checkpoint(accelerator, ckpt, unwrapped, optimizer, scheduler, step, rng, result, run_id)
            saved = step

    if bar is not None:
        bar.close()
    result.steps = step
    result.final_loss = result.losses[-1] if result.losses else float("nan")
    result.wall_s = time.perf_counter() - t0
    result.tokens_per_s = (result.tokens_seen - tokens_before) / result.wall_s if result.wall_s > 0 else 0.0
    model = accelerator.unwrap_model(model)
    if step < total_steps:  # interrupted on purpose (stop_after): make sure the run can resume from here
        if saved != step:
            _save_checkpoint(accelerator, ckpt, model, optimizer, scheduler, step, rng, result, run_id)
        return result
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.eval()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        adapter.save(model, out_dir)
        shutil.rmtree(ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()  # no rank returns before the final model is on disk
    return result
