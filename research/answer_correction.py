"""Probe for issue 16, VIGC's answer correction: give every generated question back to the solver (base_mllm,
greedy) and compare the oracle's correctness of the generated rows before and after, and after the judge
(judge_mllm's P(Yes) >= the preset's lambda) of each. Greedy answers to the same
question do not change, so one pass is the fixed point of "regenerate until it stops changing".

    python -m research.answer_correction DATA_DIR [--preset demo]

DATA_DIR: a demo's data root (after `make demo`: data). Reads raw_generations_l, models/base_mllm and judge_mllm.
"""
import argparse
from collections import Counter

import pandas as pd

from genixer.decoding import Sampling, generate
from genixer.judge import score_samples
from genixer.models.checkpoint import load_model
from genixer.oracle_eval import Oracle
from resources import GenixerSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--preset", default="demo")
    a = ap.parse_args()
    settings = GenixerSettings(preset=a.preset, data_dir=a.data_dir)
    shards = sorted(settings.path("tables", "raw_generations_l").glob("*.parquet"))
    raw = pd.concat([pd.read_parquet(f) for f in shards])
    raw = raw[raw.quarantine_reason.isna()].reset_index(drop=True)
    oracle = Oracle(pd.read_parquet(settings.table_path("world_scenes")))  # the world's scenes, every split
    model, processor = load_model(settings.model_dir("base_mllm"))
    turns = [(i, j, t["question"], r.image_path) for i, r in enumerate(raw.itertuples()) for j, t in enumerate(r.turns)]
    answers = generate(model, processor, [t[3] for t in turns], [t[2] for t in turns], Sampling(max_new_tokens=48),
                       batch_size=64)
    corrected = [[dict(t) for t in r.turns] for r in raw.itertuples()]
    for (i, j, _, _), out in zip(turns, answers):
        corrected[i][j]["answer"] = out[0].strip()
    cor = raw.assign(turns=corrected)
    raw["oracle"], cor["oracle"] = oracle.column(raw), oracle.column(cor)
    cor["changed"] = [any(x["answer"] != y["answer"] for x, y in zip(c, list(r))) for c, r in zip(corrected, raw.turns)]
    right = lambda s: (s == "correct").mean()  # noqa: E731
    table = pd.DataFrame({"rows": raw.groupby("task").size(), "raw": raw.groupby("task").oracle.apply(right),
                          "corrected": cor.groupby("task").oracle.apply(right), "answer changed": cor.groupby("task").changed.mean()})
    print(table.round(3).to_string())
    print(f"all {len(raw)} parsed rows: raw {right(raw.oracle):.3f}, corrected {right(cor.oracle):.3f}")
    judge, judge_processor = load_model(settings.model_dir("judge_mllm"))
    lam = settings.get_preset().judge_lambda
    for name, df in (("raw", raw), ("corrected", cor)):
        kept = df[score_samples(judge, judge_processor, df, batch_size=64) >= lam]
        print(f"{name} kept by the judge at lambda {lam}: {len(kept)} rows, {right(kept.oracle):.3f} correct")
    wrong = Counter(oracle.check({"task": r.task, "turns": list(r.turns), "image_id": r.image_id}).reason.split(" (")[0][:60]
                    for r in cor[cor.oracle == "incorrect"].itertuples())
    print("most frequent reasons after correction:", wrong.most_common(6))


if __name__ == "__main__":
    main()
