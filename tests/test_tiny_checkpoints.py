"""Tiny random checkpoints of LLaVA-1.5, Qwen2-VL, Fuyu and OpenCLIP ViT-L/14 (genixer.models.tiny):
standard layout on disk, loaded by the project's loaders, processors, chat templates, forward and generate."""

import hashlib

import pytest
import torch
from PIL import Image, ImageDraw

from genixer.decoding import Sampling, generate, score_yes_no
from genixer.models import tiny
from genixer.models.checkpoint import load_model
from genixer.models.inputs import (
    build_batch,
    computes_own_positions,
    encode_prompt_batch,
    encode_target,
    pad,
    prompt_text,
)

FAMILIES = ["llava", "qwen2_vl", "fuyu"]
QUESTION = "Is there a red circle?"
RENDERED = {  # apply_chat_template(one user turn: image + QUESTION, add_generation_prompt=True)
    "llava": f"USER: <image>\n{QUESTION} ASSISTANT:",
    "qwen2_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    f"<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n",
}
# Image tokens for the 64 x 48 test image: LLaVA 4 x 4 patches (CLS dropped); Qwen2-VL resized to
# 56 x 56, 4 x 4 patches merged 2 x 2; Fuyu unresized (fits 48 x 80), 6 rows x 8 patches + 6 |NEWLINE|.
IMAGE_TOKENS = {"llava": 16, "qwen2_vl": 4, "fuyu": 48}
# Tokens of (word, " " + word) with add_special_tokens=False: Llama's Metaspace prepends "▁" only if
# absent; Qwen2's byte-level BPE has "Yes" and "ĠYes"; Fuyu's legacy normalizer makes " Yes" "▁▁Yes".
YES_NO_TOKENS = {"llava": (1, 1), "qwen2_vl": (1, 1), "fuyu": (1, 2)}


def _image() -> Image.Image:
    img = Image.new("RGB", (64, 48), (128, 128, 128))
    ImageDraw.Draw(img).ellipse((10, 10, 30, 30), fill=(220, 30, 30))
    return img


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    family = request.param
    path = getattr(tiny, f"save_tiny_{family}")(tmp_path_factory.mktemp(family) / "ckpt", seed=0)
    return family, path


@pytest.fixture(scope="module")
def loaded(saved):
    family, path = saved
    return family, *load_model(path, device="cpu")


def test_standard_files_on_disk(saved):
    family, path = saved
    names = {p.name for p in path.iterdir()}
    expected = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                "tokenizer_config.json", "processor_config.json"}
    assert expected <= names, names
    # transformers 5 writes the chat template as chat_template.jinja; adept/fuyu-8b ships none.
    assert ("chat_template.jinja" in names) == (family != "fuyu")
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]
    assert sum(p.stat().st_size for p in path.iterdir()) < 20 * 2**20


def test_deterministic_per_seed(saved, tmp_path):
    family, path = saved
    save = getattr(tiny, f"save_tiny_{family}")
    again, other = save(tmp_path / "again", seed=0), save(tmp_path / "other", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha(again / name) == _sha(path / name), name
    assert _sha(other / "model.safetensors") != _sha(path / "model.safetensors")


@pytest.mark.parametrize("family", FAMILIES)
def test_hub_layout_loads_the_same(family, tmp_path):
    """The file split of the hub repositories (sharded weights, preprocessor_config.json, chat_template.json)."""
    path = getattr(tiny, f"save_tiny_{family}")(tmp_path / "hub", seed=0, hub_layout=True)
    names = {p.name for p in path.iterdir()}
    assert {"model.safetensors.index.json", "preprocessor_config.json"} <= names and "model.safetensors" not in names
    assert len([n for n in names if n.startswith("model-0000")]) > 1
    assert ("chat_template.json" in names) == (family != "fuyu") and "chat_template.jinja" not in names
    model, processor = load_model(path, device="cpu")
    ref_model, ref_processor = getattr(tiny, f"build_tiny_{family}")(0)
    assert processor.chat_template == ref_processor.chat_template
    kwargs = {"return_legacy_image_output": False} if family == "fuyu" else {}
    text = QUESTION if family == "fuyu" else RENDERED[family]
    got, ref = (p(images=[_image()], text=[text], return_tensors="pt", **kwargs) for p in (processor, ref_processor))
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    sd, ref_sd = model.state_dict(), ref_model.state_dict()
    assert sd.keys() == ref_sd.keys() and all(torch.equal(sd[k], ref_sd[k]) for k in ref_sd)


def test_load_model_classes_and_tokenizer_round_trip(loaded, saved):
    family, model, processor = loaded
    expected = {"llava": ("LlavaForConditionalGeneration", "LlavaProcessor"),
                "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
                "fuyu": ("FuyuForCausalLM", "FuyuProcessor")}[family]
    assert (type(model).__name__, type(processor).__name__) == expected
    assert not model.training
    built = getattr(tiny, f"build_tiny_{family}")(0)[1].tokenizer
    text = f"{QUESTION} Yes, at [0.125, 0.5]."
    assert processor.tokenizer(text)["input_ids"] == built(text)["input_ids"]


def test_chat_template(loaded):
    family, _, processor = loaded
    if family == "fuyu":
        assert processor.chat_template is None
        return
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    rendered = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert rendered == RENDERED[family]
    if family == "llava":
        assert rendered.startswith("USER: <image>\n") and rendered.endswith("ASSISTANT:")


@torch.inference_mode()
def test_forward_and_generate_with_image(loaded):
    family, model, processor = loaded
    if family == "fuyu":  # FuyuProcessor adds the image placeholder and its begin-of-answer token itself
        inputs = processor(images=[_image()], text=[QUESTION + "\n"], return_tensors="pt",
                           return_legacy_image_output=False)
        n_image = (inputs["input_ids"] == processor.image_token_id).sum().item()
        assert (inputs["input_ids"] == processor.image_newline_id).sum().item() == 6
    else:
        inputs = processor(images=[_image()], text=[RENDERED[family]], return_tensors="pt")
        n_image = (inputs["input_ids"] == model.config.image_token_id).sum().item()
    assert n_image == IMAGE_TOKENS[family]
    logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 3


def test_yes_no_token_counts(loaded):
    family, _, processor = loaded
    tok = processor.tokenizer
    counts = tuple(len(tok(w, add_special_tokens=False)["input_ids"]) for w in ("Yes", " Yes"))
    assert counts == YES_NO_TOKENS[family]
    assert counts == tuple(len(tok(w, add_special_tokens=False)["input_ids"]) for w in ("No", " No"))
    for word in ("Yes", "No"):  # one known token alone (score_yes_no takes the form after the prompt)
        (tid,) = encode_target(tok, word)
        assert tid != tok.unk_token_id


def test_pipeline_generate_and_score(loaded, tmp_path):
    """The project's own routines (the processor's chat template where it has one) run on all three."""
    _, model, processor = loaded
    png = tmp_path / "scene.png"
    _image().save(png)
    (texts,) = generate(model, processor, [png], [QUESTION], Sampling(max_new_tokens=3))
    assert len(texts) == 1 and isinstance(texts[0], str)
    p = score_yes_no(model, processor, [png, png], [QUESTION, QUESTION])
    assert p.shape == (2,) and 0 < p[0] < 1 and p[0] == pytest.approx(p[1], abs=1e-5)


def test_pipeline_gives_qwen2_vl_its_mrope_inputs():
    """genixer.models.inputs keeps Qwen2-VL's mm_token_type_ids (padded with the ids) and gives it no 1-D
    position ids, so the model computes the (t, h, w) M-RoPE positions of its image tokens itself, not its
    text-only fallback; without mm_token_type_ids and without position ids the model refuses images."""
    model, processor = tiny.build_tiny_qwen2_vl(seed=0)
    enc = encode_prompt_batch(processor, [_image()], [QUESTION])
    assert "mm_token_type_ids" in enc.row_keys and "mm_token_type_ids" not in enc.image_inputs
    batch = processor(images=[_image()], text=[prompt_text(processor, QUESTION)], return_tensors="pt")
    assert enc.ids[0] == batch["input_ids"][0].tolist()
    assert enc.row_keys["mm_token_type_ids"][0] == batch["mm_token_type_ids"][0].tolist()
    mrope, _ = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"],
                                         attention_mask=batch["attention_mask"])
    flat = pad(enc.ids, processor.tokenizer.pad_token_id, side="left")["position_ids"]
    assert mrope.shape == (3, *flat.shape) and not torch.equal(mrope[1], flat)
    piped = build_batch(enc, enc.ids, processor.tokenizer.pad_token_id, "left",
                        own_positions=computes_own_positions(model))
    assert "position_ids" not in piped and torch.equal(piped["mm_token_type_ids"], batch["mm_token_type_ids"])
    with pytest.raises(ValueError, match="mm_token_type_ids"), torch.inference_mode():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **enc.image_inputs)


def test_open_clip_vit_l14(tmp_path):
    import json

    from genixer.region_clip import CONFIG_NAME, WEIGHTS_NAME, load_region_clip

    path = tiny.save_tiny_open_clip(tmp_path / "clip", seed=0)
    assert {p.name for p in path.iterdir()} == {CONFIG_NAME, WEIGHTS_NAME}
    cfg = json.loads((path / CONFIG_NAME).read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"}
    # ViT-L-14's layout kept: patch 14, CLIP BPE vocabulary and 77-token context; sizes scaled down.
    assert cfg["model_cfg"]["vision_cfg"]["patch_size"] == 14
    assert (cfg["model_cfg"]["text_cfg"]["vocab_size"], cfg["model_cfg"]["text_cfg"]["context_length"]) == (49408, 77)
    assert _sha(tiny.save_tiny_open_clip(tmp_path / "again", seed=0) / WEIGHTS_NAME) == _sha(path / WEIGHTS_NAME)
    assert (path / WEIGHTS_NAME).stat().st_size < 20 * 2**20

    model, preprocess, tokenizer = load_region_clip(path)
    pixels = preprocess(_image()).unsqueeze(0)
    assert pixels.shape == (1, 3, 56, 56)
    with torch.inference_mode():
        image_features = model.encode_image(pixels)
        text_features = model.encode_text(tokenizer(["a red circle"]))
    assert image_features.shape == text_features.shape == (1, cfg["model_cfg"]["embed_dim"])
