"""Benchmark metrics, as the public benchmarks define them (hand-checked in tests/test_metrics.py)."""

from __future__ import annotations

import re
from typing import Sequence

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


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict:
    """POPE: accuracy, precision, recall, F1 of 'yes', and the share of 'yes' answers."""
    pred = [normalize_answer(p).startswith("yes") for p in predictions]
    gold = [normalize_answer(t).startswith("yes") for t in labels]
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    n = len(gold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"accuracy": sum(p == g for p, g in zip(pred, gold)) / n if n else 0.0, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0, "yes_ratio": sum(pred) / n if n else 0.0}


def choice_accuracy(predictions: Sequence[str], letters: Sequence[str]) -> float:
    """Multiple choice (A-OKVQA MC): the first option letter of the prediction against the key."""
    def letter(p: str) -> str:
        m = re.match(r"\s*\(?([A-Za-z])\b", str(p))
        return m.group(1).upper() if m else ""

    return sum(letter(p) == k.upper() for p, k in zip(predictions, letters)) / len(letters) if letters else 0.0


def rec_accuracy(predicted: Sequence[Sequence[float] | None], truth: Sequence[Sequence[float]], threshold: float = 0.5) -> float:
    """RefCOCO Acc@0.5: share of predictions whose box has IoU >= threshold with the truth
    (a missing or unparseable prediction counts as wrong)."""
    hits = sum(p is not None and iou(p, t) >= threshold for p, t in zip(predicted, truth))
    return hits / len(truth) if truth else 0.0
