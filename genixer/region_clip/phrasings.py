"""REC phrasings read into referring expressions, and (expression, box) pairs from REC and REG samples.

:func:`locate_ref` reads the ``{ref}`` slot of a REC question with the REC phrasings in use
(:func:`rec_phrasings`); :func:`region_pairs` takes (expression, box) from REC samples (that slot) and REG
samples (the answer). The captions of the collected data and the REC filter read expressions the same way.

What a data source's words are (the expressions it knows, its REG phrasings, how a phrasing compiles) is a
:class:`RecReading` its caller passes in: the world's is ``WORLD_REC_READING`` in ``genixer/world/regions.py``; this
package does not import the world, and there is no default reading (``DataSource.rec_reading``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from genixer.boxes import BOX_GROUP_RE, POINT_RE, BoxFormatError, find_box_groups, parse_boxes
from genixer.sources.common import REC_QUESTION
from genixer.templates import TemplateError

log = logging.getLogger(__name__)


def as_rows(samples) -> list[dict]:
    if hasattr(samples, "to_dict"):  # a DataFrame (read_samples)
        return samples.to_dict("records")
    return list(samples)


def norm_expr(text: str) -> str:
    return " ".join(str(text).strip().rstrip(".").split()).lower()


@dataclass(frozen=True)
class RecReading:
    """The grammar REC and REG questions are read with, beside the phrasings in use (a data source's; the world's
    is ``WORLD_REC_READING`` in ``genixer/world/regions.py``).

    ``locate``: the REC phrasings used when the caller gives none. ``describe``: the REG question patterns, each
    with a ``box`` group (a question none of them fits is read as any question holding exactly one box).
    ``ref_anywhere``: an expression in the source's own words, found anywhere in a paraphrase no phrasing fits
    (None: no such fallback). ``compile(phrasing, slots=None)``: a phrasing as a pattern whose ``{ref}`` slot holds
    an expression in the source's own words, or the pattern ``slots`` gives for it."""

    locate: tuple[str, ...]
    describe: tuple[re.Pattern, ...]
    ref_anywhere: re.Pattern | None
    compile: Callable[..., re.Pattern]


def _reading(reading: RecReading | None) -> RecReading:
    """The caller's reading; there is no default (the data source gives one: ``DataSource.rec_reading``)."""
    if reading is None:
        raise ValueError("REC questions are read with a data source's RecReading: pass reading= "
                         "(genixer.datasource.choose(...).rec_reading)")
    return reading


# The {ref} slot read freely (any words): no "?" (it would swallow a following sentence), no leading or
# trailing space. A slot that holds a box or a point is not an expression (see locate_ref).
FREE_REF = r"[^\s?](?:[^?\n]*?[^\s?])?"


def rec_phrasings(phrasings=None, reading: RecReading | None = None) -> tuple[str, ...]:
    """The REC question phrasings an expression is read with, ``REC_QUESTION`` (published data) always
    among them. ``phrasings``: None (``reading.locate``), one phrasing, a list of them, or
    a kind -> phrasings mapping (``instruction_templates.json``'s "phrasings"; its "locate" list is used).
    The official code's ``<expr>`` slot is read as ``{ref}``."""
    if phrasings is None:
        items = _reading(reading).locate
    elif isinstance(phrasings, str):
        items = (phrasings,)
    elif isinstance(phrasings, Mapping):
        items = phrasings.get("locate", ())
    else:
        items = phrasings
    out = [str(p).replace("<expr>", "{ref}") for p in items]
    return tuple(dict.fromkeys(out + [REC_QUESTION]))


@lru_cache(maxsize=32)
def _rec_patterns(phrasings: tuple[str, ...], reading: RecReading) -> tuple[tuple[re.Pattern, re.Pattern], ...]:
    """(source-words pattern, free-slot pattern) of each phrasing."""
    out = []
    for p in phrasings:
        if "{ref}" not in p:
            raise TemplateError(f"REC phrasing {p!r} has no {{ref}} slot")
        out.append((reading.compile(p), reading.compile(p, slots={"ref": FREE_REF})))
    return tuple(out)


def locate_ref(question: str, phrasings=None, reading: RecReading | None = None) -> str | None:
    """The referring expression of a REC question: the ``{ref}`` slot of the REC phrasing it is
    (:func:`rec_phrasings`: ``reading.locate``, or the given ones, plus ``REC_QUESTION``), whatever its words.

    1. A phrasing whose slot holds an expression in the source's words (the world's: "Where is the red
       circle?") gives it.
    2. Else the slot read freely: "Which region does this describe: the man in the red shirt?" gives
       "the man in the red shirt". When several phrasings fit, the shortest slot wins (the phrasing
       that explains most of the question: "Where is {ref} in the image?" before "Where is {ref}?").
       A slot holding a box or a point is no expression.
    3. A paraphrase no phrasing fits (generated text): the longest expression in the source's words found
       anywhere (``reading.ref_anywhere``; the world's: a world description).
    No fixed words such as "coordinates of"."""
    reading = _reading(reading)
    q = " ".join(str(question).split())
    patterns = _rec_patterns(rec_phrasings(phrasings, reading), reading)
    for strict, _ in patterns:
        m = strict.fullmatch(q)
        if m:
            return m.group("ref")
    free = []
    for _, pat in patterns:
        m = pat.fullmatch(q)
        if m and not BOX_GROUP_RE.search(m.group("ref")) and not POINT_RE.search(m.group("ref")):
            free.append(m.group("ref"))
    if free:
        return min(free, key=len)
    found = [m.group(0) for m in reading.ref_anywhere.finditer(q)] if reading.ref_anywhere is not None else []
    return max(found, key=len) if found else None


def _describe_box(question: str, reading: RecReading) -> str | None:
    q = " ".join(str(question).split())
    for pat in reading.describe:
        m = pat.fullmatch(q)
        if m:
            return m.group("box")
    return None


def _first_box(s: dict) -> list[float] | None:
    boxes = s.get("boxes")
    boxes = list(boxes) if boxes is not None else []
    return [float(v) for v in boxes[0]] if len(boxes) == 1 and len(boxes[0]) == 4 else None


def region_pairs(samples, phrasings=None, reading: RecReading | None = None) -> list[dict]:
    """(expression, box) pairs from REC and REG samples (dicts or a DataFrame); others are skipped.

    REC: expression = the ``{ref}`` slot of the question (:func:`locate_ref` with ``phrasings`` and ``reading``),
    box = the sample's one box, else the box in the answer. REG: expression = the answer, box = the sample's one
    box, else the box in the question (read with ``reading.describe``, else the one box it holds). Samples that do not parse (generated text) are skipped and counted in
    the log. Each pair: image_path, box (pixel xyxy), expression, sample_id, image_id, task, and the
    image's width and height when the sample has them.
    """
    reading = _reading(reading)
    pairs, skipped = [], 0
    for s in as_rows(samples):
        task = s.get("task")
        if task not in ("rec", "reg"):
            continue
        turns = list(s.get("turns") if s.get("turns") is not None else [])
        if len(turns) != 1:
            skipped += 1
            continue
        q, a = str(turns[0].get("question") or ""), str(turns[0].get("answer") or "")
        box = _first_box(s)
        try:
            if task == "rec":
                expr = locate_ref(q, phrasings, reading)
                if box is None and expr is not None:
                    found = parse_boxes(a, s["width"], s["height"])
                    box = list(found[0]) if len(found) == 1 else None
            else:  # the source's REG phrasings, or any question holding exactly one box (REG_QUESTION, published REG)
                where = _describe_box(q, reading)
                if where is None:
                    groups = find_box_groups(q)
                    where = groups[0] if len(groups) == 1 else None
                expr = norm_expr(a) if where is not None else None
                if box is None and expr:
                    found = parse_boxes(where, s["width"], s["height"])
                    box = list(found[0]) if len(found) == 1 else None
        except BoxFormatError:
            expr = None
        if not expr or box is None:
            skipped += 1
            continue
        pairs.append({
            "image_path": s["image_path"],
            "box": [float(v) for v in box],
            "expression": norm_expr(expr),
            "sample_id": s.get("sample_id"),
            "image_id": s.get("image_id"),
            "task": task,
            **({"width": int(s["width"]), "height": int(s["height"])} if has_size(s) else {}),
        })
    if skipped:
        log.info("region_pairs: %d REC/REG samples skipped (question or box did not parse)", skipped)
    return pairs


def has_size(s: dict) -> bool:
    try:
        return int(s["width"]) > 0 and int(s["height"]) > 0
    except (KeyError, TypeError, ValueError):  # missing, None, NaN or NA
        return False
