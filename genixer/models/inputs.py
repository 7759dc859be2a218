"""Turning (image, prompt[, target]) into model inputs for any supported processor.

Shared by the training loop and the generation routines so that a model sees exactly the same prompt
layout at train and inference time. The processor does the multimodal part (image placeholder
expansion, pixel values / patches); sequences are then padded here, because Fuyu's processor hard-codes
left padding while training wants right padding.

Real checkpoints and the embedded models go through the same code:
- Prompt text (:func:`prompt_text`): a processor with a chat template (LLaVA-1.5, Qwen2-VL, ...) gets its
  own rendering of one user turn (image, prompt) plus the generation prompt; a processor without one (the
  embedded models, Fuyu) gets the bare prompt behind the image token, as before.
- Answer tokens (:func:`split_prompt_answer`): an answer is tokenized as it FOLLOWS its prompt text (prompt
  text + separator + answer, minus the prompt text's own ids), so byte-level BPEs (Qwen2) do not glue
  "?Yes" and sentencepiece-style tokenizers keep their leading "▁". For the embedded word-level tokenizer
  this equals tokenizing the answer alone (:func:`encode_target`), id for id. Where a tokenizer merges
  across the boundary (a BPE with merges such as ``':▁Yes'``), the prompt's ids are kept and the answer is
  tokenized on its own, as trl's prompt-completion path does; such records are counted.
- Per-token keys besides the ids (``mm_token_type_ids``, which Qwen2-VL needs for its M-RoPE positions) are
  padded with the ids; models that compute their own multimodal positions (:func:`computes_own_positions`)
  get no 1-D ``position_ids`` from :func:`pad`.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from transformers import FuyuProcessor

from genixer.images import open_rgb

TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
# Per-token keys of the processor output that are kept and padded along with the ids (0 = text: the value
# of every padding position and of every token appended after the prompt, i.e. the answer).
ROW_KEYS = ("mm_token_type_ids",)
# Models whose forward derives its own (multimodal, M-RoPE) position ids from input_ids + mm_token_type_ids
# + the image grid; a 1-D position_ids would replace them with text-only positions. Checked besides the
# presence of ``get_rope_index`` (the method those models compute them with).
OWN_POSITION_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "glm4v", "glm4v_moe"})


class AnswerSplit(NamedTuple):
    """Prompt ids and answer ids of each record (see :func:`split_prompt_answer`)."""

    prompt_ids: list[list[int]]
    answer_ids: list[list[int]]
    # Indices of the records whose joined text (prompt text + separator + answer) does not begin with the
    # prompt's ids: the tokenizer merges across the boundary, so their answers were tokenized on their own.
    tokenized_alone: list[int]


def open_images(paths: Sequence[str | Path | Image.Image]) -> list[Image.Image]:
    """RGB images from paths (opened through genixer.images) or images already opened."""
    return [p if isinstance(p, Image.Image) else open_rgb(p) for p in paths]


def _inserts_image_token(processor) -> bool:
    # FuyuProcessor puts the image placeholder in front of the text itself; LLaVA-style processors expand
    # an image token that must already be in the text.
    return isinstance(processor, FuyuProcessor)


def has_chat_template(processor) -> bool:
    return bool(getattr(processor, "chat_template", None))


def prompt_text(processor, prompt: str) -> str:
    """The text the processor gets for (image, prompt).

    With a chat template (real LLaVA-1.5: ``USER: <image>\\n{prompt} ASSISTANT:``; Qwen2-VL: its
    ``<|im_start|>`` turns with ``<|vision_start|><|image_pad|><|vision_end|>``), the template's rendering of
    one user turn (image, then prompt) with the generation prompt; otherwise the image token then the prompt
    (Fuyu: the prompt alone, its processor inserts the image placeholder)."""
    if has_chat_template(processor):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    return prompt if _inserts_image_token(processor) else processor.image_token + prompt


def answer_separator(processor, text: str) -> str:
    """What is written between a prompt text and its answer: nothing after a chat template's generation prompt
    that ends in whitespace (Qwen2-VL's ``<|im_start|>assistant\\n``), otherwise one space (LLaVA-1.5's
    ``ASSISTANT: Yes``; the embedded prompts, whose tokenizer writes that space as the answer's leading "▁")."""
    return "" if has_chat_template(processor) and text[-1:].isspace() else " "


# Per tokenizer (its serialised form and size, so two loads of one checkpoint share it): text -> ids. Every
# training run and generation pass of a process tokenizes the same prompts and targets once.
_IDS: dict[tuple, dict[str, list[int]]] = {}
_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fingerprint(tokenizer) -> tuple:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer: no serialised form to key on, no cache
        return ()
    try:
        fp = _FINGERPRINTS[tokenizer]
    except (KeyError, TypeError):
        fp = (type(tokenizer).__name__, hashlib.sha256(backend.to_str().encode()).hexdigest())
        try:
            _FINGERPRINTS[tokenizer] = fp
        except TypeError:
            pass
    return (*fp, len(tokenizer))  # tokens added after the first call change the key


def _tokenize_unique(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Ids of each text without special tokens, each distinct text tokenized once per process and tokenizer
    (shared lists: read only)."""
    fp = _fingerprint(tokenizer)
    known = _IDS.setdefault(fp, {}) if fp else {}
    if len(known) >= 2_000_000:  # a bound on the memory, not a policy
        known.clear()
    todo = [t for t in dict.fromkeys(texts) if t not in known]
    if todo:
        known.update(zip(todo, tokenizer(todo, add_special_tokens=False)["input_ids"]))
    return [known[t] for t in texts]


def split_prompt_answer(
    processor, prompts: Sequence[str], answers: Sequence[str]
) -> AnswerSplit:
    """Ids of each prompt text and of each answer as the tokenizer writes it right after that prompt.

    Both without special tokens and without the processor's image expansion: the prompt ids are the
    tokenization of ``prompt_text``, the answer ids what tokenizing ``prompt_text + separator + answer`` adds
    to them. An empty answer has no ids. Where the prompt's ids are not a prefix of the joined ids (the
    tokenizer merges across the boundary, e.g. ``':▁Yes'``), the prompt keeps its own ids, which are what the
    model is given at inference, and the answer is tokenized alone (trl's prompt-completion rule); those
    records' indices are in ``tokenized_alone``."""
    if len(prompts) != len(answers):
        raise ValueError("prompts and answers must have the same length")
    if not prompts:
        return AnswerSplit([], [], [])
    tokenizer = processor.tokenizer
    text_of = {p: prompt_text(processor, p) for p in dict.fromkeys(prompts)}  # records share prompts
    texts = [text_of[p] for p in prompts]
    joined = [t + answer_separator(processor, t) + a for t, a in zip(texts, answers)]
    prompt_ids = _tokenize_unique(tokenizer, texts)
    joined_ids = _tokenize_unique(tokenizer, joined)
    answer_ids: list[list[int]] = []
    alone: list[int] = []
    for i, (p, j, a) in enumerate(zip(prompt_ids, joined_ids, answers)):
        if not a:
            answer_ids.append([])
        elif list(j[: len(p)]) == list(p):
            answer_ids.append(list(j[len(p) :]))
        else:
            answer_ids.append([])  # filled below, all such answers tokenized in one call
            alone.append(i)
    for i, ids in zip(alone, _tokenize_unique(tokenizer, [answers[i] for i in alone])):
        answer_ids[i] = list(ids)
    return AnswerSplit([list(p) for p in prompt_ids], answer_ids, alone)


def encode_answers(processor, prompts: Sequence[str], answers: Sequence[str]) -> list[list[int]]:
    """The ids of each answer as written right after its prompt (see :func:`split_prompt_answer`)."""
    return split_prompt_answer(processor, prompts, answers)[1]


@dataclass
class PromptBatch:
    """The processor's encoding of a batch of (image, prompt), unpadded."""

    ids: list[list[int]]  # per sample: image placeholders, BOS, prompt (and Fuyu's begin-of-answer token)
    row_keys: dict[str, list[list[int]]]  # per-token keys aligned with ``ids`` (ROW_KEYS the processor returned)
    image_inputs: dict[str, torch.Tensor]  # every non-text output of the processor, batched along dim 0


def encode_prompt_batch(processor, images: list[Image.Image], prompts: Sequence[str]) -> PromptBatch:
    texts = [prompt_text(processor, p) for p in prompts]
    kwargs = {"return_legacy_image_output": False} if isinstance(processor, FuyuProcessor) else {"padding": True}
    batch = processor(images=images, text=texts, return_tensors="pt", **kwargs)
    masks = [m.bool() for m in batch["attention_mask"]]
    ids = [row[m].tolist() for row, m in zip(batch["input_ids"], masks)]
    row_keys = {k: [row[m].tolist() for row, m in zip(batch[k], masks)] for k in ROW_KEYS if k in batch}
    image_inputs = {k: v for k, v in batch.items() if k not in TEXT_KEYS}
    return PromptBatch(ids, row_keys, image_inputs)


def encode_prompts(processor, images: list[Image.Image], prompts: Sequence[str]) -> tuple[list[list[int]], dict]:
    """Per-sample prompt ids (image placeholders, BOS, prompt, and Fuyu's begin-of-answer token included)
    and the batched image tensors (every non-text output of the processor, concatenated along dim 0).
    Per-token keys such as ``mm_token_type_ids`` are in :func:`encode_prompt_batch`'s result only."""
    enc = encode_prompt_batch(processor, images, prompts)
    return enc.ids, enc.image_inputs


def encode_target(tokenizer, target: str) -> list[int]:
    """The target tokenized alone (no BOS). For the embedded tokenizer the prepended "▁" is the single space
    separating prompt and target, so this equals :func:`split_prompt_answer`'s answer ids; training and
    scoring use the latter, which also holds for tokenizers without that property."""
    return tokenizer(target, add_special_tokens=False)["input_ids"]


def pad(
    seqs: Sequence[Sequence[int]],
    pad_id: int,
    side: str,
    labels: Sequence[Sequence[int]] | None = None,
    row_keys: dict[str, Sequence[Sequence[int]]] | None = None,
) -> dict[str, torch.Tensor]:
    """Pad to a rectangle. position_ids count only real tokens, so left padding does not shift positions
    (generate() does the same from the attention mask; a plain forward would not).

    ``row_keys`` (e.g. ``mm_token_type_ids``) hold one list per sequence covering its first tokens (the
    prompt); the rest of the sequence (the answer) and the padding get 0."""
    width = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    out_labels = torch.full((n, width), -100, dtype=torch.long)
    extra = {k: torch.zeros((n, width), dtype=torch.long) for k in (row_keys or {})}
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        input_ids[i, span] = torch.tensor(s, dtype=torch.long)
        attention_mask[i, span] = 1
        if labels is not None:
            out_labels[i, span] = torch.tensor(labels[i], dtype=torch.long)
        for k, rows in (row_keys or {}).items():
            row = list(rows[i])
            if len(row) > len(s):
                raise ValueError(f"{k} of sequence {i} is longer ({len(row)}) than the sequence ({len(s)})")
            extra[k][i, span] = torch.tensor(row + [0] * (len(s) - len(row)), dtype=torch.long)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
    if labels is not None:
        batch["labels"] = out_labels
    batch.update(extra)
    return batch


def build_batch(
    prompts: PromptBatch,
    seqs: Sequence[Sequence[int]],
    pad_id: int,
    side: str,
    labels: Sequence[Sequence[int]] | None = None,
    own_positions: bool = False,
) -> dict[str, torch.Tensor]:
    """The model inputs for ``seqs`` (each a prompt of ``prompts`` possibly followed by answer tokens):
    padded ids, mask, labels and per-token keys, the image tensors, and ``position_ids`` unless the model
    computes its own (``own_positions``, see :func:`computes_own_positions`)."""
    batch = pad(seqs, pad_id, side, labels=labels, row_keys=prompts.row_keys)
    if own_positions:
        del batch["position_ids"]
    batch.update(prompts.image_inputs)
    return batch


def _configs(model):
    config = getattr(model, "config", None)
    return [c for c in (config, getattr(config, "text_config", None)) if c is not None]


def computes_own_positions(model) -> bool:
    """True for models that compute their own multimodal position ids (Qwen2-VL's M-RoPE: from input_ids,
    mm_token_type_ids, the image grid and the attention mask). They must not get :func:`pad`'s 1-D
    ``position_ids``, which would silently put every image token on text-only positions."""
    if model is None:
        return False
    if any(getattr(c, "model_type", None) in OWN_POSITION_MODEL_TYPES for c in _configs(model)):
        return True
    return any(callable(getattr(m, "get_rope_index", None)) for m in (model, getattr(model, "model", None)) if m is not None)


def model_max_length(model) -> int | None:
    """The longest sequence the model's positions cover: the language model's ``max_position_embeddings``
    (``text_config`` first, then the top-level config); None if the config has none."""
    for config in reversed(_configs(model)):  # text_config first
        n = getattr(config, "max_position_embeddings", None)
        if isinstance(n, int) and n > 0:
            return n
    return None
