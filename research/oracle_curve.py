"""Issue 31's learning-curve probe: how many passes over the oracle-correct rows (and over as many, or more,
annotated held-back rows) does the retraining round need before the gain shows?

On a demo data root (after `make demo`): from the demo's base_mllm, paired arms exactly as `retrained_models` builds
them (genixer.retraining.arm_plan: seed k of every arm reads the same base-mix batches, the added rows on top):

- baseline: the base mix only (`--base-steps` steps);
- oracle_e<E>: + the generated rows of scored_generations_l the world's oracle marks correct, E passes;
- annotated<N>_e<E>: + N annotated rows of the general tasks from held_back_datasets (N = 0: as many as the oracle's), E passes.

Each model answers the world's benchmarks; the comparison is the report's (genixer.noise_test: paired bootstrap over
questions and seeds; POPE counted by its accuracy).

    python -m research.oracle_curve data --epochs 1 4 8 --seeds 3 --annotated 0:4 800:4

Models and tables go to --out (default /tmp/oracle_curve)."""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from genixer import finetune as gen
from genixer.evaluation import solver_records
from genixer.models.checkpoint import load_model
from genixer.noise_test import bootstrap, compare, contrast
from genixer.retraining import RECIPES, added_rows, arm_plan, recipe_records
from genixer.schema import read_samples
from genixer.world_benchmarks import kind_of, per_question, predict
from genixer_assets.common import benchmark_rows, run_context
from resources import GenixerSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("--epochs", type=float, nargs="+", default=[1.0, 4.0, 8.0], help="passes over the oracle-correct rows")
    ap.add_argument("--annotated", nargs="*", default=[], help="N:E pairs: N held-back annotated rows (0: the oracle's count), E passes")
    ap.add_argument("--base-steps", type=int, default=None, help="base-mix steps of every arm (default: the preset's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="/tmp/oracle_curve")
    a = ap.parse_args()
    out = Path(a.out)
    settings = GenixerSettings(preset="demo", data_dir=a.data_dir)
    p, src = run_context(settings)
    val = src.heldout
    samples = read_samples(settings.table_path("collected_datasets"))
    samples = samples[samples.image_path.notna() & ~samples.image_id.isin(val)].to_dict("records")
    collected = solver_records(samples)
    captions, _ = src.captions(samples, set(src.collect_images.image_id) - val)
    scored = pd.concat([read_samples(f) for f in sorted(settings.path("tables", "scored_generations_l").glob("*.parquet"))],
                       ignore_index=True)
    scored = scored.assign(oracle_correct=src.oracle.column(scored) == "correct")
    held_back = read_samples(settings.table_path("held_back_datasets"))
    base_steps = a.base_steps or p.retrain.steps
    bench, _ = benchmark_rows(settings)
    preds = []
    t0 = time.time()
    oracle, _, _ = added_rows(RECIPES["oracle_vqa"], scored, None, None, p.judge_lambda, p.seed)
    arms = [("baseline", None, 0.0)] + [(f"oracle_e{e:g}", "oracle", e) for e in a.epochs]
    arms += [(f"annotated{n}_e{e}", int(n), float(e)) for n, e in (x.split(":") for x in a.annotated)]
    print(f"oracle-correct rows: {len(oracle)}; held-back rows: {len(held_back)}; base steps {base_steps}", flush=True)
    for k in range(a.seeds):
        seed = p.seed + k
        for name, what, epochs in arms:
            t1 = time.time()
            if what is None:
                rows = pd.DataFrame()
            elif what == "oracle":
                rows = oracle
            else:
                rows, _, _ = added_rows(RECIPES["annotated_vqa"], None, None, None, p.judge_lambda, seed, held_back, what or len(oracle))
            added = recipe_records(rows) if len(rows) else []
            cfg = replace(p.retrain, seed=seed, steps=base_steps)
            records, plan, _ = arm_plan(captions, collected, added, p.caption_share, base_steps, cfg.batch_size, epochs, seed)
            d = out / f"{name}_s{k}"
            res = gen.finetune(settings.model_dir("base_mllm"), records, replace(cfg, steps=plan.batches), d, plan=plan)
            model, processor = load_model(d)
            preds.append(predict(model, processor, bench, batch_size=128).assign(recipe=name, seed=k))
            print(f"{name} seed {k}: {len(rows)} rows, {plan.base_steps}+{plan.added_steps} steps, loss {res.final_loss:.3f}, "
                  f"{time.time() - t1:.0f} s", flush=True)
    allp = pd.concat(preds, ignore_index=True)
    allp.to_parquet(out / "predictions.parquet")
    perq = per_question(allp)
    boot = bootstrap(perq)
    table = compare(perq, boot=boot)
    vqa = table[table.kind == "vqa"]
    table.to_parquet(out / "compare.parquet")
    names = sorted({b for b in table.benchmark if kind_of(b) == "vqa"})
    print(vqa.pivot(index="recipe", columns="benchmark", values="delta").mul(100).round(1).to_string())
    for name, _, _ in arms[1:]:
        c = contrast(boot, name, "baseline", names)
        v = vqa[vqa.recipe == name]
        print(f"{name}: mean {100 * c['point']:+.1f} [{100 * c['lo']:+.1f}, {100 * c['hi']:+.1f}] {c['verdict']}; "
              f"better {int((v.verdict == 'better').sum())} / worse {int((v.verdict == 'worse').sum())} of {len(v)}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
