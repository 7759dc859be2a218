"""World-free corruptions and records (collected data from files: no scene, no oracle), the REC
expression reader for any phrasing, and region-CLIP calibration without scenes."""

import json
import random
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from genixer import filters
from genixer.boxes import answer_box, box_to_text, inside, iou
from genixer.sources.negatives import (
    CORRUPTIONS, accepted_answers, answer_type, build_pool, corrupt_pair, shifted_box, verification_records,
)
from genixer.judge import NO, NONE, YES, judge_pairs, judge_prompt
from genixer.metrics import normalize_answer
from genixer.region_clip import (
    PAPER_CLIP_THRESHOLD, fixed_threshold, locate_ref, negative_pairs, rec_phrasings, region_pairs, sample_candidates,
)
from genixer.sources.common import REC_QUESTION
from genixer.world.grammar import PHRASINGS
from genixer.world.regions import WORLD_REC_READING as WORLD_READING

W, H = 640, 480
MC_Q = "What is the man holding? Options: A. an umbrella B. a kite C. a surfboard D. a phone"
RECORD_KEYS = {"image_path", "image_id", "task", "sample_id", "pair_index", "record_id", "question", "answer", "prompt",
               "target", "corruption"}


def _s(sid, task, turns, image="img1", boxes=(), extra=None):
    return {"sample_id": sid, "image_id": image, "image_path": f"/nowhere/{image}.jpg", "width": W, "height": H,
            "task": task, "turns": [{"question": q, "answer": a} for q, a in turns], "boxes": [list(b) for b in boxes],
            "points": [], "source": "test", "split": "val", "record_id": sid, "extra": json.dumps(extra) if extra else None}


def _rec(sid, expr, box, image="img1"):
    return _s(sid, "rec", [(REC_QUESTION.format(ref=expr), box_to_text(box, W, H))], image, boxes=[box])


# Three objects of img1 that do not overlap, one of img2.
MAN, DOG, CAR = (20.0, 40.0, 220.0, 400.0), (300.0, 300.0, 420.0, 460.0), (450.0, 50.0, 630.0, 200.0)


@pytest.fixture
def samples():
    return [
        _s("v1", "common_vqa", [("What color is the bus?", "red")], extra={"answers": ["red"] * 9 + ["dark red"]}),
        _s("v2", "common_vqa", [("What color is the car?", "Blue")], "img2"),
        _s("v3", "common_vqa", [("What color is the sky?", "grey")], "img2"),
        _s("v4", "common_vqa", [("What color is the wall?", "Red.")], "img2"),
        _s("n1", "common_vqa", [("How many dogs are there?", "2")]),
        _s("n2", "common_vqa", [("How many cats are there?", "two")], "img2"),
        _s("y1", "common_vqa", [("Is the man smiling?", "yes")], extra={"answers": ["yes"] * 10}),
        _s("p1", "adv_vqa", [("Is there a dog in the image?", "No")]),
        _s("m1", "mc_vqa", [(MC_Q, "B")], extra={"choices": ["an umbrella", "a kite", "a surfboard", "a phone"],
                                                 "direct_answers": ["kite"] * 10}),
        _s("d1", "md", [("What color is the bus?", "red"), ("Is the bus moving?", "no")]),
        _s("d2", "md", [("What color is the car?", "white")], "img2"),
        _rec("r1", "the man in the red shirt", MAN),
        _rec("r2", "brown dog lying down", DOG),
        _rec("r3", "white car top right", CAR),
        _rec("r4", "woman on the left", (10.0, 10.0, 200.0, 470.0), "img2"),
    ]


@pytest.fixture
def pool(samples):
    return build_pool(samples)


# ---- the pool and the answer types -----------------------------------------------------------------

def test_pool_answers_by_kind_and_boxes_by_image(pool):
    # one spelling per normalised answer; yes/no, letters and boxes are not free-text answers
    assert pool.answers["common_vqa:what color"] == ["red", "Blue", "grey"]
    assert pool.answers["common_vqa:how many"] == ["2"]
    assert "common_vqa:is man" not in pool.answers and not any(k.startswith("mc_vqa") for k in pool.answers)
    assert len(pool.boxes["img1"]) == 3 and len(pool.boxes["img2"]) == 1
    assert pool.boxes["img1"][0] == pytest.approx((20 / W, 40 / H, 220 / W, 400 / H), abs=1e-3)


def test_answer_types():
    assert answer_type(MC_Q, "B") == "mc" and answer_type(MC_Q, "(c)") == "mc"
    assert answer_type("Is it?", "Yes.") == "yes_no"
    assert answer_type("Where?", "[0.1,0.2,0.3,0.4]") == "box"
    assert answer_type("What color?", "red") == "text" and answer_type(MC_Q, "a kite") == "text"


# ---- each corruption ---------------------------------------------------------------------------------

def test_answer_from_same_kind(pool):
    seen = set()
    for seed in range(30):
        q, a, kind = corrupt_pair("What color is the bus?", "red", "common_vqa", pool, random.Random(seed),
                                       kinds=["answer_from_same_kind"])
        assert kind == "answer_from_same_kind" and q == "What color is the bus?"
        assert normalize_answer(a) != "red" and a in pool.answers["common_vqa:what color"]
        seen.add(a)
    assert seen == {"Blue", "grey"}  # "Red." normalises to the true answer: never drawn
    # an answer the data set also accepts is never used
    for seed in range(20):
        out = corrupt_pair("What color is the bus?", "red", "common_vqa", pool, random.Random(seed),
                                kinds=["answer_from_same_kind"], accepted_answers=["blue"])
        assert out[1] == "grey"
    # a kind with one distinct answer ("2" and "two" are the same): impossible
    assert corrupt_pair("How many dogs are there?", "2", "common_vqa", pool, random.Random(0)) is None
    # another task is another kind
    assert corrupt_pair("What color is the bus?", "red", "adv_vqa", pool, random.Random(0)) is None
    assert corrupt_pair("What color is the bus?", "red", "md", pool, random.Random(0))[1] == "white"


def test_option_swapped():
    pool = build_pool([])
    letters = set()
    for seed in range(30):
        q, a, kind = corrupt_pair(MC_Q, "B", "mc_vqa", pool, random.Random(seed))
        assert (q, kind) == (MC_Q, "option_swapped") and a in "ACD" and len(a) == 1
        letters.add(a)
        # what the judge reads: the stem and another option's text
        ((stem, text),) = judge_pairs([{"question": q, "answer": a}], "mc_vqa")
        assert stem == "What is the man holding?" and text in ("an umbrella", "a surfboard", "a phone")
    assert letters == set("ACD")
    # an option with the right option's text, or one the data set accepts, is no false answer
    dup = "What is it? Options: A. kite B. a kite C. the kite D. phone"
    for seed in range(10):
        assert corrupt_pair(dup, "A", "mc_vqa", pool, random.Random(seed))[1] == "D"
    assert corrupt_pair(dup, "A", "mc_vqa", pool, random.Random(0), accepted_answers=["phone"]) is None
    assert corrupt_pair("What is it?", "B", "mc_vqa", pool, random.Random(0), kinds=["option_swapped"]) is None


def test_flipped_yes_no():
    pool = build_pool([])
    assert corrupt_pair("Is there a dog in the image?", "No", "adv_vqa", pool, random.Random(0)) == \
        ("Is there a dog in the image?", "Yes", "flipped_yes_no")
    assert corrupt_pair("Is the man smiling?", "yes", "common_vqa", pool, random.Random(0))[1:] == ("no", "flipped_yes_no")
    # the annotators also said "no": flipping would not make it false
    assert corrupt_pair("Is the man smiling?", "yes", "common_vqa", pool, random.Random(0),
                             accepted_answers=["yes", "no"]) is None
    assert corrupt_pair("What color is it?", "red", "common_vqa", pool, random.Random(0), kinds=["flipped_yes_no"]) is None


@pytest.mark.parametrize("box", [MAN, DOG, (0.0, 0.0, W, H), (600.0, 440.0, 640.0, 480.0)])
def test_box_shifted(box, pool):
    truth = box_to_text(box, W, H)
    for seed in range(25):
        q, a, kind = corrupt_pair("Where is it?", truth, "rec", pool, random.Random(seed), kinds=["box_shifted"])
        new, old = answer_box(a, W, H), answer_box(truth, W, H)
        assert kind == "box_shifted" and a != truth
        assert iou(new, old) < 0.5 and inside(new, W, H)
    assert corrupt_pair("Where is it?", "red", "rec", pool, random.Random(0), kinds=["box_shifted"]) is None


def test_shifted_box_in_pixels():
    for seed in range(20):
        nb = shifted_box(MAN, random.Random(seed), width=W, height=H)
        assert inside(nb, W, H) and iou(nb, MAN) < 0.5


def test_box_from_other_object(pool):
    truth = box_to_text(MAN, W, H)
    got = set()
    for seed in range(30):
        q, a, kind = corrupt_pair("Which region does this describe: the man?", truth, "rec", pool, random.Random(seed),
                                       image_id="img1", kinds=["box_from_other_object"])
        assert kind == "box_from_other_object" and iou(answer_box(a, W, H), MAN) < 0.5
        got.add(a)
    assert got == {box_to_text(DOG, W, H), box_to_text(CAR, W, H)}
    # the only object of its image, no image, or only overlapping others: impossible
    only = box_to_text((10.0, 10.0, 200.0, 470.0), W, H)
    kw = dict(kinds=["box_from_other_object"])
    assert corrupt_pair("Where?", only, "rec", pool, random.Random(0), image_id="img2", **kw) is None
    assert corrupt_pair("Where?", truth, "rec", pool, random.Random(0), **kw) is None
    near = build_pool([_rec("a", "x", MAN, "im"), _rec("b", "y", (30.0, 50.0, 230.0, 410.0), "im")])
    assert corrupt_pair("Where?", truth, "rec", near, random.Random(0), image_id="im", **kw) is None


def test_kinds_checked_and_empty_pairs():
    with pytest.raises(ValueError, match="unknown corruption kinds"):
        corrupt_pair("Q?", "a", "common_vqa", build_pool([]), random.Random(0), kinds=["wrong_colour"])
    assert corrupt_pair("Q?", " ", "common_vqa", build_pool([]), random.Random(0)) is None


def test_deterministic_for_a_seed(samples, pool):
    def run(seed):
        rng = random.Random(seed)
        return [corrupt_pair(t["question"], t["answer"], s["task"], pool, rng, image_id=s["image_id"])
                for s in samples for t in s["turns"]]
    assert run(3) == run(3)
    assert any(x != y for x, y in zip(run(3), run(4)))
    assert verification_records(samples, 7) == verification_records(samples, random.Random(7))


# ---- the judge's records -----------------------------------------------------------------------------

def test_records_balanced_and_shaped_like_the_world_records(samples):
    records = verification_records(samples, random.Random(0))
    counts = Counter(r["target"] for r in records)
    assert counts[YES] == counts[NO] > 0 and set(counts) == {YES, NO}
    by_pair = {}
    for r in records:
        assert set(r) == RECORD_KEYS and r["prompt"] == judge_prompt(r["question"], r["answer"])
        assert (r["corruption"] == NONE) == (r["target"] == YES) and r["corruption"] in CORRUPTIONS + (NONE,)
        by_pair.setdefault((r["sample_id"], r["pair_index"]), {})[r["target"]] = r
    for (sid, i), pair in by_pair.items():
        assert set(pair) == {YES, NO}
        assert pair[YES]["record_id"] == f"{sid}:{i}:yes" and pair[NO]["record_id"] == f"{sid}:{i}:no"
        assert (pair[YES]["question"], pair[YES]["answer"]) != (pair[NO]["question"], pair[NO]["answer"])
    # general tasks only (REC pairs belong to the region CLIP); MC records carry option text, never letters
    assert {r["task"] for r in records} == {"common_vqa", "adv_vqa", "mc_vqa", "md"}
    mc = [r for r in records if r["task"] == "mc_vqa"]
    assert mc and all("Options:" not in r["question"] and r["answer"] not in "ABCD" for r in mc)
    assert {r["corruption"] for r in records} >= {"answer_from_same_kind", "option_swapped", "flipped_yes_no"}
    # the "How many" pairs have no distinct other answer: neither record
    assert not any(r["sample_id"] in ("n1", "n2") for r in records)
    # both turns of the dialogue are judged
    assert {r["pair_index"] for r in records if r["sample_id"] == "d1"} == {0, 1}


def test_records_respect_the_data_sets_other_answers(samples):
    # every VQAv2 annotator also accepted "blue" and "grey" for the bus: no false answer left for it
    samples = [dict(s, extra=json.dumps({"answers": ["red", "blue", "grey"]})) if s["sample_id"] == "v1" else s for s in samples]
    assert accepted_answers(samples[0]) == ["red", "blue", "grey"]
    records = verification_records(samples, random.Random(0))
    assert not any(r["sample_id"] == "v1" for r in records)
    assert accepted_answers({"extra": None}) == [] and accepted_answers({"extra": "not json"}) == []


def test_records_from_a_dataframe_with_box_kinds(samples):
    df = pd.DataFrame(samples)
    records = verification_records(df, random.Random(1), tasks=("rec",))
    assert records and {r["corruption"] for r in records if r["target"] == NO} <= {"box_shifted", "box_from_other_object"}
    assert sum(r["target"] == YES for r in records) == sum(r["target"] == NO for r in records) == 4


# ---- the REC expression, whatever the phrasing and the words ------------------------------------------

REAL = [
    ("Which region does this describe: the man in the red shirt?", "the man in the red shirt"),
    ("Which region does this describe: guy on left with glasses?", "guy on left with glasses"),
    ("which region does this describe:   the  2nd  zebra from the right?", "the 2nd zebra from the right"),
]


@pytest.mark.parametrize("question,expr", REAL)
def test_rec_expression_published_data(question, expr):
    turns = [{"question": question, "answer": "[0.100,0.200,0.300,0.400]"}]
    assert filters.rec_expression(turns, reading=WORLD_READING) == expr
    assert locate_ref(question, reading=WORLD_READING) == expr


def test_rec_expression_with_given_phrasings():
    official_style = ["Where is <expr> in the image?", "Where is {ref}?",
                      "I need the coordinates of {ref}. Can you assist?",
                      "Where in image is <expr> located? Provide me with its coordinates, please."]
    cases = [
        ("Where is the cat in the image?", "the cat"),  # the phrasing that explains most of the question wins
        ("I need the coordinates of the person at the bottom left of the image. Can you assist?",
         "the person at the bottom left of the image"),
        ("Where in image is the tall lamp located? Provide me with its coordinates, please.", "the tall lamp"),
        ("Which region does this describe: a dog?", "a dog"),  # REC_QUESTION is always read
    ]
    for q, expr in cases:
        assert filters.rec_expression([{"question": q, "answer": "x"}], official_style, WORLD_READING) == expr
    # the instruction_templates.json form: kind -> phrasings
    assert locate_ref("Find the blue bike please.", {"locate": ["Find {ref} please."], "describe": ["{box}"]}, WORLD_READING) == "the blue bike"
    assert rec_phrasings(["Find {ref}."])[-1] == REC_QUESTION and rec_phrasings(reading=WORLD_READING)[:-1] == tuple(PHRASINGS["locate"])
    with pytest.raises(ValueError, match="no \\{ref\\} slot"):
        locate_ref("x", ["Find it."], WORLD_READING)


def test_rec_expression_world_unchanged_and_non_expressions():
    for p in PHRASINGS["locate"]:
        assert filters.rec_expression([{"question": p.format(ref="the small red circle"), "answer": "x"}], reading=WORLD_READING) == "the small red circle"
    assert locate_ref("What are the coordinates of the blue star?", reading=WORLD_READING) == "the blue star"  # paraphrase fallback
    assert locate_ref("Which region does this describe: [0.1,0.2,0.3,0.4]?", reading=WORLD_READING) is None  # a box is no expression
    assert locate_ref("Where is the cat? Where is the dog?", reading=WORLD_READING) is None
    assert filters.rec_expression([{"question": REAL[0][0], "answer": "x"}] * 2, reading=WORLD_READING) is None  # not one turn


def test_coarse_filter_and_region_pairs_on_published_rec(samples):
    rec = [s for s in samples if s["task"] == "rec"]
    rows = pd.DataFrame(rec).assign(quarantine_reason=None)
    out = filters.coarse_filter(rows, reading=WORLD_READING)
    assert out.filter_reason.isna().all()
    assert list(out.expression) == ["the man in the red shirt", "brown dog lying down", "white car top right", "woman on the left"]
    pairs = region_pairs(rec, reading=WORLD_READING)
    assert [p["expression"] for p in pairs] == list(out.expression)
    assert pairs[0]["box"] == list(MAN) and (pairs[0]["width"], pairs[0]["height"]) == (W, H)


# ---- region-CLIP calibration without scenes -------------------------------------------------------------

def test_negative_pairs_from_samples_without_scenes(samples):
    pairs = region_pairs([s for s in samples if s["task"] == "rec"], reading=WORLD_READING)
    # the image files do not exist: the sizes come from the samples, nothing is opened
    candidates = sample_candidates(samples, reading=WORLD_READING)
    assert sample_candidates(pd.DataFrame(samples), reading=WORLD_READING) == candidates
    negs = negative_pairs(pairs, candidates, 0)
    by_kind = {k: [n for n in negs if n["negative"] == k] for k in ("swap", "shift")}
    src = {p["sample_id"]: p for p in pairs}
    img1 = {p["expression"] for p in pairs if p["image_id"] == "img1"}
    assert len(by_kind["swap"]) == 3  # the img2 pair has no other object to swap with
    for n in by_kind["swap"]:
        p = src[n["source_sample_id"]]
        assert n["box"] == p["box"] and n["expression"] != p["expression"] and n["expression"] in img1
    assert len(by_kind["shift"]) == 4
    for n in by_kind["shift"]:
        p = src[n["source_sample_id"]]
        assert n["expression"] == p["expression"] and iou(n["box"], p["box"]) < 0.5 and inside(n["box"], W, H)
    assert negative_pairs(pairs, candidates, 0) == negs  # deterministic for a seed
    assert negative_pairs(pairs, candidates, random.Random(0), kinds=("swap",))


def test_fixed_threshold_is_the_papers_cosine():
    assert PAPER_CLIP_THRESHOLD == 0.6
    t = fixed_threshold()
    assert t["threshold"] == 0.6 and t["objective"] == "fixed" and "paper" in t["source"]
    r = fixed_threshold(0.6, np.array([0.9, 0.7, 0.5]), np.array([0.65, 0.1]))
    assert (r["precision"], r["recall"], r["n_pos"], r["n_neg"]) == pytest.approx((2 / 3, 2 / 3, 3, 2))
    assert r["accuracy"] == pytest.approx(3 / 5) and r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert fixed_threshold(0.3)["source"] == "fixed by the caller"
    with pytest.raises(ValueError):
        fixed_threshold(60)


def test_region_pairs_from_published_reg():
    """Published REG rows (REG_QUESTION holds the box): expression = the answer, box = the sample's box, else the
    question's one box; a question with two boxes gives no pair."""
    from genixer.boxes import box_to_text
    from genixer.sources.common import REG_QUESTION

    box = [10.0, 20.0, 60.0, 70.0]
    s = {"task": "reg", "image_path": "a.jpg", "image_id": "a", "sample_id": "r1", "width": 100, "height": 80, "boxes": [box],
         "turns": [{"question": REG_QUESTION.format(box=box_to_text(box, 100, 80)), "answer": "The man in the red shirt."}]}
    (p,) = region_pairs([s], reading=WORLD_READING)
    assert p["expression"] == "the man in the red shirt" and p["box"] == box
    (p,) = region_pairs([dict(s, boxes=[])], reading=WORLD_READING)  # the box read back from the question
    assert p["box"] == pytest.approx(box, abs=0.1)
    two = dict(s, boxes=[], turns=[{"question": "Describe [0.1,0.1,0.2,0.2] and [0.3,0.3,0.4,0.4].", "answer": "x"}])
    assert region_pairs([two], reading=WORLD_READING) == []
