"""Benchmark metrics, as the public benchmarks define them (hand-checked in tests/test_metrics.py)."""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from genixer.boxes import iou

_ARTICLES = {"a", "an", "the"}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}


def normalize_answer(text: str) -> str:
    """VQAv2's answer normalisation, abridged: lower case, punctuation out, number words to
    digits, articles dropped, whitespace collapsed."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    return " ".join(_NUMBERS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQAv2 accuracy: min(#references equal to the prediction / 3, 1), averaged over the 10
    leave-one-out subsets of the references (equal to the plain formula when all agree)."""
    pred = normalize_answer(prediction)
    refs = [normalize_answer(r) for r in references]
    if not refs:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    if len(refs) == 1:
        return float(pred == refs[0])
    scores = []
    for i in range(len(refs)):
        others = refs[:i] + refs[i + 1 :]
        scores.append(min(sum(r == pred for r in others) / 3, 1.0))
    return sum(scores) / len(scores)


def pope_says_yes(answer: str) -> bool:
    """POPE's own reading of an answer: the first sentence, and 'no' or 'not' among its words means
    no; anything else means yes (so an empty or off-topic answer counts as yes, as in POPE)."""
    first = str(answer).split(".")[0].replace(",", "")
    return not ({"no", "not"} & set(first.lower().split()))


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict:
    """POPE: accuracy, precision, recall, F1 of 'yes', and the share of 'yes' answers."""
    pred = [pope_says_yes(p) for p in predictions]
    gold = [normalize_answer(t) == "yes" for t in labels]
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    n = len(gold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": sum(p == g for p, g in zip(pred, gold)) / n if n else 0.0, "precision": precision, "recall": recall,
            "f1": f1_score(tp, fp, fn), "yes_ratio": sum(pred) / n if n else 0.0}


def f1_score(tp, fp, fn):
    """F1 of the positive class from counts (numbers or numpy arrays); 0 where nothing is positive."""
    denom = np.asarray(2 * tp + fp + fn, dtype=float)
    out = np.divide(2 * np.asarray(tp, dtype=float), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(out) if out.ndim == 0 else out


_OPTION_RE = re.compile(r"\b([A-Z])\.\s+(.*?)(?=\s+[A-Z]\.\s|\s*$)")


def parse_options(question: str) -> dict[str, str]:
    """The lettered options of a multiple-choice question ('... Options: A. red B. blue ...')."""
    tail = question.split("Options:", 1)[1] if "Options:" in question else ""
    return {k: v.strip() for k, v in _OPTION_RE.findall(tail)}


def choice_letter(prediction: str, options: dict[str, str]) -> str:
    """The option a prediction picks: a bare letter ('B', 'b', '(B)', 'B.'), or a letter followed by
    its own option text ('B. blue'); '' otherwise, so 'a red' is not read as A unless A is red."""
    m = re.fullmatch(r"\s*\(?([A-Za-z])\)?[.:)]?\s*(.*?)\s*", str(prediction), flags=re.DOTALL)
    if not m or m.group(1).upper() not in options:
        return ""
    letter, rest = m.group(1).upper(), normalize_answer(m.group(2))
    return letter if rest in ("", normalize_answer(options[letter])) else ""


def choice_accuracy(predictions: Sequence[str], letters: Sequence[str], questions: Sequence[str]) -> float:
    """Multiple choice (A-OKVQA MC): the option each prediction picks (choice_letter) against the key."""
    hits = [choice_letter(p, parse_options(q)) == k.upper() for p, k, q in zip(predictions, letters, questions)]
    return sum(hits) / len(hits) if hits else 0.0


# Floating point puts an IoU that is exactly the threshold a hair either side of it: a box of three decimals
# on an image of 100 pixels, [0.230,0.260,0.290,0.600] against (23, 26, 29, 94), is IoU 1/2 exactly but
# 0.4999999999999997 in floats. Within this of the threshold counts as reaching it.
IOU_TIE = 1e-9


def iou_hit(predicted: Sequence[float] | None, truth: Sequence[float], threshold: float = 0.5) -> bool:
    """A REC hit: a predicted box with IoU >= threshold against the truth, an IoU within IOU_TIE below the
    threshold (a tie lost to rounding) included; no box is a miss."""
    return predicted is not None and iou(predicted, truth) >= threshold - IOU_TIE


def rec_accuracy(predicted: Sequence[Sequence[float] | None], truth: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """RefCOCO Acc@0.5: share of predictions whose box has IoU >= threshold with the truth
    (a missing or unparseable prediction counts as wrong)."""
    hits = sum(iou_hit(p, t, threshold) for p, t in zip(predicted, truth))
    return hits / len(truth) if truth else 0.0


# ---- the official VQA evaluation ----------------------------------------------------------------
# Transcribed from GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (commit
# a013f0043c1e2cdc995922dfe257f7149aa9af06), class VQAEval: the tables of __init__, and the rules of
# processPunctuation, processDigitArticle and evaluate. Entries the script can never reach (keys with
# capitals, looked up after lower()) are kept as they are, so the table can be diffed against it.

VQA_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
    "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
    "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
VQA_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
VQA_ARTICLES = ("a", "an", "the")
VQA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
# The script's periodStrip as written: "(?!<=\d)" is a lookahead (a typo for the lookbehind "(?<!\d)")
# that never fires before a ".", so in effect a period is dropped unless a digit follows ("1.5" stays).
# The script is Python 2 and compiles both without re.UNICODE, so its \d is [0-9] only: re.ASCII here (a period
# before an Arabic-Indic digit goes, and such digits around a comma are no digit-comma-digit).
VQA_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
VQA_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)", re.ASCII)


def vqa_process_punctuation(text: str) -> str:
    """vqaEval.processPunctuation: each mark of VQA_PUNCT is deleted when the *original* text has it
    next to a space, or has a digit-comma-digit anywhere ("1,000"), and becomes a space otherwise
    ("t-shirt" -> "t shirt"); then periods not followed by a digit go. Apostrophes, colons, '#', '%',
    '&', '*', '$' and the like are kept. The script passes re.UNICODE (32) positionally to sub(),
    i.e. as its count: at most 32 periods are removed, reproduced here."""
    out = text
    for p in VQA_PUNCT:
        if (p + " " in text or " " + p in text) or VQA_COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return VQA_PERIOD_STRIP.sub("", out, count=re.UNICODE)


def vqa_process_digit_article(text: str) -> str:
    """vqaEval.processDigitArticle: lower case, split on whitespace, number words 'none'..'ten' to
    digits (VQA_MANUAL_MAP), articles dropped, then VQA_CONTRACTIONS ('dont' -> "don't"), joined by
    single spaces."""
    words = [VQA_MANUAL_MAP.get(w, w) for w in text.lower().split()]
    return " ".join(VQA_CONTRACTIONS.get(w, w) for w in words if w not in VQA_ARTICLES)


def vqa_normalize(text: str) -> str:
    """The official answer processing: processPunctuation, then processDigitArticle."""
    return vqa_process_digit_article(vqa_process_punctuation(text))


def _vqa_clean(text: str) -> str:
    return str(text).replace("\n", " ").replace("\t", " ").strip()


def vqa_official_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy exactly as vqaEval.evaluate computes it for one question: newlines and tabs to
    spaces and strip, on the prediction and the human answers; *only when the human answers are not
    all the same string* are both normalised (vqa_normalize) -- when they agree, the prediction must
    equal them verbatim ("Yes" or "yes." scores 0 against ten "yes"); then the mean over the
    leave-one-out subsets (each human answer left out in turn) of min(1, matches among the others / 3).
    With ten answers and k equal to the prediction that is 0, .3, .6, .9, 1 for k = 0..4+.
    (A prediction normalised beforehand, as LLaVA-style pipelines do before submitting, avoids the
    verbatim case; vqa_normalize is the processing to use.)"""
    gts = [_vqa_clean(a) for a in answers]
    if not gts:
        raise ValueError("vqa_official_accuracy needs the human answers (VQAv2 has 10 per question)")
    pred = _vqa_clean(prediction)
    if len(set(gts)) > 1:
        gts = [vqa_normalize(a) for a in gts]
        pred = vqa_normalize(pred)
    return sum(min(1.0, sum(g == pred for j, g in enumerate(gts) if j != i) / 3) for i in range(len(gts))) / len(gts)


def pope_official_says_yes(answer: str) -> bool:
    """RUCAIBox/POPE evaluate.py (commit 3df3ba1b110ecce25696989577fad583b67d4239), word for word: keep
    the text before the first '.', delete commas, split on single spaces, and the answer is 'no' when
    'No', 'no' or 'not' is among the words, 'yes' otherwise. Unlike pope_says_yes it is case-sensitive
    ('NO' and 'Not' read as yes) and does not split on newlines or tabs."""
    text = str(answer)
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return not ("No" in words or "not" in words or "no" in words)
