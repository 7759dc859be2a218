"""One generation routine and one Yes/No scorer for every model (LLaVA generator, Fuyu judge, and real
LLaVA-1.5 / Qwen2-VL / Fuyu checkpoints).

Prompts are encoded exactly as in training (genixer.models.inputs: the processor's chat template when it has
one), left-padded with position ids that skip the padding (none for models computing their own multimodal
positions, e.g. Qwen2-VL, which get ``mm_token_type_ids`` instead), so a batched result equals the
batch-of-one result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from genixer.models.inputs import (
    PromptBatch,
    build_batch,
    computes_own_positions,
    encode_prompt_batch,
    open_images,
    split_prompt_answer,
)
from genixer.progress import progress


@dataclass
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    max_new_tokens: int = 96
    num_return_sequences: int = 1
    seed: int = 0  # row seeds when generate() is given none


def derive_seed(*parts: int) -> int:
    """A seed from a tuple of seeds (e.g. a row's seed and a return-sequence index), well mixed."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class RowSampler(LogitsProcessor):
    """Temperature and top-p, then one draw per row from that row's own torch.Generator. The scores
    returned are -inf except at the drawn token, so greedy decoding takes it: a row's sample depends
    on its seed only, not on the other rows of its batch."""

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int], device):
        self.warpers = LogitsProcessorList([TemperatureLogitsWarper(float(temperature)), TopPLogitsWarper(top_p)])
        self.generators = [torch.Generator(device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)
        drawn = torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)])
        return torch.full_like(scores, -float("inf")).scatter_(1, drawn, 0.0)


def _model_batch(model, processor, prompts: PromptBatch, seqs=None) -> dict[str, torch.Tensor]:
    """Left-padded inputs for ``seqs`` (default: the prompts alone) on the model's device and dtype."""
    batch = build_batch(prompts, prompts.ids if seqs is None else seqs, processor.tokenizer.pad_token_id,
                        side="left", own_positions=computes_own_positions(model))
    dtype = next(model.parameters()).dtype
    return {
        k: v.to(model.device, dtype=dtype if v.is_floating_point() else None) for k, v in batch.items()
    }


def _batch_inputs(model, processor, image_paths, prompts) -> dict[str, torch.Tensor]:
    return _model_batch(model, processor, encode_prompt_batch(processor, open_images(image_paths), prompts))


@torch.inference_mode()
def generate(
    model,
    processor,
    image_paths: Sequence[str | Path | Image.Image],
    prompts: Sequence[str],
    sampling: Sampling | None = None,
    batch_size: int = 16,
    seeds: Sequence[int] | None = None,
    desc: str | None = None,
) -> list[list[str]]:
    """``num_return_sequences`` decoded continuations per (image, prompt); new tokens only.

    When sampling, row i's j-th sequence is drawn with seed derive_seed(seeds[i], j) (seeds default
    to derive_seed(sampling.seed, i)), whatever else is in its batch. ``desc``: show progress under that name."""
    sampling = sampling or Sampling()
    if len(image_paths) != len(prompts) or (seeds is not None and len(seeds) != len(prompts)):
        raise ValueError("image_paths, prompts and seeds must have the same length")
    n = sampling.num_return_sequences
    # Repeat inputs ourselves instead of generate(num_return_sequences=n): generate() expands tensors
    # row-wise, which is wrong for Fuyu's flat (total_patches, dim) pixel_values.
    paths = [p for p in image_paths for _ in range(n)]
    texts = [t for t in prompts for _ in range(n)]
    tokenizer = processor.tokenizer
    do_sample = sampling.temperature > 0
    if seeds is None:
        seeds = [derive_seed(sampling.seed, i) for i in range(len(prompts))]
    row_seeds = [derive_seed(s, j) for s in seeds for j in range(n)]
    was_training = model.training
    model.eval()
    decoded: list[str] = []
    bar = progress(total=len(paths), desc=desc, unit="seq") if desc else None
    for start in range(0, len(paths), batch_size):
        batch = _batch_inputs(model, processor, paths[start : start + batch_size], texts[start : start + batch_size])
        # Positions for new tokens are derived from the attention mask by generate() itself (Qwen2-VL: its
        # M-RoPE positions from input_ids + mm_token_type_ids + image grid).
        batch.pop("position_ids", None)
        # RowSampler draws the tokens, so generate() itself stays greedy (and gets no temperature to warn about).
        sampler = [RowSampler(sampling.temperature, sampling.top_p, row_seeds[start : start + batch_size], model.device)] if do_sample else []
        out = model.generate(
            **batch,
            do_sample=False,
            logits_processor=LogitsProcessorList(sampler),
            max_new_tokens=sampling.max_new_tokens,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        decoded += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        if bar is not None:
            bar.update(len(out))
    if bar is not None:
        bar.close()
    model.train(was_training)
    return [decoded[i * n : (i + 1) * n] for i in range(len(prompts))]


def answer_ids(processor, prompts: Sequence[str], word: str) -> list[list[int]]:
    """The ids of ``word`` as the processor's tokenizer writes it right after each prompt (as in training);
    an error if it is empty or holds an unknown token."""
    ids = split_prompt_answer(processor, prompts, [word] * len(prompts)).answer_ids
    unk = processor.tokenizer.unk_token_id
    for row in ids:
        if not row or (unk is not None and unk in row):
            raise ValueError(f"{word!r} must be known tokens after the prompt, got {row}")
    return ids


def first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    """The first position where two token sequences differ; an error if one is a prefix of the other
    (then no single token decides between them)."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    if k == len(a) or k == len(b):
        raise ValueError(f"the answers' tokens {list(a)} and {list(b)}: one is a prefix of the other, so no token "
                         "decides between them")
    return k


@torch.inference_mode()
def score_yes_no(
    model,
    processor,
    image_paths: Sequence[str | Path],
    prompts: Sequence[str],
    yes: str = "Yes",
    no: str = "No",
    batch_size: int = 16,
) -> np.ndarray:
    """P(yes) of each (image, prompt), ``yes`` against ``no``, each written as the model's tokenizer writes
    it right after the prompt (``split_prompt_answer``, as in training).

    Decided at the first token where the two answers differ: the softmax over those two tokens' logits,
    given the image, the prompt and the tokens the two answers share (none for one-token answers: the
    embedded judge; LLaVA-1.5, Qwen2-VL and Fuyu for "Yes"/"No"). Not the product over whole answers:
    where "No" takes two tokens and "Yes" one, the product charges "No" a second factor (about
    1/vocabulary for a model that has not learnt the answer's spelling) and an uninformed judge then says
    "Yes" to everything; not a per-token mean either, which still compares one factor with the mean of two.
    The tokens after the first difference only spell out the answer already chosen."""
    if len(image_paths) != len(prompts):
        raise ValueError("image_paths and prompts must have the same length")
    was_training = model.training
    model.eval()
    scores = []
    bar = progress(total=len(prompts), desc="judge P(Yes)", unit="pair")
    for start in range(0, len(prompts), batch_size):
        texts = list(prompts[start : start + batch_size])
        yes_ids, no_ids = answer_ids(processor, texts, yes), answer_ids(processor, texts, no)
        at = [first_difference(y, n) for y, n in zip(yes_ids, no_ids)]
        enc = encode_prompt_batch(processor, open_images(image_paths[start : start + batch_size]), texts)
        # The shared tokens follow the prompt; left padding puts every row's last token at -1.
        batch = _model_batch(model, processor, enc, [p + y[:k] for p, y, k in zip(enc.ids, yes_ids, at)])
        last = model(**batch, logits_to_keep=1).logits[:, -1]
        pair = torch.tensor([[y[k], n[k]] for y, n, k in zip(yes_ids, no_ids, at)], device=last.device)
        scores.append(torch.softmax(last.gather(1, pair).float(), dim=-1)[:, 0].cpu().numpy())
        bar.update(len(texts))
    bar.close()
    model.train(was_training)
    return np.concatenate(scores) if scores else np.zeros(0)
