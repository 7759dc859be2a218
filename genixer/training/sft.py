"""Supervised fine-tuning's batches and loss (:class:`SFTAdapter`, the loop's default adapter): targets tokenized
as they follow their prompts and cut to ``max_length`` (counted), right-padded batches with labels on target + EOS
only, the loss over the step's target tokens (or records) and per-sample losses for the group curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genixer.images import image_size
from genixer.models.checkpoint import save_model
from genixer.models.inputs import (
    build_batch,
    computes_own_positions,
    encode_prompt_batch,
    encode_prompts,
    model_max_length,
    open_images,
    split_prompt_answer,
)
from genixer.training.config import TrainConfig


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
