"""Benchmark metrics on hand-worked examples."""

import pytest

from genixer.metrics import choice_accuracy, normalize_answer, pope_metrics, rec_accuracy, vqa_accuracy


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


def test_choice_accuracy():
    assert choice_accuracy(["B", "(c) star", "A.", "d"], ["B", "C", "B", "D"]) == pytest.approx(3 / 4)


def test_rec_accuracy_iou_threshold():
    truth = [(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10)]
    # IoU 1.0; IoU 50/100 = 0.5 (counts); None (unparsed)
    assert rec_accuracy([(0, 0, 10, 10), (0, 0, 5, 10), None], truth) == pytest.approx(2 / 3)
    assert rec_accuracy([(0, 0, 4, 10)], truth[:1]) == 0.0
