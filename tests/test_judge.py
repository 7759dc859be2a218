"""The judge: pairs, oracle-confirmed corruptions, balance, training, P(Yes) scoring."""

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from genixer.decoding import score_yes_no
from genixer.finetune import vocabulary_texts
from genixer.judge import (
    NONE, NO, YES, auc, judge_pair_prompts, judge_pairs, judge_prompt, sampled_judgement, score_samples, split_options,
    train_judge,
)
from genixer.models.checkpoint import load_model
from genixer.models.embedded import EmbeddedSize
from genixer.tasks import GENERAL_TASKS
from genixer.templates import GENERAL_INSTRUCTIONS
from genixer.training import TrainConfig
from genixer.world import Scene, WorldConfig, annotate_images, build_split
from genixer.world.grammar import PHRASINGS
from genixer.world.negatives import CORRUPTIONS, corrupt_pair, verification_records
from genixer.world.oracle import INCORRECT, check_turn

torch.set_num_threads(1)

SIZE = EmbeddedSize(image_size=32, patch_size=8, text_hidden=64, text_layers=2, text_heads=4, text_intermediate=128)
MC_Q = "What colour is the large star? Options: A. red B. blue C. green D. yellow"


def test_judge_pairs_mc_letter_becomes_option_text():
    assert judge_pairs([{"question": MC_Q, "answer": "B"}], "mc_vqa") == [("What colour is the large star?", "blue")]
    # task unknown (a generated sample): detected by the options; "C." and lower case letters work too
    assert judge_pairs([{"question": MC_Q, "answer": "c."}]) == [("What colour is the large star?", "green")]
    # a letter that names no option is kept as written, with the full question
    assert judge_pairs([{"question": MC_Q, "answer": "E"}]) == [(MC_Q, "E")]
    assert split_options("What colour is the star?") is None


def test_judge_pairs_md_split_and_single():
    turns = [{"question": "What colour is the star?", "answer": "red"},
             {"question": "How many  circles are there?", "answer": " 2 "}]
    assert judge_pairs(turns, "md") == [("What colour is the star?", "red"), ("How many circles are there?", "2")]
    assert judge_pairs(turns[:1]) == [("What colour is the star?", "red")]
    assert judge_pairs([]) == [] and judge_pairs(None) == []
    assert judge_pairs(turns + [{"question": "Is there a red star?", "answer": ""}]) == []  # malformed: unjudgeable
    assert judge_prompt("Q?", "a") == "Question: Q? Answer: a Is this answer to the question correct for the image? Answer Yes or No."


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge_world")
    rows = build_split("collect", 30, root, WorldConfig())
    samples = annotate_images(rows, tasks=GENERAL_TASKS)
    scenes = {r["image_id"]: Scene.from_json(r["scene"]) for r in rows}
    return root, rows, samples, scenes


@pytest.fixture(scope="module")
def records(world):
    _, _, samples, scenes = world
    return verification_records(samples, random.Random(0), scenes)


def test_records_are_balanced_and_oracle_labelled(world, records):
    _, _, samples, scenes = world
    counts = Counter(r["target"] for r in records)
    assert set(counts) == {YES, NO} and abs(counts[YES] - counts[NO]) <= 1
    for r in records:
        assert {"image_path", "image_id", "prompt", "target", "task", "corruption", "sample_id"} <= set(r)
        v = check_turn(r["question"], r["answer"], scenes[r["image_id"]])
        if r["target"] == YES:
            assert v.ok and r["corruption"] == NONE, r
        else:
            assert v.status == INCORRECT and r["corruption"] in CORRUPTIONS, r
        assert r["prompt"] == judge_prompt(r["question"], r["answer"])
    assert {r["task"] for r in records} == set(GENERAL_TASKS)
    # MC records carry the option text, never the letter
    assert all(r["answer"] not in "ABCD" and "Options:" not in r["question"] for r in records if r["task"] == "mc_vqa")


def test_every_corruption_kind_is_false_for_its_image(world):
    _, _, samples, scenes = world
    seen = Counter()
    rng = random.Random(1)
    for s in samples:
        scene = scenes[s["image_id"]]
        for t, (q, a) in zip(s["turns"], judge_pairs(s["turns"], s["task"])):
            assert check_turn(q, a, scene).ok  # the true pair, as the judge reads it
            for kind in CORRUPTIONS:
                bad = corrupt_pair(q, a, scene, rng, kinds=[kind], original_question=t["question"])
                if bad is None:
                    continue
                assert bad[2] == kind and (bad[0], bad[1]) != (q, a)
                assert check_turn(bad[0], bad[1], scene).status == INCORRECT, bad
                seen[kind] += 1
    assert set(seen) == set(CORRUPTIONS), seen


@pytest.fixture(scope="module")
def judge(world, records, tmp_path_factory):
    _, _, samples, _ = world
    out = tmp_path_factory.mktemp("judge_model")
    vocab = vocabulary_texts(samples, list(GENERAL_INSTRUCTIONS), PHRASINGS)
    torch.manual_seed(0)
    result = train_judge(records, vocab, SIZE, TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=3), out)
    assert result.steps == 30 and math.isfinite(result.final_loss)
    model, processor = load_model(out, device="cpu")
    return model, processor


def test_score_samples_min_over_turns_and_nan(world, judge):
    _, _, samples, _ = world
    model, processor = judge
    md = next(s for s in samples if s["task"] == "md" and len(s["turns"]) >= 2)
    mc = next(s for s in samples if s["task"] == "mc_vqa")
    empty = {**md, "sample_id": "empty", "turns": []}
    scores = score_samples(model, processor, [mc, md, empty], batch_size=4)
    assert scores.shape == (3,) and math.isnan(scores[2])
    assert ((scores[:2] >= 0) & (scores[:2] <= 1)).all()
    pairs = judge_pairs(md["turns"], "md")
    per_turn = score_yes_no(model, processor, [md["image_path"]] * len(pairs), [judge_prompt(q, a) for q, a in pairs])
    assert scores[1] == pytest.approx(per_turn.min(), abs=1e-5)
    (q, a), = judge_pairs(mc["turns"], "mc_vqa")
    assert scores[0] == pytest.approx(score_yes_no(model, processor, [mc["image_path"]], [judge_prompt(q, a)])[0], abs=1e-5)
    assert score_samples(model, processor, []).shape == (0,)
    # parquet-shaped input (a DataFrame whose turns are arrays of dicts) scores the same
    import pandas as pd
    df = pd.DataFrame([{**s, "turns": np.array(s["turns"], dtype=object)} for s in (mc, md, empty)])
    np.testing.assert_allclose(score_samples(model, processor, df, batch_size=4), scores, atol=1e-6)


def test_sampled_judgement_returns_strings(world, judge):
    _, _, samples, _ = world
    model, processor = judge
    paths, prompts, owner = judge_pair_prompts(samples[:3])
    assert len(owner) == len(prompts) and owner[0] == 0
    out = sampled_judgement(model, processor, paths, prompts, max_new_tokens=2)
    assert len(out) == len(prompts) and all(isinstance(o, str) for o in out)
    assert sampled_judgement(model, processor, paths, prompts, max_new_tokens=2) == out  # sampled, but under its seed
    assert owner == sorted(owner) and set(owner) == {0, 1, 2}  # every sample's pairs, in sample order


def test_auc():
    assert auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5
    assert math.isnan(auc([0.3], [1]))
