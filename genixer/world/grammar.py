"""The world's language: referring expressions and question phrasings, written once and
used both ways: annotators fill the slots, the oracle parses them back with the same
phrasings (compiled to regular expressions).

Slots in a phrasing: {ref} {ref2} (referring expression), {things} (plural description),
{thing} (singular description with article), {box}, {point}, {rel} (a relation phrase),
{options} (multiple-choice options).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from genixer.boxes import BOX_GROUP_RE, POINT_RE
from genixer.templates import TemplateError
from genixer.world.scene import COLOURS, SHAPES, SIZES, Obj, Scene

COLOUR_NAMES = tuple(COLOURS)
NOUNS = SHAPES + ("object",)

# Question phrasings per question kind. Several per kind, so a generator has wording to learn.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "colour": (
        "What colour is {ref}?",
        "What is the colour of {ref}?",
        "Which colour does {ref} have?",
        "Tell me the colour of {ref}.",
    ),
    "shape": (
        "What shape is {ref}?",
        "What is the shape of {ref}?",
        "Which shape is {ref}?",
    ),
    "size": (
        "Is {ref} small or large?",
        "What size is {ref}?",
        "How big is {ref}, small or large?",
    ),
    "count": (
        "How many {things} are there?",
        "How many {things} are in the image?",
        "What is the number of {things}?",
        "Count the {things}.",
    ),
    "relation": (
        "Is {ref} {rel} {ref2}?",
        "Is it true that {ref} is {rel} {ref2}?",
    ),
    "exist": (
        "Is there {thing} in the image?",
        "Does the image contain {thing}?",
        "Can you see {thing} in this picture?",
        "Is {thing} present in the image?",
    ),
    "mc_colour": (
        "What colour is {ref}? {options}",
        "Which colour does {ref} have? {options}",
    ),
    "mc_shape": (
        "What shape is {ref}? {options}",
        "Which shape is {ref}? {options}",
    ),
    "locate": (
        "Where is {ref}?",
        "Give the bounding box of {ref}.",
        "Locate {ref} in the image.",
        "Find {ref} and give its coordinates.",
        "Which region contains {ref}?",
        "Output the box of {ref}.",
        "Show me where {ref} is.",
        "Point out {ref} with a box.",
    ),
    "describe": (
        "Describe the object at {box}.",
        "What is in the region {box}?",
        "Give a unique description of the object in {box}.",
        "Which object is at {box}?",
        "Refer to the object in {box} so that it can be found.",
        "What do you see in {box}?",
    ),
    "point_colour": (
        "What colour is the object at {point}?",
        "What is the colour of the thing at point {point}?",
    ),
    "point_shape": (
        "What shape is at {point}?",
        "What is the shape of the object at point {point}?",
    ),
    "point_size": (
        "Is the object at {point} small or large?",
    ),
    "reason_count": (
        "How many {things} are {rel} {ref}?",
        "Count the {things} that are {rel} {ref}.",
    ),
    "reason_exist": (
        "Is there {thing} {rel} {ref}?",
        "Are there any {things} {rel} {ref}?",
    ),
}

RELATIONS = ("to the left of", "to the right of", "above", "below")

# Which question kinds make up each task's grammar.
TASK_KINDS = {
    "common_vqa": ("colour", "shape", "size", "count", "relation"),
    "adv_vqa": ("exist",),
    "mc_vqa": ("mc_colour", "mc_shape"),
    "md": ("colour", "shape", "size", "count", "relation"),
    "rec": ("locate",),
    "reg": ("describe",),
    "pointqa": ("point_colour", "point_shape", "point_size"),
    "qca": ("reason_count", "reason_exist"),
    "rd": ("locate", "describe", "point_colour", "point_shape"),
}

_WORDS = r"(?:(?:small|large) )?(?:(?:%s) )?(?:%s)" % ("|".join(COLOUR_NAMES), "|".join(NOUNS))
_REF = r"the " + _WORDS
_PLURAL = r"(?:(?:small|large) )?(?:(?:%s) )?(?:%s)" % ("|".join(COLOUR_NAMES), "|".join(n + "s" for n in NOUNS))
_THING = r"an? " + _WORDS
# A free referring expression (a REG answer): a description, optionally placed by a relation to a
# second described object. Nothing else may follow, so no trailing claim goes unchecked.
EXPRESSION_RE = re.compile(rf"(?:(?:the|an?) )?(?P<desc>{_WORDS})(?: (?P<rel>{'|'.join(RELATIONS)}) (?P<ref2>{_REF}))?",
                           re.IGNORECASE)
_OPTIONS = r"Options: A\. [a-z]+ B\. [a-z]+ C\. [a-z]+ D\. [a-z]+"
SLOT_RE = {
    "ref": _REF,
    "ref2": _REF,
    "things": _PLURAL,
    "thing": _THING,
    "box": BOX_GROUP_RE.pattern,
    "point": POINT_RE.pattern,
    "rel": "|".join(RELATIONS),
    "options": _OPTIONS,
}
SLOT_NAMES = re.compile(r"\{(\w+)\}")


def compile_phrasing(phrasing: str, slots: dict[str, str] | None = None) -> re.Pattern:
    """A phrasing as a regular expression: each slot a named group (``SLOT_RE``'s pattern, or the one
    ``slots`` gives for it, e.g. a free ``{ref}`` for expressions outside the world's words)."""
    table = {**SLOT_RE, **(slots or {})}
    out, pos = [], 0
    for m in SLOT_NAMES.finditer(phrasing):
        name = m.group(1)
        if name not in table:
            raise TemplateError(f"unknown slot {{{name}}} in phrasing {phrasing!r}")
        out.append(re.escape(phrasing[pos : m.start()]))
        out.append(f"(?P<{name}>{table[name]})")
        pos = m.end()
    out.append(re.escape(phrasing[pos:]))
    pattern = "".join(out).replace(r"\ ", r"\s+")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as e:  # a slot used twice
        raise TemplateError(f"phrasing {phrasing!r} does not compile: {e}") from e


# The slots each kind's phrasings must carry (a phrasing missing one is rejected at load).
REQUIRED_SLOTS = {
    "colour": {"ref"}, "shape": {"ref"}, "size": {"ref"}, "count": {"things"},
    "relation": {"ref", "rel", "ref2"}, "exist": {"thing"},
    "mc_colour": {"ref", "options"}, "mc_shape": {"ref", "options"},
    "locate": {"ref"}, "describe": {"box"},
    "point_colour": {"point"}, "point_shape": {"point"}, "point_size": {"point"},
    "reason_count": {"things", "rel", "ref"}, "reason_exist": {"rel", "ref"},
}


def validate_phrasings(phrasings: dict[str, tuple[str, ...] | list[str]]) -> dict[str, list[re.Pattern]]:
    """Check every phrasing's slots against its kind; return the compiled patterns."""
    compiled = {}
    for kind, items in phrasings.items():
        if kind not in REQUIRED_SLOTS:
            raise TemplateError(f"unknown question kind {kind!r}")
        if not items:
            raise TemplateError(f"question kind {kind!r} has no phrasings")
        compiled[kind] = []
        for p in items:
            slots = set(SLOT_NAMES.findall(p))
            need = REQUIRED_SLOTS[kind]
            # reason_exist takes {thing} or {things}
            if kind == "reason_exist" and not slots & {"thing", "things"}:
                raise TemplateError(f"phrasing {p!r} of kind {kind!r} lacks a {{thing}} or {{things}} slot")
            if need - slots:
                raise TemplateError(f"phrasing {p!r} of kind {kind!r} is missing slot(s) {sorted(need - slots)}")
            compiled[kind].append(compile_phrasing(p))
    return compiled


COMPILED = validate_phrasings(PHRASINGS)


# ---- descriptions -------------------------------------------------------------------------

@dataclass(frozen=True)
class Desc:
    """A description: any of size, colour, shape (None = unconstrained)."""

    size: str | None = None
    colour: str | None = None
    shape: str | None = None

    def matches(self, o: Obj) -> bool:
        return (self.size in (None, o.size)) and (self.colour in (None, o.colour)) and (self.shape in (None, o.shape))

    def select(self, scene: Scene) -> list[Obj]:
        return [o for o in scene.objects if self.matches(o)]

    def words(self) -> list[str]:
        return [w for w in (self.size, self.colour) if w] + [self.shape or "object"]

    def ref(self) -> str:
        return "the " + " ".join(self.words())

    def plural(self) -> str:
        w = self.words()
        return " ".join(w[:-1] + [w[-1] + "s"])

    def thing(self) -> str:
        w = " ".join(self.words())
        return ("an " if w[0] in "aeiou" else "a ") + w


def parse_desc(text: str) -> Desc:
    words = text.lower().split()
    if words and words[0] in ("the", "a", "an"):
        words = words[1:]
    size = words.pop(0) if words and words[0] in SIZES else None
    colour = words.pop(0) if words and words[0] in COLOUR_NAMES else None
    noun = words[0] if words else "object"
    if noun.endswith("s") and noun[:-1] in NOUNS:
        noun = noun[:-1]
    return Desc(size, colour, None if noun == "object" else noun)


def unique_desc(o: Obj, scene: Scene, exclude: str | None = None, rng=None) -> Desc | None:
    """The shortest description that picks out exactly `o`, never naming `exclude`.

    With an rng, a longer unique description is sometimes chosen, so expressions vary.
    """
    fields = [f for f in ("shape", "colour", "size") if f != exclude]
    candidates = []
    for k in range(1, len(fields) + 1):
        for combo in _combos(fields, k):
            d = Desc(**{f: getattr(o, f) for f in combo})
            if d.select(scene) == [o]:
                candidates.append(d)
    if not candidates:
        return None
    if rng is not None and len(candidates) > 1 and rng.random() < 0.3:
        return rng.choice(candidates[1:])
    return candidates[0]


def _combos(fields, k):
    if k == 0:
        yield ()
        return
    for i, f in enumerate(fields):
        for rest in _combos(fields[i + 1 :], k - 1):
            yield (f,) + rest


def relation_holds(a: Obj, rel: str, b: Obj) -> bool:
    (ax, ay), (bx, by) = a.centre, b.centre
    return {"to the left of": ax < bx, "to the right of": ax > bx, "above": ay < by, "below": ay > by}[rel.lower()]


def relation_clear(a: Obj, rel: str, b: Obj, gap: float = 6.0) -> bool:
    """Annotators ask only about relations whose answer no reader would dispute."""
    (ax, ay), (bx, by) = a.centre, b.centre
    return abs(ax - bx) >= gap if "left" in rel or "right" in rel else abs(ay - by) >= gap
