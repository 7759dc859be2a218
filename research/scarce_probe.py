"""Issue 31's probe: can the retraining experiment see a data effect when annotations are scarce?

On a demo data root (after `make demo`): a base solver trained on K of the collected images (several epochs over
their annotations), from the demo's vision pre-stage tower; then paired arms from it, each seed's arms reading the
same base-mix batches (genixer.training.PairedPlan), the added rows on top:

- baseline: the base mix only (captions + the K images' annotations), S steps;
- ceiling_N: + N annotated rows of the general (VQA-type) tasks on collected images the base never saw;
- replay_N: + N rows re-read from the base's own annotations (more steps, nothing new).

Each model answers the world's benchmarks; per arm and benchmark the per-seed paired difference from baseline, and
the paired bootstrap's interval (genixer.noise_test, questions and seeds drawn together).

    python -m research.scarce_probe data --images 300 --base-steps 600 --steps 100 --arms ceiling_1000 ceiling_4000 replay_4000

Models and tables go to --out (default /tmp/probe31)."""

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from genixer import finetune as gen
from genixer.evaluation import solver_records
from genixer.models.checkpoint import load_model
from genixer.noise_test import bootstrap, compare
from genixer.schema import read_samples
from genixer.tasks import GENERAL_TASKS
from genixer.training import PairedPlan, weighted_pools
from genixer.world_benchmarks import per_question, predict, score
from genixer_assets.common import benchmark_rows, run_context
from resources import GenixerSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--images", type=int, default=300, help="annotated images the base reads")
    ap.add_argument("--base-steps", type=int, default=600)
    ap.add_argument("--steps", type=int, default=100, help="base-mix steps of every arm")
    ap.add_argument("--epochs", type=float, default=1.0, help="passes over an arm's added rows")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--arms", nargs="*", default=["ceiling_1000", "ceiling_4000", "replay_4000"])
    ap.add_argument("--out", default="/tmp/probe31")
    a = ap.parse_args()
    out = Path(a.out)
    settings = GenixerSettings(preset="demo", data_dir=a.data_dir)
    p, src = run_context(settings)
    val = src.heldout
    collected = read_samples(settings.table_path("collected_datasets"))
    samples = collected[collected.image_path.notna() & ~collected.image_id.isin(val)].to_dict("records")
    ids = sorted({s["image_id"] for s in samples})
    random.Random(p.seed).shuffle(ids)
    scarce = set(ids[:a.images])
    base_s = [s for s in samples if s["image_id"] in scarce]
    pool = solver_records([s for s in samples if s["image_id"] not in scarce and s["task"] in GENERAL_TASKS])
    captions, _ = src.captions(base_s, scarce)
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    vocab = gen.vocabulary_texts(samples, templates["general"], templates["phrasings"])
    print(f"scarce: {len(scarce)} images, {len(base_s)} annotations, {len(captions)} captions; held back: {len(pool)} general-task rows")

    t0 = time.time()
    base_dir = out / f"base_{a.images}_{a.base_steps}"
    if not (base_dir / "config.json").exists():
        res = gen.train_base_mllm(base_s, captions, p.caption_share, vocab, p.mllm, replace(p.base_train, steps=a.base_steps), base_dir,
                                  vision_init=settings.model_dir("base_mllm_vision") / p.vision_objective)
        print(f"base: {a.base_steps} steps, final loss {res.final_loss:.3f}, {time.time() - t0:.0f} s")

    bench, _ = benchmark_rows(settings)
    base_records, base_weights, _ = weighted_pools([("captions", captions, p.caption_share),
                                                    ("collected", solver_records(base_s), 1 - p.caption_share)])
    own = solver_records(base_s)
    preds = []

    def answer(model_dir, arm, seed):
        model, processor = load_model(model_dir)
        pr = predict(model, processor, bench, batch_size=128).assign(recipe=arm, seed=seed)
        preds.append(pr)
        s = score(pr)
        print(arm, seed, " ".join(f"{b}={v:.3f}" for b, v in zip(s.benchmark, s.value)), flush=True)

    answer(base_dir, "base", 0)
    for k in range(a.seeds):
        for arm in ["baseline"] + a.arms:
            t1 = time.time()
            kind, n = (arm.split("_") + ["0"])[:2]
            rng = random.Random(1000 + k)
            added = rng.sample(pool, int(n)) if kind == "ceiling" else [rng.choice(own) for _ in range(int(n))] if kind == "replay" else []
            added = [{**r, "task": f"added:{r['task']}"} for r in added]
            lr = a.lr or p.retrain.lr
            plan = PairedPlan.build(base_weights, len(base_records), len(added), a.steps, p.retrain.batch_size, a.epochs, p.seed + k)
            cfg = replace(p.retrain, steps=plan.batches, seed=p.seed + k, lr=lr)
            d = out / f"{arm}_s{k}"
            res = gen.finetune(base_dir, base_records + added, cfg, d, plan=plan)
            print(f"{arm} seed {k}: {plan.base_steps}+{plan.added_steps} steps, loss {res.final_loss:.3f}, {time.time() - t1:.0f} s", flush=True)
            answer(d, arm, k)
    allp = pd.concat(preds, ignore_index=True)
    allp.to_parquet(out / "predictions.parquet")
    perq = per_question(allp[allp.recipe != "base"])
    table = compare(perq, boot=bootstrap(perq))
    vqa = table[table.kind == "vqa"]
    print(vqa[["recipe", "benchmark", "mean", "sd", "delta", "ci_low", "ci_high", "verdict"]].to_string(index=False, float_format="%.3f"))
    table.to_parquet(out / "compare.parquet")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
