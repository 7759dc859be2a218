"""The closed loop (group `loop`; MLLM-DataEngine, seed 003, with VIGC's correction, seed 004), one partition per
round r (genixer.loop):

- `loop_evaluation[r]`: the round's model (round 1: base_mllm; round r: loop_models[r - 1]'s) on the development split,
  every question typed, per-type accuracy, the bad-case pool and the stopping rule's verdict;
- `loop_queries[r]`: Adaptive Bad-case Sampling (targeted), the uniform control and, from round 2, as many queries
  drawn from round r - 1's evaluation (the "more of the previous round's data" control);
- `loop_generations[r]`: the typed generator (`loop_generator`: Genixer_L taught the question-type instruction level)
  on every query, each instruction variant measured on the targeted queries (the failure table) and the best one used;
  VIGC's correction by the round's model, a type check and the judge;
- `loop_models[r]`: the round's model fine-tuned per arm (replay only, targeted, uniform, oracle-kept, previous-round)
  on the same base-mix batches, each arm its seeds; the targeted arm's first seed carries on to round r + 1;
- `loop_scores[r]`: every model of the round, and the one it started from, on the report's benchmark questions (the
  test split), per question type.

`loop_report` reads every round. Rounds follow one another outside the asset graph (a round's evaluation reads the
previous round's model, which Dagster's graph cannot hold as an edge: it would be a cycle through five assets, and
Dagster allows a cycle only as a time-partitioned asset's dependency on its own earlier partitions); the
`loop_next_round` sensor (genixer_assets.automation) and `make loop` (genixer_assets.loop_run) start round r + 1, and
loop_evaluation records which materialisation of loop_models it read."""

import json
import random
import shutil
from dataclasses import replace
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats

from genixer import corpus_generation, judge, region_clip
from genixer.decoding import Sampling, derive_seed, generate
from genixer.evaluation import solver_records
from genixer.loop import (DEV_SPLIT, VARIANTS, bad_cases, choose_variant, failure_table, sample_queries, sampling_weights, settle,
                          stop_reason, type_table, type_tasks, typed_records, uniform_weights, variant_prompt)
from genixer.retraining import arm_plan, base_batches_digest, recipe_records
from genixer.schema import read_applied, read_samples, write_samples
from genixer.tasks import GENERAL_TASKS
from genixer.templates import specific_instruction
from genixer.world_benchmarks import kind_of, predict, reference_predictions
from genixer_assets.common import (GPU, base_path, benchmark_rows, finetune_role, generator_path, md_table, per_question_values, replay_mix, run_context,
                                   table_meta, train_metadata)
from genixer_assets.partitions import loop_rounds, read_shards, round_index
from resources import GenixerSettings, MLLMBackend, TrainOverrides

ARMS = ("replay", "targeted", "uniform", "oracle", "previous")
BLIND_PRIOR = "ref:blind_prior"  # the reference predictor loop_scores puts beside the models  # loop_models' arms (oracle: world only; previous: round >= 2)


def development_questions(settings: GenixerSettings, src) -> pd.DataFrame:
    """The development split: the general-task samples of the collected images held out of every training set
    (``src.heldout``, the generators' evaluation images). The report scores benchmark_sets, never these."""
    collected = read_samples(settings.table_path("collected_datasets"))
    return collected[collected.image_id.isin(src.heldout) & collected.task.isin(GENERAL_TASKS) & collected.image_path.notna()]


def main_model_dir(settings: GenixerSettings, r: int):
    """Round r's model that round r + 1 starts from: the targeted arm's first seed."""
    return settings.model_dir(f"loop/round_{r}/targeted/seed_0")


def round_start(instance: dg.DagsterInstance, settings: GenixerSettings, backend: MLLMBackend, r: int) -> tuple[str, dict]:
    """(the model round r starts from, its lineage): round 1 base_mllm; round r the model loop_models[round_{r-1}] made,
    with that materialisation's run and storage id read from the instance."""
    if r == 1:
        return base_path(settings, backend), {"model_from": "base_mllm"}
    prev = f"round_{r - 1}"
    found = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("loop_models"), asset_partitions=[prev]),
                                            limit=1).records
    if not found:
        raise dg.Failure(description=f"round {r} starts from round {r - 1}'s model: loop_models[{prev}] is not materialised "
                                     f"(run round {r - 1} first: make loop, or the loop_next_round sensor)")
    rec = found[0]
    path = rec.asset_materialization.metadata["main_model"].value
    return str(path), {"model_from": f"loop_models[{prev}]", "model_from_run": rec.run_id, "model_from_storage_id": rec.storage_id}


def _dev_delta(cur: pd.DataFrame, prev: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per question type: this round's development accuracy minus the previous round's on the same questions, with a
    paired bootstrap 95% interval (scipy.stats.bootstrap) and the verdict."""
    both = cur[["sample_id", "question_type", "correct"]].merge(prev[["sample_id", "correct"]], on="sample_id", suffixes=("", "_prev"))
    rows = []
    for t, g in both.groupby("question_type"):
        d = g.correct.astype(float).to_numpy() - g.correct_prev.astype(float).to_numpy()
        if len(d) > 1 and d.std() > 0:
            ci = stats.bootstrap((d,), np.mean, n_resamples=2000, random_state=seed, method="percentile").confidence_interval
            lo, hi = float(ci.low), float(ci.high)
        else:
            lo = hi = float(d.mean()) if len(d) else float("nan")
        rows.append({"question_type": t, "n": len(d), "delta": float(d.mean()), "lo": lo, "hi": hi,
                     "verdict": "better" if lo > 0 else "worse" if hi < 0 else "within noise"})
    return pd.DataFrame(rows, columns=["question_type", "n", "delta", "lo", "hi", "verdict"])


class LoopEvaluationConfig(dg.Config):
    max_rounds: Optional[int] = Field(None, description="the stopping rule's maximum rounds (default: preset loop_max_rounds)")


@dg.asset(group_name="loop", partitions_def=loop_rounds, deps=["base_mllm", "collected_datasets"], **GPU)
def loop_evaluation(context: dg.AssetExecutionContext, config: LoopEvaluationConfig, settings: GenixerSettings,
                    backend: MLLMBackend) -> dg.MaterializeResult:
    """Round r's model (round 1: base_mllm; round r: the model loop_models[r - 1] made, its materialisation recorded)
    on the development split: each general-task question answered greedily, checked (the world's oracle; published
    data: the collected answer) and typed (the world's grammar kind; a published record's carried type, e.g. VQAv2's
    question_type, else its first words); per-type accuracy with its Wilson 95% interval; the wrong answers are the
    round's bad-case pool; from round 2, each type's change on the same questions (paired bootstrap); the stopping
    rule's verdict: whether round r generates and trains (`go on`) or the loop ends here, and why."""
    p, src = run_context(settings)
    r = round_index(context.partition_key)
    dev = development_questions(settings, src)
    if not len(dev):
        raise dg.Failure(description="loop_evaluation: the development split is empty (no general-task sample on the collected "
                                     f"images held out of training; the preset's val_images is {p.val_images})")
    model_dir, lineage = round_start(context.instance, settings, backend, r)
    model, processor = backend.load(model_dir, "base")
    ev = src.evaluate_solver(model, processor, dev.to_dict("records"), batch_size=backend.batch_size("base", 32))
    info = dev.set_index("sample_id")
    extra = info["extra"] if "extra" in info else pd.Series(None, index=info.index)
    ev = ev.assign(image_id=info.image_id.reindex(ev.sample_id).to_numpy(), image_path=info.image_path.reindex(ev.sample_id).to_numpy(),
                   split=DEV_SPLIT, round=r,
                   question_type=[src.question_type(t, q, extra.get(s)) for t, q, s in zip(ev.task, ev.question, ev.sample_id)])
    path = settings.table_path("loop_evaluation", context.partition_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    ev.to_parquet(path, index=False)
    table = type_table(ev)
    pool = bad_cases(ev)
    max_rounds = config.max_rounds or p.loop_max_rounds
    meta, verdicts = {}, None
    if r > 1:
        delta = _dev_delta(ev, pd.read_parquet(settings.table_path("loop_evaluation", f"round_{r - 1}")), p.seed)
        verdicts = delta.verdict.tolist()
        meta["change_from_previous_round"] = dg.MetadataValue.md(delta.to_markdown(index=False, floatfmt=".3f"))
    why = stop_reason(r, max_rounds, len(pool), verdicts, p.loop_min_rounds)
    if verdicts is not None and "better" not in verdicts and not why:
        meta["no_gain"] = f"no question type improved beyond noise; the rule stops the loop after {p.loop_min_rounds} rounds"
    typer = src.type_classifier_accuracy()
    if typer is not None:
        meta["type_classifier"] = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in typer.items()})
    return dg.MaterializeResult(metadata={
        **table_meta(path), **lineage, **meta,
        "round": r, "model": model_dir, "checked_against": src.checked_against,
        "questions": len(ev), "accuracy": float(ev.correct.mean()), "bad_cases": len(pool), "question_types": len(table),
        "per_type": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f")),
        "stop": f"stop: {why}" if why else f"go on (round {r} of at most {max_rounds})",
    })


def _go_on(settings: GenixerSettings, context) -> None:
    """Raise if round r's evaluation ended the loop (its metadata's stop verdict)."""
    rec = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("loop_evaluation"),
                                                                        asset_partitions=[context.partition_key]), limit=1).records
    stop = rec[0].asset_materialization.metadata["stop"].value if rec else ""
    if stop.startswith("stop"):
        raise dg.Failure(description=f"the loop ended at loop_evaluation[{context.partition_key}] ({stop}): this round generates nothing")


class LoopQueriesConfig(dg.Config):
    queries: Optional[int] = Field(None, description="queries per arm (default: preset loop_queries)")
    weight_floor: Optional[float] = Field(None, description="floor on a type's score in the inverse weights (default: preset)")


@dg.asset(group_name="loop", partitions_def=loop_rounds,
          deps=["loop_evaluation", "region_clip_model", dg.AssetDep("image_corpus", partition_mapping=dg.AllPartitionMapping())], **GPU)
def loop_queries(context: dg.AssetExecutionContext, config: LoopQueriesConfig, settings: GenixerSettings,
                 backend: MLLMBackend) -> dg.MaterializeResult:
    """Adaptive Bad-case Sampling for round r: `targeted` queries draw a question type with probability inversely
    proportional to its development score (floored), the `uniform` control arm draws types uniformly, and from round 2
    the `previous` arm draws as many queries from round r - 1's evaluation (its weights and bad cases: what more of
    the previous round's data would be); each query shows two bad cases of its type and asks about a corpus image, half
    at random and half the one most similar to the bad cases' images (the region CLIP's image embeddings). Weights
    that cannot be used fall back to uniform and say so; an empty bad-case pool gives no query and says why."""
    _go_on(settings, context)
    p, _ = run_context(settings)
    key = context.partition_key
    r = round_index(key)
    ev = pd.read_parquet(settings.table_path("loop_evaluation", key))
    table, pool = type_table(ev), bad_cases(ev)
    floor = config.weight_floor if config.weight_floor is not None else p.loop_weight_floor
    n = config.queries or p.loop_queries
    targeted, note = sampling_weights(table, floor)
    seed = p.seed + 100 * (r - 1)  # each round draws anew (round 1: the preset's seed)
    plans = [("targeted", targeted, pool, seed), ("uniform", uniform_weights(table), pool, seed + 1)]
    if r > 1:
        prev_ev = pd.read_parquet(settings.table_path("loop_evaluation", f"round_{r - 1}"))
        prev_pool = bad_cases(prev_ev)
        plans.append(("previous", sampling_weights(type_table(prev_ev), floor)[0], prev_pool, seed + 2))
    corpus = read_shards(context, settings, "image_corpus").reset_index(drop=True)
    emb = {}
    if len(targeted) and len(corpus):
        cal = json.loads(settings.path("tables", "region_clip_calibration.json").read_text())
        model, preprocess, _ = region_clip.load_region_clip(cal["model"], device=str(backend.torch_device("region_clip")),
                                                            weights=cal.get("weights"))
        bs = backend.batch_size("region_clip", 64)
        emb["corpus"] = region_clip.image_embeddings(model, preprocess, corpus.image_path.tolist(), bs)
        for arm, _, arm_pool, _ in plans:
            emb[arm] = region_clip.image_embeddings(model, preprocess, arm_pool.image_path.tolist(), bs)
    arms = []
    for arm, w, arm_pool, seed in plans:
        q = sample_queries(w, arm_pool, corpus, n, seed, emb.get("corpus"), emb.get(arm))
        arms.append(q.assign(arm=arm, round=r, p_type=q.question_type.map(w).astype(float), weight_floor=floor,
                             image_path=q.image_id.map(dict(zip(corpus.image_id, corpus.image_path)))))
    queries = pd.concat(arms, ignore_index=True)
    path = settings.table_path("loop_queries", key)
    path.parent.mkdir(parents=True, exist_ok=True)
    queries.to_parquet(path, index=False)
    weights = table.assign(targeted=table.question_type.map(targeted).fillna(0.0),
                           uniform=table.question_type.map(uniform_weights(table)).fillna(0.0))
    drawn = queries.groupby(["arm", "question_type"]).size().unstack(0, fill_value=0) if len(queries) else pd.DataFrame()
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "round": r, "queries_per_arm": n, "weights_rule": note, "weight_floor": floor,
        "bad_cases": len(pool), "corpus_images": len(corpus), "arms": ", ".join(a for a, *_ in plans),
        "weights": dg.MetadataValue.md(weights[["question_type", "accuracy", "bad_cases", "targeted", "uniform"]]
                                       .to_markdown(index=False, floatfmt=".3f")),
        "drawn": dg.MetadataValue.md(drawn.reset_index().to_markdown(index=False)) if len(drawn) else "no query: " + note,
    })


def loop_generator_info(settings: GenixerSettings) -> dict:
    """What loop_generator wrote beside its model: each type's task and phrase, the typed record counts."""
    return json.loads(settings.path("tables", "loop_generator.json").read_text())


@dg.asset(group_name="loop", deps=["genixer_l", "templated_instructions", "collected_datasets"], **GPU)
def loop_generator(config: TrainOverrides, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """Genixer_L taught a third instruction level, the question type ("The question is about the colour of an object."),
    the way it learnt the task level: its own training records (templated_instructions), each one with the task level
    and one question of a known type given the type's instruction with probability 1 - the controlling constant, the
    solver's data replayed as for genixer_l; fine-tuned from genixer_l for the preset's `loop_generator_train`."""
    p, src = run_context(settings)
    recs = settings.read_table("templated_instructions")
    recs = recs[(recs.generator == "genixer_l") & ~recs.image_id.isin(src.heldout) & recs.image_path.notna()]
    collected = read_samples(settings.table_path("collected_datasets")).set_index("sample_id")
    extra = collected["extra"] if "extra" in collected else pd.Series(None, index=collected.index)
    types = {s: src.question_type(t, turns[0]["question"], extra.get(s))
             for s, t, turns in zip(collected.index, collected.task, collected.turns) if t in GENERAL_TASKS and len(turns) == 1}
    typed = pd.DataFrame({"question_type": list(types.values()), "task": collected.task.reindex(list(types)).to_numpy()})
    tasks = type_tasks(typed)
    phrases = {t: src.type_phrase(t) for t in tasks}
    records = typed_records(recs.to_dict("records"), types, phrases, p.records.controlling_constant, p.seed)
    mixed, weights, shares = replay_mix(settings, *p.l_replay, src)(records)
    out = settings.model_dir("loop_generator")
    res = finetune_role(backend, "genixer_l", generator_path(settings, backend, "genixer_l"), mixed,
                        config.apply(backend.train_config("genixer_l", p.loop_generator_train)), out, weights)
    n_typed = sum(1 for r in records if r["question_type"])
    counts = pd.Series([r["question_type"] for r in records if r["question_type"]]).value_counts()
    info = {"type_tasks": tasks, "phrases": phrases, "typed_records": n_typed, "records": len(records)}
    settings.path("tables", "loop_generator.json").write_text(json.dumps(info, indent=1))
    return dg.MaterializeResult(metadata={
        **train_metadata(res, "loop_generator"), "records": len(records), "typed_records": n_typed, "batch_shares": shares,
        "initialised_from": generator_path(settings, backend, "genixer_l"),
        "types": dg.MetadataValue.md(pd.DataFrame({"question_type": counts.index, "typed_records": counts.to_numpy(),
                                                   "task": [tasks[t] for t in counts.index],
                                                   "instruction": [f"The question is about {phrases[t]}." for t in counts.index]})
                                     .to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(out)),
    })


def _requests(queries: pd.DataFrame, variant: str, general: list[str], info: dict, cases: dict, corpus: pd.DataFrame,
              seed: int, per_query: int = 1) -> list[dict]:
    """``per_query`` generation requests per query under an instruction variant (its prompt, a seeded general
    instruction and sampling seed each)."""
    by_id = corpus.set_index("image_id")
    out = []
    for q in [dict(q, k=k) for q in queries.to_dict("records") for k in range(per_query)]:
        rng = random.Random(f"{seed}/{q['arm']}/{q['query']}/{q['k']}")
        gid = rng.randrange(len(general))
        t = q["question_type"]
        task = info["type_tasks"][t]
        img = by_id.loc[q["image_id"]]
        prompt = variant_prompt(variant, general[gid], specific_instruction(task), info["phrases"][t], [cases[s] for s in q["in_context"]])
        out.append({"image_id": q["image_id"], "image_path": img.image_path, "sha256": img.sha256, "width": img.width, "height": img.height,
                    "seed": rng.randrange(2**31), "prompt": prompt, "template_id": f"general_{gid:02d}+{task}+{variant}",
                    "arm": q["arm"], "query": q["query"], "variant": variant, "requested_type": t, "requested": task})
    return out


class LoopGenerationConfig(dg.Config):
    correction_passes: Optional[int] = Field(None, description="VIGC passes over each answer, 0: no correction (default: preset)")
    judge_lambda: Optional[float] = Field(None, description="keep pairs with P(Yes) >= lambda (default: the lambda genixer_vqa applied)")


@dg.asset(group_name="loop", partitions_def=loop_rounds,
          deps=["loop_queries", "loop_generator", "judge_mllm", "genixer_vqa",
                dg.AssetDep("image_corpus", partition_mapping=dg.AllPartitionMapping())], **GPU)
def loop_generations(context: dg.AssetExecutionContext, config: LoopGenerationConfig, settings: GenixerSettings,
                     backend: MLLMBackend) -> dg.MaterializeResult:
    """Targeted generation for round r. The typed generator (loop_generator) answers every targeted query under each
    instruction variant (`task`: Genixer's two levels; `type`: + the question type; `type_in_context`: + the query's two
    bad cases as examples); the round's failure table counts, per variant, the unparseable, wrong-type, unsettled and
    judge-rejected outputs and the kept ones the oracle calls wrong, and the variant with the fewest failures makes the
    other arms' data (prompt selection, the paper's Interactive Prompt Optimization measured). Each parsed pair of
    the requested type is corrected (VIGC: the round's model answers it again until its answer repeats, at most
    `correction_passes`; a settled answer replaces the generator's, an unsettled pair is dropped), then judged
    (P(Yes) >= lambda). Every row is kept in the table with its status; the world's oracle marks each one."""
    _go_on(settings, context)
    p, src = run_context(settings)
    key = context.partition_key
    r = round_index(key)
    queries = pd.read_parquet(settings.table_path("loop_queries", key))
    if not len(queries):
        raise dg.Failure(description=f"loop_queries[{key}] holds no query (see its metadata): nothing to generate")
    info = loop_generator_info(settings)
    pools = {k: bad_cases(pd.read_parquet(settings.table_path("loop_evaluation", f"round_{k}"))) for k in {r, max(r - 1, 1)}}
    cases = {s: (q, t) for pl in pools.values() for s, q, t in zip(pl.sample_id, pl.question, pl.truth)}
    general = json.loads(settings.path("tables", "instruction_templates.json").read_text())["general"]
    corpus = read_shards(context, settings, "image_corpus").reset_index(drop=True)
    gen_dir = str(settings.model_dir("loop_generator"))
    model, processor = backend.load(gen_dir, "genixer_l")
    gen_id = corpus_generation.checkpoint_id(gen_dir)
    sampling = p.gen_sampling
    bs = backend.batch_size("genixer_l", 32)

    def run(requests: list[dict]) -> pd.DataFrame:
        frames = []
        for task in sorted({q["requested"] for q in requests}):
            reqs = [q for q in requests if q["requested"] == task]
            df, _ = corpus_generation.generate_shard(model, processor, reqs, "loop_generator", gen_id, sampling, task, task, None,
                                                     batch_size=bs, task_of=src.task_of)
            # each row's query by its request key (generate_shard puts unreadable images' rows first)
            meta = pd.DataFrame(reqs).assign(request_key=[corpus_generation.request_key(q["sha256"], q["prompt"], gen_id, sampling,
                                                                                        q["seed"]) for q in reqs])
            frames.append(df.merge(meta[["request_key", "arm", "query", "variant", "requested_type"]], on="request_key", how="left",
                                   validate="one_to_one"))
        return pd.concat(frames, ignore_index=True)

    targeted = queries[queries.arm == "targeted"]
    seed = p.seed + 100 * (r - 1)
    rows = [run(_requests(targeted, v, general, info, cases, corpus, seed, p.loop_per_query)) for v in VARIANTS]
    del model
    solver_dir, _ = round_start(context.instance, settings, backend, r)
    solver, solver_proc = backend.load(solver_dir, "base")
    judge_dir = backend.checkpoint("judge") or settings.model_dir("judge_mllm")
    jm, jp = backend.load(judge_dir, "judge")
    applied = read_applied(settings.table_path("genixer_vqa"))
    lam = config.judge_lambda if config.judge_lambda is not None else applied.get("judge_lambda", p.judge_lambda)
    passes = config.correction_passes if config.correction_passes is not None else p.loop_correction_passes

    def qc(df: pd.DataFrame) -> pd.DataFrame:
        return quality_control(df, src, solver, solver_proc, jm, jp, lam, passes, p.loop_correction_temperature,
                               backend.batch_size("base", 32), backend.batch_size("judge", 32))

    checked = [qc(df) for df in rows]
    table = failure_table(pd.concat(checked, ignore_index=True))
    chosen = choose_variant(table)
    others = queries[queries.arm != "targeted"]
    model, processor = backend.load(gen_dir, "genixer_l")
    rest = [qc(run(_requests(others, chosen, general, info, cases, corpus, seed, p.loop_per_query)))] if len(others) else []
    out = pd.concat(checked + rest, ignore_index=True).assign(round=r, chosen=lambda d: d.variant == chosen)
    path = write_samples(out, settings.table_path("loop_generations", key), lineage=True,
                         applied={"judge_lambda": lam, "correction_passes": passes, "chosen_variant": chosen})
    used = out[out.chosen]
    kept = used[used.status == "kept"]
    by_arm = used.groupby("arm").status.value_counts().unstack(fill_value=0)
    oracle = (kept.groupby("arm").oracle.apply(lambda s: float((s == "correct").mean())) if src.oracle is not None else None)
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "round": r, "judge_lambda": lam, "correction_passes": passes, "chosen_variant": chosen,
        "failure_table": dg.MetadataValue.md(table.to_markdown(index=False)),
        "status_by_arm": dg.MetadataValue.md(by_arm.reset_index().to_markdown(index=False)),
        "kept_by_arm": json.dumps(kept.groupby("arm").size().to_dict()),
        "kept_oracle_correct_by_arm": json.dumps({k: round(v, 3) for k, v in oracle.items()}) if oracle is not None else "no oracle (no world)",
        "correction": json.dumps(correction_summary(used, src.oracle is not None)),
        "preview": md_table(kept[["arm", "requested_type", "raw_text", "answer_before", "oracle"]], 10),
    })


def quality_control(df: pd.DataFrame, src, solver, solver_proc, judge_model, judge_proc, lam: float, passes: int,
                    temperature: float, solver_bs: int, judge_bs: int) -> pd.DataFrame:
    """Each generated row's status, in order: `unparseable` (quarantined by the parser), `wrong type` (its question is
    not of the requested type), `unsettled` (VIGC's correction found no fixed point), `judge-rejected` (P(Yes) < lam), else
    `kept`; the corrected answer replaces the generated one (``answer_before`` keeps it), and the oracle marks every
    parsed row (world only)."""
    df = df.reset_index(drop=True).copy()
    df["generated_type"] = [src.question_type(t, turns[0]["question"]) if turns is not None and len(turns) else ""
                            for t, turns in zip(df.task, df.turns)]
    df["status"] = np.where(df.quarantine_reason.notna(), "unparseable",
                            np.where(df.generated_type != df.requested_type, "wrong type", ""))
    df["answer_before"] = [turns[0]["answer"] if turns is not None and len(turns) else "" for turns in df.turns]
    df["settled_at"] = 0
    parsed = df.quarantine_reason.isna()
    df["oracle_before"] = df["oracle"] = ""
    if src.oracle is not None and parsed.any():
        df.loc[parsed, "oracle_before"] = src.oracle.column(df[parsed]).to_numpy()
    todo = np.flatnonzero(df.status.to_numpy() == "")
    if len(todo) and passes > 0:
        questions = [df.turns[i][0]["question"] for i in todo]
        paths = df.image_path.to_numpy()[todo].tolist()

        def answer(k: int, idx: list[int]) -> list[str]:
            outs = generate(solver, solver_proc, [paths[i] for i in idx], [questions[i] for i in idx],
                            Sampling(temperature=temperature, max_new_tokens=48), batch_size=solver_bs,
                            seeds=[derive_seed(k, int(todo[i])) for i in idx])
            return [o[0].strip() for o in outs]

        settled, at = settle([df.answer_before[i] for i in todo], answer, passes)
        turns = df.turns.tolist()
        for j, i in enumerate(todo):
            if settled[j] is None:
                df.loc[i, "status"] = "unsettled"
            else:
                turns[i] = [{**turns[i][0], "answer": settled[j]}, *turns[i][1:]]
            df.loc[i, "settled_at"] = at[j]
        df["turns"] = turns
    df["corrected"] = [bool(turns is not None and len(turns) and turns[0]["answer"] != a) for turns, a in zip(df.turns, df.answer_before)]
    todo = np.flatnonzero(df.status.to_numpy() == "")
    if len(todo):
        df.loc[todo, "judge_p_yes"] = judge.score_samples(judge_model, judge_proc, df.iloc[todo], batch_size=judge_bs)
    p_yes = df.judge_p_yes.astype(float)
    df.loc[todo, "status"] = np.where(p_yes.to_numpy()[todo] >= lam, "kept", "judge-rejected")
    if src.oracle is not None and parsed.any():
        df.loc[parsed, "oracle"] = src.oracle.column(df[parsed]).to_numpy()
    return df


def correction_summary(rows: pd.DataFrame, world: bool) -> dict:
    """What the correction did to the pairs it saw (parsed, of the requested type): how many it changed or dropped and,
    on the world, the oracle's correctness of those pairs before and after (dropped pairs count as not correct after)."""
    seen = rows[(rows.settled_at > 0) | (rows.status == "unsettled")]
    out = {"pairs": len(seen), "changed": int(seen.corrected.sum()), "dropped_unsettled": int((seen.status == "unsettled").sum())}
    if world and len(seen):
        out["oracle_correct_before"] = round(float((seen.oracle_before == "correct").mean()), 4)
        after = (seen.oracle == "correct") & (seen.status != "unsettled")
        out["oracle_correct_after"] = round(float(after.mean()), 4)
    return out


class LoopTrainConfig(TrainOverrides):
    seeds: Optional[int] = Field(None, description="seeds per arm (default: preset retrain_seeds)")
    generated_epochs: Optional[float] = Field(None, description="passes over an arm's added rows, on top of the base steps (default: preset)")


@dg.asset(group_name="loop", partitions_def=loop_rounds, deps=["loop_generations", "collected_datasets"], **GPU)
def loop_models(context: dg.AssetExecutionContext, config: LoopTrainConfig, settings: GenixerSettings,
                backend: MLLMBackend) -> dg.MaterializeResult:
    """Round r's training: the model the round started from, fine-tuned per arm on the same base-mix batches (replay of
    base_mllm's captions and collected data, a paired design as in retrained_models) plus the arm's rows: `replay`
    none (the paired baseline), `targeted` the kept rows of the targeted queries, `uniform` the uniform control's,
    `previous` (round >= 2) the rows of as many queries drawn from round r - 1's evaluation, all three cut to the same
    count; `oracle` (world only) the targeted pairs that reached the judge and the oracle calls correct (what a perfect
    judge would keep). Full fine-tuning or LoRA by the `retraining` role's config. The targeted arm's first seed is
    the model round r + 1 starts from (`main_model`)."""
    _go_on(settings, context)
    p, src = run_context(settings)
    key = context.partition_key
    r = round_index(key)
    used = read_samples(settings.table_path("loop_generations", key))
    used = used[used.chosen]
    kept = used[used.status == "kept"]
    rows = {a: kept[kept.arm == a] for a in ("targeted", "uniform", "previous") if (used.arm == a).any()}
    if not len(rows["targeted"]):
        raise dg.Failure(description=f"loop_models[{key}]: the targeted queries kept no generated row (loop_generations' "
                                     "status_by_arm): nothing to train the round on; lower the judge's lambda or ask more queries")
    notes = {f"{a}_arm": "not trained: it kept no generated row" for a, v in rows.items() if not len(v)}
    rows = {a: v for a, v in rows.items() if len(v)}
    n_equal = min(len(v) for v in rows.values())  # targeted, uniform and previous: the same amount of data
    rows = {a: v.sample(n=n_equal, random_state=p.seed) for a, v in rows.items()}
    if src.oracle is not None:
        reached = used[(used.arm == "targeted") & used.status.isin(["kept", "judge-rejected"]) & (used.oracle == "correct")]
        if len(reached):
            rows["oracle"] = reached
        else:
            notes["oracle_arm"] = "not trained: no targeted pair that reached the judge is oracle-correct"
    rows = {"replay": kept.iloc[:0], **rows}
    start, lineage = round_start(context.instance, settings, backend, r)
    samples = read_samples(settings.table_path("collected_datasets"))
    samples = samples[samples.image_path.notna() & ~samples.image_id.isin(src.heldout)].to_dict("records")
    collected = solver_records(samples)
    captions, _ = src.captions(samples, set(src.collect_images.image_id) - src.heldout)
    n_seeds = config.seeds or p.retrain_seeds
    epochs = config.generated_epochs if config.generated_epochs is not None else p.generated_epochs
    table, first = [], None
    for arm, added in rows.items():
        for k in range(n_seeds):
            seed = p.seed + k
            cfg = config.apply(backend.train_config("retraining", replace(p.retrain, seed=seed)))
            added_recs = recipe_records(added) if len(added) else []
            records, plan, shares = arm_plan(captions, collected, added_recs, p.caption_share, cfg.steps, cfg.batch_size, epochs, seed,
                                             cfg.grad_accum)
            out = settings.model_dir(f"loop/round_{r}/{arm}/seed_{k}")
            res = finetune_role(backend, "retraining", start, records, replace(cfg, steps=plan.batches // cfg.grad_accum), out, plan=plan)
            correct = float((added.oracle == "correct").mean()) if len(added) and src.oracle is not None else float("nan")
            table.append({"round": r, "arm": arm, "seed": k, "added_rows": len(added), "added_oracle_correct": correct,
                          "steps": plan.batches // cfg.grad_accum, "added_steps": plan.added_steps // cfg.grad_accum,
                          "base_batches_sha": base_batches_digest(records, plan, cfg.batch_size), "final_loss": res.final_loss,
                          "train_wall_s": round(res.wall_s, 1), "path": str(out), "start": start,
                          "added_sample_ids": [str(s) for s in added.sample_id]})
            first = first or train_metadata(res, f"loop round {r}, {arm} (seed {seed})")
    for stale in settings.path("models", "loop", key).glob("*/seed_*"):  # arms or seeds of an earlier, larger run
        if stale.parent.name not in rows or int(stale.name.split("_")[1]) >= n_seeds:
            shutil.rmtree(stale)
    df = pd.DataFrame(table)
    path = settings.table_path("loop_models", key)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return dg.MaterializeResult(metadata={
        **table_meta(path), **lineage, **notes,
        "round": r, "start": start, "main_model": dg.MetadataValue.path(str(main_model_dir(settings, r))),
        "seeds": n_seeds, "rows_per_arm_equalised": n_equal,
        "paired": "seed k of every arm reads the same base-mix batches in the same order",
        "arms": dg.MetadataValue.md(df.drop(columns=["path", "start", "added_sample_ids"]).to_markdown(index=False, floatfmt=".3f")),
        "learning_curves": first["learning_curves"],
        "train_wall_s_total": float(df.train_wall_s.sum()),
    })


def test_questions(settings: GenixerSettings, src) -> tuple[pd.DataFrame, bool]:
    """The loop's test split: the report's benchmark questions of the general tasks (one row each, scored under its
    first benchmark), typed as the development questions are; and whether they are published benchmarks."""
    bench, real = benchmark_rows(settings)
    bench = bench[bench.task.isin(GENERAL_TASKS) & bench.benchmarks.map(lambda b: any(kind_of(x) == "vqa" for x in b))]
    bench = bench.assign(benchmarks=[[next(x for x in b if kind_of(x) == "vqa")] for b in bench.benchmarks])
    extra = bench["extra"] if "extra" in bench else pd.Series(None, index=bench.index)
    types = [src.question_type(t, turns[0]["question"], e) for t, turns, e in zip(bench.task, bench.turns, extra)]
    return bench.assign(question_type=types).reset_index(drop=True), real


@dg.asset(group_name="loop", partitions_def=loop_rounds, deps=["loop_models", "benchmark_sets"], **GPU)
def loop_scores(context: dg.AssetExecutionContext, settings: GenixerSettings, backend: MLLMBackend) -> dg.MaterializeResult:
    """Every model of round r (each arm and seed) and the model the round started from (`start`) answer the test split
    (the report's benchmark questions of the general tasks, never the development split), scored per question by the
    benchmark's metric and typed; per type, the mean over seeds; the arms' changes from `replay` and from `start`
    under the paired noise test (genixer.noise_test, the question types in the place of benchmarks)."""
    from genixer.noise_test import bootstrap, contrast

    p, src = run_context(settings)
    key = context.partition_key
    models = pd.read_parquet(settings.table_path("loop_models", key))
    test, real = test_questions(settings, src)
    if test.empty:
        raise dg.Failure(description="loop_scores: benchmark_sets has no general-task question of a VQA-type benchmark")
    frames = []
    runs = [("start", 0, models.start.iloc[0])] + list(zip(models.arm, models.seed, models.path))
    for arm, seed, path in runs:
        model, processor = backend.load(path, "retraining")
        frames.append(predict(model, processor, test, batch_size=backend.batch_size("retraining", 128)).assign(recipe=arm, seed=int(seed)))
    # the blind prior (the most common training answer of the question's kind) on the same questions: what a type's
    # accuracy means; a reference predictor, without seed noise in the bootstrap
    train = read_samples(settings.table_path("collected_datasets"))
    train = train[~train.image_id.isin(src.heldout) & train.turns.map(lambda t: t is not None and len(t) > 0)]
    refs = reference_predictions(test, train, seed=p.seed)
    frames.append(refs[refs.recipe == BLIND_PRIOR])
    preds = pd.concat(frames, ignore_index=True)
    perq = per_question_values(test, preds, real)
    perq = perq.assign(question_type=perq.sample_id.map(dict(zip(test.sample_id, test.question_type))), round=round_index(key))
    path = settings.table_path("loop_scores", key)
    path.parent.mkdir(parents=True, exist_ok=True)
    perq.to_parquet(path, index=False)
    boot = bootstrap(perq.assign(benchmark=perq.question_type), seed=p.seed)
    types = sorted(perq.question_type.unique())
    acc = perq.groupby(["question_type", "recipe", "seed"]).value.mean().groupby(["question_type", "recipe"]).mean().unstack()
    arms = [a for a in ARMS if a in acc.columns]
    rows = []
    for a in arms:
        for ref in ("replay", "start"):
            if a != ref:
                c = contrast(boot, a, ref, types)
                rows.append({"arm": a, "minus": ref, "delta": c["point"], "lo": c["lo"], "hi": c["hi"], "verdict": c["verdict"]})
    return dg.MaterializeResult(metadata={
        **table_meta(path),
        "round": round_index(key), "test_questions": len(test), "question_types": len(types), "models": len(runs),
        "accuracy_by_type": dg.MetadataValue.md(acc[[BLIND_PRIOR, "start"] + arms].reset_index().to_markdown(index=False, floatfmt=".3f")),
        "changes_mean_over_types": dg.MetadataValue.md(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")),
    })


LOOP_SECTION = "## The closed loop"


def upsert_section(path, heading: str, body: str) -> None:
    """Put ``body`` under ``heading`` at the end of a markdown file, replacing what an earlier run wrote there."""
    text = path.read_text() if path.exists() else ""
    if heading in text:
        text = text[:text.index(heading)].rstrip() + "\n"
    path.write_text(f"{text}\n{heading}\n\n{body.strip()}\n")


@dg.asset(group_name="loop", deps=[dg.AssetDep("loop_scores", partition_mapping=dg.AllPartitionMapping()),
                                   dg.AssetDep("loop_evaluation", partition_mapping=dg.AllPartitionMapping()),
                                   dg.AssetDep("loop_generations", partition_mapping=dg.AllPartitionMapping()), "paper_report"])
def loop_report(context: dg.AssetExecutionContext, settings: GenixerSettings) -> dg.MaterializeResult:
    """The loop's rounds on the test split (the paper's Fig. 4 and Tab. 8 on this design): per round and question type,
    the targeted arm's accuracy and its change from the round's start model and from the paired replay arm; the
    controls (targeted vs uniform on the round's weakest types; round r's data vs as much more of round r - 1's; the
    oracle arm); the failure table of each round's instruction variants and what correction did; the development
    accuracy per round and the stopping rule's verdict. Written to reports/loop_report.md and as the last section of
    paper_report.md."""
    from genixer.loop import round_tables, weakest_types

    p, _ = run_context(settings)
    rounds = [k for k in loop_rounds.get_partition_keys() if settings.table_path("loop_scores", k).exists()]
    if not rounds:
        raise dg.Failure(description="loop_report: no round has been scored (loop_scores); run the loop first (make loop)")
    parts, per_type, controls = [], [], []
    for key in rounds:
        r = round_index(key)
        perq = pd.read_parquet(settings.table_path("loop_scores", key))
        ev = pd.read_parquet(settings.table_path("loop_evaluation", key))
        weakest = weakest_types(type_table(ev), p.loop_weight_floor)
        pt, ctl = round_tables(perq, weakest, p.seed)
        per_type.append(pt.assign(round=r))
        controls.append(ctl.assign(round=r))
        gens = read_samples(settings.table_path("loop_generations", key))
        ft = failure_table(gens[gens.arm == "targeted"])
        applied = read_applied(settings.table_path("loop_generations", key))
        corr = correction_summary(gens[gens.chosen], "oracle_before" in gens and (gens.oracle_before != "").any())
        parts.append(f"### Round {r}\n\nWeakest types (drawn more by the targeted arm than uniformly): {', '.join(weakest) or 'none'}.\n\n"
                     f"Instruction variants on the targeted queries (chosen: `{applied['chosen_variant']}`):\n\n{ft.to_markdown(index=False)}\n\n"
                     f"Correction ({applied['correction_passes']} passes): {json.dumps(corr)}\n")
    pt, ctl = pd.concat(per_type, ignore_index=True), pd.concat(controls, ignore_index=True)
    evals = []
    for key in loop_rounds.get_partition_keys():
        f = settings.table_path("loop_evaluation", key)
        if f.exists():
            t = type_table(pd.read_parquet(f))
            evals.append(t.assign(round=round_index(key))[["round", "question_type", "n", "accuracy", "lo", "hi"]])
    dev = pd.concat(evals, ignore_index=True)
    dev_wide = dev.pivot(index="question_type", columns="round", values="accuracy").add_prefix("round ").reset_index()
    stop = []
    for key in loop_rounds.get_partition_keys():
        rec = context.instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("loop_evaluation"), asset_partitions=[key]),
                                                      limit=1).records
        if rec:
            stop.append(f"- round {round_index(key)}'s evaluation: {rec[0].asset_materialization.metadata['stop'].value}")

    def fmt(df: pd.DataFrame) -> str:
        return df.to_markdown(index=False, floatfmt=".3f")

    shown = pt[["round", "question_type", "questions", "blind_prior", "start", "targeted", "targeted_lo", "targeted_hi", "minus_start", "minus_start_lo", "minus_start_hi",
                "minus_start_verdict", "minus_replay", "minus_replay_lo", "minus_replay_hi", "minus_replay_verdict"]]
    body = "\n".join([
        "Measured by `make loop` (genixer_assets.loop_run): each round's model evaluated on the development split, Adaptive "
        "Bad-case Sampling, targeted generation, correction and filtering, the round's training per arm; scores on the report's "
        "benchmark questions of the general tasks (the test split), per question type; intervals: the paired bootstrap over "
        "questions and seeds (genixer.noise_test).",
        "", "Controls (points of accuracy, mean over question types):", "", fmt(ctl[["round", "control", "contrast", "types", "delta", "lo", "hi", "verdict"]]),
        "", "Per round and question type on the test split (blind_prior: the most common training answer of the question's kind; "
        "targeted arm, mean of its seeds, with its 95% bootstrap interval; start: the "
        "model the round began from; minus_start: the change from the previous round's model; minus_replay: the data's effect):",
        "", fmt(shown), "", "Development split accuracy per round (the loop's own evaluation):", "", fmt(dev_wide),
        "", "Stopping rule:", "", *stop, "", *parts])
    out = settings.path("reports", "loop_report.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# The closed loop\n\n{body}\n")
    upsert_section(settings.path("reports", "paper_report.md"), LOOP_SECTION, body)
    return dg.MaterializeResult(metadata={
        "rounds": len(rounds), "path": dg.MetadataValue.path(str(out)),
        "controls": dg.MetadataValue.md(fmt(ctl)),
        "per_type": dg.MetadataValue.md(fmt(shown)),
        "development_by_round": dg.MetadataValue.md(fmt(dev_wide)),
        "stop": "\n".join(stop),
    })
