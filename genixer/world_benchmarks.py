"""The benchmarks of the paper's Tab. 5 and 6, built on the `benchmark_sets` samples: which sample
belongs to which benchmark, one model's predictions, its scores, the scores of trivial reference
predictors on the same questions (the recipe comparison's noise test is genixer.noise_test)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genixer.boxes import box_to_text, parse_boxes
from genixer.decoding import Sampling, generate
from genixer.metrics import choice_letter, f1_score, iou_hit, normalize_answer, parse_options, pope_says_yes, vqa_accuracy


@dataclass(frozen=True)
class Benchmark:
    name: str
    analogue: str  # the public benchmark it stands for
    metric: str  # the headline metric
    kind: str  # "vqa" (counted in "N of M VQA-type benchmarks") | "rec" (a REC split) | "detail" (shown, not counted)


BENCHMARKS = [
    Benchmark("vqav2", "VQAv2 test-dev", "vqa_accuracy", "vqa"),
    Benchmark("gqa", "GQA (relations, counts)", "accuracy", "vqa"),
    # POPE's counted score is its accuracy (always 'yes' scores 50.0); its F1 of 'yes' (the LLaVA papers' POPE figure,
    # always 'yes' 66.7) is shown beside the yes-ratio: a model that turns to 'no' drops F1 to ~0 and accuracy to ~50,
    # and that flip, not the data, carried the VQA-type mean (docs/2026-12-07-scarce-regime-probe.md)
    Benchmark("pope_accuracy", "POPE (mean accuracy of the 3 splits)", "accuracy", "vqa"),
    Benchmark("pope", "POPE (mean F1 of the 3 splits)", "f1", "detail"),
    Benchmark("pope_random", "POPE random", "f1", "detail"),
    Benchmark("pope_popular", "POPE popular", "f1", "detail"),
    Benchmark("pope_adversarial", "POPE adversarial", "f1", "detail"),
    Benchmark("aokvqa_mc", "A-OKVQA multiple choice", "accuracy", "vqa"),
    Benchmark("pointqa", "PointQA (LookTwice)", "accuracy", "vqa"),
    Benchmark("vqav2_heldout", "VQA on the held-out style (Flickr30K's role)", "vqa_accuracy", "vqa"),
    Benchmark("refcoco_val", "RefCOCO val", "acc@0.5", "rec"),
    Benchmark("refcoco_testA", "RefCOCO testA (scenes of <= 3 objects)", "acc@0.5", "rec"),
    Benchmark("refcoco_testB", "RefCOCO testB (scenes of >= 4 objects)", "acc@0.5", "rec"),
    Benchmark("refcoco_heldout", "REC on the held-out style", "acc@0.5", "rec"),
]
BY_NAME = {b.name: b for b in BENCHMARKS}
POPE_SPLITS = ("random", "popular", "adversarial")
FEW_OBJECTS = 3  # testA: scenes with at most this many objects; testB: more



def kind_of(benchmark: str) -> str:
    """A benchmark's kind: the world's from BENCHMARKS; a published one (genixer.published_benchmarks names)
    'rec' for RefCOCO/+/g splits, 'detail' for a POPE split and POPE's F1 (its accuracy over the three splits,
    'POPE_accuracy', counts), 'vqa' otherwise (VQAv2, A-OKVQA-MC)."""
    if benchmark in BY_NAME:
        return BY_NAME[benchmark].kind
    if benchmark.startswith("RefCOCO"):
        return "rec"
    return "detail" if benchmark.startswith("POPE-") or benchmark == "POPE" else "vqa"


def is_pope(benchmark: str) -> bool:
    """A POPE split or its F1 mean (the world's `pope_*` or a published `POPE-*`): scored by F1 over yes/no."""
    return benchmark.lower().startswith("pope") and not benchmark.lower().endswith("accuracy")

def memberships(sample: dict, n_objects: int) -> list[str]:
    """The benchmarks a `benchmark_sets` sample belongs to (POPE positives are in all three splits)."""
    task, split, source = sample["task"], sample["split"], sample.get("source") or ""
    if split == "heldout":
        return {"common_vqa": ["vqav2_heldout"], "rec": ["refcoco_heldout"]}.get(task, [])
    if split != "bench":
        return []
    if task == "common_vqa":
        return ["gqa"] if source.endswith(":gqa") else ["vqav2"]
    if task == "adv_vqa":
        sub = source.rsplit("pope_", 1)[-1]
        return [f"pope_{s}" for s in POPE_SPLITS] if sub == "positive" else [f"pope_{sub}"] if sub in POPE_SPLITS else []
    if task == "mc_vqa":
        return ["aokvqa_mc"]
    if task == "pointqa":
        return ["pointqa"]
    if task == "rec":  # a third of the images make val; the rest split by how crowded the scene is
        if zlib.crc32(sample["image_id"].encode()) % 3 == 0:
            return ["refcoco_val"]
        return ["refcoco_testA"] if n_objects <= FEW_OBJECTS else ["refcoco_testB"]
    return []


def benchmark_samples(samples: pd.DataFrame, n_objects: dict[str, int]) -> pd.DataFrame:
    """The samples that belong to at least one benchmark, with a `benchmarks` list column."""
    member = [memberships(s, n_objects[s["image_id"]]) for s in samples.to_dict("records")]
    out = samples.assign(benchmarks=member)
    return out[out.benchmarks.str.len() > 0].reset_index(drop=True)


ANSWER_TOKENS = {"rec": 32}  # a box is ~25 tokens (digits are single tokens); every other answer is a word or two
SHORT_ANSWER_TOKENS = 8


def predict(model, processor, samples: pd.DataFrame, batch_size: int = 128) -> pd.DataFrame:
    """Greedy answers to each sample's (single-turn) question, batched by task (similar lengths)."""
    order = samples.sort_values("task", kind="stable")
    questions = [t[0]["question"] for t in order.turns]
    outs = []
    for task in order.task.unique():
        m = (order.task == task).to_numpy()
        outs += generate(model, processor, order.image_path[m].tolist(), [q for q, k in zip(questions, m) if k],
                         Sampling(max_new_tokens=ANSWER_TOKENS.get(task, SHORT_ANSWER_TOKENS)), batch_size=batch_size,
                         desc=f"predict {task}")
    return prediction_frame(order, [o[0] for o in outs])


def prediction_frame(samples: pd.DataFrame, predictions: list[str]) -> pd.DataFrame:
    """One row per benchmark sample with its prediction: what `score` and the bootstrap read."""
    return pd.DataFrame({
        "sample_id": samples.sample_id.values, "task": samples.task.values, "benchmarks": samples.benchmarks.values,
        "question": [t[0]["question"] for t in samples.turns], "truth": [t[0]["answer"] for t in samples.turns],
        "prediction": predictions, "truth_box": [list(b[0]) if len(b) else None for b in samples.boxes],
        "width": samples.width.values, "height": samples.height.values,
    })


def _box(text: str, w: float, h: float):
    try:
        boxes = parse_boxes(text, w, h)
    except ValueError:
        return None
    return boxes[0] if boxes else None


def per_question(pred: pd.DataFrame) -> pd.DataFrame:
    """A row per (benchmark, sample): the sample's score under the benchmark's metric (`value`: VQA
    accuracy, choice hit, IoU hit, or POPE right/wrong) and, for POPE, the yes/no reading of the
    prediction and the truth (F1 is not a mean of per-question values, so the bootstrap needs them)."""
    ex = pred.explode("benchmarks").rename(columns={"benchmarks": "benchmark"})
    values, pred_yes, gold_yes = [], [], []
    for r in ex.itertuples():
        py = gy = None
        if is_pope(r.benchmark):
            py, gy = pope_says_yes(r.prediction), normalize_answer(r.truth) == "yes"
            v = float(py == gy)
        elif BY_NAME[r.benchmark].metric == "acc@0.5":
            v = float(iou_hit(_box(r.prediction, r.width, r.height), r.truth_box))
        elif r.benchmark == "aokvqa_mc":
            v = float(choice_letter(r.prediction, parse_options(r.question)) == r.truth.upper())
        else:
            v = vqa_accuracy(r.prediction, [r.truth])
        values.append(v)
        pred_yes.append(py)
        gold_yes.append(gy)
    keep = [c for c in ("recipe", "seed") if c in ex.columns]
    return ex[keep + ["benchmark", "sample_id"]].assign(value=values, pred_yes=pred_yes, gold_yes=gold_yes).reset_index(drop=True)


def _metric(g: pd.DataFrame) -> dict:
    """A benchmark's headline metric from its per-question rows (POPE: F1 of yes, with accuracy and yes-ratio)."""
    if is_pope(g.benchmark.iloc[0]):
        py, gy = g.pred_yes.astype(bool).to_numpy(), g.gold_yes.astype(bool).to_numpy()
        f1 = f1_score((py & gy).sum(), (py & ~gy).sum(), (~py & gy).sum())
        return {"value": f1, "accuracy": float(g.value.mean()), "yes_ratio": float(py.mean())}
    return {"value": float(g.value.mean())}


def score(pred: pd.DataFrame) -> pd.DataFrame:
    """One model's scores: a row per benchmark (its headline metric, `value`, and the number of samples);
    POPE's accuracy and yes-ratio ride along; `pope` (F1) and `pope_accuracy` are the means of the three splits."""
    pq_ = per_question(pred)
    rows = [{"benchmark": b, "metric": BY_NAME[b].metric, "n": len(g), **_metric(g)} for b, g in pq_.groupby("benchmark")]
    out = pd.DataFrame(rows)
    pope = out[out.benchmark.map(is_pope)]
    if len(pope) == len(POPE_SPLITS):
        out = pd.concat([out, pd.DataFrame([{"benchmark": "pope", "metric": "f1", "value": float(pope.value.mean()), "n": int(pope.n.sum()),
                                             "accuracy": float(pope.accuracy.mean()), "yes_ratio": float(pope.yes_ratio.mean())},
                                            {"benchmark": "pope_accuracy", "metric": "accuracy", "value": float(pope.accuracy.mean()),
                                             "n": int(pope.n.sum()), "yes_ratio": float(pope.yes_ratio.mean())}])],
                        ignore_index=True)
    return ordered(out, ["benchmark"])


def benchmark_order(names) -> dict[str, int]:
    """Rank of each benchmark name: the world's in BENCHMARKS order, then published ones in
    genixer.published_benchmarks' order (VQAv2, POPE, A-OKVQA, RefCOCO/+/g by split)."""
    from genixer.published_benchmarks import published_order

    order = {b.name: i for i, b in enumerate(BENCHMARKS)}
    others = sorted({n for n in names if n not in order}, key=published_order)
    return {**order, **{n: len(order) + i for i, n in enumerate(others)}}


def ordered(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    order = benchmark_order(df["benchmark"]) if "benchmark" in df.columns else {}
    return df.sort_values(by, key=lambda s: s.map(order) if s.name == "benchmark" else s).reset_index(drop=True)


# ---- trivial reference predictors --------------------------------------------------------------

REFERENCES = {
    "ref:always_yes": "answers 'yes' to every question (REC and multiple choice excluded)",
    "ref:blind_prior": "the most common training answer for the question's kind (task + first two words; REC: the mean training box)",
    "ref:random_letter": "a random option letter (multiple choice only)",
    "ref:centre_box": "the box covering the middle half of the image (REC only)",
}
CENTRE_BOX = (0.25, 0.25, 0.75, 0.75)


def question_kind(task: str, question: str) -> str:
    """A question kind any data set has: the task and the question's first two words ('what colour')."""
    return f"{task}:{' '.join(normalize_answer(question.split('Options:')[0]).split()[:2])}"


def reference_predictions(bench: pd.DataFrame, train: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The reference predictors' answers to the benchmark samples (one 'seed' each, deterministic):
    a recipe's score means something only against these."""
    prior: dict[str, str] = {}
    firsts = pd.DataFrame({"kind": [question_kind(t, turns[0]["question"]) for t, turns in zip(train.task, train.turns)],
                           "answer": [turns[0]["answer"] for turns in train.turns]})
    for kind, g in firsts.groupby("kind"):
        prior[kind] = g.answer.value_counts().index[0]
    rec = train[(train.task == "rec") & (train.boxes.str.len() > 0)]
    mean_box = np.mean([[b[0][0] / w, b[0][1] / h, b[0][2] / w, b[0][3] / h] for b, w, h in zip(rec.boxes, rec.width, rec.height)],
                       axis=0) if len(rec) else np.array(CENTRE_BOX)
    rng = np.random.default_rng(seed)
    q = [t[0]["question"] for t in bench.turns]
    is_rec, is_mc = (bench.task == "rec").to_numpy(), np.array(["Options:" in x for x in q])

    def scaled(box, w, h):
        return box_to_text((box[0] * w, box[1] * h, box[2] * w, box[3] * h), w, h)

    answers = {
        "ref:always_yes": ["yes" if not (r or m) else None for r, m in zip(is_rec, is_mc)],
        "ref:blind_prior": [scaled(mean_box, w, h) if r else prior.get(question_kind(t, x), "") for r, t, x, w, h
                            in zip(is_rec, bench.task, q, bench.width, bench.height)],
        "ref:random_letter": [str(rng.choice(sorted(parse_options(x)))) if m and parse_options(x) else None for m, x in zip(is_mc, q)],
        "ref:centre_box": [scaled(CENTRE_BOX, w, h) if r else None for r, w, h in zip(is_rec, bench.width, bench.height)],
    }
    frames = []
    for name, preds in answers.items():
        keep = np.array([p is not None for p in preds])
        if keep.any():
            frames.append(prediction_frame(bench[keep], [p for p in preds if p is not None]).assign(recipe=name, seed=0))
    return pd.concat(frames, ignore_index=True)


def is_reference(recipe: str) -> bool:
    return recipe.startswith("ref:")
