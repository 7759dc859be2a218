"""Benchmark metrics on hand-worked examples."""

import pytest

from genixer.metrics import (choice_accuracy, choice_letter, normalize_answer, parse_options, pope_metrics, pope_says_yes,
                             rec_accuracy, vqa_accuracy)


def test_normalize_answer():
    assert normalize_answer("The Red.") == "red"
    assert normalize_answer("Two") == "2"
    assert normalize_answer("  a  large   circle ") == "large circle"


def test_vqa_accuracy_hand_worked():
    assert vqa_accuracy("red", ["red"]) == 1.0
    assert vqa_accuracy("blue", ["red"]) == 0.0
    # 10 references, 2 say "red": each leave-one-out subset has 2 (8 subsets) or 1 (2 subsets) matches
    refs = ["red", "red"] + ["blue"] * 8
    assert vqa_accuracy("red", refs) == pytest.approx((8 * 2 / 3 + 2 * 1 / 3) / 10)
    assert vqa_accuracy("blue", refs) == pytest.approx(1.0)  # 7 or 8 matches: capped at 1
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])


def test_pope_metrics_hand_worked():
    m = pope_metrics(["yes", "yes", "no", "no", "Yes, there is."], ["yes", "no", "yes", "no", "yes"])
    # tp = 2 (items 0, 4), fp = 1 (item 1), fn = 1 (item 2), tn = 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["yes_ratio"] == pytest.approx(3 / 5)


def test_pope_reads_answers_as_pope_does():
    # POPE's eval: the first sentence; "no" or "not" among its words is no, anything else (even empty) is yes
    assert [pope_says_yes(a) for a in ["yes", "No", "No, there is not.", "There is not a star", "", "Yes. No."]] == \
        [True, False, False, False, True, True]
    # always "yes" on a balanced split: precision 1/2, recall 1 -> F1 2/3, yes-ratio 1
    m = pope_metrics(["yes"] * 4, ["yes", "yes", "no", "no"])
    assert m["f1"] == pytest.approx(2 / 3) and m["yes_ratio"] == 1.0 and m["accuracy"] == 0.5


Q = "Which shape is the yellow object? Options: A. circle B. square C. triangle D. star"


def test_choice_letter_needs_a_letter_and_agreeing_text():
    assert parse_options(Q) == {"A": "circle", "B": "square", "C": "triangle", "D": "star"}
    assert [choice_letter(p, parse_options(Q)) for p in ["B", "b", "(B)", "B.", "B. square", "B square"]] == ["B"] * 6
    # a letter with another option's text, option text alone, a word starting with an article: no choice
    assert [choice_letter(p, parse_options(Q)) for p in ["B. circle", "square", "a red", "", "E"]] == [""] * 5
    assert choice_letter("a circle", parse_options(Q)) == "A"  # letter A with A's own text


def test_choice_accuracy():
    # right; right (letter + its text); "a red" is not read as A; a bare letter, wrong
    assert choice_accuracy(["B", "(c) triangle", "a red", "d"], ["B", "C", "A", "C"], [Q] * 4) == pytest.approx(2 / 4)


def test_rec_accuracy_iou_threshold():
    truth = [(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10)]
    # IoU 1.0; IoU 50/100 = 0.5 (counts); None (unparsed)
    assert rec_accuracy([(0, 0, 10, 10), (0, 0, 5, 10), None], truth) == pytest.approx(2 / 3)
    assert rec_accuracy([(0, 0, 4, 10)], truth[:1]) == 0.0
