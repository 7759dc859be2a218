"""The closed loop's guards: the round's evaluation reads the development split only, and its queries are what
Adaptive Bad-case Sampling promises (bad cases of the query's type, weights inverse to the score, each image once)."""

import dagster as dg
import numpy as np
import pandas as pd

from genixer.loop import DEV_SPLIT, sampling_weights, type_table, uniform_weights
from genixer.tasks import GENERAL_TASKS
from genixer_assets.common import check_partition_keys, check_result, partition_tables, run_context
from genixer_assets.partitions import loop_rounds, round_index
from resources import GenixerSettings


@dg.asset_check(asset="loop_evaluation", blocking=True,
                description="Guard: every evaluated question is of the development split (a general-task sample of a collected image held "
                            "out of every training set), typed, and checked (correct is true or false); at least one question.")
def loop_evaluation_valid(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    _, src = run_context(settings)
    keys = check_partition_keys(context, loop_rounds)
    tables, problems = partition_tables(settings, "loop_evaluation", keys)
    for key, ev in tables.items():
        if ev.empty:
            problems.append(f"{key}: no question evaluated")
            continue
        trained = ~ev.image_id.isin(src.heldout)
        problems += [f"{key}: {s} is on image {i}, which is not held out of training (the report's or the models' data)"
                     for s, i in zip(ev.sample_id[trained], ev.image_id[trained])]
        problems += [f"{key}: {s} is of split {sp!r}, not {DEV_SPLIT!r}" for s, sp in zip(ev.sample_id, ev.split) if sp != DEV_SPLIT]
        problems += [f"{key}: {s} is a {t} question, not a general task" for s, t in zip(ev.sample_id, ev.task) if t not in GENERAL_TASKS]
        problems += [f"{key}: {s} has no question type" for s, t in zip(ev.sample_id, ev.question_type) if not isinstance(t, str) or not t]
        problems += [f"{key}: {s}: correct is {c!r}, not true or false" for s, c in zip(ev.sample_id, ev.correct)
                     if not isinstance(c, (bool, np.bool_))]
    return check_result(not problems, problems, rounds=", ".join(keys), questions=sum(len(t) for t in tables.values()))


@dg.asset_check(asset="loop_queries", blocking=True,
                description="Guard: per arm, each query shows two different bad cases (wrong answers of the round's evaluation; the previous "
                            "arm's: of the previous round's) of its own "
                            "question type; each corpus image is asked about once; each type's probability is the arm's rule recomputed from "
                            "the round's evaluation (targeted and previous: inverse to the score, floored; uniform: equal).")
def loop_queries_valid(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    keys = check_partition_keys(context, loop_rounds)
    tables, problems = partition_tables(settings, "loop_queries", keys)
    for key, q in tables.items():
        for arm, g in q.groupby("arm"):
            # the `previous` arm samples round r - 1's evaluation (what more of that round's data would be)
            ev_key = f"round_{round_index(key) - 1}" if arm == "previous" else key
            ev = pd.read_parquet(settings.table_path("loop_evaluation", ev_key))
            bad = ev[~ev.correct.astype(bool)].set_index("sample_id").question_type
            for r in g.itertuples():
                shown = list(r.in_context)
                if len(set(shown)) != 2:
                    problems.append(f"{key} {arm} query {r.query}: {len(set(shown))} distinct in-context cases, not 2")
                problems += [f"{key} {arm} query {r.query}: in-context {s} is not a bad case of the round's evaluation" for s in shown
                             if s not in bad.index]
                problems += [f"{key} {arm} query {r.query}: in-context {s} is a {bad[s]} case, the query asks for {r.question_type}"
                             for s in shown if s in bad.index and bad[s] != r.question_type]
            if g.image_id.duplicated().any():
                problems.append(f"{key} {arm}: images asked about twice: {sorted(set(g.image_id[g.image_id.duplicated()]))[:5]}")
            # each type's probability is the sampling rule's, recomputed from the round's evaluation
            table = type_table(ev)
            rule = uniform_weights(table) if arm == "uniform" else sampling_weights(table, float(g.weight_floor.iloc[0]))[0]
            p = g.drop_duplicates("question_type").set_index("question_type").p_type
            problems += [f"{key} {arm}: {t} drawn with p {v:.4f}, the rule gives {rule.get(t, 0.0):.4f}" for t, v in p.items()
                         if abs(v - rule.get(t, 0.0)) > 1e-9]
    return check_result(not problems, problems, rounds=", ".join(keys), queries=sum(len(t) for t in tables.values()))


@dg.asset_check(asset="loop_generations", blocking=True,
                description="Guard: every generated row has a status (kept, or the first check it failed); a kept row parsed, is of "
                            "the requested question type and reached the judge's lambda; the variant used for the other arms is "
                            "the one with the fewest failures on the targeted queries.")
def loop_generations_valid(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    from genixer.loop import FAILURES, choose_variant, failure_table
    from genixer.schema import read_applied

    keys = check_partition_keys(context, loop_rounds)
    tables, problems = partition_tables(settings, "loop_generations", keys)
    for key, g in tables.items():
        applied = read_applied(settings.table_path("loop_generations", key))
        odd = sorted(set(g.status) - {"kept", *FAILURES})
        problems += [f"{key}: status {s!r} is neither kept nor a failure {FAILURES}" for s in odd]
        kept = g[g.status == "kept"]
        problems += [f"{key}: kept row {s} asks a {t} question, the query a {q} one" for s, t, q in
                     zip(kept.sample_id, kept.generated_type, kept.requested_type) if t != q]
        problems += [f"{key}: kept row {s} has P(Yes) {p}, below lambda {applied['judge_lambda']}" for s, p in
                     zip(kept.sample_id, kept.judge_p_yes) if not p >= applied["judge_lambda"]]
        problems += [f"{key}: kept row {s} was quarantined ({r})" for s, r in zip(kept.sample_id, kept.quarantine_reason) if pd.notna(r)]
        targeted = g[g.arm == "targeted"]
        best = choose_variant(failure_table(targeted)) if len(targeted) else None
        if best != applied["chosen_variant"]:
            problems.append(f"{key}: the chosen variant is {applied['chosen_variant']!r}; the fewest failures are {best!r}'s")
        other = g[g.arm != "targeted"]
        problems += [f"{key}: the {a} arm used variant {v!r}, not the chosen {applied['chosen_variant']!r}"
                     for a, v in sorted(set(zip(other.arm, other.variant))) if v != applied["chosen_variant"]]
    return check_result(not problems, problems, rounds=", ".join(keys), rows=sum(len(t) for t in tables.values()))


@dg.asset_check(asset="loop_models", blocking=True,
                description="Guard: seed k of every arm read the same base-mix batches; the replay arm adds no row; the targeted, "
                            "uniform and previous arms add as many rows, each a kept row of their own arm (oracle: a targeted row "
                            "that reached the judge and the oracle calls correct).")
def loop_models_paired(context: dg.AssetCheckExecutionContext, settings: GenixerSettings) -> dg.AssetCheckResult:
    keys = check_partition_keys(context, loop_rounds)
    tables, problems = partition_tables(settings, "loop_models", keys)
    for key, m in tables.items():
        g = pd.read_parquet(settings.table_path("loop_generations", key))
        g = g[g.chosen]
        for seed, s in m.groupby("seed"):
            if s.base_batches_sha.nunique() != 1:
                problems.append(f"{key} seed {seed}: the arms read different base batches ({dict(zip(s.arm, s.base_batches_sha))})")
        for r in m.itertuples():
            ids = list(r.added_sample_ids)
            if r.added_rows != len(ids):
                problems.append(f"{key} {r.arm} seed {r.seed}: added_rows {r.added_rows} but {len(ids)} sample ids")
            if r.arm == "replay" and ids:
                problems.append(f"{key} replay seed {r.seed}: the replay arm adds {len(ids)} rows (it adds none)")
            allowed = (g[(g.arm == "targeted") & g.status.isin(["kept", "judge-rejected"]) & (g.oracle == "correct")] if r.arm == "oracle"
                       else g[(g.arm == r.arm) & (g.status == "kept")])
            stray = sorted(set(ids) - set(allowed.sample_id))
            if stray:
                problems.append(f"{key} {r.arm} seed {r.seed}: {len(stray)} added rows are not a kept row of the arm, e.g. {stray[0]}")
        controls = m[m.arm.isin(["targeted", "uniform", "previous"])]
        if controls.added_rows.nunique() > 1:
            problems.append(f"{key}: targeted, uniform and previous add different amounts "
                            f"({controls.groupby('arm').added_rows.first().to_dict()}), not the same")
    return check_result(not problems, problems, rounds=", ".join(keys), models=sum(len(t) for t in tables.values()))
