"""The LLaVA vision tower initialised from an open_clip ViT computes the same function."""

import pytest
import torch

from genixer.models.embedded import EmbeddedSize, build_embedded_mllm, vision_tower_from_open_clip
from genixer.models.tokenizer import build_tokenizer
from genixer.region_clip import RegionClipSize, build_region_clip

SIZE = EmbeddedSize(image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2, vision_intermediate=128,
                    text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64, vision_act="gelu")


def test_copied_tower_matches_open_clip():
    torch.manual_seed(0)
    clip, _, _ = build_region_clip(RegionClipSize(image_size=32, patch_size=8, vision_width=32, vision_layers=2, vision_heads=2,
                                                  text_width=32, text_layers=1, text_heads=2, embed_dim=16))
    llava, _ = build_embedded_mllm(build_tokenizer(["a b"]), SIZE)
    vision_tower_from_open_clip(llava, clip)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = llava.model.vision_tower(pixel_values=x).pooler_output @ clip.visual.proj
        theirs = clip.visual(x)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_mismatched_towers_are_refused():
    clip, _, _ = build_region_clip(RegionClipSize(image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=2))
    llava, _ = build_embedded_mllm(build_tokenizer(["a b"]), SIZE)
    with pytest.raises(RuntimeError, match="size mismatch"):
        vision_tower_from_open_clip(llava, clip)
