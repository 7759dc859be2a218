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

Trained through the one loop (:func:`genixer.training.train`) with :class:`PatchLabelAdapter`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import CLIPVisionModel

from genixer.models.embedded import EmbeddedSize, feature_layer, image_processor, vision_config
from genixer.models.inputs import open_images
from genixer.training import TrainConfig, TrainResult, train
from genixer.world import Scene
from genixer.world.scene import COLOURS, SHAPES, SIZES

HEADS = {"colour": ("none", *COLOURS), "shape": ("none", *SHAPES), "size": ("none", *SIZES)}


def patch_labels(scene: Scene, grid: int) -> dict[str, np.ndarray]:
    """Per-patch targets for a `grid` x `grid` patching of the whole image (resized, not cropped):
    attribute class ids (0 = no object) and the covering object's box in [0, 1] (NaN where none)."""
    out = {k: np.zeros((grid, grid), dtype=np.int64) for k in HEADS}
    box = np.full((grid, grid, 4), np.nan, dtype=np.float32)
    cx = (np.arange(grid) + 0.5) / grid * scene.width
    cy = (np.arange(grid) + 0.5) / grid * scene.height
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        cols = np.nonzero((cx >= x0) & (cx < x1))[0]
        rows = np.nonzero((cy >= y0) & (cy < y1))[0]
        if not len(cols) or not len(rows):  # an object smaller than a patch: label the patch holding its centre
            mx, my = o.centre
            cols = np.array([min(int(mx / scene.width * grid), grid - 1)])
            rows = np.array([min(int(my / scene.height * grid), grid - 1)])
        sel = np.ix_(rows, cols)
        for k, value in (("colour", o.colour), ("shape", o.shape), ("size", o.size)):
            out[k][sel] = HEADS[k].index(value)
        box[sel] = (x0 / scene.width, y0 / scene.height, x1 / scene.width, y1 / scene.height)
    return {**{k: v.reshape(-1) for k, v in out.items()}, "box": box.reshape(-1, 4)}


class PatchLabeller(nn.Module):
    """A CLIP vision tower with linear per-patch heads on the hidden layer LLaVA feeds its projector."""

    def __init__(self, tower: CLIPVisionModel, feature_layer: int):
        super().__init__()
        self.tower, self.feature_layer = tower, feature_layer
        width = tower.config.hidden_size
        self.heads = nn.ModuleDict({k: nn.Linear(width, len(v)) for k, v in HEADS.items()})
        self.box = nn.Linear(width, 4)

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[self.feature_layer][:, 1:]
        return {**{k: h(hidden) for k, h in self.heads.items()}, "box": self.box(hidden).sigmoid()}


class PatchLabelAdapter:
    """Records ``{"image_path", "scene"}``. Loss: cross-entropy per attribute head over every patch
    plus the L1 box error on patches inside an object. Tokens: patches per image. Save: the tower
    alone, ``save_pretrained`` (safetensors), loadable with ``CLIPVisionModel.from_pretrained``."""

    def __init__(self, image_processor, grid: int):
        self.image_processor, self.grid = image_processor, grid
        self.pixels: torch.Tensor | None = None
        self.labels: dict[str, torch.Tensor] = {}

    def prepare(self, records: list[dict], cfg: TrainConfig) -> int:
        chunks = []
        for i in range(0, len(records), 256):  # the processed images are small (3 x 96 x 96): keep them all
            imgs = open_images([r["image_path"] for r in records[i:i + 256]])
            chunks.append(self.image_processor(images=imgs, return_tensors="pt")["pixel_values"])
        self.pixels = torch.cat(chunks)
        labels = [patch_labels(Scene.from_json(r["scene"]), self.grid) for r in records]
        self.labels = {k: torch.from_numpy(np.stack([lab[k] for lab in labels])) for k in (*HEADS, "box")}
        return 0

    def batch(self, records: list[dict], idx: list[int]) -> tuple[dict[str, torch.Tensor], list[int]]:
        return {"pixel_values": self.pixels[idx], **{k: v[idx] for k, v in self.labels.items()}}, idx

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
        out = model(batch["pixel_values"])
        per_row = sum(nn.functional.cross_entropy(out[k].transpose(1, 2), batch[k], reduction="none").mean(1) for k in HEADS)
        inside = ~batch["box"].isnan().any(-1)
        err = (out["box"] - batch["box"].nan_to_num()).abs().sum(-1) * inside
        per_row = per_row + err.sum(1) / inside.sum(1).clamp(min=1)
        return per_row.mean(), per_row.detach().tolist()

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["colour"].numel())

    def save(self, model, out_dir: Path) -> None:
        model.tower.save_pretrained(out_dir)


def pretrain_tower(size: EmbeddedSize, images: list[dict], cfg: TrainConfig, out_dir: str | Path,
                   val_images: list[dict] | None = None) -> tuple[TrainResult, dict[str, float]]:
    """Train a fresh vision tower of the embedded LLaVA's shape (`size`) on the per-patch labels of
    `images` (rows with ``image_path`` and ``scene``) and save it to `out_dir` (the heads are thrown
    away). Returns the training result and, on `val_images`, each head's accuracy over the patches an
    object covers (``box_l1``: mean absolute error of the regressed box coordinates there)."""
    torch.manual_seed(cfg.seed)
    tower = CLIPVisionModel(vision_config(size))
    grid = size.image_size // size.patch_size
    model = PatchLabeller(tower, feature_layer(size))
    processor = image_processor(size)
    records = [{"image_path": r["image_path"], "scene": r["scene"], "task": "patch_labels"} for r in images]
    res = train(model, None, records, cfg, out_dir, adapter=PatchLabelAdapter(processor, grid))
    scores: dict[str, float] = {}
    if val_images:
        ad = PatchLabelAdapter(processor, grid)
        ad.prepare(val_images, cfg)
        with torch.no_grad():
            out = model(ad.pixels)
        inside = ad.labels["colour"] > 0
        for k in HEADS:
            scores[f"{k}_accuracy"] = float((out[k].argmax(-1) == ad.labels[k])[inside].float().mean())
        scores["box_l1"] = float((out["box"] - ad.labels["box"].nan_to_num()).abs()[inside].mean())
    return res, scores


def load_tower_into(llava, path: str | Path) -> None:
    """Copy a saved pre-stage tower into `llava`'s vision tower (shapes must agree; mismatches raise)."""
    tower = CLIPVisionModel.from_pretrained(path)
    llava.model.vision_tower.load_state_dict(tower.state_dict(), strict=True)
