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


def iou_hit(predicted: Sequence[float] | None, truth: Sequence[float], threshold: float = 0.5) -> bool:
    """A REC hit: a predicted box with IoU >= threshold against the truth (no box is a miss)."""
    return predicted is not None and iou(predicted, truth) >= threshold


def rec_accuracy(predicted: Sequence[Sequence[float] | None], truth: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """RefCOCO Acc@0.5: share of predictions whose box has IoU >= threshold with the truth
    (a missing or unparseable prediction counts as wrong)."""
    hits = sum(iou_hit(p, t, threshold) for p, t in zip(predicted, truth))
    return hits / len(truth) if truth else 0.0
