"""Scoring (expression, region) pairs with a region CLIP, and the keep threshold: calibrated on held-out
true pairs and negatives (:func:`calibrate_threshold`) or the paper's fixed 0.6 (:func:`fixed_threshold`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from genixer.progress import progress
from genixer.region_clip.crops import ImageCache, crop
from genixer.region_clip.phrasings import norm_expr


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _score_chunk(model, preprocess, tokenizer, images: ImageCache, paths, boxes, exprs, pad_frac) -> np.ndarray:
    dev = _device(model)
    pixels = torch.stack([preprocess(crop(images(p), b, pad_frac)) for p, b in zip(paths, boxes)]).to(dev)
    text = tokenizer([norm_expr(e) for e in exprs]).to(dev)
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
    images, out = ImageCache(), []
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
        _score_chunk(model, preprocess, tokenizer, ImageCache(1), [p], [b], [x], pad_frac)[0]
        for p, b, x in zip(image_paths, boxes, expressions)
    ]
    return np.asarray(out, dtype=np.float32)


@torch.no_grad()
def image_embeddings(model, preprocess, image_paths: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-norm image embeddings of whole images (the closed loop's query images: the corpus image most similar
    to a bad case's), ``batch_size`` at a time; one row per path."""
    model.eval()
    images, out = ImageCache(), []
    for s in range(0, len(image_paths), batch_size):
        pixels = torch.stack([preprocess(images(p).convert("RGB")) for p in image_paths[s:s + batch_size]]).to(_device(model))
        out.append(model.encode_image(pixels, normalize=True).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


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
