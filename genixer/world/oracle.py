"""The oracle: decides exactly whether a sample is true of its scene.

An evaluation instrument only: it never feeds a filter or a training set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from genixer.boxes import BoxFormatError, answer_box, find_box_groups, iou, parse_boxes, parse_point
from genixer.task_form import as_turns, task_by_form
from genixer.tasks import GENERAL_TASKS, GROUNDING_TASKS
from genixer.world.grammar import COMPILED, EXPRESSION_RE, TASK_KINDS, parse_desc, relation_clear, relation_holds
from genixer.world.scene import Obj, Scene, object_at

CORRECT, INCORRECT, UNPARSEABLE = "correct", "incorrect", "unparseable"
IOU_THRESHOLD = 0.5

# The task a single question of each kind belongs to.
KIND_TASK = {k: t for t in ("common_vqa", "adv_vqa", "mc_vqa", "rec", "reg", "pointqa", "qca") for k in TASK_KINDS[t]}


@dataclass
class Verdict:
    status: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == CORRECT


# Each kind in words the world's own texts use (the embedded tokenizer knows no other): the closed loop's third
# instruction level names a question type with them (genixer.loop.type_instruction).
KIND_PHRASES = {
    "colour": "the colour of an object", "shape": "the shape of an object", "size": "the size of an object",
    "count": "the number of objects", "relation": "what is left of or right of an object", "exist": "is there an object",
    "mc_colour": "the colour of an object, with options", "mc_shape": "the shape of an object, with options",
    "locate": "where an object is", "describe": "a description of a region", "point_colour": "the colour at a point",
    "point_shape": "the shape at a point", "point_size": "the size at a point", "reason_count": "the number of objects, with reasoning",
    "reason_exist": "is there an object, with reasoning",
}


def classify(question: str) -> tuple[str, re.Match] | None:
    """The question kind whose phrasing matches the whole question, with the match."""
    q = " ".join(question.split())
    for kind in COMPILED:
        for pat in COMPILED[kind]:
            m = pat.fullmatch(q)
            if m:
                return kind, m
    return None


def task_of(turns: list[dict], width: float | None = None, height: float | None = None) -> str | None:
    """The task a (generated) sample is an instance of.

    The world grammar first: when every question is one of the world's phrasings, the task is the
    one those question kinds make (None for kinds that make no task together, e.g. a general and a
    grounding question in one dialogue). When any question is not in the grammar (a published data
    set's phrasing, or a world-like question the grammar does not parse), the task is decided by the
    form of the turns alone (:func:`genixer.task_form.task_by_form`; ``width``/``height`` are passed to
    it). Malformed turns give None."""
    turns = as_turns(turns)
    if turns is None or not all(isinstance(t.get("question"), str) for t in turns):
        return None  # no turns, or a turn without a text question
    found = [classify(t["question"]) for t in turns]
    if any(f is None for f in found):
        return task_by_form(turns, width, height)
    tasks = [KIND_TASK[k] for k, _ in found]
    if len(turns) == 1:
        return tasks[0]
    if all(t in GENERAL_TASKS for t in tasks) and all(t == "common_vqa" for t in tasks):
        return "md"
    if all(t in GROUNDING_TASKS for t in tasks) and set(tasks) <= {"rec", "reg", "pointqa"}:
        return "rd"
    return None


def _norm(a: str) -> str:
    return " ".join(a.lower().strip().rstrip(".").split())


def _resolve(ref_text: str, scene: Scene) -> tuple[Obj | None, str]:
    hits = parse_desc(ref_text).select(scene)
    if len(hits) != 1:
        return None, f"'{ref_text}' picks out {len(hits)} objects, not exactly one"
    return hits[0], ""


def _object_at_box(box, scene: Scene) -> Obj | None:
    best = max(scene.objects, key=lambda o: iou(o.box, box), default=None)
    return best if best is not None and iou(best.box, box) >= IOU_THRESHOLD else None


def _object_at_point(pt, scene: Scene) -> Obj | None:
    # the object whose painted pixels hold the point (the topmost one), not any box around it
    return object_at(scene, pt[0], pt[1])


def _unclear(what: str, rel: str) -> Verdict:
    # too close to call: neither "yes" nor "no" is a fact of the scene, so no answer is correct
    return Verdict(INCORRECT, f"unclear relation: {what} too close to call '{rel}'")


def _expect(answer: str, truth: str) -> Verdict:
    return Verdict(CORRECT) if _norm(answer) == _norm(truth) else Verdict(INCORRECT, f"answer '{answer}' but the truth is '{truth}'")


def check_turn(question: str, answer: str, scene: Scene) -> Verdict:
    found = classify(question)
    if found is None:
        return Verdict(UNPARSEABLE, f"question not in the world grammar: '{question}'")
    if not answer.strip():
        return Verdict(UNPARSEABLE, "empty answer")
    kind, m = found
    g = m.groupdict()
    W, H = scene.width, scene.height
    try:
        if kind in ("colour", "shape", "size", "mc_colour", "mc_shape"):
            attr = kind.removeprefix("mc_")
            if getattr(parse_desc(g["ref"]), attr) is not None:  # the question gives its own answer away
                return Verdict(INCORRECT, f"tautology: '{g['ref']}' already names the {attr} asked for")
            o, why = _resolve(g["ref"], scene)
            if o is None:
                return Verdict(INCORRECT, why)
            truth = getattr(o, attr)
            if kind.startswith("mc_"):
                opts = dict(re.findall(r"([ABCD])\. ([a-z]+)", g["options"], re.IGNORECASE))
                letter = _norm(answer).upper()[:1]
                if _norm(answer).upper() not in opts:
                    return Verdict(UNPARSEABLE, f"answer '{answer}' is not an option letter")
                if truth not in [v.lower() for v in opts.values()]:
                    return Verdict(INCORRECT, f"no option is the truth '{truth}'")
                return _expect(opts[letter].lower(), truth)
            return _expect(answer, truth)
        if kind == "count":
            return _expect(answer, str(len(parse_desc(g["things"]).select(scene))))
        if kind == "relation":
            a, why = _resolve(g["ref"], scene)
            b, why2 = _resolve(g["ref2"], scene)
            if a is None or b is None:
                return Verdict(INCORRECT, why or why2)
            if not relation_clear(a, g["rel"], b):
                return _unclear(f"{g['ref']} and {g['ref2']} are", g["rel"])
            return _expect(answer, "yes" if relation_holds(a, g["rel"], b) else "no")
        if kind == "exist":
            return _expect(answer, "yes" if parse_desc(g["thing"]).select(scene) else "no")
        if kind == "locate":
            o, why = _resolve(g["ref"], scene)
            if o is None:
                return Verdict(INCORRECT, why)
            box = answer_box(answer, W, H)  # the REC filter reads answers with the same function
            if box is None:
                return Verdict(INCORRECT, "several boxes for one object")
            v = iou(box, o.box)
            return Verdict(CORRECT) if v >= IOU_THRESHOLD else Verdict(INCORRECT, f"IoU {v:.2f} < {IOU_THRESHOLD}")
        if kind == "describe":
            boxes = parse_boxes(g["box"], W, H)
            if len(boxes) != 1:
                return Verdict(INCORRECT, f"the question gives {len(boxes)} boxes for one object")
            o = _object_at_box(boxes[0], scene)
            if o is None:
                return Verdict(INCORRECT, "the question's box covers no object (IoU < 0.5)")
            return _check_expression(answer, o, scene)
        if kind.startswith("point_"):
            o = _object_at_point(parse_point(g["point"], W, H), scene)
            if o is None:
                return Verdict(INCORRECT, "the point is on no object's pixels")
            return _expect(answer, getattr(o, kind.split("_")[1]))
        if kind in ("reason_count", "reason_exist"):
            return _check_reason(kind, g, answer, scene)
    except BoxFormatError as e:
        return Verdict(UNPARSEABLE, str(e))
    raise AssertionError(kind)


def _check_expression(answer: str, o: Obj, scene: Scene) -> Verdict:
    """A REG answer: every word must parse, and the whole expression (relation included) must
    pick out exactly the boxed object `o`."""
    m = EXPRESSION_RE.fullmatch(_norm(answer))
    if m is None:
        return Verdict(UNPARSEABLE, f"answer '{answer}' is not a referring expression of the world grammar")
    hits = parse_desc(m["desc"]).select(scene)
    if m["rel"]:
        rel = m["rel"]
        b, why = _resolve(m["ref2"], scene)
        if b is None:
            return Verdict(INCORRECT, why)
        if o in hits and o is not b:
            if not relation_clear(o, rel, b):
                return _unclear(f"the boxed object and {m['ref2']} are", rel)
            if not relation_holds(o, rel, b):
                return Verdict(INCORRECT, f"the boxed object is not {rel} {m['ref2']}")
        # an object too close to call could be read as meant too
        hits = [x for x in hits if x is not b and (relation_holds(x, rel, b) or not relation_clear(x, rel, b))]
    if hits != [o]:
        return Verdict(INCORRECT, f"'{answer}' picks out {len(hits)} objects" + ("" if len(hits) != 1 else ", not the boxed one"))
    return Verdict(CORRECT)


def _check_reason(kind: str, g: dict, answer: str, scene: Scene) -> Verdict:
    """Chain of thought with boxes: the boxes must be right, and so must the final answer."""
    W, H = scene.width, scene.height
    o, why = _resolve(g["ref"], scene)
    if o is None:
        return Verdict(INCORRECT, why)
    desc = parse_desc(g.get("things") or g.get("thing"))
    if any(x is not o and desc.matches(x) and not relation_clear(x, g["rel"], o) for x in scene.objects):
        return _unclear(f"some {desc.plural()} and {g['ref']} are", g["rel"])
    m = re.search(r"so the answer is (\w+)\.?\s*$", answer.strip(), re.IGNORECASE)
    if not m:
        return Verdict(UNPARSEABLE, "no final 'So the answer is ...'")
    hits = [x for x in scene.objects if x is not o and desc.matches(x) and relation_holds(x, g["rel"], o)]
    truth = str(len(hits)) if kind == "reason_count" else ("yes" if hits else "no")
    groups = find_box_groups(answer)
    if not groups:
        return Verdict(INCORRECT, "the reasoning gives no box for the referent")
    (ref_box, *extra) = parse_boxes(groups[0], W, H)
    if extra or iou(ref_box, o.box) < IOU_THRESHOLD:
        return Verdict(INCORRECT, "the reasoning's first box is not the referent")
    listed = [b for grp in groups[1:] for b in parse_boxes(grp, W, H)]
    matched = {id(_object_at_box(b, scene)) for b in listed}
    if len(listed) != len(hits) or matched != {id(h) for h in hits}:
        return Verdict(INCORRECT, f"the reasoning lists {len(listed)} boxes for {len(hits)} objects")
    return _expect(m.group(1), truth)


def check(sample: dict, scene: Scene) -> Verdict:
    """Correct when every turn is; otherwise the first failing turn's verdict."""
    turns = list(sample.get("turns") if sample.get("turns") is not None else [])
    if not turns:
        return Verdict(UNPARSEABLE, "no turns")
    for i, t in enumerate(turns):
        v = check_turn(str(t.get("question") or ""), str(t.get("answer") or ""), scene)
        if not v.ok:
            return Verdict(v.status, f"turn {i}: {v.reason}" if len(turns) > 1 else v.reason)
    return Verdict(CORRECT)
