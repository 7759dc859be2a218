"""Real checkpoints through the project's own inputs, training and scoring (genixer.models.inputs, training,
generation), on the tiny random LLaVA-1.5 / Qwen2-VL / Fuyu of genixer.models.tiny: chat-template prompts,
answer tokens as written after the prompt, Qwen2-VL's M-RoPE inputs, Yes/No scores, max_length. The embedded
models (no chat template, "▁" word-level tokenizer) keep exactly their token ids and batches."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from genixer.decoding import (
    Sampling,
    _batch_inputs,
    answer_ids,
    first_difference,
    generate,
    score_yes_no,
)
from genixer.models import tiny
from genixer.models.embedded import (
    EmbeddedSize,
    build_embedded_judge,
    build_embedded_mllm,
)
from genixer.models.inputs import (
    answer_separator,
    computes_own_positions,
    encode_prompt_batch,
    encode_prompts,
    encode_target,
    has_chat_template,
    model_max_length,
    open_images,
    pad,
    prompt_text,
    split_prompt_answer,
)
from genixer.models.tokenizer import IMAGE, build_tokenizer
from genixer.training import (
    RecordTooLongError,
    SFTAdapter,
    TrainConfig,
    collate,
    train,
)
from genixer.training.sft import _encode_records

torch.set_num_threads(1)

FAMILIES = ["llava", "qwen2_vl", "fuyu"]
QUESTION = "Is there a red circle?"
PROMPTS = [QUESTION, "Please give the bounding box of the blue square."]  # different lengths: padding
RENDERED = {  # the real templates (genixer.models.tiny): LLaVA-1.5's and Qwen2-VL-7B-Instruct's
    "llava": f"USER: <image>\n{QUESTION} ASSISTANT:",
    "qwen2_vl": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                 f"<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n"),
}
TARGETS = ["Yes", "No", "Yes, there is a red circle in the image.", "It is at [0.125, 0.250, 0.375, 0.500].",
           "There are 3 circles."]

# The embedded models' texts: prompts and targets of the project's shapes, with boxes, newlines, odd spacing.
EMBEDDED_PROMPTS = [
    "What colour is the image?",
    "Question: Where is the small circle? Answer:",
    "Please provide a clear and direct question and answer after examining the image. This is a Common VQA task.",
    ("Question: What colour is the star? Answer: red Is this answer to the question correct for the image? "
     "Answer Yes or No."),
    "Describe the region [0.125,0.300,0.281,0.456].",
    "Line one\nLine two?",
    "trailing space ",
]
EMBEDDED_TARGETS = [
    "Yes", "No", "Answer: red", "[0.125,0.300,0.281,0.456]",
    "Question: Where is the small circle? Answer: [0.125,0.300,0.281,0.456]\nQuestion: And the star? Answer: [0.410,0.620]",
    "a  b\n\nQuestion: x?  Answer: [0.5,0.5]\n", " leading space", "\nnewline first", "3 shapes; isn't it nice?",
    "unseen wordz here", "",
]
SIZE = EmbeddedSize(image_size=32, patch_size=8, text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64)
EMBEDDED = {"llava": build_embedded_mllm, "fuyu": build_embedded_judge}


def build(family):
    return getattr(tiny, f"build_tiny_{family}")(seed=0)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two image sizes (the processors' image tokens depend on the size)."""
    root = tmp_path_factory.mktemp("scenes")
    paths = []
    for i, size in enumerate([(64, 48), (48, 64)]):
        img = Image.new("RGB", size, (128, 128, 128))
        ImageDraw.Draw(img).ellipse((10, 10, 30, 30), fill=(220, 30, 30) if i == 0 else (30, 30, 220))
        paths.append(str(root / f"scene{i}.png"))
        img.save(paths[-1])
    return paths


@pytest.fixture(scope="module", params=FAMILIES)
def built(request):
    model, processor = build(request.param)
    return request.param, model.eval(), processor


@pytest.fixture(scope="module")
def embedded_tok():
    return build_tokenizer(EMBEDDED_PROMPTS + [t for t in EMBEDDED_TARGETS if "unseen" not in t] + ["Yes No"])


# ---- prompts and answer tokens ---------------------------------------------------------------------

def test_prompt_text_uses_the_chat_template(built):
    family, _, processor = built
    text = prompt_text(processor, QUESTION)
    if family == "fuyu":  # no chat template (as adept/fuyu-8b): the processor adds its image placeholder
        assert not has_chat_template(processor) and text == QUESTION
    else:
        assert text == RENDERED[family]
    if family == "llava":
        assert text == f"USER: <image>\n{QUESTION} ASSISTANT:"
    assert answer_separator(processor, text) == ("" if family == "qwen2_vl" else " ")


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_embedded_prompt_text_unchanged(kind, embedded_tok):
    _, processor = EMBEDDED[kind](embedded_tok, SIZE)
    assert not has_chat_template(processor)
    for p in EMBEDDED_PROMPTS:
        assert prompt_text(processor, p) == (p if kind == "fuyu" else IMAGE + p)


def test_answer_ids_follow_the_prompt(built):
    family, _, processor = built
    tok = processor.tokenizer
    for target in TARGETS:
        text_ids, answers, alone = split_prompt_answer(processor, PROMPTS, [target] * len(PROMPTS))
        assert alone == []  # these tokenizers keep the prompt's ids when the answer follows
        for p, t_ids, a_ids in zip(PROMPTS, text_ids, answers):
            text = prompt_text(processor, p)
            joined = text + answer_separator(processor, text) + target
            assert t_ids + a_ids == tok(joined, add_special_tokens=False)["input_ids"]
            assert t_ids == tok(text, add_special_tokens=False)["input_ids"]
            assert tok.decode(a_ids).strip() == target  # decodes back to the target
            assert tok.decode(t_ids + a_ids) == joined
    (yes,), (no,) = (split_prompt_answer(processor, [QUESTION], [w])[1] for w in ("Yes", "No"))
    assert len(yes) == len(no) == 1 and yes != no
    if family == "qwen2_vl":  # byte-level BPE: "Yes" right after "assistant\n", not "ĠYes"
        assert tok.convert_ids_to_tokens(yes) == ["Yes"]


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_embedded_answer_ids_equal_encode_target(kind, embedded_tok):
    """The embedded path keeps its target ids: the ids after the prompt are the target's ids alone."""
    _, processor = EMBEDDED[kind](embedded_tok, SIZE)
    prompts = [p for p in EMBEDDED_PROMPTS for _ in EMBEDDED_TARGETS]
    targets = [t for _ in EMBEDDED_PROMPTS for t in EMBEDDED_TARGETS]
    _, answers, alone = split_prompt_answer(processor, prompts, targets)
    assert answers == [encode_target(embedded_tok, t) for t in targets] and alone == []
    assert embedded_tok.unk_token_id in answers[targets.index("unseen wordz here")]  # even unknown words


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_embedded_batches_unchanged(kind, embedded_tok, images):
    """collate and the generation/scoring inputs build exactly the tensors of the former code."""
    model, processor = EMBEDDED[kind](embedded_tok, SIZE)
    tok = processor.tokenizer
    records = [{"image_path": images[i % 2], "prompt": p, "target": t}
               for i, (p, t) in enumerate(zip(EMBEDDED_PROMPTS, EMBEDDED_TARGETS))]
    idx = list(range(len(records)))
    ids, image_inputs = encode_prompts(processor, open_images([r["image_path"] for r in records]),
                                       [r["prompt"] for r in records])
    targets = [encode_target(tok, r["target"]) + [tok.eos_token_id] for r in records]
    before = pad([p + t for p, t in zip(ids, targets)], tok.pad_token_id, side="right",
                 labels=[[-100] * len(p) + t for p, t in zip(ids, targets)])
    before.update(image_inputs)
    now = collate(processor, records, _encode_records(processor, records, 512), idx)
    assert list(now) == list(before) and all(torch.equal(now[k], before[k]) for k in before)
    assert "mm_token_type_ids" not in now and not computes_own_positions(model)

    before = pad(ids, tok.pad_token_id, side="left")
    before.update(image_inputs)
    now = _batch_inputs(model, processor, [r["image_path"] for r in records], [r["prompt"] for r in records])
    assert list(now) == list(before) and all(torch.equal(now[k], before[k]) for k in before)


def test_answer_merged_into_the_prompt_is_tokenized_alone(embedded_tok):
    """A template ending in a space, whose tokenizer writes the space as the next word's "▁": the joined text
    does not begin with the prompt's ids. The prompt keeps its own ids (what the model is given at inference),
    the answer is tokenized alone, and the record is counted; a record whose join holds is not."""

    class Templated:
        tokenizer = embedded_tok
        chat_template = "{{ messages }}"

        def apply_chat_template(self, conversation, **kwargs):
            text = conversation[0]["content"][1]["text"]
            return text + " " if text.endswith("?") else text + "\n"

    prompts, answers = ["What colour is the image?", "Describe it."], ["Answer: red", "Answer: red"]
    prompt_ids, answer_ids_, alone = split_prompt_answer(Templated(), prompts, answers)
    joined = embedded_tok("What colour is the image? " + "Answer: red", add_special_tokens=False)["input_ids"]
    assert prompt_ids[0] == embedded_tok("What colour is the image? ", add_special_tokens=False)["input_ids"]
    assert joined[: len(prompt_ids[0])] != prompt_ids[0]  # the boundary really is merged
    assert alone == [0]
    assert answer_ids_[0] == encode_target(embedded_tok, "Answer: red")


# ---- a tokenizer that merges across the prompt/answer boundary ---------------------------------------

@pytest.fixture(scope="module")
def merging_llava(tmp_path_factory):
    """The tiny LLaVA-1.5 saved in the hub layout with a tokenizer whose merges cross spaces (':▁', 'ASSISTANT:▁Yes'),
    loaded back as a user's checkpoint is."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = tiny.save_tiny_llava(tmp_path_factory.mktemp("merging") / "llava", hub_layout=True, merge_across_spaces=True)
    return LlavaForConditionalGeneration.from_pretrained(path), AutoProcessor.from_pretrained(path)


def test_boundary_merging_tokenizer_trains_on_the_inference_prompt(merging_llava, images):
    model, processor = merging_llava
    tok = processor.tokenizer
    text = prompt_text(processor, QUESTION)
    joined = tok(text + " Yes", add_special_tokens=False)["input_ids"]
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    assert joined[: len(prompt)] != prompt and tok.convert_ids_to_tokens(joined)[-1].endswith("ASSISTANT:▁Yes")
    records = _records(images)
    adapter = SFTAdapter(processor, model)
    assert adapter.prepare(records, TrainConfig(steps=1, batch_size=2)) == 0
    assert adapter.n_tokenized_alone == len(records)  # every LLaVA turn ends "ASSISTANT:", every answer merges
    batch, rows = adapter.batch(records, list(range(len(records))))
    served = _batch_inputs(model, processor, [r["image_path"] for r in records], [r["prompt"] for r in records])
    for row, i in enumerate(rows):
        n = adapter.enc.prompt_lens[i]
        # the prompt tokens trained on are the ones generation gives the model, then the answer and EOS
        width = served["input_ids"].shape[1]
        real = served["input_ids"][row][served["attention_mask"][row].bool()]
        assert batch["input_ids"][row, :n].tolist() == real.tolist() and len(real) <= width
        target = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert target[-1] == tok.eos_token_id and tok.decode(target[:-1]).strip() == records[i]["target"]


def test_boundary_merging_tokenizer_trains(merging_llava, images, tmp_path):
    model, processor = merging_llava
    res = train(model, processor, _records(images), TrainConfig(steps=2, batch_size=2), tmp_path / "run")
    assert res.steps == 2 and np.isfinite(res.losses).all() and res.n_tokenized_alone == len(TARGETS)


def test_boundary_merging_tokenizer_scores_yes_no(merging_llava, images):
    model, processor = merging_llava
    prompts = [QUESTION, "Is the large circle above the small square? Answer Yes or No."]
    p = score_yes_no(model, processor, images, prompts)
    for r, (image, prompt) in enumerate(zip(images, prompts)):
        ((yes,),), ((no,),) = answer_ids(processor, [prompt], "Yes"), answer_ids(processor, [prompt], "No")
        with torch.inference_mode():
            logits = model(**_processor_inputs(processor, image, prompt)).logits[0, -1]
        assert p[r] == pytest.approx(torch.softmax(logits[[yes, no]], dim=-1)[0].item(), abs=1e-5)


# ---- training ----------------------------------------------------------------------------------------

def _records(images, targets=TARGETS, prompts=PROMPTS):
    return [{"image_path": images[i % 2], "prompt": prompts[i % len(prompts)], "target": t, "task": f"t{i % 2}",
             "sample_id": f"s{i}"} for i, t in enumerate(targets)]


@pytest.mark.parametrize("family", FAMILIES)
def test_training_step_labels_cover_answer_and_eos(family, images, tmp_path):
    model, processor = build(family)
    tok = processor.tokenizer
    records = _records(images)
    adapter = SFTAdapter(processor, model)
    cfg = TrainConfig(steps=2, batch_size=2)
    assert cfg.max_length is None and adapter.model_max_length == model_max_length(model)
    assert model_max_length(model) == model.config.text_config.max_position_embeddings
    assert adapter.prepare(records, cfg) == 0
    batch, rows = adapter.batch(records, list(range(len(records))))
    answers = split_prompt_answer(processor, [r["prompt"] for r in records], [r["target"] for r in records]).answer_ids
    for row, i in enumerate(rows):
        labels = batch["labels"][row]
        n, span = adapter.enc.prompt_lens[i], len(answers[i]) + 1
        assert (labels != -100).nonzero().flatten().tolist() == list(range(n, n + span))
        assert labels[n : n + span].tolist() == answers[i] + [tok.eos_token_id]
        assert torch.equal(batch["input_ids"][row, n : n + span], labels[n : n + span])
        assert tok.decode(answers[i]).strip() == records[i]["target"]
        assert batch["attention_mask"][row].sum() == n + span
    if family == "qwen2_vl":
        assert "position_ids" not in batch and computes_own_positions(model)
        image_tokens = batch["input_ids"] == model.config.image_token_id
        assert torch.equal(batch["mm_token_type_ids"].bool(), image_tokens) and image_tokens.any()
    else:
        assert "position_ids" in batch and "mm_token_type_ids" not in batch and not computes_own_positions(model)

    res = train(model, processor, records, cfg, tmp_path)
    assert res.steps == 2 and np.isfinite(res.losses).all()
    assert res.n_truncated == 0 and res.truncated_by_task == {}


def test_qwen2_vl_gets_its_mrope_positions(images):
    model, processor = build("qwen2_vl")
    model.eval()
    batch = _batch_inputs(model, processor, images, PROMPTS)  # left padded (two prompt lengths)
    assert "position_ids" not in batch and "mm_token_type_ids" in batch
    assert (batch["attention_mask"] == 0).any()
    mrope, _ = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"],
                                         attention_mask=batch["attention_mask"])
    flat = pad(encode_prompt_batch(processor, open_images(images), PROMPTS).ids, processor.tokenizer.pad_token_id,
               side="left")["position_ids"]
    assert not torch.equal(mrope[1], flat)  # the image tokens' (h, w) positions differ from text positions
    real = batch["attention_mask"].bool()
    with torch.inference_mode():
        got = model(**batch).logits[real]
        want = model(**batch, position_ids=mrope).logits[real]
        text_only = model(**batch, position_ids=flat).logits[real]
    assert torch.allclose(got, want, atol=1e-6)
    assert (got - text_only).abs().max() > 1e-4  # 2.7e-3 here (random weights, logits up to 0.67)


def test_prompt_without_room_for_an_answer_is_an_error(images, tmp_path):
    model, processor = build("llava")
    records = _records(images, ["Yes", "Yes"], prompts=[QUESTION, QUESTION + " Please give the bounding box."])
    n = _encode_records(processor, records[:1], 10**6).prompt_lens[0]
    # record 0 fits exactly (its one answer token + EOS); record 1's longer prompt leaves less than 2
    with pytest.raises(RecordTooLongError, match=r"record 1 \(sample_id='s1'\): image \+ prompt encode to \d+ "
                                                 rf"tokens, max_length is {n + 2}"):
        train(model, processor, records, TrainConfig(steps=1, batch_size=1, max_length=n + 2), tmp_path)
    assert _encode_records(processor, records[:1], n + 2).target_ids[0][-1] == processor.tokenizer.eos_token_id
    # max_length from the model (max_position_embeddings = 512 for the tiny LLaVA)
    long = _records(images, ["Yes"], prompts=[" ".join([QUESTION] * 120)])
    with pytest.raises(RecordTooLongError, match=r"record 0 \(sample_id='s0'\).*max_length is 512"):
        train(model, processor, long, TrainConfig(steps=1, batch_size=1), tmp_path)


def test_truncated_answers_counted_per_task(images, tmp_path):
    model, processor = build("llava")
    long = "Yes, there is a red circle in the image and a blue square."
    records = [dict(r, task=task) for r, task in zip(_records(images, ["Yes", long, long, long]),
                                                     ["pope", "rec", "rec", "vqa"])]
    records = [dict(r, prompt=QUESTION) for r in records]
    n = _encode_records(processor, records[:1], 10**6).prompt_lens[0]
    enc = _encode_records(processor, records, n + 4)
    assert enc.n_truncated == 3 and enc.truncated_by_task == {"rec": 2, "vqa": 1}
    assert [len(t) for t in enc.target_ids] == [2, 4, 4, 4]  # cut to fit, the EOS of the cut ones dropped
    res = train(model, processor, records, TrainConfig(steps=1, batch_size=2, max_length=n + 4), tmp_path)
    assert res.n_truncated == 3 and res.truncated_by_task == {"rec": 2, "vqa": 1}


# ---- scoring and generation --------------------------------------------------------------------------

def _processor_inputs(processor, image_path, prompt):
    kwargs = {"return_legacy_image_output": False} if type(processor).__name__ == "FuyuProcessor" else {}
    return processor(images=open_images([image_path]), text=[prompt_text(processor, prompt)], return_tensors="pt",
                     **kwargs)


def _append(batch, ids):
    """The processor's batch of one with answer tokens appended (text tokens: mm_token_type_ids 0)."""
    out = dict(batch)
    extra = torch.tensor([ids])
    out["input_ids"] = torch.cat([batch["input_ids"], extra], dim=1)
    out["attention_mask"] = torch.cat([batch["attention_mask"], torch.ones_like(extra)], dim=1)
    if "mm_token_type_ids" in batch:
        out["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    return out


def test_score_yes_no_single_token(built, images):
    _, model, processor = built
    prompts = [QUESTION, "Is the large circle above the small square? Answer Yes or No."]
    p = score_yes_no(model, processor, images, prompts)
    assert p.shape == (2,) and ((0 < p) & (p < 1)).all()
    single = np.array([score_yes_no(model, processor, [i], [q])[0] for i, q in zip(images, prompts)])
    np.testing.assert_allclose(p, single, atol=1e-5)  # left padding (and Qwen2-VL's M-RoPE) per row
    for r, (image, prompt) in enumerate(zip(images, prompts)):
        ((yes,),), ((no,),) = answer_ids(processor, [prompt], "Yes"), answer_ids(processor, [prompt], "No")
        with torch.inference_mode():
            logits = model(**_processor_inputs(processor, image, prompt)).logits[0, -1]
        assert p[r] == pytest.approx(torch.softmax(logits[[yes, no]], dim=-1)[0].item(), abs=1e-5)


@pytest.mark.parametrize("yes, no", [("Yes", "Nope"), ("It is yes", "It is no")])
def test_score_yes_no_decides_at_the_first_different_token(built, images, yes, no):
    """Answers of different token counts ("Nope" is several tokens, "Yes" one) or with shared leading tokens:
    P(yes) is the softmax over the two tokens where they first differ, after the shared ones, computed here
    from the processor's own batch of one."""
    _, model, processor = built
    prompts = [QUESTION, "Is the large circle above the small square? Answer Yes or No."]
    y_ids, n_ids = answer_ids(processor, prompts, yes), answer_ids(processor, prompts, no)
    assert any(len(y) != len(n) for y, n in zip(y_ids, n_ids)) or any(y[0] == n[0] for y, n in zip(y_ids, n_ids))
    p = score_yes_no(model, processor, images, prompts, yes=yes, no=no)
    assert p.shape == (2,) and ((0 < p) & (p < 1)).all()
    single = np.array([score_yes_no(model, processor, [i], [q], yes=yes, no=no)[0] for i, q in zip(images, prompts)])
    np.testing.assert_allclose(p, single, atol=1e-5)
    for r, (image, prompt) in enumerate(zip(images, prompts)):
        (y,), (n,) = answer_ids(processor, [prompt], yes), answer_ids(processor, [prompt], no)
        k = first_difference(y, n)
        batch = _processor_inputs(processor, image, prompt)
        with torch.inference_mode():
            logits = model(**_append(batch, y[:k]) if k else batch).logits[0, -1]
        assert p[r] == pytest.approx(torch.softmax(logits[[y[k], n[k]]].float(), dim=-1)[0].item(), abs=1e-5)


def test_first_difference():
    assert first_difference([5], [6]) == 0 and first_difference([1, 2, 3], [1, 4]) == 1
    with pytest.raises(ValueError, match="prefix"):
        first_difference([1, 2], [1, 2, 3])


def test_uninformed_judge_is_not_biased_by_token_counts(images):
    """A random model judging "Yes" (one token) against "Nope" (several): the product over whole answers
    charges the longer one a factor of about 1/vocabulary per extra token and says "Yes" to everything; the
    first-difference rule leaves a random model near even odds."""
    model, processor = build("llava")
    model.eval()
    prompts = [f"Is there a {c} {s}?" for c in ("red", "blue", "green") for s in ("circle", "square", "star")]
    paths = [images[i % 2] for i in range(len(prompts))]
    assert all(len(n) > len(y) for y, n in zip(answer_ids(processor, prompts, "Yes"), answer_ids(processor, prompts, "Nope")))
    p = score_yes_no(model, processor, paths, prompts, yes="Yes", no="Nope")
    whole = []  # what the product over whole answers gives, from the processor's own batches
    for image, prompt in zip(paths, prompts):
        batch = _processor_inputs(processor, image, prompt)
        m = batch["input_ids"].shape[1]
        lp = {}
        for word in ("Yes", "Nope"):
            (ids,) = answer_ids(processor, [prompt], word)
            with torch.inference_mode():
                logp = torch.log_softmax(model(**_append(batch, ids)).logits[0].float(), dim=-1)
            lp[word] = sum(logp[m - 1 + j, t].item() for j, t in enumerate(ids))
        whole.append(1 / (1 + np.exp(lp["Nope"] - lp["Yes"])))
    assert min(whole) > 0.99  # the bias this rule removes
    assert 0.1 < p.mean() < 0.9 and (p < 0.99).all()


def test_generate_batched_equals_single(built, images):
    _, model, processor = built
    sampling = Sampling(max_new_tokens=4)
    batched = generate(model, processor, images, PROMPTS, sampling, batch_size=2)
    single = [generate(model, processor, [i], [q], sampling, batch_size=1)[0] for i, q in zip(images, PROMPTS)]
    assert batched == single and all(len(o) == 1 and isinstance(o[0], str) for o in batched)
