import json
import random

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from genixer.boxes import box_to_text, iou
from genixer.region_clip import (
    CONFIG_NAME, WEIGHTS_NAME, RegionClipSize, build_region_clip, calibrate_threshold, clip_scores,
    clip_scores_single, crop, load_region_clip, negative_pairs, region_pairs, save_region_clip, score_pairs,
    train_region_clip,
)
from genixer.training import TrainConfig
from genixer.world import WorldConfig, annotate_images, build_split
from genixer.world.grammar import PHRASINGS
from genixer.world.regions import WORLD_REC_READING as W, scene_candidates

torch.set_num_threads(1)

SIZE = RegionClipSize(image_size=32, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2,
                      text_width=32, text_layers=1, text_heads=2, context_length=16, embed_dim=32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    rows = build_split("collect", 40, root, WorldConfig())
    samples = annotate_images(rows, tasks=("rec", "reg"), per_image=2)
    return rows, samples, region_pairs(samples, reading=W)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    _, _, pairs = world
    out = tmp_path_factory.mktemp("clip")
    res = train_region_clip(pairs, SIZE, TrainConfig(steps=60, batch_size=16, lr=3e-3, warmup_steps=5, seed=0), out)
    return res, out


def _scores(model, pre, tok, pairs):
    return score_pairs(model, pre, tok, pairs, batch_size=7)


def test_save_load_round_trip(world, tmp_path):
    _, _, pairs = world
    torch.manual_seed(0)
    model, pre, tok = build_region_clip(SIZE)
    save_region_clip(model, SIZE, tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"} and cfg["model_cfg"]["text_cfg"]["context_length"] == 16
    loaded, pre2, tok2 = load_region_clip(tmp_path)
    assert not loaded.training and tok2.context_length == SIZE.context_length
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert np.array_equal(_scores(model, pre, tok, pairs[:20]), _scores(loaded, pre2, tok2, pairs[:20]))


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="nope.*does not exist"):
        load_region_clip(missing)
    d = tmp_path / "noconfig"
    d.mkdir()
    with pytest.raises(ValueError, match=f"noconfig.*missing {CONFIG_NAME}"):
        load_region_clip(d)
    model, _, _ = build_region_clip(SIZE)
    d = save_region_clip(model, SIZE, tmp_path / "noweights")
    (d / WEIGHTS_NAME).unlink()
    with pytest.raises(ValueError, match="noweights.*no model weights"):
        load_region_clip(d)
    torch.save(model.state_dict(), d / "open_clip_pytorch_model.bin")
    with pytest.raises(ValueError, match="noweights.*only pickled weights"):
        load_region_clip(d)
    d = save_region_clip(model, SIZE, tmp_path / "wrongsize")
    cfg = json.loads((d / CONFIG_NAME).read_text())
    cfg["model_cfg"]["embed_dim"] = 16
    (d / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="wrongsize.*open_clip could not load"):
        load_region_clip(d)


@pytest.mark.parametrize("phrasing", PHRASINGS["locate"])
def test_region_pairs_every_locate_phrasing(phrasing):
    ref, box = "the small red circle", [10.0, 20.0, 40.0, 50.0]
    question = phrasing.format(ref=ref)
    s = {"sample_id": "s", "image_id": "i", "image_path": "x.png", "width": 100, "height": 80, "task": "rec",
         "turns": [{"question": question, "answer": box_to_text(box, 100, 80)}], "boxes": [box]}
    (p,) = region_pairs([s], reading=W)
    assert p["expression"] == ref and p["box"] == box and p["sample_id"] == "s"
    # a generated row without a boxes column: the box comes from the answer text
    (p,) = region_pairs([dict(s, boxes=None, turns=[{"question": "  " + question.replace(" ", "  "), "answer": box_to_text(box, 100, 80)}])], reading=W)
    assert p["expression"] == ref and np.allclose(p["box"], box, atol=0.1)


@pytest.mark.parametrize("phrasing", PHRASINGS["describe"])
def test_region_pairs_reg(phrasing):
    box = [10.0, 20.0, 40.0, 50.0]
    s = {"sample_id": "r", "image_path": "x.png", "width": 100, "height": 80, "task": "reg",
         "turns": [{"question": phrasing.format(box=box_to_text(box, 100, 80)), "answer": "The large blue star."}], "boxes": [box]}
    (p,) = region_pairs([s], reading=W)
    assert p["expression"] == "the large blue star" and p["box"] == box and p["task"] == "reg"
    (p,) = region_pairs([dict(s, boxes=[])], reading=W)
    assert np.allclose(p["box"], box, atol=0.1)
    bad = dict(s, task="rec", turns=[{"question": "Where might the thing be?", "answer": "[0.1,0.2,0.3,0.4]"}])
    assert region_pairs([bad, dict(s, task="common_vqa")], reading=W) == []


def test_region_pairs_from_world(world):
    _, samples, pairs = world
    assert len(pairs) == len(samples) == 160
    assert {p["task"] for p in pairs} == {"rec", "reg"}


def test_crop_pads_and_clips():
    im = Image.new("RGB", (100, 80))
    assert crop(im, (10, 20, 40, 50)).size == (36, 36)  # 3 px of context each side
    assert crop(im, (0, 0, 30, 30)).size == (33, 33)  # clipped at the image edge
    assert crop(im, (10, 20, 40, 50), pad_frac=0).size == (30, 30)


def test_training_lowers_loss_and_saves(trained):
    res, out = trained
    assert res.steps == 60 and len(res.losses) == 60
    assert np.mean(res.losses[-10:]) < 0.8 * np.mean(res.losses[:10])
    assert set(res.group_curves) == {"rec", "reg"} and res.tokens_seen > 0 and res.n_truncated == 0
    assert (out / WEIGHTS_NAME).is_file() and not (out / "checkpoint").exists()


def test_batched_scores_equal_single_and_lie_in_range(trained, world):
    _, out = trained
    _, _, pairs = world
    model, pre, tok = load_region_clip(out)
    sub = pairs[:24]
    args = ([p["image_path"] for p in sub], [p["box"] for p in sub], [p["expression"] for p in sub])
    batched = clip_scores(model, pre, tok, *args, batch_size=10)
    single = clip_scores_single(model, pre, tok, *args)
    assert batched.shape == (24,) and np.allclose(batched, single, atol=1e-5)
    assert (batched >= -1).all() and (batched <= 1).all()


def test_negative_pairs(world):
    rows, _, pairs = world
    candidates = scene_candidates(rows)
    assert scene_candidates(pd.DataFrame(rows)) == candidates and set(candidates) == {r["image_path"] for r in rows}
    negs = negative_pairs(pairs, candidates, np.random.default_rng(0))
    by_kind = {k: [n for n in negs if n["negative"] == k] for k in ("swap", "shift")}
    assert by_kind["shift"] and by_kind["swap"]
    src = {p["sample_id"]: p for p in pairs}
    for n in by_kind["shift"]:
        p = src[n["source_sample_id"]]
        assert iou(n["box"], p["box"]) < 0.5 and n["expression"] == p["expression"] and n["image_path"] == p["image_path"]
    for n in by_kind["swap"]:
        p = src[n["source_sample_id"]]
        assert n["box"] == p["box"] and n["expression"] != p["expression"]
    # from a random.Random
    assert negative_pairs(pairs[:10], candidates, random.Random(0), kinds=("swap",))
    with pytest.raises(ValueError, match="has no 'scene'"):
        scene_candidates([{"image_id": "x", "image_path": "x.png"}])


def test_a_reading_of_another_source():
    """A source's words come from the reading passed in: one with its own locate phrasings and no paraphrase
    fallback reads no world description out of a paraphrase."""
    from genixer.region_clip import RecReading, locate_ref, rec_phrasings
    from genixer.sources.common import REC_QUESTION
    from genixer.world.grammar import compile_phrasing

    plain = RecReading(locate=("Find {ref}.",), describe=(), ref_anywhere=None, compile=compile_phrasing)
    assert rec_phrasings(reading=plain) == ("Find {ref}.", REC_QUESTION)
    assert locate_ref("Find the man in red.", reading=plain) == "the man in red"
    assert locate_ref("What are the coordinates of the blue star?", reading=plain) is None
    assert locate_ref("What are the coordinates of the blue star?", reading=W) == "the blue star"


def test_calibrate_threshold_hand_worked():
    # keep if score >= t. Cuts: 0.9 -> F1 .5; 0.8 -> .8; 0.5 -> .667; 0.4 -> .857 (TP3 FP1); 0.2 -> .75; 0.1 -> .667
    pos, neg = np.array([0.9, 0.8, 0.4]), np.array([0.5, 0.1, 0.2])
    r = calibrate_threshold(pos, neg)
    assert r["threshold"] == pytest.approx(0.3)  # midway between 0.4 (kept) and 0.2 (dropped)
    assert r["precision"] == pytest.approx(0.75) and r["recall"] == 1.0
    assert r["accuracy"] == pytest.approx(5 / 6) and r["f1"] == pytest.approx(6 / 7)
    # balanced accuracy: best at 0.8 (TPR 2/3, TNR 1) = 0.833 ties 0.4 (1, 2/3); the higher cut wins
    b = calibrate_threshold(pos, neg, objective="balanced_accuracy")
    assert b["threshold"] == pytest.approx(0.65) and b["balanced_accuracy"] == pytest.approx(5 / 6)
    # perfectly separable
    s = calibrate_threshold(np.array([0.7, 0.6]), np.array([0.2, -0.3]))
    assert s["threshold"] == pytest.approx(0.4) and s["f1"] == 1.0 and s["accuracy"] == 1.0
    with pytest.raises(ValueError):
        calibrate_threshold(np.array([]), np.array([0.1]))


@pytest.mark.parametrize("kw, match", [({"loss_per": "sample"}, "no meaning for the contrastive loss"),
                                       ({"group_by_length": 4}, "needs an adapter with record lengths")])
def test_mllm_only_training_settings_are_refused(world, tmp_path, kw, match):
    """Run config can set these on every trained asset; on region CLIP they would do nothing, so they are refused."""
    _, _, pairs = world
    with pytest.raises(ValueError, match=match):
        train_region_clip(pairs[:32], SIZE, TrainConfig(steps=2, batch_size=8, **kw), tmp_path / "clip")
    assert not (tmp_path / "clip" / WEIGHTS_NAME).exists()
