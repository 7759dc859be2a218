"""Instruction templates, the generator's text format, training records, and the sample schema."""

from collections import Counter

import pytest

from genixer.schema import OPTIONAL_COLUMNS, SAMPLE_COLUMNS, read_samples, sample_problems, write_samples
from genixer.tasks import GENERAL_TASKS, GROUNDING_TASKS, TASK_NAMES, TASKS
from genixer.templates import (
    GENERAL_INSTRUCTIONS, ParseError, RecordConfig, TemplateError, build_records, format_target,
    parse_generation, specific_instruction, validate_general,
)
from genixer.world.grammar import PHRASINGS, validate_phrasings

# ---- general and specific instructions ---------------------------------------------------------


def test_at_least_40_distinct_general_instructions():
    assert len(GENERAL_INSTRUCTIONS) >= 40
    assert len(set(GENERAL_INSTRUCTIONS)) == len(GENERAL_INSTRUCTIONS)
    assert validate_general(GENERAL_INSTRUCTIONS) == tuple(GENERAL_INSTRUCTIONS)
    for s in GENERAL_INSTRUCTIONS:  # general: they name no task
        assert "{" not in s and "task" not in s.lower()


@pytest.mark.parametrize("bad", [
    ("Describe {ref} in the image.",), ("Look at the image.", "Ask about the {}."), ("Ask about {task}.",),
])
def test_general_instruction_with_placeholder_rejected(bad):
    with pytest.raises(TemplateError, match="placeholder"):
        validate_general(bad)


def test_general_instruction_empty_or_duplicate_rejected():
    with pytest.raises(TemplateError, match="empty"):
        validate_general(["Look at the image.", "   "])
    with pytest.raises(TemplateError, match="duplicate"):
        validate_general(["Look at the image.", " Look at the image. "])


def test_specific_instruction():
    assert specific_instruction("common_vqa") == "This is a Common VQA task."
    assert specific_instruction("adv_vqa") == "This is an Adversarial VQA task."
    assert specific_instruction("rec") == "This is a Referring Expression Comprehension task."
    assert specific_instruction("md") == "This is a Multi-turn Dialogue task."
    assert len({specific_instruction(t) for t in TASKS}) == len(TASKS)
    for t in TASKS:
        assert TASK_NAMES[t] in specific_instruction(t)
    with pytest.raises(KeyError):
        specific_instruction("captioning")


# ---- question phrasings ----------------------------------------------------------------------

def test_world_phrasings_validate():
    compiled = validate_phrasings(PHRASINGS)
    assert set(compiled) == set(PHRASINGS)
    assert all(len(compiled[k]) == len(PHRASINGS[k]) for k in PHRASINGS)
    assert all(len(v) >= 1 for v in PHRASINGS.values())
    assert sum(len(v) for v in PHRASINGS.values()) >= 30


def test_locate_phrasing_without_ref_rejected():
    with pytest.raises(TemplateError, match="ref"):
        validate_phrasings({"locate": ("Where is {ref}?", "Where is it?")})


def test_unknown_slot_rejected():
    with pytest.raises(TemplateError, match="unknown slot"):
        validate_phrasings({"locate": ("Where is {ref} near {landmark}?",)})


def test_other_phrasing_errors():
    with pytest.raises(TemplateError, match="unknown question kind"):
        validate_phrasings({"caption": ("Describe the image.",)})
    with pytest.raises(TemplateError, match="no phrasings"):
        validate_phrasings({"colour": ()})
    with pytest.raises(TemplateError):  # a slot used twice cannot compile
        validate_phrasings({"colour": ("Is {ref} the same colour as {ref}?",)})
    with pytest.raises(TemplateError, match="thing"):
        validate_phrasings({"reason_exist": ("Is anything {rel} {ref}?",)})
    with pytest.raises(TemplateError, match="rel"):
        validate_phrasings({"relation": ("Is {ref} near {ref2}?",)})


def test_grammar_raises_the_templates_error_class():
    import genixer.world.grammar as grammar
    assert grammar.TemplateError is TemplateError
    assert issubclass(TemplateError, ValueError)


# ---- the generator's text format ----------------------------------------------------------------

SINGLE = [{"question": "What colour is the small circle?", "answer": "red"}]
MULTI = [
    {"question": "Where is the red circle?", "answer": "[0.125,0.250,0.375,0.500]"},
    {"question": "Describe the object at [0.500,0.500,0.750,0.750].", "answer": "the large blue square"},
    {"question": "How many circles are to the left of the square?",
     "answer": "The square is at [0.5,0.5,0.7,0.7]. The circles to the left of it are at [0.1,0.1,0.2,0.2;0.2,0.3,0.3,0.4]. "
               "So the answer is 2."},
]


def test_format_target():
    assert format_target(SINGLE) == "Question: What colour is the small circle? Answer: red"
    assert format_target(MULTI).count("\n") == 2
    assert format_target(MULTI).splitlines()[1] == (
        "Question: Describe the object at [0.500,0.500,0.750,0.750]. Answer: the large blue square")


@pytest.mark.parametrize("turns", [SINGLE, MULTI, MULTI[:2]])
def test_format_parse_round_trip(turns):
    assert parse_generation(format_target(turns)) == turns


def test_parse_generation_tolerates_whitespace_and_case():
    text = "  question:  What colour is the circle?\n  ANSWER:   red  \nQuestion: How many squares are there? Answer: 2\n"
    assert parse_generation(text) == [{"question": "What colour is the circle?", "answer": "red"},
                                      {"question": "How many squares are there?", "answer": "2"}]


@pytest.mark.parametrize("text", ["", "   \n ", None])
def test_parse_generation_empty(text):
    with pytest.raises(ParseError, match="empty"):
        parse_generation(text)


@pytest.mark.parametrize("text", [
    "Question: What colour is the circle?", "What colour is the circle? red", "Question: Answer: red",
    "Question: What colour is the circle? Answer:", "Sure! Question: What colour is the circle? Answer: red",
    "Question: What colour is the circle? Answer: red\nQuestion: How many squares?",
])
def test_parse_generation_errors(text):
    with pytest.raises(ParseError):
        parse_generation(text)


# ---- training records -----------------------------------------------------------------------------

def _samples(per_task):
    out = []
    for task, n in per_task.items():
        n_turns = 3 if task in ("md", "rd") else 1
        for i in range(n):
            out.append({"sample_id": f"{task}:{i}", "image_id": f"img{i}", "image_path": f"/x/img{i}.png", "task": task,
                        "turns": [{"question": f"q{task}{i}.{k}", "answer": f"a{k}"} for k in range(n_turns)]})
    return out


SIZES = {"common_vqa": 137, "adv_vqa": 211, "mc_vqa": 97, "md": 53, "rec": 301, "reg": 149, "pointqa": 88, "qca": 65,
         "rd": 41}


@pytest.fixture(scope="module")
def big_records():
    samples = _samples({t: 1000 for t in TASKS})
    return build_records(samples, GENERAL_INSTRUCTIONS, RecordConfig(controlling_constant=0.3))


@pytest.mark.parametrize("cc", [0.0, 1.0])
def test_controlling_constant_extremes(cc):
    recs = build_records(_samples(SIZES), GENERAL_INSTRUCTIONS, RecordConfig(controlling_constant=cc))
    assert recs
    assert all(r["general_only"] == (cc == 1.0) for r in recs)


def test_controlling_constant_share(big_records):
    assert len(big_records) >= 3000
    share = sum(r["general_only"] for r in big_records) / len(big_records)
    assert share == pytest.approx(0.3, abs=0.05)
    for gen in ("genixer_l", "genixer_s"):
        part = [r for r in big_records if r["generator"] == gen]
        assert sum(r["general_only"] for r in part) / len(part) == pytest.approx(0.3, abs=0.05)


def test_prompts_end_with_specific_instruction_iff_not_general_only(big_records):
    general = set(GENERAL_INSTRUCTIONS)
    for r in big_records:
        spec = specific_instruction(r["task"])
        gid = int(r["template_id"].split("_")[1][:2])
        if r["general_only"]:
            assert r["prompt"] in general and r["prompt"] == GENERAL_INSTRUCTIONS[gid]
            assert not r["prompt"].endswith("task.")
            assert r["template_id"] == f"general_{gid:02d}"
        else:
            assert r["prompt"] == f"{GENERAL_INSTRUCTIONS[gid]} {spec}"
            assert r["prompt"].endswith(spec)
            assert r["template_id"] == f"general_{gid:02d}+{r['task']}"
    assert len({r["template_id"].split("+")[0] for r in big_records}) == len(GENERAL_INSTRUCTIONS)


def test_genixer_l_general_tasks_with_ratio_counts():
    recs = build_records(_samples(SIZES), GENERAL_INSTRUCTIONS, RecordConfig())
    l = [r for r in recs if r["generator"] == "genixer_l"]
    assert {r["phase"] for r in l} == {1}
    assert {r["task"] for r in l} == set(GENERAL_TASKS)
    counts = Counter(r["task"] for r in l)
    ratios = {"common_vqa": 0.2, "adv_vqa": 0.2, "mc_vqa": 0.5, "md": 0.2}
    assert dict(counts) == {t: round(r * SIZES[t]) for t, r in ratios.items()}
    assert dict(counts) == {"common_vqa": 27, "adv_vqa": 42, "mc_vqa": 48, "md": 11}


def test_genixer_s_two_phases():
    recs = build_records(_samples(SIZES), GENERAL_INSTRUCTIONS, RecordConfig())
    s = [r for r in recs if r["generator"] == "genixer_s"]
    assert {r["phase"] for r in s} == {1, 2}
    p1 = Counter(r["task"] for r in s if r["phase"] == 1)
    p2 = Counter(r["task"] for r in s if r["phase"] == 2)
    assert dict(p1) == {"rec": SIZES["rec"], "reg": SIZES["reg"]}
    assert dict(p2) == {t: round(0.5 * SIZES[t]) for t in GROUNDING_TASKS}
    assert {r["generator"] for r in recs} == {"genixer_l", "genixer_s"}
    assert all(r["task"] in GROUNDING_TASKS for r in s)


def test_records_fields_and_determinism():
    samples = _samples(SIZES)
    by_id = {s["sample_id"]: s for s in samples}
    a = build_records(samples, GENERAL_INSTRUCTIONS, RecordConfig(seed=5))
    b = build_records(samples, GENERAL_INSTRUCTIONS, RecordConfig(seed=5))
    c = build_records(samples, GENERAL_INSTRUCTIONS, RecordConfig(seed=6))
    assert a == b and a != c
    assert len({r["record_id"] for r in a}) == len(a)
    for r in a:
        s = by_id[r["sample_id"]]
        assert r["task"] == s["task"] and r["image_id"] == s["image_id"] and r["image_path"] == s["image_path"]
        assert r["target"] == format_target(s["turns"])
        assert parse_generation(r["target"]) == s["turns"]
        assert r["n_turns"] == len(s["turns"])
        assert r["record_id"] == f"{r['generator']}:{r['phase']}:{r['sample_id']}"


def test_records_with_missing_tasks():
    recs = build_records(_samples({"rec": 10}), GENERAL_INSTRUCTIONS, RecordConfig())
    assert Counter((r["phase"], r["task"]) for r in recs) == {(1, "rec"): 10, (2, "rec"): 5}


def test_record_config_validate():
    RecordConfig().validate()
    with pytest.raises(TemplateError, match="controlling_constant"):
        RecordConfig(controlling_constant=1.5).validate()
    with pytest.raises(TemplateError, match="controlling_constant"):
        RecordConfig(controlling_constant=-0.1).validate()
    with pytest.raises(TemplateError, match="s_phase1"):
        RecordConfig(s_phase1=(("rec", 1.0), ("common_vqa", 1.0))).validate()
    with pytest.raises(TemplateError, match="l_ratios"):
        RecordConfig(l_ratios=(("rec", 0.2),)).validate()
    with pytest.raises(TemplateError, match="ratio"):
        RecordConfig(s_phase2=(("rec", 0.0),)).validate()
    with pytest.raises(TemplateError):  # build_records validates first
        build_records(_samples({"rec": 3}), GENERAL_INSTRUCTIONS, RecordConfig(controlling_constant=1.5))


# ---- the sample schema ------------------------------------------------------------------------------

def _sample(**kw):
    s = {"sample_id": "s0", "image_id": "img0", "image_path": "/x/img0.png", "width": 128, "height": 96,
         "task": "rec", "turns": [{"question": "Where is the red circle?", "answer": "[0.1,0.1,0.3,0.4]"}],
         "boxes": [[12.8, 9.6, 38.4, 38.4]], "points": [], "source": "shapes_world", "split": "collect"}
    s.update(kw)
    return s


def _plain(v):
    """Arrow/pandas round-trip values -> plain Python lists and dicts."""
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return None if isinstance(v, float) and v != v else v  # a null string reads back as NaN


def test_write_read_round_trip(tmp_path):
    samples = [
        _sample(),
        _sample(sample_id="s1", task="rd", width=96, height=128,
                turns=[{"question": "Where is the red circle?", "answer": "[0.1,0.1,0.3,0.4]"},
                       {"question": "What colour is the object at [0.5,0.5]?", "answer": "blue"},
                       {"question": "Describe the object at [0.2,0.2,0.4,0.4].", "answer": "the small star"}],
                boxes=[[9.6, 12.8, 28.8, 51.2], [19.2, 25.6, 38.4, 51.2]], points=[[48.0, 64.0]]),
        _sample(sample_id="s2", task="common_vqa", turns=[{"question": "How many circles are there?", "answer": "2"}],
                boxes=[], points=[]),
    ]
    path = write_samples(samples, tmp_path / "sub" / "samples.parquet")
    assert path.exists()
    df = read_samples(path)
    assert list(df.columns) == SAMPLE_COLUMNS
    assert len(df) == 3
    for want, (_, row) in zip(samples, df.iterrows()):
        got = {k: _plain(v) for k, v in row.to_dict().items()}
        assert got == {**dict.fromkeys(OPTIONAL_COLUMNS), **want}  # the optional columns a writer left out are null
        assert sample_problems(row.to_dict()) == []


def test_write_keeps_extra_and_lineage_columns(tmp_path):
    path = write_samples([_sample(generator="genixer_s", judge_p_yes=0.75, note="x")], tmp_path / "g.parquet",
                         lineage=True)
    row = read_samples(path).iloc[0].to_dict()
    assert row["generator"] == "genixer_s" and row["judge_p_yes"] == 0.75 and row["note"] == "x"
    assert row["clip_score"] is None or row["clip_score"] != row["clip_score"]  # null


def test_write_missing_column_rejected(tmp_path):
    s = _sample()
    del s["boxes"]
    with pytest.raises(ValueError, match="boxes"):
        write_samples([s], tmp_path / "bad.parquet")


def test_sample_problems_valid():
    assert sample_problems(_sample()) == []


def test_sample_problems_empty_answer():
    probs = sample_problems(_sample(turns=[{"question": "Where is the red circle?", "answer": "  "}]))
    assert probs == ["turn 0: empty answer"]
    assert sample_problems(_sample(turns=[{"question": "", "answer": "x"}])) == ["turn 0: empty question"]


@pytest.mark.parametrize("box", [[0, 0, 129, 50], [10, 10, 20, 97], [-1, 0, 10, 10], [30, 10, 20, 20], [1, 2, 3]])
def test_sample_problems_box_outside_image(box):
    probs = sample_problems(_sample(boxes=[box]))
    assert len(probs) == 1 and probs[0].startswith("box") and "128x96" in probs[0]


def test_sample_problems_point_outside_image():
    assert len(sample_problems(_sample(points=[[130.0, 5.0]]))) == 1
    assert sample_problems(_sample(points=[[128.0, 96.0]])) == []


def test_sample_problems_unknown_task():
    assert sample_problems(_sample(task="captioning")) == ["unknown task 'captioning'"]


def test_sample_problems_turn_counts():
    two = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]
    assert sample_problems(_sample(turns=two)) == ["2 turns in single-turn task rec"]
    assert sample_problems(_sample(task="rd", turns=two)) == []
    assert sample_problems(_sample(task="md", turns=two, boxes=[])) == []
    assert sample_problems(_sample(turns=[])) == ["no turns"]
    assert sample_problems(_sample(turns=None)) == ["no turns"]
