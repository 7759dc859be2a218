"""The project's scorers of published benchmarks (genixer.published_benchmarks, genixer.metrics) against a second
implementation of each official script, written here from the scripts themselves and sharing no code with
genixer, on thousands of seeded random answers (every contraction, number word, article and punctuation mark of
the VQA tables among them).

The second implementations, and the versions they were written from:
- VQA accuracy: GT-Vision-Lab/VQA PythonEvaluationTools/vqaEvaluation/vqaEval.py at a013f0043c1e2cdc995922dfe257f7149aa9af06
  (the head of master). A Python 2 script (`print "..."`): its regexes are compiled without re.UNICODE, so `\\d` is
  [0-9] there; re.ASCII gives the same here.
- POPE: RUCAIBox/POPE evaluate.py at 3df3ba1b110ecce25696989577fad583b67d4239 (LLaVA's llava/eval/eval_pope.py reads
  the answers the same way).
- A-OKVQA MC: allenai/aokvqa evaluation/eval_predictions.py at 42e8c44ff40d13cf272776a3197365f582137772, as its
  command line runs it (multiple_choice=True, strict=False): a prediction scores 1 when it equals the correct
  choice's text, 0 otherwise. The project maps an answer that is no choice's exact text to a choice first (an option
  letter; surrounding whitespace); that mapping is the project's, written again here from its documentation
  (real_benchmarks module docstring, metrics.choice_letter), and the report says so beside the figure.
- RefCOCO Acc@0.5: a hit when IoU >= 0.5 between the predicted and the annotated box, computed here exactly
  (fractions) in pixels; the answer read as the project's convention (boxes.answer_box): the whole answer one
  `[x0,y0,x1,y1]` normalised by the image's width and height, final periods allowed."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from genixer.metrics import pope_official_says_yes, vqa_normalize, vqa_official_accuracy
from genixer.published_benchmarks import per_question_real, score_real

# ---- VQA: the tables of vqaEval.py's VQAEval.__init__, verbatim (a013f00) -------------------------------------

CONTRACTIONS = {"aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
"couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
"hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've",
"he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've",
"Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
"maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
"mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
"ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
"she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
"somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
"somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
"someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
"something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
"there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
"they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
"wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
"whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
"whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
"whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
"wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
"y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
"youll": "you'll", "youre": "you're", "youve": "you've"}
MANUAL_MAP = {'none': '0',
              'zero': '0',
              'one': '1',
              'two': '2',
              'three': '3',
              'four': '4',
              'five': '5',
              'six': '6',
              'seven': '7',
              'eight': '8',
              'nine': '9',
              'ten': '10'
              }
ARTICLES = ['a',
            'an',
            'the'
            ]
PERIOD_STRIP = re.compile("(?!<=\\d)(\\.)(?!\\d)", re.ASCII)  # re.ASCII: Python 2's `\d` without re.UNICODE
COMMA_STRIP = re.compile("(\\d)(\\,)(\\d)", re.ASCII)
PUNCT = [';', r"/", '[', ']', '"', '{', '}',
         '(', ')', '=', '+', '\\', '_', '-',
         '>', '<', '@', '`', ',', '?', '!']
ASCII_DIGITS = "0123456789"


# ---- VQA: the rules of processPunctuation, processDigitArticle and evaluate, in other words -------------------

def ref_punctuation(answer: str) -> str:
    """Each listed mark goes: deleted outright if the answer *as received* has it with a space on either side or
    has a digit-comma-digit anywhere, turned into a space otherwise. Then the periods (ref_strip_periods)."""
    delete_all = COMMA_STRIP.search(answer) is not None
    text = answer
    for mark in PUNCT:
        spaced = f"{mark} " in answer or f" {mark}" in answer
        text = text.replace(mark, "" if (delete_all or spaced) else " ")
    return ref_strip_periods(text)


def ref_strip_periods(text: str) -> str:
    """periodStrip deletes a '.' that the text does not follow with a digit; the script hands re.UNICODE (32) to
    sub() where the count goes, so only the first 32 such periods go. Written as a scan, not with the regex."""
    out, removed = [], 0
    for i, ch in enumerate(text):
        digit_follows = i + 1 < len(text) and text[i + 1] in ASCII_DIGITS
        if ch == "." and not digit_follows and removed < 32:
            removed += 1
        else:
            out.append(ch)
    return "".join(out)


def ref_digit_article(text: str) -> str:
    """Lower case, split on whitespace, number words to digits, articles out (after the number map), then each
    word that is a contraction key replaced by its value; words joined by one space."""
    kept = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            kept.append(word)
    return " ".join(CONTRACTIONS[w] if w in CONTRACTIONS else w for w in kept)


def ref_clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def ref_vqa_accuracy(prediction: str, human_answers: list[str]) -> Fraction:
    """evaluate() for one question, exactly (fractions). The humans' answers are dicts with distinct answer_ids, so
    the script's `item != gtAnsDatum` leaves out exactly one; both sides are processed only when the cleaned
    human answers are not all one string."""
    gts = [{"answer": ref_clean(a), "answer_id": i + 1} for i, a in enumerate(human_answers)]
    res = ref_clean(prediction)
    if len({g["answer"] for g in gts}) > 1:
        for g in gts:
            g["answer"] = ref_digit_article(ref_punctuation(g["answer"]))
        res = ref_digit_article(ref_punctuation(res))
    per_subset = []
    for left_out in gts:
        matches = sum(1 for g in gts if g != left_out and g["answer"] == res)
        per_subset.append(min(Fraction(1), Fraction(matches, 3)))
    return sum(per_subset, Fraction(0)) / len(per_subset)


# ---- POPE evaluate.py, A-OKVQA eval_predictions.py, Acc@0.5, in other words ---------------------------------

def ref_pope_answer(text: str) -> str:
    """'no' when the text before the first '.' (all of it when there is none), commas deleted and split on single
    spaces, has the word 'No', 'no' or 'not'; 'yes' otherwise."""
    first = text.partition(".")[0]
    return "no" if {"No", "no", "not"} & set(first.replace(",", "").split(" ")) else "yes"


def ref_pope_metrics(answers: list[str], labels: list[str]) -> dict:
    """evaluate.py's numbers; a label 'no' is the negative class, any other the positive."""
    pred = [0 if ref_pope_answer(a) == "no" else 1 for a in answers]
    gold = [0 if lab == "no" else 1 for lab in labels]
    tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold))
    tn = sum(p == 0 and g == 0 for p, g in zip(pred, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": (tp + tn) / len(pred), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "yes_ratio": pred.count(1) / len(pred)}


def ref_aokvqa_mc(submitted: str | None, choices: list[str], correct_choice_idx: int) -> float:
    """eval_aokvqa(multiple_choice=True, strict=False) for one question: the submitted text against the correct choice's."""
    return float(submitted == choices[correct_choice_idx])


def _words(text: str) -> str:
    """The project's comparison of option text after a letter (metrics.normalize_answer, from its docstring): lower
    case, each character neither a word character nor whitespace made a space, number words zero..ten and none to
    digits, articles dropped, single spaces."""
    numbers = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
               "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
    spaced = "".join(c if (c.isalnum() or c == "_" or c.isspace()) else " " for c in text.lower())
    return " ".join(numbers.get(w, w) for w in spaced.split() if w not in ("a", "an", "the"))


def ref_submission(prediction: str, choices: list[str]) -> str | None:
    """What an answer submits to eval_predictions.py under the project's reading: itself when it is a choice's exact
    text (what the script compares); else, stripped of surrounding whitespace, a choice's exact text; else the text
    of the option an ASCII letter names (any case; '(' before and ')' after it optional, then at most one of
    '.', ':', ')'), when nothing or that option's own text follows; else nothing."""
    if prediction in choices:
        return prediction
    s = prediction.strip()
    if s in choices:
        return s
    i = 1 if s.startswith("(") else 0
    if i >= len(s) or not ("A" <= s[i].upper() <= "Z" and s[i].isascii()):
        return None
    index = "ABCD".find(s[i].upper())
    rest = s[i + 1:]
    rest = rest[1:] if rest.startswith(")") else rest
    rest = rest[1:] if rest[:1] in (".", ":", ")") else rest
    if index < 0 or index >= len(choices) or _words(rest) not in ("", _words(choices[index])):
        return None
    return choices[index]


NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")


def ref_rec_iou(answer: str, truth_xyxy: tuple[float, float, float, float], width: float, height: float) -> Fraction | None:
    """The exact IoU of the answer's box with the annotated pixel box, None for an answer that is no box. The answer,
    whitespace and final periods dropped, must be '[' four comma-separated decimals (spaces around them allowed) ']',
    each in [0, 1], x1 > x0 and y1 > y0; those times the width / height give the pixel box."""
    s = answer.strip().rstrip(".").strip()
    if not (s.startswith("[") and s.endswith("]")):
        return None
    parts = [p.strip() for p in s[1:-1].split(",")]
    if len(parts) != 4 or not all(NUMBER.fullmatch(p) for p in parts):
        return None
    x0, y0, x1, y1 = (Fraction(p) for p in parts)
    if not all(0 <= v <= 1 for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        return None
    w, h = Fraction(width), Fraction(height)
    a = (x0 * w, y0 * h, x1 * w, y1 * h)
    b = tuple(Fraction(v) for v in truth_xyxy)
    inter = max(Fraction(0), min(a[2], b[2]) - max(a[0], b[0])) * max(Fraction(0), min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else Fraction(0)


def ref_rec_hit(iou: Fraction | None) -> bool:
    """Acc@0.5 for one referring expression: a box whose IoU with the annotated one is >= 1/2."""
    return iou is not None and iou >= Fraction(1, 2)


# ---- the seeded generators ---------------------------------------------------------------------------------

SPACES = [" ", " ", " ", " ", "  ", "\t", "\n", "\r\n", "\xa0", "\u3000", ""]
OTHER_MARKS = [".", ":", "'", "\u2019", "#", "%", "&", "*", "$", "~", "^", "|", "\u00bf"]
MARKS = PUNCT + OTHER_MARKS
NON_ASCII_DIGITS = ["\u0663", "\uff11", "\u0967"]  # ARABIC-INDIC THREE, FULLWIDTH ONE, DEVANAGARI ONE: \d in Python 3 only
BASE_WORDS = ["yes", "no", "red", "blue", "dog", "dogs", "man", "tennis", "t-shirt", "left", "2", "10", "1.5", "1,000",
              "3,5", "10:30", "5.", "caf\u00e9", "ni\u00f1o", "o'clock", "it's", "its", "don't", "don\u2019t", "snow board",
              "the man", "an apple", "a lot", "0.5", ".5", "1.", "..", "..."]
VOCAB = BASE_WORDS + list(CONTRACTIONS) + list(CONTRACTIONS.values()) + list(MANUAL_MAP) + ARTICLES + NON_ASCII_DIGITS


def pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _case(rng, word: str) -> str:
    k = rng.integers(5)
    if k == 0:
        return word.upper()
    if k == 1:
        return word.title()
    if k == 2:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in word)
    return word


def random_answer(rng) -> str:
    """One to five pieces (a word in some case, a mark, a mark glued to a word, digits around a mark), joined by
    random whitespace (or none), sometimes padded."""
    pieces = []
    for _ in range(rng.integers(1, 6)):
        k = rng.integers(10)
        word = _case(rng, pick(rng, VOCAB))
        mark = pick(rng, MARKS)
        if k == 0:
            pieces.append(mark)
        elif k == 1:
            pieces.append(word + mark if rng.random() < 0.5 else mark + word)
        elif k == 2:
            pieces.append(f"{rng.integers(10)}{mark}{rng.integers(10)}")
        elif k == 3:
            pieces.append(f"{pick(rng, NON_ASCII_DIGITS)}{pick(rng, [',', '.'])}{pick(rng, NON_ASCII_DIGITS + list('07'))}")
        else:
            pieces.append(word)
    text = "".join(p + pick(rng, SPACES) for p in pieces[:-1]) + pieces[-1]
    if rng.random() < 0.2:
        text = pick(rng, SPACES) + text + pick(rng, SPACES)
    return text


def covering_answers() -> list[str]:
    """Every contraction key and value, number word and article, in several cases and surroundings; every mark
    glued, spaced, alone, beside digits and beside a digit-comma-digit; a long run of periods (the count of 32)."""
    out = []
    for w in list(CONTRACTIONS) + list(CONTRACTIONS.values()) + list(MANUAL_MAP) + ARTICLES:
        out += [w, w.upper(), w.title(), f"the {w}", f"{w}.", f"{w}?", f" {w} ", f"{w}, {w}", f"a {w}!", f"{w}\t{w}"]
    for m in MARKS:
        out += [m, f"a{m}b", f"a {m} b", f"a{m} b", f"a {m}b", f"{m}yes", f"yes{m}", f"1{m}2", f"1,000 a{m}b",
                f"two{m}dogs", f"t-shirt{m}", f"{m}{m}", f"none{m}one", f"dont{m}"]
    out += ["." * 40, "a." * 40, ". " * 40, "1." * 40, "." * 40 + "1", "\u0663,\u0663", "1.\u0663", "\u0663.5"]
    return out


# ---- VQA --------------------------------------------------------------------------------------------------

def test_vqa_normalisation_matches_vqaeval_on_every_table_entry_and_random_text():
    rng = np.random.default_rng(29_6)
    texts = covering_answers() + [random_answer(rng) for _ in range(20_000)]
    got = [vqa_normalize(ref_clean(t)) for t in texts]
    want = [ref_digit_article(ref_punctuation(ref_clean(t))) for t in texts]
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(texts)} answers normalised unlike vqaEval.py, e.g. {bad[:5]}"
    # the second implementation itself, by hand: a mark glued is a space, spaced is deleted; a period before a digit
    # stays; 32 periods at most go; a contraction key is rewritten after lower case, number words before articles
    assert all(ref_punctuation(f"a{m}b") == "a b" and ref_punctuation(f"a {m} b") == "a  b" for m in PUNCT)
    assert ref_punctuation("1.5.") == "1.5" and ref_punctuation("." * 33) == "." and ref_punctuation("1,000-2") == "10002"
    assert ref_digit_article("The DONT none A") == "don't 0" and ref_digit_article("Im") == "im"
    assert all(ref_strip_periods(t) == PERIOD_STRIP.sub("", t, 32) for t in texts)  # the scan is the script's regex


UNCONTRACTED = {v: k for k, v in CONTRACTIONS.items()}
NUMBER_WORDS = {v: k for k, v in MANUAL_MAP.items() if k != "none"}
VQA_BASES = list(CONTRACTIONS) + list(CONTRACTIONS.values()) + list(MANUAL_MAP) + list(MANUAL_MAP.values()) + BASE_WORDS


def _variant(rng, base: str) -> str:
    """A human's or a model's way of writing `base`: case, an article, a number word for a digit and back, a
    contraction's other form, a trailing mark, padding."""
    word = base
    k = rng.integers(8)
    if k == 0 and word in CONTRACTIONS:
        word = CONTRACTIONS[word]
    elif k == 0 and word in UNCONTRACTED:
        word = UNCONTRACTED[word]
    elif k == 1:
        word = NUMBER_WORDS.get(word, MANUAL_MAP.get(word, word))
    elif k == 2:
        word = f"{pick(rng, ARTICLES)} {word}"
    elif k == 3:
        word = word + pick(rng, MARKS)
    elif k == 4:
        word = pick(rng, SPACES) + word + pick(rng, SPACES)
    return _case(rng, word) if rng.random() < 0.4 else word


def vqa_question(rng) -> tuple[str, list[str]]:
    base = pick(rng, VQA_BASES)
    if rng.random() < 0.15:  # unanimous humans: vqaEval compares verbatim
        humans = [_variant(rng, base)] * 10
    else:
        share = rng.random()
        humans = [_variant(rng, base) if rng.random() < share else random_answer(rng) for _ in range(10)]
    k = rng.random()
    pred = _variant(rng, base) if k < 0.6 else pick(rng, humans) if k < 0.8 else random_answer(rng)
    return pred, humans


def _row(sid, source, split, task, question, answer, extra=None, boxes=(), width=640, height=480):
    return {"sample_id": sid, "image_id": sid, "task": task, "turns": [{"question": question, "answer": answer}],
            "boxes": [list(b) for b in boxes], "width": width, "height": height, "source": source, "split": split,
            "extra": None if extra is None else json.dumps(extra)}


def test_vqa_accuracy_matches_vqaeval_on_random_questions():
    rng = np.random.default_rng(29_61)
    questions = [vqa_question(rng) for _ in range(3_000)]
    want = [ref_vqa_accuracy(p, h) for p, h in questions]
    got = [vqa_official_accuracy(p, h) for p, h in questions]
    bad = [(q, float(w), g) for q, w, g in zip(questions, want, got) if abs(float(w) - g) > 1e-12]
    assert not bad, f"{len(bad)} of {len(questions)} questions scored unlike vqaEval.py, e.g. {bad[:3]}"
    # every step of the 10-choose-9 average is reached, not just 0 and 1
    assert {Fraction(k, 10) for k in (0, 3, 6, 9, 10)} <= set(want)
    # and through the benchmark scorer, a question per row
    samples = pd.DataFrame([_row(f"vqav2:{i}:common_vqa", "vqav2:v2_mscoco_val2014_annotations.json", "val2014", "common_vqa",
                                 "What?", h[0], extra={"answers": h}) for i, (_, h) in enumerate(questions)])
    pq = per_question_real(samples, [p for p, _ in questions])
    assert np.allclose(pq.value.to_numpy(), [float(w) for w in want], rtol=0, atol=1e-12)
    out = score_real(samples, [p for p, _ in questions])
    assert out.score[0] == pytest.approx(float(sum(want) / len(want)), abs=1e-12)


# ---- POPE -------------------------------------------------------------------------------------------------

POPE_WORDS = ["No", "no", "not", "NO", "Not", "nO", "yes", "Yes", "YES", "there", "is", "a", "dog", "none", "nothing", "nope",
              "cannot", "isn't", "no-one", "(no)", "no!", "no?", "'no'", "not.", "Nope"]
POPE_SEPARATORS = [" ", " ", " ", "  ", ",", ", ", ".", ". ", "\n", "\t", "!", "?", ";", "", ",,", " ,", "\xa0"]


def pope_answer(rng) -> str:
    words = [pick(rng, POPE_WORDS) for _ in range(rng.integers(0, 6))]
    text = "".join(w + pick(rng, POPE_SEPARATORS) for w in words[:-1]) + (words[-1] if words else "")
    return text + (pick(rng, POPE_SEPARATORS) if rng.random() < 0.3 else "")


def test_pope_reading_and_metrics_match_evaluate_py():
    rng = np.random.default_rng(29_62)
    answers = [pope_answer(rng) for _ in range(6_000)]
    got = ["yes" if pope_official_says_yes(a) else "no" for a in answers]
    want = [ref_pope_answer(a) for a in answers]
    bad = [(a, g, w) for a, g, w in zip(answers, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(answers)} answers read unlike POPE's evaluate.py, e.g. {bad[:5]}"
    assert 0.1 < want.count("no") / len(want) < 0.9  # both readings are exercised
    labels = [pick(rng, ["yes", "no"]) for _ in answers]
    splits = [pick(rng, ["random", "popular", "adversarial"]) for _ in answers]
    samples = pd.DataFrame([_row(f"pope:{i}", f"pope:coco_pope_{s}.json", s, "adv_vqa", "Is there a dog?", lab)
                            for i, (lab, s) in enumerate(zip(labels, splits))])
    out = score_real(samples, answers).set_index("benchmark")
    for split in ("random", "popular", "adversarial"):
        idx = [i for i, s in enumerate(splits) if s == split]
        ref = ref_pope_metrics([answers[i] for i in idx], [labels[i] for i in idx])
        row = out.loc[f"POPE-{split}"]
        assert row.n == len(idx) and row.score == pytest.approx(ref["f1"], abs=1e-12)
        for k, v in ref.items():
            assert row[k] == pytest.approx(v, abs=1e-12), (split, k)


# ---- A-OKVQA multiple choice ------------------------------------------------------------------------------

CHOICE_POOL = ["red", "blue", "light blue", "Blue", "dog", "two", "2", "the man", "a", "b", "c", "d", "B", "A.", "(c)",
               "e", "yes", "no", "B. blue", "1,000", " blue", "caf\u00e9"]


def aokvqa_question(rng) -> tuple[list[str], int, str]:
    if rng.random() < 0.1:  # a repeated choice
        c = [str(x) for x in rng.choice(CHOICE_POOL, 3, replace=False)]
        choices = c + [c[rng.integers(3)]]
        rng.shuffle(choices)
    else:
        choices = [str(x) for x in rng.choice(CHOICE_POOL, 4, replace=False)]
    idx = int(rng.integers(4))
    j, letter = int(rng.integers(5)), "ABCDE"[int(rng.integers(5))]
    other = choices[j] if j < 4 else pick(rng, CHOICE_POOL)
    forms = [other, f" {other} ", other.upper(), letter, letter.lower(), f"({letter})", f"{letter}.", f"{letter})", f"{letter}:",
             f"({letter.lower()}) {other}", f"{letter}. {other}", f"{letter} {other}", f"{letter}.{other}", f"{letter}{other}",
             f"{letter}. {other.upper()}!", f"The answer is {letter}", "", "  ", random_answer(rng)]
    return choices, idx, forms[rng.integers(len(forms))]


def test_aokvqa_mc_matches_eval_predictions_on_the_submitted_choice():
    rng = np.random.default_rng(29_63)
    questions = [aokvqa_question(rng) for _ in range(5_000)]
    want = [ref_aokvqa_mc(ref_submission(p, c), c, i) for c, i, p in questions]
    samples = pd.DataFrame([_row(f"aokvqa:{n}:mc_vqa", "aokvqa:aokvqa_v1p0_val.json", "val", "mc_vqa",
                                 "What? Options: " + " ".join(f"{'ABCD'[k]}. {x}" for k, x in enumerate(c)), "ABCD"[i],
                                 extra={"choices": c, "direct_answers": [c[i]] * 10}) for n, (c, i, _) in enumerate(questions)])
    got = per_question_real(samples, [p for _, _, p in questions]).value.tolist()
    bad = [(q, g, w) for q, g, w in zip(questions, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(questions)} A-OKVQA answers scored unlike eval_predictions.py, e.g. {bad[:5]}"
    # the official comparison alone: wherever the answer is a choice's exact text, the project scores it as the script does
    verbatim = [(g, ref_aokvqa_mc(p, c, i)) for (c, i, p), g in zip(questions, got) if p in c]
    assert len(verbatim) > 200 and all(g == w for g, w in verbatim)
    assert 0.05 < np.mean(want) < 0.95  # hits and misses


# ---- RefCOCO Acc@0.5 --------------------------------------------------------------------------------------

def rec_case(rng) -> tuple[str, tuple, float, float]:
    """An image size (integers, as COCO's), an annotated box (COCO's two-decimal xywh made xyxy) and an answer: the
    truth perturbed or cut to an IoU near 1/2, written in three decimals, or a malformed answer."""
    if rng.random() < 0.25:
        return rec_tie(rng)
    w, h = int(rng.integers(50, 800)), int(rng.integers(50, 800))
    x, y = round(float(rng.uniform(0, w * 0.6)), 2), round(float(rng.uniform(0, h * 0.6)), 2)
    bw, bh = round(float(rng.uniform(2, w - x)), 2), round(float(rng.uniform(2, h - y)), 2)
    truth = (x, y, x + bw, y + bh)
    n = [truth[0] / w, truth[1] / h, truth[2] / w, truth[3] / h]
    k = rng.integers(6)
    if k == 0:  # half the height: IoU 1/2 exactly when the three decimals allow it
        n[3] = n[1] + (n[3] - n[1]) / 2
    elif k == 1:
        n = [v + float(rng.normal(0, 0.08)) for v in n]
    elif k == 2:  # shifted right by a third of the width: IoU 1/2
        dx = (n[2] - n[0]) / 3
        n = [n[0] + dx, n[1], n[2] + dx, n[3]]
    text = "[" + ",".join(f"{v:.3f}" for v in n) + "]"
    if k == 3:
        bad = [text.replace(",", ", "), text + ".", text + "..", f" {text}\n", text[1:], text.replace("[", "[["),
               text[:-1] + ";0.1,0.1,0.2,0.2]", "[0.1,0.1]", "the dog", "", "[1.2,0.1,0.5,0.5]", "[0.5,0.5,0.1,0.9]",
               "[.5,0.1,0.9,0.9]", f"Answer: {text}", text.replace(".", ",", 1), "[0,0,1,1]", "[1,1,1,1]"]
        text = bad[rng.integers(len(bad))]
    return text, truth, w, h


def rec_tie(rng) -> tuple[str, tuple, float, float]:
    """An answer of IoU exactly 1/2: a size dividing 1000 and integer corners make three decimals exact; the truth
    halved in height or width, or shifted by a third of its width."""
    w, h = pick(rng, [100, 200, 250, 500, 1000]), pick(rng, [100, 200, 250, 500, 1000])
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    bw, bh = 6 * int(rng.integers(1, (w - x0) // 6 + 1)), 2 * int(rng.integers(1, (h - y0) // 2 + 1))
    truth = (float(x0), float(y0), float(x0 + bw), float(y0 + bh))
    k = rng.integers(3)
    if k == 0:
        box = (x0, y0, x0 + bw, y0 + bh // 2)
    elif k == 1 or x0 + bw + bw // 3 > w:
        box = (x0, y0, x0 + bw // 2, y0 + bh)
    else:
        box = (x0 + bw // 3, y0, x0 + bw + bw // 3, y0 + bh)
    return "[" + ",".join(f"{v / s:.3f}" for v, s in zip(box, (w, h, w, h))) + "]", truth, w, h


def test_refcoco_acc_at_half_matches_an_exact_iou():
    rng = np.random.default_rng(29_64)
    cases = [rec_case(rng) for _ in range(4_000)]
    ious = [ref_rec_iou(t, b, w, h) for t, b, w, h in cases]
    want = [ref_rec_hit(iou) for iou in ious]
    samples = pd.DataFrame([_row(f"refcoco:{i}:rec", "refcoco:refs(unc).p", "testA", "rec", "Where is it?", "[0,0,1,1]",
                                 extra={"dataset": "refcoco"}, boxes=[b], width=w, height=h) for i, (_, b, w, h) in enumerate(cases)])
    got = per_question_real(samples, [t for t, _, _, _ in cases]).value.tolist()
    bad = [(c, g, w) for c, g, w in zip(cases, got, want) if g != w]
    assert not bad, f"{len(bad)} of {len(cases)} REC answers scored unlike IoU >= 0.5, e.g. {bad[:5]}"
    assert 0.2 < np.mean(want) < 0.8 and sum(iou == Fraction(1, 2) for iou in ious) > 500  # exact ties among them
