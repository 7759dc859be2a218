"""Contrastive training of the region CLIP through the project's one training loop (:func:`genixer.training.train`).

In-batch negatives: the loop draws records with replacement and the world's expressions repeat across
images ("the circle" names a different object in many scenes). Two rows with the same expression text
would be asked to be both positive and negative for each other's crop, so :class:`ClipAdapter` keeps
only the first row of each (normalised) expression in a batch; batches are then slightly smaller than
``batch_size``. Expressions that differ but are both true of a crop ("the circle" and "the red circle"
for a red circle taken from different scenes) remain in-batch negatives: a mild false-negative pressure
that pushes scores of short, less specific expressions down a little relative to full descriptions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip import ClipLoss

from genixer.region_clip.crops import ImageCache, crop
from genixer.region_clip.model import RegionClipSize, build_region_clip, save_region_clip
from genixer.region_clip.phrasings import norm_expr
from genixer.training import TrainConfig, TrainResult, train


class ClipAdapter:
    """Contrastive (expression, region) training in :func:`genixer.training.train`.

    A batch: crops through ``preprocess``, expressions through ``tokenizer``, one row per distinct
    expression (see the module docstring). Loss: open_clip's ``ClipLoss`` (symmetric InfoNCE) with the
    model's ``logit_scale`` (exp, clamped at 100 as open_clip's trainer does). Tokens: non-padding text
    tokens plus the vision tokens (patches + class token) of each crop. Save: :func:`save_region_clip`.
    """

    def __init__(self, preprocess, tokenizer, size: RegionClipSize, pad_frac: float = 0.1, dedupe: bool = True):
        self.preprocess, self.tokenizer, self.size = preprocess, tokenizer, size
        self.pad_frac, self.dedupe = pad_frac, dedupe
        self.clip_loss = ClipLoss()
        self.images = ImageCache()
        self.crops: dict[int, torch.Tensor] = {}  # deterministic preprocessing: each crop is made once
        self.text: torch.Tensor | None = None

    def prepare(self, records: list[dict], cfg: TrainConfig) -> int:
        if cfg.loss_per != "token":
            raise ValueError(f"TrainConfig.loss_per={cfg.loss_per!r} has no meaning for the contrastive loss, which "
                             "weighs every (expression, region) pair of a batch the same: leave it 'token'")
        exprs = [r["expression"] for r in records]
        self.text = self.tokenizer(exprs)
        ctx = self.text.shape[1]
        return sum(len(self.tokenizer.encode(e)) + 2 > ctx for e in exprs)

    def _crop(self, records: list[dict], i: int) -> torch.Tensor:
        t = self.crops.get(i)
        if t is None:
            r = records[i]
            t = self.preprocess(crop(self.images(r["image_path"]), r["box"], self.pad_frac))
            if len(self.crops) < 50_000:
                self.crops[i] = t
        return t

    def batch(self, records: list[dict], idx: list[int]) -> tuple[dict[str, torch.Tensor], list[int]]:
        rows, seen = [], set()
        for i in idx:
            key = norm_expr(records[i]["expression"]) if self.dedupe else i
            if key in seen:
                continue
            seen.add(key)
            rows.append(i)
        image = torch.stack([self._crop(records, i) for i in rows])
        return {"image": image, "text": self.text[rows]}, rows

    def loss(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
        out = model(image=batch["image"], text=batch["text"])
        if isinstance(out, dict):
            img, txt, scale = out["image_features"], out["text_features"], out["logit_scale"]
        else:
            img, txt, scale = out[0], out[1], out[2]
        scale = scale.clamp(max=100.0)
        loss = self.clip_loss(img, txt, scale)
        with torch.no_grad():
            logits = scale * img.float() @ txt.float().T
            labels = torch.arange(len(logits), device=logits.device)
            rows = (F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.T, labels, reduction="none")) / 2
        return loss, rows.tolist()

    def tokens(self, batch: dict[str, torch.Tensor]) -> int:
        n_img = batch["image"].shape[0]
        grid = (self.size.image_size // self.size.patch_size) ** 2 + 1
        return int((batch["text"] != 0).sum()) + n_img * grid

    def save(self, model, out_dir: Path) -> None:
        save_region_clip(model, self.size, out_dir)


def train_region_clip(pairs: list[dict], size: RegionClipSize, cfg: TrainConfig, out_dir: str | Path) -> TrainResult:
    """Build a fresh region CLIP (seeded by ``cfg.seed``) and train it on ``pairs`` through the one loop.

    ``out_dir`` ends up a :func:`load_region_clip` directory; an interrupted run resumes from
    ``out_dir/checkpoint`` like every other training. Per-group curves follow the pairs' ``task``
    (rec / reg). ``cfg.freeze_vision_tower`` freezes the ``visual`` tower; ``cfg.lora`` needs explicit
    ``target_modules`` (the default targets a language model, which a CLIP does not have).
    """
    if not pairs:
        raise ValueError("train_region_clip needs at least one pair")
    torch.manual_seed(cfg.seed)
    model, preprocess, tokenizer = build_region_clip(size)
    if cfg.freeze_vision_tower:
        for p in model.visual.parameters():
            p.requires_grad_(False)
        cfg = replace(cfg, freeze_vision_tower=False)
    adapter = ClipAdapter(preprocess, tokenizer, size)
    return train(model, None, pairs, cfg, out_dir, adapter=adapter)
