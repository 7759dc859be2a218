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
  question, read by :func:`locate_ref` with the REC phrasings in use: the given ones or the data source's
  ``locate`` phrasings, plus ``REC_QUESTION`` of published data) and REG samples (the answer). What the
  source's words are is a :class:`RecReading` the caller passes (the world's:
  ``WORLD_REC_READING`` in ``genixer/world/regions.py``); this package does not import the world.
* Training: :class:`ClipAdapter` plugs contrastive training (open_clip's ``ClipLoss``) into the project's
  one training loop (:func:`genixer.training.train`).
* Calibration: :func:`negative_pairs` builds negatives in the same images (another object's expression,
  or the box shifted to IoU < 0.5), the other objects given by the data source (the world's scenes,
  ``scene_candidates`` in ``genixer/world/regions.py``, or collected REC/REG samples alone, :func:`sample_candidates`);
  :func:`calibrate_threshold` picks the threshold maximising F1; :func:`fixed_threshold` is the paper's
  fixed cosine 0.6 instead (see its caveat).

Modules: :mod:`~genixer.region_clip.phrasings` (REC phrasings read into expressions, (expression, box)
pairs), :mod:`~genixer.region_clip.model` (build, save, load), :mod:`~genixer.region_clip.training`
(:class:`ClipAdapter`, :func:`train_region_clip`; in-batch negatives explained there),
:mod:`~genixer.region_clip.scoring` (scores, threshold calibration), :mod:`~genixer.region_clip.negatives`
(negative pairs). The names below are the package's public ones.
"""

from __future__ import annotations

from genixer.models.open_clip_files import CONFIG_NAME, WEIGHTS_NAME
from genixer.region_clip.crops import crop
from genixer.region_clip.model import (
    VOCAB_SIZE,
    RegionClipError,
    RegionClipSize,
    build_region_clip,
    load_region_clip,
    save_region_clip,
)
from genixer.region_clip.negatives import Candidates, negative_pairs, sample_candidates
from genixer.region_clip.phrasings import FREE_REF, RecReading, locate_ref, rec_phrasings, region_pairs
from genixer.region_clip.scoring import (
    PAPER_CLIP_THRESHOLD,
    calibrate_threshold,
    clip_scores,
    clip_scores_single,
    fixed_threshold,
    image_embeddings,
    score_pairs,
)
from genixer.region_clip.training import ClipAdapter, train_region_clip

__all__ = [
    "CONFIG_NAME", "FREE_REF", "PAPER_CLIP_THRESHOLD", "VOCAB_SIZE", "WEIGHTS_NAME", "Candidates", "ClipAdapter",
    "RecReading", "RegionClipError", "RegionClipSize", "build_region_clip", "calibrate_threshold", "clip_scores",
    "clip_scores_single", "crop", "fixed_threshold", "image_embeddings", "load_region_clip", "locate_ref", "negative_pairs",
    "rec_phrasings", "region_pairs", "sample_candidates", "save_region_clip", "score_pairs", "train_region_clip",
]
