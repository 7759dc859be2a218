"""Probes for issue 16 ('binding attributes'): one change before the demo's base_mllm solver training, all else
as the demo (same data, vision pre-stage tower, 850 solver steps with the tower frozen, held-out evaluation by the
oracle). Baseline: the demo's base_mllm (35.4% held-out since fd7f0c8, blind prior 27.3%). README "Learnability" has the results.

    python -m research.solver_probes DATA_DIR stage1 [STEPS]      # LLaVA's stage 1: only the projector, on captions
    python -m research.solver_probes DATA_DIR curriculum [STEPS]  # first the images with one or two objects only
    python -m research.solver_probes DATA_DIR coords              # one token per coordinate value (0.000 .. 1.000)
    python -m research.solver_probes DATA_DIR question_first      # the prompt before the image tokens
    python -m research.solver_probes DATA_DIR coords_ordered      # coordinate tokens whose embeddings and output rows are
                                                                  # a place code (nearby values alike), not unrelated classes
    python -m research.solver_probes DATA_DIR sample_loss         # every record weighs the same in the loss (TrainConfig.loss_per)
    python -m research.solver_probes DATA_DIR word_aligned [STEPS] # the projector first learns to write each patch as the sum of
                                                                  # the LM's embeddings of its object's words ("small", "yellow", "circle")
    python -m research.solver_probes DATA_DIR lm_deep             # the language model at about the same parameters and FLOPs:
    python -m research.solver_probes DATA_DIR lm_wide             # 8 layers x 136 wide, or 2 layers x 272 (the demo: 4 x 192)
    python -m research.solver_probes DATA_DIR none --seed 1       # no change (the demo's solver), e.g. another seed
    python -m research.solver_probes DATA_DIR text_first [STEPS]  # the language model first learns the tasks as text (no image):
                                                                  # the image's dense caption, then the question -> the answer
    python -m research.solver_probes DATA_DIR text_aligned [STEPS] # text_first, then word_aligned's projector (300 steps)
    python -m research.solver_probes DATA_DIR text_first 2000 --text-only --fresh 30000
                                                                  # the text stage alone, on the text of 30,000 new scenes
                                                                  # (sampled, not rendered) instead of the training images'
    python -m research.solver_probes DATA_DIR objects             # one image token per object (region features pooled from the
                                                                  # tower's own patch predictions; 6 slots) instead of 64 patches

Any variant takes --seed, --lr, --batch, --group (batches grouped by length) and --solver-steps for the solver's own
training (default: the preset's), --only TASKS and --caption-share X for the solver's mixture, --dense K for K more of
the world's annotations per training image, --boost TASK:SHARE (a pool of one task's questions at that share of the
batches), --text-lr for text_first's text stage, and --patch N: the tower cuts the image into N-pixel patches instead
of the preset's
(96 px / 24 = 16 image tokens instead of 64), and its vision pre-stage is trained again at that patch size first.

DATA_DIR: a demo's data root (after `make demo`: data). Models go to /tmp/probe/<variant>_<steps>/.
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from genixer import finetune as gen
from genixer.models.embedded import build_embedded_mllm
from genixer.models.tokenizer import build_tokenizer
from genixer.retraining import solver_records
from genixer.schema import read_samples
from genixer.tasks import TASKS
from genixer.training import train, weighted_pools
from genixer.world import annotate_images
from genixer.world.scene import Scene
from genixer_assets.common import run_context
from resources import GenixerSettings


def place_code(model, tokenizer, dims: int = 64, width: float = 0.03) -> None:
    """Coordinate tokens' input embeddings and output rows as a place code: value v is a bump over `dims` centres
    spread on [0, 1] (Gaussian of `width`), in the first `dims` hidden dimensions, scaled to the rows' own norm;
    so nearby values have nearby rows, and learning one value teaches its neighbours."""
    import torch
    from genixer.models.tokenizer import COORDINATES, SPACE

    centres = torch.linspace(0, 1, dims)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        for value in COORDINATES:
            code = torch.exp(-((float(value) - centres) ** 2) / (2 * width**2))
            for piece in (value, SPACE + value):
                i = tokenizer.convert_tokens_to_ids(piece)
                for w in (emb, head):
                    row = torch.zeros_like(w[i])
                    row[:dims] = code / code.norm() * w[i].norm()
                    w[i] = row


def word_align(model, processor, p, images, steps: int, batch: int = 64) -> None:
    """Train only the projector so that each patch's image token is the sum of the language model's input
    embeddings of the covering object's size, colour and shape words (0 where no object): the image tokens
    start in the same space as the question's words. Features of the frozen tower are computed once."""
    import torch
    from genixer.models.embedded import feature_layer
    from genixer.models.inputs import open_images
    from genixer.models.tokenizer import SPACE
    from genixer.world.patch_labels import HEADS, patch_labels

    grid = p.mllm.image_size // p.mllm.patch_size
    tower, proj = model.model.vision_tower, model.model.multi_modal_projector
    emb = model.get_input_embeddings().weight.detach()
    word = {k: torch.stack([torch.zeros_like(emb[0])] + [emb[processor.tokenizer.convert_tokens_to_ids(SPACE + w)] for w in v[1:]])
            for k, v in HEADS.items()}
    feats, targets = [], []
    rows = list(images.itertuples())
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            chunk = rows[i:i + 64]
            px = processor.image_processor(images=open_images([r.image_path for r in chunk]), return_tensors="pt")["pixel_values"]
            feats.append(tower(pixel_values=px, output_hidden_states=True).hidden_states[feature_layer(p.mllm)][:, 1:])
            labels = [patch_labels(Scene.from_json(r.scene), grid) for r in chunk]
            targets.append(torch.stack([sum(word[k][torch.tensor(lab[k])] for k in HEADS) for lab in labels]))
    feats, targets = torch.cat(feats), torch.cat(targets)
    opt = torch.optim.AdamW(proj.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(len(feats), (batch,), generator=g)
        loss = torch.nn.functional.mse_loss(proj(feats[idx]), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = proj(feats[:256])
        cos = torch.nn.functional.cosine_similarity(out.flatten(0, 1), targets[:256].flatten(0, 1), dim=-1)
        has = targets[:256].flatten(0, 1).norm(dim=-1) > 0
    print(f"word alignment: {steps} steps on {len(feats)} images, final mse {loss.item():.5f}, "
          f"cosine to the word sum on object patches {cos[has].mean():.3f}", flush=True)


def object_tokens(model, processor, p, images, val_images, slots: int = 6) -> None:
    """Region features (bottom-up VQA's object tokens) from the frozen tower's own patch predictions: linear heads
    fitted on its features (as tower_readout.py) say which patches hold an object and which box each patch's object
    has; patches are grouped greedily by that box (IoU > 0.2 with the most confident free patch: 98 of the 100
    held-out images get their object count; 0.5 gives 54), each group's features are averaged, and the groups, left
    to right, become `slots` image tokens (empty slots: zeros) through the same projector. The language model then
    reads one token per object instead of 64 patches."""
    import torch
    from torchvision.ops import box_iou
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from genixer.models.embedded import feature_layer
    from genixer.world.patch_labels import PATCH_LABELS
    from research.tower_readout import fit_heads, tower_features

    grid = p.mllm.image_size // p.mllm.patch_size
    tower, proj, layer = model.model.vision_tower, model.model.multi_modal_projector, feature_layer(p.mllm)
    rows = list(images.itertuples())[:1200]
    heads = fit_heads(tower_features(tower, processor.image_processor, layer, rows), rows, grid, PATCH_LABELS)

    def groups(feats: torch.Tensor) -> list[list[torch.Tensor]]:
        conf = 1 - heads["colour"](feats).softmax(-1)[..., 0]
        boxes = heads["box"](feats).sigmoid()
        out = []
        for b in range(len(feats)):
            iou, free, found = box_iou(boxes[b], boxes[b]), conf[b] > 0.5, []
            while free.any() and len(found) < slots:
                i = int(torch.where(free, conf[b], -1.0).argmax())
                members = free & (iou[i] > 0.2)
                members[i] = True
                found.append(members)
                free = free & ~members
            found.sort(key=lambda m: float(boxes[b][m][:, [0, 2]].mean()))
            out.append(found)
        return out

    def pool(feats: torch.Tensor) -> torch.Tensor:
        out = feats.new_zeros(feats.shape[0], slots, feats.shape[-1])
        for b, found in enumerate(groups(feats)):
            for k, m in enumerate(found):
                out[b, k] = feats[b][m].mean(0)
        return out

    with torch.no_grad():
        vrows = list(val_images.itertuples())
        n = [len(g) for g in groups(tower_features(tower, processor.image_processor, layer, vrows))]
        true = [len(Scene.from_json(r.scene).objects) for r in vrows]
    print(f"object tokens: {slots} slots; held-out images whose group count is their object count: "
          f"{sum(a == b for a, b in zip(n, true))} of {len(true)} (groups {sum(n) / len(n):.2f}, objects {sum(true) / len(true):.2f} per image)",
          flush=True)

    def get_image_features(pixel_values, vision_feature_layer=None, vision_feature_select_strategy=None, image_sizes=None, **kw):
        with torch.no_grad():
            tokens = pool(tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[layer][:, 1:])
        return BaseModelOutputWithPooling(pooler_output=list(proj(tokens)))

    model.model.get_image_features = get_image_features
    processor.num_additional_image_tokens = slots + 1 - grid * grid  # "default" drops one: `slots` image tokens per image


class TextAdapter:
    """Text-only records for the language model inside the LLaVA (no image: LLaVA's forward without
    pixel_values runs its language model alone): BOS + prompt, then the target + EOS is learnt."""

    def __init__(self, tokenizer):
        self.tok = tokenizer

    def prepare(self, records, cfg) -> int:
        self.seqs, self.n_prompt = [], []
        for r in records:
            p = self.tok(r["prompt"], add_special_tokens=False)["input_ids"]
            j = self.tok(r["prompt"] + " " + r["target"], add_special_tokens=False)["input_ids"]
            if j[:len(p)] != p:
                raise ValueError(f"{r.get('record_id')}: the prompt's tokens change when the answer follows it")
            self.seqs.append([self.tok.bos_token_id, *j, self.tok.eos_token_id])
            self.n_prompt.append(len(p) + 1)
        return 0

    def batch(self, records, idx):
        from genixer.models.inputs import pad
        seqs = [self.seqs[i] for i in idx]
        labels = [[-100] * self.n_prompt[i] + self.seqs[i][self.n_prompt[i]:] for i in idx]
        return pad(seqs, self.tok.pad_token_id, "right", labels=labels), idx

    def loss(self, model, batch):
        return model(**batch).loss, None

    def tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    def save(self, model, out_dir) -> None:
        pass


def text_accuracy(model, tokenizer, records: list[dict]) -> dict[str, float]:
    """Teacher-forced check of text records: per task, the share whose answer's tokens are all the model's argmax
    after the prompt and the answer's earlier tokens (greedy decoding would write that answer)."""
    import torch
    ad = TextAdapter(tokenizer)
    ad.prepare(records, None)
    hits: dict[str, list[bool]] = {}
    with torch.no_grad():
        for i in range(0, len(records), 64):
            idx = list(range(i, min(i + 64, len(records))))
            b, _ = ad.batch(records, idx)
            pred = model(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1)
            for row, j in enumerate(idx):
                lab = b["labels"][row, 1:]
                ok = bool((pred[row, :-1][lab != -100] == lab[lab != -100]).all())
                hits.setdefault(records[j]["task"], []).append(ok)
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(hits.items())}


def text_records(records: list[dict], captions: list[dict]) -> list[dict]:
    """The solver's records as text: the image's dense caption, a newline, the question; records whose question
    or answer holds a box or point (which a caption without boxes cannot answer) are left out."""
    caption = {c["image_id"]: c["target"] for c in captions}
    return [{**r, "prompt": caption[r["image_id"]] + "\n" + r["prompt"]} for r in records
            if r["image_id"] in caption and "[" not in r["prompt"] + r["target"]]


def fresh_text(n: int, p) -> list[dict]:
    """Text records of `n` new scenes of the preset's world (sampled with seeds of a split no image uses, never
    rendered): each scene's dense caption and one sample of each task whose turns hold no box or point."""
    import random
    from genixer.world.captions import caption_records
    from genixer.world import scene_seed
    from genixer.world.annotate import annotate
    from genixer.world.scene import WorldConfig, sample_scene

    records = []
    for i in range(n):
        scene = sample_scene(f"text_{i:06d}", scene_seed(p.seed, "text_probe", i), "collect", WorldConfig())
        rows = [{"image_id": scene.image_id, "image_path": "", "scene": scene.to_json()}]
        rng = random.Random(f"text_probe/{i}")
        for task in ("adv_vqa", "common_vqa", "mc_vqa", "md"):
            sample = annotate(task, scene, rng)
            for j, t in enumerate(sample["turns"] if sample else []):
                rows.append({"record_id": f"{scene.image_id}:{task}:{j}", "task": task, "image_id": scene.image_id,
                             "image_path": "", "prompt": t["question"], "target": t["answer"]})
        records += text_records(rows[1:], caption_records(rows[:1]))
    return records


def task_share(text: str) -> tuple[str, float]:
    """--boost's TASK:SHARE, e.g. adv_vqa:0.25."""
    task, _, share = text.partition(":")
    if task not in TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    try:
        return task, float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes TASK:SHARE, e.g. adv_vqa:0.25, not {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir")
    ap.add_argument("variant", choices=["none", "stage1", "curriculum", "coords", "question_first", "coords_ordered", "sample_loss", "word_aligned", "lm_deep", "lm_wide", "text_first", "text_aligned", "objects"])
    ap.add_argument("steps", type=int, nargs="?", default=None, help="steps of the added stage (200 / 300)")
    ap.add_argument("--preset", default="demo", help="the preset the data root was built with (its solver steps apply)")
    ap.add_argument("--seed", type=int, default=None, help="the solver's training seed (default: the preset's)")
    ap.add_argument("--batch", type=int, default=None, help="the solver's batch size (default: the preset's)")
    ap.add_argument("--group", type=int, default=None, help="the solver's TrainConfig.group_by_length (default: the preset's)")
    ap.add_argument("--solver-steps", type=int, default=None, help="the solver's steps (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None, help="the solver's (and the text stage's) peak learning rate (default: the preset's)")
    ap.add_argument("--only", default=None,
                    help="the solver's (and text_first's text stage's) records of these tasks only (comma-separated), e.g. adv_vqa")
    ap.add_argument("--dense", type=int, default=0, help="K more annotated samples per training image (of the --only tasks, or all), "
                    "drawn from the world's annotator with another seed")
    ap.add_argument("--boost", type=task_share, default=None, help="TASK:SHARE: a pool of 9 of the world's TASK questions per training image "
                    "at SHARE of the solver's batches (taken from the question -> answer share)")
    ap.add_argument("--caption-share", type=float, default=None, help="the solver's share of caption batches (default: the preset's)")
    ap.add_argument("--text-lr", type=float, default=None, help="text_first: the text stage's peak learning rate (default: --lr's)")
    ap.add_argument("--text-only", action="store_true", help="text_first: stop after the text stage and its held-out check")
    ap.add_argument("--fresh", type=int, default=0, help="text_first: the text stage on this many new scenes' text (not rendered)")
    ap.add_argument("--patch", type=int, default=None, help="the tower's patch size (its pre-stage is retrained; default: the preset's)")
    a = ap.parse_args()
    only = tuple(a.only.split(",")) if a.only else ()
    for task in only:
        if task not in TASKS:
            ap.error(f"unknown task {task!r}; the tasks are {', '.join(TASKS)}")
    steps = a.steps if a.steps is not None else {"stage1": 200, "curriculum": 300, "word_aligned": 300, "text_first": 400,
                                                                 "text_aligned": 400}.get(a.variant, 0)
    settings = GenixerSettings(preset=a.preset, data_dir=a.data_dir)
    p, src = run_context(settings)  # the world's data source: these probes study the world's solver
    collect, val = src.collect_images, src.heldout
    solver = {k: v for k, v in (("seed", a.seed), ("batch_size", a.batch), ("steps", a.solver_steps), ("group_by_length", a.group), ("lr", a.lr)) if v is not None}
    p = replace(p, base_train=replace(p.base_train, **solver))
    collected = read_samples(settings.table_path("collected_datasets"))
    samples = collected[collected.image_path.notna()].to_dict("records")
    train_s = [s for s in samples if s["image_id"] not in val]
    val_s = [s for s in samples if s["image_id"] in val]
    templates = json.loads(settings.path("tables", "instruction_templates.json").read_text())
    captions, _ = src.captions(samples, set(collect.image_id) - val)
    scenes = {r.image_id: Scene.from_json(r.scene) for r in collect.itertuples()}
    tags = {"textlr": a.text_lr, "only": a.only, "dense": a.dense or None, "boost": a.boost and f"{a.boost[0]}{a.boost[1]:g}",
            "cap": a.caption_share, "fresh": a.fresh or None, "patch": a.patch}
    out = Path("/tmp/probe") / "_".join([a.variant, str(steps), *(f"{k}{v}" for k, v in solver.items()),
                                         *(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in tags.items() if v is not None)])
    cap = p.caption_share if a.caption_share is None else a.caption_share
    t = time.time()
    shape = {"lm_deep": dict(text_hidden=136, text_layers=8, text_intermediate=272),
             "lm_wide": dict(text_hidden=272, text_layers=2, text_intermediate=544)}.get(a.variant)
    if shape:
        p = replace(p, mllm=replace(p.mllm, **shape))
    tower = settings.model_dir("base_mllm_vision") / p.vision_objective
    if a.patch:  # another patch size: the vision pre-stage again, at that size, on the same images and steps
        p = replace(p, mllm=replace(p.mllm, patch_size=a.patch))
        tower = out / "vision"
        train_rows = collect[~collect.image_id.isin(val)]
        pre, scores = gen.vision_pretrain(train_rows.to_dict("records"), p.mllm, p.vision_pretrain, tower, p.vision_objective,
                                          collect[collect.image_id.isin(val)].to_dict("records"),
                                          captions=src.captions(samples, set(train_rows.image_id))[0], patch_labels=src.patch_labels)
        print(f"vision pre-stage, patch {a.patch}: {pre.steps} steps, final loss {pre.final_loss:.3f}, {time.time() - t:.0f}s; "
              f"held-out {json.dumps({k: round(v, 3) for k, v in scores.items()})}", flush=True)
        t = time.time()
    if a.seed is not None:  # another seed: another initialisation of the language model and projector too
        import torch
        torch.manual_seed(a.seed)
    model, processor = build_embedded_mllm(build_tokenizer(gen.vocabulary_texts(samples, templates["general"], templates["phrasings"]),
                                                           coordinate_tokens=a.variant.startswith("coords")),
                                           p.mllm)
    gen.init_vision_tower(model, tower)
    if a.variant == "coords_ordered":
        place_code(model, processor.tokenizer)
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
    if a.variant in ("text_first", "text_aligned"):
        text = text_records(solver_records(train_s), captions) if not a.fresh else fresh_text(a.fresh, p)
        text = [r for r in text if r["task"] in only] if a.only else text
        text_cfg = replace(p.base_train, steps=steps, warmup_steps=20, **({"lr": a.text_lr} if a.text_lr else {}))
        r1 = train(model, processor, text, text_cfg, out / "s1", adapter=TextAdapter(processor.tokenizer))
        print(f"text stage: {steps} steps on {len(text)} text records, final loss {r1.final_loss:.3f}, {time.time() - t:.0f}s; "
              f"e.g. {text[0]['prompt']!r} -> {text[0]['target']!r}", flush=True)
        model.eval()
        held_text = text_records(solver_records(val_s), src.captions(samples, val)[0])
        print(f"text stage, held-out text records (all answer tokens right): {text_accuracy(model, processor.tokenizer, held_text)}",
              flush=True)
        model.train()
        if a.text_only:
            return
    if a.variant == "word_aligned":
        word_align(model, processor, p, collect[~collect.image_id.isin(val)], steps)
    if a.variant == "objects":
        object_tokens(model, processor, p, collect[~collect.image_id.isin(val)], collect[collect.image_id.isin(val)])
    if a.variant == "text_aligned":
        word_align(model, processor, p, collect[~collect.image_id.isin(val)], 300)
    if a.variant == "question_first":  # every image token sees the question (the image after the prompt)
        from genixer.models import inputs
        inputs.prompt_text = lambda proc, prompt: prompt + "\n" + proc.image_token
    if a.variant in ("stage1", "curriculum"):
        print(f"{a.variant}: {steps} steps, final loss {r1.final_loss:.3f}, {time.time() - t:.0f}s", flush=True)
    solver_s = [s for s in train_s if s["task"] in only] if a.only else train_s
    train_images = collect[~collect.image_id.isin(val)].to_dict("records")
    if a.dense:  # more of the world's annotations on the same training images (what collect_per_image sets)
        solver_s = solver_s + annotate_images(train_images, only or TASKS, per_image=a.dense, seed=p.seed + 1000)
    boost = []
    if a.boost:
        more = annotate_images(train_images, (a.boost[0],), per_image=9, seed=p.seed + 2000)
        boost = [("boost", solver_records(more), a.boost[1])]
    pools = ([("solver", solver_records(solver_s), 1 - cap - sum(b[2] for b in boost))] + boost
             + ([("captions", captions, cap)] if cap else []))
    records, weights, _ = weighted_pools(pools)
    print(f"solver: {len(records)} records ({len(solver_s)} samples{', tasks ' + a.only if a.only else ''}; captions at {cap})", flush=True)
    cfg = replace(p.base_train, loss_per="sample") if a.variant == "sample_loss" else p.base_train
    r2 = train(model, processor, records, cfg, out / "s2", sample_weights=weights)
    print(f"solver: final loss {r2.final_loss:.3f}, {time.time() - t:.0f}s ({r2.steps} steps)", flush=True)
    model.eval()
    ev = src.evaluate_solver(model, processor, val_s, batch_size=32)
    prior = src.prior_baseline(train_s, val_s)
    print(f"held-out accuracy {ev.correct.mean():.4f} (blind prior {prior.correct.mean():.4f}); {time.time() - t:.0f}s")
    print(pd.DataFrame({"acc": ev.groupby("task").correct.mean(), "prior": prior.groupby("task").correct.mean()}).round(3).to_string())


if __name__ == "__main__":
    main()
