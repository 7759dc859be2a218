"""Corruptions that need no scene graph: the judge's "No" examples for collected data read from files.

The world's path (its ``negatives.corrupt_pair``) edits a question with the world grammar and asks the
oracle whether the result is false. Published data sets (VQAv2, A-OKVQA, POPE, RefCOCO ...) have neither
a grammar nor an oracle, so the corruptions here only swap in an answer that is wrong *by construction*,
taken from the collected data itself:

- ``answer_from_same_kind``: the answer of another question of the same kind (kind = the task and the
  question's first two words, :func:`genixer.world_benchmarks.question_kind`: "what color", "how many"), so the
  false answer is plausible for the question. It must differ from the true answer after VQA normalisation
  and from every answer the sample itself accepts (``accepted_answers``: VQAv2's ten annotator answers,
  A-OKVQA's direct answers), so an answer that is also right is never used.
- ``option_swapped``: multiple choice ("... Options: A. x B. y ..." answered by a letter), the letter of
  another option whose text differs from the right one.
- ``flipped_yes_no``: yes <-> no (VQAv2 yes/no questions, POPE).
- ``box_shifted``: a box answer moved and rescaled (0.5x to 1.5x) inside the image until its IoU with the
  true box is < 0.5.
- ``box_from_other_object``: a box answer replaced by the box of another annotated object of the same
  image (any collected sample's ``boxes``) with IoU < 0.5.

Each pair takes exactly one answer type, tried in this order: multiple choice, yes/no, box, free text;
only that type's kinds apply (a yes/no answer is flipped, never swapped for "no" under another name).
The kinds are tried in a random order; the first that applies is returned; None when none can (e.g. a
kind whose answers all normalise to the true one).

What "false by construction" cannot exclude: an answer of another question that happens to be true of
this image too (a shirt that is both white and blue, and only "white" was recorded), or another object's
box that fits a vague question. ``accepted_answers`` removes the cases the data set itself records.

:func:`verification_records` turns collected samples into judge training records with the same
shape as the world's (its ``negatives.verification_records``: one "Yes" per true pair + one
corrupted "No", both made by :func:`genixer.judge.verification_pair`). The data source
(:mod:`genixer.datasource`) picks one of the two; a world run never reaches this module, so forgetting
the scenes can never silently switch it to unchecked labels.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from genixer.world_benchmarks import question_kind
from genixer.boxes import BoxFormatError, answer_box, box_to_text, inside, iou
from genixer.judge import judge_pairs, mc_pair, verification_pair
from genixer.metrics import normalize_answer
from genixer.tasks import GENERAL_TASKS

CORRUPTIONS = ("answer_from_same_kind", "option_swapped", "flipped_yes_no", "box_shifted", "box_from_other_object")
MAX_IOU = 0.5  # a corrupted box overlaps the true one less than this
_YES_NO = ("yes", "no")


@dataclass
class Pool:
    """What the corruptions draw from, built once from the collected samples (:func:`build_pool`).

    answers: question kind -> its distinct free-text answers (one spelling per normalised answer, in
    first-seen order). boxes: image_id -> the distinct annotated boxes of that image, normalised to [0, 1]
    by the image's width and height (IoU does not depend on the scale, and box text is normalised)."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    boxes: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)


def _rows(samples) -> list[dict]:
    return samples.to_dict("records") if hasattr(samples, "to_dict") else list(samples)


def _clean(text) -> str:
    return " ".join(str(text if text is not None else "").split())


def _turns(s: dict) -> list[dict]:
    return list(s.get("turns")) if s.get("turns") is not None else []


def _answer_box(answer: str) -> tuple[float, float, float, float] | None:
    """The one box of a box answer, normalised; None if the answer is not exactly one box."""
    try:
        return answer_box(answer, 1.0, 1.0)
    except BoxFormatError:
        return None


def answer_type(question: str, answer: str) -> str:
    """"mc" (a letter naming a listed option), "yes_no", "box" (exactly one box) or "text"."""
    if mc_pair(question, answer) is not None:
        return "mc"
    if normalize_answer(answer) in _YES_NO:
        return "yes_no"
    if _answer_box(answer) is not None:
        return "box"
    return "text"


def build_pool(samples) -> Pool:
    """The pool of answers by question kind (free-text answers of every turn) and boxes by image (the
    ``boxes`` of every sample that has an image size), from collected samples (dicts or a DataFrame)."""
    pool = Pool()
    seen_answers: dict[str, set[str]] = {}
    seen_boxes: dict[str, set[tuple[float, ...]]] = {}
    for s in _rows(samples):
        task = s.get("task")
        for t in _turns(s):
            q, a = _clean(t.get("question")), _clean(t.get("answer"))
            if not q or not a or answer_type(q, a) != "text":
                continue
            kind, norm = question_kind(task, q), normalize_answer(a)
            if norm and norm not in seen_answers.setdefault(kind, set()):
                seen_answers[kind].add(norm)
                pool.answers.setdefault(kind, []).append(a)
        image_id, boxes = s.get("image_id"), s.get("boxes")
        try:
            w, h = float(s["width"]), float(s["height"])
        except (KeyError, TypeError, ValueError):
            continue
        if image_id is None or boxes is None or not (w > 0 and h > 0):
            continue
        for b in boxes:
            if len(b) != 4:
                continue
            nb = tuple(round(float(v) / d, 3) for v, d in zip(b, (w, h, w, h)))
            if inside(nb, 1.0, 1.0) and nb not in seen_boxes.setdefault(image_id, set()):
                seen_boxes[image_id].add(nb)
                pool.boxes.setdefault(image_id, []).append(nb)
    return pool


# ---- the corruptions -------------------------------------------------------------------------------
# Each takes (question, answer, task, pool, rng, image_id, accepted) and returns (question, answer) or None;
# `accepted` holds the normalised answers that are right for this question (the true one included).

def _answer_from_same_kind(q, a, task, pool, rng, image_id, accepted):
    if answer_type(q, a) != "text":
        return None
    cands = [x for x in pool.answers.get(question_kind(task, q), []) if normalize_answer(x) not in accepted]
    return (q, rng.choice(cands)) if cands else None


def _option_swapped(q, a, task, pool, rng, image_id, accepted):
    mc = mc_pair(q, a)
    if mc is None:
        return None
    _, text, opts = mc
    right = normalize_answer(text)
    others = [k for k, v in sorted(opts.items()) if normalize_answer(v) != right and normalize_answer(v) not in accepted]
    return (q, rng.choice(others)) if others else None


def _flipped_yes_no(q, a, task, pool, rng, image_id, accepted):
    if answer_type(q, a) != "yes_no":
        return None
    new = "no" if normalize_answer(a) == "yes" else "yes"
    if new in accepted:  # the annotators disagree: "no" is as right as "yes"
        return None
    return (q, new.capitalize() if a[:1].isupper() else new)


def shifted_box(box: Sequence[float], rng: random.Random, max_iou: float = MAX_IOU, width: float = 1.0,
                height: float = 1.0, tries: int = 100) -> tuple[float, float, float, float] | None:
    """The box moved (by 0.3 to 1.2 of its size, any direction) and rescaled (0.5x to 1.5x), kept inside
    the width x height image, with IoU < ``max_iou`` against the original; None if no try gets there.
    Corners are rounded to 3 decimals of the image size (what box text keeps)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    for _ in range(tries):
        s = rng.uniform(0.5, 1.5)
        nw, nh = min(w * s, width), min(h * s, height)
        ang, mag = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1.2)
        nx0 = min(max(0.0, cx + math.cos(ang) * mag * w - nw / 2), width - nw)
        ny0 = min(max(0.0, cy + math.sin(ang) * mag * h - nh / 2), height - nh)
        nb = tuple(round(v / d, 3) * d for v, d in ((nx0, width), (ny0, height), (nx0 + nw, width), (ny0 + nh, height)))
        if inside(nb, width, height) and iou(nb, (x0, y0, x1, y1)) < max_iou:
            return nb
    return None


def _box_text(new, box) -> str | None:
    """The box text of ``new`` if, read back, it still overlaps ``box`` less than MAX_IOU."""
    text = box_to_text(new, 1.0, 1.0)
    back = _answer_box(text)
    return text if back is not None and iou(back, box) < MAX_IOU else None


def _box_shifted(q, a, task, pool, rng, image_id, accepted):
    box = _answer_box(a) if answer_type(q, a) == "box" else None
    new = shifted_box(box, rng) if box is not None else None
    text = _box_text(new, box) if new is not None else None
    return (q, text) if text else None


def _box_from_other_object(q, a, task, pool, rng, image_id, accepted):
    box = _answer_box(a) if answer_type(q, a) == "box" else None
    if box is None or image_id is None:
        return None
    others = [b for b in pool.boxes.get(image_id, []) if iou(b, box) < MAX_IOU]
    text = _box_text(rng.choice(others), box) if others else None
    return (q, text) if text else None


_CORRUPT = {
    "answer_from_same_kind": _answer_from_same_kind,
    "option_swapped": _option_swapped,
    "flipped_yes_no": _flipped_yes_no,
    "box_shifted": _box_shifted,
    "box_from_other_object": _box_from_other_object,
}


def corrupt_pair(question: str, answer: str, task: str, pool: Pool, rng: random.Random, *,
                      image_id: str | None = None, accepted_answers: Iterable[str] = (),
                      kinds: Sequence[str] = CORRUPTIONS) -> tuple[str, str, str] | None:
    """One false version of a true (question, answer) of a collected sample: (question, answer, kind).

    The pair is in the sample's own form (an MC question with its options, answered by a letter; a REC
    answer as box text). ``image_id`` is needed by ``box_from_other_object``; ``accepted_answers`` are
    other answers the data set accepts for this question (never used as a false one). Kinds are tried
    in a random order (``rng``); the first that applies is returned; None if none applies.
    """
    unknown = set(kinds) - set(_CORRUPT)
    if unknown:
        raise ValueError(f"unknown corruption kinds {sorted(unknown)}; expected some of {CORRUPTIONS}")
    q, a = _clean(question), _clean(answer)
    if not q or not a:
        return None
    accepted = {normalize_answer(a)} | {normalize_answer(x) for x in accepted_answers}
    order = list(kinds)
    rng.shuffle(order)
    for name in order:
        out = _CORRUPT[name](q, a, task, pool, rng, image_id, accepted)
        if out is not None and out != (q, a):
            return out[0], out[1], name
    return None


def accepted_answers(sample: dict) -> list[str]:
    """The answers a collected sample's data set records as right besides its own: VQAv2's ``answers``,
    A-OKVQA's ``direct_answers`` (from the sample's ``extra`` JSON)."""
    extra = sample.get("extra")
    if not isinstance(extra, str) or not extra:
        return []
    try:
        extra = json.loads(extra)
    except json.JSONDecodeError:
        return []
    if not isinstance(extra, dict):
        return []
    out = []
    for key in ("answers", "direct_answers"):
        v = extra.get(key)
        if isinstance(v, list):
            out += [str(x) for x in v if isinstance(x, (str, int, float))]
    return out


def verification_records(samples, rng: random.Random | int, pool: Pool | None = None,
                              tasks: Sequence[str] = GENERAL_TASKS,
                              kinds: Sequence[str] = CORRUPTIONS) -> list[dict]:
    """Judge training records from collected samples without scenes: each judge pair of a sample
    (:func:`genixer.judge.judge_pairs`: MC letters become option text, MD turns split) -> "Yes", plus one
    corrupted version of it (:func:`corrupt_pair`, read by judge_pairs the same way) -> "No", so the
    set is exactly 50/50. The collected pairs are taken as true (there is no oracle); a pair with no
    corruption contributes neither record. ``pool``: default :func:`build_pool` of ``samples`` (pass one
    built from more data for more distractors). Same record shape as the world's (both made by ``judge.verification_pair``);
    records are shuffled with ``rng``."""
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    samples = _rows(samples)
    pool = build_pool(samples) if pool is None else pool
    records = []
    for s in samples:
        if s["task"] not in tasks:
            continue
        turns = _turns(s)
        accepted = accepted_answers(s) if len(turns) == 1 else []
        for i, (t, pair) in enumerate(zip(turns, judge_pairs(turns, s["task"]))):
            bad = corrupt_pair(t["question"], t["answer"], s["task"], pool, rng, image_id=s.get("image_id"),
                                    accepted_answers=accepted, kinds=kinds)
            if bad is None:
                continue
            (bad_pair,) = judge_pairs([{"question": bad[0], "answer": bad[1]}], s["task"])
            records += verification_pair(s, i, pair, (*bad_pair, bad[2]))
    rng.shuffle(records)
    return records
