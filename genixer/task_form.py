"""Which of the nine tasks a sample is, decided from the form of its turns alone (no world, no grammar).

The world's oracle (its ``task_of``) recognises the shapes world's phrasings and
nothing else; a generator trained on published data writes VQAv2, RefCOCO, A-OKVQA, POPE or Shikra
phrasings, which only their form can classify. The form is what the readers
(:mod:`genixer.sources.readers_general`, :mod:`genixer.sources.readers_grounding`) and the world's
annotators write for each task:

========== =========================================================================================
task       form
========== =========================================================================================
rec        one turn; the answer is only a box group (or a point), the question holds none
           (RefCOCO / Visual Genome "Which region does this describe: ...?" -> ``[x0,y0,x1,y1]``;
           Shikra's "Answer: [..] ." wrapper is read as the box alone)
pointqa    one turn; the question holds a box or point and the answer is only one of them
           (Visual7W "Which ...? Candidates: [..] [..]" -> ``[..]``, or Shikra's "The answer is [..] ."),
           or the question holds a box or point, is a question ("?") and asks no description
           (PointQA Local "What color is the shirt? [x,y]" -> "white"; the world's "What colour is the
           object at [x,y]?")
reg        one turn; the question holds a box or point, the answer none, and the question asks for a
           description: the readers' REG phrasing (``REG_QUESTION``), a description word (describe,
           description, refer, distinguish, apart, unique, distinct, differ, stand out, characterize,
           features, attributes, portray, ...: the words of Shikra's REG templates), "what/which
           (object) is at/in [box]", "what do you see in [box]" (the world's), or an instruction
           without a question mark (LLaVA's "Please provide a short description for this region: [..]")
qca        one turn; the answer holds box groups inside its text (reasoning with boxes) and gives a
           final answer ("... So the answer is 2.": Shikra GPT4Gen BoxCoT, the world's reasoning)
rd         several turns with a box or point anywhere; or one turn whose answer holds boxes inside
           text without a final answer (Shikra GPT4Gen RD: "Where is the cup[..]?" -> "It[..] is on
           the table[..].")
mc_vqa     one turn, no boxes; the question lists lettered options ("Options: A. x B. y ..." or at
           least "A. x B. y") and the answer picks one (a letter, "(B)", "B. y", or an option's text)
adv_vqa    one turn, no boxes; an existence probe answered yes/no: "Is there a/an X in the image?"
           (POPE), "Are there X in the picture?", "Does the image contain X?", "Can you see X in this
           picture?", "Is X present/visible in the image?"
common_vqa one turn, no boxes, none of the above (so a yes/no question that is not an existence probe
           of the whole image, e.g. GQA "Do you see a train near the person?", stays common_vqa)
md         several turns, no box or point anywhere
========== =========================================================================================

Known limits of a form: a VQAv2 question phrased as an existence probe ("Is there a dog in the
picture?" -> "yes") reads as adv_vqa, the way POPE asks it; a LLaVA-mix record that is REC data in
LLaVA's conversation format ("Please provide the bounding box coordinate of the region this sentence
describes: ..." -> ``[0.12, 0.3, 0.45, 0.67]``) reads as rec although the LLaVA reader files it under
common_vqa (it is rec by form), and a multi-turn LLaVA conversation holding boxes reads as rd.

Boxes and points are found the project's one way (:data:`genixer.boxes.BOX_GROUP_RE`,
:data:`genixer.boxes.POINT_RE`, points looked for only outside box groups). Without an image size any
bracket of that shape counts; with ``width`` and ``height`` every bracket is also read as a box or point
of that image (:func:`genixer.boxes.parse_boxes`, :func:`genixer.boxes.parse_point`), and one that is not
(a coordinate outside [0, 1], an inverted or empty box) makes the sample malformed: None.

Malformed turns (no turns, a turn that is not a mapping with a non-empty text question and answer) give
None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from genixer.boxes import (
    BOX_GROUP_RE,
    POINT_RE,
    BoxFormatError,
    find_box_groups,
    parse_boxes,
    parse_point,
)
from genixer.metrics import choice_letter, normalize_answer, parse_options
from genixer.sources.common import REG_QUESTION

_MARK = "<region>"  # what a box group or point becomes when a question's words are read

# The readers' REG question with its box slot open (the box itself is replaced by _MARK first).
_REG_QUESTION_RE = re.compile(re.escape(" ".join(REG_QUESTION.split())).replace(re.escape("{box}"), re.escape(_MARK)),
                              re.IGNORECASE)
# A request for a description of the marked region.
# (Shikra's REG templates ask for "a unique description", "what sets <region> apart", "the distinct
# features of", "how would you characterize / portray", ...; a PointQA question asks about one
# attribute instead: "What color is the shirt? <region>".)
_DESCRIBE_WORDS = re.compile(
    r"\b(?:describ\w*|descriptions?|refer|referring|distinguish\w*|caption|apart|unique?\w*|distinct\w*|differ\w*|"
    r"dissimilar|stands? out|characteri[sz]\w*|features?|attributes?|aspects?|qualities|traits|propert(?:y|ies)|"
    r"depict\w*|portray\w*|elaborat\w*|explain\w*|explanation|summar\w*|analy[sz]\w*|discuss\w*|highlight\w*|"
    r"notable|outstanding|peculiar|tell me about)\b", re.IGNORECASE)
_WHAT_IS_AT = re.compile(r"^(?:what|which)(?: (?:object|objects|thing|things|item|one))?(?: is| are|'s| do you see| can you see| is there)"
                         r"(?: shown| located| visible)? (?:in|at|inside|within|on)(?: the| this)?"
                         r"(?: (?:region|area|box|bounding box|location|position|point|place|object|spot))?(?: at| of| in)? "
                         + re.escape(_MARK) + r"\s*[?.]?$", re.IGNORECASE)

_IMAGE = r"(?:the|this) (?:image|picture|photo|photograph|scene)"
# Existence probes of the whole image (POPE's "Is there a/an X in the image?" and its rewordings).
_EXISTENCE = [re.compile(p, re.IGNORECASE) for p in (
    rf"^(?:is|are) there .+ in {_IMAGE}\s*\?$",
    rf"^(?:does|do) {_IMAGE} (?:contain|show|have|include|depict) .+\?$",
    rf"^(?:can|do) you see .+ in {_IMAGE}\s*\?$",
    rf"^(?:is|are) .+ (?:present|visible) in {_IMAGE}\s*\?$",
)]
_YES_NO = re.compile(r"(?:yes|no)\s*(?:[.,!;:]\s*.*)?", re.IGNORECASE | re.DOTALL)
# A final answer after reasoning ("... So the answer is 2.").
_FINAL_ANSWER = re.compile(r"\bthe (?:final |short )?answer is\b", re.IGNORECASE)
# Lettered options without an "Options:" label: "A. x B. y" (A first, letters in order).
_BARE_OPTION = re.compile(r"(?:^|\s)\(?([A-H])[.)]\s+(.*?)(?=\s+\(?[A-H][.)]\s|\s*$)")


def as_turns(turns) -> list[dict] | None:
    """The turns as a list of mappings (a list, tuple or array of them, e.g. a parquet column's value),
    or None when there are none or one is not a mapping."""
    if turns is None or isinstance(turns, (str, bytes, dict)):
        return None
    try:
        out = list(turns)
    except TypeError:
        return None
    return out if out and all(isinstance(t, dict) for t in out) else None


def _text(turn: dict) -> tuple[str, str] | None:
    q, a = turn.get("question"), turn.get("answer")
    if not isinstance(q, str) or not isinstance(a, str):
        return None
    q, a = " ".join(q.split()), " ".join(a.split())
    return (q, a) if q and a else None


def _regions(text: str) -> tuple[list[str], list[str]]:
    """(box groups, points) of a text; points are looked for outside the box groups."""
    groups = find_box_groups(text)
    return groups, [m.group(0) for m in POINT_RE.finditer(BOX_GROUP_RE.sub(" ", text))]


def _valid(groups: list[str], points: list[str], width: float, height: float) -> bool:
    try:
        for g in groups:
            parse_boxes(g, width, height)
        for p in points:
            parse_point(p, width, height)
    except BoxFormatError:
        return False
    return True


def _marked(text: str) -> str:
    """The text with each box group and point replaced by one mark."""
    return " ".join(POINT_RE.sub(_MARK, BOX_GROUP_RE.sub(_MARK, text)).split())


# An answer that is only a box group or a point: bare (the readers, the world), or in Shikra's wrappers
# ("Answer: [..] ." for REC, "The answer is [..] ." for Visual7W pointing); a final "." allowed.
_REGION_ANSWER = re.compile(rf"(?:(?:the (?:final )?answer is|answer\s*:)\s*)?(?:{BOX_GROUP_RE.pattern}|{POINT_RE.pattern})\s*\.?",
                            re.IGNORECASE)


def _is_region(answer: str) -> bool:
    return bool(_REGION_ANSWER.fullmatch(answer.strip()))


def _options(question: str) -> dict[str, str]:
    """The lettered options a question lists ("Options: A. x B. y ..." or a bare "A. x B. y ...")."""
    opts = parse_options(question)
    if len(opts) < 2:
        opts = {k: v.strip() for k, v in _BARE_OPTION.findall(question)}
    letters = sorted(opts)
    if len(letters) < 2 or letters != [chr(ord("A") + i) for i in range(len(letters))]:
        return {}
    return opts


def _picks_option(answer: str, options: dict[str, str]) -> bool:
    if choice_letter(answer, options):
        return True
    norm = normalize_answer(answer)
    return bool(norm) and norm in {normalize_answer(v) for v in options.values()}


def asks_description(question: str) -> bool:
    """Whether a question that holds a box or point asks for a description of it (REG) rather than a
    question about it (PointQA): the readers' REG phrasing, a description word, "what/which (object)
    is at/in <region>", "what do you see in <region>", or an instruction without a question mark."""
    q = _marked(question)
    if _REG_QUESTION_RE.fullmatch(q) or _DESCRIBE_WORDS.search(q) or _WHAT_IS_AT.match(q):
        return True
    return "?" not in q


def is_existence_probe(question: str) -> bool:
    """POPE's form: whether an object is in the whole image ("Is there a dog in the image?")."""
    q = " ".join(question.split())
    return any(p.match(q) for p in _EXISTENCE)


def _single(question: str, answer: str) -> str:
    (qg, qp), (ag, ap) = _regions(question), _regions(answer)
    q_region = bool(qg or qp)
    if _is_region(answer):
        return "pointqa" if q_region else "rec"
    if ag or ap:
        return "qca" if _FINAL_ANSWER.search(answer) else "rd"
    if q_region:
        return "reg" if asks_description(question) else "pointqa"
    options = _options(question)
    if options and _picks_option(answer, options):
        return "mc_vqa"
    if _YES_NO.fullmatch(answer.strip()) and is_existence_probe(question):
        return "adv_vqa"
    return "common_vqa"


def task_by_form(turns: Iterable[dict], width: float | None = None, height: float | None = None) -> str | None:
    """The task of a sample from the form of its turns alone (see the module docstring for the rules);
    None for malformed turns, or, given the image size, for a bracket that is not a box or point of it."""
    turns = as_turns(turns)
    if turns is None:
        return None
    pairs = [_text(t) for t in turns]
    if any(p is None for p in pairs):
        return None
    regions = [_regions(text) for q, a in pairs for text in (q, a)]
    if width is not None and height is not None and not all(_valid(g, p, float(width), float(height)) for g, p in regions):
        return None
    if len(pairs) > 1:
        return "rd" if any(g or p for g, p in regions) else "md"
    return _single(*pairs[0])
