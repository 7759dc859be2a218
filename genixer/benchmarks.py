"""The benchmarks of the paper's Tab. 5 and 6, built on the `benchmark_sets` samples: which sample
belongs to which benchmark, one model's predictions, its scores, the scores of trivial reference
predictors on the same questions, and the recipe comparison with a measured noise test (a paired
bootstrap over the benchmark questions and the training seeds)."""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from genixer.boxes import box_to_text, parse_boxes
from genixer.generation import Sampling, generate
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



def kind_of(benchmark: str) -> str:
    """A benchmark's kind: the world's from BENCHMARKS; a published one (genixer.real_benchmarks names)
    'rec' for RefCOCO/+/g splits, 'detail' for a POPE split (its mean over the three, 'POPE', counts),
    'vqa' otherwise (VQAv2, A-OKVQA-MC, POPE)."""
    if benchmark in BY_NAME:
        return BY_NAME[benchmark].kind
    if benchmark.startswith("RefCOCO"):
        return "rec"
    return "detail" if benchmark.startswith("POPE-") else "vqa"


def is_pope(benchmark: str) -> bool:
    """A POPE split (the world's `pope_*` or a published `POPE-*`): scored by F1 over yes/no."""
    return benchmark.lower().startswith("pope")

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
    POPE's accuracy and yes-ratio ride along; `pope` is the mean of the three splits."""
    pq_ = per_question(pred)
    rows = [{"benchmark": b, "metric": BY_NAME[b].metric, "n": len(g), **_metric(g)} for b, g in pq_.groupby("benchmark")]
    out = pd.DataFrame(rows)
    pope = out[out.benchmark.map(is_pope)]
    if len(pope) == len(POPE_SPLITS):
        out = pd.concat([out, pd.DataFrame([{"benchmark": "pope", "metric": "f1", "value": float(pope.value.mean()), "n": int(pope.n.sum()),
                                             "accuracy": float(pope.accuracy.mean()), "yes_ratio": float(pope.yes_ratio.mean())}])],
                        ignore_index=True)
    return _ordered(out, ["benchmark"])


def benchmark_order(names) -> dict[str, int]:
    """Rank of each benchmark name: the world's in BENCHMARKS order, then published ones in
    genixer.real_benchmarks' order (VQAv2, POPE, A-OKVQA, RefCOCO/+/g by split)."""
    from genixer.real_benchmarks import _order

    order = {b.name: i for i, b in enumerate(BENCHMARKS)}
    others = sorted({n for n in names if n not in order}, key=_order)
    return {**order, **{n: len(order) + i for i, n in enumerate(others)}}


def _ordered(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
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


# ---- the noise test: a paired bootstrap over questions and seeds -------------------------------

N_BOOT = 2000
ALPHA = 0.05  # two-sided: a delta is called better / worse when its 95% interval excludes 0


def _seed_replicates(m: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """(seeds, B) per-seed replicate scores -> (B,) replicates of the seed mean, seeds drawn with
    replacement (`sel`, (B, seeds)); deviations from the mean are inflated by sqrt(k / (k - 1)) so
    that a few seeds do not understate the seed-to-seed variance (the usual small-sample correction)."""
    k, n_boot = m.shape
    if k == 1:
        return m[0]
    centre = m.mean(0)
    m = centre + (m - centre) * np.sqrt(k / (k - 1))
    return m[sel, np.arange(n_boot)[:, None]].mean(1)


@dataclass
class Bootstrap:
    """Per (recipe, benchmark): the per-seed scores and B bootstrap replicates of the seed mean.
    Replicates of different recipes share their question draws (paired), so any contrast between
    recipes (a delta, a mean over benchmarks, a trend) is read off the same replicates."""
    seed_scores: dict[tuple[str, str], np.ndarray]
    reps: dict[tuple[str, str], np.ndarray]
    noise: dict[str, float]  # per benchmark: the pooled seed sd borrowed by one-seed recipes (nan: none)
    noise_df: dict[str, int]  # its degrees of freedom

    def point(self, recipe: str, benchmark: str) -> float:
        return float(self.seed_scores[(recipe, benchmark)].mean())

    def seed_part(self, recipe: str, benchmarks: list[str]) -> tuple[float, float]:
        """(variance of the recipe's seed mean, its degrees of freedom), for the mean over `benchmarks`."""
        per_seed = np.mean([self.seed_scores[(recipe, b)] for b in benchmarks], axis=0)
        if is_reference(recipe):
            return 0.0, np.inf
        if len(per_seed) == 1:
            return float(np.mean([self.noise[b] for b in benchmarks]) ** 2), float(min(self.noise_df[b] for b in benchmarks))
        return float(per_seed.var(ddof=1) / len(per_seed)), float(len(per_seed) - 1)


def bootstrap(perq: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> Bootstrap:
    """Resample each benchmark's questions (the same draws for every recipe) and each recipe's
    seeds. A one-seed recipe (not a reference predictor, which has no seed noise) borrows the
    seed-to-seed sd pooled over the multi-seed recipes on that benchmark, as a normal draw."""
    seed_scores, reps, noise, noise_df = {}, {}, {}, {}
    for b, g in perq.groupby("benchmark"):
        ids = np.array(sorted(g.sample_id.unique()))
        pos = {s: i for i, s in enumerate(ids)}
        rng = np.random.default_rng([seed, zlib.crc32(b.encode())])
        idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        cells = {}
        for (r, sd), gs in g.groupby(["recipe", "seed"]):
            if len(gs) != len(ids) or set(gs.sample_id) != set(ids):
                raise ValueError(f"{r} seed {sd} answered {len(gs)} of the {len(ids)} questions of {b}: recipes must share questions")
            gs = gs.iloc[np.argsort([pos[s] for s in gs.sample_id])]
            if is_pope(b):
                py, gy = gs.pred_yes.astype(bool).to_numpy(), gs.gold_yes.astype(bool).to_numpy()
                tp, fp, fn = (py & gy)[idx].sum(1), (py & ~gy)[idx].sum(1), (~py & gy)[idx].sum(1)
                full, rep = f1_score((py & gy).sum(), (py & ~gy).sum(), (~py & gy).sum()), f1_score(tp, fp, fn)
            else:
                v = gs.value.to_numpy(float)
                full, rep = v.mean(), v[idx].mean(1)
            cells.setdefault(r, []).append((full, rep))
        multi = [(np.var([c[0] for c in cs], ddof=1), len(cs) - 1) for r, cs in cells.items() if len(cs) > 1 and not is_reference(r)]
        noise[b] = float(np.sqrt(np.mean([v for v, _ in multi]))) if multi else float("nan")
        noise_df[b] = sum(d for _, d in multi)
        for r, cs in cells.items():
            # a recipe's seed draws (and a one-seed recipe's borrowed noise) are the same on every benchmark:
            # a seed's model is good or bad everywhere at once, and means over benchmarks must keep that
            rr = np.random.default_rng([seed, zlib.crc32(r.encode())])
            sel, z = rr.integers(0, len(cs), size=(n_boot, len(cs))), rr.standard_normal(n_boot)
            seed_scores[(r, b)] = np.array([c[0] for c in cs])
            rep = _seed_replicates(np.stack([c[1] for c in cs]), sel)
            if len(cs) == 1 and not is_reference(r):
                rep = rep + noise[b] * z if np.isfinite(noise[b]) else np.full(n_boot, np.nan)
            reps[(r, b)] = rep
    # POPE's headline: the mean of its three splits (the world's pope_<split>; published POPE-<split> as "POPE")
    for head, split_name in (("pope", "pope_{}"), ("POPE", "POPE-{}")):
        done = False
        for r in {r for r, _ in seed_scores}:
            keys = [(r, split_name.format(s)) for s in POPE_SPLITS]
            if all(k in reps for k in keys):
                seed_scores[(r, head)] = np.mean([seed_scores[k] for k in keys], axis=0)  # every split has the recipe's seeds
                reps[(r, head)] = np.mean([reps[k] for k in keys], axis=0)
                done = True
        if head == "pope" or done:
            multi = [(np.var(v, ddof=1), len(v) - 1) for (r, b), v in seed_scores.items() if b == head and len(v) > 1 and not is_reference(r)]
            noise[head] = float(np.sqrt(np.mean([v for v, _ in multi]))) if multi else float("nan")
            noise_df[head] = sum(d for _, d in multi)
    return Bootstrap(seed_scores, reps, noise, noise_df)


def verdict(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no noise estimate"
    return "better" if lo > 0 else "worse" if hi < 0 else "within noise"


def contrast(boot: Bootstrap, a: str, b: str, benchmarks: list[str]) -> dict:
    """Recipe `a` minus recipe `b`, averaged over `benchmarks` (those both were scored on): the
    point difference, its (1 - ALPHA) interval and the verdict. Used for deltas, gaps and trends.

    The interval is the point ± t x the bootstrap standard error, with the t quantile at the
    Welch-Satterthwaite degrees of freedom of the seed part: with three seeds a recipe's seed mean
    is known to 2 degrees of freedom, and a normal interval would call noise a difference too often
    (the A/A control measures it); when the questions dominate, the t quantile tends to 1.96."""
    common = [x for x in benchmarks if (a, x) in boot.reps and (b, x) in boot.reps]
    if not common:
        return {"point": float("nan"), "lo": float("nan"), "hi": float("nan"), "verdict": "not run", "benchmarks": 0}
    point = float(np.mean([boot.point(a, x) - boot.point(b, x) for x in common]))
    diff = np.mean([boot.reps[(a, x)] - boot.reps[(b, x)] for x in common], axis=0)
    if np.isnan(diff).any():
        return {"point": point, "lo": float("nan"), "hi": float("nan"), "verdict": "no noise estimate", "benchmarks": len(common)}
    se = float(diff.std(ddof=1))
    parts = [boot.seed_part(r, common) for r in (a, b)]
    denom = sum(v * v / d for v, d in parts if v > 0 and np.isfinite(d) and d > 0)
    # Satterthwaite's df is at least the smallest part's when the replicates hold every part; clamp for rounding
    df = max(se ** 4 / denom, min(d for v, d in parts if v > 0)) if denom > 0 else np.inf
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se if np.isfinite(df) else float(stats.norm.ppf(1 - ALPHA / 2)) * se
    lo, hi = point - half, point + half
    return {"point": point, "lo": lo, "hi": hi, "verdict": verdict(lo, hi), "benchmarks": len(common)}


def compare(perq: pd.DataFrame, baseline: str = "baseline", boot: Bootstrap | None = None) -> pd.DataFrame:
    """Recipe x benchmark: mean and seed sd of the headline metric, the delta against `baseline`
    with its 95% paired-bootstrap interval, and the verdict: better / worse when the interval
    excludes 0, else within noise. Reference predictors appear as recipes named `ref:*`."""
    boot = boot or bootstrap(perq)
    if not any(r == baseline for r, _ in boot.seed_scores):
        raise ValueError(f"no scores for the {baseline!r} recipe: deltas need it")
    rows = []
    for (r, b), sc in boot.seed_scores.items():
        if (baseline, b) not in boot.seed_scores:
            continue
        c = contrast(boot, r, baseline, [b]) if r != baseline else {"point": 0.0, "lo": float("nan"), "hi": float("nan"), "verdict": "-"}
        rows.append({"recipe": r, "benchmark": b, "mean": float(sc.mean()), "sd": float(sc.std(ddof=1)) if len(sc) > 1 else float("nan"),
                     "seeds": len(sc), "baseline_mean": boot.point(baseline, b), "delta": c["point"], "ci_low": c["lo"],
                     "ci_high": c["hi"], "verdict": c["verdict"], "kind": kind_of(b)})
    return _ordered(pd.DataFrame(rows), ["recipe", "benchmark"])


def aa_false_alarms(perq: pd.DataFrame, a: str = "baseline", b: str = "baseline_aa", n_boot: int = N_BOOT) -> dict:
    """The measured false-alarm rate of the test: pool the seeds of two runs of the same recipe,
    split them every way into two equal groups, and count the benchmarks each split calls better
    or worse (all are false alarms). Also the verdicts of the actual pair (b against a)."""
    sub = perq[perq.recipe.isin([a, b])]
    have = {r: sorted(sub[sub.recipe == r].seed.unique()) for r in (a, b)}
    k = min(len(have[a]), len(have[b]))
    if k == 0:
        return {"splits": 0, "comparisons": 0, "false_alarms": 0, "rate": float("nan"), "actual_calls": 0, "actual_comparisons": 0,
                "seeds_per_group": 0}
    actual = compare(sub, baseline=a, boot=bootstrap(sub, n_boot))
    actual = actual[actual.recipe == b]
    seeds = [(r, s) for r in (a, b) for s in have[r][:k]]  # the same number from each run
    label = {rs: i for i, rs in enumerate(seeds)}
    pooled = sub[[(r, s) in label for r, s in zip(sub.recipe, sub.seed)]]
    pooled = pooled.assign(seed=[label[(r, s)] for r, s in zip(pooled.recipe, pooled.seed)])
    calls = comparisons = splits = 0
    for group in itertools.combinations(range(2 * k), k):
        if 0 not in group:  # each unordered split once
            continue
        part = pooled.assign(recipe=np.where(pooled.seed.isin(group), "A", "B"))
        t = compare(part, baseline="A", boot=bootstrap(part, n_boot))
        t = t[t.recipe == "B"]
        calls += int(t.verdict.isin(["better", "worse"]).sum())
        comparisons += len(t)
        splits += 1
    return {"splits": splits, "comparisons": comparisons, "false_alarms": calls, "rate": calls / comparisons if comparisons else float("nan"),
            "actual_calls": int(actual.verdict.isin(["better", "worse"]).sum()), "actual_comparisons": len(actual),
            "seeds_per_group": k}


def headline(table: pd.DataFrame, recipe: str, kind: str) -> tuple[int, int, float]:
    """(benchmarks improved beyond noise, benchmarks of that kind, mean delta) for one recipe."""
    rows = table[(table.recipe == recipe) & (table.kind == kind)]
    return int((rows.verdict == "better").sum()), len(rows), float(rows.delta.mean()) if len(rows) else float("nan")


def headline_lines(table: pd.DataFrame) -> list[str]:
    """"genixer_vqa improves N of M benchmarks; genixer_rec improves K of L REC splits", with noise."""
    lines = []
    for recipe, kind, what in (("genixer_vqa", "vqa", "VQA-type benchmarks"), ("raw_vqa", "vqa", "VQA-type benchmarks"),
                               ("genixer_rec", "rec", "REC splits")):
        if (table.recipe == recipe).any():
            n, m, d = headline(table, recipe, kind)
            worse = int(((table.recipe == recipe) & (table.kind == kind) & (table.verdict == "worse")).sum())
            lines.append(f"{recipe} improves {n} of {m} {what} beyond the noise (95% paired bootstrap; {worse} worse; "
                         f"mean delta {d * 100:+.1f} points)")
    return lines
