"""The benchmarks of the paper's Tab. 5 and 6, built on the `benchmark_sets` samples: which sample
belongs to which benchmark, one model's predictions, its scores, and the recipe comparison
with seed-to-seed noise."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genixer.boxes import parse_boxes
from genixer.generation import Sampling, generate
from genixer.metrics import choice_accuracy, pope_metrics, rec_accuracy, vqa_accuracy


@dataclass(frozen=True)
class Benchmark:
    name: str
    analogue: str  # the public benchmark it stands for
    metric: str  # the headline metric
    kind: str  # "vqa" (counted in "N of M VQA-type benchmarks") | "rec" (a REC split) | "detail" (shown, not counted)


BENCHMARKS = [
    Benchmark("vqav2", "VQAv2 test-dev", "vqa_accuracy", "vqa"),
    Benchmark("gqa", "GQA (relations, counts)", "accuracy", "vqa"),
    Benchmark("pope", "POPE (mean F1 of the 3 splits)", "f1", "vqa"),
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


def predict(model, processor, samples: pd.DataFrame, batch_size: int = 64) -> pd.DataFrame:
    """Greedy answers to each sample's (single-turn) question, batched by task (similar lengths)."""
    order = samples.sort_values("task", kind="stable")
    questions = [t[0]["question"] for t in order.turns]
    outs = []
    for task in order.task.unique():
        m = (order.task == task).to_numpy()
        outs += generate(model, processor, order.image_path[m].tolist(), [q for q, k in zip(questions, m) if k],
                         Sampling(max_new_tokens=ANSWER_TOKENS.get(task, SHORT_ANSWER_TOKENS)), batch_size=batch_size)
    return pd.DataFrame({
        "sample_id": order.sample_id.values, "task": order.task.values, "benchmarks": order.benchmarks.values,
        "question": questions, "truth": [t[0]["answer"] for t in order.turns], "prediction": [o[0] for o in outs],
        "truth_box": [list(b[0]) if len(b) else None for b in order.boxes], "width": order.width.values, "height": order.height.values,
    })


def _box(text: str, w: float, h: float):
    try:
        boxes = parse_boxes(text, w, h)
    except ValueError:
        return None
    return boxes[0] if boxes else None


def score(pred: pd.DataFrame) -> pd.DataFrame:
    """One model's scores: a row per benchmark (its headline metric, `value`, and the number of samples);
    POPE's accuracy and yes-ratio ride along in `extra`."""
    rows = []
    exploded = pred.explode("benchmarks").rename(columns={"benchmarks": "benchmark"})
    for name, g in exploded.groupby("benchmark"):
        b = BY_NAME[name]
        extra = {}
        if name.startswith("pope_"):
            m = pope_metrics(g.prediction.tolist(), g.truth.tolist())
            value, extra = m["f1"], {"accuracy": m["accuracy"], "yes_ratio": m["yes_ratio"]}
        elif b.metric == "acc@0.5":
            value = rec_accuracy([_box(p, w, h) for p, w, h in zip(g.prediction, g.width, g.height)], [list(t) for t in g.truth_box])
        elif name == "aokvqa_mc":
            value = choice_accuracy(g.prediction.tolist(), g.truth.tolist())
        else:
            value = float(np.mean([vqa_accuracy(p, [t]) for p, t in zip(g.prediction, g.truth)]))
        rows.append({"benchmark": name, "metric": b.metric, "value": float(value), "n": len(g), **extra})
    out = pd.DataFrame(rows)
    pope = out[out.benchmark.str.startswith("pope_")]
    if len(pope):
        out = pd.concat([out, pd.DataFrame([{"benchmark": "pope", "metric": "f1", "value": float(pope.value.mean()),
                                             "n": int(pope.n.sum()), "accuracy": float(pope.accuracy.mean())}])], ignore_index=True)
    order = {b.name: i for i, b in enumerate(BENCHMARKS)}
    return out.sort_values("benchmark", key=lambda s: s.map(order)).reset_index(drop=True)


def compare(scores: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """Recipe x benchmark: mean and seed standard deviation of the headline metric, the delta
    against `baseline`, and a verdict. A delta counts only beyond the seed-to-seed spread: the
    larger of the two recipes' standard deviations over seeds; a one-seed recipe borrows the
    largest standard deviation any multi-seed recipe shows on that benchmark."""
    agg = scores.groupby(["recipe", "benchmark"]).value.agg(mean="mean", sd=lambda v: v.std(ddof=1), seeds="size").reset_index()
    base = agg[agg.recipe == baseline].set_index("benchmark")
    if base.empty:
        raise ValueError(f"no scores for the {baseline!r} recipe: deltas need it")
    out = agg.join(base[["mean", "sd"]].rename(columns={"mean": "baseline_mean", "sd": "baseline_sd"}), on="benchmark")
    out["delta"] = out["mean"] - out.baseline_mean
    # a one-seed recipe's own spread is unknown: take the largest spread any multi-seed recipe shows on that benchmark
    pooled = agg[agg.seeds > 1].groupby("benchmark").sd.max()
    own = out.sd.where(out.seeds > 1, out.benchmark.map(pooled))
    out["spread"] = pd.concat([own, out.baseline_sd], axis=1).max(axis=1, skipna=True)
    out["verdict"] = [
        "-" if r.recipe == baseline else "no noise estimate" if np.isnan(r.spread) else
        "better" if r.delta > r.spread else "worse" if r.delta < -r.spread else "within noise"
        for r in out.itertuples()
    ]
    out["kind"] = out.benchmark.map(lambda n: BY_NAME[n].kind)
    order = {b.name: i for i, b in enumerate(BENCHMARKS)}
    return out.sort_values(["recipe", "benchmark"], key=lambda s: s.map(order) if s.name == "benchmark" else s).reset_index(drop=True)


def headline(table: pd.DataFrame, recipe: str, kind: str) -> tuple[int, int, float]:
    """(benchmarks improved beyond noise, benchmarks of that kind, mean delta) for one recipe."""
    rows = table[(table.recipe == recipe) & (table.kind == kind)]
    return int((rows.verdict == "better").sum()), len(rows), float(rows.delta.mean()) if len(rows) else float("nan")


def mean_delta_gap(table: pd.DataFrame, better: str, worse: str, kind: str = "vqa") -> tuple[float, float]:
    """(mean delta of `better` minus that of `worse` over the benchmarks of `kind`, the mean of
    their larger spreads): is one recipe's gain above another's beyond noise?"""
    a = table[(table.recipe == better) & (table.kind == kind)].set_index("benchmark")
    b = table[(table.recipe == worse) & (table.kind == kind)].set_index("benchmark")
    common = a.index.intersection(b.index)
    if common.empty:
        return float("nan"), float("nan")
    gap = float((a.loc[common, "delta"] - b.loc[common, "delta"]).mean())
    noise = float(np.maximum(a.loc[common, "spread"].fillna(0), b.loc[common, "spread"].fillna(0)).mean())
    return gap, noise


def headline_lines(table: pd.DataFrame) -> list[str]:
    """"genixer_vqa improves N of M benchmarks; genixer_rec improves K of L REC splits", with noise."""
    lines = []
    for recipe, kind, what in (("genixer_vqa", "vqa", "VQA-type benchmarks"), ("raw_vqa", "vqa", "VQA-type benchmarks"),
                               ("genixer_rec", "rec", "REC splits")):
        if (table.recipe == recipe).any():
            n, m, d = headline(table, recipe, kind)
            worse = int(((table.recipe == recipe) & (table.kind == kind) & (table.verdict == "worse")).sum())
            lines.append(f"{recipe} improves {n} of {m} {what} beyond the seed spread ({worse} worse; mean delta {d * 100:+.1f} points)")
    return lines
