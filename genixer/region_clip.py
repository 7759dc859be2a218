"""The region CLIP: the role OpenCLIP ViT-L/14 plays in the paper's REC filter, at any size.

The filter scores an expression against the image region its box names. Here that is the cosine
similarity (normalised embeddings, in [-1, 1]) between the crop of the box (with a little context)
and the expression; the official code's unnormalised dot product times 60 is not reproduced.

* Model: an ``open_clip`` ``CLIP`` built from a tiny custom config (:class:`RegionClipSize`), with
  open_clip's own tokenizer (``SimpleTokenizer``, the BPE vocabulary shipped with the package, so the
  vocabulary is the real CLIP one: 49408 tokens) and open_clip's image transform.
* Storage: a directory laid out like an open_clip Hugging Face hub repository,
  ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``) and ``open_clip_model.safetensors``;
  :func:`load_region_clip` goes through open_clip's own factory (``local-dir:`` model names), so the
  same call loads a real OpenCLIP ViT-L/14 directory laid out that way.
* Pairs: :func:`region_pairs` takes (expression, box) from REC samples (the ``{ref}`` slot of the
  question, read by :func:`locate_ref` with the REC phrasings in use: the world's ``locate`` phrasings
  or the given ones, plus ``REC_QUESTION`` of published data) and REG samples (the answer).
* Training: :class:`ClipAdapter` plugs contrastive training (open_clip's ``ClipLoss``) into the project's
  one training loop (:func:`genixer.training.train`).
* Calibration: :func:`negative_pairs` builds negatives in the same images (another object's expression,
  or the box shifted to IoU < 0.5), from the world's scenes or from collected REC/REG samples alone;
  :func:`calibrate_threshold` picks the threshold maximising F1; :func:`fixed_threshold` is the paper's
  fixed cosine 0.6 instead (see its caveat).

In-batch negatives: the loop draws records with replacement and the world's expressions repeat across
images ("the circle" names a different object in many scenes). Two rows with the same expression text
would be asked to be both positive and negative for each other's crop, so :class:`ClipAdapter` keeps
only the first row of each (normalised) expression in a batch; batches are then slightly smaller than
``batch_size``. Expressions that differ but are both true of a crop ("the circle" and "the red circle"
for a red circle taken from different scenes) remain in-batch negatives: a mild false-negative pressure
that pushes scores of short, less specific expressions down a little relative to full descriptions.
"""

from __future__ import annotations

import re
import json
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import open_clip
from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg, ClipLoss, SimpleTokenizer
from open_clip.model import set_model_preprocess_cfg
from open_clip.transform import PreprocessCfg, image_transform_v2
from safetensors.torch import save_file

from genixer.boxes import BOX_GROUP_RE, POINT_RE, BoxFormatError, find_box_groups, iou, parse_boxes
from genixer.images import image_size, open_rgb
from genixer.sources.common import REC_QUESTION
from genixer.templates import TemplateError
from genixer.training import TrainConfig, TrainResult, train
from genixer.world.grammar import COMPILED, PHRASINGS, SLOT_RE, compile_phrasing
from genixer.progress import progress

log = logging.getLogger(__name__)

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
_PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
VOCAB_SIZE = 49408  # SimpleTokenizer's BPE vocabulary (+ start/end of text)


class RegionClipError(ValueError):
    """A region-CLIP directory that cannot be loaded; the message names the path and the problem."""


# ---- model ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RegionClipSize:
    image_size: int = 48
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    context_length: int = 24  # the world's expressions are <= 6 BPE tokens; real CLIP uses 77
    embed_dim: int = 64
    # 'squash' resizes the whole crop to the square input: no object pixel is cut off, at the price of a
    # small aspect change; open_clip's default 'shortest' + centre crop can cut the edge of a clipped box.
    resize_mode: str = "squash"

    def model_cfg(self) -> dict:
        """The open_clip ``model_cfg`` (the layout of open_clip's ``model_configs/*.json``)."""
        if self.vision_width % self.vision_heads or self.text_width % self.text_heads:
            raise ValueError(f"widths must divide by heads: {self}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "width": self.vision_width,
                "layers": self.vision_layers,
                "head_width": self.vision_width // self.vision_heads,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": VOCAB_SIZE,
                "width": self.text_width,
                "heads": self.text_heads,
                "layers": self.text_layers,
            },
        }

    def preprocess_cfg(self) -> dict:
        return asdict(PreprocessCfg(size=self.image_size, resize_mode=self.resize_mode))


def _preprocess_for(model):
    return image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)


def build_region_clip(size: RegionClipSize = RegionClipSize()):
    """A freshly initialised open_clip ``CLIP`` (from torch's current RNG), its preprocess and tokenizer."""
    cfg = size.model_cfg()
    model = CLIP(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision_cfg"]), CLIPTextCfg(**cfg["text_cfg"]))
    set_model_preprocess_cfg(model, size.preprocess_cfg())
    tokenizer = SimpleTokenizer(context_length=size.context_length)
    return model, _preprocess_for(model), tokenizer


def save_region_clip(model, size: RegionClipSize, path: str | Path) -> Path:
    """``open_clip_config.json`` (model_cfg + preprocess_cfg) and ``open_clip_model.safetensors``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pp = dict(getattr(model.visual, "preprocess_cfg", None) or size.preprocess_cfg())
    pp["size"] = size.image_size
    config = {"model_cfg": size.model_cfg(), "preprocess_cfg": pp}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_NAME))
    return path


def _check_dir(path: Path) -> None:
    if not path.is_dir():
        raise RegionClipError(f"region CLIP {path}: directory does not exist")
    config = path / CONFIG_NAME
    if not config.is_file():
        raise RegionClipError(f"region CLIP {path}: missing {CONFIG_NAME}")
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as e:
        raise RegionClipError(f"region CLIP {path}: {CONFIG_NAME} is not JSON ({e})") from e
    if not isinstance(cfg, dict) or "model_cfg" not in cfg:
        raise RegionClipError(f"region CLIP {path}: {CONFIG_NAME} has no 'model_cfg'")
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in _PICKLED_SUFFIXES)
    if pickled:
        # Pickled weights can execute code on load; refuse them rather than trust them.
        raise RegionClipError(
            f"region CLIP {path}: only pickled weights ({pickled[0]}); convert them to safetensors "
            f"({WEIGHTS_NAME})"
        )
    raise RegionClipError(f"region CLIP {path}: no model weights (*.safetensors) found")


def load_region_clip(path: str | Path, device: str = "cpu", weights: str | Path | None = None):
    """(model in eval mode, preprocess, tokenizer) through open_clip's own factory; nothing is downloaded.

    ``path`` is a directory: our saved models, or a real OpenCLIP directory laid out like its hub
    repository (e.g. ``laion/CLIP-ViT-L-14-laion2B-s32B-b82K`` downloaded beforehand:
    ``open_clip_config.json`` and ``open_clip_model.safetensors``). Or ``path`` is an open_clip architecture
    name (``ViT-L-14``) and ``weights`` its ``.safetensors`` file.
    """
    if weights is not None:
        return _load_named(str(path), Path(weights).resolve(), device)
    path = Path(path).resolve()
    _check_dir(path)
    name = f"local-dir:{path}"
    try:
        model, preprocess = open_clip.create_model_from_pretrained(name, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        raise RegionClipError(f"region CLIP {path}: open_clip could not load it ({e})") from e
    model.eval()
    return model, preprocess, tokenizer


def _load_named(name: str, weights: Path, device: str):
    if name not in open_clip.list_models():
        raise RegionClipError(f"region CLIP {name!r}: not an open_clip architecture (open_clip.list_models() names them); "
                              "or give a directory with open_clip_config.json")
    if weights.suffix != ".safetensors":
        raise RegionClipError(f"region CLIP {name} weights {weights}: only .safetensors files are loaded (pickled weights "
                              "can run code); convert them")
    if not weights.is_file():
        raise RegionClipError(f"region CLIP {name} weights {weights}: file does not exist")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights), device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, ValueError, KeyError, TypeError, FileNotFoundError) as e:
        raise RegionClipError(f"region CLIP {name} with {weights}: open_clip could not load it ({e})") from e
    model.eval()
    return model, preprocess, tokenizer


# ---- pairs ----------------------------------------------------------------------------------

def _rows(samples) -> list[dict]:
    if hasattr(samples, "to_dict"):  # a DataFrame (read_samples)
        return samples.to_dict("records")
    return list(samples)


def _norm_expr(text: str) -> str:
    return " ".join(str(text).strip().rstrip(".").split()).lower()


_REF_ANYWHERE = re.compile(r"\b" + SLOT_RE["ref"] + r"\b", re.IGNORECASE)
# The {ref} slot read freely (any words): no "?" (it would swallow a following sentence), no leading or
# trailing space. A slot that holds a box or a point is not an expression (see locate_ref).
FREE_REF = r"[^\s?](?:[^?\n]*?[^\s?])?"


def rec_phrasings(phrasings=None) -> tuple[str, ...]:
    """The REC question phrasings an expression is read with, ``REC_QUESTION`` (published data) always
    among them. ``phrasings``: None (the world's ``locate`` phrasings), one phrasing, a list of them, or
    a kind -> phrasings mapping (``instruction_templates.json``'s "phrasings"; its "locate" list is used).
    The official code's ``<expr>`` slot is read as ``{ref}``."""
    if phrasings is None:
        items = PHRASINGS["locate"]
    elif isinstance(phrasings, str):
        items = (phrasings,)
    elif isinstance(phrasings, Mapping):
        items = phrasings.get("locate", ())
    else:
        items = phrasings
    out = [str(p).replace("<expr>", "{ref}") for p in items]
    return tuple(dict.fromkeys(out + [REC_QUESTION]))


@lru_cache(maxsize=32)
def _rec_patterns(phrasings: tuple[str, ...]) -> tuple[tuple[re.Pattern, re.Pattern], ...]:
    """(world-words pattern, free-slot pattern) of each phrasing."""
    out = []
    for p in phrasings:
        if "{ref}" not in p:
            raise TemplateError(f"REC phrasing {p!r} has no {{ref}} slot")
        out.append((compile_phrasing(p), compile_phrasing(p, slots={"ref": FREE_REF})))
    return tuple(out)


def locate_ref(question: str, phrasings=None) -> str | None:
    """The referring expression of a REC question: the ``{ref}`` slot of the REC phrasing it is
    (:func:`rec_phrasings`: the world's, or the given ones, plus ``REC_QUESTION``), whatever its words.

    1. A phrasing whose slot holds a world description ("Where is the red circle?") gives it.
    2. Else the slot read freely: "Which region does this describe: the man in the red shirt?" gives
       "the man in the red shirt". When several phrasings fit, the shortest slot wins (the phrasing
       that explains most of the question: "Where is {ref} in the image?" before "Where is {ref}?").
       A slot holding a box or a point is no expression.
    3. A paraphrase no phrasing fits (generated text): the longest world description found anywhere.
    No fixed words such as "coordinates of"."""
    q = " ".join(str(question).split())
    patterns = _rec_patterns(rec_phrasings(phrasings))
    for strict, _ in patterns:
        m = strict.fullmatch(q)
        if m:
            return m.group("ref")
    free = []
    for _, pat in patterns:
        m = pat.fullmatch(q)
        if m and not BOX_GROUP_RE.search(m.group("ref")) and not POINT_RE.search(m.group("ref")):
            free.append(m.group("ref"))
    if free:
        return min(free, key=len)
    found = [m.group(0) for m in _REF_ANYWHERE.finditer(q)]
    return max(found, key=len) if found else None


def _describe_box(question: str) -> str | None:
    q = " ".join(str(question).split())
    for pat in COMPILED["describe"]:
        m = pat.fullmatch(q)
        if m:
            return m.group("box")
    return None


def _first_box(s: dict) -> list[float] | None:
    boxes = s.get("boxes")
    boxes = list(boxes) if boxes is not None else []
    return [float(v) for v in boxes[0]] if len(boxes) == 1 and len(boxes[0]) == 4 else None


def region_pairs(samples, phrasings=None) -> list[dict]:
    """(expression, box) pairs from REC and REG samples (dicts or a DataFrame); others are skipped.

    REC: expression = the ``{ref}`` slot of the question (:func:`locate_ref` with ``phrasings``), box = the
    sample's one box, else the box in the answer. REG: expression = the answer, box = the sample's one box,
    else the box in the question. Samples that do not parse (generated text) are skipped and counted in
    the log. Each pair: image_path, box (pixel xyxy), expression, sample_id, image_id, task, and the
    image's width and height when the sample has them.
    """
    pairs, skipped = [], 0
    for s in _rows(samples):
        task = s.get("task")
        if task not in ("rec", "reg"):
            continue
        turns = list(s.get("turns") if s.get("turns") is not None else [])
        if len(turns) != 1:
            skipped += 1
            continue
        q, a = str(turns[0].get("question") or ""), str(turns[0].get("answer") or "")
        box = _first_box(s)
        try:
            if task == "rec":
                expr = locate_ref(q, phrasings)
                if box is None and expr is not None:
                    found = parse_boxes(a, s["width"], s["height"])
                    box = list(found[0]) if len(found) == 1 else None
            else:  # the world's REG phrasings, or any question holding exactly one box (REG_QUESTION, published REG)
                where = _describe_box(q)
                if where is None:
                    groups = find_box_groups(q)
                    where = groups[0] if len(groups) == 1 else None
                expr = _norm_expr(a) if where is not None else None
                if box is None and expr:
                    found = parse_boxes(where, s["width"], s["height"])
                    box = list(found[0]) if len(found) == 1 else None
        except BoxFormatError:
            expr = None
        if not expr or box is None:
            skipped += 1
            continue
        pairs.append({
            "image_path": s["image_path"],
            "box": [float(v) for v in box],
            "expression": _norm_expr(expr),
            "sample_id": s.get("sample_id"),
            "image_id": s.get("image_id"),
            "task": task,
            **({"width": int(s["width"]), "height": int(s["height"])} if _has_size(s) else {}),
        })
    if skipped:
        log.info("region_pairs: %d REC/REG samples skipped (question or box did not parse)", skipped)
    return pairs


def _has_size(s: dict) -> bool:
    try:
        return int(s["width"]) > 0 and int(s["height"]) > 0
    except (KeyError, TypeError, ValueError):  # missing, None, NaN or NA
        return False


def crop(image: Image.Image, box: Sequence[float], pad_frac: float = 0.1) -> Image.Image:
    """The box (pixel xyxy) grown by ``pad_frac`` of its size on each side, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    pw, ph = pad_frac * (x1 - x0), pad_frac * (y1 - y0)
    W, H = image.size
    l, t = max(0, math.floor(x0 - pw)), max(0, math.floor(y0 - ph))
    r, b = min(W, math.ceil(x1 + pw)), min(H, math.ceil(y1 + ph))
    r, b = max(r, min(W, l + 1)), max(b, min(H, t + 1))  # never empty
    return image.crop((l, t, r, b))


class _ImageCache:
    """Opened RGB images by path (a few hundred small PNGs; bounded)."""

    def __init__(self, limit: int = 512):
        self.limit, self.images = limit, {}

    def __call__(self, path: str) -> Image.Image:
        im = self.images.get(path)
        if im is None:
            if len(self.images) >= self.limit:
                self.images.pop(next(iter(self.images)))
            im = open_rgb(path)
            self.images[path] = im
        return im


# ---- training -------------------------------------------------------------------------------

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
        self.images = _ImageCache()
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
            key = _norm_expr(records[i]["expression"]) if self.dedupe else i
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


# ---- scoring --------------------------------------------------------------------------------

def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _score_chunk(model, preprocess, tokenizer, images: _ImageCache, paths, boxes, exprs, pad_frac) -> np.ndarray:
    dev = _device(model)
    pixels = torch.stack([preprocess(crop(images(p), b, pad_frac)) for p, b in zip(paths, boxes)]).to(dev)
    text = tokenizer([_norm_expr(e) for e in exprs]).to(dev)
    img = model.encode_image(pixels, normalize=True).float()
    txt = model.encode_text(text, normalize=True).float()
    return (img * txt).sum(-1).clamp(-1.0, 1.0).cpu().numpy()


def _check_lengths(image_paths, boxes, expressions) -> None:
    if not (len(image_paths) == len(boxes) == len(expressions)):
        raise ValueError(f"need one box and one expression per image path, got {len(image_paths)}, {len(boxes)}, {len(expressions)}")


def clip_scores(model, preprocess, tokenizer, image_paths: Sequence[str], boxes: Sequence[Sequence[float]],
                expressions: Sequence[str], batch_size: int = 64, pad_frac: float = 0.1) -> np.ndarray:
    """Cosine similarity in [-1, 1] of each (crop of box in image, expression), ``batch_size`` at a time.

    The model is put in eval mode. Each image file is opened once per call (bounded cache).
    """
    _check_lengths(image_paths, boxes, expressions)
    model.eval()
    images, out = _ImageCache(), []
    bar = progress(total=len(image_paths), desc="region CLIP", unit="crop")
    for s in range(0, len(image_paths), batch_size):
        e = s + batch_size
        out.append(_score_chunk(model, preprocess, tokenizer, images, image_paths[s:e], boxes[s:e], expressions[s:e], pad_frac))
        bar.update(len(out[-1]))
    bar.close()
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def clip_scores_single(model, preprocess, tokenizer, image_paths, boxes, expressions, pad_frac: float = 0.1) -> np.ndarray:
    """One crop and one expression per forward pass, reopening the image each time (the official
    code's way); only for comparing against :func:`clip_scores`."""
    _check_lengths(image_paths, boxes, expressions)
    model.eval()
    out = [
        _score_chunk(model, preprocess, tokenizer, _ImageCache(1), [p], [b], [x], pad_frac)[0]
        for p, b, x in zip(image_paths, boxes, expressions)
    ]
    return np.asarray(out, dtype=np.float32)


def score_pairs(model, preprocess, tokenizer, pairs: list[dict], batch_size: int = 64) -> np.ndarray:
    """:func:`clip_scores` over pair dicts."""
    return clip_scores(model, preprocess, tokenizer, [p["image_path"] for p in pairs], [p["box"] for p in pairs],
                       [p["expression"] for p in pairs], batch_size=batch_size)


# ---- calibration ----------------------------------------------------------------------------

def calibrate_threshold(pos: np.ndarray, neg: np.ndarray, objective: str = "f1") -> dict:
    """The threshold that maximises F1 of "keep" (score >= threshold) for positives vs negatives.

    ``objective="balanced_accuracy"`` maximises (TPR + TNR) / 2 instead. Candidate cuts lie between
    consecutive distinct scores; the threshold returned is the midpoint between the lowest kept score
    and the next lower score (the lowest score itself when everything is kept). Ties go to the higher
    threshold (the stricter filter). Returns threshold, precision, recall, accuracy, f1,
    balanced_accuracy, n_pos, n_neg.
    """
    if objective not in ("f1", "balanced_accuracy"):
        raise ValueError(f"unknown objective {objective!r}; expected 'f1' or 'balanced_accuracy'")
    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        raise ValueError("calibrate_threshold needs at least one positive and one negative score")
    scores = np.concatenate([pos, neg])
    is_pos = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], is_pos[order]
    tp, fp = np.cumsum(y), np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]  # cut after the last of each run of equal scores
    cut = np.flatnonzero(last)
    tp, fp = tp[cut].astype(float), fp[cut].astype(float)
    tn = len(neg) - fp
    precision = tp / (tp + fp)
    recall = tp / len(pos)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    bal = (recall + tn / len(neg)) / 2
    target = f1 if objective == "f1" else bal
    k = int(np.flatnonzero(target == target.max())[0])  # first = highest threshold
    i = cut[k]
    threshold = float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i])
    return {
        "threshold": threshold,
        "precision": float(precision[k]),
        "recall": float(recall[k]),
        "accuracy": float((tp[k] + tn[k]) / len(s)),
        "f1": float(f1[k]),
        "balanced_accuracy": float(bal[k]),
        "n_pos": int(len(pos)),
        "n_neg": int(len(neg)),
        "objective": objective,
    }


# The paper's REC filter, step 3: "discarding samples with CLIP scores below 0.6" (OpenCLIP-L).
PAPER_CLIP_THRESHOLD = 0.6


def fixed_threshold(value: float = PAPER_CLIP_THRESHOLD, pos=None, neg=None) -> dict:
    """A fixed keep threshold (score >= value) instead of a calibrated one; by default the paper's 0.6.

    Source: the Genixer paper's CLIP-driven REC filter keeps a sample when the OpenCLIP-L similarity of
    its expression and region is at least 0.6 (``shared/reference/GENIXER_FACTS.md``, "keep >= 0.6").
    Caveat, the scale: here the score is a cosine in [-1, 1]. The official code
    (zhaohengyuan1/Genixer, ``Genixer_Shikra/multiprocess_evalclipscore.py``) instead keeps
    ``similarity_score > 60``, the dot product of *unnormalised* Hugging Face CLIP ViT-L/14 features, so
    the paper's 0.6 is not that code's number either. A real CLIP rarely gives a matched pair a cosine
    anywhere near 0.6 (LAION kept web pairs from about 0.3), so with a real OpenCLIP-L a fixed 0.6 drops
    nearly everything: prefer :func:`calibrate_threshold` whenever held-out pairs exist; use this when
    none do, or to apply the paper's number to a model whose cosines are on that scale.

    With ``pos`` and ``neg`` scores, the same fields as :func:`calibrate_threshold` are filled in (what
    the fixed cut does on them); otherwise only threshold, objective ("fixed") and source.
    """
    value = float(value)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"a cosine threshold lies in [-1, 1], got {value}")
    out = {"threshold": value, "objective": "fixed",
           "source": "paper (OpenCLIP-L score >= 0.6)" if value == PAPER_CLIP_THRESHOLD else "fixed by the caller"}
    if pos is None or neg is None:
        return out
    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        raise ValueError("fixed_threshold needs at least one positive and one negative score to report on")
    tp, fp = float((pos >= value).sum()), float((neg >= value).sum())
    tn = len(neg) - fp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / len(pos)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {**out, "precision": precision, "recall": recall, "accuracy": (tp + tn) / (len(pos) + len(neg)), "f1": f1,
            "balanced_accuracy": (recall + tn / len(neg)) / 2, "n_pos": int(len(pos)), "n_neg": int(len(neg))}


def _candidates(scenes_or_samples) -> dict[str, list[tuple[list[float], str]]]:
    """image_path -> [(box, expression)] of the objects known in that image."""
    from genixer.world import Scene
    from genixer.world.grammar import unique_desc

    out: dict[str, list[tuple[list[float], str]]] = {}
    rows = _rows(scenes_or_samples)
    scene_rows = [r for r in rows if isinstance(r, dict) and "scene" in r]
    for r in scene_rows:  # image rows of genixer.world.build_split: every object, its shortest unique description
        scene = Scene.from_json(r["scene"])
        for o in scene.objects:
            d = unique_desc(o, scene)
            if d is not None:
                out.setdefault(r["image_path"], []).append(([float(v) for v in o.box], d.ref()))
    sample_rows = [r for r in rows if not (isinstance(r, dict) and "scene" in r)]
    for p in region_pairs(sample_rows) if sample_rows else []:
        out.setdefault(p["image_path"], []).append((p["box"], p["expression"]))
    return out


def negative_pairs(pairs: list[dict], scenes_or_samples, rng, kinds: Iterable[str] = ("swap", "shift"),
                   max_iou: float = 0.5) -> list[dict]:
    """Negatives in the same images as ``pairs``, at most one per pair and kind.

    * ``swap``: the pair's box with the expression of another object of the same image (an object whose
      box has IoU < ``max_iou`` with it and whose expression differs), taken from ``scenes_or_samples``
      (image rows of :func:`genixer.world.build_split`, or REC/REG samples, or both).
    * ``shift``: the pair's expression with its box moved (same size, inside the image) to IoU < ``max_iou``;
      the image size is the pair's width/height when it has them (pairs of samples), else read from the file.

    Without a scene (collected data read from files) pass the held-out REC/REG samples themselves: their
    (expression, box) pairs are the candidates of ``swap``. That presumes, as RefCOCO's expressions are
    written to, that an expression fits only its own object.

    ``rng``: a ``numpy.random.Generator``, a ``random.Random`` or an int seed. Each negative keeps the
    pair's fields plus ``negative`` (the kind) and ``source_sample_id``.
    """
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    if isinstance(rng, random.Random):
        uniform, pick = rng.uniform, lambda n: rng.randrange(n)
    else:
        uniform, pick = lambda a, b: float(rng.uniform(a, b)), lambda n: int(rng.integers(n))
    kinds = tuple(kinds)
    unknown = set(kinds) - {"swap", "shift"}
    if unknown:
        raise ValueError(f"unknown negative kinds {sorted(unknown)}; expected 'swap' and/or 'shift'")
    cands = _candidates(scenes_or_samples) if "swap" in kinds else {}
    sizes: dict[str, tuple[int, int]] = {}
    out = []
    for p in pairs:
        base = {**p, "source_sample_id": p.get("sample_id")}
        if "swap" in kinds:
            others = [(b, e) for b, e in cands.get(p["image_path"], [])
                      if iou(b, p["box"]) < max_iou and _norm_expr(e) != _norm_expr(p["expression"])]
            # one expression per distinct other object
            uniq = list({tuple(b): (b, e) for b, e in others}.values())
            if uniq:
                _, e = uniq[pick(len(uniq))]
                out.append({**base, "expression": _norm_expr(e), "negative": "swap"})
        if "shift" in kinds:
            if p["image_path"] not in sizes:
                sizes[p["image_path"]] = ((int(p["width"]), int(p["height"])) if _has_size(p)
                                          else image_size(p["image_path"], verify=False))
            W, H = sizes[p["image_path"]]
            x0, y0, x1, y1 = p["box"]
            w, h = x1 - x0, y1 - y0
            for _ in range(20):
                ang = uniform(0, 2 * math.pi)
                mag = uniform(0.6, 1.2)
                nx0 = min(max(0.0, x0 + math.cos(ang) * mag * w), W - w)
                ny0 = min(max(0.0, y0 + math.sin(ang) * mag * h), H - h)
                nb = [nx0, ny0, nx0 + w, ny0 + h]
                if iou(nb, p["box"]) < max_iou:
                    out.append({**base, "box": nb, "negative": "shift"})
                    break
    return out
