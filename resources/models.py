"""The one model resource: loads an embedded checkpoint made by an asset, or a user's
Hugging Face checkpoint directory (LLaVA-1.5, Fuyu-8B, ...), onto the configured device."""

from typing import Optional

import dagster as dg
from pydantic import Field

from genixer.models.checkpoint import load_model, resolve_device


class MLLMBackend(dg.ConfigurableResource):
    """Where models come from and where they run.

    `base_checkpoint` / `judge_checkpoint`: a Hugging Face format directory (safetensors) used
    in place of training the embedded model, e.g. a local copy of llava-hf/llava-1.5-7b-hf or
    adept/fuyu-8b. Empty means: train the embedded model here.
    """

    device: str = Field("auto", description="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16")
    trust_remote_code: bool = Field(False, description="allow code shipped with a checkpoint (off by default)")
    base_checkpoint: Optional[str] = Field(None, description="HF checkpoint directory to use as base_mllm")
    judge_checkpoint: Optional[str] = Field(None, description="HF checkpoint directory to use as judge_mllm")
    region_clip_checkpoint: Optional[str] = Field(
        None, description="open_clip directory (open_clip_config.json + open_clip_model.safetensors) to use as the region CLIP")

    def load(self, path):
        """(model, processor) from a checkpoint directory, in eval mode on the device."""
        return load_model(path, device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code)

    def torch_device(self):
        return resolve_device(self.device)
