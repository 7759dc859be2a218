"""The one model resource: per role (base, genixer_l, genixer_s, judge, region_clip, retraining), where its
model comes from and how it runs. Empty settings train the embedded models here on the CPU; a role given
a checkpoint (LLaVA-1.5, Fuyu-8B, OpenCLIP ViT-L/14 ...) loads it instead of training it."""

from typing import Optional

import dagster as dg
from pydantic import Field

from genixer.models.checkpoint import load_model, resolve_device
from resources.training import MIXED_PRECISION, TrainOverrides

ROLES = ("base", "genixer_l", "genixer_s", "judge", "region_clip", "retraining")
DTYPES = ("float32", "bfloat16", "float16")
# A fine-tune starting from a model with more parameters than this trains LoRA adapters unless lora_rank says otherwise.
LORA_ABOVE_PARAMS = 1_000_000_000
AUTO_LORA_RANK = 16


class ModelRole(dg.Config):
    """One role's model. Unset fields take the backend's defaults (device, dtype) or the preset's (training)."""

    checkpoint: Optional[str] = Field(None, description=(
        "a local checkpoint used instead of training this role. MLLM roles: a Hugging Face directory with safetensors "
        "weights (e.g. llava-hf/llava-1.5-7b-hf, adept/fuyu-8b downloaded beforehand). region_clip: an open_clip "
        "directory (open_clip_config.json + *.safetensors) or an open_clip architecture name (ViT-L-14) with `weights`. "
        "base: genixer_l / genixer_s / retraining are fine-tuned from it. retraining: the start point of every recipe "
        "(default: base_mllm)"))
    weights: Optional[str] = Field(None, description="region_clip with a named architecture: its .safetensors file")
    device: Optional[str] = Field(None, description="auto | cpu | cuda | cuda:N | mps (default: the backend's)")
    dtype: Optional[str] = Field(None, description="float32 | bfloat16 | float16: the dtype the model is loaded in (default: the backend's)")
    batch_size: Optional[int] = Field(None, description="inference batch: requests per generate() / scoring call (default: the asset's)")
    train_batch_size: Optional[int] = Field(None, description="training micro-batch per process (default: preset)")
    grad_accum: Optional[int] = Field(None, description="micro-batches per optimizer step (default: preset)")
    mixed_precision: Optional[str] = Field(None, description="no | bf16 | fp16, through accelerate (default: no)")
    gradient_checkpointing: Optional[bool] = Field(None, description="recompute activations in the backward pass (default: off)")
    max_length: Optional[int] = Field(None, description="training tokens per sequence (default: the model's max_position_embeddings)")
    lora_rank: Optional[int] = Field(None, description=(
        f"0: train all weights; k > 0: LoRA adapters of rank k; unset: LoRA rank {AUTO_LORA_RANK} when the start "
        f"model has over {LORA_ABOVE_PARAMS:,} parameters, all weights otherwise"))
    lora_targets: Optional[list[str]] = Field(None, description="module names LoRA adapts (default: every Linear of the language model)")

    def training(self) -> TrainOverrides:
        """The role's training settings as the overrides they are (its `train_batch_size` is the TrainConfig's batch_size;
        `batch_size` here is the inference batch)."""
        return TrainOverrides(batch_size=self.train_batch_size, grad_accum=self.grad_accum, mixed_precision=self.mixed_precision,
                              gradient_checkpointing=self.gradient_checkpointing, max_length=self.max_length,
                              lora_rank=self.lora_rank, lora_targets=self.lora_targets)


class MLLMBackend(dg.ConfigurableResource):
    """Where models come from and where they run: defaults for every role, and one ModelRole per role.

    Example (the paper's setup): ``base.checkpoint: /models/llava-1.5-7b-hf``, ``judge.checkpoint:
    /models/fuyu-8b``, ``region_clip: {checkpoint: ViT-L-14, weights: /models/open_clip_vit_l14.safetensors}``,
    ``dtype: bfloat16`` (see examples/paper_setup.yaml).
    """

    device: str = Field("auto", description="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    dtype: str = Field("float32", description="float32 | bfloat16 | float16")
    trust_remote_code: bool = Field(False, description="allow code shipped with a checkpoint (off by default)")
    base: ModelRole = Field(default_factory=ModelRole, description="base_mllm: the solver the generators start from")
    genixer_l: ModelRole = Field(default_factory=ModelRole, description="Genixer_L, the general-task generator")
    genixer_s: ModelRole = Field(default_factory=ModelRole, description="Genixer_S, the grounding-task generator")
    judge: ModelRole = Field(default_factory=ModelRole, description="judge_mllm (Fuyu-8B in the paper)")
    region_clip: ModelRole = Field(default_factory=ModelRole, description="the region CLIP (OpenCLIP ViT-L/14 in the paper)")
    retraining: ModelRole = Field(default_factory=ModelRole, description="retrained_models and their benchmark predictions")

    def role(self, name: str) -> ModelRole:
        if name not in ROLES:
            raise ValueError(f"unknown model role {name!r}; roles are {ROLES}")
        r = getattr(self, name)
        for field, allowed in (("dtype", DTYPES), ("mixed_precision", MIXED_PRECISION)):
            value = getattr(r, field)
            if value is not None and value not in allowed:
                raise ValueError(f"backend.{name}.{field} must be one of {allowed}, not {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"backend.dtype must be one of {DTYPES}, not {self.dtype!r}")
        return r

    def checkpoint(self, name: str) -> Optional[str]:
        return self.role(name).checkpoint

    def device_of(self, name: str) -> str:
        return self.role(name).device or self.device

    def torch_device(self, name: str | None = None):
        return resolve_device(self.device_of(name) if name else self.device)

    def load(self, path, role: str | None = None):
        """(model, processor) from a checkpoint directory, in eval mode on the role's device in its dtype."""
        r = self.role(role) if role else ModelRole()
        return load_model(path, device=r.device or self.device, dtype=r.dtype or self.dtype, trust_remote_code=self.trust_remote_code)

    def batch_size(self, name: str, default: int) -> int:
        return self.role(name).batch_size or default

    def train_config(self, name: str, cfg):
        """A TrainConfig with the role's training settings applied (hardware: batch, accumulation, precision,
        checkpointing, max_length, LoRA); what a run's own config sets is applied after this."""
        return self.role(name).training().apply(cfg)

    def auto_lora(self, name: str):
        """The LoRA a fine-tune of this role uses when its start model is large and lora_rank is unset (None: never)."""
        from genixer.training import LoraSpec

        r = self.role(name)
        if r.lora_rank is not None:
            return None
        return LoraSpec.for_rank(AUTO_LORA_RANK, r.lora_targets)

    def load_kwargs(self, name: str) -> dict:
        """Device and dtype a fine-tune of this role loads its start model with."""
        r = self.role(name)
        return {"device": r.device or self.device, "dtype": r.dtype or self.dtype}
