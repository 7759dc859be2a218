"""The task of a sample from its form alone (genixer.task_form.task_by_form), and task_of: the world
grammar first, the form where the grammar does not classify a question."""

import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from genixer.boxes import box_to_text, point_to_text
from genixer.sources import FORMATS, read_samples_of
from genixer.sources.common import REC_QUESTION, REG_QUESTION
from genixer.task_form import asks_description, is_existence_probe, task_by_form
from genixer.tasks import TASKS
from genixer.world import annotate_images, scene_seed
from genixer.world.oracle import classify, task_of
from genixer.world.scene import WorldConfig, sample_scene
from tests.sources import (
    test_aokvqa,
    test_gqa,
    test_llava,
    test_pointqa_local,
    test_pope,
    test_refcoco,
    test_shikra_gpt4gen,
    test_visual7w,
    test_visual_genome,
    test_vqav2,
)

BOX = "[0.120,0.330,0.500,0.910]"
POINT = "[0.250,0.400]"


def _one(q, a):
    return [{"question": q, "answer": a}]


# ---- the readers' own samples ---------------------------------------------------------------------

def _releases(root):
    """(format, files, images) of each reader test's tiny release, written under `root`."""
    def at(name):
        d = root / name
        d.mkdir()
        return d
    q, a, images, _ = test_vqav2._release(at("vqav2"))
    yield "vqav2", [q, a], images
    q, images = test_gqa._release(at("gqa"))
    yield "gqa", [q], images
    f, images = test_aokvqa._release(at("aokvqa"))
    yield "aokvqa", [f], images
    f, images = test_pope._release(at("pope"))
    yield "pope", [f], images
    f, images = test_llava._release(at("llava"))
    yield "llava", [f], images
    refs, inst, images = test_refcoco._release(at("refcoco"))
    yield "refcoco", [refs, inst], images
    regions, image_data, images = test_visual_genome._release(at("visual_genome"))
    yield "visual_genome", [regions, image_data], images
    path, images, _ = test_visual7w._release(at("visual7w"))
    yield "visual7w", [path], images
    path, images = test_pointqa_local._release(at("pointqa_local"))
    yield "pointqa_local", [path], images
    qca, rd, images = test_shikra_gpt4gen._release(at("shikra_gpt4gen"))
    yield "shikra_gpt4gen", [qca, rd], images


@pytest.fixture(scope="module")
def reader_samples(tmp_path_factory):
    out = {}
    for fmt, files, images in _releases(tmp_path_factory.mktemp("releases")):
        samples, _ = read_samples_of(fmt, files, images, progress=False)
        out[fmt] = list(samples)
    return out


# The one sample whose form is not its reader's task: LLaVA's mix holds REC data in LLaVA's
# conversation format, which the LLaVA reader files under common_vqa; by its form it is REC.
LLAVA_REC = "Please provide the bounding box coordinate of the region this sentence describes: a red car."


def _expected(fmt, sample):
    if fmt == "llava" and sample["turns"][0]["question"] == LLAVA_REC:
        return "rec"
    return sample["task"]


def test_every_reader_sample_is_classified_by_its_form(reader_samples):
    assert set(reader_samples) == set(FORMATS), "a registered format without a release here"
    rows = []
    wrong = []
    for fmt, samples in sorted(reader_samples.items()):
        assert samples, f"{fmt}: the release gave no samples"
        agree = 0
        for s in samples:
            got = task_by_form(s["turns"])
            agree += got == s["task"]
            if got != _expected(fmt, s):
                wrong.append((fmt, s["task"], got, s["turns"]))
            # with the image size the boxes are read as boxes of the image, and the task is the same
            assert task_by_form(s["turns"], s["width"], s["height"]) == got
        rows.append((fmt, len(samples), agree / len(samples)))
    print("\nformat            n  agree (task_by_form == reader's task)")
    for fmt, n, share in rows:
        print(f"{fmt:15s} {n:3d}  {share:.2f}")
    assert wrong == []
    # the fixtures exercise every task, so no classifier that misses one can pass
    assert {s["task"] for samples in reader_samples.values() for s in samples} == set(TASKS)
    assert {fmt: share for fmt, _, share in rows}["llava"] == pytest.approx(2 / 3)


def test_reader_samples_are_outside_the_grammar_and_task_of_falls_back_to_the_form(reader_samples):
    for fmt, samples in reader_samples.items():
        for s in samples:
            # the grammar alone (the old task_of) gave None for all of them ...
            assert any(classify(t["question"]) is None for t in s["turns"]), (fmt, s["turns"])
            # ... task_of now gives the form's task
            assert task_of(s["turns"]) == _expected(fmt, s), (fmt, s["turns"])


# ---- published phrasings, one per rule --------------------------------------------------------------

PUBLISHED = [
    # common_vqa: VQAv2 / GQA / LLaVA
    ("common_vqa", _one("What colour is the bus?", "red")),
    ("common_vqa", _one("How many people are in the photo?", "3")),
    ("common_vqa", _one("Is the man wearing a hat?", "yes")),  # a yes/no question that is no existence probe
    ("common_vqa", _one("Do you see a train near the person?", "no")),  # GQA
    ("common_vqa", _one("Is there a dog?", "yes")),  # not about the whole image
    ("common_vqa", _one("Is there a dog in the image?", "There is a dog on the sofa.")),  # not answered yes/no
    # adv_vqa: POPE and its rewordings
    ("adv_vqa", _one("Is there a dog in the image?", "yes")),
    ("adv_vqa", _one("Is there an apple in the image?", "No")),
    ("adv_vqa", _one("Are there any people in this picture?", "No, there are none.")),
    ("adv_vqa", _one("Does the image contain a traffic light?", "yes")),
    # mc_vqa: A-OKVQA as the reader writes it, and bare options
    ("mc_vqa", _one("What is in the motorcyclist's mouth? Options: A. toothpick B. food C. popsicle stick D. cigarette", "D")),
    ("mc_vqa", _one("What is the man awaiting? Options: A. cab B. train C. delivery D. skateboarder", "(A)")),
    ("mc_vqa", _one("What is the man awaiting? Options: A. cab B. train C. delivery D. skateboarder", "B. train")),
    ("mc_vqa", _one("What is the man awaiting? Options: A. cab B. train C. delivery D. skateboarder", "delivery")),
    ("mc_vqa", _one("Which season is it? A. winter B. summer", "A")),
    ("common_vqa", _one("What is the man awaiting? Options: A. cab B. train C. delivery D. skateboarder", "a bus")),
    # md: LLaVA conversations
    ("md", [{"question": "What is the man doing?", "answer": "He is surfing."},
            {"question": "Is the water calm?", "answer": "No, the waves are high."}]),
    # rec: RefCOCO through REC_QUESTION, Shikra's REC answer, several boxes for one expression
    ("rec", _one(REC_QUESTION.format(ref="the man in the red shirt"), BOX)),
    ("rec", _one("Where is the man in the red shirt?", f"Answer: {BOX} .")),
    ("rec", _one("Can you point out the two dogs in the image?", "[0.100,0.100,0.200,0.200;0.300,0.300,0.400,0.400]")),
    # reg: REG_QUESTION, Shikra-style REG requests, LLaVA's
    ("reg", _one(REG_QUESTION.format(box=BOX), "the man in the red shirt")),
    ("reg", _one(f"Can you provide a unique description of the area {BOX}?", "man in red")),
    ("reg", _one(f"What sets the region {BOX} apart from the rest of the image?", "the only red shirt")),
    ("reg", _one(f"Please provide a short description for this region: {BOX}", "a man in a red shirt")),
    ("reg", _one(f"What is in the region {BOX}?", "the large red circle")),
    # pointqa: PointQA Local (point after the question), Shikra's box version, Visual7W pointing
    ("pointqa", _one(f"What color is the shirt? {POINT}", "white")),
    ("pointqa", _one(f"What color is the shirt?{BOX}", "The answer is white .")),
    ("pointqa", _one(f"Which object is on the table? Candidates: {BOX} [0.500,0.100,0.700,0.300]", "[0.500,0.100,0.700,0.300]")),
    ("pointqa", _one(f"Which animal is sleeping? Candidates: {BOX} [0.500,0.100,0.700,0.300]", f"The answer is {BOX} .")),
    # qca: boxes inside a reasoning with a final answer
    ("qca", _one("Is there a cup?", f"Yes, a cup{BOX} is there. So the answer is yes.")),
    ("qca", _one(f"What is the man{BOX} holding?", "The man[0.1,0.1,0.3,0.6] holds a cup[0.5,0.3,0.6,0.6]. So the answer is a cup.")),
    # rd: Shikra GPT4Gen RD (one turn, boxes in the answer's text), and dialogues with a box anywhere
    ("rd", _one(f"Where is the cup{BOX}?", "It[0.300,0.250,0.430,0.450] is on the table[0.000,0.500,1.000,1.000].")),
    ("rd", [{"question": REC_QUESTION.format(ref="the cup"), "answer": BOX},
            {"question": "What colour is it?", "answer": "blue"}]),
    ("rd", [{"question": "What is the man doing?", "answer": "Surfing."},
            {"question": f"And what is at {POINT}?", "answer": "a surfboard"}]),
]


@pytest.mark.parametrize("task,turns", PUBLISHED, ids=[f"{t}:{turns[0]['question'][:40]}" for t, turns in PUBLISHED])
def test_published_phrasings(task, turns):
    assert task_by_form(turns) == task
    assert task_of(turns) == task  # none of them is in the world grammar


def test_published_phrasings_cover_every_task():
    assert {t for t, _ in PUBLISHED} == set(TASKS)


def test_existence_probe_tells_pope_from_vqa():
    assert is_existence_probe("Is there a snowboard in the image?")
    assert is_existence_probe("Can you see a red star in this picture?")
    assert is_existence_probe("Is a blue circle present in the image?")
    assert not is_existence_probe("Is there a snowboard?")
    assert not is_existence_probe("Is the snowboard in the image red?")
    assert not is_existence_probe("Do you see a train near the person?")
    # a VQAv2 question phrased as POPE asks is read as adv_vqa: the form cannot tell them apart
    assert task_by_form(_one("Is there a dog in the picture?", "yes")) == "adv_vqa"


def test_description_or_question_about_a_region():
    assert asks_description(REG_QUESTION.format(box=BOX))
    assert asks_description(f"Describe the object at {BOX}.")
    assert asks_description(f"Which object is at {BOX}?")
    assert asks_description(f"What do you see in {BOX}?")
    assert asks_description(f"{BOX}")  # an instruction, not a question
    assert not asks_description(f"What color is the shirt? {POINT}")
    assert not asks_description(f"What is the man doing? {POINT}")
    assert not asks_description(f"What colour is the object at {POINT}?")


# ---- the world ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world_samples():
    cfg = WorldConfig()
    rows = []
    for i in range(40):
        s = sample_scene(f"collect_{i:06d}", scene_seed(0, "collect", i), "collect", cfg)
        rows.append({"image_id": f"collect_{i:06d}", "image_path": f"/nowhere/{i}.png", "width": s.width,
                     "height": s.height, "scene": s.to_json(), "split": "collect"})
    samples = annotate_images(rows, per_image=2, seed=0)
    assert Counter(s["task"] for s in samples).keys() == set(TASKS)
    return samples


def test_world_samples_keep_their_task(world_samples):
    wrong = Counter(s["task"] for s in world_samples if task_of(s["turns"]) != s["task"])
    assert wrong == Counter()
    # the form alone reads the world's samples right too
    wrong = Counter((s["task"], task_by_form(s["turns"], s["width"], s["height"])) for s in world_samples
                    if task_by_form(s["turns"], s["width"], s["height"]) != s["task"])
    assert wrong == Counter()


def _off_grammar(text):
    # nouns and spellings the world grammar does not know: "ball", "color"
    return re.sub(r"\bcircle", "ball", text).replace("colour", "color")


def test_world_samples_out_of_the_grammar_get_their_task_from_the_form(world_samples):
    changed = defaultdict(int)
    for s in world_samples:
        turns = [{"question": _off_grammar(t["question"]), "answer": _off_grammar(t["answer"])} for t in s["turns"]]
        if all(classify(t["question"]) is not None for t in turns):
            continue  # still grammar: nothing to fall back from
        changed[s["task"]] += 1
        assert task_of(turns) == s["task"], turns
    assert len(changed) >= 7, changed  # the fallback was exercised across (nearly) every task


def test_grammar_decides_where_it_matches():
    # every question is the world's: the grammar's answer stands, even None for a mix of kinds
    mixed = [{"question": "What colour is the circle?", "answer": "red"},
             {"question": "Where is the circle?", "answer": "[0.1,0.1,0.2,0.2]"}]
    assert task_of(mixed) is None
    assert task_by_form(mixed) == "rd"
    # a world REC question with a text answer: the grammar says rec, the form common_vqa
    turns = _one("Where is the red circle?", "on the left")
    assert task_of(turns) == "rec" and task_by_form(turns) == "common_vqa"
    # a question the grammar does not parse is read by its form (this gave None before the fallback)
    assert task_of(_one("Why is the sky blue?", "x")) == "common_vqa"


# ---- malformed --------------------------------------------------------------------------------------

@pytest.mark.parametrize("turns", [
    [], None, "Question: What? Answer: red", {"question": "What?", "answer": "red"},
    ["What colour is the bus?"], [{"question": "What colour is the bus?"}], [{"answer": "red"}],
    [{"question": "", "answer": "red"}], [{"question": "What colour is the bus?", "answer": "  "}],
    [{"question": 3, "answer": "red"}], [{"question": "What colour is the bus?", "answer": None}],
    [{"question": "What colour is the bus?", "answer": "red"}, {"question": "And the car?"}],
])
def test_malformed_turns_have_no_task(turns):
    assert task_by_form(turns) is None
    assert task_of(turns) is None


def test_turns_as_parquet_gives_them_back():
    # a list column read back from parquet is an array of dicts
    turns = np.array([{"question": "Is there a dog in the image?", "answer": "yes"}], dtype=object)
    assert task_by_form(turns) == "adv_vqa" and task_of(turns) == "adv_vqa"
    assert task_of(np.array([{"question": "Where is the red circle?", "answer": BOX}], dtype=object)) == "rec"


def test_image_size_makes_brackets_boxes_of_the_image():
    w, h = 200, 100
    good = box_to_text((20, 10, 100, 90), w, h)
    assert task_by_form(_one("Where is the dog?", good), w, h) == "rec"
    assert task_by_form(_one(f"What color is it? {point_to_text((50, 50), w, h)}", "red"), w, h) == "pointqa"
    for bad in ("[0.500,0.200,0.100,0.900]", "[1.200,0.200,1.500,0.900]", "[120,33,500,91]"):  # inverted, outside, pixels
        assert task_by_form(_one("Where is the dog?", bad)) == "rec"  # the form alone
        assert task_by_form(_one("Where is the dog?", bad), w, h) is None  # not a box of the image
        assert task_of(_one("Where is the dog?", bad), w, h) is None
    assert task_by_form(_one("What color is it? [1.500,0.200]", "red"), w, h) is None
