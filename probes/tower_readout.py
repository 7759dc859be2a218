"""Issue 16: what the frozen pre-stage tower already knows, read without a language model.

Linear per-patch heads (colour, shape, size, box) are fitted on the tower's features at the layer LLaVA reads,
on the demo's training images; then on the held-out collect images:
- existence ("is there a <colour> <shape>?", adv_vqa): yes if the max over patches of P(colour) * P(shape) > 0.5;
- REC: the patch that best matches the expression's words (product of their probabilities), and that patch's
  regressed box, written in the box format and checked by the oracle (IoU >= 0.5).
A fixed readout, not a model of the graph: it says how much of the solver's gap lies above the tower.

    python probes/tower_readout.py DATA_DIR        # a demo's data root (after `make demo`: data)
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import CLIPVisionModel  # noqa: E402

from genixer.judge import auc  # noqa: E402
from genixer.models.embedded import feature_layer, image_processor  # noqa: E402
from genixer.models.inputs import open_images  # noqa: E402
from genixer.patch_labels import HEADS, patch_labels  # noqa: E402
from genixer.schema import read_samples  # noqa: E402
from genixer.world import Scene  # noqa: E402
from genixer.world.oracle import check_turn  # noqa: E402
from genixer_assets.generators import _context  # noqa: E402
from resources import GenixerSettings  # noqa: E402

torch.manual_seed(0)
settings = GenixerSettings(preset="demo", data_dir=sys.argv[1])
p, collect, val = _context(settings)
size = p.mllm; grid = size.image_size // size.patch_size
tower = CLIPVisionModel.from_pretrained(settings.model_dir("base_mllm_vision") / p.vision_objective).eval()
proc = image_processor(size)
def feats(rows):
    out = []
    for i in range(0, len(rows), 64):
        px = proc(images=open_images([r.image_path for r in rows[i:i+64]]), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            out.append(tower(pixel_values=px, output_hidden_states=True).hidden_states[feature_layer(size)][:, 1:])
    return torch.cat(out)
rows = list(collect.itertuples()); tr = [r for r in rows if r.image_id not in val][:1200]; va = [r for r in rows if r.image_id in val]
Ftr, Fva = feats(tr), feats(va)
lab = {k: torch.tensor(np.stack([patch_labels(Scene.from_json(r.scene), grid)[k] for r in tr])) for k in ("colour", "shape", "size", "box")}
heads = {k: torch.nn.Linear(Ftr.shape[-1], len(HEADS[k]) if k != "box" else 4) for k in lab}
opt = torch.optim.Adam([q for h in heads.values() for q in h.parameters()], lr=1e-2)
inside = ~lab["box"].isnan().any(-1)
for it in range(600):
    opt.zero_grad()
    loss = sum(torch.nn.functional.cross_entropy(heads[k](Ftr).transpose(1, 2), lab[k]) for k in ("colour", "shape", "size"))
    loss = loss + (heads["box"](Ftr).sigmoid() - lab["box"].nan_to_num()).abs()[inside].mean()
    loss.backward(); opt.step()
print("probe loss", round(loss.item(), 3))
with torch.no_grad():
    P = {k: heads[k](Fva).softmax(-1) for k in ("colour", "shape", "size")}
    B = heads["box"](Fva).sigmoid()
idx = {r.image_id: i for i, r in enumerate(va)}
c = read_samples(settings.table_path("collected_datasets")); adv = c[(c.task == "adv_vqa") & c.image_id.isin(val)]
scores, labels, srcs = [], [], []
for s in adv.itertuples():
    q = s.turns[0]["question"]; a = s.turns[0]["answer"]
    col = next(x for x in HEADS["colour"][1:] if re.search(rf"\b{x}\b", q)); shp = next(x for x in HEADS["shape"][1:] if re.search(rf"\b{x}\b", q))
    i = idx[s.image_id]
    sc = (P["colour"][i, :, HEADS["colour"].index(col)] * P["shape"][i, :, HEADS["shape"].index(shp)]).max().item()
    scores.append(sc); labels.append(a == "yes"); srcs.append(s.source)
scores, labels = np.array(scores), np.array(labels)
print(f"held-out existence from the tower's patches: AUC {auc(scores, labels):.3f}, accuracy at 0.5 {((scores > 0.5) == labels).mean():.3f}, n {len(labels)} (yes {labels.mean():.2f})")
for src in sorted(set(srcs)):
    m = np.array(srcs) == src
    print(f"  {src}: said yes {np.mean(scores[m] > 0.5):.2f}")

rec = c[(c.task == "rec") & c.image_id.isin(val)]
ok = []
for s in rec.itertuples():
    q = s.turns[0]["question"]; i = idx[s.image_id]
    words = re.findall(r"\b(small|large|red|green|blue|yellow|purple|orange|circle|square|triangle|star|diamond)\b", q)
    score = torch.ones(grid * grid)
    for w in words:
        k = "size" if w in HEADS["size"] else "colour" if w in HEADS["colour"] else "shape"
        score = score * P[k][i, :, HEADS[k].index(w)]
    if not words:  # "the object": any object patch
        score = 1 - P["colour"][i, :, 0]
    j = int(score.argmax()); scene = Scene.from_json(collect.set_index("image_id").loc[s.image_id, "scene"])
    box = B[i, j].tolist()
    text = "[" + ",".join(f"{v:.3f}" for v in box) + "]"
    ok.append(check_turn(q, text, scene).ok)
print(f"held-out REC from the tower's patches (the best-matching patch's regressed box): {np.mean(ok):.3f} of {len(ok)}")
