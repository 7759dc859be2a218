"""The training knobs a run sets over the preset's TrainConfig (genixer.training): one class every model asset's
config extends (base_mllm's BaseConfig, the generators', the judge's, the region CLIP's, retraining's)."""

from dataclasses import replace
from enum import Enum
from typing import Optional

import dagster as dg
from pydantic import Field


class LossPer(Enum):
    token = "token"
    sample = "sample"


class TrainOverrides(dg.Config):
    steps: Optional[int] = Field(None, description="optimizer steps (default: preset)")
    lr: Optional[float] = Field(None, description="peak learning rate (default: preset)")
    batch_size: Optional[int] = Field(None, description="batch size (default: preset)")
    seed: Optional[int] = Field(None, description="training seed (default: preset)")
    lora_rank: Optional[int] = Field(None, description="train LoRA adapters of this rank instead of all weights")
    freeze_vision_tower: Optional[bool] = Field(None, description="keep the vision tower fixed")
    warmup_steps: Optional[int] = Field(None, description="linear warm-up steps before the cosine decay (default: preset)")
    loss_per: Optional[LossPer] = Field(
        None, description="'token': every target token weighs the same (the model's loss); 'sample': every record does")
    group_by_length: Optional[int] = Field(
        None, description="0: random batches; k: k batches drawn at once, sorted by length (less padding)")

    def apply(self, cfg):
        from genixer.training import LoraSpec

        loss_per = LossPer(self.loss_per).value if self.loss_per is not None else None  # TrainConfig takes the string
        kw = {k: v for k, v in {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed,
                                "freeze_vision_tower": self.freeze_vision_tower, "warmup_steps": self.warmup_steps,
                                "loss_per": loss_per, "group_by_length": self.group_by_length}.items() if v is not None}
        if self.lora_rank:
            kw["lora"] = LoraSpec(rank=self.lora_rank, alpha=2 * self.lora_rank)
        return replace(cfg, **kw)
