import numpy as np
import pytest
import torch
from PIL import Image

from genixer.decoding import Sampling, generate, score_yes_no
from genixer.models.embedded import EmbeddedSize, build_embedded_judge, build_embedded_mllm
from genixer.models.inputs import prompt_text
from genixer.models.tokenizer import build_tokenizer
from genixer.training import TrainConfig, train

torch.set_num_threads(1)

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
PROMPTS = ["What colour is the image?", "Please name the single colour that fills this whole image?"]
SIZE = EmbeddedSize(image_size=32, patch_size=8, text_hidden=64, text_layers=2, text_heads=4, text_intermediate=128)
BUILDERS = {"llava": build_embedded_mllm, "fuyu": build_embedded_judge}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    paths, records = {}, []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        paths[name] = str(root / f"{name}.png")
        Image.new("RGB", (48, 32) if i % 2 else (32, 32), rgb).save(paths[name])
        for prompt in PROMPTS:  # prompts of different lengths exercise left padding
            records.append({"image_path": paths[name], "prompt": prompt, "target": f"Answer: {name}"})
    tok = build_tokenizer([r["prompt"] + " " + r["target"] for r in records] + ["Is the image red? Yes No"])
    return root, paths, records, tok


@pytest.fixture(scope="module", params=["llava", "fuyu"])
def trained(request, data):
    root, _, records, tok = data
    torch.manual_seed(0)
    model, processor = BUILDERS[request.param](tok, SIZE)
    train(model, processor, records, TrainConfig(steps=80, batch_size=8, lr=3e-3, warmup_steps=3), root / request.param)
    return model, processor


def test_batched_greedy_equals_single(trained, data):
    model, processor = trained
    _, paths, _, _ = data
    images = [paths[c] for c in COLOURS for _ in PROMPTS]
    prompts = [p for _ in COLOURS for p in PROMPTS]
    sampling = Sampling(max_new_tokens=6)
    batched = generate(model, processor, images, prompts, sampling, batch_size=8)
    single = [generate(model, processor, [i], [p], sampling, batch_size=1)[0] for i, p in zip(images, prompts)]
    assert batched == single
    assert batched == [[f"Answer: {c}"] for c in COLOURS for _ in PROMPTS]  # the tiny task was learned


def test_sampling_returns_n_per_input_and_is_seeded(trained, data):
    model, processor = trained
    _, paths, _, _ = data
    sampling = Sampling(temperature=1.5, top_p=0.95, max_new_tokens=4, num_return_sequences=3, seed=7)
    out = generate(model, processor, [paths["red"], paths["blue"]], PROMPTS, sampling, batch_size=4)
    assert len(out) == 2 and all(len(o) == 3 and all(isinstance(s, str) for s in o) for o in out)
    assert out == generate(model, processor, [paths["red"], paths["blue"]], PROMPTS, sampling, batch_size=4)


def test_sampled_row_depends_on_its_seed_not_its_batch(trained, data):
    model, processor = trained
    _, paths, _, _ = data
    images = [paths[c] for c in ("red", "green", "blue", "yellow")]
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[1], PROMPTS[0]]
    sampling = Sampling(temperature=1.5, top_p=0.95, max_new_tokens=6, num_return_sequences=2)
    batched = generate(model, processor, images, prompts, sampling, batch_size=8, seeds=[11, 12, 13, 14])
    alone = [generate(model, processor, [i], [p], sampling, batch_size=1, seeds=[s])[0]
             for i, p, s in zip(images, prompts, [11, 12, 13, 14])]
    assert batched == alone
    # in another batch (other neighbours, other position) the row still gives the same text
    assert generate(model, processor, [images[2], images[0]], [prompts[2], prompts[0]], sampling, batch_size=4, seeds=[99, 11])[1] == batched[0]


def test_different_seeds_sample_differently(trained, data):
    model, processor = trained
    _, paths, _, _ = data
    images = [paths[c] for c in COLOURS for _ in PROMPTS]
    prompts = [p for _ in COLOURS for p in PROMPTS]
    sampling = Sampling(temperature=1.0, max_new_tokens=6)
    a = generate(model, processor, images, prompts, sampling, seeds=list(range(8)))
    b = generate(model, processor, images, prompts, sampling, seeds=list(range(100, 108)))
    assert a != b


def test_score_yes_no(trained, data):
    model, processor = trained
    _, paths, _, tok = data
    images = [paths[c] for c in COLOURS for _ in PROMPTS]
    prompts = [f"Is the image {c}? {p}" for c in COLOURS for p in PROMPTS]
    p_yes = score_yes_no(model, processor, images, prompts, batch_size=16)
    assert p_yes.shape == (8,) and ((p_yes >= 0) & (p_yes <= 1)).all()
    single = np.array([score_yes_no(model, processor, [i], [p])[0] for i, p in zip(images, prompts)])
    np.testing.assert_allclose(p_yes, single, atol=1e-5)  # left padding does not change the answer

    # by hand: plain processor call + forward, softmax over the two answer tokens at the last position
    kwargs = {"return_legacy_image_output": False} if "Fuyu" in type(processor).__name__ else {}
    batch = processor(
        images=[Image.open(images[1]).convert("RGB")], text=[prompt_text(processor, prompts[1])],
        return_tensors="pt", **kwargs,
    )
    with torch.no_grad():
        logits = model(**batch).logits[0, -1]
    yes, no = tok.convert_tokens_to_ids(["▁Yes", "▁No"])
    expected = torch.softmax(logits[[yes, no]], dim=-1)[0].item()
    assert p_yes[1] == pytest.approx(expected, abs=1e-5)
