"""Tiny random checkpoints of the real model families, saved offline in their standard on-disk layout.

Each ``save_tiny_*(path, seed)`` builds a randomly initialised model of the real architecture (same
classes, same config structure, sizes scaled down), a tokenizer trained here with the ``tokenizers``
library on :data:`CORPUS` in the family's own tokenizer style, the family's real processor classes and
chat template, and writes them with ``save_pretrained`` (safetensors only): transformers 5's file set, or
with ``hub_layout=True`` the file split of the family's hub repository (sharded weights + index,
preprocessor_config.json, chat_template.json). Nothing is downloaded. Same seed, same bytes on disk.

- :func:`save_tiny_llava`: ``LlavaForConditionalGeneration`` (CLIP ViT, patch 14 + Llama) as llava-hf/llava-1.5-7b-hf.
- :func:`save_tiny_qwen2_vl`: ``Qwen2VLForConditionalGeneration`` as Qwen/Qwen2-VL-7B-Instruct.
- :func:`save_tiny_fuyu`: ``FuyuForCausalLM`` as adept/fuyu-8b.
- :func:`save_tiny_open_clip`: open_clip ``ViT-L-14`` scaled down, as an open_clip hub repository
  (``open_clip_config.json`` + ``open_clip_model.safetensors``), readable by
  :func:`genixer.region_clip.load_region_clip`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from tokenizers.processors import TemplateProcessing
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    FuyuConfig,
    FuyuForCausalLM,
    FuyuImageProcessor,
    FuyuProcessor,
    LlamaConfig,
    LlamaTokenizer,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PersimmonConfig,
    PreTrainedTokenizerFast,
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import (
    PRETOKENIZE_REGEX as QWEN2_PRETOKENIZE_REGEX,
)

from genixer.models.checkpoint import (
    save_model,  # model.safetensors + config + generation config + processor
)

# A small English corpus in the register of the project's texts (scene questions, boxes, Yes/No answers).
# Every tokenizer below is trained on it; "Yes" and "No" occur both line-initially and after a space.
CORPUS = [
    "Yes, there is a red circle in the image.",
    "No, there is no blue square in the picture.",
    "Is there a green triangle on the left? Yes.",
    "Is the large circle above the small square? No.",
    "Answer the question with Yes or No.",
    "Yes or No: is the yellow star next to the purple hexagon?",
    "Describe the image in one sentence.",
    "The image shows a red circle, a blue square and a green triangle.",
    "Where is the small orange circle? It is at [0.125, 0.250, 0.375, 0.500].",
    "Please give the bounding box of the blue square.",
    "The bounding box of the object is [0.1, 0.2, 0.3, 0.4].",
    "What color is the triangle? The triangle is green.",
    "How many circles are there? There are 3 circles.",
    "How many squares are in the picture? There are 2 squares.",
    "Which object is to the right of the star? The hexagon is to the right of the star.",
    "What shape is at the top of the image? A circle is at the top.",
    "Provide a short caption for this picture.",
    "A large white square below a small black circle.",
    "Is this region described correctly? Yes, it is.",
    "Is this answer correct? No, it is not.",
    "The point is at (0.42, 0.58) in the image.",
    "What is shown in this image? A few colored shapes on a gray background.",
    "You are a helpful assistant.",
    "USER: What is in the picture? ASSISTANT: A red circle.",
    "Count the objects, then answer the question.",
    "The first object is red and the second object is blue.",
    "Find the shape that is not like the others.",
    "Is the circle inside the square? Yes. Is the star inside the square? No.",
    "0 1 2 3 4 5 6 7 8 9 10 100",
]

BYTE_PIECES = [f"<0x{i:02X}>" for i in range(256)]  # sentencepiece's byte-fallback pieces

# llava-hf/llava-1.5-7b-hf chat_template.json, "Update chat_template.json to incorporate `generation`
# tag (#29)" (the same text transformers vendors in tests/models/llava/test_processing_llava.py for
# hf-internal-testing/tiny-processor-llava, "created ... from llava-hf/llava-1.5-7b-hf").
# Renders "USER: <image>\n{text} ASSISTANT:".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}"
    "{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# Qwen/Qwen2-VL-7B-Instruct chat_template.json at commit db8ce505bd3d523ac372f552648175c684c6f3f7
# ("Update chat_template.json to incorporate `generation` tag"),
# https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/db8ce505bd3d523ac372f552648175c684c6f3f7/chat_template.json
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
    "{% else %}{{ message['content'] }}{% endif %}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ content['text'] }}{% endgeneration %}"
    "{% else %}{{ content['text'] }}{% endif %}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's special tokens in their real order (ids 151643.. in Qwen2-VL; here right after the BPE vocabulary).
QWEN2_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]

# Pieces FuyuProcessor and Fuyu's box/point syntax look up by string: they are ordinary pieces of
# adept/fuyu-8b's sentencepiece vocabulary (only <unk> and |ENDOFTEXT| are added tokens there).
FUYU_PIECES = ["|SPEAKER|", "|NEWLINE|", "<s>", "<0x00>", "<0x01>", "<0x02>", "<0x03>", "<0x04>"]
FUYU_EOS = "|ENDOFTEXT|"


def _train_bpe(pre_tokenizer, specials: list[str], vocab_size: int, normalizer=None, alphabet=(),
               corpus: list[str] = CORPUS) -> tuple[dict, list]:
    """(vocab, merges) of a BPE trained on ``corpus``; ``specials`` take the first ids, in order."""
    tok = Tokenizer(models.BPE())
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=list(alphabet),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    model = json.loads(tok.to_str())["model"]
    return model["vocab"], [tuple(m) for m in model["merges"]]


def _seeded(seed: int, build):
    """``build()`` under torch seed ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _generation_ids(model, bos, eos, pad) -> None:
    gc = model.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = bos, eos, pad


def _save(model, processor, path, hub_layout: bool) -> Path:
    """transformers 5's layout (one model.safetensors, processor_config.json holding the image processor,
    chat_template.jinja), or with ``hub_layout`` the file split of the hub repositories, written by
    transformers 4: sharded weights + model.safetensors.index.json, preprocessor_config.json,
    chat_template.json, processor_config.json only if the processor has arguments of its own."""
    if not hub_layout:
        return save_model(model, processor, path)
    path = Path(path)
    model.save_pretrained(path, max_shard_size="400KB")
    processor.save_pretrained(path)
    cfg = json.loads((path / "processor_config.json").read_text())
    image = {**cfg.pop("image_processor"), "processor_class": cfg["processor_class"]}
    cfg.pop("video_processor", None)  # Qwen2-VL-7B-Instruct has none: transformers falls back to defaults
    (path / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    if set(cfg) > {"processor_class"}:
        (path / "processor_config.json").write_text(json.dumps(cfg, indent=2))
    else:
        (path / "processor_config.json").unlink()
    if (jinja := path / "chat_template.jinja").exists():
        (path / "chat_template.json").write_text(json.dumps({"chat_template": jinja.read_text()}, indent=2))
        jinja.unlink()
    return path


# ---- LLaVA-1.5 --------------------------------------------------------------------------------------

# LLaVA-1.5 turns as its chat template writes them, for the tokenizer that merges across spaces.
LLAVA_TURNS = [f"USER: <image>\n{q} ASSISTANT: {a}" for q, a in [
    ("Is there a red circle?", "Yes"), ("Is the star above the square?", "No"),
    ("Answer Yes or No.", "Yes"), ("Is this answer correct?", "No"), ("What is in the picture?", "Question: a circle"),
]] * 3


def tiny_llama_tokenizer(merge_across_spaces: bool = False) -> LlamaTokenizer:
    """Llama-style sentencepiece BPE (metaspace "▁", byte fallback; <unk>=0, <s>=1, </s>=2, bytes 3..258)
    plus LLaVA-1.5's added <image> and <pad> at the end of the vocabulary (32000, 32001 in llava-hf).

    ``merge_across_spaces``: trained without splitting at spaces (as a sentencepiece model trained with
    ``split_by_whitespace=false``; LlamaTokenizer's own Metaspace does not split either), on CORPUS plus
    LLaVA turns, so it has merges such as ``':▁'`` and ``'ASSISTANT:▁Yes'`` that join an answer to the end
    of its prompt."""
    if merge_across_spaces:
        normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        vocab, merges = _train_bpe(None, ["<unk>", "<s>", "</s>", *BYTE_PIECES], vocab_size=700,
                                   normalizer=normalizer, corpus=CORPUS + LLAVA_TURNS)
    else:
        vocab, merges = _train_bpe(pre_tokenizers.Metaspace("▁", prepend_scheme="always", split=True),
                                   ["<unk>", "<s>", "</s>", *BYTE_PIECES], vocab_size=700)
    for tok in ("<image>", "<pad>"):
        vocab[tok] = len(vocab)
    return LlamaTokenizer(vocab=vocab, merges=merges, legacy=False, add_bos_token=True, pad_token="<pad>",
                          extra_special_tokens={"image_token": "<image>"})


def build_tiny_llava(seed: int = 0, merge_across_spaces: bool = False):
    tokenizer = tiny_llama_tokenizer(merge_across_spaces)
    image_size, patch = 56, 14  # LLaVA-1.5: 336 px, patch 14 (24 x 24 patches); here 4 x 4
    vision = CLIPVisionConfig(image_size=image_size, patch_size=patch, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=32, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, rms_norm_eps=1e-5,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         image_seq_length=(image_size // patch) ** 2, vision_feature_layer=-2,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu",
                         tie_word_embeddings=False)
    model = _seeded(seed, lambda: LlavaForConditionalGeneration(config))
    _generation_ids(model, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    # llava-hf's preprocessor_config.json: shortest edge 336, centre crop 336, bicubic, OpenAI CLIP mean/std.
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size}, do_center_crop=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=LLAVA_CHAT_TEMPLATE)
    return model, processor


def save_tiny_llava(path: str | Path, seed: int = 0, hub_layout: bool = False, merge_across_spaces: bool = False) -> Path:
    return _save(*build_tiny_llava(seed, merge_across_spaces), path, hub_layout)


# ---- Qwen2-VL ---------------------------------------------------------------------------------------

def tiny_qwen2_tokenizer() -> Qwen2Tokenizer:
    """Byte-level BPE with Qwen2's pre-tokenizer (Qwen2Tokenizer's own pipeline) and its special tokens;
    eos <|im_end|>, pad <|endoftext|>, no bos, as in Qwen2-VL-7B-Instruct's tokenizer_config.json."""
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    vocab, merges = _train_bpe(pre, [], vocab_size=700, normalizer=normalizers.NFC(),
                               alphabet=pre_tokenizers.ByteLevel.alphabet())
    for tok in QWEN2_SPECIALS:
        vocab[tok] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN2_SPECIALS})
    return tokenizer


def build_tiny_qwen2_vl(seed: int = 0):
    tokenizer = tiny_qwen2_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN2_SPECIALS}
    hidden, heads = 64, 4  # head_dim 16: the M-RoPE sections (t, h, w) must add up to head_dim / 2
    text = {"vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": heads, "num_key_value_heads": 2, "max_position_embeddings": 1024,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"]}
    # Qwen2-VL's ViT: patch 14, 2 x 2 patch merge, temporal patch 2; depth 32, width 1280 in the real one.
    vision = {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 4, "hidden_size": hidden, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    model = _seeded(seed, lambda: Qwen2VLForConditionalGeneration(config))
    _generation_ids(model, ids["<|endoftext|>"], [ids["<|im_end|>"], ids["<|endoftext|>"]], ids["<|endoftext|>"])
    # 56 x 56 .. 112 x 112 pixels: 4 to 16 patches of 28 x 28 px, i.e. 4 to 16 image tokens (real: 4 to 16384).
    pixels = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return model, processor


def save_tiny_qwen2_vl(path: str | Path, seed: int = 0, hub_layout: bool = False) -> Path:
    return _save(*build_tiny_qwen2_vl(seed), path, hub_layout)


# ---- Fuyu -------------------------------------------------------------------------------------------

def tiny_fuyu_tokenizer() -> PreTrainedTokenizerFast:
    """Sentencepiece-like BPE as adept/fuyu-8b's (legacy Llama style: "▁" prepended to the text, byte
    fallback, <unk>=0, |ENDOFTEXT| bos = eos). FuyuProcessor's pieces (:data:`FUYU_PIECES`) are ordinary
    vocabulary pieces, isolated by the pre-tokenizer, so the image placeholder "|SPEAKER|...|NEWLINE|"
    tokenizes to "▁" + placeholders: FuyuProcessor drops that first id, as with the real tokenizer."""
    normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tags = "|".join(t.replace("|", r"\|") for t in FUYU_PIECES)
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(tags), behavior="isolated"),
                                   pre_tokenizers.Split("▁", behavior="merged_with_next")])
    # <0x00>..<0x04> (box/point tags, begin-of-answer) are the byte pieces, as in a sentencepiece vocabulary.
    vocab, merges = _train_bpe(pre, ["<unk>", *FUYU_PIECES[:3], FUYU_EOS, *BYTE_PIECES], 700, normalizer=normalizer)
    # ignore_merges: a pre-tokenized piece that is a whole vocabulary entry ("|SPEAKER|") is one token.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True,
                               ignore_merges=True))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", FUYU_EOS)])
    tok.post_processor = TemplateProcessing(single=f"{FUYU_EOS} $A", pair=f"{FUYU_EOS} $A $B",
                                            special_tokens=[(FUYU_EOS, vocab[FUYU_EOS])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=FUYU_EOS, eos_token=FUYU_EOS, unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])


def build_tiny_fuyu(seed: int = 0):
    tokenizer = tiny_fuyu_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(FUYU_EOS)
    # Persimmon decoder as fuyu-8b's (relu2, qk layernorm, half rotary, theta 25000), scaled down.
    text = PersimmonConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=4, hidden_act="relu2", qk_layernorm=True, partial_rotary_factor=0.5,
                           rope_theta=25000.0, layer_norm_eps=1e-5, max_position_embeddings=1024,
                           bos_token_id=eos, eos_token_id=eos, pad_token_id=0, tie_word_embeddings=False)
    patch = 8  # fuyu-8b: 30 px patches, images padded to 1080 x 1920; here 8 px and 48 x 80 (6 x 10 patches)
    config = FuyuConfig(text_config=text, image_size=patch * 6, patch_size=patch, num_channels=3,
                        image_token_id=tokenizer.convert_tokens_to_ids("|SPEAKER|"), pad_token_id=0,
                        bos_token_id=eos, eos_token_id=eos, tie_word_embeddings=False)
    model = _seeded(seed, lambda: FuyuForCausalLM(config))
    _generation_ids(model, eos, eos, 0)
    image_processor = FuyuImageProcessor(size={"height": patch * 6, "width": patch * 10},
                                         patch_size={"height": patch, "width": patch})
    return model, FuyuProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_tiny_fuyu(path: str | Path, seed: int = 0, hub_layout: bool = False) -> Path:
    return _save(*build_tiny_fuyu(seed), path, hub_layout)


# ---- OpenCLIP ViT-L/14 ------------------------------------------------------------------------------

def tiny_open_clip_config(name: str = "ViT-L-14") -> dict:
    """open_clip's own ``name`` config with every size scaled down (patch size, vocabulary, context length,
    activation and head layout kept), plus the preprocess_cfg of the laion hub repositories."""
    from open_clip import get_model_config
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    cfg = get_model_config(name)
    cfg["embed_dim"] = 32
    cfg["vision_cfg"].update(image_size=56, layers=2, width=64, head_width=32)  # 4 x 4 patches of 14 px
    cfg["text_cfg"].update(width=32, heads=2, layers=2)
    return {"model_cfg": cfg, "preprocess_cfg": {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)}}


def save_tiny_open_clip(path: str | Path, seed: int = 0, name: str = "ViT-L-14") -> Path:
    """``open_clip_config.json`` + ``open_clip_model.safetensors``, the layout of an open_clip hub repository."""
    from open_clip import CLIP
    from safetensors.torch import save_file

    from genixer.models.open_clip_files import CONFIG_NAME, WEIGHTS_NAME

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = tiny_open_clip_config(name)
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    # What open_clip's factory builds for this config (the loader checks the state dict strictly).
    model = _seeded(seed, lambda: CLIP(**config["model_cfg"]))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path / WEIGHTS_NAME))
    return path
