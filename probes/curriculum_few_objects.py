"""Probe (issue 16, 'binding attributes'): a curriculum -- the solver first trained on images with one or two
objects only (existence and attribute questions without distractors), then the usual base_mllm solver training. Everything else as the demo's base_mllm (same data, tower
pre-stage, 850 solver steps, held-out eval). Baseline: the demo's base_mllm (35.9% held-out, blind prior 27.3%).

    python probes/curriculum_few_objects.py DATA_DIR [STEPS]   # DATA_DIR: a demo's data root (after `make demo`: data)

Writes its models under /tmp/probe/; prints the held-out accuracy per task. README "Learnability" has the result."""
import json, sys, time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pandas as pd
from resources import GenixerSettings
from genixer_assets.generators import _context, _captions
from genixer import generators as gen
from genixer.schema import read_samples
from genixer.models.tokenizer import build_tokenizer
from genixer.models.embedded import build_embedded_mllm
from genixer.training import train
from genixer.retraining import solver_records
from genixer.evaluation import evaluate_solver, prior_baseline
from genixer.world.scene import Scene

S1_STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 300
settings = GenixerSettings(preset="demo", data_dir=sys.argv[1])
p, collect, val = _context(settings)
collected = read_samples(settings.table_path("collected_datasets"))
samples = collected[collected.image_path.notna()].to_dict("records")
train_s = [s for s in samples if s["image_id"] not in val]
val_s = [s for s in samples if s["image_id"] in val]
templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
vocab = gen.vocabulary_texts(samples, templates["general"], templates["phrasings"])
train_ids = set(collect.image_id) - val
captions, _ = _captions(settings, collect, samples, train_ids)
vision_init = settings.model_dir("base_mllm_vision") / p.vision_objective
out = Path("/tmp/probe") / f"curriculum_{S1_STEPS}"
t = time.time()
model, processor = build_embedded_mllm(build_tokenizer(vocab), p.mllm)
gen.init_vision_tower(model, vision_init)
n_obj = {r.image_id: len(Scene.from_json(r.scene).objects) for r in collect.itertuples()}
few = [s for s in train_s if n_obj[s["image_id"]] <= 2]
print(f"stage 1: {len(few)} of {len(train_s)} training samples are on images with <= 2 objects", flush=True)
from genixer.training import weighted_pools
cap = p.caption_share
few_caps = [c for c in captions if n_obj[c["image_id"]] <= 2]
recs1, w1, _ = weighted_pools([("solver", solver_records(few), 1 - cap), ("captions", few_caps, cap)])
r1 = train(model, processor, recs1, replace(p.base_train, steps=S1_STEPS), out / "s1", sample_weights=w1)
print(f"stage 1: {S1_STEPS} steps, final loss {r1.final_loss:.3f}, {time.time()-t:.0f}s", flush=True)
cap = p.caption_share
from genixer.training import weighted_pools
records, weights, _ = weighted_pools([("solver", solver_records(train_s), 1 - cap), ("captions", captions, cap)])
r2 = train(model, processor, records, p.base_train, out / "s2", sample_weights=weights)
print(f"stage 2: final loss {r2.final_loss:.3f}, {time.time()-t:.0f}s", flush=True)
scenes = {r.image_id: Scene.from_json(r.scene) for r in collect.itertuples()}
model.eval()
ev = evaluate_solver(model, processor, val_s, scenes, batch_size=32)
prior = prior_baseline(train_s, val_s, scenes)
print(f"held-out accuracy {ev.correct.mean():.4f} (blind prior {prior.correct.mean():.4f}); {time.time()-t:.0f}s")
print(pd.DataFrame({"acc": ev.groupby("task").correct.mean(), "prior": prior.groupby("task").correct.mean()}).round(3).to_string())
