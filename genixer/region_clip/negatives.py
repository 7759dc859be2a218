"""Negative (expression, region) pairs in the same images as the true ones, to calibrate the keep threshold."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Iterable

import numpy as np

from genixer.boxes import iou
from genixer.images import image_size
from genixer.region_clip.phrasings import RecReading, has_size, norm_expr, region_pairs

Candidates = dict[str, list[tuple[list[float], str]]]  # image_path -> [(box, expression)] of the objects known in it


def sample_candidates(samples, phrasings=None, reading: RecReading | None = None) -> Candidates:
    """The swap candidates of data without a scene (collected data read from files): the (expression, box) pairs of
    REC/REG samples (:func:`region_pairs` with ``phrasings`` and ``reading``), by image, in the samples' order. That
    presumes, as RefCOCO's expressions are written to, that an expression fits only its own object. (The world's
    candidates are its scenes': ``scene_candidates`` in ``genixer/world/regions.py``.)"""
    out: Candidates = {}
    for p in region_pairs(samples, phrasings, reading):
        out.setdefault(p["image_path"], []).append((p["box"], p["expression"]))
    return out


def negative_pairs(pairs: list[dict], candidates: Mapping[str, list[tuple[list[float], str]]], rng,
                   kinds: Iterable[str] = ("swap", "shift"), max_iou: float = 0.5) -> list[dict]:
    """Negatives in the same images as ``pairs``, at most one per pair and kind.

    * ``swap``: the pair's box with the expression of another object of the same image (an object whose
      box has IoU < ``max_iou`` with it and whose expression differs), taken from ``candidates``: image_path ->
      [(box, expression)] of the objects known in that image, the data source's (the world's scenes,
      ``scene_candidates`` in ``genixer/world/regions.py``; without a scene, the held-out REC/REG samples' own pairs,
      :func:`sample_candidates`).
    * ``shift``: the pair's expression with its box moved (same size, inside the image) to IoU < ``max_iou``;
      the image size is the pair's width/height when it has them (pairs of samples), else read from the file.

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
    if "swap" not in kinds:
        cands = {}
    elif isinstance(candidates, Mapping):
        cands = candidates
    else:
        raise TypeError(f"negative_pairs takes candidates {{image_path: [(box, expression)]}} (DataSource.region_candidates), "
                        f"got {type(candidates).__name__}")
    sizes: dict[str, tuple[int, int]] = {}
    out = []
    for p in pairs:
        base = {**p, "source_sample_id": p.get("sample_id")}
        if "swap" in kinds:
            others = [(b, e) for b, e in cands.get(p["image_path"], [])
                      if iou(b, p["box"]) < max_iou and norm_expr(e) != norm_expr(p["expression"])]
            # one expression per distinct other object
            uniq = list({tuple(b): (b, e) for b, e in others}.values())
            if uniq:
                _, e = uniq[pick(len(uniq))]
                out.append({**base, "expression": norm_expr(e), "negative": "swap"})
        if "shift" in kinds:
            if p["image_path"] not in sizes:
                sizes[p["image_path"]] = ((int(p["width"]), int(p["height"])) if has_size(p)
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
