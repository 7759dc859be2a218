"""Issue 16: what the frozen pre-stage tower already knows, read without a language model.

Linear per-patch heads (colour, shape, size, box) are fitted on the tower's features at the layer LLaVA reads,
on the demo's training images; then on the held-out collect images:
- existence ("is there a <colour> <shape>?", adv_vqa): yes if the max over patches of P(colour) * P(shape) > 0.5;
- REC: the patch that best matches the expression's words (product of their probabilities), and that patch's
  regressed box, written in the box format and checked by the oracle (IoU >= 0.5).
A fixed readout, not a model of the graph: it says how much of the solver's gap lies above the tower. The labels,
heads and oracle are the run's data source's (the world's: its patch labeller and its oracle).

    python -m research.tower_readout DATA_DIR        # a demo's data root (after `make demo`: data)
"""
import re
import sys

import numpy as np
import torch
from transformers import CLIPVisionModel

from genixer.boxes import box_to_text
from genixer.judge import auc
from genixer.models.embedded import feature_layer, image_processor
from genixer.models.inputs import open_images
from genixer.schema import read_samples
from genixer_assets.common import run_context
from resources import GenixerSettings

torch.manual_seed(0)
ATTRIBUTES = ("colour", "shape", "size")


def attribute_words(heads: dict[str, tuple[str, ...]]) -> tuple[dict[str, str], re.Pattern]:
    """Each attribute word of the labeller's heads with its head ("yellow" -> "colour", ...), and a pattern finding them."""
    word_head = {w: k for k in ATTRIBUTES for w in heads[k][1:]}
    return word_head, re.compile(r"\b(" + "|".join(word_head) + r")\b")


def tower_features(tower, processor, layer: int, rows, batch: int = 64) -> torch.Tensor:
    """The frozen tower's patch features (CLS dropped) at `layer`, for image rows with ``image_path``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            px = processor(images=open_images([r.image_path for r in rows[i:i + batch]]), return_tensors="pt")["pixel_values"]
            out.append(tower(pixel_values=px, output_hidden_states=True).hidden_states[layer][:, 1:])
    return torch.cat(out)


def fit_heads(feats: torch.Tensor, rows, grid: int, labeller, steps: int = 600) -> dict[str, torch.nn.Linear]:
    """Linear per-patch heads (colour, shape, size classes; the covering object's box) on frozen features, trained on
    the labels `labeller` (the data source's patch labeller) gives each image row."""
    labels = [labeller(r._asdict(), grid) for r in rows]
    lab = {k: torch.tensor(np.stack([x[k] for x in labels])) for k in (*ATTRIBUTES, "box")}
    heads = {k: torch.nn.Linear(feats.shape[-1], len(labeller.heads[k])) for k in ATTRIBUTES} | {"box": torch.nn.Linear(feats.shape[-1], 4)}
    opt = torch.optim.Adam([q for h in heads.values() for q in h.parameters()], lr=1e-2)
    inside = ~lab["box"].isnan().any(-1)
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(torch.nn.functional.cross_entropy(heads[k](feats).transpose(1, 2), lab[k]) for k in ATTRIBUTES)
        loss = loss + (heads["box"](feats).sigmoid() - lab["box"].nan_to_num()).abs()[inside].mean()
        loss.backward()
        opt.step()
    print(f"heads fitted: final loss {loss.item():.3f}")
    return heads


def match(probs: dict[str, torch.Tensor], question: str, heads: dict[str, tuple[str, ...]]) -> torch.Tensor:
    """Per patch, the product of the probabilities of the attribute words the question names
    (no word, as in "the object": the probability that some object covers the patch)."""
    word_head, word_re = attribute_words(heads)
    words = word_re.findall(question)
    if not words:
        return 1 - probs["colour"][:, 0]
    score = torch.ones(probs["colour"].shape[0])
    for w in words:
        score = score * probs[word_head[w]][:, heads[word_head[w]].index(w)]
    return score


def main() -> None:
    settings = GenixerSettings(preset="demo", data_dir=sys.argv[1])
    p, source = run_context(settings)  # the world's: its patch labeller and its oracle
    collect, val, labeller = source.collect_images, source.heldout, source.patch_labels
    size = p.mllm
    grid = size.image_size // size.patch_size
    tower = CLIPVisionModel.from_pretrained(settings.model_dir("base_mllm_vision") / p.vision_objective).eval()
    rows = list(collect.itertuples())
    train_rows = [r for r in rows if r.image_id not in val][:1200]
    val_rows = [r for r in rows if r.image_id in val]

    def feats(rs):
        return tower_features(tower, image_processor(size), feature_layer(size), rs)

    heads = fit_heads(feats(train_rows), train_rows, grid, labeller)
    with torch.no_grad():
        f = feats(val_rows)
        probs = {k: heads[k](f).softmax(-1) for k in ATTRIBUTES}
        boxes = heads["box"](f).sigmoid()
    at = {r.image_id: (i, r) for i, r in enumerate(val_rows)}
    collected = read_samples(settings.table_path("collected_datasets"))
    held = collected[collected.image_id.isin(val)]

    # existence: yes if some patch is likely both the colour and the shape asked about
    scores, labels, sources = [], [], []
    for s in held[held.task == "adv_vqa"].itertuples():
        i, _ = at[s.image_id]
        scores.append(match({k: v[i] for k, v in probs.items()}, s.turns[0]["question"], labeller.heads).max().item())
        labels.append(s.turns[0]["answer"] == "yes")
        sources.append(s.source)
    scores, labels, sources = np.array(scores), np.array(labels), np.array(sources)
    print(f"held-out existence from the tower's patches: AUC {auc(scores, labels):.3f}, accuracy at 0.5 "
          f"{((scores > 0.5) == labels).mean():.3f}, n {len(labels)} (yes {labels.mean():.2f})")
    for src in sorted(set(sources)):
        print(f"  {src}: said yes {np.mean(scores[sources == src] > 0.5):.2f}")

    # REC: the box regressed at the patch that best matches the expression, checked by the oracle
    ok = []
    for s in held[held.task == "rec"].itertuples():
        i, row = at[s.image_id]
        q = s.turns[0]["question"]
        j = int(match({k: v[i] for k, v in probs.items()}, q, labeller.heads).argmax())
        x0, y0, x1, y1 = boxes[i, j].tolist()
        pixel = (x0 * row.width, y0 * row.height, x1 * row.width, y1 * row.height)
        answer = box_to_text(pixel, row.width, row.height)
        ok.append(source.oracle.check({"turns": [{"question": q, "answer": answer}], "image_id": s.image_id}).ok)
    print(f"held-out REC from the tower's patches (the best-matching patch's regressed box): {np.mean(ok):.3f} of {len(ok)}")


if __name__ == "__main__":
    main()
