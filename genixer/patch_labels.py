"""A dense vision pre-stage: the LLaVA tower learns, for every patch, which object covers it.

The stand-in for LLaVA's pretrained vision encoder. Real CLIP features already say, patch by patch,
what is where; a tower trained from scratch inside a short solver run does not (the world's
learnability probe: colours learned, colour-to-shape binding hardly). Here the transformers
``CLIPVisionModel`` the embedded LLaVA uses is trained on the annotated `collect` images with one
linear head per attribute on the feature layer LLaVA reads: each patch is labelled with the colour,
shape and size of the object whose box holds the patch centre (or "none"), and regresses that
object's normalised box. Every patch is a training example, so a few hundred steps teach the tower
to bind the attributes of one object in the same tokens and to know its extent; the solver's
language model then only has to find and read them.

The labels come from the data source (:class:`PatchLabels`): the world writes them from its scene graphs;
collected data read from files has none (its pre-stage is the contrastive one). Trained through the one loop (:func:`genixer.training.train`) with :class:`PatchLabelAdapter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from transformers import CLIPVisionModel

from genixer.models.embedded import EmbeddedSize, feature_layer, image_processor, vision_config
from genixer.models.inputs import open_images
from genixer.training import TrainConfig, TrainResult, train

class PatchLabels(Protocol):
    """What the pre-stage learns per patch, given by the data source (the world's: its ``ScenePatchLabels``)."""

    heads: dict[str, tuple[str, ...]]  # attribute -> class names, class 0 = no object; the first head marks the covered patches
    fields: tuple[str, ...]  # the image-row fields a training record carries for the labeller

    def __call__(self, row: dict, grid: int) -> dict[str, np.ndarray]:
        """Per-patch class ids of every head and the covering object's box in [0, 1] (NaN where none), flat."""
        ...


class PatchLabeller(nn.Module):
    """A CLIP vision tower with linear per-patch heads on the hidden layer LLaVA feeds its projector."""

    def __init__(self, tower: CLIPVisionModel, feature_layer: int, heads: dict[str, tuple[str, ...]]):
        super().__init__()
        self.tower, self.feature_layer = tower, feature_layer
        width = tower.config.hidden_size
        self.heads = nn.ModuleDict({k: nn.Linear(width, len(v)) for k, v in heads.items()})
        self.box = nn.Linear(width, 4)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[self.feature_layer][:, 1:]
        return {**{k: h(hidden) for k, h in self.heads.items()}, "box": self.box(hidden).sigmoid()}


class PatchLabelAdapter:
    """Records ``{"image_path", <the labeller's fields>}``, labelled by ``labels`` (a :class:`PatchLabels`). Loss:
    cross-entropy per attribute head over every patch plus the L1 box error on patches inside an object. Tokens:
    patches per image. Save: the tower alone, ``save_pretrained`` (safetensors), loadable with
    ``CLIPVisionModel.from_pretrained``."""

    def __init__(self, image_processor, grid: int, labels: PatchLabels):
        self.image_processor, self.grid, self.spec = image_processor, grid, labels
        self.pixels: torch.Tensor | None = None
        self.labels: dict[str, torch.Tensor] = {}

    def prepare(self, records: list[dict], cfg: TrainConfig) -> int:
        chunks = []
        for i in range(0, len(records), 256):  # the processed images are small (3 x 96 x 96): keep them all
            imgs = open_images([r["image_path"] for r in records[i:i + 256]])
            chunks.append(self.image_processor(images=imgs, return_tensors="pt")["pixel_values"])
        self.pixels = torch.cat(chunks)
        labels = [self.spec(r, self.grid) for r in records]
        self.labels = {k: torch.from_numpy(np.stack([lab[k] for lab in labels])) for k in (*self.spec.heads, "box")}
        return 0

    def batch(self, records: list[dict], idx: list[int]) -> tuple[dict[str, torch.Tensor], list[int]]:
        return {"pixel_values": self.pixels[idx], **{k: v[idx] for k, v in self.labels.items()}}, idx

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
        out = model(batch["pixel_values"])
        per_row = sum(nn.functional.cross_entropy(out[k].transpose(1, 2), batch[k], reduction="none").mean(1) for k in self.spec.heads)
        inside = ~batch["box"].isnan().any(-1)
        err = (out["box"] - batch["box"].nan_to_num()).abs().sum(-1) * inside
        per_row = per_row + err.sum(1) / inside.sum(1).clamp(min=1)
        return per_row.mean(), per_row.detach().tolist()

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch[next(iter(self.spec.heads))].numel())

    def save(self, model, out_dir: Path) -> None:
        model.tower.save_pretrained(out_dir)


def pretrain_tower(size: EmbeddedSize, images: list[dict], cfg: TrainConfig, out_dir: str | Path,
                   val_images: list[dict] | None = None, labels: PatchLabels | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train a fresh vision tower of the embedded LLaVA's shape (`size`) on the per-patch labels of
    `images` (rows with ``image_path`` and the fields of ``labels``, the data source's labeller, e.g. the
    world's scene graphs) and save it to `out_dir` (the heads are thrown away). Returns the training result
    and, on `val_images`, each head's accuracy over the patches an object covers (``box_l1``: mean absolute
    error of the regressed box coordinates there)."""
    if labels is None:
        raise ValueError("the patch-label pre-stage needs the data source's labeller (the world's, from its scene graphs); "
                         "data without scene graphs has none: use the contrastive objective")
    torch.manual_seed(cfg.seed)
    tower = CLIPVisionModel(vision_config(size))
    grid = size.image_size // size.patch_size
    model = PatchLabeller(tower, feature_layer(size), labels.heads)
    processor = image_processor(size)
    records = [{"image_path": r["image_path"], **{f: r[f] for f in labels.fields}, "task": "patch_labels"} for r in images]
    res = train(model, None, records, cfg, out_dir, adapter=PatchLabelAdapter(processor, grid, labels))
    scores: dict[str, float] = {}
    if val_images:
        ad = PatchLabelAdapter(processor, grid, labels)
        ad.prepare(val_images, cfg)
        with torch.no_grad():
            out = model(ad.pixels)
        inside = ad.labels[next(iter(labels.heads))] > 0
        for k in labels.heads:
            scores[f"{k}_accuracy"] = float((out[k].argmax(-1) == ad.labels[k])[inside].float().mean())
        scores["box_l1"] = float((out["box"] - ad.labels["box"].nan_to_num()).abs()[inside].mean())
    return res, scores


def load_tower_into(llava, path: str | Path) -> None:
    """Copy a saved pre-stage tower into `llava`'s vision tower (shapes must agree; mismatches raise)."""
    tower = CLIPVisionModel.from_pretrained(path)
    llava.model.vision_tower.load_state_dict(tower.state_dict(), strict=True)

