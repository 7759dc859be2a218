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

Modules: :mod:`~genixer.training.config` (TrainConfig, LoraSpec, TrainResult, the TrainAdapter protocol),
:mod:`~genixer.training.sft` (SFTAdapter: encoding, truncation, batches, token-weighted loss),
:mod:`~genixer.training.sampling` (pool mixtures, sampling weights, batches grouped by length),
:mod:`~genixer.training.checkpoint` (run id, checkpoint, resume), :mod:`~genixer.training.loop` (:func:`train`).
"""

from __future__ import annotations

from genixer.training.config import LoraSpec, TrainAdapter, TrainConfig, TrainResult
from genixer.training.loop import train
from genixer.training.sampling import PairedPlan, weighted_pools
from genixer.training.sft import RecordTooLongError, SFTAdapter, collate, sample_losses, target_window

__all__ = [
    "LoraSpec", "PairedPlan", "RecordTooLongError", "SFTAdapter", "TrainAdapter", "TrainConfig", "TrainResult", "collate",
    "sample_losses", "target_window", "train", "weighted_pools",
]
