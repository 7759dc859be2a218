"""Probe for issue 16, 'a judge that can see': the demo judge's records, steps and evaluation, with the
embedded LLaVA class (the pre-stage's trained tower, frozen, as base_mllm reads it) instead of the
from-scratch Fuyu. Held-out AUC overall and by corruption, as judge_mllm reports it.

    python -m research.judge_probes DATA_DIR llava            # the judge prompt after the image, as LLaVA reads it
    python -m research.judge_probes DATA_DIR llava_question_first  # the prompt before the image tokens
    python -m research.judge_probes DATA_DIR from_base [--steps N] [--lr X]  # base_mllm itself fine-tuned as the judge
    python -m research.judge_probes DATA_DIR llava_replay     # llava, with the solver's question -> answer records and captions
                                                              # replayed at 20% + 20% of the batches (Genixer_L's recipe)
    python -m research.judge_probes DATA_DIR fuyu --lr 3e-4   # the demo's judge (Fuyu from scratch, judge_train) at another rate
    python -m research.judge_probes DATA_DIR llava_objects    # llava reading one token per object (solver_probes.py's
                                                              # object_tokens: region features) instead of 64 patches

DATA_DIR: a demo's data root (after `make demo`: data). Models go to /tmp/probe/judge_<variant>_<steps>_<lr>/.
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from genixer import finetune as gen
from genixer import judge
from genixer.decoding import score_yes_no
from genixer.models.checkpoint import load_model
from genixer.models.embedded import build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer
from genixer.schema import read_samples
from genixer.tasks import GENERAL_TASKS
from genixer.training import train
from genixer_assets.common import run_context
from resources import GenixerSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("variant", choices=["llava", "llava_question_first", "from_base", "llava_replay", "llava_objects", "fuyu"])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's judge steps)")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's judge lr)")
    a = ap.parse_args()
    settings = GenixerSettings(preset=a.preset, data_dir=a.data_dir)
    p, src = run_context(settings)  # the run's data source: its judge records, as judge_mllm's
    collect, val = src.collect_images, src.heldout
    samples = read_samples(settings.table_path("collected_datasets"))
    samples = samples[samples.image_path.notna()].to_dict("records")
    train_s = [s for s in samples if s["image_id"] not in val and s["task"] in GENERAL_TASKS]
    val_s = [s for s in samples if s["image_id"] in val and s["task"] in GENERAL_TASKS]
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    records = src.judge_records(train_s, p.seed)
    held = pd.DataFrame(src.judge_records(val_s, p.seed + 1))
    if a.variant == "llava_question_first":  # every image token sees the question and the proposed answer
        from genixer.models import inputs
        inputs.prompt_text = lambda proc, prompt: prompt + "\n" + proc.image_token
    t = time.time()
    vocab = judge.judge_vocabulary(gen.vocabulary_texts(samples, templates["general"], templates["phrasings"]))
    if a.variant == "fuyu":  # the demo's judge_mllm: an embedded Fuyu from config, its own vocabulary
        from genixer.models.embedded import build_embedded_judge
        model, processor = build_embedded_judge(build_tokenizer(vocab), p.judge)
    elif a.variant == "from_base":  # the solver (its tower, projector and language model) as the judge's start
        model, processor = load_model(settings.model_dir("base_mllm"))
        model.train()
    else:
        model, processor = build_embedded_mllm(build_tokenizer(vocab), p.mllm)
        gen.init_vision_tower(model, settings.model_dir("base_mllm_vision") / p.vision_objective)
        if a.variant == "llava_objects":
            from research.solver_probes import object_tokens
            object_tokens(model, processor, p, collect[~collect.image_id.isin(val)], collect[collect.image_id.isin(val)])
    cfg = replace(p.judge_train, freeze_vision_tower=True, **({"steps": a.steps} if a.steps else {}),
                  **({"lr": a.lr} if a.lr else {}))
    weights = None
    if a.variant == "llava_replay":
        from genixer.retraining import solver_records
        train_ids = set(collect.image_id) - val
        captions, _ = src.captions(samples, train_ids)
        solver = solver_records([s for s in samples if s["image_id"] in train_ids])
        records, weights, shares = gen.generator_mixture(records, solver, captions, 0.2, 0.2)
        print(f"replay: {len(solver)} solver records, {len(captions)} captions; shares {shares}", flush=True)
    res = train(model, processor, records, cfg, Path("/tmp/probe") / f"judge_{a.variant}_{cfg.steps}_{cfg.lr:g}",
                sample_weights=weights)
    print(f"{a.variant}: {len(records)} records, {cfg.steps} steps, final loss {res.final_loss:.3f}, {time.time() - t:.0f}s", flush=True)
    model.eval()
    held["p_yes"] = score_yes_no(model, processor, held.image_path.tolist(), held.prompt.tolist(), yes=judge.YES, no=judge.NO,
                                 batch_size=64)
    held["label"] = held.target == judge.YES
    print(f"held-out AUC {judge.auc(held.p_yes, held.label):.3f} on {len(held)} records")
    print(judge.auc_by_corruption(held).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
