"""Turning (image, prompt[, target]) into model inputs for any supported processor.

Shared by the training loop and the generation routines so that a model sees exactly the same prompt
layout at train and inference time. The processor does the multimodal part (image placeholder
expansion, pixel values / patches); sequences are then padded here, because Fuyu's processor hard-codes
left padding while training wants right padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import FuyuProcessor

from genixer.images import open_rgb

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


def open_images(paths: Sequence[str | Path]) -> list[Image.Image]:
    return [open_rgb(p) for p in paths]


def _inserts_image_token(processor) -> bool:
    # FuyuProcessor puts the image placeholder in front of the text itself; LLaVA-style processors expand
    # an image token that must already be in the text.
    return isinstance(processor, FuyuProcessor)


def prompt_text(processor, prompt: str) -> str:
    return prompt if _inserts_image_token(processor) else processor.image_token + prompt


def encode_prompts(processor, images: list[Image.Image], prompts: Sequence[str]) -> tuple[list[list[int]], dict]:
    """Per-sample prompt ids (image placeholders, BOS, prompt, and Fuyu's begin-of-answer token included)
    and the batched image tensors (every non-text output of the processor, concatenated along dim 0)."""
    texts = [prompt_text(processor, p) for p in prompts]
    kwargs = {"return_legacy_image_output": False} if isinstance(processor, FuyuProcessor) else {"padding": True}
    batch = processor(images=images, text=texts, return_tensors="pt", **kwargs)
    ids = [row[mask.bool()].tolist() for row, mask in zip(batch["input_ids"], batch["attention_mask"])]
    image_inputs = {k: v for k, v in batch.items() if k not in TEXT_KEYS}
    return ids, image_inputs


def encode_target(tokenizer, target: str) -> list[int]:
    # No BOS; the tokenizer prepends one "▁", which is the single space separating prompt and target.
    return tokenizer(target, add_special_tokens=False)["input_ids"]


def pad(
    seqs: Sequence[Sequence[int]], pad_id: int, side: str, labels: Sequence[Sequence[int]] | None = None
) -> dict[str, torch.Tensor]:
    """Pad to a rectangle. position_ids count only real tokens, so left padding does not shift positions
    (generate() does the same from the attention mask; a plain forward would not)."""
    width = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    out_labels = torch.full((n, width), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        input_ids[i, span] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, span] = 1
        if labels is not None:
            out_labels[i, span] = torch.tensor(labels[i], dtype=torch.long)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
    if labels is not None:
        batch["labels"] = out_labels
    return batch
