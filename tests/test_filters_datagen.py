"""Generation bookkeeping and the filters, on hand-made rows."""


import numpy as np
import pandas as pd
import pytest

from genixer import corpus_generation, filters
from genixer.decoding import Sampling
from genixer.world.grammar import PHRASINGS
from genixer.world.oracle import task_of
from genixer.world.regions import WORLD_REC_READING


def test_parse_row_quarantines_with_reasons():
    ok = corpus_generation.parse_row("Question: Where is the red circle? Answer: [0.100,0.200,0.300,0.400]", 100, 50, "rec", task_of)
    assert ok["quarantine_reason"] is None and ok["task"] == "rec"
    assert ok["boxes"] == [[pytest.approx(10), pytest.approx(10), pytest.approx(30), pytest.approx(20)]]
    assert corpus_generation.parse_row("", 100, 100, "rec", task_of)["quarantine_reason"].startswith("parse: empty")
    assert corpus_generation.parse_row("Where is it? [0.1,0.2,0.3,0.4]", 100, 100, "rec", task_of)["quarantine_reason"].startswith("parse:")
    inverted = corpus_generation.parse_row("Question: Where is the red circle? Answer: [0.500,0.200,0.300,0.400]", 100, 100, "rec", task_of)
    assert inverted["quarantine_reason"].startswith("box:") and "x1<=x0" in inverted["quarantine_reason"]
    outside = corpus_generation.parse_row("Question: Where is the red circle? Answer: [0.500,0.200,1.300,0.400]", 100, 100, "rec", task_of)
    assert outside["quarantine_reason"].startswith("box:")


def test_points_are_parsed_separately_from_boxes():
    r = corpus_generation.parse_row("Question: What colour is the object at [0.500,0.250]? Answer: red", 200, 100, "pointqa", task_of)
    assert r["points"] == [[pytest.approx(100), pytest.approx(25)]] and r["boxes"] == [] and r["task"] == "pointqa"


def test_request_key_changes_with_each_part():
    s = Sampling(temperature=0.7, top_p=0.9)
    k = corpus_generation.request_key("abc", "p", "g", s, 1)
    assert k == corpus_generation.request_key("abc", "p", "g", Sampling(temperature=0.7, top_p=0.9), 1)
    others = [corpus_generation.request_key("abd", "p", "g", s, 1), corpus_generation.request_key("abc", "q", "g", s, 1),
              corpus_generation.request_key("abc", "p", "h", s, 1), corpus_generation.request_key("abc", "p", "g", Sampling(temperature=0.5, top_p=0.9), 1),
              corpus_generation.request_key("abc", "p", "g", s, 2)]
    assert k not in others and len(set(others)) == len(others)


def test_unreadable_image_is_quarantined_without_calling_the_model(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    req = {"image_id": "x", "image_path": str(bad), "width": 10, "height": 10, "sha256": "00", "seed": 1, "prompt": "p", "template_id": "t"}
    df, reused = corpus_generation.generate_shard(None, None, [req], "genixer_l", "gid", Sampling(), "common_vqa", "common_vqa", None,
                                        task_of=task_of)
    assert reused == 0 and len(df) == 1 and df.quarantine_reason[0].startswith("unreadable image")


def test_generate_shard_samples_each_row_with_its_recorded_seed(tmp_path, monkeypatch):
    from PIL import Image
    img = tmp_path / "ok.png"
    Image.new("RGB", (8, 8)).save(img)
    reqs = [{"image_id": f"x{i}", "image_path": str(img), "width": 8, "height": 8, "sha256": "00", "seed": 100 + i,
             "prompt": f"p{i}", "template_id": "t"} for i in range(5)]
    sampling = Sampling(temperature=0.7, top_p=0.9)
    calls = []

    def fake_generate(model, processor, paths, prompts, s, batch_size=16, seeds=None):
        calls.append((list(prompts), list(seeds), s))
        return [[f"seed {x}"] for x in seeds]

    monkeypatch.setattr(corpus_generation, "generate", fake_generate)
    df, _ = corpus_generation.generate_shard(None, None, reqs, "genixer_l", "gid", sampling, None, "common_vqa", None, batch_size=2, task_of=task_of)
    assert len(calls) == 3 and all(s == sampling for *_, s in calls)
    used = {p: x for prompts, seeds, _ in calls for p, x in zip(prompts, seeds)}
    assert all(used[r.prompt] == r.seed for r in df.itertuples()) and list(df.seed) == [100, 101, 102, 103, 104]
    assert all(r.raw_text == f"seed {r.seed}" for r in df.itertuples())


def test_unreadable_check():
    assert corpus_generation.readable("/nonexistent.png").startswith("unreadable image")


def _row(q, a, w=128, h=128, boxes=None, quarantine=None):
    return {"turns": [{"question": q, "answer": a}], "boxes": boxes, "width": w, "height": h, "task": "rec",
            "quarantine_reason": quarantine, "clip_score": None, "image_path": "x", "image_id": "i"}


def test_coarse_filter_steps():
    rows = pd.DataFrame([
        _row("Where is the red circle?", "[0.100,0.100,0.400,0.400]"),                  # passes
        _row("Where is the red circle?", "[0.100,0.100,0.120,0.400]"),                  # 2.6 px wide
        _row("Describe the object at [0.1,0.1,0.4,0.4].", "the red circle"),            # REG, not REC
        _row("Where is the red circle?", "red"),                                        # no box answer
        _row("x", "y", quarantine="parse: not 'Question: .. Answer: ..'"),              # malformed text
    ])
    out = filters.coarse_filter(rows, reading=WORLD_REC_READING)
    assert pd.isna(out.filter_reason[0]) and out.expression[0] == "the red circle"
    assert out.box[0] == [pytest.approx(12.8), pytest.approx(12.8), pytest.approx(51.2), pytest.approx(51.2)]
    assert out.filter_reason[1].startswith("2-small")
    assert all(out.filter_reason[i].startswith("1-malformed") for i in (2, 3, 4))


def test_rec_expression_for_every_rec_phrasing_and_a_paraphrase():
    for p in PHRASINGS["locate"]:
        assert filters.rec_expression([{"question": p.format(ref="the small red circle"), "answer": "[0,0,1,1]"}], reading=WORLD_REC_READING) == "the small red circle"
    assert filters.rec_expression([{"question": "What are the coordinates of the blue star?", "answer": "x"}], reading=WORLD_REC_READING) == "the blue star"


def test_min_box_scales_the_papers_50px():
    assert filters.min_box_px(640, 480) == pytest.approx(50)
    assert filters.min_box_px(128, 96) == pytest.approx(10)


def test_clip_step_threshold_and_nan():
    rows = filters.coarse_filter(pd.DataFrame([_row("Where is the red circle?", "[0.1,0.1,0.4,0.4]") for _ in range(3)]), reading=WORLD_REC_READING)
    out = filters.clip_step(rows, np.array([0.9, 0.1, np.nan]), 0.5)
    assert pd.isna(out.filter_reason[0]) and out.clip_score[0] == 0.9
    assert out.filter_reason[1].startswith("3-clip: 0.100 < 0.500")
    assert out.filter_reason[2] == "3-clip: score is NaN"


def test_select_vqa_lambda_and_hard_band():
    df = pd.DataFrame({"judge_p_yes": [0.95, 0.75, 0.6, 0.4, np.nan, 0.99], "quarantine_reason": [None] * 5 + ["parse: x"]})
    kept = filters.select_vqa(df, 0.7)
    assert list(kept.index) == [0, 1, 2] and list(kept.hard_band) == [False, False, True]
    y = filters.vqa_yields(df, (0.5, 0.9))
    assert list(y.kept) == [3, 1]


def test_generate_shard_streams_batches_and_decodes_each_image_once(tmp_path, monkeypatch):
    """`save` gets each batch's new rows only (appended, the shard is never rewritten); an image is decoded once
    (its header checked up front); a file whose header reads but whose pixels do not is quarantined in its batch."""
    import io

    from PIL import Image

    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(good)
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, format="PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header fine, pixel data cut
    reqs = [{"image_id": f"x{i}", "image_path": str(truncated if i == 2 else good), "width": 8, "height": 8, "sha256": "00",
             "seed": i, "prompt": f"p{i}", "template_id": "t"} for i in range(5)]
    opened, saved = [], []
    real_open = corpus_generation.open_rgb
    monkeypatch.setattr(corpus_generation, "open_rgb", lambda p: (opened.append(p), real_open(p))[1])
    monkeypatch.setattr(corpus_generation, "generate", lambda m, pr, images, prompts, s, batch_size=16, seeds=None: [["Question: q Answer: a"]] * len(images))
    df, _ = corpus_generation.generate_shard(None, None, reqs, "genixer_l", "gid", Sampling(), None, "common_vqa", None,
                                   save=lambda d: saved.append(list(d.seed)), batch_size=2, task_of=task_of)
    assert saved == [[0, 1], [2, 3], [4]] and sorted(df.seed) == [0, 1, 2, 3, 4]  # batch 2: row 2 quarantined, row 3 generated
    bad = df[df.seed == 2].iloc[0]
    assert bad.quarantine_reason.startswith("unreadable image") and "truncated" in bad.quarantine_reason
    assert df[df.seed != 2].quarantine_reason.isna().all()
    assert sorted(opened) == sorted([str(good)] * 3 + [str(truncated)])  # one decode per image per batch
