import pickle
from collections import Counter

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from genixer.models.checkpoint import load_model
from genixer.models.embedded import EmbeddedSize, build_embedded_judge, build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer
from genixer import training
from genixer.training import LoraSpec, TrainConfig, collate, sft, train
from genixer.training.loop import _apply_lora
from genixer.training.sft import _encode_records

torch.set_num_threads(1)

COLOURS = {"red": (255, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
PROMPT = "What colour is the image?"
SIZE = EmbeddedSize(image_size=32, patch_size=8, text_hidden=64, text_layers=2, text_heads=4, text_intermediate=128)
BUILDERS = {"llava": build_embedded_mllm, "fuyu": build_embedded_judge}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    recs = []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        path = root / f"{name}.png"
        Image.new("RGB", (48, 32) if i % 2 else (32, 32), rgb).save(path)  # some non-square
        recs.append({"image_path": str(path), "prompt": PROMPT, "target": f"Answer: {name}"})
    return recs


@pytest.fixture(scope="module")
def tok(records):
    return build_tokenizer([r["prompt"] + " " + r["target"] for r in records] + ["a much longer answer here"])


def fresh(kind, tok):
    torch.manual_seed(0)
    return BUILDERS[kind](tok, SIZE)


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_loss_falls_and_model_saved(kind, tok, records, tmp_path):
    model, processor = fresh(kind, tok)
    cfg = TrainConfig(steps=40, batch_size=4, lr=3e-3, warmup_steps=2, seed=0)
    res = train(model, processor, records, cfg, tmp_path)
    assert res.steps == 40 and len(res.losses) == 40
    assert sum(res.losses[-5:]) / 5 < 0.3 * sum(res.losses[:5]) / 5
    assert res.tokens_seen > 0 and res.tokens_per_s > 0 and res.n_params > 0 and res.n_truncated == 0
    assert res.final_loss == res.losses[-1]
    assert not (tmp_path / "checkpoint").exists()
    loaded, _ = load_model(tmp_path, device="cpu")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_loss_on_the_target_window_equals_the_full_loss(kind, tok, records):
    """SFTAdapter computes logits only from the batch's first learnt position: same loss, per-row losses
    and gradients as the model's own loss over every position, on fewer positions."""
    model, processor = fresh(kind, tok)
    recs = records[:2] + [dict(records[0], target="Answer: a much longer answer here")]
    adapter = training.SFTAdapter(processor, model)
    adapter.prepare(recs, TrainConfig(steps=1))
    batch, _ = adapter.batch(recs, [0, 1, 2])
    full = model(**batch)
    full.loss.backward()
    full_grad = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss, rows = adapter.loss(model, batch)
    loss.backward()
    shift, keep = training.target_window(batch["labels"])
    first = min(adapter.enc.prompt_lens) - 1  # the last prompt token predicts the first target token
    assert keep == batch["input_ids"].shape[1] - first < batch["input_ids"].shape[1]
    assert loss.item() == pytest.approx(full.loss.item(), rel=1e-5)
    labels = batch["labels"]
    expected = [torch.nn.functional.cross_entropy(full.logits[r, :-1], labels[r, 1:], ignore_index=-100).item()
                for r in range(3)]
    assert rows == pytest.approx(expected, rel=1e-5)
    assert (shift != -100).sum() == (labels != -100).sum()
    for n, p in model.named_parameters():
        if n in full_grad:
            torch.testing.assert_close(p.grad, full_grad[n], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_sample_loss_weighs_every_record_the_same(kind, tok, records):
    """loss_per="sample": the mean over records of each record's mean target-token loss, unlike the model's
    token mean, where the long answer outweighs the short ones."""
    model, processor = fresh(kind, tok)
    recs = records[:2] + [dict(records[0], target="Answer: a much longer answer here")]
    adapter = training.SFTAdapter(processor, model)
    adapter.prepare(recs, TrainConfig(steps=1, loss_per="sample"))
    batch, _ = adapter.batch(recs, [0, 1, 2])
    full = model(**batch)
    labels = batch["labels"]
    per_row = [torch.nn.functional.cross_entropy(full.logits[r, :-1], labels[r, 1:], ignore_index=-100) for r in range(3)]
    loss, rows = adapter.loss(model, batch)
    assert rows == pytest.approx([x.item() for x in per_row], rel=1e-5)
    assert loss.item() == pytest.approx(sum(x.item() for x in per_row) / 3, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.get_output_embeddings().parameters())
    with pytest.raises(ValueError, match="loss_per"):
        adapter.prepare(recs, TrainConfig(steps=1, loss_per="batch"))


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_label_masking(kind, tok, records):
    _, processor = fresh(kind, tok)
    recs = records[:2] + [dict(records[0], target="Answer: a much longer answer here")]
    enc = _encode_records(processor, recs, max_length=512)
    batch = collate(processor, recs, enc, [0, 1, 2])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    image_ids = {processor.image_token_id, tok.convert_tokens_to_ids("|NEWLINE|")}
    for row in range(3):
        n_prompt, n_target = enc.prompt_lens[row], len(enc.target_ids[row])
        assert (labels[row, :n_prompt] == -100).all()  # image placeholders, BOS, prompt (+ Fuyu's <0x04>)
        target = labels[row, n_prompt : n_prompt + n_target]
        assert torch.equal(target, ids[row, n_prompt : n_prompt + n_target])
        assert (target != -100).all() and target[-1].item() == tok.eos_token_id
        assert tok.decode(target, skip_special_tokens=True) == recs[row]["target"]
        assert (labels[row, n_prompt + n_target :] == -100).all()  # right padding
        assert (mask[row, n_prompt + n_target :] == 0).all()
        assert sum(int(t) in image_ids for t in ids[row, :n_prompt]) > 0
    assert (labels[mask == 0] == -100).all()
    assert not any(int(t) in image_ids for t in labels[labels != -100])


def test_truncation_counted_not_dropped(tok, records, tmp_path):
    model, processor = fresh("llava", tok)
    long = dict(records[1], target="Answer: a much longer answer here " * 4)
    recs = records + [long]
    prompt_len = _encode_records(processor, recs[:1], 512).prompt_lens[0]
    max_length = prompt_len + 6  # room for every short target (+EOS), not for the long one
    enc = _encode_records(processor, recs, max_length)
    assert enc.n_truncated == 1 and len(enc.prompt_lens) == len(recs)
    assert enc.prompt_lens[-1] + len(enc.target_ids[-1]) == max_length
    res = train(model, processor, recs, TrainConfig(steps=2, batch_size=2, max_length=max_length), tmp_path)
    assert res.n_truncated == 1 and res.steps == 2


def test_lora_only_adapters_trainable_and_merged_model_loads(tok, records, tmp_path):
    model, processor = fresh("llava", tok)
    peft_model = _apply_lora(model, LoraSpec(rank=4, alpha=8))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert all(".language_model." in n for n in trainable)  # nothing in the vision tower / projector
    model, processor = fresh("llava", tok)
    cfg = TrainConfig(steps=15, batch_size=4, lr=1e-2, lora=LoraSpec(rank=4, alpha=8))
    res = train(model, processor, records, cfg, tmp_path)
    assert 0 < res.n_trainable < res.n_params / 5
    assert res.losses[-1] < res.losses[0]
    weights = load_file(tmp_path / "model.safetensors")
    assert not any("lora" in k for k in weights)
    loaded, _ = load_model(tmp_path, device="cpu")
    base, _ = fresh("llava", tok)
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(loaded.state_dict()[q], base.state_dict()[q])  # the LoRA delta was merged
    vision = "model.vision_tower.encoder.layers.0.self_attn.q_proj.weight"
    assert torch.equal(loaded.state_dict()[vision], base.state_dict()[vision])


def test_freeze_vision_tower(tok, records, tmp_path):
    model, processor = fresh("llava", tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "vision_tower" in n}
    train(model, processor, records, TrainConfig(steps=3, batch_size=2, freeze_vision_tower=True), tmp_path)
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("kind,group", [("llava", 0), ("fuyu", 0), ("llava", 3)])
def test_resume_matches_uninterrupted(kind, group, tok, records, tmp_path):
    cfg = TrainConfig(steps=6, batch_size=2, grad_accum=2, lr=3e-3, warmup_steps=1, checkpoint_every=2, group_by_length=group)
    full_model, processor = fresh(kind, tok)
    full = train(full_model, processor, records, cfg, tmp_path / "full")

    model, processor = fresh(kind, tok)
    first = train(model, processor, records, TrainConfig(**{**cfg.__dict__, "stop_after": 3}), tmp_path / "resumed")
    assert first.steps == 3 and (tmp_path / "resumed" / "checkpoint").is_dir()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()

    model, processor = fresh(kind, tok)  # a new process would start from a fresh model, too
    second = train(model, processor, records, cfg, tmp_path / "resumed")
    assert second.steps == 6 and len(second.losses) == 6
    assert second.losses == pytest.approx(full.losses, rel=1e-5)
    for (name, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not (tmp_path / "resumed" / "checkpoint").exists()


def test_a_checkpoint_of_another_run_is_not_resumed(tok, records, tmp_path):
    """Interrupted at step 3, then run again with another learning rate, or on other records: that checkpoint is not
    this run's, so training starts afresh (the same losses as an uninterrupted run of the new config) and says so;
    with the same config and records it resumes (resumed_from)."""
    cfg = TrainConfig(steps=6, batch_size=2, lr=3e-3, warmup_steps=1, checkpoint_every=2)
    other = TrainConfig(**{**cfg.__dict__, "lr": 1e-3})
    model, processor = fresh("llava", tok)
    fresh_other = train(model, processor, records, other, tmp_path / "fresh")
    assert fresh_other.resumed_from == 0

    for changed, recs, expected in ((other, records, fresh_other.losses), (cfg, records[::-1], None)):
        out = tmp_path / f"interrupted_{expected is None}"
        model, processor = fresh("llava", tok)
        train(model, processor, records, TrainConfig(**{**cfg.__dict__, "stop_after": 3}), out)
        assert (out / "checkpoint" / "trainer_state.pt").is_file()
        model, processor = fresh("llava", tok)
        res = train(model, processor, recs, changed, out)
        assert res.resumed_from == 0 and res.steps == 6 and len(res.losses) == 6
        if expected is not None:
            assert res.losses == pytest.approx(expected, rel=1e-5)
        assert not (out / "checkpoint").exists() and (out / "model.safetensors").is_file()

    out = tmp_path / "same"
    model, processor = fresh("llava", tok)
    train(model, processor, records, TrainConfig(**{**cfg.__dict__, "stop_after": 3, "log_every": 1}), out)
    model, processor = fresh("llava", tok)
    assert train(model, processor, records, cfg, out).resumed_from == 3


def test_sample_weights(tok, records, tmp_path, monkeypatch):
    model, processor = fresh("llava", tok)
    with pytest.raises(ValueError):
        train(model, processor, records, TrainConfig(steps=1), tmp_path, sample_weights=[1.0])
    drawn = []

    def spy(processor, records, enc, idx):
        drawn.extend(idx)
        return collate(processor, records, enc, idx)

    monkeypatch.setattr(sft, "collate", spy)
    train(model, processor, records, TrainConfig(steps=4, batch_size=50), tmp_path, sample_weights=[0, 3, 0, 1])
    counts = Counter(drawn)
    assert set(counts) == {1, 3} and sum(counts.values()) == 200
    assert 0.65 < counts[1] / 200 < 0.85  # 3:1 mix


def test_group_by_length_cuts_padding_and_keeps_the_mix(tok, records, tmp_path, monkeypatch):
    """Batches drawn 8 at a time and sorted by length: each batch holds records of near lengths, so the padded
    share falls, while the records drawn still follow the sample weights."""
    recs = [dict(r, target=r["target"] + " here" * n) for r in records for n in (0, 4, 8, 16)]  # 16 records, 4 lengths
    model, processor = fresh("llava", tok)
    batches = []

    def spy(processor, records, enc, idx):
        batches.append(list(idx))
        return collate(processor, records, enc, idx)

    monkeypatch.setattr(sft, "collate", spy)
    weights = [3.0 if i % 4 == 0 else 1.0 for i in range(len(recs))]  # the shortest records three times as often
    drawn = {}
    for group in (0, 8):
        batches.clear()
        train(model, processor, recs, TrainConfig(steps=48, batch_size=4, group_by_length=group), tmp_path / str(group),
              sample_weights=weights)
        lengths = _encode_records(processor, recs, 512)
        n = [lengths.prompt_lens[i] + len(lengths.target_ids[i]) for i in range(len(recs))]
        drawn[group] = (sum(n[i] for b in batches for i in b) / sum(len(b) * max(n[i] for i in b) for b in batches),
                        Counter(i % 4 for b in batches for i in b))
    (random_share, random_mix), (grouped_share, grouped_mix) = drawn[0], drawn[8]
    assert grouped_share > random_share + 0.1, (random_share, grouped_share)
    assert 0.4 < grouped_mix[0] / sum(grouped_mix.values()) < 0.6  # weight 3 of 6: half the draws
    with pytest.raises(ValueError, match="group_by_length"):
        from genixer.patch_labels import PatchLabelAdapter
        from genixer.world.patch_labels import PATCH_LABELS
        train(torch.nn.Linear(1, 1), None, recs, TrainConfig(steps=1, group_by_length=2), tmp_path / "x",
              adapter=PatchLabelAdapter(None, 2, PATCH_LABELS))


def test_epochs_and_mixed_precision_switch(tok, records, tmp_path):
    # bf16 autocast on CPU, then fp32 again in the same process (accelerate's global state is reset)
    for i, precision in enumerate(["bf16", "no"]):
        model, processor = fresh("fuyu", tok)
        cfg = TrainConfig(steps=None, epochs=1, batch_size=2, mixed_precision=precision)
        res = train(model, processor, records, cfg, tmp_path / str(i))
        assert res.steps == 2 and all(loss == loss for loss in res.losses)  # 4 records / 2 per step, no NaN


@pytest.mark.parametrize("kind", ["llava", "fuyu"])
def test_measured_prompt_lengths_equal_real_encodings(kind, tok, records):
    """Prompts are measured without the image processor (one call per image size); the
    measurement must equal what the processor produces for every record, square or not."""
    from genixer.models.inputs import encode_prompts, open_images

    _, processor = fresh(kind, tok)
    recs = [dict(r, prompt=p) for r in records for p in (PROMPT, "What colour", "a much longer answer here What colour is the image?")]
    enc = _encode_records(processor, recs, max_length=512)
    real, _ = encode_prompts(processor, open_images([r["image_path"] for r in recs]), [r["prompt"] for r in recs])
    assert enc.prompt_lens == [len(r) for r in real]
    assert len({Image.open(r["image_path"]).size for r in recs}) == 2


class _Payload:
    """Unpickling this would run code (write a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_resume_state_that_would_run_code_is_refused(tok, records, tmp_path):
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=2, stop_after=2)
    model, processor = fresh("llava", tok)
    train(model, processor, records, cfg, tmp_path)
    state = tmp_path / "checkpoint" / "trainer_state.pt"
    marker = tmp_path / "ran"
    torch.save({"step": 2, "payload": _Payload(marker)}, state)
    model, processor = fresh("llava", tok)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(model, processor, records, TrainConfig(steps=4, batch_size=2, checkpoint_every=2), tmp_path)
    assert not marker.exists()


def test_group_by_length_keeps_each_token_weight(tok, records, tmp_path, monkeypatch):
    """Grouped batches divide their summed token loss by the target tokens of an average random batch, so a batch
    of short answers weighs by its token count, as inside a random batch; random batches by their own count."""
    recs = [dict(r, target=r["target"] + " here" * n) for r in records for n in (0, 8)]
    weights = [1.0 if i % 2 else 3.0 for i in range(len(recs))]  # the short records three times as often
    seen = []
    real = training.SFTAdapter.loss

    def spy(self, model, batch):
        out = real(self, model, batch)
        items, self.num_items = self.num_items, None
        mean = real(self, model, batch)[0].item()  # the model's own token mean on the same batch
        self.num_items = items
        seen.append((items, int((batch["labels"][:, 1:] != -100).sum()), out[0].item(), mean))
        return out

    monkeypatch.setattr(training.SFTAdapter, "loss", spy)
    model, processor = fresh("llava", tok)
    train(model, processor, recs, TrainConfig(steps=1, batch_size=4, lr=0.0), tmp_path / "random", sample_weights=weights)
    assert seen[-1][0] == seen[-1][1] and seen[-1][2] == pytest.approx(seen[-1][3])
    seen.clear()
    train(model, processor, recs, TrainConfig(steps=8, batch_size=4, lr=0.0, group_by_length=2), tmp_path / "grouped",
          sample_weights=weights)
    n = [len(t) for t in _encode_records(processor, recs, 512).target_ids]
    expected = 4 * sum(w * k for w, k in zip(weights, n)) / sum(weights)
    for items, n_learnt, loss, mean in seen:
        assert items == pytest.approx(expected)
        assert loss == pytest.approx(mean * n_learnt / expected, rel=1e-4)
    assert len({s[1] for s in seen}) > 1  # batches of different token counts were drawn
