"""The noise test of the recipe comparison: a paired bootstrap over the benchmark questions and the
training seeds (recipes of as many seeds compared seed by seed) (world and published benchmarks alike), the A/A control of its false-alarm rate, and the
headline counts ("better on N of M VQA-type benchmarks")."""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from genixer.metrics import f1_score
from genixer.world_benchmarks import POPE_SPLITS, is_pope, is_reference, kind_of, ordered


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

    def paired(self, a: str, b: str, benchmarks: list[str]) -> bool:
        """Whether `a` and `b` are compared seed by seed: both trained (not reference predictors) on the same number
        (> 1) of seeds, whose k-th seeds share their bootstrap draws (the retraining arms of a seed share their
        base batches: genixer.training.PairedPlan)."""
        if is_reference(a) or is_reference(b):
            return False
        ka, kb = (len(self.seed_scores[(r, benchmarks[0])]) for r in (a, b))
        return ka == kb > 1

    def paired_part(self, a: str, b: str, benchmarks: list[str]) -> tuple[float, float]:
        """(variance of the mean per-seed difference a - b, its degrees of freedom), for the mean over `benchmarks`."""
        d = np.mean([self.seed_scores[(a, x)] - self.seed_scores[(b, x)] for x in benchmarks], axis=0)
        return float(d.var(ddof=1) / len(d)), float(len(d) - 1)


def bootstrap(perq: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> Bootstrap:
    """Resample each benchmark's questions (the same draws for every recipe) and each recipe's
    seeds. A one-seed recipe (not a reference predictor, which has no seed noise) borrows the
    seed-to-seed sd pooled over the multi-seed recipes on that benchmark, as a normal draw."""
    seed_scores, reps, noise, noise_df = {}, {}, {}, {}

    def store(b: str, cells: dict[str, list]) -> None:
        """A benchmark's (full score, replicates) per recipe and seed -> its seed scores, replicates and pooled seed noise."""
        multi = [(np.var([c[0] for c in cs], ddof=1), len(cs) - 1) for r, cs in cells.items() if len(cs) > 1 and not is_reference(r)]
        noise[b] = float(np.sqrt(np.mean([v for v, _ in multi]))) if multi else float("nan")
        noise_df[b] = sum(d for _, d in multi)
        for r, cs in cells.items():
            # a recipe's seed draws (and a one-seed recipe's borrowed noise) are the same on every benchmark:
            # a seed's model is good or bad everywhere at once, and means over benchmarks must keep that. Recipes
            # with as many seeds draw the same seeds (paired: the k-th seeds of two arms share their base batches)
            sel = np.random.default_rng([seed, len(cs)]).integers(0, len(cs), size=(n_boot, len(cs)))
            z = np.random.default_rng([seed, zlib.crc32(r.encode())]).standard_normal(n_boot)
            seed_scores[(r, b)] = np.array([c[0] for c in cs])
            rep = _seed_replicates(np.stack([c[1] for c in cs]), sel)
            if len(cs) == 1 and not is_reference(r):
                rep = rep + noise[b] * z if np.isfinite(noise[b]) else np.full(n_boot, np.nan)
            reps[(r, b)] = rep

    for b, g in perq.groupby("benchmark"):
        ids = np.array(sorted(g.sample_id.unique()))
        pos = {s: i for i, s in enumerate(ids)}
        rng = np.random.default_rng([seed, zlib.crc32(b.encode())])
        idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        cells, acc_cells = {}, {}
        for (r, sd), gs in g.groupby(["recipe", "seed"]):
            if len(gs) != len(ids) or set(gs.sample_id) != set(ids):
                raise ValueError(f"{r} seed {sd} answered {len(gs)} of the {len(ids)} questions of {b}: recipes must share questions")
            gs = gs.iloc[np.argsort([pos[s] for s in gs.sample_id])]
            v = gs.value.to_numpy(float)
            if is_pope(b):
                py, gy = gs.pred_yes.astype(bool).to_numpy(), gs.gold_yes.astype(bool).to_numpy()
                tp, fp, fn = (py & gy)[idx].sum(1), (py & ~gy)[idx].sum(1), (~py & gy)[idx].sum(1)
                full, rep = f1_score((py & gy).sum(), (py & ~gy).sum(), (~py & gy).sum()), f1_score(tp, fp, fn)
                acc_cells.setdefault(r, []).append((v.mean(), v[idx].mean(1)))  # its accuracy, on the same draws
            else:
                full, rep = v.mean(), v[idx].mean(1)
            cells.setdefault(r, []).append((full, rep))
        store(b, cells)
        if acc_cells:
            store(f"{b}:accuracy", acc_cells)
    # POPE's headline: the mean of its three splits (the world's pope_<split>; published POPE-<split> as "POPE")
    for head, split_name in (("pope", "pope_{}"), ("POPE", "POPE-{}"), ("pope_accuracy", "pope_{}:accuracy"),
                             ("POPE_accuracy", "POPE-{}:accuracy")):
        done = False
        for r in {r for r, _ in seed_scores}:
            keys = [(r, split_name.format(s)) for s in POPE_SPLITS]
            if all(k in reps for k in keys):
                seed_scores[(r, head)] = np.mean([seed_scores[k] for k in keys], axis=0)  # every split has the recipe's seeds
                reps[(r, head)] = np.mean([reps[k] for k in keys], axis=0)
                done = True
        if head in ("pope", "pope_accuracy") or done:
            multi = [(np.var(v, ddof=1), len(v) - 1) for (r, b), v in seed_scores.items() if b == head and len(v) > 1 and not is_reference(r)]
            noise[head] = float(np.sqrt(np.mean([v for v, _ in multi]))) if multi else float("nan")
            noise_df[head] = sum(d for _, d in multi)
    for k in [k for k in seed_scores if k[1].endswith(":accuracy")]:  # the per-split accuracies served their means
        del seed_scores[k], reps[k]
    return Bootstrap(seed_scores, reps, noise, noise_df)


def verdict(lo: float, hi: float) -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no noise estimate"
    return "better" if lo > 0 else "worse" if hi < 0 else "within noise"


def contrast(boot: Bootstrap, a: str, b: str, benchmarks: list[str]) -> dict:
    """Recipe `a` minus recipe `b`, averaged over `benchmarks` (those both were scored on): the
    point difference, its (1 - ALPHA) interval and the verdict. Used for deltas, gaps and trends.

    The interval is the point ± t x the bootstrap standard error, with the t quantile at the
    Welch-Satterthwaite degrees of freedom of the seed part (paired recipes: of their per-seed differences, k - 1):
    with three seeds a recipe's seed mean
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
    parts = [boot.paired_part(a, b, common)] if boot.paired(a, b, common) else [boot.seed_part(r, common) for r in (a, b)]
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
    return ordered(pd.DataFrame(rows), ["recipe", "benchmark"])


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


def share_of(boot: Bootstrap, a: str, ref: str, baseline: str, benchmarks: list[str]) -> dict:
    """`a`'s gain over `baseline` as a share of `ref`'s (e.g. a filter's against the perfect judge's), averaged over
    `benchmarks`: the point ratio and its 95% percentile interval over the same bootstrap replicates. Undefined
    ("ref within noise") when ref's own gain is not beyond the noise: a share of nothing says nothing."""
    common = [x for x in benchmarks if all((r, x) in boot.reps for r in (a, ref, baseline))]
    if not common:
        return {"share": float("nan"), "lo": float("nan"), "hi": float("nan"), "note": "not run"}
    ref_gain = contrast(boot, ref, baseline, common)
    if ref_gain["verdict"] != "better":
        return {"share": float("nan"), "lo": float("nan"), "hi": float("nan"), "note": f"{ref} not better than {baseline} beyond noise"}
    num = np.mean([boot.reps[(a, x)] - boot.reps[(baseline, x)] for x in common], axis=0)
    den = np.mean([boot.reps[(ref, x)] - boot.reps[(baseline, x)] for x in common], axis=0)
    point = float(np.mean([boot.point(a, x) - boot.point(baseline, x) for x in common]) / ref_gain["point"])
    ok = den > 0  # replicates where the reference gained at all (nearly all when its gain is beyond noise)
    lo, hi = np.percentile(num[ok] / den[ok], [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)]) if ok.any() else (float("nan"),) * 2
    return {"share": point, "lo": float(lo), "hi": float(hi), "note": f"{int(ok.sum())} of {len(ok)} replicates with a {ref} gain"}
