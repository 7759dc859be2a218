"""Probes for issue 16 ('binding attributes'): one change before the demo's base_mllm solver training, all else
as the demo (same data, vision pre-stage tower, 850 solver steps with the tower frozen, held-out evaluation by the
oracle). Baseline: the demo's base_mllm (35.9% held-out, blind prior 27.3%). README "Learnability" has the results.

    python probes/solver_probes.py DATA_DIR stage1 [STEPS]      # LLaVA's stage 1: only the projector, on captions
    python probes/solver_probes.py DATA_DIR curriculum [STEPS]  # first the images with one or two objects only
    python probes/solver_probes.py DATA_DIR coords              # one token per coordinate value (0.000 .. 1.000)
    python probes/solver_probes.py DATA_DIR question_first      # the prompt before the image tokens

DATA_DIR: a demo's data root (after `make demo`: data). Models go to /tmp/probe/<variant>_<steps>/.
"""
import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from genixer import generators as gen  # noqa: E402
from genixer.evaluation import evaluate_solver, prior_baseline  # noqa: E402
from genixer.models.embedded import build_embedded_mllm  # noqa: E402
from genixer.models.tokenizer import build_tokenizer  # noqa: E402
from genixer.retraining import solver_records  # noqa: E402
from genixer.schema import read_samples  # noqa: E402
from genixer.training import train, weighted_pools  # noqa: E402
from genixer.world.scene import Scene  # noqa: E402
from genixer_assets.generators import _captions, _context  # noqa: E402
from resources import GenixerSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("variant", choices=["stage1", "curriculum", "coords", "question_first"])
    ap.add_argument("steps", type=int, nargs="?", default=None, help="steps of the added stage (200 / 300)")
    ap.add_argument("--preset", default="demo", help="the preset the data root was built with (its solver steps apply)")
    a = ap.parse_args()
    steps = a.steps if a.steps is not None else {"stage1": 200, "curriculum": 300, "coords": 0, "question_first": 0}[a.variant]
    settings = GenixerSettings(preset=a.preset, data_dir=a.data_dir)
    p, collect, val = _context(settings)
    collected = read_samples(settings.table_path("collected_datasets"))
    samples = collected[collected.image_path.notna()].to_dict("records")
    train_s = [s for s in samples if s["image_id"] not in val]
    val_s = [s for s in samples if s["image_id"] in val]
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    captions, _ = _captions(settings, collect, samples, set(collect.image_id) - val)
    scenes = {r.image_id: Scene.from_json(r.scene) for r in collect.itertuples()}
    out = Path("/tmp/probe") / f"{a.variant}_{steps}"
    cap = p.caption_share
    t = time.time()
    model, processor = build_embedded_mllm(build_tokenizer(gen.vocabulary_texts(samples, templates["general"], templates["phrasings"]),
                                                           coordinate_tokens=a.variant == "coords"),
                                           p.mllm)
    gen.init_vision_tower(model, settings.model_dir("base_mllm_vision") / p.vision_objective)
    if a.variant == "stage1":
        for n, prm in model.named_parameters():
            prm.requires_grad_("multi_modal_projector" in n)
        r1 = train(model, processor, captions, replace(p.base_train, steps=steps, warmup_steps=10, freeze_vision_tower=False), out / "s1")
        for prm in model.parameters():
            prm.requires_grad_(True)
    elif a.variant == "curriculum":
        few = {i for i, s in scenes.items() if len(s.objects) <= 2}
        first = [s for s in train_s if s["image_id"] in few]
        print(f"stage 1: {len(first)} of {len(train_s)} training samples are on images with <= 2 objects", flush=True)
        recs, w, _ = weighted_pools([("solver", solver_records(first), 1 - cap), ("captions", [c for c in captions if c["image_id"] in few], cap)])
        r1 = train(model, processor, recs, replace(p.base_train, steps=steps), out / "s1", sample_weights=w)
    if a.variant == "question_first":  # every image token sees the question (the image after the prompt)
        from genixer.models import inputs
        inputs.prompt_text = lambda proc, prompt: prompt + "\n" + proc.image_token
    if a.variant in ("stage1", "curriculum"):
        print(f"{a.variant}: {steps} steps, final loss {r1.final_loss:.3f}, {time.time() - t:.0f}s", flush=True)
    records, weights, _ = weighted_pools([("solver", solver_records(train_s), 1 - cap), ("captions", captions, cap)])
    r2 = train(model, processor, records, p.base_train, out / "s2", sample_weights=weights)
    print(f"solver: final loss {r2.final_loss:.3f}, {time.time() - t:.0f}s", flush=True)
    model.eval()
    ev = evaluate_solver(model, processor, val_s, scenes, batch_size=32)
    prior = prior_baseline(train_s, val_s, scenes)
    print(f"held-out accuracy {ev.correct.mean():.4f} (blind prior {prior.correct.mean():.4f}); {time.time() - t:.0f}s")
    print(pd.DataFrame({"acc": ev.groupby("task").correct.mean(), "prior": prior.groupby("task").correct.mean()}).round(3).to_string())


if __name__ == "__main__":
    main()
