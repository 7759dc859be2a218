"""Benchmarks from published data: rows collected by `genixer.sources` (VQAv2, POPE, A-OKVQA,
RefCOCO/+/g), scored as each benchmark's own evaluation does.

- VQAv2: the official VQA accuracy over the 10 human answers (metrics.vqa_official_accuracy,
  GT-Vision-Lab/VQA vqaEval.py).
- POPE: accuracy, precision, recall, F1 and yes-ratio as RUCAIBox/POPE evaluate.py reports them,
  the answer read by metrics.pope_official_says_yes; the headline `score` is F1.
- A-OKVQA multiple choice: allenai/aokvqa eval_predictions.py's rule, the submitted text equal to the
  correct choice's text; an answer that is no choice's exact text is first mapped to one (stripped of
  surrounding whitespace, or the option its letter names: 'B', '(B)', 'B. blue'), which the official
  script does not do (SCORING_NOTES, shown beside the figure in the report).
- RefCOCO, RefCOCO+, RefCOCOg: Acc@0.5, a hit when the box read from the answer
  (boxes.answer_box) has IoU >= 0.5 with the annotated box; unreadable text is a miss.

`per_question_real` has the shape of `benchmarks.per_question` (optional recipe/seed columns,
benchmark, sample_id, value, pred_yes, gold_yes), so `benchmarks.bootstrap` reads it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from genixer.boxes import BoxFormatError, answer_box
from genixer.metrics import (
    choice_letter,
    f1_score,
    iou_hit,
    parse_options,
    pope_official_says_yes,
    vqa_official_accuracy,
)

POPE_SPLITS = ("random", "popular", "adversarial")
REFER_NAMES = {"refcoco": "RefCOCO", "refcoco+": "RefCOCO+", "refcocog": "RefCOCOg"}
REC_EVAL_SPLITS = ("val", "testA", "testB", "test")  # RefCOCOg (umd) has val and test
ORDER = ("VQAv2", "POPE", "A-OKVQA-MC", "RefCOCO-", "RefCOCO+-", "RefCOCOg-")
# Where a benchmark's figure is scored otherwise than its official script would score the raw answers.
SCORING_NOTES = {"A-OKVQA-MC": "an option letter counts as its choice's text; the official script compares text only"}


def _extra(row: Mapping) -> dict:
    e = row.get("extra")
    if isinstance(e, str) and e:
        return json.loads(e)
    return e if isinstance(e, dict) else {}


def _text(value) -> str:
    """A prediction as text: a missing one (None, or NaN from parquet) is the empty answer."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def benchmark_of(row: Mapping) -> str:
    """The benchmark a collected row belongs to, from its source, task and split: 'VQAv2' (a val
    subtype), 'POPE-random' / '-popular' / '-adversarial' (the COCO files; SEEM-built ones are
    'POPE-aokvqa-random' etc.), 'A-OKVQA-MC' (val), '<RefCOCO|RefCOCO+|RefCOCOg>-<split>' (REC rows of
    val/testA/testB/test, the data set from extra.dataset, RefCOCO when absent). '' for a row of no
    benchmark: training splits, REG rows, other formats."""
    fmt, _, file = str(row.get("source") or "").partition(":")
    task, split = row.get("task"), str(row.get("split") or "")
    if fmt == "vqav2" and task == "common_vqa" and split.startswith("val"):
        return "VQAv2"
    if fmt == "pope" and task == "adv_vqa" and split in POPE_SPLITS:
        m = re.match(r"(.+?)_pope_", file)
        return f"POPE-{split}" if not m or m.group(1) == "coco" else f"POPE-{m.group(1)}-{split}"
    if fmt == "aokvqa" and task == "mc_vqa" and split == "val":
        return "A-OKVQA-MC"
    if fmt == "refcoco" and task == "rec" and split in REC_EVAL_SPLITS:
        dataset = str(_extra(row).get("dataset") or "refcoco")
        return f"{REFER_NAMES.get(dataset.lower(), dataset)}-{split}"
    return ""


def metric_of(benchmark: str) -> str:
    if benchmark == "VQAv2":
        return "vqa_accuracy"
    if benchmark.startswith("POPE"):
        return "f1"
    return "accuracy" if benchmark == "A-OKVQA-MC" else "acc@0.5"


def aokvqa_options(question: str, extra: dict) -> dict[str, str]:
    """The options of an A-OKVQA question, letter -> choice text: extra.choices, else the question's 'Options:'."""
    choices = extra.get("choices")
    return {"ABCD"[i]: c for i, c in enumerate(choices)} if isinstance(choices, list) else parse_options(question)


def aokvqa_choice(prediction: str, options: Mapping[str, str]) -> str | None:
    """The choice text an A-OKVQA answer submits to eval_predictions.py, which scores text equal to the correct
    choice's: the answer itself when it is a choice's exact text (so every answer the script accepts is scored as it
    scores it); else the answer stripped, when that is a choice's text; else the text of the option its letter names
    (metrics.choice_letter: 'B', '(b)', 'B. blue'); None when it names no choice."""
    texts = list(options.values())
    if prediction in texts:
        return prediction
    if prediction.strip() in texts:
        return prediction.strip()
    letter = choice_letter(prediction, dict(options))
    return options[letter] if letter else None


def _predicted_box(text: str, width: float, height: float):
    try:
        return answer_box(text, width, height)
    except BoxFormatError:
        return None


def _prediction_frame(samples: pd.DataFrame, predictions) -> pd.DataFrame:
    """Predictions as rows of sample_id, prediction (and recipe, seed when given): a DataFrame with
    those columns, a mapping sample_id -> text (a dict; a pandas Series counts as a sequence), or a
    sequence aligned with `samples` row by row."""
    if isinstance(predictions, pd.DataFrame):
        missing = {"sample_id", "prediction"} - set(predictions.columns)
        if missing:
            raise ValueError(f"predictions need the columns sample_id and prediction; missing {sorted(missing)}")
        return predictions
    if isinstance(predictions, Mapping):
        return pd.DataFrame({"sample_id": list(predictions), "prediction": list(predictions.values())})
    if len(predictions) != len(samples):
        raise ValueError(f"{len(predictions)} predictions for {len(samples)} samples: a sequence must align with the samples")
    return pd.DataFrame({"sample_id": samples.sample_id.values, "prediction": list(predictions)})


def per_question_real(samples: pd.DataFrame, predictions: pd.DataFrame | Mapping[str, str] | Sequence[str]) -> pd.DataFrame:
    """A row per predicted benchmark question: its score (`value`: VQA accuracy, choice hit, IoU hit,
    POPE right/wrong) and, for POPE, the yes/no reading of the prediction and of the label (F1 is no
    mean of per-question values). Predictions of rows of no benchmark are left out; a prediction for a
    sample_id not in `samples` is an error."""
    pred = _prediction_frame(samples, predictions)
    unknown = set(pred.sample_id) - set(samples.sample_id)
    if unknown:
        raise ValueError(f"{len(unknown)} predictions name samples not given, e.g. {sorted(unknown)[:3]}")
    rows = {r["sample_id"]: (b, r) for r in samples.to_dict("records") if (b := benchmark_of(r))}
    pred = pred[pred.sample_id.isin(rows)].reset_index(drop=True)
    benchmarks, values, pred_yes, gold_yes = [], [], [], []
    for sid, p in zip(pred.sample_id, pred.prediction):
        b, r = rows[sid]
        p, turn, py, gy = _text(p), r["turns"][0], None, None
        if b.startswith("POPE"):
            py, gy = pope_official_says_yes(p), turn["answer"] != "no"  # evaluate.py: label 'no' is 0, anything else 1
            v = float(py == gy)
        elif b == "VQAv2":
            v = vqa_official_accuracy(p, _extra(r)["answers"])
        elif b == "A-OKVQA-MC":
            options = aokvqa_options(turn["question"], _extra(r))
            picked, correct = aokvqa_choice(p, options), options.get(turn["answer"].upper())
            v = float(picked is not None and picked == correct)  # texts compared, as eval_predictions.py does
        else:
            v = float(iou_hit(_predicted_box(p, r["width"], r["height"]), list(r["boxes"][0])))
        benchmarks.append(b)
        values.append(v)
        pred_yes.append(py)
        gold_yes.append(gy)
    keep = [c for c in ("recipe", "seed") if c in pred.columns]
    return pred[keep + ["sample_id"]].assign(benchmark=benchmarks, value=values, pred_yes=pred_yes, gold_yes=gold_yes)[
        keep + ["benchmark", "sample_id", "value", "pred_yes", "gold_yes"]]


def _pope(g: pd.DataFrame) -> dict:
    """POPE evaluate.py's numbers from the yes/no readings (an undefined ratio is 0, where the script would divide by 0)."""
    py, gy = g.pred_yes.astype(bool).to_numpy(), g.gold_yes.astype(bool).to_numpy()
    tp, fp, fn = int((py & gy).sum()), int((py & ~gy).sum()), int((~py & gy).sum())
    f1 = f1_score(tp, fp, fn)
    return {"score": f1, "accuracy": float((py == gy).mean()), "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0, "f1": f1, "yes_ratio": float(py.mean())}


def published_order(name: str) -> tuple:
    family = max((i for i, p in enumerate(ORDER) if name.startswith(p)), default=len(ORDER))
    part = name.rsplit("-", 1)[-1]
    rank = (*POPE_SPLITS, *REC_EVAL_SPLITS)
    return family, name.rsplit("-", 1)[0], rank.index(part) if part in rank else len(rank), name


def score_real(samples: pd.DataFrame, predictions: pd.DataFrame | Mapping[str, str] | Sequence[str]) -> pd.DataFrame:
    """A row per benchmark (and per recipe and seed, when the predictions have them): the metric, the
    number of questions scored, `score` (VQA accuracy, accuracy, Acc@0.5, or POPE's F1) and, for POPE,
    accuracy / precision / recall / f1 / yes_ratio (NaN on the other benchmarks). Scores are in [0, 1]."""
    pq = per_question_real(samples, predictions)
    keep = [c for c in ("recipe", "seed") if c in pq.columns]
    rows = []
    for key, g in pq.groupby(keep + ["benchmark"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        b = key[-1]
        stats = _pope(g) if b.startswith("POPE") else {"score": float(g.value.mean())}
        rows.append({**dict(zip(keep + ["benchmark"], key)), "metric": metric_of(b), "n": len(g), **stats})
    cols = keep + ["benchmark", "metric", "n", "score", "accuracy", "precision", "recall", "f1", "yes_ratio"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(keep + ["benchmark"], key=lambda s: s.map(published_order) if s.name == "benchmark" else s).reset_index(drop=True)
