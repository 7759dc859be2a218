"""Annotators: the world's ground truth written as samples of the nine tasks."""

from __future__ import annotations

import random

from genixer.boxes import box_to_text, boxes_to_text, parse_point, point_to_text
from genixer.world.grammar import (
    COLOUR_NAMES, PHRASINGS, RELATIONS, TASK_KINDS, Desc, relation_clear, relation_holds, unique_desc,
)
from genixer.world.scene import COLOUR_WEIGHTS, COLOURS, SHAPE_WEIGHTS, SHAPES, Scene, object_at

# A turn: (question, answer, boxes mentioned in order, points mentioned in order)
Turn = tuple[str, str, list, list]


def _fill(kind: str, rng: random.Random, **slots) -> str:
    return rng.choice(PHRASINGS[kind]).format(**slots)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def make_turn(kind: str, scene: Scene, rng: random.Random) -> Turn | None:
    """One question of `kind` about `scene` with its true answer, or None if none fits."""
    objs = list(scene.objects)
    W, H = scene.width, scene.height
    o = rng.choice(objs)
    if kind in ("colour", "shape", "size", "mc_colour", "mc_shape"):
        attr = {"mc_colour": "colour", "mc_shape": "shape"}.get(kind, kind)
        d = unique_desc(o, scene, exclude=attr, rng=rng)
        if d is None:
            return None
        answer = getattr(o, attr)
        if kind.startswith("mc_"):
            vocab = list(COLOURS) if attr == "colour" else list(SHAPES)
            opts = rng.sample([v for v in vocab if v != answer], 3) + [answer]
            rng.shuffle(opts)
            options = "Options: " + " ".join(f"{'ABCD'[i]}. {v}" for i, v in enumerate(opts))
            return _fill(kind, rng, ref=d.ref(), options=options), "ABCD"[opts.index(answer)], [], []
        return _fill(kind, rng, ref=d.ref()), answer, [], []
    if kind == "count":
        d = rng.choice([Desc(shape=o.shape), Desc(colour=o.colour), Desc(), Desc(colour=o.colour, shape=o.shape),
                        Desc(shape=rng.choice(SHAPES))])
        return _fill(kind, rng, things=d.plural()), str(len(d.select(scene))), [], []
    if kind == "relation":
        if len(objs) < 2:
            return None
        a, b = rng.sample(objs, 2)
        rel = rng.choice(RELATIONS)
        da, db = unique_desc(a, scene, rng=rng), unique_desc(b, scene, rng=rng)
        if not relation_clear(a, rel, b):
            return None
        return _fill(kind, rng, ref=da.ref(), rel=rel, ref2=db.ref()), "yes" if relation_holds(a, rel, b) else "no", [], []
    if kind == "exist":
        return pope_question(scene, rng, rng.choice(["positive", "random", "popular", "adversarial"]))[:4]
    if kind == "locate":
        d = unique_desc(o, scene, rng=rng)
        return _fill(kind, rng, ref=d.ref()), box_to_text(o.box, W, H), [list(o.box)], []
    if kind == "describe":
        d = unique_desc(o, scene, rng=rng)
        return _fill(kind, rng, box=box_to_text(o.box, W, H)), d.ref(), [list(o.box)], []
    if kind.startswith("point_"):
        x0, y0, x1, y1 = o.box
        for _ in range(20):
            # near the centre, and kept only where o's own paint is seen: at the point itself
            # and at the point its 3-decimal text reads back as
            px = (x0 + x1) / 2 + rng.uniform(-0.15, 0.15) * (x1 - x0)
            py = (y0 + y1) / 2 + rng.uniform(-0.1, 0.15) * (y1 - y0)
            text = point_to_text((px, py), W, H)
            if object_at(scene, px, py) is o and object_at(scene, *parse_point(text, W, H)) is o:
                attr = kind.split("_")[1]
                return _fill(kind, rng, point=text), getattr(o, attr), [], [[px, py]]
        return None
    if kind in ("reason_count", "reason_exist"):
        rel = rng.choice(RELATIONS)
        d_ref = unique_desc(o, scene, rng=rng)
        others = [x for x in objs if x is not o]
        if any(not relation_clear(x, rel, o) for x in others):
            return None
        pick = rng.choice(others) if others and rng.random() < 0.7 else None
        d = rng.choice([Desc(shape=pick.shape), Desc(colour=pick.colour), Desc()] if pick else [Desc(shape=rng.choice(SHAPES))])
        hits = [x for x in others if d.matches(x) and relation_holds(x, rel, o)]
        intro = f"{_cap(d_ref.ref())} is at {box_to_text(o.box, W, H)}."
        if hits:
            body = f" The {d.plural()} {rel} it are at {boxes_to_text([h.box for h in hits], W, H)}."
        else:
            body = f" There are no {d.plural()} {rel} it."
        if kind == "reason_count":
            q, final = _fill(kind, rng, things=d.plural(), rel=rel, ref=d_ref.ref()), str(len(hits))
        else:
            phr = rng.choice(PHRASINGS[kind])
            slots = {"thing": d.thing(), "things": d.plural(), "rel": rel, "ref": d_ref.ref()}
            q, final = phr.format(**slots), "yes" if hits else "no"
        return q, intro + body + f" So the answer is {final}.", [list(o.box)] + [list(h.box) for h in hits], []
    raise ValueError(f"unknown question kind {kind!r}")


def _prior(shape: str, colour: str) -> float:
    return SHAPE_WEIGHTS[SHAPES.index(shape)] * COLOUR_WEIGHTS[COLOUR_NAMES.index(colour)]


def pope_question(scene: Scene, rng: random.Random, subtype: str):
    """POPE-style existence question: positives, and random/popular/adversarial negatives."""
    present = {(o.colour, o.shape) for o in scene.objects}
    if subtype == "positive":
        colour, shape = rng.choice(sorted(present))
    else:
        absent = [(c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in present]
        if subtype == "popular":  # the most frequent objects of the data set that are absent here
            absent.sort(key=lambda cs: -_prior(cs[1], cs[0]))
            absent = absent[:3]
        elif subtype == "adversarial":  # co-occurring: shares a colour or a shape with what is there
            absent = [cs for cs in absent if any(cs[0] == p[0] or cs[1] == p[1] for p in present)]
        colour, shape = rng.choice(absent)
    q = _fill("exist", rng, thing=Desc(colour=colour, shape=shape).thing())
    return q, "yes" if subtype == "positive" else "no", [], [], subtype


KIND_WEIGHTS = {"colour": 3, "shape": 2, "size": 1, "count": 2, "relation": 2}


def annotate(task: str, scene: Scene, rng: random.Random) -> dict | None:
    """One sample of `task` for `scene` (schema fields except ids and paths), or None."""
    source = "shapes_world"
    for _ in range(20):
        if task in ("common_vqa", "md"):
            kinds = list(KIND_WEIGHTS)
            n = 1 if task == "common_vqa" else rng.randint(2, 4)
            turns = [make_turn(rng.choices(kinds, list(KIND_WEIGHTS.values()))[0], scene, rng) for _ in range(n)]
        elif task == "adv_vqa":
            subtype = rng.choice(["positive", "positive", "positive", "random", "popular", "adversarial"])
            q, a, b, p, subtype = pope_question(scene, rng, subtype)
            turns, source = [(q, a, b, p)], f"shapes_world:pope_{subtype}"
        elif task == "rd":
            # a referential dialogue always grounds something: one turn locates or describes
            first = make_turn(rng.choice(("locate", "describe")), scene, rng)
            turns = [first] + [make_turn(rng.choice(TASK_KINDS["rd"]), scene, rng) for _ in range(rng.randint(1, 2))]
            rng.shuffle(turns)
        else:
            turns = [make_turn(rng.choice(TASK_KINDS[task]), scene, rng)]
        if any(t is None for t in turns):
            continue
        if len({t[0] for t in turns}) < len(turns):  # no repeated question in a dialogue
            continue
        return {
            "task": task,
            "turns": [{"question": t[0], "answer": t[1]} for t in turns],
            "boxes": [b for t in turns for b in t[2]],
            "points": [p for t in turns for p in t[3]],
            "source": source,
        }
    return None


def annotate_compositional(scene: Scene, rng: random.Random) -> dict | None:
    """A GQA-like question: a spatial relation between two described objects, or a count over
    described attributes (the compositional half of the common VQA grammar, asked on purpose)."""
    for _ in range(20):
        t = make_turn(rng.choice(("relation", "count")), scene, rng)
        if t is not None:
            return {"task": "common_vqa", "turns": [{"question": t[0], "answer": t[1]}], "boxes": [], "points": [],
                    "source": "shapes_world:gqa"}
    return None
