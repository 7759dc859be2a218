"""The training knobs set over a TrainConfig (genixer.training), in one class whoever sets them:

- an asset's run config: base_mllm's BaseConfig, the generators' GeneratorConfig, the judge's JudgeConfig, the
  region CLIP's RegionClipConfig and retraining's RetrainConfig extend :class:`TrainOverrides`;
- a model role's training settings (resources.models.ModelRole, where they sit beside the role's checkpoint,
  device and dtype): ``ModelRole.training()`` gives them as a TrainOverrides, applied first
  (MLLMBackend.train_config); the run's config is applied after it.

Unset fields leave the TrainConfig as it is (the preset's)."""

from dataclasses import replace
from enum import Enum
from typing import Optional

import dagster as dg
from pydantic import Field

MIXED_PRECISION = ("no", "bf16", "fp16")


class LossPer(Enum):
    token = "token"
    sample = "sample"


class TrainOverrides(dg.Config):
    steps: Optional[int] = Field(None, description="optimizer steps (default: preset)")
    lr: Optional[float] = Field(None, description="peak learning rate (default: preset)")
    batch_size: Optional[int] = Field(None, description="batch size (default: preset)")
    seed: Optional[int] = Field(None, description="training seed (default: preset)")
    lora_rank: Optional[int] = Field(None, description=(
        "0: train all weights; k > 0: LoRA adapters of rank k (alpha 2k) instead of all weights (default: the role's, else "
        "the preset's)"))
    lora_targets: Optional[list[str]] = Field(None, description="module names LoRA adapts (default: every Linear of the language model)")
    freeze_vision_tower: Optional[bool] = Field(None, description="keep the vision tower fixed")
    warmup_steps: Optional[int] = Field(None, description="linear warm-up steps before the cosine decay (default: preset)")
    loss_per: Optional[LossPer] = Field(
        None, description="'token': every target token weighs the same (the model's loss); 'sample': every record does")
    group_by_length: Optional[int] = Field(
        None, description="0: random batches; k: k batches drawn at once, sorted by length (less padding)")
    grad_accum: Optional[int] = Field(None, description="micro-batches per optimizer step (default: the role's, else preset)")
    mixed_precision: Optional[str] = Field(None, description="no | bf16 | fp16, through accelerate (default: the role's, else no)")
    gradient_checkpointing: Optional[bool] = Field(None, description="recompute activations in the backward pass (default: off)")
    max_length: Optional[int] = Field(None, description="training tokens per sequence (default: the model's max_position_embeddings)")

    def apply(self, cfg):
        """`cfg` (a TrainConfig) with every field set here replaced; a LoRA rank gives LoraSpec.for_rank's adapters."""
        from genixer.training import LoraSpec

        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, not {self.mixed_precision!r}")
        loss_per = LossPer(self.loss_per).value if self.loss_per is not None else None  # TrainConfig takes the string
        kw = {k: v for k, v in {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed,
                                "freeze_vision_tower": self.freeze_vision_tower, "warmup_steps": self.warmup_steps,
                                "loss_per": loss_per, "group_by_length": self.group_by_length, "grad_accum": self.grad_accum,
                                "mixed_precision": self.mixed_precision, "gradient_checkpointing": self.gradient_checkpointing,
                                "max_length": self.max_length}.items() if v is not None}
        if self.lora_rank == 0:
            kw["lora"] = None
        elif self.lora_rank:
            kw["lora"] = LoraSpec.for_rank(self.lora_rank, self.lora_targets)
        return replace(cfg, **kw)
