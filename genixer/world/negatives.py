"""The judge's "No" examples from the world: grammar corruptions of a true pair, each confirmed false by the oracle.

Each true pair of a collected sample (:func:`genixer.judge.judge_pairs`) gives a "Yes" record and, paired
with it, one corrupted version of the same pair gives a "No" record (so the set is exactly 50/50 and every
question kind appears with both targets). Corruptions are derived with the world grammar and each is
confirmed false by the oracle (accidentally true ones are discarded; a pair with no valid corruption
contributes neither record). Corruption kinds (``CORRUPTIONS``):
- ``wrong_attribute``: colour / shape / size (or PointQA attribute) answer swapped for another value,
  half of the time a value another object of the scene has (a binding error), else any other value.
- ``wrong_option``: MC VQA, the answer becomes the text of a distractor option.
- ``wrong_count``: count answer off by one, or another number 0..5.
- ``flipped_yes_no``: yes <-> no (relations, POPE-style existence).
- ``swapped_relation``: the relation word of a relation question replaced by its opposite, answer kept.
- ``absent_referent``: a word of a referring expression in the question changed (e.g. its colour) so
  that nothing in the image fits it, answer kept.
- ``ambiguous_referent``: a word of a referring expression changed or dropped so that it fits several
  objects, answer kept.
Question kinds outside the general tasks' grammar (locate, describe, reason_*) have no corruption here.

Collected data read from files has no scene graph and no oracle: its records come from
:func:`genixer.sources.negatives.verification_records` (corruptions that need no scene), in the same
record shape (both build their records with :func:`genixer.judge.verification_pair`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from genixer.judge import clean_text as _clean, judge_pairs, split_options, verification_pair
from genixer.tasks import GENERAL_TASKS
from genixer.world.grammar import COLOUR_NAMES, Desc, parse_desc
from genixer.world.oracle import INCORRECT, check_turn, classify
from genixer.world.scene import SHAPES, SIZES, Scene

CORRUPTIONS = (
    "wrong_attribute", "wrong_option", "wrong_count", "flipped_yes_no", "swapped_relation",
    "absent_referent", "ambiguous_referent",
)
_OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}
_ATTR_VALUES = {"colour": COLOUR_NAMES, "shape": SHAPES, "size": SIZES}


def _other(values: Sequence[str], truth: str, rng: random.Random, scene_values: Iterable[str] = ()) -> str | None:
    """Another value than ``truth``: half of the time one present in the scene (a hard negative)."""
    present = sorted({v for v in scene_values if v != truth})
    if present and rng.random() < 0.5:
        return rng.choice(present)
    pool = [v for v in values if v != truth]
    return rng.choice(pool) if pool else None


def _wrong_attribute(kind, m, q, a, scene, rng, mc):
    attr = kind.split("_")[-1]
    if attr not in _ATTR_VALUES or mc:  # MC pairs get wrong_option instead
        return None
    new = _other(_ATTR_VALUES[attr], a.lower(), rng, (getattr(o, attr) for o in scene.objects))
    return (q, new) if new else None


def _wrong_option(kind, m, q, a, scene, rng, mc):
    others = [v for v in (mc or {}).values() if v.lower() != a.lower()]
    return (q, rng.choice(others)) if others else None


def _wrong_count(kind, m, q, a, scene, rng, mc):
    if kind != "count" or not a.isdigit():
        return None
    n = int(a)
    new = n + rng.choice((-1, 1)) if rng.random() < 0.6 else rng.choice([k for k in range(6) if k != n])
    return (q, str(new if new >= 0 else n + 1))


def _flipped_yes_no(kind, m, q, a, scene, rng, mc):
    if a.lower() not in ("yes", "no"):
        return None
    return (q, "no" if a.lower() == "yes" else "yes")


def _swapped_relation(kind, m, q, a, scene, rng, mc):
    if "rel" not in m.groupdict() or m.group("rel") is None:
        return None
    rel = m.group("rel")
    return (q[: m.start("rel")] + _OPPOSITE[rel.lower()] + q[m.end("rel") :], a)


def _referent_variants(kind: str, m: re.Match, q: str, scene: Scene) -> list[tuple[int, str]]:
    """(number of objects fitted, question) for every one-word change of a referring expression."""
    asked = kind.removeprefix("mc_") if kind.removeprefix("mc_") in _ATTR_VALUES else None
    out = []
    for slot in ("ref", "ref2"):
        if m.groupdict().get(slot) is None:
            continue
        d = parse_desc(m.group(slot))
        variants = []
        for f, values in _ATTR_VALUES.items():
            if f == asked:  # "What colour is the red circle?" would give the answer away
                continue
            variants += [replace(d, **{f: v}) for v in values if v != getattr(d, f)]
            if getattr(d, f) is not None:
                variants.append(replace(d, **{f: None}))
        for v in variants:
            if v == Desc():
                continue
            n = len(v.select(scene))
            if n != 1:
                out.append((n, q[: m.start(slot)] + v.ref() + q[m.end(slot) :]))
    return out


def _referent(want_absent: bool):
    def corrupt(kind, m, q, a, scene, rng, mc):
        cands = [vq for n, vq in _referent_variants(kind, m, q, scene) if (n == 0) == want_absent]
        return (rng.choice(cands), a) if cands else None
    return corrupt


_CORRUPT = {
    "wrong_attribute": _wrong_attribute,
    "wrong_option": _wrong_option,
    "wrong_count": _wrong_count,
    "flipped_yes_no": _flipped_yes_no,
    "swapped_relation": _swapped_relation,
    "absent_referent": _referent(True),
    "ambiguous_referent": _referent(False),
}


def corrupt_pair(question: str, answer: str, scene: Scene, rng: random.Random, kinds: Sequence[str] = CORRUPTIONS,
                 original_question: str | None = None) -> tuple[str, str, str] | None:
    """One false version of a true pair: (question, answer, corruption kind), confirmed by the oracle.

    ``original_question`` is the MC question with its options (for ``wrong_option``). Kinds are tried in a
    random order; the first one that applies and that the oracle marks incorrect is returned.
    """
    found_mc = split_options(original_question) if original_question else None
    mc = found_mc[1] if found_mc else None  # the MC options, for wrong_option
    found = classify(question)
    if found is None:
        return None
    kind, m = found
    order = list(kinds)
    rng.shuffle(order)
    for name in order:
        out = _CORRUPT[name](kind, m, question, answer, scene, rng, mc)
        if out is None or out == (question, answer):
            continue
        if check_turn(out[0], out[1], scene).status == INCORRECT:
            return out[0], out[1], name
    return None


def verification_records(samples, rng: random.Random | int, scenes: dict[str, Scene],
                         tasks: Sequence[str] = GENERAL_TASKS) -> list[dict]:
    """Judge training records from collected samples: each true pair -> "Yes", plus one corrupted version
    of it -> "No" (exactly balanced). Pairs the oracle does not confirm as true, or with no corruption the
    oracle confirms as false, are left out. Records are shuffled with ``rng``."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    samples = samples.to_dict("records") if hasattr(samples, "to_dict") else list(samples)
    records = []
    for s in samples:
        if s["task"] not in tasks:
            continue
        scene = scenes[s["image_id"]]
        turns = list(s["turns"]) if s["turns"] is not None else []
        for i, (t, (q, a)) in enumerate(zip(turns, judge_pairs(turns, s["task"]))):
            if not check_turn(q, a, scene).ok:
                continue
            bad = corrupt_pair(q, a, scene, rng, original_question=_clean(t["question"]))
            if bad is None:
                continue
            records += verification_pair(s, i, (q, a), bad)
    rng.shuffle(records)
    return records
