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
