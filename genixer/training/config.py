"""What a training call is given and returns: :class:`TrainConfig` (with :class:`LoraSpec`), :class:`TrainResult`,
and the :class:`TrainAdapter` protocol (one kind of training's per-batch work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch


@dataclass
class LoraSpec:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    # None: every Linear layer inside the language model (attention + MLP), nothing in vision/projector.
    target_modules: list[str] | None = None

    @classmethod
    def for_rank(cls, rank: int, targets: list[str] | None = None) -> LoraSpec:
        """The project's LoRA of a given rank: alpha = 2 x rank (the update scaled by 2), on `targets` (None: as above)."""
        return cls(rank=rank, alpha=2 * rank, target_modules=targets)


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


class TrainAdapter(Protocol):
    """The per-batch work of one kind of training; the loop in :func:`genixer.training.train` does
    everything else.

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
