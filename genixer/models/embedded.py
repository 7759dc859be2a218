"""Tiny from-config multimodal models built from transformers' own classes (no hub access).

- Generator: ``LlavaForConditionalGeneration`` (CLIP vision tower + projector + Llama) with ``LlavaProcessor``.
- Judge: ``FuyuForCausalLM`` (raw image patches linearly projected into a Persimmon decoder) with
  ``FuyuProcessor``: a deliberately different architecture from the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    FuyuConfig,
    FuyuForCausalLM,
    FuyuImageProcessor,
    FuyuProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PersimmonConfig,
    PreTrainedTokenizerFast,
)

from genixer.models.tokenizer import FUYU_WORDS, IMAGE


@dataclass
class EmbeddedSize:
    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 1
    vision_heads: int = 2
    vision_intermediate: int = 64
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 128
    max_position_embeddings: int = 512
    vision_act: str = "quick_gelu"  # "gelu" when the tower is initialised from an open_clip ViT
    vision_feature_layer: int = -2  # LLaVA's vision_feature_layer: -2, the penultimate layer, as LLaVA-1.5 (-1 measured no better on the demo)

def _special_ids(tokenizer: PreTrainedTokenizerFast) -> dict:
    return dict(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def vision_config(size: EmbeddedSize) -> CLIPVisionConfig:
    """The embedded LLaVA's CLIP vision tower (also what the vision pre-stage trains)."""
    return CLIPVisionConfig(
        image_size=size.image_size,
        patch_size=size.patch_size,
        hidden_size=size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        intermediate_size=size.vision_intermediate,
        projection_dim=size.vision_hidden,
        hidden_act=size.vision_act,
    )


def feature_layer(size: EmbeddedSize) -> int:
    """The tower layer LLaVA feeds its projector (a one-layer tower has only its last)."""
    return size.vision_feature_layer if size.vision_layers > 1 else -1


def image_processor(size: EmbeddedSize) -> CLIPImageProcessor:
    # Resize the whole image to image_size x image_size, no center crop: boxes near the borders of
    # non-square scenes stay visible and box coordinates keep their meaning relative to the full image.
    return CLIPImageProcessor(
        do_resize=True,
        size={"height": size.image_size, "width": size.image_size},
        do_center_crop=False,
        crop_size={"height": size.image_size, "width": size.image_size},
        do_convert_rgb=True,
    )


def build_embedded_mllm(
    tokenizer: PreTrainedTokenizerFast, size: EmbeddedSize | None = None
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    size = size or EmbeddedSize()
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_hidden,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_heads,
        intermediate_size=size.text_intermediate,
        max_position_embeddings=size.max_position_embeddings,
        tie_word_embeddings=False,
        **_special_ids(tokenizer),
    )
    n_patches = (size.image_size // size.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision_config(size),
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=n_patches,
        # CLS dropped ("default"), as in LLaVA-1.5.
        vision_feature_layer=feature_layer(size),
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config)
    _set_generation_ids(model, tokenizer)
    processor = LlavaProcessor(
        image_processor=image_processor(size),
        tokenizer=tokenizer,
        patch_size=size.patch_size,
        vision_feature_select_strategy="default",
        # CLIP adds a CLS embedding that "default" drops: n_patches + 1 - 1 image tokens per image.
        num_additional_image_tokens=1,
        image_token=IMAGE,
    )
    return model, processor


def build_embedded_judge(
    tokenizer: PreTrainedTokenizerFast, size: EmbeddedSize | None = None
) -> tuple[FuyuForCausalLM, FuyuProcessor]:
    size = size or EmbeddedSize()
    text = PersimmonConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.text_hidden,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        intermediate_size=size.text_intermediate,
        max_position_embeddings=size.max_position_embeddings,
        hidden_act="relu2",
        qk_layernorm=True,
        tie_word_embeddings=False,
        **_special_ids(tokenizer),
    )
    config = FuyuConfig(
        text_config=text,
        image_size=size.image_size,
        patch_size=size.patch_size,
        num_channels=3,
        image_token_id=tokenizer.convert_tokens_to_ids(FUYU_WORDS[0]),
        tie_word_embeddings=False,
    )
    model = FuyuForCausalLM(config)
    _set_generation_ids(model, tokenizer)
    # Fuyu keeps the aspect ratio: it downsizes to fit image_size x image_size, pads, and only the patches
    # covering the real image become tokens (one |NEWLINE| per patch row).
    image_processor = FuyuImageProcessor(
        size={"height": size.image_size, "width": size.image_size},
        patch_size={"height": size.patch_size, "width": size.patch_size},
    )
    processor = FuyuProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return model, processor


def _set_generation_ids(model, tokenizer: PreTrainedTokenizerFast) -> None:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id


def vision_tower_from_open_clip(llava, clip) -> None:
    """Copy an open_clip ViT's weights into the LLaVA CLIP vision tower (the same network laid
    out by another library): LLaVA starts from a pretrained CLIP, and so can the embedded model.
    The towers must agree in image size, patch size, width, depth, heads, MLP size and activation."""
    v, tower = clip.visual, llava.model.vision_tower
    sd = {"embeddings.patch_embedding.weight": v.conv1.weight, "embeddings.class_embedding": v.class_embedding,
          "embeddings.position_embedding.weight": v.positional_embedding, "pre_layrnorm.weight": v.ln_pre.weight,
          "pre_layrnorm.bias": v.ln_pre.bias, "post_layernorm.weight": v.ln_post.weight, "post_layernorm.bias": v.ln_post.bias}
    for i, block in enumerate(v.transformer.resblocks):
        p = f"encoder.layers.{i}."
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), block.attn.in_proj_weight.chunk(3), block.attn.in_proj_bias.chunk(3)):
            sd[p + f"self_attn.{name}.weight"], sd[p + f"self_attn.{name}.bias"] = w, b
        pairs = {"self_attn.out_proj": block.attn.out_proj, "layer_norm1": block.ln_1, "layer_norm2": block.ln_2,
                 "mlp.fc1": block.mlp.c_fc, "mlp.fc2": block.mlp.c_proj}
        for name, mod in pairs.items():
            sd[p + name + ".weight"], sd[p + name + ".bias"] = mod.weight, mod.bias
    tower.load_state_dict({k: t.detach().clone() for k, t in sd.items()}, strict=True)  # any mismatch raises
