"""Benchmarks from published data, scored as the official evaluations do, on hand-worked cases."""

import json

import numpy as np
import pandas as pd
import pytest

from genixer.noise_test import bootstrap
from genixer.metrics import (
    pope_official_says_yes,
    vqa_normalize,
    vqa_official_accuracy,
    vqa_process_punctuation,
)
from genixer.published_benchmarks import SCORING_NOTES, benchmark_of, per_question_real, score_real
from genixer.report import pivot


def row(sid, source, split, task, question, answer, extra=None, boxes=(), width=640, height=480):
    return {"sample_id": sid, "image_id": sid, "task": task, "turns": [{"question": question, "answer": answer}],
            "boxes": [list(b) for b in boxes], "width": width, "height": height, "source": source, "split": split,
            "extra": None if extra is None else json.dumps(extra)}


# ---- the official VQA normalisation and accuracy (vqaEval.py) ------------------------------------

def test_vqa_normalisation_rules():
    assert vqa_normalize("yes.") == "yes" and vqa_normalize("yes!") == "yes"  # '.' stripped; '!' becomes a space
    assert vqa_normalize("1.5") == "1.5"  # a period before a digit stays
    assert vqa_normalize("A Dog") == "dog" and vqa_normalize("the Two dogs") == "2 dogs" and vqa_normalize("none") == "0"
    assert vqa_normalize("dont") == "don't" and vqa_normalize("whats") == "what's"  # the contractions map
    assert vqa_normalize("it's") == "it's" and vqa_normalize("its") == "its"  # apostrophes are kept; 'its' is no key
    assert vqa_normalize("t-shirt") == "t shirt"  # a mark with no space beside it becomes a space
    assert vqa_normalize("red, white") == "red white"  # ', ' in the text: the comma is deleted
    assert vqa_normalize("hello,world") == "hello world"
    assert vqa_normalize("1,000") == "1000"  # a digit-comma-digit: every mark is deleted
    assert vqa_process_punctuation("1,000-2") == "10002"
    # ', ' is in the text, so ',' is deleted; '-' has no space beside it, so it becomes a space; then 'a' goes
    assert vqa_normalize("a-b, c") == "b c"
    assert vqa_normalize("10:30") == "10:30"  # ':' is no mark of the script
    # Python 2's \d is [0-9]: a period before an Arabic-Indic digit goes, and such digits around a comma are no number
    assert vqa_normalize("1.\u0663") == "1\u0663" and vqa_normalize("\u0663,\u0663 a-b") == "\u0663 \u0663 b"
    assert vqa_process_punctuation("." * 40) == "." * 8  # re.UNICODE (32) lands in sub()'s count


def test_vqa_accuracy_leave_one_out_by_hand():
    # k of 10 humans say "red". Leaving out a "red" leaves k-1 matches, leaving out another answer leaves k:
    # accuracy = (k * min(1, (k-1)/3) + (10-k) * min(1, k/3)) / 10
    by_hand = {0: 0.0,
               1: (1 * 0 + 9 * (1 / 3)) / 10,        # 0.3
               2: (2 * (1 / 3) + 8 * (2 / 3)) / 10,  # 0.6
               3: (3 * (2 / 3) + 7 * 1) / 10,        # 0.9
               4: (4 * 1 + 6 * 1) / 10}              # 1.0
    assert by_hand[1] == pytest.approx(0.3) and by_hand[2] == pytest.approx(0.6) and by_hand[3] == pytest.approx(0.9)
    for k, expected in by_hand.items():
        assert vqa_official_accuracy("red", ["red"] * k + ["blue"] * (10 - k)) == pytest.approx(expected)
    with pytest.raises(ValueError):
        vqa_official_accuracy("red", [])


def test_vqa_accuracy_normalises_when_the_humans_differ():
    assert vqa_official_accuracy("Two", ["2", "2", "two"] + ["3"] * 7) == pytest.approx(0.9)  # 3 humans say 2
    assert vqa_official_accuracy("2", ["2"] * 3 + ["two"] * 2 + ["3"] * 5) == 1.0  # 5 say 2
    assert vqa_official_accuracy("a dog", ["dog", "the dog"] + ["cat"] * 8) == pytest.approx(0.6)
    assert vqa_official_accuracy("dont", ["don't"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert vqa_official_accuracy("Yes.", ["yes"] * 9 + ["yes."]) == 1.0


def test_vqa_accuracy_unanimous_humans_are_compared_verbatim():
    # vqaEval.py normalises only when the answers are not all the same string
    assert vqa_official_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_official_accuracy(" yes\n", ["yes"] * 10) == 1.0  # newlines/tabs to spaces and strip, always
    assert vqa_official_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_official_accuracy("yes.", ["yes"] * 10) == 0.0


# ---- POPE (evaluate.py) --------------------------------------------------------------------------

def test_pope_reads_answers_as_its_evaluate_py():
    answers = ["No", "no", "No, there is none", "There is not a dog.", "Yes. No.", "NO", "Not really", "nope", "", "no\n"]
    assert [pope_official_says_yes(a) for a in answers] == [False, False, False, False, True, True, True, True, True, True]


def test_pope_metrics_hand_worked():
    labels = ["yes", "yes", "yes", "no", "no", "no", "no"]
    preds = ["Yes", "No", "yes", "Yes, there is.", "no", "There is not.", "yes"]
    # read as  yes   no    yes    yes                no    no              yes
    # tp = 2 (0, 2), fn = 1 (1), fp = 2 (3, 6), tn = 2 (4, 5)
    samples = pd.DataFrame([row(f"pope:{i}", "pope:coco_pope_popular.json", "popular", "adv_vqa", "Is there a dog in the image?", a)
                            for i, a in enumerate(labels)] +
                           [row("pope:r0", "pope:coco_pope_random.json", "random", "adv_vqa", "Is there a cat?", "no")])
    out = score_real(samples, {**{f"pope:{i}": p for i, p in enumerate(preds)}, "pope:r0": "No"})
    assert out.benchmark.tolist() == ["POPE-random", "POPE-popular"]
    pop = out.iloc[1]
    assert pop.n == 7 and pop.metric == "f1"
    assert pop.accuracy == pytest.approx(4 / 7) and pop.precision == pytest.approx(2 / 4) and pop.recall == pytest.approx(2 / 3)
    assert pop.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1)) == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert pop.score == pop.f1 and pop.yes_ratio == pytest.approx(4 / 7)
    rnd = out.iloc[0]  # one true negative: no positive, so precision, recall and F1 are 0 (the script would divide by 0)
    assert (rnd.n, rnd.accuracy, rnd.precision, rnd.recall, rnd.f1, rnd.yes_ratio) == (1, 1.0, 0.0, 0.0, 0.0, 0.0)


# ---- A-OKVQA multiple choice, RefCOCO Acc@0.5, VQAv2 --------------------------------------------

def test_aokvqa_multiple_choice():
    choices = ["red", "blue", "green", "light blue"]
    q = "What colour is the bus? Options: A. red B. blue C. green D. light blue"
    preds = ["B", "(b)", "B. blue", "blue", "B. green", "light blue", ""]
    hits = [1, 1, 1, 1, 0, 0, 0]  # the letter, or the choice's own text (A-OKVQA's eval compares choice texts)
    samples = pd.DataFrame([row(f"aokvqa:{i}:mc_vqa", "aokvqa:aokvqa_v1p0_val.json", "val", "mc_vqa", q, "B",
                                extra={"choices": choices, "direct_answers": ["blue"] * 10}) for i in range(len(preds))])
    pq = per_question_real(samples, preds)
    assert pq.value.tolist() == hits
    out = score_real(samples, preds)
    assert out.benchmark.tolist() == ["A-OKVQA-MC"] and out.score[0] == pytest.approx(4 / 7) and np.isnan(out.f1[0])


def test_aokvqa_scores_the_choice_text_as_eval_predictions_does():
    """eval_predictions.py compares the submitted text with the correct choice's: an answer that is a choice's exact
    text is that choice even when it also looks like a letter, and a repeated choice text is right wherever it sits."""
    cases = [(["c", "e", "2", "two"], "C", "c", 0),     # 'c' is choice A's text, not letter C (was a hit)
             (["c", "e", "2", "two"], "A", "c", 1),     # (was a miss)
             (["c", "no", "dog", "no"], "B", "D:", 1),  # D's text is 'no', the correct text (was a miss)
             (["red", "red", "blue", "green"], "B", "red", 1),  # (was a miss: the first 'red' is A)
             (["red", "blue", "green", "pink"], "B", "  blue ", 1), (["red", "blue", "green", "pink"], "B", "(b)", 1)]
    samples = pd.DataFrame([row(f"aokvqa:{i}:mc_vqa", "aokvqa:aokvqa_v1p0_val.json", "val", "mc_vqa",
                                "Q? Options: " + " ".join(f"{'ABCD'[k]}. {c}" for k, c in enumerate(ch)), key,
                                extra={"choices": ch}) for i, (ch, key, _, _) in enumerate(cases)])
    assert per_question_real(samples, [p for _, _, p, _ in cases]).value.tolist() == [v for *_, v in cases]


def test_report_says_beside_the_aokvqa_figure_that_letters_are_read():
    table = pd.DataFrame([{"recipe": "baseline", "benchmark": b, "mean": 0.5, "sd": 0.01, "delta": 0.0, "verdict": "-"}
                          for b in ("VQAv2", "A-OKVQA-MC")])
    shown = pivot(table)
    assert shown.benchmark.tolist() == ["VQAv2", f"A-OKVQA-MC ({SCORING_NOTES['A-OKVQA-MC']})"]
    assert "letter" in SCORING_NOTES["A-OKVQA-MC"] and "50.0" in shown.loc[1, "baseline"]


def test_refcoco_acc_at_half():
    truth = (20, 10, 120, 60)  # on a 200 x 100 image: [0.100,0.100,0.600,0.600]
    preds = ["[0.100,0.100,0.600,0.600]",   # IoU 1
             "[0.100,0.100,0.600,0.600].",  # a final period is allowed
             "[0.350,0.100,0.850,0.600]",   # (70,10,170,60): 50*50 / (5000 + 5000 - 2500) = 1/3
             "[0.100,0.100,0.600,0.400]",   # (20,10,120,40) inside the truth: 3000 / 5000 = 0.6
             "the dog on the left",         # no box
             "[0.100,0.100]",               # a point
             "[0.1,0.1,0.6,0.6;0.2,0.2,0.3,0.3]"]  # two boxes
    samples = pd.DataFrame([row(f"refcoco:{i}:rec", "refcoco:refs(unc).p", "testA", "rec", "Where is the dog?", "[0.100,0.100,0.600,0.600]",
                                extra={"dataset": "refcoco+"}, boxes=[truth], width=200, height=100) for i in range(len(preds))])
    assert per_question_real(samples, preds).value.tolist() == [1, 1, 0, 1, 0, 0, 0]
    out = score_real(samples, preds)
    assert out.benchmark.tolist() == ["RefCOCO+-testA"] and out.metric[0] == "acc@0.5" and out.score[0] == pytest.approx(3 / 7)
    # IoU exactly 1/2 (half the truth's height), which floats make 0.4999999999999997: a hit
    tie = pd.DataFrame([row("refcoco:t:rec", "refcoco:refs(unc).p", "testA", "rec", "Where?", "", boxes=[(23, 26, 29, 94)],
                            width=100, height=100)])
    assert per_question_real(tie, ["[0.230,0.260,0.290,0.600]"]).value.tolist() == [1.0]


def vqa_samples():
    return pd.DataFrame([
        row("vqav2:1:common_vqa", "vqav2:v2_mscoco_val2014_annotations.json", "val2014", "common_vqa", "What colour?", "red",
            extra={"answers": ["red"] + ["blue"] * 9}),
        row("vqav2:2:common_vqa", "vqav2:v2_mscoco_val2014_annotations.json", "val2014", "common_vqa", "How many?", "2",
            extra={"answers": ["2", "2", "two"] + ["3"] * 7}),
        row("vqav2:3:common_vqa", "vqav2:v2_mscoco_val2014_annotations.json", "val2014", "common_vqa", "Is it?", "yes",
            extra={"answers": ["yes"] * 10}),
        row("vqav2:4:common_vqa", "vqav2:v2_mscoco_train2014_annotations.json", "train2014", "common_vqa", "Train?", "no",
            extra={"answers": ["no"] * 10}),
    ])


def test_vqav2_official_accuracy_per_benchmark():
    samples = vqa_samples()
    preds = ["red", "two", "yes", "no"]  # 0.3, 0.9, 1.0; the train row is on no benchmark
    pq = per_question_real(samples, preds)
    assert pq.sample_id.tolist() == ["vqav2:1:common_vqa", "vqav2:2:common_vqa", "vqav2:3:common_vqa"]
    assert pq.value.tolist() == pytest.approx([0.3, 0.9, 1.0])
    out = score_real(samples, preds)
    assert out.benchmark.tolist() == ["VQAv2"] and out.n[0] == 3 and out.score[0] == pytest.approx(2.2 / 3)
    # a missing prediction (None, or NaN read back from parquet) is the empty answer
    assert per_question_real(samples, [None, np.nan, "yes", "no"]).value.tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="not given"):
        per_question_real(samples, {"vqav2:9:common_vqa": "red"})


def test_per_question_real_feeds_the_paired_bootstrap():
    samples = vqa_samples()
    ids = samples.sample_id[:3].tolist()
    preds = pd.DataFrame([{"recipe": r, "seed": s, "sample_id": i, "prediction": p}
                          for r, answers in (("baseline", ["blue", "3", "no"]), ("better", ["red", "2", "yes"]))
                          for s in (0, 1) for i, p in zip(ids, answers)])
    pq = per_question_real(samples, preds)
    assert pq.columns.tolist() == ["recipe", "seed", "benchmark", "sample_id", "value", "pred_yes", "gold_yes"]
    boot = bootstrap(pq, n_boot=50)
    # baseline: "blue" (9 humans) 1.0, "3" (7 humans) 1.0, "no" against ten "yes" 0.0
    assert boot.point("baseline", "VQAv2") == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    # better: "red" (1 human) 0.3, "2" (2 x "2" + "two") 0.9, "yes" 1.0
    assert boot.point("better", "VQAv2") == pytest.approx((0.3 + 0.9 + 1.0) / 3)
    assert boot.reps[("better", "VQAv2")].shape == (50,)
    scores = score_real(samples, preds)
    assert scores[["recipe", "seed"]].values.tolist() == [["baseline", 0], ["baseline", 1], ["better", 0], ["better", 1]]


# ---- naming --------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, split, task, extra, name", [
    ("vqav2:v2_mscoco_val2014_annotations.json", "val2014", "common_vqa", None, "VQAv2"),
    ("vqav2:v2_mscoco_train2014_annotations.json", "train2014", "common_vqa", None, ""),
    ("pope:coco_pope_random.json", "random", "adv_vqa", None, "POPE-random"),
    ("pope:coco_pope_adversarial.json", "adversarial", "adv_vqa", None, "POPE-adversarial"),
    ("pope:aokvqa_pope_seem_popular.json", "popular", "adv_vqa", None, "POPE-aokvqa-popular"),
    ("aokvqa:aokvqa_v1p0_val.json", "val", "mc_vqa", None, "A-OKVQA-MC"),
    ("aokvqa:aokvqa_v1p0_train.json", "train", "mc_vqa", None, ""),
    ("refcoco:refs(unc).p", "val", "rec", {"dataset": "refcoco"}, "RefCOCO-val"),
    ("refcoco:refs(unc).p", "testA", "rec", None, "RefCOCO-testA"),
    ("refcoco:refs(unc).p", "testB", "rec", {"dataset": "refcoco+"}, "RefCOCO+-testB"),
    ("refcoco:refs(umd).p", "test", "rec", {"dataset": "refcocog"}, "RefCOCOg-test"),
    ("refcoco:refs(unc).p", "train", "rec", {"dataset": "refcoco"}, ""),
    ("refcoco:refs(unc).p", "val", "reg", {"dataset": "refcoco"}, ""),
    ("gqa:testdev_balanced_questions.json", "testdev", "common_vqa", None, ""),
])
def test_benchmark_of(source, split, task, extra, name):
    assert benchmark_of(row("x", source, split, task, "q", "a", extra=extra)) == name
