import json

import pytest
import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from genixer.decoding import Sampling, generate
from genixer.models.checkpoint import CheckpointError, load_model, save_model
from genixer.models.embedded import EmbeddedSize, build_embedded_judge, build_embedded_mllm
from genixer.models.inputs import prompt_text
from genixer.models.tokenizer import FUYU_WORDS, IMAGE, build_tokenizer

torch.set_num_threads(1)

TEXTS = [
    "Please provide a clear and direct question and answer after examining the image. This is a Common VQA task.",
    "Question: What colour is it? Answer: red",
    "Question: Where is the small circle? Answer: [0.125,0.300,0.281,0.456]\nQuestion: And the star? Answer: [0.410,0.620]",
    "Boxes [0.1,0.2,0.3,0.4;0.5,0.6,0.7,0.8] (two of them), 3 shapes; isn't it nice?",
    "Yes No",
]
SIZE = EmbeddedSize(image_size=32, patch_size=8, text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(TEXTS)


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    im = Image.new("RGB", (128, 96), (30, 30, 30))
    im.paste((255, 0, 0), (10, 10, 50, 40))
    im.save(path)
    return path


def test_tokenizer_round_trip_exact(tok, tmp_path):
    extra = ["[0.125,0.300]", "a  b\n\nQuestion: x?  Answer: [0.5,0.5]\n", " Question  red"]
    for text in TEXTS + extra:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.unk_token_id not in tok(TEXTS[2])["input_ids"]
    # digits are single tokens, spaces ride on the following word
    assert tok.tokenize("[0.125,0.300]") == ["▁[", "0", ".", "1", "2", "5", ",", "0", ".", "3", "0", "0", "]"]
    assert tok.pad_token_id == 0  # FuyuProcessor forces pad id 0
    tok.save_pretrained(tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded(TEXTS[2])["input_ids"] == tok(TEXTS[2])["input_ids"]
    assert loaded.decode(loaded(TEXTS[2])["input_ids"], skip_special_tokens=True) == TEXTS[2]


def test_coordinate_tokens(tmp_path):
    """coordinate_tokens: each 3-decimal value in [0, 1] is one token; other numbers keep digit tokens; exact round trip."""
    tok = build_tokenizer(TEXTS, coordinate_tokens=True)
    assert tok.tokenize("[0.125,0.300]") == ["▁[", "0.125", ",", "0.300", "]"]
    assert tok.tokenize("Boxes [0.410, 1.000]") == ["▁Boxes", "▁[", "0.410", ",", "▁1.000", "]"]
    # not on the grid: 4 decimals, above 1, one decimal, part of a longer number
    assert tok.tokenize("0.1234 1.005 0.5 10.125") == ["▁0", ".", "1", "2", "3", "4", "▁1", ".", "0", "0", "5",
                                                       "▁0", ".", "5", "▁1", "0", ".", "1", "2", "5"]
    extra = ["Boxes [0.000,0.999;1.000,0.5] 0.1234 10.125 x0.250y", TEXTS[2]]
    for text in TEXTS + extra:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == text
    tok.save_pretrained(tmp_path / "tok")
    assert AutoTokenizer.from_pretrained(tmp_path / "tok").tokenize(TEXTS[2]) == tok.tokenize(TEXTS[2])
    assert len(tok) == len(build_tokenizer(TEXTS)) + 2 * 1001


def test_llava_image_token_expansion(tok, image_path):
    model, processor = build_embedded_mllm(tok, SIZE)
    im = Image.open(image_path)
    batch = processor(images=[im], text=[prompt_text(processor, "What colour is it?")], return_tensors="pt")
    n_patches = (SIZE.image_size // SIZE.patch_size) ** 2  # CLS dropped by the "default" strategy
    assert (batch["input_ids"] == model.config.image_token_id).sum().item() == n_patches
    assert batch["pixel_values"].shape == (1, 3, SIZE.image_size, SIZE.image_size)  # resized, not cropped
    logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tok))


def test_fuyu_processor_patches(tok, image_path):
    model, processor = build_embedded_judge(tok, SIZE)
    im = Image.open(image_path)  # 128x96 -> fits 32x24 -> 4x3 patches of 8px
    batch = processor(images=[im], text=["What colour is it?"], return_tensors="pt", return_legacy_image_output=False)
    ids = batch["input_ids"][0].tolist()
    speaker, newline = tok.convert_tokens_to_ids(FUYU_WORDS)
    assert ids.count(speaker) == 12 and ids.count(newline) == 3
    assert batch["pixel_values"].shape == (12, 8 * 8 * 3)
    assert tok.convert_ids_to_tokens(ids[-1]) == "<0x04>"  # begin-of-answer
    assert model(**batch).logits.shape[1] == len(ids)


@pytest.mark.parametrize("build", [build_embedded_mllm, build_embedded_judge])
def test_save_load_round_trip(tok, image_path, tmp_path, build):
    model, processor = build(tok, SIZE)
    model.eval()
    save_model(model, processor, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    loaded, loaded_proc = load_model(tmp_path / "ckpt", device="cpu")
    assert type(loaded) is type(model) and type(loaded_proc) is type(processor)
    kwargs = {"return_legacy_image_output": False} if build is build_embedded_judge else {}
    text = [prompt_text(processor, "What colour is it?")]
    batch = processor(images=[Image.open(image_path)], text=text, return_tensors="pt", **kwargs)
    batch2 = loaded_proc(images=[Image.open(image_path)], text=text, return_tensors="pt", **kwargs)
    for key in batch:
        assert torch.equal(batch[key], batch2[key])
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, loaded(**batch2).logits, atol=1e-6)


def test_load_user_llava_checkpoint(tok, image_path, tmp_path):
    """A LLaVA-1.5-style checkpoint written by plain save_pretrained (shortest-edge resize + center crop,
    penultimate vision layer) loads and generates through our generic routines."""
    vision = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids(IMAGE),
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_seq_length=16,
    )
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    model.save_pretrained(tmp_path / "user")
    processor.save_pretrained(tmp_path / "user")
    loaded, loaded_proc = load_model(tmp_path / "user")
    assert isinstance(loaded, LlavaForConditionalGeneration) and not loaded.training
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    out = generate(loaded, loaded_proc, [image_path], ["What colour is it?"], Sampling(max_new_tokens=4))
    # through our routines the loaded model says what the model that was saved says (greedy), processor and all
    assert len(out) == 1 and len(out[0]) == 1
    assert out == generate(model.eval(), processor, [image_path], ["What colour is it?"], Sampling(max_new_tokens=4))


def test_checkpoint_errors(tok, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path / "empty")

    model, processor = build_embedded_mllm(tok, SIZE)
    save_model(model, processor, tmp_path / "pickled")
    (tmp_path / "pickled" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled") as err:
        load_model(tmp_path / "pickled")
    assert str(tmp_path / "pickled") in str(err.value)

    model.save_pretrained(tmp_path / "noproc")  # weights without processor files
    with pytest.raises(CheckpointError, match="cannot load processor"):
        load_model(tmp_path / "noproc")

    (tmp_path / "pickled" / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no model weights"):
        load_model(tmp_path / "pickled")

    lm = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    lm.save_pretrained(tmp_path / "textonly")
    with pytest.raises(CheckpointError, match="unsupported architecture model_type='llama'"):
        load_model(tmp_path / "textonly")

    (tmp_path / "bogus").mkdir()
    (tmp_path / "bogus" / "config.json").write_text(json.dumps({"model_type": "no_such_model"}))
    (tmp_path / "bogus" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="bogus"):
        load_model(tmp_path / "bogus")
