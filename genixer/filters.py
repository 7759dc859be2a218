"""Step (iv), second half: filtering generated data (the judge's P(Yes) for general data; the
coarse-to-fine REC filter for grounding data). Every row keeps the step that dropped it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from genixer.boxes import BoxFormatError, answer_box, find_box_groups  # answer_box: one REC-answer reader, shared with the oracle
from genixer.region_clip import locate_ref

HARD_BAND = (0.5, 0.7)  # the paper's harder fine-tuning samples: 0.5 <= P(Yes) < 0.7
PAPER_MIN_BOX_PX, PAPER_IMAGE_SIDE = 50, 640  # the paper's 50 px minimum, at COCO-like resolution


def min_box_px(width: int, height: int, paper_px: float = PAPER_MIN_BOX_PX) -> float:
    """The paper's minimum box side, scaled to this image's resolution."""
    return paper_px * max(width, height) / PAPER_IMAGE_SIDE


def select_vqa(scored: pd.DataFrame, lam: float, hard_band_share: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """The Genixer-915K recipe: rows with P(Yes) >= lambda, plus a small fixed sample of the hard
    band 0.5 <= P(Yes) < 0.7 (the paper added 8K such rows beside 915K: about 1%), flagged
    `hard_band`. The sample is drawn once here, so every recipe built on it shares the same rows;
    a sampled row goes to fine-tuning, not to the lambda set."""
    p = scored.judge_p_yes.astype(float)
    lo, hi = HARD_BAND
    ok = scored.quarantine_reason.isna() & p.notna()
    band = scored[ok & (p >= lo) & (p < hi)]
    n_hard = min(len(band), max(1, round(hard_band_share * int((ok & (p >= lam)).sum())))) if hard_band_share > 0 else 0
    hard = scored.index.isin(band.sample(n=n_hard, random_state=seed).index)
    keep = (ok & (p >= lam)) | hard
    return scored[keep].assign(hard_band=hard[keep])


def vqa_yields(scored: pd.DataFrame, lambdas=(0.3, 0.5, 0.7, 0.9)) -> pd.DataFrame:
    ok = scored[scored.quarantine_reason.isna() & scored.judge_p_yes.notna()]
    rows = [{"lambda": lam, "kept": int((ok.judge_p_yes >= lam).sum()), "yield": float((ok.judge_p_yes >= lam).mean()) if len(ok) else 0.0}
            for lam in lambdas]
    return pd.DataFrame(rows)


def rec_expression(turns, phrasings=None, reading=None) -> str | None:
    """The referring expression of a one-turn REC sample: the ``{ref}`` slot of the REC phrasings in
    use (``phrasings``, else the data source's: ``reading``, a :class:`genixer.region_clip.RecReading`;
    ``REC_QUESTION`` of published data always), whatever words
    surround the slot and whatever words fill it. One reader, shared with the region CLIP's pairs
    (:func:`genixer.region_clip.locate_ref`)."""
    if turns is None or len(turns) != 1:
        return None
    return locate_ref(turns[0]["question"], phrasings, reading)


def coarse_filter(rows: pd.DataFrame, phrasings=None, reading=None) -> pd.DataFrame:
    """Steps (1) and (2): drop malformed text or coordinates, then boxes under the minimum
    size. Adds `expression`, `box` and `filter_reason` (None = goes on to the CLIP step).
    `phrasings` and `reading`: what the REC expression is read with (see rec_expression)."""
    exprs, boxes, reasons = [], [], []
    for r in rows.itertuples():
        expr, box, reason = None, None, None
        if isinstance(r.quarantine_reason, str):
            reason = f"1-malformed: {r.quarantine_reason}"
        else:
            found = rec_expression(r.turns, phrasings, reading)
            try:  # the answer read exactly as the oracle's locate branch reads it
                parsed = answer_box(r.turns[0]["answer"], r.width, r.height) if found is not None else None
            except BoxFormatError:
                parsed = None
            if found is None or find_box_groups(r.turns[0]["question"]):
                reason = "1-malformed: not a REC question (an expression, no box)"
            elif parsed is None:
                reason = "1-malformed: the answer is not exactly one box"
            else:
                expr, box = found, [float(v) for v in parsed]
                need = min_box_px(r.width, r.height)
                if box[2] - box[0] < need or box[3] - box[1] < need:
                    reason = f"2-small: box {box[2] - box[0]:.0f}x{box[3] - box[1]:.0f} px under {need:.1f} px"
        exprs.append(expr)
        boxes.append(box)
        reasons.append(reason)
    return rows.assign(expression=exprs, box=boxes, filter_reason=reasons)


def clip_step(rows: pd.DataFrame, scores: np.ndarray, threshold: float) -> pd.DataFrame:
    """Step (3): keep rows whose crop/expression cosine similarity reaches the threshold.
    `scores` align with the rows that reached this step (filter_reason None)."""
    rows = rows.copy()
    todo = rows.filter_reason.isna()
    rows.loc[todo, "clip_score"] = scores
    bad = todo & ~(rows.clip_score.astype(float) >= threshold)
    rows.loc[bad, "filter_reason"] = [
        "3-clip: score is NaN" if math.isnan(s) else f"3-clip: {s:.3f} < {threshold:.3f}" for s in rows.loc[bad, "clip_score"].astype(float)]
    return rows


def filter_yields(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows left after each step, per task."""
    step = rows.filter_reason.fillna("kept").str.split(":").str[0]
    out = []
    for task, g in rows.assign(step=step).groupby("task"):
        s = g.step
        out.append({"task": task, "raw": len(g), "after_1_format": int((~s.str.startswith("1-")).sum()),
                    "after_2_size": int((~s.str.startswith(("1-", "2-"))).sum()), "after_3_clip": int((s == "kept").sum())})
    return pd.DataFrame(out)
