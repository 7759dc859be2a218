"""Annotators and the oracle: every annotated sample passes, known corruptions fail."""

import random
import re
from collections import Counter, defaultdict

import pytest

from genixer.boxes import box_to_text, find_box_groups, iou, parse_boxes, parse_point, POINT_RE
from genixer.tasks import TASKS
from genixer.world import annotate_images, scene_seed
from genixer.world.annotate import annotate
from genixer.world.grammar import COMPILED, PHRASINGS, TASK_KINDS, parse_desc, unique_desc
from genixer.world.oracle import CORRECT, INCORRECT, UNPARSEABLE, check, check_turn, classify, task_of
from genixer.world.scene import COLOURS, SHAPES, Obj, Scene, WorldConfig, object_at, render, sample_scene

N_SCENES = 200  # collect indices 0..199 (all placeable with the default config)


@pytest.fixture(scope="module")
def world():
    cfg = WorldConfig()
    rows, scenes = [], {}
    for i in range(N_SCENES):
        image_id = f"collect_{i:06d}"
        s = sample_scene(image_id, scene_seed(0, "collect", i), "collect", cfg)
        scenes[image_id] = s
        rows.append({"image_id": image_id, "image_path": f"/nowhere/{image_id}.png", "width": s.width,
                     "height": s.height, "scene": s.to_json(), "split": "collect"})
    samples = annotate_images(rows, per_image=2, seed=0)
    return samples, scenes


@pytest.fixture(scope="module")
def by_task(world):
    samples, scenes = world
    out = defaultdict(list)
    for s in samples:
        out[s["task"]].append((s, scenes[s["image_id"]]))
    return out


def _kind(question):
    found = classify(question)
    assert found is not None, question
    return found[0]


def _with_answer(sample, answer, turn=0):
    turns = [dict(t) for t in sample["turns"]]
    turns[turn]["answer"] = answer
    return {**sample, "turns": turns}


def _with_question(sample, question, turn=0):
    turns = [dict(t) for t in sample["turns"]]
    turns[turn]["question"] = question
    return {**sample, "turns": turns}


def _other(value, vocab):
    return next(v for v in vocab if v != value)


def _shifted_box(box, scene):
    """The box moved sideways by half its width: IoU 1/3 with the original."""
    x0, y0, x1, y1 = box
    dx = (x1 - x0) / 2
    if x1 + dx > scene.width:
        dx = -dx
    return (x0 + dx, y0, x1 + dx, y1)


def _absent_ref(scene):
    """A referring expression that picks out no object of the scene."""
    present = {(o.colour, o.shape) for o in scene.objects}
    colour, shape = next((c, sh) for c in COLOURS for sh in SHAPES if (c, sh) not in present)
    return f"the {colour} {shape}"


def _wrong_answer(question, answer, scene):
    """A wrong answer to a general or grounding single question (for dialogue corruption)."""
    kind = _kind(question)
    if kind in ("colour", "point_colour"):
        return _other(answer, COLOURS)
    if kind in ("shape", "point_shape"):
        return _other(answer, SHAPES)
    if kind in ("size", "point_size"):
        return "large" if answer == "small" else "small"
    if kind == "count":
        return str(int(answer) + 1)
    if kind in ("relation", "exist"):
        return "no" if answer == "yes" else "yes"
    if kind == "locate":
        (b,) = parse_boxes(answer, scene.width, scene.height)
        return box_to_text(_shifted_box(b, scene), scene.width, scene.height)
    if kind == "describe":
        return _absent_ref(scene)
    raise AssertionError(kind)


# ---- the annotators ----------------------------------------------------------------------------

def test_every_task_annotated(by_task):
    for task in TASKS:
        assert len(by_task[task]) >= 1.5 * N_SCENES, (task, len(by_task[task]))


def test_every_annotated_sample_passes_oracle(world):
    samples, scenes = world
    bad = [(s["task"], s["turns"], v) for s in samples if not (v := check(s, scenes[s["image_id"]])).ok]
    assert bad == []
    assert len(samples) >= 9 * N_SCENES * 2 * 0.95


def test_annotate_direct_passes_oracle_on_other_splits():
    cfg = WorldConfig()
    for split in ("corpus", "bench", "heldout"):
        for i in range(40):
            scene = sample_scene(f"{split}_{i}", scene_seed(3, split, i), split, cfg)
            rng = random.Random(i)
            for task in TASKS:
                s = annotate(task, scene, rng)
                assert s is not None and s["task"] == task
                v = check(s, scene)
                assert v.status == CORRECT, (task, s["turns"], v)


def test_annotations_deterministic(world):
    samples, scenes = world
    rows = [{"image_id": k, "image_path": f"/nowhere/{k}.png", "width": s.width, "height": s.height, "scene": s.to_json(),
             "split": "collect"} for k, s in list(scenes.items())[:10]]
    a = annotate_images(rows, per_image=2, seed=0)
    b = annotate_images(rows, per_image=2, seed=0)
    c = annotate_images(rows, per_image=2, seed=1)
    assert a == b
    assert a == [s for s in samples if s["image_id"] in {r["image_id"] for r in rows}]
    assert a != c


def test_sample_fields(world):
    samples, scenes = world
    ids = [s["sample_id"] for s in samples]
    assert len(set(ids)) == len(ids)
    for s in samples:
        scene = scenes[s["image_id"]]
        assert (s["width"], s["height"]) == (scene.width, scene.height)
        assert s["split"] == "collect" and s["sample_id"].startswith(f"{s['image_id']}:{s['task']}:")
        assert all(t["question"].strip() and t["answer"].strip() for t in s["turns"])


def test_boxes_and_points_match_text(world):
    """`boxes` / `points` list what the text mentions, in order, within 1 px."""
    samples, scenes = world
    for s in samples:
        scene = scenes[s["image_id"]]
        W, H = scene.width, scene.height
        text_boxes, text_points = [], []
        for t in s["turns"]:
            for part in (t["question"], t["answer"]):
                for grp in find_box_groups(part):
                    text_boxes += parse_boxes(grp, W, H)
                text_points += [parse_point(m.group(0), W, H) for m in POINT_RE.finditer(part)]
        assert len(text_boxes) == len(s["boxes"]), s
        for got, want in zip(text_boxes, s["boxes"]):
            assert got == pytest.approx(want, abs=1.0)
        assert len(text_points) == len(s["points"]), s
        for got, want in zip(text_points, s["points"]):
            assert got == pytest.approx(want, abs=1.0)
        for b in s["boxes"]:  # every box is the box of an object in the scene
            assert tuple(b) in {o.box for o in scene.objects}


def test_every_question_kind_and_phrasing_appears(world):
    samples, _ = world
    seen = Counter()
    kinds = Counter()
    for s in samples:
        for t in s["turns"]:
            q = " ".join(t["question"].split())
            kind = _kind(q)
            kinds[kind] += 1
            for i, pat in enumerate(COMPILED[kind]):
                if pat.fullmatch(q):
                    seen[(kind, i)] += 1
    assert set(kinds) == set(PHRASINGS)
    missing = [(k, p) for k, ps in PHRASINGS.items() for i, p in enumerate(ps) if (k, i) not in seen]
    assert missing == []


def test_question_kinds_belong_to_their_task(world):
    samples, _ = world
    for s in samples:
        for t in s["turns"]:
            assert _kind(t["question"]) in TASK_KINDS[s["task"]], (s["task"], t["question"])


def test_task_of_recovers_each_task(world):
    samples, _ = world
    wrong = Counter(s["task"] for s in samples if task_of(s["turns"]) != s["task"])
    assert wrong == Counter()


def test_task_of_rejects():
    assert task_of([]) is None
    assert task_of([{"question": "Why is the sky blue?", "answer": "x"}]) == "common_vqa"  # outside the grammar: by its form
    # a general and a grounding question together make no task
    mixed = [{"question": "What colour is the circle?", "answer": "red"},
             {"question": "Where is the circle?", "answer": "[0.1,0.1,0.2,0.2]"}]
    assert task_of(mixed) is None


def test_pope_subtypes(by_task):
    subtypes = Counter()
    for s, scene in by_task["adv_vqa"]:
        m = re.fullmatch(r"shapes_world:pope_(\w+)", s["source"])
        assert m, s["source"]
        sub = m.group(1)
        subtypes[sub] += 1
        (turn,) = s["turns"]
        assert turn["answer"] == ("yes" if sub == "positive" else "no")
        kind, match = classify(turn["question"])
        assert kind == "exist"
        d = parse_desc(match.group("thing"))
        assert d.colour and d.shape and d.size is None
        present = {(o.colour, o.shape) for o in scene.objects}
        assert ((d.colour, d.shape) in present) == (sub == "positive")
        if sub == "adversarial":  # co-occurring: shares a colour or a shape with a present object
            assert any(d.colour == c or d.shape == sh for c, sh in present)
    assert set(subtypes) == {"positive", "random", "popular", "adversarial"}
    assert subtypes["positive"] > subtypes["random"]
    for s, _ in by_task["common_vqa"] + by_task["rec"]:
        assert s["source"] == "shapes_world"


def test_turn_counts(by_task):
    md = Counter(len(s["turns"]) for s, _ in by_task["md"])
    assert set(md) == {2, 3, 4}
    rd = Counter(len(s["turns"]) for s, _ in by_task["rd"])
    assert set(rd) == {2, 3}
    for task in ("common_vqa", "adv_vqa", "mc_vqa", "rec", "reg", "pointqa", "qca"):
        assert {len(s["turns"]) for s, _ in by_task[task]} == {1}
    for task in ("md", "rd"):  # no repeated question inside a dialogue
        for s, _ in by_task[task]:
            qs = [t["question"] for t in s["turns"]]
            assert len(set(qs)) == len(qs)


def test_rd_dialogues_carry_boxes(by_task):
    """Referential dialogue (WORLD.md: "multi-turn, boxes in questions and answers"):
    every rd sample mentions at least one box."""
    boxless = [s["turns"] for s, _ in by_task["rd"] if not s["boxes"]]
    assert boxless == []


def test_mc_vqa_format(by_task):
    letters = Counter()
    for s, scene in by_task["mc_vqa"]:
        (turn,) = s["turns"]
        assert turn["answer"] in ("A", "B", "C", "D")
        letters[turn["answer"]] += 1
        kind, m = classify(turn["question"])
        opts = re.findall(r"([ABCD])\. ([a-z]+)", m.group("options"))
        assert [l for l, _ in opts] == ["A", "B", "C", "D"]
        values = [v for _, v in opts]
        assert len(set(values)) == 4
        vocab = COLOURS if kind == "mc_colour" else SHAPES
        assert all(v in vocab for v in values)
        (o,) = parse_desc(m.group("ref")).select(scene)
        assert dict(opts)[turn["answer"]] == getattr(o, kind.removeprefix("mc_"))
    assert set(letters) == {"A", "B", "C", "D"}


def test_rec_answer_is_the_referent_box(by_task):
    for s, scene in by_task["rec"]:
        (turn,) = s["turns"]
        kind, m = classify(turn["question"])
        (o,) = parse_desc(m.group("ref")).select(scene)
        (b,) = parse_boxes(turn["answer"], scene.width, scene.height)
        assert iou(b, o.box) > 0.9
        assert turn["answer"] == box_to_text(o.box, scene.width, scene.height)


def test_annotated_questions_never_name_the_attribute_asked(world):
    """Annotators describe the referent without the asked attribute, so no question is a
    tautology (the oracle counts "What colour is the red circle?" as incorrect)."""
    samples, _ = world
    n = 0
    for s in samples:
        for t in s["turns"]:
            kind, m = classify(t["question"])
            if kind in ("colour", "shape", "size", "mc_colour", "mc_shape"):
                assert getattr(parse_desc(m.group("ref")), kind.removeprefix("mc_")) is None, t["question"]
                n += 1
    assert n >= 500


def test_annotated_points_lie_on_the_answered_object_in_the_image(world):
    """Every annotated point falls on a pixel painted in the colour of the object it is about."""
    samples, scenes = world
    n = 0
    for s in samples:
        if not s["points"]:
            continue
        scene = scenes[s["image_id"]]
        img = render(scene)
        point_turns = [t for t in s["turns"] if _kind(t["question"]).startswith("point_")]
        for (x, y), t in zip(s["points"], point_turns):
            o = object_at(scene, x, y)
            assert o is not None and img.getpixel((int(x), int(y))) == COLOURS[o.colour], (s["turns"], x, y)
            if _kind(t["question"]) == "point_colour":
                assert t["answer"] == o.colour
            n += 1
    assert n >= 300


# ---- corruptions ----------------------------------------------------------------------------------

def _single(by_task, task, kinds):
    out = [(s, sc) for s, sc in by_task[task] if _kind(s["turns"][0]["question"]) in kinds]
    assert out, (task, kinds)
    return out


def test_wrong_colour_fails(by_task):
    cases = _single(by_task, "common_vqa", {"colour"})
    for s, scene in cases:
        a = s["turns"][0]["answer"]
        for wrong in [c for c in COLOURS if c != a]:
            v = check(_with_answer(s, wrong), scene)
            assert v.status == INCORRECT and wrong in v.reason


def test_wrong_shape_fails(by_task):
    for s, scene in _single(by_task, "common_vqa", {"shape"}):
        wrong = _other(s["turns"][0]["answer"], SHAPES)
        assert check(_with_answer(s, wrong), scene).status == INCORRECT


def test_wrong_size_fails(by_task):
    for s, scene in _single(by_task, "common_vqa", {"size"}):
        wrong = "large" if s["turns"][0]["answer"] == "small" else "small"
        assert check(_with_answer(s, wrong), scene).status == INCORRECT


def test_wrong_count_fails(by_task):
    cases = _single(by_task, "common_vqa", {"count"})
    assert any(s["turns"][0]["answer"] == "0" for s, _ in cases)  # absent things are counted too
    for s, scene in cases:
        n = int(s["turns"][0]["answer"])
        assert check(_with_answer(s, str(n + 1)), scene).status == INCORRECT
        if n > 0:
            assert check(_with_answer(s, str(n - 1)), scene).status == INCORRECT


def test_flipped_yes_no_fails(by_task):
    cases = _single(by_task, "common_vqa", {"relation"}) + by_task["adv_vqa"]
    answers = Counter()
    for s, scene in cases:
        a = s["turns"][0]["answer"]
        answers[a] += 1
        flipped = "no" if a == "yes" else "yes"
        v = check(_with_answer(s, flipped), scene)
        assert v.status == INCORRECT, (s["turns"], v)
    assert set(answers) == {"yes", "no"}


def test_wrong_mc_letter_fails(by_task):
    for s, scene in by_task["mc_vqa"]:
        a = s["turns"][0]["answer"]
        for wrong in "ABCD".replace(a, ""):
            assert check(_with_answer(s, wrong), scene).status == INCORRECT
        assert check(_with_answer(s, a + "."), scene).status == CORRECT
        assert check(_with_answer(s, "E"), scene).status == UNPARSEABLE


def test_rec_shifted_box_fails(by_task):
    for s, scene in by_task["rec"]:
        W, H = scene.width, scene.height
        box = tuple(s["boxes"][0])
        moved = _shifted_box(box, scene)
        text = box_to_text(moved, W, H)
        (parsed,) = parse_boxes(text, W, H)
        assert iou(parsed, box) < 0.5
        v = check(_with_answer(s, text), scene)
        assert v.status == INCORRECT and "IoU" in v.reason


def test_rec_small_jitter_still_correct(by_task):
    """The IoU >= 0.5 criterion, not exact equality: a 2 px jitter stays correct."""
    for s, scene in by_task["rec"][:50]:
        x0, y0, x1, y1 = s["boxes"][0]
        text = box_to_text((x0 + 2, y0 + 1, x1 + 2, y1 - 1), scene.width, scene.height)
        assert check(_with_answer(s, text), scene).status == CORRECT


def test_rec_non_unique_expression_fails(by_task):
    n = 0
    for s, scene in by_task["rec"]:
        shapes = Counter(o.shape for o in scene.objects)
        q = s["turns"][0]["question"]
        kind, m = classify(q)
        (o,) = parse_desc(m.group("ref")).select(scene)
        if shapes[o.shape] < 2:
            continue
        bare = q[: m.start("ref")] + f"the {o.shape}" + q[m.end("ref"):]
        v = check(_with_question(s, bare), scene)
        assert v.status == INCORRECT, (bare, v)
        assert f"picks out {shapes[o.shape]} objects" in v.reason
        n += 1
    assert n >= 5


@pytest.mark.parametrize("bad", ["[0.1,0.2,0.3]", "[0.5,0.2,0.1,0.4]", "[0.1,0.2,1.4,0.5]", "0.1,0.2,0.3,0.4",
                                 "the circle", "[0.1,0.2,0.3,0.4"])
def test_rec_malformed_box_unparseable(by_task, bad):
    for s, scene in by_task["rec"][:20]:
        v = check(_with_answer(s, bad), scene)
        assert v.status == UNPARSEABLE, (bad, v)


def test_rec_two_boxes_for_one_object_fails(by_task):
    for s, scene in by_task["rec"][:20]:
        a = s["turns"][0]["answer"]
        v = check(_with_answer(s, a[:-1] + ";" + a[1:]), scene)
        assert v.status == INCORRECT


def test_reg_non_unique_answer_fails(by_task):
    n = 0
    for s, scene in by_task["reg"]:
        if len(scene.objects) < 2:
            assert check(_with_answer(s, "the object"), scene).status == CORRECT
            continue
        v = check(_with_answer(s, "the object"), scene)
        assert v.status == INCORRECT and f"picks out {len(scene.objects)} objects" in v.reason
        n += 1
    assert n >= 20


def test_reg_answer_naming_another_object_fails(by_task):
    n = 0
    for s, scene in by_task["reg"]:
        kind, m = classify(s["turns"][0]["question"])
        boxed = tuple(s["boxes"][0])
        for other in scene.objects:
            if other.box == boxed:
                continue
            d = unique_desc(other, scene)
            v = check(_with_answer(s, d.ref()), scene)
            assert v.status == INCORRECT and "not the boxed one" in v.reason, (d.ref(), v)
            n += 1
    assert n >= 20


def test_reg_absent_or_non_expression_answer(by_task):
    for s, scene in by_task["reg"][:30]:
        v = check(_with_answer(s, _absent_ref(scene)), scene)
        assert v.status == INCORRECT and "picks out 0 objects" in v.reason
        assert check(_with_answer(s, "[0.1,0.2,0.3,0.4]"), scene).status == UNPARSEABLE


def test_reg_question_box_on_no_object_fails(by_task):
    n = 0
    for s, scene in by_task["reg"][:60]:
        q = s["turns"][0]["question"]
        (grp,) = find_box_groups(q)
        moved = box_to_text(_shifted_box(s["boxes"][0], scene), scene.width, scene.height)
        if any(iou(parse_boxes(moved, scene.width, scene.height)[0], o.box) >= 0.5 for o in scene.objects):
            continue
        v = check(_with_question(s, q.replace(grp, moved)), scene)
        assert v.status == INCORRECT and "covers no object" in v.reason
        n += 1
    assert n >= 10


def test_reg_question_with_several_boxes_gives_a_verdict(by_task):
    """A describe question whose bracket holds two boxes is in the grammar (the {box} slot
    accepts `;`-groups); the oracle must answer with a Verdict, not raise."""
    n = 0
    for s, scene in by_task["reg"]:
        if len(scene.objects) < 2:
            continue
        q = s["turns"][0]["question"]
        (grp,) = find_box_groups(q)
        other = next(o for o in scene.objects if o.box != tuple(s["boxes"][0]))
        two = grp[:-1] + ";" + box_to_text(other.box, scene.width, scene.height)[1:]
        v = check(_with_question(s, q.replace(grp, two)), scene)
        assert v.status in (INCORRECT, UNPARSEABLE)
        n += 1
        if n >= 5:
            break
    assert n == 5


def test_pointqa_wrong_attribute_fails(by_task):
    kinds = Counter()
    for s, scene in by_task["pointqa"]:
        t = s["turns"][0]
        kinds[_kind(t["question"])] += 1
        wrong = _wrong_answer(t["question"], t["answer"], scene)
        assert check(_with_answer(s, wrong), scene).status == INCORRECT
    assert set(kinds) == {"point_colour", "point_shape", "point_size"}


def test_pointqa_point_off_objects_fails():
    scene = Scene("x", 128, 96, "plain", 0, [Obj("circle", "red", "small", (10, 10, 29, 29))])
    assert check_turn("What colour is the object at [0.150,0.200]?", "red", scene).status == CORRECT
    assert check_turn("What colour is the object at [0.900,0.900]?", "red", scene).status == INCORRECT
    # inside the circle's box, outside the circle: background is what is seen there
    assert check_turn("What colour is the object at [0.085,0.110]?", "red", scene).status == INCORRECT


def test_pointqa_point_in_box_off_shape_fails(by_task):
    """Moving an annotated point to a corner of its object's box (off the shape) fails."""
    n = 0
    for s, scene in by_task["pointqa"]:
        (x, y), q = s["points"][0], s["turns"][0]["question"]
        o = object_at(scene, x, y)
        if o.shape == "square":
            continue
        corner = box_to_text(o.box, scene.width, scene.height)[1:-1].split(",")[:2]  # the box's top-left corner
        (m,) = POINT_RE.finditer(q)
        v = check(_with_question(s, q.replace(m.group(0), "[" + ",".join(corner) + "]")), scene)
        assert v.status == INCORRECT and "no object" in v.reason, v
        n += 1
    assert n >= 50


def test_qca_wrong_final_answer_fails(by_task):
    kinds = Counter()
    for s, scene in by_task["qca"]:
        t = s["turns"][0]
        kind = _kind(t["question"])
        kinds[kind] += 1
        m = re.search(r"So the answer is (\w+)\.$", t["answer"])
        assert m, t["answer"]
        final = m.group(1)
        wrong = str(int(final) + 1) if kind == "reason_count" else ("no" if final == "yes" else "yes")
        corrupted = t["answer"][: m.start(1)] + wrong + t["answer"][m.end(1):]
        v = check(_with_answer(s, corrupted), scene)
        assert v.status == INCORRECT, (corrupted, v)
        assert check(_with_answer(s, t["answer"][: m.start()]), scene).status == UNPARSEABLE
    assert set(kinds) == {"reason_count", "reason_exist"}


def test_qca_wrong_referent_box_fails(by_task):
    for s, scene in by_task["qca"]:
        a = s["turns"][0]["answer"]
        first = find_box_groups(a)[0]
        moved = box_to_text(_shifted_box(s["boxes"][0], scene), scene.width, scene.height)
        v = check(_with_answer(s, a.replace(first, moved, 1)), scene)
        assert v.status == INCORRECT and "first box" in v.reason


def test_qca_wrong_listed_box_fails(by_task):
    n = 0
    for s, scene in by_task["qca"]:
        a = s["turns"][0]["answer"]
        groups = find_box_groups(a)
        if len(groups) < 2:
            continue
        listed = {tuple(b) for b in s["boxes"]}
        outsider = [o for o in scene.objects if o.box not in listed]
        if not outsider:
            continue
        # one listed object replaced by an object that does not satisfy the question
        bad = groups[1][:-1].split(";")
        bad[0] = box_to_text(outsider[0].box, scene.width, scene.height)[1:-1]
        v = check(_with_answer(s, a.replace(groups[1], "[" + ";".join(bad) + "]")), scene)
        assert v.status == INCORRECT, v
        # and a listed box dropped
        if len(bad) > 1:
            fewer = "[" + ";".join(groups[1][1:-1].split(";")[1:]) + "]"
            assert check(_with_answer(s, a.replace(groups[1], fewer)), scene).status == INCORRECT
        n += 1
    assert n >= 5


def test_qca_reasoning_without_boxes_fails(by_task):
    for s, scene in by_task["qca"][:20]:
        a = s["turns"][0]["answer"]
        final = re.search(r"So the answer is \w+\.$", a).group(0)
        assert check(_with_answer(s, final), scene).status == INCORRECT


@pytest.mark.parametrize("task", ["md", "rd"])
def test_one_bad_turn_fails_dialogue(by_task, task):
    positions = Counter()
    for j, (s, scene) in enumerate(by_task[task]):
        k = j % len(s["turns"])  # corrupt each position in turn
        positions[k] += 1
        t = s["turns"][k]
        bad = _with_answer(s, _wrong_answer(t["question"], t["answer"], scene), turn=k)
        v = check(bad, scene)
        assert v.status == INCORRECT, (bad["turns"], v)
        assert v.reason.startswith(f"turn {k}:"), v.reason
    assert {0, 1, 2} <= set(positions)


def test_dialogue_turn_outside_grammar_unparseable(by_task):
    for s, scene in by_task["md"][:20] + by_task["rd"][:20]:
        k = len(s["turns"]) - 1
        v = check(_with_question(s, "Why is the sky blue?", turn=k), scene)
        assert v.status == UNPARSEABLE and v.reason.startswith(f"turn {k}:")


@pytest.mark.parametrize("question", [
    "Why is the sky blue?", "What flavour is the red circle?", "What colour is the red circle",
    "What colour is the red hexagon?", "How many circles do you like?", "", "Question: What colour is the circle?",
])
def test_question_outside_grammar_unparseable(by_task, question):
    s, scene = by_task["common_vqa"][0]
    v = check(_with_question(s, question), scene)
    assert v.status == UNPARSEABLE and "grammar" in v.reason


def test_empty_answer_and_no_turns_unparseable(by_task):
    s, scene = by_task["common_vqa"][0]
    assert check(_with_answer(s, "  "), scene).status == UNPARSEABLE
    assert check({**s, "turns": []}, scene).status == UNPARSEABLE
    assert check({**s, "turns": None}, scene).status == UNPARSEABLE


def test_answers_normalised(by_task):
    for s, scene in _single(by_task, "common_vqa", {"colour"})[:20]:
        a = s["turns"][0]["answer"]
        assert check(_with_answer(s, f" {a.upper()}. "), scene).status == CORRECT


def test_classify_each_phrasing_round_trips():
    slots = {"ref": "the red circle", "ref2": "the blue square", "things": "circles", "thing": "a red circle",
             "box": box_to_text((10, 10, 29, 29), 128, 96), "point": "[0.150,0.200]", "rel": "to the left of",
             "options": "Options: A. red B. blue C. green D. yellow"}
    for kind, phrasings in PHRASINGS.items():
        for p in phrasings:
            q = p.format(**slots)
            found = classify(q)
            assert found is not None and found[0] == kind, (q, found)
            # extra spaces and case do not matter
            assert classify("  " + q.upper().replace(" ", "  ") + " ")[0] == kind


def test_hand_built_scene_truths():
    scene = Scene("x", 128, 96, "plain", 0, [Obj("circle", "red", "small", (10, 10, 29, 29)),
                                              Obj("circle", "blue", "large", (60, 40, 89, 69))])
    cases = [
        ("How many circles are there?", "2", CORRECT), ("How many red circles are there?", "1", CORRECT),
        ("How many squares are there?", "0", CORRECT), ("How many objects are there?", "3", INCORRECT),
        ("Is the red circle to the left of the blue circle?", "yes", CORRECT),
        ("Is the red circle below the blue circle?", "yes", INCORRECT),
        ("Is there a green circle in the image?", "no", CORRECT),
        ("What size is the blue object?", "large", CORRECT),
        ("What colour is the circle?", "red", INCORRECT),  # not unique
        ("How many circles are to the right of the red circle?",
         "The red circle is at [0.078,0.104,0.227,0.302]. The circles to the right of it are at "
         "[0.469,0.417,0.695,0.719]. So the answer is 1.", CORRECT),
    ]
    for q, a, want in cases:
        assert check_turn(q, a, scene).status == want, (q, a)
