"""Asset checks: schema, geometry, oracle agreement, counts, template validity."""


import json
from pathlib import Path

import dagster as dg
import pandas as pd

from genixer.schema import SAMPLE_COLUMNS, read_samples, sample_problems
from genixer.tasks import TASKS
from genixer.templates import ParseError, parse_generation, validate_general
from genixer.world import Scene, check
from genixer.world.grammar import validate_phrasings
from genixer_assets.collection import benchmark_sets, collected_datasets, image_corpus, world_scenes
from genixer_assets.instructions import instruction_templates, templated_instructions
from resources import GenixerSettings


def _result(passed: bool, problems: list[str], **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, metadata={"problems": len(problems), "first_problems": "\n".join(problems[:10]) or "none", **metadata})


@dg.asset_check(asset=world_scenes, blocking=True, description="Files exist with their hash; objects inside the image; held-out background only in `heldout`.")
def world_scenes_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = settings.read_table("world_scenes")
    problems = []
    for r in df.itertuples():
        scene = Scene.from_json(r.scene)
        if not Path(r.image_path).exists():
            problems.append(f"{r.image_id}: missing {r.image_path}")
        if any(not (0 <= o.box[0] < o.box[2] <= r.width and 0 <= o.box[1] < o.box[3] <= r.height) for o in scene.objects):
            problems.append(f"{r.image_id}: object outside the image")
    held = settings.get_preset().world.heldout_background
    leaks = int(((df.split != "heldout") & (df.background == held)).sum() + ((df.split == "heldout") & (df.background != held)).sum())
    if leaks:
        problems.append(f"{leaks} images break the held-out background rule")
    return _result(not problems, problems, images=len(df))


def _samples_check(df: pd.DataFrame, scenes: pd.DataFrame) -> tuple[list[str], float]:
    """Schema problems, and the share of samples the oracle accepts."""
    problems = [f"missing column {c}" for c in SAMPLE_COLUMNS if c not in df.columns]
    by_id = {r.image_id: Scene.from_json(r.scene) for r in scenes.itertuples()}
    ok = 0
    for s in df.to_dict("records"):
        problems += [f"{s['sample_id']}: {p}" for p in sample_problems(s)]
        v = check(s, by_id[s["image_id"]])
        ok += v.ok
        if not v.ok:
            problems.append(f"{s['sample_id']}: oracle says {v.status}: {v.reason}")
    return problems, ok / max(len(df), 1)


@dg.asset_check(asset=collected_datasets, blocking=True, description="Schema valid, boxes inside the image, no empty question or answer, oracle agreement 100%.")
def collected_datasets_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("collected_datasets"))
    problems, agree = _samples_check(df, settings.read_table("world_scenes"))
    return _result(not problems and agree == 1.0, problems, oracle_agreement=agree, samples=len(df))


@dg.asset_check(asset=collected_datasets, description="Every task has at least the preset's minimum number of samples.")
def collected_datasets_counts(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("collected_datasets"))
    need = settings.get_preset().min_per_task
    counts = df.task.value_counts().reindex(list(TASKS), fill_value=0)
    low = [f"{t}: {n} < {need}" for t, n in counts.items() if n < need]
    return _result(not low, low, min_per_task=need, **{f"n_{t}": int(n) for t, n in counts.items()})


@dg.asset_check(asset=benchmark_sets, blocking=True, description="Schema valid, oracle agreement 100%, no benchmark image shared with collect or corpus.")
def benchmark_sets_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = read_samples(settings.table_path("benchmark_sets"))
    scenes = settings.read_table("world_scenes")
    problems, agree = _samples_check(df, scenes)
    train_hashes = set(scenes[scenes.split.isin(["collect", "corpus"])].sha256)
    bench_hashes = set(scenes[scenes.image_id.isin(df.image_id)].sha256)
    if bench_hashes & train_hashes:
        problems.append(f"{len(bench_hashes & train_hashes)} benchmark images also appear in collect/corpus")
    return _result(not problems and agree == 1.0, problems, oracle_agreement=agree, samples=len(df))


@dg.asset_check(asset=image_corpus, blocking=True, description="The shard is non-empty and its files exist.")
def image_corpus_valid(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    df = settings.read_table("image_corpus")
    missing = [p for p in df.image_path if not Path(p).exists()]
    empty = [f"shard {k} is empty" for k, n in df.groupby("shard").size().items() if n == 0]
    return _result(len(df) > 0 and not missing and not empty, missing + empty, images=len(df), shards=int(df.shard.nunique()))


@dg.asset_check(asset=instruction_templates, blocking=True, description="At least 40 distinct general instructions, a specific instruction per task, phrasings with their placeholders.")
def instruction_templates_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    t = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    problems = []
    try:
        validate_general(t["general"])
        validate_phrasings(t["phrasings"])
    except ValueError as e:
        problems.append(str(e))
    if len(set(t["general"])) < 40:
        problems.append(f"only {len(set(t['general']))} distinct general instructions (< 40)")
    problems += [f"no specific instruction for {k}" for k in TASKS if k not in t["specific"]]
    return _result(not problems, problems, general=len(t["general"]))


@dg.asset_check(asset=templated_instructions, blocking=True, description="Prompts and targets non-empty; every target parses back to its sample's turns.")
def templated_instructions_valid(settings: GenixerSettings) -> dg.AssetCheckResult:
    df = settings.read_table("templated_instructions")
    samples = read_samples(settings.table_path("collected_datasets")).set_index("sample_id")
    problems = []
    for r in df.itertuples():
        if not r.prompt.strip() or not r.target.strip():
            problems.append(f"{r.record_id}: empty prompt or target")
            continue
        try:
            turns = parse_generation(r.target)
        except ParseError as e:
            problems.append(f"{r.record_id}: {e}")
            continue
        want = [dict(t) for t in samples.loc[r.sample_id, "turns"]]
        if turns != want:
            problems.append(f"{r.record_id}: target does not parse back to its sample")
    return _result(not problems, problems, records=len(df), general_only_share=float(df.general_only.mean()))


# ---- generators ------------------------------------------------------------------------------

def _finite_weights(path: Path) -> list[str]:
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        return [f"no safetensors weights in {path}"]
    bad = []
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            bad += [f"{f.name}:{k} has non-finite values" for k in st.keys() if not st.get_tensor(k).float().isfinite().all()]
    return bad


def _weights_check(name: str):
    @dg.asset_check(asset=name, name=f"{name}_weights_finite", blocking=True, description="Saved weights exist and are finite.")
    def _check(settings: GenixerSettings) -> dg.AssetCheckResult:
        bad = _finite_weights(settings.model_dir(name))
        return _result(not bad, bad)

    return _check


base_mllm_weights_finite = _weights_check("base_mllm")
genixer_l_weights_finite = _weights_check("genixer_l")
genixer_s_weights_finite = _weights_check("genixer_s")


@dg.asset_check(asset="base_mllm", description="Aim: held-out accuracy at least 10 points above a blind answerer that gives each question kind's most common training answer.")
def base_mllm_above_chance(settings: GenixerSettings) -> dg.AssetCheckResult:
    ev = settings.read_table("base_mllm_eval")
    acc, blind = ev.groupby("task").correct.mean(), _blind(settings)
    return dg.AssetCheckResult(passed=bool(ev.correct.mean() >= 0.1 + blind),
                               metadata={"accuracy": float(ev.correct.mean()), "blind_prior": blind, "margin": float(ev.correct.mean() - blind),
                                         **{f"acc_{t}": float(v) for t, v in acc.items()}})


def _blind(settings: GenixerSettings) -> float:
    from genixer.evaluation import prior_baseline
    from genixer.generators import holdout_images

    scenes = settings.read_table("world_scenes")
    collect = scenes[scenes.split == "collect"]
    val = holdout_images(collect.image_id, settings.get_preset().val_images)
    s = read_samples(settings.table_path("collected_datasets")).to_dict("records")
    by = {r.image_id: Scene.from_json(r.scene) for r in collect.itertuples()}
    return float(prior_baseline([x for x in s if x["image_id"] not in val], [x for x in s if x["image_id"] in val], by).correct.mean())


def _generator_checks(name: str, correctness_aim: float | None):
    @dg.asset_check(asset=name, name=f"{name}_parse_rate", blocking=True,
                    description="At least the preset's share of generations parse as 'Question: .. Answer: ..' (0.95 on demo).")
    def parse_rate(settings: GenixerSettings) -> dg.AssetCheckResult:
        ev = settings.read_table(f"{name}_eval")
        need = settings.get_preset().min_parse_rate
        return dg.AssetCheckResult(passed=bool(ev.parsed.mean() >= need), metadata={"parse_rate": float(ev.parsed.mean()), "required": need})

    @dg.asset_check(asset=name, name=f"{name}_type_accuracy",
                    description="Aim: with a specific instruction, at least 90% of outputs are of the requested task.")
    def type_accuracy(settings: GenixerSettings) -> dg.AssetCheckResult:
        ev = settings.read_table(f"{name}_eval")
        spec = ev[ev["mode"] == "type_specific"]
        acc = (spec.task_of == spec.requested_task).groupby(spec.requested_task).mean()
        total = float((spec.task_of == spec.requested_task).mean())
        return dg.AssetCheckResult(passed=total >= 0.9, metadata={"type_accuracy": total, **{f"right_type_{t}": float(v) for t, v in acc.items()}})

    checks = [parse_rate, type_accuracy]
    if correctness_aim is not None:
        @dg.asset_check(asset=name, name=f"{name}_oracle_correctness",
                        description=f"Aim (the paper's Tab. 2): over {correctness_aim:.0%} of type-specific generations are correct for every task.")
        def correctness(settings: GenixerSettings) -> dg.AssetCheckResult:
            ev = settings.read_table(f"{name}_eval")
            spec = ev[ev["mode"] == "type_specific"]
            per = (spec.oracle == "correct").groupby(spec.requested_task).mean()
            return dg.AssetCheckResult(passed=bool((per > correctness_aim).all()), metadata={f"correct_{t}": float(v) for t, v in per.items()})

        checks.append(correctness)
    return checks


genixer_l_parse_rate, genixer_l_type_accuracy, genixer_l_oracle_correctness = _generator_checks("genixer_l", 0.8)
genixer_s_parse_rate, genixer_s_type_accuracy = _generator_checks("genixer_s", None)


# ---- filtered recipes ------------------------------------------------------------------------

def _filtered_checks(name: str, raw_name: str):
    @dg.asset_check(asset=name, name=f"{name}_not_empty", blocking=True, description="The filtered set has rows.")
    def not_empty(settings: GenixerSettings) -> dg.AssetCheckResult:
        n = len(read_samples(settings.table_path(name)))
        return dg.AssetCheckResult(passed=n > 0, metadata={"rows": n})

    @dg.asset_check(asset=name, name=f"{name}_beats_raw", blocking=True,
                    description="Oracle correctness of the filtered rows is not below that of the raw rows by more "
                                "than two binomial standard errors of the filtered share (a drop beyond noise).")
    def beats_raw(settings: GenixerSettings) -> dg.AssetCheckResult:
        from genixer.quality import filter_noise, oracle_column

        scenes = {r.image_id: Scene.from_json(r.scene) for r in settings.read_table("world_scenes").itertuples()}
        raw = settings.read_table(raw_name)
        kept = read_samples(settings.table_path(name))
        rc = float((oracle_column(raw, scenes) == "correct").mean()) if len(raw) else 0.0
        kc = float((oracle_column(kept, scenes) == "correct").mean()) if len(kept) else 0.0
        noise = filter_noise(rc, len(kept))
        return dg.AssetCheckResult(passed=kc >= rc - noise, metadata={"raw_correct": rc, "filtered_correct": kc, "tolerance": noise,
                                                                      "lift": kc - rc, "filtered_rows": len(kept)})

    return not_empty, beats_raw


genixer_vqa_not_empty, genixer_vqa_beats_raw = _filtered_checks("genixer_vqa", "scored_generations_l")
genixer_rec_not_empty, genixer_rec_beats_raw = _filtered_checks("genixer_rec", "scored_generations_s")


@dg.asset_check(asset="genixer_vqa", description="Aim: over 90% of genixer_vqa rows are correct by the oracle.")
def genixer_vqa_correctness_aim(settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.quality import oracle_column

    scenes = {r.image_id: Scene.from_json(r.scene) for r in settings.read_table("world_scenes").itertuples()}
    kept = read_samples(settings.table_path("genixer_vqa"))
    kc = float((oracle_column(kept, scenes) == "correct").mean()) if len(kept) else 0.0
    return dg.AssetCheckResult(passed=kc >= 0.9, metadata={"filtered_correct": kc})


@dg.asset_check(asset="judge_mllm", description="Aim: the judge separates true from corrupted held-out pairs (AUC >= 0.75).")
def judge_mllm_separates(settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.judge import auc

    ev = settings.read_table("judge_mllm_eval")
    a = auc(ev.p_yes, ev.label)
    finite = bool(ev.p_yes.between(0, 1).all())
    return dg.AssetCheckResult(passed=finite and a >= 0.75, metadata={"auc": a, "p_yes_in_0_1": finite})


judge_mllm_weights_finite = _weights_check("judge_mllm")


@dg.asset_check(asset="benchmark_scores", blocking=True,
                description="Every main recipe is scored on every benchmark with finite values and at least the preset's seeds.")
def benchmark_scores_complete(settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.benchmarks import BENCHMARKS
    from genixer.retraining import MAIN_RECIPES

    t = pd.read_parquet(settings.table_path("benchmark_scores"))
    want = settings.get_preset().retrain_seeds
    problems = []
    for r in MAIN_RECIPES:
        for b in BENCHMARKS:
            row = t[(t.recipe == r) & (t.benchmark == b.name)]
            if row.empty:
                problems.append(f"{r} x {b.name}: missing")
            elif not pd.notna(row["mean"].item()) or row.seeds.item() < want:
                problems.append(f"{r} x {b.name}: mean {row['mean'].item()}, {row.seeds.item()} seeds (want {want})")
    return _result(not problems, problems, recipes=int(t.recipe.nunique()))


def _improves_check(recipe: str, kind: str, what: str):
    @dg.asset_check(asset="benchmark_scores", name=f"{recipe}_improves_most_{kind}",
                    description=f"Aim: {recipe} beats baseline beyond the seed spread on most {what}.")
    def _check(settings: GenixerSettings) -> dg.AssetCheckResult:
        from genixer.benchmarks import headline

        n, m, d = headline(pd.read_parquet(settings.table_path("benchmark_scores")), recipe, kind)
        return dg.AssetCheckResult(passed=m > 0 and n > m / 2, metadata={"improved": n, "of": m, "mean_delta": d})

    return _check


genixer_vqa_improves_most_vqa = _improves_check("genixer_vqa", "vqa", "VQA-type benchmarks")
genixer_rec_improves_most_rec = _improves_check("genixer_rec", "rec", "REC splits")


@dg.asset_check(asset="benchmark_scores", description="Aim: raw_vqa (unfiltered) gains less than genixer_vqa on the VQA-type benchmarks, beyond the seed spread.")
def filter_worth_it(settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.benchmarks import headline, mean_delta_gap

    t = pd.read_parquet(settings.table_path("benchmark_scores"))
    _, _, raw = headline(t, "raw_vqa", "vqa")
    _, _, filtered = headline(t, "genixer_vqa", "vqa")
    gap, noise = mean_delta_gap(t, "genixer_vqa", "raw_vqa")
    return dg.AssetCheckResult(passed=bool(gap > noise), metadata={"mean_delta_genixer_vqa": filtered, "mean_delta_raw_vqa": raw,
                                                                  "gap": gap, "seed_spread": noise})
